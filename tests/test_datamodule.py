"""The datamodule: collation, train-only normalisation, bucketing, sampling, state, real features."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import datamodules.datamodule as dm_module
from datamodules.batch import Batch
from datamodules.corpus import PreparedCorpus
from datamodules.datamodule import DataModuleError, EmotionDataModule
from datamodules.dataset import Item, collate, inference_batch
from datamodules.normalization import Normalizer
from datamodules.sampling import BucketBatchSampler, EpochSampler, padding_fraction
from datamodules.splits import SplitError
from datamodules.utterances import CorpusError, Utterance, Word, write_table

LABELS = ("ang", "hap", "neu", "sad")
F, D = 65, 8


@dataclass
class FakeFeatures:
    """Stands for `datamodules.features.Features` (the same dicts keyed by utterance id)."""

    acoustic: dict[str, np.ndarray] = field(default_factory=dict)
    words: dict[str, np.ndarray] = field(default_factory=dict)
    cls: dict[str, np.ndarray] = field(default_factory=dict)
    spans: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeConfig:
    encoder: str = "minilm"
    layers: str = "last"
    word_pooling: str = "mean"


class FakeSource:
    """Features made from the table: N(0,1) frames, plus `test_offset` on the given ids."""

    def __init__(self, offset_ids: set[str] = frozenset(), offset: float = 0.0) -> None:
        self.offset_ids, self.offset = set(offset_ids), offset
        self.extracted: list[tuple] = []
        self.loaded: list[tuple] = []

    def config(self, encoder: str, layers: str, word_pooling: str) -> FakeConfig:
        return FakeConfig(encoder, layers, word_pooling)

    def key(self, corpus: PreparedCorpus, config: FakeConfig) -> str:
        return f"fake-{config.encoder}-{config.layers}"

    def extract(self, corpus: PreparedCorpus, config: FakeConfig, modalities) -> str:
        self.extracted.append((corpus.name, tuple(modalities)))
        return self.key(corpus, config)

    def load(self, corpus: PreparedCorpus, key: str, modalities) -> FakeFeatures:
        from datamodules.utterances import frame_to_utterances

        self.loaded.append((corpus.name, key, tuple(modalities)))
        out = FakeFeatures(meta={"key": key, "frame_step_s": 0.01})
        for u in frame_to_utterances(corpus.table):
            rng = np.random.default_rng(abs(hash(u.utterance_id)) % 2**32)
            t = int(u.duration_s * 100)
            if "acoustic" in modalities:
                x = rng.normal(size=(t, F)).astype(np.float32) * 3 + 5
                out.acoustic[u.utterance_id] = x + (
                    self.offset if u.utterance_id in self.offset_ids else 0
                )
            if "lexical" in modalities:
                out.words[u.utterance_id] = rng.normal(size=(len(u.words), D)).astype(np.float32)
                out.cls[u.utterance_id] = rng.normal(size=D).astype(np.float32)
                out.spans[u.utterance_id] = np.array(
                    [[int(w.start * 100), int(np.ceil(w.end * 100))] for w in u.words],
                    dtype=np.int64,
                ).reshape(-1, 2)
        return out


def toy_corpus(n_sessions: int = 3, per_speaker: int = 24, seed: int = 0) -> list[Utterance]:
    """IEMOCAP-shaped: sessions of two speakers, durations 0.5-6 s, 0-6 timed words."""
    rng = np.random.default_rng(seed)
    out = []
    for s in range(1, n_sessions + 1):
        for sex in "FM":
            speaker = f"Ses0{s}{sex}"
            for i in range(per_speaker):
                dur = float(np.round(rng.uniform(0.5, 6.0), 2))
                n_words = int(rng.integers(0, 7)) if i % 5 else 0  # some empty transcripts
                edges = np.sort(rng.uniform(0, dur, size=2 * n_words))
                words = [
                    Word(f"w{j}", float(edges[2 * j]), float(edges[2 * j + 1]))
                    for j in range(n_words)
                ]
                out.append(
                    Utterance(
                        utterance_id=f"{speaker}_{i:03d}",
                        speaker=speaker,
                        session=f"Ses0{s}",
                        label=LABELS[(i + s) % 4],
                        duration_s=dur,
                        transcript=" ".join(w.text for w in words),
                        words=words,
                    )
                )
    return out


@pytest.fixture
def source(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSource:
    write_table("toy", toy_corpus(), {"reader": "test", "classes": list(LABELS)})
    fake = FakeSource()
    monkeypatch.setattr(dm_module, "FEATURES", fake)
    return fake


def make_dm(**kwargs) -> EmotionDataModule:
    kwargs = {"corpus": "toy", "batch_size": 8, **kwargs}
    dm = EmotionDataModule(**kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def all_batches(loader) -> list[Batch]:
    return list(loader)


def test_batches_are_padded_masked_and_spanned(source: FakeSource) -> None:
    dm = make_dm()
    assert source.extracted == [("toy", ("acoustic", "lexical"))]
    assert dm.class_names == list(LABELS) and dm.num_classes == 4
    assert (dm.acoustic_dim, dm.lexical_dim, dm.feature_key) == (F, D, "fake-minilm-last")
    seen = set()
    for batch in all_batches(dm.train_dataloader()):
        b, t, f = batch.acoustic.shape
        assert f == F and batch.acoustic_mask.shape == (b, t)
        assert batch.words.shape[:2] == batch.word_mask.shape and batch.words.shape[2] == D
        assert batch.cls.shape == (b, D) and batch.word_spans.dtype == torch.long
        assert batch.labels.shape == (b,) and len(batch.utterance_ids) == b
        # padding is zero and masked; masks are prefixes
        assert (batch.acoustic[~batch.acoustic_mask] == 0).all()
        assert (batch.words[~batch.word_mask] == 0).all()
        lengths = batch.acoustic_lengths
        assert (batch.acoustic_mask.cumsum(1).max(1).values == lengths).all()
        spans = batch.word_spans
        assert (spans[~batch.word_mask] == 0).all()
        real = spans[batch.word_mask]
        frame_len = lengths.unsqueeze(1).expand(-1, spans.shape[1])[batch.word_mask]
        assert (real[:, 0] >= 0).all() and (real[:, 0] < real[:, 1]).all()
        assert (real[:, 1] <= frame_len).all()
        seen.update(batch.utterance_ids)
    assert seen == set(dm.split["train"])


def test_batch_where_no_item_has_words(source: FakeSource) -> None:
    dm = make_dm()
    ds = dm.datasets["train"]
    empty = [i for i in range(len(ds)) if len(ds[i].words) == 0][:3]
    assert len(empty) == 3
    batch = collate([ds[i] for i in empty])
    assert batch.words.shape == (3, 1, D) and not batch.word_mask.any()
    assert (batch.word_lengths == 0).all() and batch.word_spans.shape == (3, 1, 2)


def test_normalisation_is_fitted_on_train_only(cache_dir: Path, monkeypatch) -> None:
    write_table("toy", toy_corpus(), {"reader": "test", "classes": list(LABELS)})
    monkeypatch.setattr(dm_module, "FEATURES", FakeSource())
    clean = make_dm(protocol="loso", fold=0)
    test_ids = set(clean.split["test"]) | set(clean.split["val"])
    monkeypatch.setattr(dm_module, "FEATURES", FakeSource(test_ids, offset=1000.0))
    shifted = make_dm(protocol="loso", fold=0)
    # a huge offset on val/test frames leaves the statistics untouched
    np.testing.assert_allclose(shifted.normalizer.mean, clean.normalizer.mean, rtol=1e-6)
    np.testing.assert_allclose(shifted.normalizer.std, clean.normalizer.std, rtol=1e-6)
    train = torch.cat([b.acoustic[b.acoustic_mask] for b in shifted.train_dataloader()])
    assert train.mean(0).abs().max() < 1e-3 and (train.std(0) - 1).abs().max() < 1e-3
    test = torch.cat([b.acoustic[b.acoustic_mask] for b in shifted.test_dataloader()])
    assert test.mean() > 100  # the offset is still there: test data was not used to fit


def test_fit_on_train_and_val_trains_on_both_and_tests_the_same(
    cache_dir: Path, monkeypatch
) -> None:
    write_table("toy", toy_corpus(), {"reader": "test", "classes": list(LABELS)})
    monkeypatch.setattr(dm_module, "FEATURES", FakeSource())
    clean = make_dm(protocol="loso", fold=0)
    monkeypatch.setattr(dm_module, "FEATURES", FakeSource(set(clean.split["val"]), offset=1000.0))
    train_only = make_dm(protocol="loso", fold=0)
    refit = make_dm(protocol="loso", fold=0, fit_on="train+val")
    assert refit.split == train_only.split  # the split itself is unchanged
    assert refit.datasets["train"].ids == [*refit.split["train"], *refit.split["val"]]
    for part in ("val", "test"):
        assert refit.datasets[part].ids == train_only.datasets[part].ids
    # global statistics come from every utterance trained on: the val offset now shows
    assert train_only.normalizer.mean.max() < 10 < refit.normalizer.mean.max()
    with pytest.raises(DataModuleError, match="fit_on"):
        EmotionDataModule(corpus="toy", fit_on="val")


def test_speaker_normalisation_uses_each_speakers_frames(cache_dir: Path, monkeypatch) -> None:
    write_table("toy", toy_corpus(), {"reader": "test", "classes": list(LABELS)})
    table_ids = [u.utterance_id for u in toy_corpus()]
    offset_ids = {u for u in table_ids if u.startswith("Ses01F")}
    monkeypatch.setattr(dm_module, "FEATURES", FakeSource(offset_ids, offset=50.0))
    dm = make_dm(protocol="lospko", fold=0, normalization="speaker")  # test = Ses01F
    test = torch.cat([b.acoustic[b.acoustic_mask] for b in dm.test_dataloader()])
    assert test.mean().abs() < 0.05 and (test.std() - 1).abs() < 0.05
    assert dm.normalizer.mean.max() < 10  # the global fallback is still train-only
    x = np.full((3, F), 5.0, dtype=np.float32)
    assert np.allclose(
        dm.normalizer.normalize(x, "unknown"), (x - dm.normalizer.mean) / dm.normalizer.std
    )


def test_modalities_not_requested_are_not_loaded(source: FakeSource) -> None:
    dm = make_dm(modalities=["acoustic"])
    assert source.loaded[-1][2] == ("acoustic",)
    batch = next(iter(dm.train_dataloader()))
    assert batch.words is None and batch.word_mask is None and batch.cls is None
    assert batch.word_spans is None and batch.acoustic is not None
    dm = make_dm(modalities=["lexical"])
    batch = next(iter(dm.val_dataloader()))
    assert batch.acoustic is None and batch.acoustic_mask is None and batch.words is not None
    assert dm.normalizer is None and dm.acoustic_dim == 0


def test_bucketing_reduces_padding_and_covers_the_epoch() -> None:
    lengths = np.random.default_rng(0).integers(50, 800, size=1000)
    fractions = {}
    for bucketing in (False, True):
        sampler = BucketBatchSampler(
            EpochSampler(1000, shuffle=True, seed=1), lengths, 32, bucketing
        )
        batches = list(sampler)
        assert len(batches) == len(sampler) == 32
        assert sorted(i for b in batches for i in b) == list(range(1000))
        fractions[bucketing] = padding_fraction(lengths, batches)
    assert fractions[True] < 0.1 < 0.3 < fractions[False]


def test_sampling_is_seeded_and_epoch_dependent() -> None:
    lengths = np.arange(100)

    def epoch(seed: int, e: int) -> list[list[int]]:
        s = BucketBatchSampler(EpochSampler(100, True, seed), lengths, 8)
        s.set_epoch(e)
        return list(s)

    assert epoch(0, 0) == epoch(0, 0)
    assert epoch(0, 1) != epoch(0, 0) and epoch(1, 0) != epoch(0, 0)
    eval_order = list(BucketBatchSampler(EpochSampler(100, False), lengths, 8))
    assert eval_order == list(BucketBatchSampler(EpochSampler(100, False), lengths, 8))


def test_loader_is_deterministic_and_set_epoch_reaches_it(source: FakeSource) -> None:
    dm = make_dm(max_frames=150)
    first = [b.utterance_ids for b in dm.train_dataloader()]
    assert first == [b.utterance_ids for b in make_dm(max_frames=150).train_dataloader()]
    loader = dm.train_dataloader()
    loader.batch_sampler.sampler.set_epoch(1)  # where Lightning's _set_sampler_epoch calls it
    assert [b.utterance_ids for b in loader] != first
    assert max(b.acoustic.shape[1] for b in loader) <= 150


def test_crop_keeps_spans_consistent(source: FakeSource) -> None:
    dm = make_dm(max_frames=120, modalities=["acoustic", "lexical"])
    ds = dm.datasets["train"]
    full = dm.datasets["train"].features
    for i in range(len(ds)):
        uid = ds.ids[i]
        a, b = ds[(i, 7)], ds[(i, 7)]
        assert np.array_equal(a.acoustic, b.acoustic)  # the crop seed fixes the window
        assert len(a.acoustic) == min(120, len(full.acoustic[uid]))
        if len(full.acoustic[uid]) > 120 and len(a.spans):
            # the cropped frames equal the normalised raw frames starting at the same offset
            raw = dm.normalizer.normalize(full.acoustic[uid], None)
            offset = next(o for o in range(len(raw)) if np.allclose(raw[o], a.acoustic[0]))
            orig = full.spans[uid]
            kept = (orig[:, 1] > offset) & (orig[:, 0] < offset + 120)
            assert np.array_equal(a.spans, orig[kept] - offset)
    batch = collate([ds[(i, 3)] for i in range(len(ds))])
    real = batch.word_spans[batch.word_mask]
    lengths = batch.acoustic_lengths.unsqueeze(1).expand(-1, batch.word_spans.shape[1])[
        batch.word_mask
    ]
    assert (
        (real[:, 0] >= 0).all()
        and (real[:, 1] <= lengths).all()
        and (real[:, 0] < real[:, 1]).all()
    )


def test_balanced_sampling_evens_out_classes(cache_dir: Path, monkeypatch) -> None:
    utts = toy_corpus(per_speaker=40)
    for k, u in enumerate(utts):  # 70% neutral
        u.label = "neu" if k % 10 < 7 else LABELS[k % 4]
    write_table("toy", utts, {"reader": "test"})
    monkeypatch.setattr(dm_module, "FEATURES", FakeSource())
    counts = {}
    for balanced in (False, True):
        dm = make_dm(balanced_sampling=balanced, bucketing=True)
        labels = torch.cat([b.labels for b in dm.train_dataloader()])
        counts[balanced] = torch.bincount(labels, minlength=4).float() / len(labels)
    neu = dm.class_names.index("neu")
    assert counts[False][neu] > 0.6 and counts[True][neu] < 0.4
    w = dm.class_weights()
    assert w.shape == (4,) and w[neu] == w.min()


def test_training_order_follows_the_run_seed(source: FakeSource) -> None:
    """The split's seed fixes the split; the run's seed (seed_everything) the batch order: two
    seeds of one split must not train on the very same sequence of batches."""
    dm = make_dm(bucketing=True)

    def order(run_seed: int) -> list[list[str]]:
        torch.manual_seed(run_seed)  # what seed_everything does for torch
        loader = dm.train_dataloader()
        loader.batch_sampler.sampler.set_epoch(0)
        return [list(b.utterance_ids) for b in loader]

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert sorted(sum(order(0), [])) == sorted(sum(order(1), []))  # the same utterances


def test_state_round_trips_through_a_weights_only_checkpoint(
    source: FakeSource, tmp_path: Path
) -> None:
    dm = make_dm(normalization="speaker")
    path = tmp_path / "state.pt"
    torch.save({"EmotionDataModule": dm.state_dict()}, path)
    state = torch.load(path, weights_only=True)["EmotionDataModule"]
    assert state["class_names"] == list(LABELS) and state["feature_key"] == "fake-minilm-last"
    assert state["feature_config"] == {
        "encoder": "minilm",
        "layers": "last",
        "word_pooling": "mean",
    }
    assert (state["corpus"], state["protocol"], state["fold"], state["seed"]) == (
        "toy",
        "sd8020",
        0,
        0,
    )
    restored = Normalizer.from_state(state["normalizer"])
    x = np.random.default_rng(0).normal(size=(10, F)).astype(np.float32)
    for spk in ("Ses01F", None):
        assert np.allclose(restored.normalize(x, spk), dm.normalizer.normalize(x, spk))
    # a fresh module given the state uses its statistics, not refitted ones
    other = EmotionDataModule(corpus="toy", batch_size=8, normalization="speaker", protocol="loso")
    other.load_state_dict(state)
    other.setup("fit")
    assert np.allclose(other.normalizer.mean, dm.normalizer.mean)
    # and inference builds the same batch the test loader does
    ds = dm.datasets["test"]
    uid = ds.ids[0]
    f = ds.features
    raw = {
        "acoustic": f.acoustic[uid],
        "words": f.words[uid],
        "cls": f.cls[uid],
        "spans": f.spans[uid],
    }
    one = inference_batch(raw, state["modalities"], restored, uid, speaker=ds.speakers[0])
    ref = collate([ds[0]])
    assert torch.allclose(one.acoustic, ref.acoustic) and torch.equal(
        one.word_spans, ref.word_spans
    )
    assert one.labels.tolist() == [-1]


def test_excluded_speakers_feed_no_part_and_travel_in_the_state(source: FakeSource) -> None:
    dm = make_dm(protocol="speakers", test_speakers=["Ses02F"], exclude_speakers=["Ses01F"])
    seen = {u.rsplit("_", 1)[0] for part in ("train", "val", "test") for u in dm.split[part]}
    assert seen == {"Ses01M", "Ses02F", "Ses02M", "Ses03F", "Ses03M"}
    assert dm.state_dict()["exclude_speakers"] == ["Ses01F"]
    with pytest.raises(SplitError, match="nobody"):
        make_dm(protocol="speakers", test_speakers=["Ses02F"], exclude_speakers=["nobody"])


def test_bad_settings_fail_clearly(source: FakeSource) -> None:
    with pytest.raises(DataModuleError, match="modalities"):
        EmotionDataModule(corpus="toy", modalities=["video"])
    with pytest.raises(DataModuleError, match="normalization"):
        EmotionDataModule(corpus="toy", normalization="minmax")
    dm = EmotionDataModule(corpus="toy")
    with pytest.raises(DataModuleError, match="setup"):
        dm.train_dataloader()
    write_table("toy", toy_corpus(), {"reader": "test", "classes": ["ang", "hap"]})
    with pytest.raises(CorpusError, match=r"utterances\.csv.*outside the classes"):
        make_dm()


def test_workers_and_lightning_device_transfer(source: FakeSource) -> None:
    from lightning_fabric.utilities.apply_func import move_data_to_device

    dm = make_dm(num_workers=1, max_frames=100)
    loader = dm.train_dataloader()
    assert loader.persistent_workers and loader.num_workers == 1
    batches = list(loader)
    assert sorted(u for b in batches for u in b.utterance_ids) == sorted(dm.split["train"])
    moved = move_data_to_device(batches[0], torch.device("cpu"))
    assert isinstance(moved, Batch) and moved.acoustic.shape == batches[0].acoustic.shape
    assert not make_dm().train_dataloader().persistent_workers


def test_items_dataclass_collates_alone() -> None:
    item = Item("x", 2, acoustic=np.ones((4, F), np.float32))
    batch = collate([item])
    assert (
        batch.acoustic.shape == (1, 4, F) and batch.words is None and batch.labels.tolist() == [2]
    )
    assert isinstance(Normalizer.fit({"x": item.acoustic}, ["x"], {"x": "s"}).std, np.ndarray)


def test_real_features_end_to_end_on_ravdess(
    ravdess_root: Path, cache_dir: Path, tmp_path: Path
) -> None:
    """12 RAVDESS clips (3 actors x 4 emotions): real openSMILE + MiniLM cache -> batches."""
    from datamodules.corpora import ravdess
    from datamodules.features import extract

    classes = ["neutral", "happy", "sad", "angry"]
    utts = ravdess.read(ravdess_root, ravdess.RavdessOptions(classes=classes)).utterances
    actors = ("Actor_01", "Actor_02", "Actor_03")
    pick = [
        u
        for u in utts
        if u.speaker in actors
        and u.extra["repetition"] == 1
        and u.extra["intensity"] == "normal"
        and u.extra["statement"].startswith("Kids")
    ]
    assert len(pick) == 12
    write_table("ravmini", pick, {"reader": "ravdess", "classes": classes})
    dm = EmotionDataModule(corpus="ravmini", protocol="lospko", fold=0, batch_size=4)
    dm.prepare_data()
    dm.setup("fit")
    assert (dm.acoustic_dim, dm.lexical_dim, dm.class_names) == (65, 384, classes)
    assert dm.feature_key.startswith("compare_2016-minilm-last-mean-")
    assert {u.split("-")[-1] for u in dm.split["test"]} == {"01"}  # Actor_01 only
    report = extract(dm.prepared, dm.feature_config, dm.modalities)  # cached: nothing to do
    assert report.key == dm.feature_key and report.done() == {}
    batches = list(dm.train_dataloader())
    frames = torch.cat([b.acoustic[b.acoustic_mask] for b in batches])
    assert frames.mean(0).abs().max() < 1e-3 and (frames.std(0) - 1).abs().max() < 0.05
    for b in batches + list(dm.test_dataloader()):
        assert b.acoustic.shape[2] == 65 and b.words.shape[2] == 384 and b.word_mask.all()
        real, lengths = b.word_spans[b.word_mask], b.acoustic_lengths
        per_word = lengths.unsqueeze(1).expand(-1, b.word_spans.shape[1])[b.word_mask]
        assert (real[:, 0] < real[:, 1]).all() and (real[:, 1] <= per_word).all()
    path = tmp_path / "dm.pt"
    torch.save(dm.state_dict(), path)
    state = torch.load(path, weights_only=True)
    assert state["feature_key"] == dm.feature_key and state["feature_config"]["encoder"] == "minilm"


def test_lightning_fit_reshuffles_per_epoch_and_checkpoints_the_state(
    source: FakeSource, tmp_path: Path
) -> None:
    import pytorch_lightning as pl

    class Probe(pl.LightningModule):
        """Mean-pools frames into a linear layer; records each epoch's batch order."""

        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(F, 4)
            self.orders: dict[int, list[list[str]]] = {}

        def training_step(self, batch: Batch, _: int) -> torch.Tensor:
            self.orders.setdefault(self.current_epoch, []).append(batch.utterance_ids)
            m = batch.acoustic_mask.unsqueeze(-1).float()
            x = (batch.acoustic * m).sum(1) / m.sum(1)
            return torch.nn.functional.cross_entropy(self.linear(x), batch.labels)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    dm = EmotionDataModule(corpus="toy", batch_size=8)
    probe = Probe()
    trainer = pl.Trainer(
        max_epochs=2,
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(probe, datamodule=dm)
    assert probe.orders[0] != probe.orders[1]
    assert sorted(sum(probe.orders[1], [])) == sorted(dm.split["train"])
    (ckpt,) = (tmp_path / "checkpoints").glob("*.ckpt")
    state = torch.load(ckpt, weights_only=True)["EmotionDataModule"]
    assert state["class_names"] == list(LABELS) and state["normalizer"]["mean"].shape == (F,)


def test_bucket_batches_shard_across_ddp_ranks() -> None:
    """Two ranks see disjoint batches (up to the padding repeat) and the same number of them."""
    from datamodules.sampling import BucketBatchSampler, EpochSampler

    lengths = list(range(1, 102))
    shards = []
    for rank in range(2):
        sampler = EpochSampler(len(lengths), shuffle=True, seed=3)
        bs = BucketBatchSampler(sampler, lengths, 8, num_replicas=2, rank=rank)
        shards.append(list(bs))
        assert len(shards[-1]) == len(bs)
    assert len(shards[0]) == len(shards[1]) == 7  # 13 batches padded to 14
    seen = [i for shard in shards for batch in shard for i in batch]
    assert set(seen) == set(range(len(lengths)))
    assert len(seen) - len(set(seen)) <= 8  # only the one repeated batch


def test_long_utterance_is_cropped_by_default_and_named(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue #15: one 10-minute recording must not make every batch it lands in 10 minutes long."""
    utts = toy_corpus()
    utts[0].duration_s = 600.0
    write_table("toy", utts, {"reader": "test", "classes": list(LABELS)})
    monkeypatch.setattr(dm_module, "FEATURES", FakeSource())
    with caplog.at_level("WARNING"):
        dm = make_dm(modalities=["acoustic"])
    assert dm.max_frames == dm_module.DEFAULT_MAX_FRAMES
    assert f"{utts[0].utterance_id} (60000 frames)" in caplog.text
    longest = max(b.acoustic.shape[1] for loader in (dm.train_dataloader(), dm.val_dataloader(),
                                                     dm.test_dataloader()) for b in loader)  # fmt: skip
    assert longest == dm_module.DEFAULT_MAX_FRAMES
