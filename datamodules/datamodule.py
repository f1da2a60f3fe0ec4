"""The LightningDataModule: cached features + a split -> normalised, padded `Batch`es.

`prepare_data()` fills the feature cache (a no-op when it is complete), `setup()` reads the
prepared corpus once, the split and the features, fits normalisation on the training part only,
and builds the datasets (`datamodules.dataset`; batch conventions there). The module's
`state_dict()` (class names, feature key and config, normalisation statistics, split settings)
is stored by Lightning in every checkpoint for resuming, and the model's checkpoint record
(`lightning_modules.checkpoint`) copies what prediction needs from it.

`transcripts` chooses the words of training and validation ("gold" or "asr", from a corpus
prepared with `--transcripts both` or `asr`), `test_transcripts` those of the test part
(default: the same), so gold/gold, gold->asr (a deployed model hears recognised words) and
asr/asr are config values. Each source has its own feature key; acoustic shards are shared.

Normalisation "speaker" fits each speaker's statistics on that speaker's own frames, test
speakers included: it uses their unlabelled audio, which is standard practice in the SER
literature (and logged). Speakers unknown at inference fall back to the global training stats.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from datamodules.corpus import PreparedCorpus
from datamodules.dataset import UtteranceDataset, collate
from datamodules.functionals import FUNCTIONALS_DIM, ClipFunctionals, FunctionalsError
from datamodules.normalization import NORMALIZATIONS, Normalizer
from datamodules.perturb import PerturbError, check_factors, copy_id, speed_view
from datamodules.sampling import BucketBatchSampler, EpochSampler, inverse_frequency
from datamodules.splits import DEFAULT_FOLDS, PARTS, load_or_create_split
from datamodules.utterance_stats import (
    StatsSetError,
    clip_stats,
    fit_stats_normalizer,
    standardised,
    stats_dim,
    stats_set,
)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

log = logging.getLogger(__name__)

MODALITIES = ("acoustic", "lexical")
# 30 s of 10 ms frames: one long recording must not exhaust memory (a batch is padded to its
# longest item); longer utterances are cropped to a window, named in a warning. None: no cap.
DEFAULT_MAX_FRAMES = 3000
TRANSCRIPTS = ("gold", "asr")
FIT_ON = ("train", "train+val")  # the parts a model is trained on


class DataModuleError(Exception):
    """A datamodule setting or cached input that cannot be served; the message names it."""


# ---------------------------------------------------------------------------------------
# The features step, reached through one object so tests can substitute a fake.


class FeatureSource:
    """`datamodules.features` (config, key, extract, load), imported when first used."""

    def config(self, encoder: str, layers: str, word_pooling: str, **acoustic: str) -> Any:
        """`acoustic`: acoustic_features, acoustic_layer (FeatureConfig fields)."""
        from datamodules.features import FeatureConfig

        return FeatureConfig(encoder=encoder, layers=layers, word_pooling=word_pooling, **acoustic)

    def key(self, corpus: PreparedCorpus, config: Any) -> str:
        from datamodules.features import feature_key

        return feature_key(corpus, config)

    def extract(
        self, corpus: PreparedCorpus, config: Any, modalities: Sequence[str], **options: Any
    ) -> Any:
        """`options`: device (where a neural acoustic front end runs)."""
        from datamodules.features import extract

        return extract(corpus, config, tuple(modalities), **options)

    def load(self, corpus: PreparedCorpus, key: str, modalities: Sequence[str]) -> Any:
        from datamodules.features import load

        return load(corpus, key, tuple(modalities))


FEATURES = FeatureSource()
FUNCTIONALS = ClipFunctionals()  # data.utterance_functionals (tests swap it, as FEATURES)


# ---------------------------------------------------------------------------------------
# The DataModule


class EmotionDataModule(pl.LightningDataModule):
    """Serves `Batch`es of one corpus, protocol and fold; normalisation is fitted on train only."""

    def __init__(
        self,
        corpus: str = "builtin",
        protocol: Literal[
            "sd8020", "loso", "lospko", "speakers", "official", "speaker_kfold"
        ] = "sd8020",
        fold: int = 0,
        folds: int = DEFAULT_FOLDS,
        test_speakers: list[str] | None = None,
        val_speakers: list[str] | None = None,
        exclude_speakers: list[str] | None = None,
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
        max_frames: int | None = DEFAULT_MAX_FRAMES,
        acoustic_features: str = "compare_lld",
        acoustic_layer: int | str = "last",
        feature_device: str = "cpu",
        transcripts: Literal["gold", "asr"] = "gold",
        test_transcripts: Literal["gold", "asr"] | None = None,
        fit_on: Literal["train", "train+val"] = "train",
        utterance_stats: bool | str = False,
        speed_perturb: list[float] | None = None,
        utterance_functionals: bool = False,
    ) -> None:
        """`acoustic_features`: compare_lld, whisper_tiny, whisper_base or hf:<local path>
        (`acoustic_layer`: an index, last or all for hf:); `feature_device`: cpu, cuda or auto,
        where a neural front end runs when the cache is filled. `fit_on` "train+val" trains
        on the val speakers too (the refit of `experiments.refit`; val figures are then
        in-sample); the split and the test part are unchanged. `utterance_stats` (true or
        "frames"; "speech" adds statistics over the speech frames, ComParE LLDs only) adds each
        clip's frame statistics, standardised per speaker (`datamodules.utterance_stats`).
        `speed_perturb` (e.g. [0.9, 1.1]) also trains on a copy of each training clip played at
        each factor (`datamodules.perturb`); val and test are never perturbed.
        `utterance_functionals` follows those statistics by the clip's 6373 ComParE_2016
        functionals (`datamodules.functionals`), standardised with them."""
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
        bad = [t for t in (transcripts, test_transcripts) if t not in (*TRANSCRIPTS, None)]
        if bad:
            raise DataModuleError(f"transcripts must be one of {TRANSCRIPTS}, got '{bad[0]}'")
        if fit_on not in FIT_ON:
            raise DataModuleError(f"fit_on must be one of {FIT_ON}, got '{fit_on}'")
        try:
            self.speed_perturb = check_factors(speed_perturb)
        except PerturbError as exc:
            raise DataModuleError(str(exc)) from exc
        try:
            stats_which = stats_set(utterance_stats)
        except StatsSetError as exc:
            raise DataModuleError(str(exc)) from exc
        if stats_which == "speech" and acoustic_features != "compare_lld":
            raise DataModuleError(
                "data.utterance_stats speech finds speech frames by the RMS energy of ComParE "
                f"LLD frames; acoustic_features is '{acoustic_features}' (use true)"
            )
        if utterance_functionals and not stats_which:
            raise DataModuleError(
                "data.utterance_functionals follows the utterance statistics: set "
                "data.utterance_stats too (true or speech)"
            )
        if batch_size < 1 or num_workers < 0 or (max_frames is not None and max_frames < 1):
            raise DataModuleError("batch_size and max_frames must be >= 1, num_workers >= 0")
        self.save_hyperparameters()
        self.corpus = corpus
        self.protocol = protocol
        self.fold = fold
        self.folds = folds
        self.test_speakers = list(test_speakers) if test_speakers else None
        self.val_speakers = list(val_speakers) if val_speakers else None
        self.exclude_speakers = sorted(exclude_speakers) if exclude_speakers else None
        self.modalities = [m for m in MODALITIES if m in modalities]
        self.encoder, self.layers, self.word_pooling = encoder, layers, word_pooling
        self.normalization = normalization
        self.batch_size = batch_size
        self.bucketing = bucketing
        self.balanced_sampling = balanced_sampling
        self.num_workers = num_workers
        self.seed = seed
        self.max_frames = max_frames
        self.acoustic_features, self.acoustic_layer = acoustic_features, str(acoustic_layer)
        self.feature_device = feature_device
        self.acoustic_layers = 1  # hidden states stacked in each frame (hf: layer "all")
        self.transcripts = transcripts
        self.test_transcripts = test_transcripts or transcripts
        self.fit_on = fit_on
        self.utterance_stats = stats_which  # None, "frames" or "speech"
        self.utterance_functionals = bool(utterance_functionals)
        self.utterance_stats_dim = 0  # length of each clip's statistics vector (0: none)
        self.stats_normalizer: Normalizer | None = None

        self.feature_config: Any = None
        self.feature_key: str = ""
        self.test_feature_key: str = ""  # = feature_key unless test words come from elsewhere
        self.asr_backend: str | None = None
        self.class_names: list[str] = []
        self.split: dict[str, list[str]] = {}
        self.normalizer: Normalizer | None = None
        self.acoustic_dim = 0
        self.lexical_dim = 0
        self.frame_step_s = 0.01  # of the acoustic frames (from the feature cache's meta)
        self.datasets: dict[str, UtteranceDataset] = {}
        self.copies: list[str] = []  # ids of the speed-perturbed copies trained on
        self._extracted = False
        self._loaded_state: dict[str, Any] | None = None
        self._prepared: PreparedCorpus | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def prepared(self) -> PreparedCorpus:
        """The prepared corpus, read once for extraction, splitting and the datasets."""
        if self._prepared is None:
            self._prepared = PreparedCorpus.load(self.corpus)
        return self._prepared

    def view(self, source: str) -> PreparedCorpus:
        """The corpus with the `source` transcripts as its words (as prepared for acoustic models)."""
        if "lexical" not in self.modalities:
            return self.prepared
        from datamodules.transcripts import transcript_view

        return transcript_view(self.prepared, source)

    def _sources(self) -> list[str]:
        return list(dict.fromkeys([self.transcripts, self.test_transcripts]))

    def prepare_data(self) -> None:
        # once per datamodule: the CLI's links call it before the trainer does, and a repeat
        # would only re-read the table and re-verify every shard's checksum
        if self._extracted:
            return
        config = self._feature_config()
        options = {"device": self.feature_device} if self.feature_device != "cpu" else {}
        for source in self._sources():
            FEATURES.extract(self.view(source), config, self.modalities, **options)
        for factor in self.speed_perturb:  # copies of the whole corpus: every fold reuses them
            view = speed_view(self.view(self.transcripts), factor)
            FEATURES.extract(view, config, self.modalities, **options)
        self._extracted = True

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:  # fit, then test: set up once
            return
        corpus = self.prepared
        self.class_names = corpus.classes
        self.split = load_or_create_split(
            corpus,
            self.protocol,
            self.fold,
            self.seed,
            self.test_speakers,
            self.val_speakers,
            folds=self.folds,
            exclude_speakers=self.exclude_speakers,
        )
        self.feature_config = self._feature_config()
        self.asr_backend = _asr_backend(corpus)
        train_view = self.view(self.transcripts)
        self.feature_key = FEATURES.key(train_view, self.feature_config)
        features = FEATURES.load(train_view, self.feature_key, self.modalities)
        self._check_features(features, self.feature_key)
        test_features = features
        self.test_feature_key = self.feature_key
        if self.test_transcripts != self.transcripts:
            test_view = self.view(self.test_transcripts)
            self.test_feature_key = FEATURES.key(test_view, self.feature_config)
            test_features = FEATURES.load(test_view, self.test_feature_key, self.modalities)
            self._check_features(test_features, self.test_feature_key)
        self.split = self._drop_missing(features, test_features)
        self.acoustic_dim, self.lexical_dim = _dims(features, self.modalities)
        meta = getattr(features, "meta", None) or {}
        self.frame_step_s = float(meta.get("frame_step_s") or 0.01)
        self.acoustic_layers = int(meta.get("acoustic_layers") or 1)

        speaker_of, label_of = corpus.speaker_of, corpus.label_of
        if self.speed_perturb:
            features, speaker_of, label_of = self._add_copies(train_view, features)
        index = {c: i for i, c in enumerate(self.class_names)}
        if self._loaded_state is not None:  # resumed or rebuilt from a checkpoint
            self._apply_state(self._loaded_state)
        elif "acoustic" in self.modalities:
            self.normalizer = self._fit_normalizer(features, speaker_of)
        if self.fit_on == "train+val":
            log.warning(
                "fit_on='train+val': the val speakers are trained on, so val figures are "
                "in-sample; set the epoch count beforehand (experiments.refit does)"
            )
        for part in PARTS:
            ids = [*self.fit_ids(), *self.copies] if part == "train" else self.split[part]
            self.datasets[part] = UtteranceDataset(
                ids,
                [index[label_of[u]] for u in ids],
                [speaker_of[u] for u in ids],
                test_features if part == "test" else features,
                self.modalities,
                self.normalizer,
                self.max_frames,
                random_crop=part == "train",
            )
        self._add_utterance_stats()
        self._warn_long(features)
        log.info(
            "%s %s fold %d: %s utterances (+%d speed-perturbed copies), classes %s, features %s, "
            "transcripts %s -> test %s",
            self.corpus,
            self.protocol,
            self.fold,
            {p: len(v) for p, v in self.split.items()},
            len(self.copies),
            self.class_names,
            self.feature_key,
            self.transcripts,
            self.test_transcripts,
        )

    def _add_copies(
        self, train_view: PreparedCorpus, features: Any
    ) -> tuple[Any, dict[str, str], dict[str, str]]:
        """`features` with the speed-perturbed copies of every clip added, and the speakers and
        labels of clips and copies; sets `copies` to those of the clips trained on."""
        merged = copy.copy(features)
        for attr in ("acoustic", "words", "cls", "spans"):
            setattr(merged, attr, dict(getattr(features, attr, None) or {}))
        speaker_of, label_of = dict(self.prepared.speaker_of), dict(self.prepared.label_of)
        self.copies = []
        for factor in self.speed_perturb:
            view = speed_view(train_view, factor)
            extra = FEATURES.load(view, FEATURES.key(view, self.feature_config), self.modalities)
            for attr in ("acoustic", "words", "cls", "spans"):
                getattr(merged, attr).update(getattr(extra, attr, None) or {})
            speaker_of.update(view.speaker_of)
            label_of.update(view.label_of)
            have = set(extra.acoustic if "acoustic" in self.modalities else extra.words)
            self.copies += [c for c in (copy_id(u, factor) for u in self.fit_ids()) if c in have]
        return merged, speaker_of, label_of

    def _feature_config(self) -> Any:
        acoustic = {}
        if (self.acoustic_features, self.acoustic_layer) != ("compare_lld", "last"):
            acoustic = {
                "acoustic_features": self.acoustic_features,
                "acoustic_layer": self.acoustic_layer,
            }
        return FEATURES.config(self.encoder, self.layers, self.word_pooling, **acoustic)

    def _warn_long(self, features: Any) -> None:
        """Name the utterances `max_frames` crops (a random window in training, the centre else)."""
        if not self.max_frames or "acoustic" not in self.modalities:
            return
        used = [u for part in PARTS for u in self.split[part]]
        long = sorted(
            (u for u in used if len(features.acoustic[u]) > self.max_frames),
            key=lambda u: -len(features.acoustic[u]),
        )
        if long:
            shown = ", ".join(f"{u} ({len(features.acoustic[u])} frames)" for u in long[:10])
            log.warning(
                "%d utterances are longer than max_frames=%d and are cropped to a window of "
                "that many frames: %s%s (set data.max_frames to change the cap, null for none)",
                len(long),
                self.max_frames,
                shown,
                f" and {len(long) - 10} more" if len(long) > 10 else "",
            )

    def _fit_normalizer(self, features: Any, speaker_of: Mapping[str, str]) -> Normalizer:
        if self.normalization == "speaker":
            log.warning(
                "normalization='speaker': each speaker's statistics, test speakers included, come "
                "from that speaker's own (unlabelled) frames, as is standard in the SER literature"
            )
        used = {u for part in PARTS for u in self.split[part]} | set(self.copies)
        frames = {u: x for u, x in features.acoustic.items() if u in used}
        return Normalizer.fit(frames, self.fit_ids(), speaker_of, self.normalization)

    def _add_utterance_stats(self) -> None:
        """Each clip's statistics of its whole normalised frame sequence, standardised
        (`datamodules.utterance_stats`), followed by its functionals with
        `utterance_functionals`, into every dataset; the standardisation is fitted on the clips
        trained on unless a checkpoint brought one."""
        if not self.utterance_stats:
            return
        if "acoustic" not in self.modalities:
            raise DataModuleError("data.utterance_stats needs acoustic frames (an acoustic model)")
        raw: dict[str, np.ndarray] = {}
        speaker_of: dict[str, str] = {}
        for ds in self.datasets.values():
            for u, spk in zip(ds.ids, ds.speakers, strict=True):
                if u in raw:  # the val part is also in train with fit_on "train+val"
                    continue
                x = ds.features.acoustic[u]
                raw[u] = clip_stats(
                    x,
                    self.normalizer.normalize(x, spk) if self.normalizer else x,
                    self.utterance_stats,
                )
                speaker_of[u] = spk
        if self.utterance_functionals:
            functionals = self._functionals(set(raw))
            raw = {u: np.concatenate([v, functionals[u]]) for u, v in raw.items()}
        if self.stats_normalizer is None:
            self.stats_normalizer = fit_stats_normalizer(
                raw, self.fit_ids(), speaker_of, self.normalization
            )
        self.utterance_stats_dim = stats_dim(self.acoustic_dim, self.utterance_stats) + (
            FUNCTIONALS_DIM if self.utterance_functionals else 0
        )
        for ds in self.datasets.values():
            ds.stats = {
                u: standardised(raw[u], self.stats_normalizer, spk)
                for u, spk in zip(ds.ids, ds.speakers, strict=True)
            }

    def _functionals(self, ids: set[str]) -> dict[str, np.ndarray]:
        """Each clip's (and speed-perturbed copy's) ComParE_2016 functionals, cached."""
        base = self.view(self.transcripts)
        views = [base, *(speed_view(base, f) for f in self.speed_perturb)]
        out: dict[str, np.ndarray] = {}
        try:
            for view in views:
                out.update(FUNCTIONALS.load(view, ids))
        except FunctionalsError as exc:
            raise DataModuleError(f"data.utterance_functionals: {exc}") from exc
        missing = sorted(ids - set(out))
        if missing:
            raise DataModuleError(
                f"data.utterance_functionals: no audio row for {len(missing)} clips, "
                f"e.g. {missing[0]!r}"
            )
        return out

    def fit_ids(self) -> list[str]:
        """The utterances trained on (and global statistics fitted on): the train part, plus
        the val part with `fit_on` "train+val"."""
        extra = self.split["val"] if self.fit_on == "train+val" else []
        return [*self.split["train"], *extra]

    def _check_features(self, features: Any, key: str) -> None:
        for name, attr in (("acoustic", "acoustic"), ("lexical", "words")):
            if name in self.modalities and not getattr(features, attr, None):
                raise DataModuleError(
                    f"features {key} of corpus '{self.corpus}' hold no {name} part; "
                    f"run prepare_data() (features.extract) with modalities {self.modalities}"
                )

    def _drop_missing(self, features: Any, test_features: Any) -> dict[str, list[str]]:
        """The split without utterances the feature cache lacks (logged; fails if a part empties)."""
        out = {}
        for part in PARTS:
            have: set[str] | None = None
            for name, attr in (("acoustic", "acoustic"), ("lexical", "words")):
                if name in self.modalities:
                    ids = set(getattr(test_features if part == "test" else features, attr))
                    have = ids if have is None else have & ids
            assert have is not None  # modalities are a non-empty subset (checked in __init__)
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
        w = inverse_frequency(self.datasets["train"].labels, self.num_classes)
        return torch.tensor(w, dtype=torch.float32)

    # -- loaders --------------------------------------------------------------------------

    def train_dataloader(self) -> DataLoader:
        ds = self._dataset("train")
        weights = None
        if self.balanced_sampling:
            counts = np.bincount(ds.labels, minlength=self.num_classes)
            weights = [1.0 / counts[y] for y in ds.labels]
        sampler = EpochSampler(len(ds), shuffle=True, seed=self._order_seed(), weights=weights)
        return self._loader(ds, sampler, crop=self.max_frames is not None)

    def _order_seed(self) -> tuple[int, int]:
        """The seed of the training order (shuffle, balanced draw, crops): the split's `seed`
        and the run's (`seed_everything`, read back as torch's initial seed), so runs of several
        seeds on one split see their batches in different orders, as they start from different
        weights, and a run repeated with its seed sees the same."""
        return (self.seed, torch.initial_seed())

    def val_dataloader(self) -> DataLoader:
        ds = self._dataset("val")
        return self._loader(ds, EpochSampler(len(ds), shuffle=False, seed=self.seed))

    def test_dataloader(self) -> DataLoader:
        ds = self._dataset("test")
        return self._loader(ds, EpochSampler(len(ds), shuffle=False, seed=self.seed))

    def predict_dataloader(self) -> DataLoader:
        """The test part in split order, with a plain BatchSampler Lightning can wrap."""
        return self.part_dataloader("test")

    def part_dataloader(self, part: str) -> DataLoader:
        """One part's clips in split order, whole (no crops), with a plain BatchSampler."""
        ds = self._dataset(part)
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
            "frame_step_s": self.frame_step_s,
            "acoustic_layers": self.acoustic_layers,
            "normalization": self.normalization,
            "normalizer": self.normalizer.state_dict() if self.normalizer else None,
            "utterance_stats": self.utterance_stats,
            "utterance_functionals": self.utterance_functionals,
            "speed_perturb": list(self.speed_perturb),
            "stats_normalizer": self.stats_normalizer.state_dict()
            if self.stats_normalizer
            else None,
            "corpus": self.corpus,
            "protocol": self.protocol,
            "fold": self.fold,
            "folds": self.folds,
            "seed": self.seed,
            "test_speakers": list(self.test_speakers or []),
            "val_speakers": list(self.val_speakers or []),
            "exclude_speakers": list(self.exclude_speakers or []),
            "max_frames": self.max_frames,
            "transcripts": self.transcripts,
            "test_transcripts": self.test_transcripts,
            "test_feature_key": self.test_feature_key,
            "asr_backend": self.asr_backend,
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
        stats = state.get("stats_normalizer")
        self.stats_normalizer = Normalizer.from_state(stats) if stats else None
        for ds in self.datasets.values():
            ds.normalizer = self.normalizer
        if self.datasets:
            self._add_utterance_stats()  # again, with the checkpoint's statistics


def _asr_backend(corpus: PreparedCorpus) -> str | None:
    """The recogniser of the corpus's ASR transcripts (prepare.json, else the table), if any."""
    backend = corpus.meta.get("asr_backend")
    if not backend and "asr_backend" in corpus.table.columns and len(corpus.table):
        backend = str(corpus.table["asr_backend"].iloc[0])
    return str(backend) if backend else None


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
