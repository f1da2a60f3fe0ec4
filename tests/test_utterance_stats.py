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
from datamodules.features.acoustic import RMS_COLUMN, voiced_frames
from datamodules.utterance_stats import (
    SPEECH_STATISTICS,
    STATISTICS,
    StatsSetError,
    clip_stats,
    stats_dim,
    stats_set,
    utterance_stats,
)
from datamodules.utterances import write_table
from experiments.benchmark import recipe_labels
from experiments.inference import Predictor
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


def test_speech_statistics_are_those_of_the_speech_frames_only() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    speech = np.zeros(200, bool)
    speech[50:150] = True
    x[speech] += 5.0  # the speech part sits higher; the silence around it would dilute it
    s = utterance_stats(x, speech)
    assert s.size == stats_dim(3, "speech") == len(STATISTICS) * 3 + len(SPEECH_STATISTICS) * 3 + 1
    assert np.array_equal(s[: len(STATISTICS) * 3], utterance_stats(x))  # the frame set first
    part = s[len(STATISTICS) * 3 : -1].reshape(len(SPEECH_STATISTICS), 3)
    row = dict(zip(SPEECH_STATISTICS, part, strict=True))
    assert np.allclose(row["speech_mean"], x[speech].mean(0), atol=1e-5)
    assert np.allclose(row["speech_std"], x[speech].std(0), atol=1e-5)
    assert np.allclose(row["speech_p50"], np.median(x[speech], 0), atol=1e-5)
    assert s[-1] == pytest.approx(0.5)  # the fraction of speech frames
    # under 3 speech frames: the speech statistics are those of every frame
    few = np.zeros(200, bool)
    few[:2] = True
    part = utterance_stats(x, few)[len(STATISTICS) * 3 : -1].reshape(len(SPEECH_STATISTICS), 3)
    assert np.allclose(part[0], x.mean(0), atol=1e-5)
    assert utterance_stats(np.zeros((0, 3)), np.zeros(0, bool)).shape == (stats_dim(3, "speech"),)
    with pytest.raises(ValueError, match="speech mask"):
        utterance_stats(x, speech[:10])


def test_clip_stats_find_speech_by_the_raw_frames_energy() -> None:
    rng = np.random.default_rng(1)
    raw = np.abs(rng.normal(size=(120, 65))) * 1e-4  # quiet frames
    raw[30:90, RMS_COLUMN] = 1.0  # loud in the middle
    norm = rng.normal(size=(120, 65))
    s = clip_stats(raw, norm, "speech")
    assert voiced_frames(raw).sum() == 60 and s[-1] == pytest.approx(0.5)
    assert np.allclose(s, utterance_stats(norm, voiced_frames(raw)))
    assert np.array_equal(clip_stats(raw, norm, "frames"), utterance_stats(norm))


def test_the_option_names_a_statistics_set() -> None:
    assert [stats_set(v) for v in (False, None, "false", "none")] == [None] * 4
    assert [stats_set(v) for v in (True, "true", "frames", "Speech")] == [
        "frames", "frames", "frames", "speech",
    ]  # fmt: skip
    with pytest.raises(StatsSetError, match="data.utterance_stats.*'voiced'"):
        stats_set("voiced")
    # benchmark rows tell the sets apart (runs before the sets recorded true)
    assert "utterance stats" in recipe_labels({"utterance_stats": True})
    assert "utterance stats · speech frames" in recipe_labels({"utterance_stats": "speech"})
    assert not any("stats" in x for x in recipe_labels({"utterance_stats": False}))


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


def test_the_speech_set_in_batches_and_its_refusals(toy: None) -> None:
    dm = make_dm(
        protocol="loso", fold=0, modalities=["acoustic"], normalization="speaker",
        utterance_stats="speech",
    )  # fmt: skip
    assert dm.utterance_stats == "speech" and dm.utterance_stats_dim == 14 * F + 1
    ds = dm.datasets["test"]
    raw = ds.features.acoustic[ds.ids[0]]
    expected = clip_stats(raw, dm.normalizer.normalize(raw, ds.speakers[0]), "speech")
    assert np.allclose(
        dm.stats_normalizer.normalize(expected[None], ds.speakers[0])[0], ds[0].stats
    )
    assert next(iter(dm.test_dataloader())).utterance_stats.shape[1] == 14 * F + 1
    with pytest.raises(dm_module.DataModuleError, match="utterance_stats speech.*whisper_base"):
        make_dm(modalities=["acoustic"], utterance_stats="speech", acoustic_features="whisper_base")
    with pytest.raises(dm_module.DataModuleError, match="data.utterance_stats.*'loud'"):
        make_dm(modalities=["acoustic"], utterance_stats="loud")


def test_global_standardisation_is_fitted_on_the_clips_trained_on(toy: None) -> None:
    dm = make_dm(protocol="loso", fold=0, modalities=["acoustic"], utterance_stats=True)
    train = np.stack([s for s in dm.datasets["train"].stats.values()])
    assert np.abs(train.mean(0)).max() < 1e-4
    assert dm.stats_normalizer.mode == "global" and not dm.stats_normalizer.speaker_mean


@pytest.mark.parametrize("which", [True, "speech"])
def test_a_model_reads_them_and_a_checkpoint_serves_them(
    toy: None, tmp_path: Path, which: bool | str
) -> None:
    dm = make_dm(
        protocol="loso", fold=0, modalities=["acoustic"], normalization="speaker",
        utterance_stats=which,
    )  # fmt: skip
    n_stats = stats_dim(F, stats_set(which) or "")
    pl.seed_everything(0)
    args = dict(architecture="acoustic", hidden_size=8, num_classes=4, acoustic_dim=F)
    model = EmotionClassifier(**args, utterance_stats_dim=dm.utterance_stats_dim)
    plain = EmotionClassifier(**args)
    assert model.net.encoder.out_dim == plain.net.encoder.out_dim + n_stats
    t = trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    t.fit(model, datamodule=dm)
    path = tmp_path / "us.ckpt"
    t.save_checkpoint(path)

    loaded = load_checkpoint(path)
    assert loaded.stats_normalizer is not None and loaded.stats_set == stats_set(which)
    ds = dm.datasets["test"]
    uid, spk = ds.ids[0], ds.speakers[0]
    one = inference_batch(
        {"acoustic": ds.features.acoustic[uid]}, ["acoustic"], loaded.normalizer, uid,
        speaker=spk, stats_normalizer=loaded.stats_normalizer, stats_which=loaded.stats_set,
    )  # fmt: skip
    ref = collate([ds[0]])
    assert torch.allclose(one.utterance_stats, ref.utterance_stats, atol=1e-5)
    # experiments.predict's batches read the set the checkpoint records
    served = Predictor(path)._batch(loaded, {"acoustic": ds.features.acoustic[uid]}, uid)
    assert served.utterance_stats.shape == (1, n_stats)
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
