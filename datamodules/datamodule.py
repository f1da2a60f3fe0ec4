"""The LightningDataModule: cached features + a split -> normalised, padded `Batch`es.

`prepare_data()` fills the feature cache (a no-op when it is complete), `setup()` reads the
table, the split and the features, fits normalisation on the training part only, and builds the
datasets. The module's `state_dict()` (class names, feature key and config, normalisation
statistics, split settings) is stored by Lightning in every checkpoint, and
`inference_batch(state, features)` turns one utterance's raw features into a `Batch` with it.

Batch conventions the models rely on:
- acoustic (B, T, F) zero-padded, `acoustic_mask` True on real frames; T >= 1.
- words (B, W, D), `word_mask`; W >= 1: when no item of a batch has words (empty
  transcripts) W is 1 and that column is masked out. A row may have an all-False word mask, so
  attention pooling over words must guard against a softmax over nothing.
- word_spans (B, W, 2) long, [first, last + 1) frames with 0 <= first < last <= length of that
  item's real frames (zeros on padded words, and when the item has no frames).
- `max_frames` crops longer utterances (random window in training, centre in evaluation);
  the spans move with the window and words that fall wholly outside it are dropped (their [CLS]
  vector, from the whole transcript, is kept).

Normalisation "speaker" fits each speaker's statistics on that speaker's own frames, test
speakers included: it uses their unlabelled audio, which is standard practice in the SER
literature (and logged). Speakers unknown at inference fall back to the global training stats.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler

from datamodules.batch import Batch
from datamodules.sampling import BucketBatchSampler, EpochSampler
from datamodules.splits import PARTS, load_or_create_split
from datamodules.utterances import read_meta, read_table, table_path

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

log = logging.getLogger(__name__)

MODALITIES = ("acoustic", "lexical")
NORMALIZATIONS = ("global", "speaker", "none")
MIN_STD = 1e-5  # constant feature dimensions are centred, not blown up


class DataModuleError(Exception):
    """A datamodule setting or cached input that cannot be served; the message names it."""


# ---------------------------------------------------------------------------------------
# The features step, reached through one object so tests can substitute a fake.


class FeatureSource:
    """`datamodules.features` (config, key, extract, load), imported when first used."""

    def config(self, encoder: str, layers: str, word_pooling: str) -> Any:
        from datamodules.features import FeatureConfig

        return FeatureConfig(encoder=encoder, layers=layers, word_pooling=word_pooling)

    def key(self, corpus: str, config: Any) -> str:
        from datamodules.features import feature_key

        return feature_key(corpus, config)

    def extract(self, corpus: str, config: Any, modalities: Sequence[str]) -> str:
        from datamodules.features import extract

        return extract(corpus, config, tuple(modalities))

    def load(self, corpus: str, key: str, modalities: Sequence[str]) -> Any:
        from datamodules.features import load

        return load(corpus, key, tuple(modalities))


FEATURES = FeatureSource()


# ---------------------------------------------------------------------------------------
# Normalisation


@dataclass
class Normalizer:
    """Per-dimension z-normalisation of (T, F) frames: global or per-speaker statistics."""

    mode: str
    mean: np.ndarray  # (F,) training-set statistics (also the fallback for unknown speakers)
    std: np.ndarray  # (F,)
    speaker_mean: dict[str, np.ndarray]
    speaker_std: dict[str, np.ndarray]

    @classmethod
    def fit(
        cls,
        frames: Mapping[str, np.ndarray],
        train_ids: Iterable[str],
        speaker_of: Mapping[str, str],
        mode: str = "global",
    ) -> Normalizer:
        """Global stats on the train ids; per-speaker stats on every speaker's own frames."""
        if mode not in NORMALIZATIONS:
            raise DataModuleError(f"normalization must be one of {NORMALIZATIONS}, got '{mode}'")
        mean, std = _moments([frames[u] for u in train_ids])
        speaker_mean: dict[str, np.ndarray] = {}
        speaker_std: dict[str, np.ndarray] = {}
        if mode == "speaker":
            by_speaker: dict[str, list[np.ndarray]] = {}
            for uid, x in frames.items():
                by_speaker.setdefault(speaker_of[uid], []).append(x)
            for spk, xs in by_speaker.items():
                speaker_mean[spk], speaker_std[spk] = _moments(xs)
        return cls(mode, mean, std, speaker_mean, speaker_std)

    def normalize(self, frames: np.ndarray, speaker: str | None = None) -> np.ndarray:
        """(T, F) raw frames -> (T, F) float32 normalised frames."""
        if self.mode == "none":
            return frames.astype(np.float32, copy=False)
        mean, std = self.mean, self.std
        if self.mode == "speaker" and speaker in self.speaker_mean:
            mean, std = self.speaker_mean[speaker], self.speaker_std[speaker]
        return ((frames - mean) / std).astype(np.float32, copy=False)

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain containers only, so checkpoints load with weights_only=True."""
        speakers = sorted(self.speaker_mean)
        return {
            "mode": self.mode,
            "mean": torch.from_numpy(self.mean.astype(np.float32)),
            "std": torch.from_numpy(self.std.astype(np.float32)),
            "speakers": speakers,
            "speaker_mean": _stack([self.speaker_mean[s] for s in speakers], len(self.mean)),
            "speaker_std": _stack([self.speaker_std[s] for s in speakers], len(self.mean)),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Normalizer:
        try:
            speakers = list(state["speakers"])
            sm = np.asarray(state["speaker_mean"], dtype=np.float32)
            ss = np.asarray(state["speaker_std"], dtype=np.float32)
            return cls(
                mode=str(state["mode"]),
                mean=np.asarray(state["mean"], dtype=np.float32),
                std=np.asarray(state["std"], dtype=np.float32),
                speaker_mean={s: sm[i] for i, s in enumerate(speakers)},
                speaker_std={s: ss[i] for i, s in enumerate(speakers)},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataModuleError(f"normalisation state is incomplete: {exc!r}") from exc


def _moments(xs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per dimension over all frames of xs (two passes in float64)."""
    xs = [x for x in xs if len(x)]
    if not xs:
        raise DataModuleError("no acoustic frames to fit the normalisation on")
    n = sum(len(x) for x in xs)
    mean = sum(x.sum(0, dtype=np.float64) for x in xs) / n
    var = sum(((x - mean) ** 2).sum(0) for x in xs) / n
    std = np.sqrt(var)
    std[std < MIN_STD] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def _stack(rows: list[np.ndarray], dim: int) -> Tensor:
    if not rows:
        return torch.zeros(0, dim)
    return torch.from_numpy(np.stack(rows).astype(np.float32))


# ---------------------------------------------------------------------------------------
# Items and collation


@dataclass
class Item:
    """One utterance's model input; arrays are None for modalities not loaded."""

    utterance_id: str
    label: int
    acoustic: np.ndarray | None = None  # (T, F) normalised
    words: np.ndarray | None = None  # (W, D)
    cls: np.ndarray | None = None  # (D,)
    spans: np.ndarray | None = None  # (W, 2) int64


class UtteranceDataset(Dataset):
    """Items of a list of utterances; accepts an index or a (index, crop seed) key."""

    def __init__(
        self,
        ids: Sequence[str],
        labels: Sequence[int],
        speakers: Sequence[str],
        features: Any,
        modalities: Sequence[str],
        normalizer: Normalizer | None,
        max_frames: int | None = None,
        random_crop: bool = False,
    ) -> None:
        self.ids = list(ids)
        self.labels = list(labels)
        self.speakers = list(speakers)
        self.features = features
        self.acoustic = "acoustic" in modalities
        self.lexical = "lexical" in modalities
        self.normalizer = normalizer
        self.max_frames = max_frames
        self.random_crop = random_crop

    def __len__(self) -> int:
        return len(self.ids)

    def length(self, i: int) -> int:
        """Frames (or words, without acoustic) of item i, for bucketing."""
        uid = self.ids[i]
        if self.acoustic:
            n = len(self.features.acoustic[uid])
            return min(n, self.max_frames) if self.max_frames else n
        return len(self.features.words[uid])

    def __getitem__(self, key: int | tuple[int, int]) -> Item:
        i, crop_seed = key if isinstance(key, tuple) else (key, None)
        uid = self.ids[i]
        item = Item(uid, self.labels[i])
        f = self.features
        if self.lexical:
            item.words = np.asarray(f.words[uid], dtype=np.float32)
            item.cls = np.asarray(f.cls[uid], dtype=np.float32)
            item.spans = np.asarray(f.spans[uid], dtype=np.int64).reshape(-1, 2)
        if self.acoustic:
            x = f.acoustic[uid]
            offset = 0
            if self.max_frames and len(x) > self.max_frames:
                room = len(x) - self.max_frames
                if self.random_crop and crop_seed is not None:
                    offset = int(np.random.default_rng(crop_seed).integers(room + 1))
                else:
                    offset = room // 2
                x = x[offset : offset + self.max_frames]
                if item.spans is not None:
                    assert item.words is not None  # loaded together with the spans
                    keep = (item.spans[:, 1] > offset) & (item.spans[:, 0] < offset + len(x))
                    item.words, item.spans = item.words[keep], item.spans[keep] - offset
            speaker = self.speakers[i]
            item.acoustic = (
                self.normalizer.normalize(x, speaker)
                if self.normalizer
                else np.asarray(x, np.float32)
            )
        return item


def collate(items: Sequence[Item]) -> Batch:
    """Pad a list of items into a `Batch` (see the module docstring for the conventions)."""
    b = len(items)
    batch = Batch(
        labels=torch.tensor([it.label for it in items], dtype=torch.long),
        utterance_ids=[it.utterance_id for it in items],
    )
    # Padding is done in numpy: cached arrays are read-only memory maps, which torch
    # cannot wrap without a copy (and a warning); this way each array is copied once.
    # every item of a batch carries the same modalities, so items[0] tells which are present
    frame_lengths: list[int] | None = None
    if items[0].acoustic is not None:
        frames = [cast(np.ndarray, it.acoustic) for it in items]
        frame_lengths = [len(x) for x in frames]
        t, f = max(max(frame_lengths), 1), frames[0].shape[1]
        acoustic = np.zeros((b, t, f), dtype=np.float32)  # (B, T, F)
        for k, x in enumerate(frames):
            acoustic[k, : len(x)] = x
        batch.acoustic = torch.from_numpy(acoustic)
        batch.acoustic_mask = torch.arange(t)[None, :] < torch.tensor(frame_lengths)[:, None]
    if items[0].words is not None:
        item_words = [cast(np.ndarray, it.words) for it in items]
        item_spans = [cast(np.ndarray, it.spans) for it in items]
        item_cls = [cast(np.ndarray, it.cls) for it in items]
        word_lengths = [len(x) for x in item_words]
        w, d = max(max(word_lengths), 1), item_cls[0].shape[-1]
        words = np.zeros((b, w, d), dtype=np.float32)  # (B, W, D)
        spans = np.zeros((b, w, 2), dtype=np.int64)  # (B, W, 2)
        for k in range(b):
            n = word_lengths[k]
            if n:
                words[k, :n] = item_words[k]
                spans[k, :n] = (
                    item_spans[k][:n]
                    if frame_lengths is None
                    else _clip_spans(item_spans[k][:n], frame_lengths[k])
                )
        batch.words = torch.from_numpy(words)
        batch.word_mask = torch.arange(w)[None, :] < torch.tensor(word_lengths)[:, None]
        batch.word_spans = torch.from_numpy(spans)
        batch.cls = torch.from_numpy(np.stack(item_cls).astype(np.float32))
    return batch


def _clip_spans(spans: np.ndarray, n_frames: int) -> np.ndarray:
    """(W, 2) spans forced into [0, n_frames) with at least one frame each (zeros if no frames)."""
    if n_frames <= 0:
        return np.zeros((len(spans), 2), dtype=np.int64)
    first = np.clip(spans[:, 0], 0, n_frames - 1)
    last = np.clip(np.maximum(spans[:, 1], first + 1), 1, n_frames)
    return np.stack([first, last], axis=1)


def inference_batch(
    state: Mapping[str, Any],
    features: Mapping[str, np.ndarray],
    utterance_id: str = "input",
    speaker: str | None = None,
) -> Batch:
    """A one-item `Batch` from raw features (acoustic (T, F), words, cls, spans) and a saved state."""
    modalities = list(state.get("modalities", MODALITIES))
    normalizer = Normalizer.from_state(state["normalizer"]) if state.get("normalizer") else None
    item = Item(utterance_id, -1)
    if "lexical" in modalities and features.get("words") is not None:
        item.words = np.asarray(features["words"], dtype=np.float32)
        item.cls = np.asarray(features["cls"], dtype=np.float32)
        item.spans = np.asarray(features["spans"], dtype=np.int64).reshape(-1, 2)
    if "acoustic" in modalities and features.get("acoustic") is not None:
        x = np.asarray(features["acoustic"], dtype=np.float32)
        item.acoustic = normalizer.normalize(x, speaker) if normalizer else x
    return collate([item])


# ---------------------------------------------------------------------------------------
# The DataModule


class EmotionDataModule(pl.LightningDataModule):
    """Serves `Batch`es of one corpus, protocol and fold; normalisation is fitted on train only."""

    def __init__(
        self,
        corpus: str = "builtin",
        protocol: Literal["sd8020", "loso", "lospko", "speakers"] = "sd8020",
        fold: int = 0,
        test_speakers: list[str] | None = None,
        val_speakers: list[str] | None = None,
        modalities: list[str] = ["acoustic", "lexical"],  # noqa: B006 (jsonargparse reads it)
        encoder: str = "minilm",
        layers: str = "last",
        word_pooling: str = "mean",
        normalization: Literal["global", "speaker", "none"] = "global",
        batch_size: int = 32,
        bucketing: bool = True,
        balanced_sampling: bool = False,
        num_workers: int = 0,
        seed: int = 0,
        max_frames: int | None = None,
    ) -> None:
        super().__init__()
        unknown = [m for m in modalities if m not in MODALITIES]
        if unknown or not modalities:
            raise DataModuleError(
                f"modalities must be a non-empty subset of {MODALITIES}, got {modalities}"
            )
        if normalization not in NORMALIZATIONS:
            raise DataModuleError(
                f"normalization must be one of {NORMALIZATIONS}, got '{normalization}'"
            )
        if batch_size < 1 or num_workers < 0 or (max_frames is not None and max_frames < 1):
            raise DataModuleError("batch_size and max_frames must be >= 1, num_workers >= 0")
        self.save_hyperparameters()
        self.corpus = corpus
        self.protocol = protocol
        self.fold = fold
        self.test_speakers = list(test_speakers) if test_speakers else None
        self.val_speakers = list(val_speakers) if val_speakers else None
        self.modalities = [m for m in MODALITIES if m in modalities]
        self.encoder, self.layers, self.word_pooling = encoder, layers, word_pooling
        self.normalization = normalization
        self.batch_size = batch_size
        self.bucketing = bucketing
        self.balanced_sampling = balanced_sampling
        self.num_workers = num_workers
        self.seed = seed
        self.max_frames = max_frames

        self.feature_config: Any = None
        self.feature_key: str = ""
        self.class_names: list[str] = []
        self.split: dict[str, list[str]] = {}
        self.normalizer: Normalizer | None = None
        self.acoustic_dim = 0
        self.lexical_dim = 0
        self.datasets: dict[str, UtteranceDataset] = {}
        self._extracted = False
        self._loaded_state: dict[str, Any] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def prepare_data(self) -> None:
        # once per datamodule: the CLI's links call it before the trainer does, and a repeat
        # would only re-read the table and re-verify every shard's checksum
        if self._extracted:
            return
        config = FEATURES.config(self.encoder, self.layers, self.word_pooling)
        FEATURES.extract(self.corpus, config, self.modalities)
        self._extracted = True

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:  # fit, then test: set up once
            return
        table = read_table(self.corpus)
        self.class_names = _class_names(self.corpus, table)
        self.split = load_or_create_split(
            self.corpus,
            self.protocol,
            self.fold,
            self.seed,
            self.test_speakers,
            self.val_speakers,
            table=table,
        )
        self.feature_config = FEATURES.config(self.encoder, self.layers, self.word_pooling)
        self.feature_key = FEATURES.key(self.corpus, self.feature_config)
        features = FEATURES.load(self.corpus, self.feature_key, self.modalities)
        self._check_features(features)
        self.split = self._drop_missing(features)
        self.acoustic_dim, self.lexical_dim = _dims(features, self.modalities)

        speaker_of = dict(zip(table["utterance_id"], table["speaker"], strict=True))
        label_of = dict(zip(table["utterance_id"], table["label"], strict=True))
        index = {c: i for i, c in enumerate(self.class_names)}
        if self._loaded_state is not None:  # resumed or rebuilt from a checkpoint
            self._apply_state(self._loaded_state)
        elif "acoustic" in self.modalities:
            self.normalizer = self._fit_normalizer(features, speaker_of)
        for part in PARTS:
            ids = self.split[part]
            self.datasets[part] = UtteranceDataset(
                ids,
                [index[label_of[u]] for u in ids],
                [speaker_of[u] for u in ids],
                features,
                self.modalities,
                self.normalizer,
                self.max_frames,
                random_crop=part == "train",
            )
        log.info(
            "%s %s fold %d: %s utterances, classes %s, features %s",
            self.corpus,
            self.protocol,
            self.fold,
            {p: len(v) for p, v in self.split.items()},
            self.class_names,
            self.feature_key,
        )

    def _fit_normalizer(self, features: Any, speaker_of: Mapping[str, str]) -> Normalizer:
        if self.normalization == "speaker":
            log.warning(
                "normalization='speaker': each speaker's statistics, test speakers included, come "
                "from that speaker's own (unlabelled) frames, as is standard in the SER literature"
            )
        used = {u for part in PARTS for u in self.split[part]}
        frames = {u: x for u, x in features.acoustic.items() if u in used}
        return Normalizer.fit(frames, self.split["train"], speaker_of, self.normalization)

    def _check_features(self, features: Any) -> None:
        for name, attr in (("acoustic", "acoustic"), ("lexical", "words")):
            if name in self.modalities and not getattr(features, attr, None):
                raise DataModuleError(
                    f"features {self.feature_key} of corpus '{self.corpus}' hold no {name} part; "
                    f"run prepare_data() (features.extract) with modalities {self.modalities}"
                )

    def _drop_missing(self, features: Any) -> dict[str, list[str]]:
        """The split without utterances the feature cache lacks (logged; fails if a part empties)."""
        have: set[str] | None = None
        for name, attr in (("acoustic", "acoustic"), ("lexical", "words")):
            if name in self.modalities:
                ids = set(getattr(features, attr))
                have = ids if have is None else have & ids
        assert have is not None  # modalities are a non-empty subset (checked in __init__)
        out = {}
        for part in PARTS:
            kept = [u for u in self.split[part] if u in have]
            if len(kept) < len(self.split[part]):
                log.warning(
                    "%s: %d %s utterances have no cached features and are left out",
                    self.feature_key,
                    len(self.split[part]) - len(kept),
                    part,
                )
            if not kept:
                raise DataModuleError(
                    f"the {part} part of {self.corpus}/{self.protocol} fold {self.fold} is empty "
                    f"(split {len(self.split[part])} ids, features {self.feature_key})"
                )
            out[part] = kept
        return out

    def class_weights(self) -> Tensor:
        """(C,) inverse class frequency on the training part, mean 1 over present classes."""
        counts = np.bincount(self.datasets["train"].labels, minlength=self.num_classes)
        present = counts > 0
        w = np.zeros(self.num_classes)
        w[present] = counts.sum() / (present.sum() * counts[present])
        return torch.tensor(w, dtype=torch.float32)

    # -- loaders --------------------------------------------------------------------------

    def train_dataloader(self) -> DataLoader:
        ds = self._dataset("train")
        weights = None
        if self.balanced_sampling:
            counts = np.bincount(ds.labels, minlength=self.num_classes)
            weights = [1.0 / counts[y] for y in ds.labels]
        sampler = EpochSampler(len(ds), shuffle=True, seed=self.seed, weights=weights)
        return self._loader(ds, sampler, crop=self.max_frames is not None)

    def val_dataloader(self) -> DataLoader:
        ds = self._dataset("val")
        return self._loader(ds, EpochSampler(len(ds), shuffle=False, seed=self.seed))

    def test_dataloader(self) -> DataLoader:
        ds = self._dataset("test")
        return self._loader(ds, EpochSampler(len(ds), shuffle=False, seed=self.seed))

    def predict_dataloader(self) -> DataLoader:
        """The test part in split order, with a plain BatchSampler Lightning can wrap."""
        ds = self._dataset("test")
        sampler = BatchSampler(SequentialSampler(ds), self.batch_size, drop_last=False)
        return DataLoader(ds, batch_sampler=sampler, collate_fn=collate, **self._worker_kwargs())

    def _dataset(self, part: str) -> UtteranceDataset:
        if part not in self.datasets:
            raise DataModuleError("call setup() before asking for a dataloader")
        return self.datasets[part]

    def _loader(
        self, ds: UtteranceDataset, sampler: EpochSampler, crop: bool = False
    ) -> DataLoader:
        lengths = [ds.length(i) for i in range(len(ds))]
        # under DDP each rank keeps its share of the bucketed batches (configs set
        # trainer.use_distributed_sampler: false so Lightning leaves this sampler alone)
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        batches = BucketBatchSampler(
            sampler,
            lengths,
            self.batch_size,
            bucketing=self.bucketing,
            crop_seeds=crop,
            num_replicas=world,
            rank=rank,
        )
        return DataLoader(ds, batch_sampler=batches, collate_fn=collate, **self._worker_kwargs())

    def _worker_kwargs(self) -> dict[str, Any]:
        if self.num_workers == 0:
            return {"num_workers": 0}
        return {"num_workers": self.num_workers, "persistent_workers": True}

    # -- checkpoint state -----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """What inference and resumption need; plain types and tensors only (weights_only=True)."""
        if not self.class_names:
            return {}
        config = self.feature_config
        return {
            "class_names": list(self.class_names),
            "feature_key": self.feature_key,
            "feature_config": asdict(cast("DataclassInstance", config))
            if is_dataclass(config)
            else dict(vars(config)),
            "modalities": list(self.modalities),
            "acoustic_dim": self.acoustic_dim,
            "lexical_dim": self.lexical_dim,
            "normalization": self.normalization,
            "normalizer": self.normalizer.state_dict() if self.normalizer else None,
            "corpus": self.corpus,
            "protocol": self.protocol,
            "fold": self.fold,
            "seed": self.seed,
            "test_speakers": list(self.test_speakers or []),
            "val_speakers": list(self.val_speakers or []),
            "max_frames": self.max_frames,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        self._loaded_state = dict(state_dict)
        if self.datasets:
            self._apply_state(self._loaded_state)

    def _apply_state(self, state: Mapping[str, Any]) -> None:
        """Use a checkpoint's statistics; its classes and features must match this data."""
        if self.class_names and list(state["class_names"]) != self.class_names:
            raise DataModuleError(
                f"checkpoint classes {list(state['class_names'])} differ from corpus "
                f"'{self.corpus}' classes {self.class_names}"
            )
        if self.feature_key and state.get("feature_key") not in (None, self.feature_key):
            log.warning(
                "checkpoint features %s differ from the current %s",
                state.get("feature_key"),
                self.feature_key,
            )
        self.class_names = list(state["class_names"])
        self.normalizer = (
            Normalizer.from_state(state["normalizer"]) if state.get("normalizer") else None
        )
        for ds in self.datasets.values():
            ds.normalizer = self.normalizer


def _class_names(corpus: str, table: Any) -> list[str]:
    """prepare.json "classes" if present, else the sorted labels; every label must be a class."""
    labels = sorted(set(table["label"]))
    classes = list(read_meta(corpus).get("classes") or labels)
    stray = sorted(set(labels) - set(classes))
    if stray:
        raise DataModuleError(
            f"{table_path(corpus)} has labels {stray} outside the classes {classes} of its "
            "prepare.json; prepare the corpus again"
        )
    return classes


def _dims(features: Any, modalities: Sequence[str]) -> tuple[int, int]:
    """(acoustic F, lexical D) from the features meta, else from the first arrays."""
    meta = dict(getattr(features, "meta", None) or {})
    meta_dims = meta.get("dims")
    dims: dict[str, Any] = meta_dims if isinstance(meta_dims, dict) else {}
    acoustic = lexical = 0
    if "acoustic" in modalities:
        known = meta.get("acoustic_dim") or dims.get("acoustic")
        acoustic = int(known or next(iter(features.acoustic.values())).shape[1])
    if "lexical" in modalities:
        known = meta.get("lexical_dim") or dims.get("lexical")
        lexical = int(known or next(iter(features.cls.values())).shape[-1])
    return acoustic, lexical
