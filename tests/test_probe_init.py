"""model.probe_init (LP-FT): the head starts at the logistic probe on its statistics shortcut."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments.benchmark import recipe_labels
from lightning_modules.model import ModelConfigError
from lightning_modules.probe_init import C_GRID, fit_probe
from lightning_modules.system import EmotionClassifier
from tests.model_fakes import FakeDataModule

REPO = Path(__file__).resolve().parents[1]


def blobs(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 8) points around one centre per class, columns on very different scales."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centres = rng.normal(size=(classes, 8))
    x = centres[y] + rng.normal(scale=1.5, size=(n, 8))
    return x * np.array([1, 10, 100, 0.1, 1, 5, 50, 0.5]) + 3.0, y


def sklearn_probe(c: float, x: np.ndarray, y: np.ndarray):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(x, y)


def test_fit_probe_is_the_standardised_logistic_regression_in_raw_units() -> None:
    train, val, test = blobs(90, 3, 0), blobs(30, 3, 1), blobs(30, 3, 2)
    fit = fit_probe(train, val, num_classes=4)  # class 3 has no training clip
    assert set(fit.val_ua) == set(C_GRID)
    best = max(fit.val_ua.values())
    assert fit.val_ua[fit.c] == best and fit.c == min(c for c, v in fit.val_ua.items() if v == best)
    reference = sklearn_probe(fit.c, *train)
    logits = test[0] @ fit.weight.T + fit.bias  # (N, 4)
    np.testing.assert_allclose(logits[:, :3], reference.decision_function(test[0]), atol=1e-6)
    assert (logits.argmax(1) == reference.predict(test[0])).all()  # the absent class never wins
    assert fit.weight.shape == (4, 8) and not fit.weight[3].any()
    # no val part: the grid's middle value, as experiments.baselines takes it
    assert fit_probe(train, None, num_classes=3).c == C_GRID[len(C_GRID) // 2]


def test_fit_probe_two_classes_gives_two_logits() -> None:
    train, test = blobs(60, 2, 3), blobs(20, 2, 4)
    fit = fit_probe(train, None, num_classes=2)
    logits = test[0] @ fit.weight.T + fit.bias
    reference = sklearn_probe(fit.c, *train)
    np.testing.assert_allclose(logits[:, 1] - logits[:, 0], reference.decision_function(test[0]))
    assert (logits.argmax(1) == reference.predict(test[0])).all()


def frame_stats(part: list) -> tuple[np.ndarray, np.ndarray]:
    """mean ⊕ std (ddof 0) of each fake clip's frames, and the labels."""
    x = np.stack([np.concatenate([f.mean(0).numpy(), f.std(0, unbiased=False).numpy()])
                  for _, _, f, *_ in part])  # fmt: skip
    return x.astype(np.float64), np.array([label for _, label, *_ in part])


@pytest.mark.parametrize("stats_norm", [False, True])
def test_model_starts_with_the_probes_logits(stats_norm: bool) -> None:
    data = FakeDataModule(modalities=["acoustic"])
    data.setup("fit")
    model = EmotionClassifier(
        architecture="acoustic", input_stats=True, stats_norm=stats_norm, probe_init=True,
        hidden_size=4, num_classes=3, acoustic_dim=6, class_names=data.class_names,
    )  # fmt: skip
    rng_before = torch.get_rng_state()
    fit = model.start_from_probe(data)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the training order is not moved
    head = model.net.head.output
    pooled = model.net.encoder.branch.pooling.out_dim  # the BLSTM + attention vector
    assert not head.weight[:, :pooled].any() and head.weight[:, pooled:].abs().sum() > 0
    if stats_norm:
        train_stats = torch.as_tensor(frame_stats(data.parts["train"])[0], dtype=torch.float32)
        running = model.net.encoder.branch.input_norm.norm.running_mean
        torch.testing.assert_close(running, train_stats.mean(0))
    reference = sklearn_probe(fit.c, *frame_stats(data.parts["train"]))
    x_test, _ = frame_stats(data.parts["test"])
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(b).logits for b in data.test_dataloader()]).numpy()
    np.testing.assert_allclose(logits, reference.decision_function(x_test), atol=1e-3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"input_stats": False}, "model.input_stats true"),
        ({"head_hidden": 8}, "model.head_hidden 0"),
        ({"architecture": "mmb"}, "acoustic architecture"),
    ],
)
def test_probe_init_refuses_models_without_a_linear_shortcut(options: dict, message: str) -> None:
    kwargs = {"architecture": "acoustic", "input_stats": True, "probe_init": True, **options}
    with pytest.raises(ModelConfigError, match=message):
        EmotionClassifier(**kwargs)


def test_probe_init_trains_from_the_cli(tmp_path: Path) -> None:
    from tests.test_train_cli import run

    config = REPO / "configs" / "acoustic_attention_tuned.yaml"
    args = ["fit", "--config", str(config), "--model.probe_init", "true"]
    cli = run([*args, "--trainer.max_epochs", "1", "--model.lr", "0"], tmp_path)
    assert cli.model.hparams.probe_init is True
    head = cli.model.net.head.output  # lr 0: still the probe's start, after fit's setup
    pooled = cli.model.net.encoder.branch.pooling.out_dim
    assert not head.weight[:, :pooled].any() and head.weight[:, pooled:].abs().sum() > 0
    assert cli.model.results["test"]["ua"] > 0.5  # the probe alone separates the fake classes
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["probe_init"]["C"] in C_GRID  # the fit's choice, and val UA per C
    assert set(metrics["probe_init"]["val_ua_by_C"]) == {str(c) for c in C_GRID}
    config = metrics["config"]
    assert config["probe_init"] is True  # the record compares runs by it
    assert "probe init" in recipe_labels(config)  # and the benchmark's rows name it


@pytest.mark.parametrize("case", ["train+val", "empty val"])
def test_probe_init_without_a_val_part_takes_the_grids_middle(case: str) -> None:
    data = FakeDataModule(modalities=["acoustic"])
    data.setup("fit")
    if case == "train+val":
        data.fit_on = "train+val"
    else:
        data.parts["val"] = []
    model = EmotionClassifier(
        architecture="acoustic", input_stats=True, probe_init=True,
        hidden_size=4, num_classes=3, acoustic_dim=6, class_names=data.class_names,
    )  # fmt: skip
    fit = model.start_from_probe(data)
    assert fit.val_ua == {} and fit.c == C_GRID[len(C_GRID) // 2]
