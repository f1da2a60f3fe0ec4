"""MMMLA's fusion over two pretrained branches' posteriors, fitted on cross-fitted posteriors.

Trained end to end on a small corpus, MMMLA's acoustic branch fits its training speakers almost
perfectly, so whatever learns beside it on those speakers learns to follow it (experiments/RESULTS.md, *Fusion
on real audio + real text*). Here both branches are trained models, frozen, read through their
class log-probabilities, and only the GMU and the head learn, on posteriors the acoustic side
produced for speakers it had not seen: each training speaker's from a model trained on the
other training speakers (cross-fitting). At test time the acoustic posteriors are the full
model's.

    x_a = log p_acoustic, x_l = log p_text  (C each)
    h, z = GMU(x_a, x_l)                     (H each; z near 1 trusts the acoustic side)
    logits = W h + b                          (C)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from datamodules.paths import atomic_write_bytes
from datamodules.sampling import inverse_frequency
from lightning_modules.fusion import GMU

EPS = 1e-6  # floor of a probability before its log: a zero would give -inf


class StackingError(Exception):
    """Posteriors or a fusion file that cannot be used; the message names which and why."""


class PosteriorGMU(nn.Module):
    """(B, C) acoustic and (B, C) text log-probabilities -> (B, C) logits, (B, H) gate."""

    def __init__(self, num_classes: int, hidden: int = 16) -> None:
        super().__init__()
        self.gmu = GMU(num_classes, num_classes, hidden)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x_a: Tensor, x_l: Tensor) -> tuple[Tensor, Tensor]:
        h, z = self.gmu(x_a, x_l)
        return self.head(h), z


def log_posteriors(p: np.ndarray) -> Tensor:
    """(N, C) probabilities -> (N, C) float32 log-probabilities, floored at log(EPS)."""
    p = np.asarray(p, np.float64)
    if p.ndim != 2 or not np.isfinite(p).all() or (p < 0).any():
        raise StackingError(
            f"posteriors must be a finite, non-negative (N, C) array; got {p.shape}"
        )
    return torch.from_numpy(np.log(np.clip(p, EPS, 1.0))).float()


@dataclass
class FitSettings:
    """Full-batch training of the fusion: no model selection, so nothing held out is needed."""

    hidden: int = 4
    epochs: int = 100
    lr: float = 0.01
    weight_decay: float = 1e-3
    class_weighting: bool = True  # balanced cross-entropy: the benchmark's figure is UA


def fit_posterior_gmu(
    p_audio: np.ndarray,
    p_text: np.ndarray,
    labels: np.ndarray,
    seed: int = 0,
    settings: FitSettings | None = None,
) -> PosteriorGMU:
    """A `PosteriorGMU` fitted on (N, C) acoustic and text posteriors of labelled utterances."""
    s = settings or FitSettings()
    x_a, x_l = log_posteriors(p_audio), log_posteriors(p_text)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    n, c = x_a.shape
    if x_l.shape != (n, c) or y.shape != (n,):
        raise StackingError(
            f"acoustic {tuple(x_a.shape)}, text {tuple(x_l.shape)} and labels {tuple(y.shape)} "
            "must describe the same utterances and classes"
        )
    if (y < 0).any() or (y >= c).any():
        raise StackingError(f"labels must be in 0..{c - 1} (unlabelled utterances cannot fit)")
    weight = None
    if s.class_weighting:
        weight = torch.tensor(inverse_frequency(y.numpy(), c), dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        model = PosteriorGMU(c, s.hidden)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    model.train()
    for _ in range(s.epochs):
        opt.zero_grad()
        logits, _ = model(x_a, x_l)
        loss_fn(logits, y).backward()
        opt.step()
    return model.eval()


# The settings `select_settings` chooses among: on ~400 utterances a GMU of width 16 trained
# 300 steps fits its training posteriors (train UA 0.97 on RAVDESS + MELD) and no longer
# generalises, so the width, the weight decay and the steps are chosen by cross-validation.
SELECTION_GRID: tuple[FitSettings, ...] = tuple(
    FitSettings(hidden=h, weight_decay=wd, epochs=e)
    for h in (4, 16)
    for wd in (1e-3, 1e-1)
    for e in (100, 300)
)


def select_settings(
    p_audio: np.ndarray,
    p_text: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    seed: int = 0,
    grid: tuple[FitSettings, ...] = SELECTION_GRID,
) -> tuple[FitSettings, list[float]]:
    """The settings of `grid` with the best mean UA over folds that leave out one group
    (speaker groups, so that the choice is made on speakers the fit did not see), and each
    setting's mean UA; the first of the grid on ties. StackingError with fewer than 2 groups."""
    from sklearn.metrics import balanced_accuracy_score  # UA, as experiments.baselines.scores

    groups = np.asarray(groups)
    held = np.unique(groups)
    if len(held) < 2:
        raise StackingError("choosing the fusion's settings needs at least 2 speaker groups")
    means = []
    for settings in grid:
        uas = []
        for g in held:
            fit = groups != g
            model = fit_posterior_gmu(p_audio[fit], p_text[fit], labels[fit], seed, settings)
            fused, _ = fused_probabilities(model, p_audio[~fit], p_text[~fit])
            uas.append(float(balanced_accuracy_score(labels[~fit], fused.argmax(1))))
        means.append(float(np.mean(uas)))
    return grid[int(np.argmax(means))], means


@torch.no_grad()
def fused_probabilities(
    model: PosteriorGMU, p_audio: np.ndarray, p_text: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) fused class probabilities and (N,) mean gate (1 = acoustic) of posteriors."""
    logits, z = model(log_posteriors(p_audio), log_posteriors(p_text))
    return torch.softmax(logits, -1).numpy(), z.mean(-1).numpy()


def save_fusion(model: PosteriorGMU, class_names: list[str], path: Path) -> Path:
    """Write the fusion's weights and classes as an npz (numpy arrays, no pickle), atomically."""
    import io

    arrays = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    np.savez(buf, class_names=np.asarray(class_names, dtype=str), **arrays)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def load_fusion(path: Path) -> tuple[PosteriorGMU, list[str]]:
    """The fusion `save_fusion` wrote, and its class names; StackingError naming the file."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise StackingError(f"cannot read fusion file {path}: {exc}") from exc
    try:
        names = [str(n) for n in arrays.pop("class_names")]
        hidden = int(arrays["head.weight"].shape[1])
        model = PosteriorGMU(len(names), hidden)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()})
    except (KeyError, RuntimeError, IndexError) as exc:
        raise StackingError(f"fusion file {path} is not a posterior GMU: {exc}") from exc
    return model.eval(), names
