"""ComParE_2016 functionals as a model input (`data.utterance_functionals`): the values, the
cache, the datamodule's vectors and refusals, and the same vector at training and prediction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import datamodules.datamodule as dm_module
import datamodules.functionals as fn
from datamodules.audio import SAMPLE_RATE, change_speed, load_audio
from datamodules.corpus import PreparedCorpus
from datamodules.datamodule import DataModuleError, EmotionDataModule
from datamodules.functionals import (
    FUNCTIONALS_DIM,
    ClipFunctionals,
    FunctionalsError,
    clip_functionals,
)
from datamodules.perturb import copy_id, speed_view
from datamodules.utterance_stats import stats_dim
from datamodules.utterances import write_table
from experiments import baselines
from tests.test_datamodule import LABELS, F, FakeSource, make_dm, toy_corpus
from tests.test_perturb import toy_audio_corpus, train_on_tones


def test_a_clips_functionals_are_the_classic_baselines(cache_dir: Path, tmp_path: Path) -> None:
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    x = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + t)).astype(np.float32)
    wav = tmp_path / "tone.wav"
    sf.write(wav, x, SAMPLE_RATE)
    x = load_audio(wav)  # as the file holds it (16-bit)
    mine = clip_functionals(change_speed(x, 1.25))
    assert mine.shape == (FUNCTIONALS_DIM,) and np.isfinite(mine).all()
    # the baseline's sped-up path reads the file at 16 kHz too: the very same vector
    theirs = baselines.functionals([str(wav)], corpus="tone", speed=1.25)[0]
    np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5)
    assert not np.allclose(clip_functionals(x), mine)


def _view(tmp_path: Path, n: int = 3) -> PreparedCorpus:
    write_table("tones", toy_audio_corpus(tmp_path / "wav", 1)[:n], {"reader": "test"})
    return PreparedCorpus.load("tones")


def test_the_cache_is_written_in_chunks_and_resumes(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    view = _view(tmp_path)
    monkeypatch.setattr(fn, "CHUNK", 2)
    calls: list[str] = []
    real = fn.row_functionals
    monkeypatch.setattr(
        fn, "row_functionals", lambda row: calls.append(row["utterance_id"]) or real(row)
    )
    source = ClipFunctionals()
    first = source.load(view)
    assert sorted(first) == sorted(view.table["utterance_id"]) and len(calls) == 3
    chunks = sorted(source.folder(view).glob("chunk-*.npz"))
    assert [c.name for c in chunks] == ["chunk-00000.npz", "chunk-00001.npz"]
    calls.clear()
    again = source.load(view)
    assert calls == [] and all(np.array_equal(first[u], again[u]) for u in first)
    # a half-written chunk is computed again, the other one is read
    chunks[0].write_bytes(b"not an npz")
    source.load(view)
    assert calls == view.table["utterance_id"].tolist()[:2]
    # only the chunks holding the asked clips are touched
    calls.clear()
    chunks[1].unlink()
    assert list(source.load(view, {view.table["utterance_id"].iloc[0]})) == [
        view.table["utterance_id"].iloc[0]
    ]
    assert calls == []
    # a copy played faster is another clip, cached apart
    fast = source.load(speed_view(view, 1.1))
    u = view.table["utterance_id"].iloc[0]
    assert set(fast) == {copy_id(v, 1.1) for v in view.table["utterance_id"]}
    assert not np.allclose(fast[copy_id(u, 1.1)], first[u])
    assert source.folder(speed_view(view, 1.1)) != source.folder(view)


def test_a_changed_or_missing_audio_file_is_not_read_from_the_cache(
    cache_dir: Path, tmp_path: Path
) -> None:
    view = _view(tmp_path, 2)
    source = ClipFunctionals()
    before = source.folder(view)
    source.load(view)
    path = Path(view.table["audio_path"].iloc[0])
    sf.write(path, np.zeros(SAMPLE_RATE // 2, np.float32) + 0.1, SAMPLE_RATE)
    assert source.folder(view) != before
    path.unlink()
    with pytest.raises(FunctionalsError, match=str(path.name)):
        source.load(view)


class FakeFunctionals:
    """A vector per clip id (its copies' vectors differ from the clips')."""

    def __init__(self, fail: bool = False) -> None:
        self.fail, self.views = fail, []

    def load(self, view, ids=None):  # noqa: ANN001, ANN201
        self.views.append(sorted({float(v) for v in view.table.get("speed", [1.0])}))
        if self.fail:
            raise FunctionalsError("Ses01F_000 (a.wav): openSMILE functionals failed: boom")
        out = {}
        for u in view.table["utterance_id"]:
            rng = np.random.default_rng(abs(hash(u)) % 2**32)
            out[u] = rng.normal(size=FUNCTIONALS_DIM).astype(np.float32)
        return out


@pytest.fixture
def toy(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> FakeFunctionals:
    write_table("toy", toy_corpus(), {"reader": "test", "classes": list(LABELS)})
    monkeypatch.setattr(dm_module, "FEATURES", FakeSource())
    fake = FakeFunctionals()
    monkeypatch.setattr(dm_module, "FUNCTIONALS", fake)
    return fake


def test_batches_carry_the_functionals_after_the_statistics(
    toy: FakeFunctionals, monkeypatch: pytest.MonkeyPatch
) -> None:
    dm = make_dm(
        protocol="loso", fold=0, modalities=["acoustic"], normalization="speaker",
        utterance_stats=True, utterance_functionals=True, speed_perturb=[0.9],
    )  # fmt: skip
    assert dm.utterance_stats_dim == stats_dim(F) + FUNCTIONALS_DIM
    assert toy.views == [[1.0], [0.9]]  # the clips and the copies trained on
    batch = next(iter(dm.train_dataloader()))
    assert batch.utterance_stats.shape == (len(batch), stats_dim(F) + FUNCTIONALS_DIM)
    ds = dm.datasets["train"]
    assert any(u.endswith("@sp0.9") for u in ds.ids)
    for spk in set(ds.speakers):  # standardised with the statistics, per speaker
        rows = np.stack([ds[i].stats for i in range(len(ds)) if ds.speakers[i] == spk])
        assert np.abs(rows[:, stats_dim(F) :].mean(0)).max() < 1e-4
    # the statistics part is what it is without the functionals
    plain = make_dm(
        protocol="loso", fold=0, modalities=["acoustic"], normalization="speaker",
        utterance_stats=True, speed_perturb=[0.9],
    )  # fmt: skip
    u = dm.datasets["test"].ids[0]
    np.testing.assert_allclose(
        dm.datasets["test"].stats[u][: stats_dim(F)], plain.datasets["test"].stats[u], atol=1e-5
    )
    assert dm.state_dict()["utterance_functionals"] is True
    assert plain.state_dict()["utterance_functionals"] is False


def test_refusals_name_the_option(toy: FakeFunctionals, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataModuleError, match="utterance_functionals.*utterance_stats"):
        EmotionDataModule(corpus="toy", modalities=["acoustic"], utterance_functionals=True)
    monkeypatch.setattr(dm_module, "FUNCTIONALS", FakeFunctionals(fail=True))
    with pytest.raises(DataModuleError, match="utterance_functionals: Ses01F_000 .*boom"):
        make_dm(modalities=["acoustic"], utterance_stats=True, utterance_functionals=True)


def test_a_trained_model_gets_the_same_vector_at_prediction(
    cache_dir: Path, tmp_path: Path
) -> None:
    from datamodules.dataset import collate
    from experiments.benchmark import recipe_labels
    from experiments.inference import Predictor
    from lightning_modules.checkpoint import load_checkpoint

    root = train_on_tones(
        tmp_path, "acoustic_probe.yaml", "--data.utterance_stats", "speech",
        "--data.utterance_functionals", "true", "--data.speed_perturb", "[1.1]",
    )  # fmt: skip
    metrics = json.loads((root / "metrics.json").read_text())
    assert metrics["config"]["utterance_functionals"] is True
    assert "functionals" in recipe_labels(metrics["config"])
    path = root / "checkpoints" / "best.ckpt"
    loaded = load_checkpoint(path)
    assert loaded.uses_functionals and loaded.stats_set == "speech"
    assert loaded.module.hparams["utterance_stats_dim"] == stats_dim(65, "speech") + 6373

    # the test speaker's clip: the vector the model was tested on is the one prediction builds
    dm = EmotionDataModule(
        corpus="tones", protocol="lospko", modalities=["acoustic"], utterance_stats="speech",
        utterance_functionals=True, speed_perturb=[1.1],
    )  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    ds = dm.datasets["test"]
    ref = collate([ds[0]])
    predictor = Predictor(path)
    row = dm.prepared.table.set_index("utterance_id").loc[ds.ids[0]]
    x, _ = sf.read(row["audio_path"], dtype="float32")
    feats = predictor.features.compute(x, [], {}, ds.ids[0])
    assert feats["functionals"].shape == (FUNCTIONALS_DIM,)
    served = predictor._batch(loaded, feats, ds.ids[0])
    torch.testing.assert_close(served.utterance_stats, ref.utterance_stats, atol=1e-4, rtol=1e-4)
    answer = predictor.predict_file(row["audio_path"], transcript="so it is")
    assert answer.label in LABELS and "acoustic" in answer.timings_ms
