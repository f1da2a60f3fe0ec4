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

Only tensors and plain containers, so `torch.load(weights_only=True)` reads it: no pickle.
`load_checkpoint(path)` is the one way predict, the demo, plots and benchmarks rebuild a model;
`lightning_modules.record` writes the record (below the LightningModule, which saves it).
"""

from __future__ import annotations

import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from datamodules.normalization import NormalizationError, Normalizer
from lightning_modules.architectures import ARCHITECTURES, Architecture
from lightning_modules.record import RECORD_FIELDS, RECORD_KEY, RECORD_VERSION, model_init_args

if TYPE_CHECKING:
    from lightning_modules.system import EmotionClassifier

# The suite's checkpoints are a few MB; a file far above this is not one of them, and
# torch.load would read all of it into memory before saying so.
MAX_CHECKPOINT_BYTES = 2 << 30


class CheckpointError(Exception):
    """A checkpoint that cannot be read or rebuilt; the message names the file."""


def brief(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line (torch and Hugging Face errors span paragraphs)."""
    text = str(exc) or type(exc).__name__
    if "WeightsUnpickler error:" in text:  # torch's advice to retry unsafely is left out
        rest = [x.strip() for x in text.split("WeightsUnpickler error:", 1)[1].splitlines()]
        text = "the unpickler refused it: " + next((x for x in rest if x), "unknown reason")
    line = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, loaded without pickle (`weights_only=True`)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if not stat.S_ISREG(st.st_mode):  # /dev/zero, a FIFO, a socket: reading would not end
        raise CheckpointError(f"{path} is not a regular file, so not a checkpoint")
    if st.st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    if st.st_size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(
            f"checkpoint {path} is {st.st_size / 2**30:.1f} GiB, more than a checkpoint of this "
            f"suite ({MAX_CHECKPOINT_BYTES / 2**30:.0f} GiB at most); not loaded"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not a checkpoint this suite can load safely "
            f"(torch.load, weights_only=True): {brief(exc)}"
        ) from exc
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not a checkpoint (a {type(ckpt).__name__})")
    return ckpt


def read_record(ckpt: dict[str, Any] | str | Path, path: str | Path = "") -> dict[str, Any]:
    """The checked `checkpoint["ser"]` record of a checkpoint dict (or file)."""
    if not isinstance(ckpt, dict):
        path = ckpt
        ckpt = read_checkpoint(ckpt)
    record = ckpt.get(RECORD_KEY)
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        found = record.get("version") if isinstance(record, dict) else None
        raise CheckpointError(
            f"checkpoint {path} holds no suite record of version {RECORD_VERSION} "
            f"(checkpoint['{RECORD_KEY}'] version {found}); it was not written by this "
            "version of experiments.train: train it again"
        )
    missing = [k for k in RECORD_FIELDS if k not in record]
    if missing:
        raise CheckpointError(f"checkpoint {path}: its record lacks {missing}")
    if record["architecture"] not in ARCHITECTURES:
        raise CheckpointError(f"checkpoint {path}: unknown architecture {record['architecture']!r}")
    return record


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
