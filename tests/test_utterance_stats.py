"""Utterance statistics (`data.utterance_stats`): the values, the per-speaker standardisation,
the batch field, the acoustic branch that reads it, and the checkpoint path to inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

import datamodules.datamodule as dm_module
from datamodules.batch import Batch
from datamodules.dataset import collate, inference_batch
from datamodules.utterance_stats import STATISTICS, stats_dim, utterance_stats
from datamodules.utterances import write_table
from lightning_modules.checkpoint import load_checkpoint
from lightning_modules.model import ModelConfigError
from lightning_modules.system import EmotionClassifier
from tests.test_datamodule import LABELS, F, FakeSource, make_dm, toy_corpus
from tests.test_system import trainer


def test_statistics_of_known_frames() -> None:
    x = np.stack([np.arange(101.0), np.zeros(101), 2.0 * np.arange(101.0) ** 2], axis=1)
    s = utterance_stats(x).reshape(len(STATISTICS), 3)
    row = dict(zip(STATISTICS, s, strict=True))
    assert np.allclose(row["mean"][:2], [50, 0]) and np.isclose(row["std"][0], x[:, 0].std())
    assert np.allclose([row["p1"][0], row["p25"][0], row["p50"][0], row["p99"][0]], [1, 25, 50, 99])
    assert np.allclose(row["abs_delta_mean"][:2], [1, 0]) and np.allclose(row["delta_std"][:2], 0)
    assert row["delta_std"][2] > 0  # a quadratic's differences grow
    assert stats_dim(3) == s.size == 27
    assert np.array_equal(utterance_stats(np.zeros((0, 3))), np.zeros(27))
    one = utterance_stats(np.ones((1, 3)))
    assert np.isfinite(one).all() and np.allclose(one.reshape(9, 3)[1:2], 0)  # no spread


@pytest.fixture
def toy(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_table("toy", toy_corpus(), {"reader": "test", "classes": list(LABELS)})
    monkeypatch.setattr(dm_module, "FEATURES", FakeSource())


def test_batches_carry_statistics_standardised_per_speaker(toy: None) -> None:
    dm = make_dm(protocol="loso", fold=0, modalities=["acoustic"], normalization="speaker")
    assert dm.utterance_stats_dim == 0 and collate([dm.datasets["test"][0]]).utterance_stats is None
    dm = make_dm(
        protocol="loso", fold=0, modalities=["acoustic"], normalization="speaker",
        utterance_stats=True,
    )  # fmt: skip
    assert dm.utterance_stats_dim == stats_dim(F) == 9 * F
    batch = next(iter(dm.test_dataloader()))
    assert batch.utterance_stats.shape == (len(batch), 9 * F)
    for ds in dm.datasets.values():
        for spk in set(ds.speakers):  # every speaker's clips: mean 0, sd 1 per dimension
            rows = np.stack([ds[i].stats for i in range(len(ds)) if ds.speakers[i] == spk])
            assert np.abs(rows.mean(0)).max() < 1e-4
            assert np.abs(rows.std(0) - 1).max() < 1e-3
    with pytest.raises(dm_module.DataModuleError, match="utterance_stats"):
        make_dm(modalities=["lexical"], utterance_stats=True)


def test_global_standardisation_is_fitted_on_the_clips_trained_on(toy: None) -> None:
    dm = make_dm(protocol="loso", fold=0, modalities=["acoustic"], utterance_stats=True)
    train = np.stack([s for s in dm.datasets["train"].stats.values()])
    assert np.abs(train.mean(0)).max() < 1e-4
    assert dm.stats_normalizer.mode == "global" and not dm.stats_normalizer.speaker_mean


def test_a_model_reads_them_and_a_checkpoint_serves_them(toy: None, tmp_path: Path) -> None:
    dm = make_dm(
        protocol="loso", fold=0, modalities=["acoustic"], normalization="speaker",
        utterance_stats=True,
    )  # fmt: skip
    pl.seed_everything(0)
    args = dict(architecture="acoustic", hidden_size=8, num_classes=4, acoustic_dim=F)
    model = EmotionClassifier(**args, utterance_stats_dim=dm.utterance_stats_dim)
    plain = EmotionClassifier(**args)
    assert model.net.encoder.out_dim == plain.net.encoder.out_dim + 9 * F
    t = trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    t.fit(model, datamodule=dm)
    path = tmp_path / "us.ckpt"
    t.save_checkpoint(path)

    loaded = load_checkpoint(path)
    assert loaded.stats_normalizer is not None
    ds = dm.datasets["test"]
    uid, spk = ds.ids[0], ds.speakers[0]
    one = inference_batch(
        {"acoustic": ds.features.acoustic[uid]}, ["acoustic"], loaded.normalizer, uid,
        speaker=spk, stats_normalizer=loaded.stats_normalizer,
    )  # fmt: skip
    ref = collate([ds[0]])
    assert torch.allclose(one.utterance_stats, ref.utterance_stats, atol=1e-5)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded.module(one).logits, model(ref).logits, atol=1e-5)
        # the statistics are read: other statistics, other logits
        other = collate([ds[0]])
        other.utterance_stats = other.utterance_stats + 3.0
        assert not torch.allclose(model(other).logits, model(ref).logits)
    # a batch without them is a clear error, and the hierarchical model refuses them
    with pytest.raises(ModelConfigError, match="utterance_stats"):
        model(Batch(labels=ref.labels, acoustic=ref.acoustic, acoustic_mask=ref.acoustic_mask))
    with pytest.raises(ModelConfigError, match="utterance_stats"):
        EmotionClassifier(architecture="hierarchical", utterance_stats_dim=9)
