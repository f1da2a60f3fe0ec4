"""The checkpoint contract: one namespaced record, and the one loader that rebuilds a model from it.

Every checkpoint `experiments.train` writes holds, besides Lightning's own keys,
`checkpoint["ser"]` (`RECORD_KEY`), written by `EmotionClassifier.on_save_checkpoint`:

- `version`; `architecture`, `modalities`, `fusion` (the fusion actually used);
- `model`: the `EmotionClassifier` init arguments (architecture spec, sizes, poolings);
- `class_names`;
- `features`: `config` (the `FeatureConfig` fields, the acoustic front end
  `acoustic_features`/`acoustic_layer` included), `key`, `acoustic_dim`, `lexical_dim`,
  `frame_step_s` (of that front end's frames), `acoustic_layers`;
- `normalizer`: the training part's normalisation statistics (`Normalizer.state_dict()`), or
  None for a lexical-only model;
- `stats_normalizer`: the standardisation of utterance statistics (`data.utterance_stats`),
  None without them (and absent from older records);
- `data`: corpus, protocol, fold, seed, test/val speakers, max_frames, normalization.

Only tensors and plain containers, so `torch.load(weights_only=True)` reads it: no pickle
(`lightning_modules.checkpoint_file` reads the file and checks the record).
`load_checkpoint(path)` is the one way predict, the demo, plots and benchmarks rebuild a model;
`lightning_modules.record` writes the record (below the LightningModule, which saves it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datamodules.normalization import NormalizationError, Normalizer
from datamodules.utterance_stats import stats_set
from lightning_modules.architectures import ARCHITECTURES, Architecture
from lightning_modules.checkpoint_file import (
    MAX_CHECKPOINT_BYTES,
    CheckpointError,
    brief,
    read_checkpoint,
    read_record,
)
from lightning_modules.record import RECORD_KEY, model_init_args

if TYPE_CHECKING:
    from lightning_modules.system import EmotionClassifier

# read_checkpoint and friends live in checkpoint_file; they are this module's API too
__all__ = [
    "MAX_CHECKPOINT_BYTES",
    "RECORD_KEY",
    "CheckpointError",
    "LoadedModel",
    "brief",
    "load_checkpoint",
    "read_checkpoint",
    "read_record",
]


@dataclass
class LoadedModel:
    """A rebuilt classifier (eval mode) with its record and normaliser."""

    path: Path
    module: EmotionClassifier
    record: dict[str, Any]
    normalizer: Normalizer | None
    load_ms: float
    stats_normalizer: Normalizer | None = None  # a model trained with data.utterance_stats

    @property
    def architecture(self) -> str:
        return str(self.record["architecture"])

    @property
    def spec(self) -> Architecture:
        return ARCHITECTURES[self.architecture]

    @property
    def class_names(self) -> list[str]:
        return list(self.record["class_names"])

    @property
    def modalities(self) -> list[str]:
        return list(self.spec.modalities)

    @property
    def needs_words(self) -> bool:
        return self.spec.needs_words

    @property
    def uses_acoustic(self) -> bool:
        return "acoustic" in self.spec.modalities

    @property
    def uses_lexical(self) -> bool:
        return "lexical" in self.spec.modalities

    @property
    def feature_config(self) -> dict[str, Any]:
        return dict(self.record["features"].get("config") or {})

    @property
    def lexical_dim(self) -> int:
        return int(self.record["features"].get("lexical_dim") or 0)

    @property
    def frame_step_s(self) -> float:
        return float(self.record["features"].get("frame_step_s") or 0.01)

    @property
    def stats_set(self) -> str:
        """The utterance statistics set the model reads ("frames" for records before sets)."""
        return stats_set(self.record["data"].get("utterance_stats")) or "frames"

    @property
    def uses_functionals(self) -> bool:
        """Whether the clip's ComParE_2016 functionals follow its utterance statistics."""
        return bool(self.record["data"].get("utterance_functionals"))

    @property
    def corpus(self) -> str:
        return str(self.record["data"].get("corpus") or "")


def load_checkpoint(path: str | Path) -> LoadedModel:
    """Rebuild the EmotionClassifier and its normaliser from a checkpoint's record."""
    t0 = time.perf_counter()  # load time includes the first import of Lightning
    from lightning_modules.system import EmotionClassifier

    path = Path(path)
    ckpt = read_checkpoint(path)
    record = read_record(ckpt, path)
    try:
        module = EmotionClassifier(**model_init_args(EmotionClassifier, record["model"]))
        module.load_state_dict(ckpt["state_dict"])
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {path} does not rebuild an EmotionClassifier: {brief(exc)}"
        ) from exc
    module.eval()
    try:
        state = record.get("normalizer")
        normalizer = Normalizer.from_state(state) if state else None
        state = record.get("stats_normalizer")
        stats_normalizer = Normalizer.from_state(state) if state else None
    except NormalizationError as exc:
        raise CheckpointError(f"checkpoint {path}: {brief(exc)}") from exc
    if module.hparams.get("utterance_stats_dim") and stats_normalizer is None:
        raise CheckpointError(
            f"checkpoint {path}: the model reads utterance statistics but its record has no "
            "stats_normalizer to standardise them"
        )
    load_ms = round((time.perf_counter() - t0) * 1e3, 2)
    return LoadedModel(path, module, record, normalizer, load_ms, stats_normalizer)
