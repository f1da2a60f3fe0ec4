"""Linear probing, then fine-tuning (LP-FT): the head starts at the logistic probe's solution.

With `model.probe_init true` an acoustic model whose head reads a statistics shortcut
(`model.input_stats`: the mean ⊕ std of the frames beside the pooled vector, and the clip's
utterance statistics where `data.utterance_stats` gives them) starts training from a logistic
regression fitted on that shortcut: the classic linear probe on pooled states, C picked on the
val part's UA as `experiments.baselines` picks it (fitted on the training part only, no refit:
the model trains on that part alone). Its weights fill the shortcut's columns of the head's
linear layer and its intercept the bias; the pooled vector's columns start at zero. So the
first step's logits are the probe's, and the BLSTM and attention learn what the probe misses
instead of starting from noise (Kumar et al., 2022, "Fine-Tuning can Distort Pretrained
Features": a head fitted first keeps fine-tuning from disturbing what is already linear).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from datamodules.batch import Batch
from lightning_modules.branches import AcousticEncoder, ModelConfigError
from lightning_modules.encoders import out_dim
from lightning_modules.pooling import StatsNorm

C_GRID = (1e-2, 1e-1, 1.0, 10.0)  # the logistic probe's C grid, experiments.baselines' too


@dataclass(frozen=True)
class ProbeFit:
    """A fitted multinomial logistic regression in raw input units: logits = x @ weight.T + bias."""

    weight: np.ndarray  # (C, D)
    bias: np.ndarray  # (C,)
    c: float
    val_ua: dict[float, float]


def fit_probe(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    num_classes: int,
    grid: Sequence[float] = C_GRID,
) -> ProbeFit:
    """Standardised inputs + logistic regression, C on val UA (ties: the smaller C; no val:
    the grid's middle); the standardisation folded into the returned weights. Classes absent
    from the training part get zero weights and a bias far below the others'."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score  # UA
    from sklearn.preprocessing import StandardScaler

    x, y = train
    present = np.unique(y)
    if len(present) < 2:
        raise ModelConfigError("model.probe_init: the training part holds fewer than two classes")
    scaler = StandardScaler().fit(x)

    def fit(c: float) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings at large C
            return LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(x), y)

    val_ua: dict[float, float] = {}
    if val is not None and len(val[1]):
        fitted = {c: fit(c) for c in grid}
        val_ua = {
            c: float(balanced_accuracy_score(val[1], m.predict(scaler.transform(val[0]))))
            for c, m in fitted.items()
        }
        best = max(grid, key=lambda c: (val_ua[c], -c))
        model = fitted[best]
    else:
        best = grid[len(grid) // 2]
        model = fit(best)
    coef, intercept = model.coef_, model.intercept_
    if len(present) == 2:  # sklearn's binary form: one row, the logit of the second class
        coef = np.stack([np.zeros_like(coef[0]), coef[0]])
        intercept = np.array([0.0, intercept[0]])
    scale = scaler.scale_  # 1 where a column is constant (StandardScaler's own guard)
    weight = np.zeros((num_classes, x.shape[1]))
    bias = np.full(num_classes, float(np.min(intercept)) - 10.0)
    weight[present] = coef / scale
    bias[present] = intercept - (coef / scale) @ scaler.mean_
    return ProbeFit(weight, bias, best, val_ua)


def check_probe_init(encoder: nn.Module, head_hidden: int) -> AcousticEncoder:
    """The encoder a probe can start, or a ModelConfigError saying what the option needs."""
    if not isinstance(encoder, AcousticEncoder) or encoder.branch.input_stats is None:
        raise ModelConfigError(
            "model.probe_init starts the head's statistics shortcut: it needs the acoustic "
            "architecture with model.input_stats true"
        )
    if head_hidden:
        raise ModelConfigError("model.probe_init needs a linear head (model.head_hidden 0)")
    return encoder


@torch.no_grad()
def shortcut_features(
    encoder: AcousticEncoder,
    batches: Iterable[Batch],
    layer_mix: nn.Module | None = None,
    fit_norm: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(N, S) statistics shortcut (the input stats, standardised where the branch does so,
    ⊕ the utterance statistics) and (N,) labels of every clip of `batches`. With `fit_norm`
    (the training part) a `StatsNorm` on the input statistics first gets their mean and
    variance over these clips as running statistics, so that evaluation-mode features match
    what training batches will see."""
    branch = encoder.branch
    assert branch.input_stats is not None
    raw: list[Tensor] = []
    extra: list[Tensor] = []
    labels: list[Tensor] = []
    param = next(encoder.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    for batch in batches:
        batch = batch.to(device)
        frames = batch.acoustic
        if frames is None or batch.acoustic_mask is None:
            raise ModelConfigError("model.probe_init: a training batch has no acoustic frames")
        if layer_mix is not None:
            frames = layer_mix(frames)
        raw.append(branch.input_stats(frames, batch.acoustic_mask)[0])
        if encoder.stats_dim:
            if batch.utterance_stats is None:
                raise ModelConfigError("model.probe_init: a batch lacks its utterance_stats")
            extra.append(batch.utterance_stats)
        labels.append(batch.labels)
    if not raw:
        return np.zeros((0, 0)), np.zeros(0, dtype=np.int64)
    stats = torch.cat(raw)
    norm = branch.input_norm
    if isinstance(norm, StatsNorm):
        if fit_norm:
            var = stats.var(0) if len(stats) > 1 else torch.ones_like(stats[0])
            norm.set_statistics(stats.mean(0), var)
        was_training = norm.training
        stats = norm.eval()(stats)  # the running statistics, as at validation
        norm.train(was_training)
    features = torch.cat([stats, *([torch.cat(extra)] if extra else [])], dim=-1)
    return features.double().cpu().numpy(), torch.cat(labels).cpu().numpy()


@torch.no_grad()
def start_head_from_probe(head_linear: nn.Linear, encoder: AcousticEncoder, fit: ProbeFit) -> None:
    """The probe's weights into the shortcut's columns (the last ones of the head's input), zero
    on the pooled vector's, the probe's intercept as the bias."""
    pooled = out_dim(encoder.branch.pooling)
    if head_linear.in_features != pooled + fit.weight.shape[1]:
        raise ModelConfigError(
            f"model.probe_init: the head reads {head_linear.in_features} values, the pooled "
            f"vector {pooled} and the probe {fit.weight.shape[1]}"
        )
    head_linear.weight.zero_()
    head_linear.weight[:, pooled:] = torch.as_tensor(fit.weight, dtype=head_linear.weight.dtype)
    head_linear.bias.copy_(torch.as_tensor(fit.bias, dtype=head_linear.bias.dtype))
