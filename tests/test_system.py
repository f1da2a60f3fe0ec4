"""EmotionClassifier: metrics against scikit-learn, class weighting, checkpoints, schedulers."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

from lightning_modules.metrics import build_metrics, summarize
from lightning_modules.model import ModelConfigError
from lightning_modules.system import EmotionClassifier
from tests.model_fakes import FakeDataModule

NAMES = ["ang", "hap", "sad"]


def sklearn_record(y: list[int], p: list[int]) -> dict:
    cm = confusion_matrix(y, p, labels=[0, 1, 2])
    return {
        "wa": accuracy_score(y, p),
        "ua": balanced_accuracy_score(y, p),
        "macro_f1": f1_score(y, p, average="macro", labels=[0, 1, 2], zero_division=0),
        "per_class": {n: cm[i, i] / cm[i].sum() for i, n in enumerate(NAMES)},
        "counts": cm.tolist(),
    }


def assert_matches(record: dict, expected: dict) -> None:
    for key in ("wa", "ua", "macro_f1"):
        assert record[key] == pytest.approx(expected[key], abs=1e-6), key
    assert record["per_class"] == pytest.approx(expected["per_class"], abs=1e-6)
    assert record["confusion"]["counts"] == expected["counts"]
    assert record["confusion"]["labels"] == NAMES
    rows = torch.tensor(record["confusion"]["normalized"])
    assert torch.allclose(rows.sum(1), torch.ones(3, dtype=rows.dtype), atol=1e-5)


def test_metrics_match_sklearn_over_several_updates() -> None:
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 3, (97,), generator=g)
    y[:3] = torch.tensor([0, 1, 2])  # every class present
    p = torch.where(torch.rand(97, generator=g) < 0.6, y, torch.randint(0, 3, (97,), generator=g))
    metrics = build_metrics(3).clone(prefix="test/")
    for chunk in range(0, 97, 10):  # batches of uneven sizes, as in an epoch
        metrics.update(p[chunk : chunk + 10], y[chunk : chunk + 10])
    record = summarize(metrics.compute(), NAMES, prefix="test/", loss=0.5)
    assert record["n"] == 97 and record["loss"] == 0.5
    assert_matches(record, sklearn_record(y.tolist(), p.tolist()))
    # Imbalanced predictions make WA and UA differ: the check above is not vacuous.
    assert record["wa"] != pytest.approx(record["ua"], abs=1e-4)


def trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        **kwargs,
    )


def tiny_model(**kwargs) -> EmotionClassifier:
    args = dict(
        architecture="mmmla",
        hidden_size=8,
        num_classes=3,
        acoustic_dim=6,
        lexical_dim=5,
        class_names=NAMES,
    )
    return EmotionClassifier(**(args | kwargs))


def test_test_stage_results_match_sklearn_on_the_models_predictions(tmp_path: Path) -> None:
    pl.seed_everything(0)
    dm = FakeDataModule()
    model = tiny_model()
    trainer(tmp_path).test(model, datamodule=dm)
    record = model.results["test"]
    model.eval()
    ys, ps, losses = [], [], []
    with torch.no_grad():
        for batch in dm.test_dataloader():
            logits = model(batch).logits
            ys += batch.labels.tolist()
            ps += logits.argmax(-1).tolist()
            losses.append(torch.nn.functional.cross_entropy(logits, batch.labels, reduction="sum"))
    assert record["n"] == len(ys) == 12
    assert_matches(record, sklearn_record(ys, ps))
    assert record["loss"] == pytest.approx(float(sum(losses)) / len(ys), rel=1e-5)


def test_fit_logs_per_class_and_checkpoint_loads_weights_only(tmp_path: Path) -> None:
    pl.seed_everything(0)
    dm = FakeDataModule()
    model = tiny_model(class_weighting=True, scheduler="cosine", warmup_epochs=1)
    t = trainer(tmp_path, max_epochs=2, log_every_n_steps=1)
    t.fit(model, datamodule=dm)
    logged = t.callback_metrics
    for key in ("val/ua", "val/wa", "val/macro_f1", "val/loss", "val/acc_ang", "train/ua"):
        assert key in logged, key
    # Class weights come from the datamodule and travel in the checkpoint.
    assert torch.equal(model.class_weight, dm.class_weights())
    path = tmp_path / "m.ckpt"
    t.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["hyper_parameters"]["class_names"] == NAMES
    assert ckpt["ser"]["modalities"] == ["acoustic", "lexical"]
    assert ckpt["FakeDataModule"]["feature_key"] == "fake-key"
    again = EmotionClassifier.load_from_checkpoint(path, weights_only=True)
    assert torch.equal(again.class_weight, dm.class_weights())
    batch = next(iter(dm.test_dataloader()))
    model.eval()
    again.eval()
    assert torch.allclose(model(batch).logits, again(batch).logits)


def test_class_weighting_changes_the_loss() -> None:
    model = tiny_model(class_weighting=True)
    batch = next(iter(_loader()))
    model.eval()
    plain = model._shared_step(batch, "val")
    model.class_weight.copy_(torch.tensor([5.0, 1.0, 0.1]))
    weighted = model._shared_step(batch, "val")
    assert not torch.isclose(plain, weighted)


def _loader():
    dm = FakeDataModule(batch_size=12)
    dm.setup("fit")
    return dm.train_dataloader()


@pytest.mark.parametrize("scheduler", ["none", "cosine", "plateau"])
def test_schedulers_configure(scheduler: str, tmp_path: Path) -> None:
    model = tiny_model(scheduler=scheduler)
    trainer(tmp_path, fast_dev_run=2).fit(model, datamodule=FakeDataModule())
    assert model.results["val"]["n"] > 0


def test_unknown_scheduler_is_a_clear_error() -> None:
    with pytest.raises(ModelConfigError, match="model.scheduler"):
        tiny_model(scheduler="step")
