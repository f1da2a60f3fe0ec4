"""A run's test predictions, one row per utterance: the file reports and plots draw from.

`predictions.npz` (numpy, no pickle) beside `metrics.json` holds:
- `utterance_ids` (N,) str, `labels` (N,) int64 (-1 unknown), `predictions` (N,) int64,
  `probabilities` (N, C) float32, `class_names` (C,) str, `frame_step_s` () float64;
- per modality with attention weights, `attention_<modality>` (sum of lengths,) float32 and
  `attention_<modality>_offsets` (N + 1,) int64: utterance i's weights over its real frames
  ("acoustic") or words ("lexical") are `values[offsets[i]:offsets[i + 1]]`;
- `gate` (N,) float32, the mean GMU gate value per utterance (1 = acoustic), when the model
  has a gate;
- `word_spans` (sum of word counts, 2) int64 and `word_spans_offsets` (N + 1,): each word's
  [first, last + 1) acoustic frames as the model saw them, when it read words.
Only numpy is imported here, so reports read it without the model code.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datamodules.paths import atomic_write_bytes

FILE_NAME = "predictions.npz"


class PredictionsError(Exception):
    """A predictions file that is missing or malformed; the message names it."""


@dataclass
class Predictions:
    """Per-utterance test outputs of one run (see the module docstring for the file layout)."""

    utterance_ids: list[str]
    labels: np.ndarray  # (N,) int64
    predictions: np.ndarray  # (N,) int64
    probabilities: np.ndarray  # (N, C) float32
    class_names: list[str]
    frame_step_s: float = 0.01
    attention: dict[str, list[np.ndarray]] = field(default_factory=dict)  # modality -> (T_i,)
    gate: np.ndarray | None = None  # (N,) float32
    word_spans: list[np.ndarray] | None = None  # per utterance (W_i, 2) int64

    def __len__(self) -> int:
        return len(self.utterance_ids)

    def index(self) -> dict[str, int]:
        """Utterance id -> row."""
        return {u: i for i, u in enumerate(self.utterance_ids)}


class PredictionCollector:
    """Accumulates a test epoch's batches (padding removed) into `Predictions`."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.labels: list[np.ndarray] = []
        self.probs: list[np.ndarray] = []
        self.attention: dict[str, list[np.ndarray]] = {}
        self.gate: list[np.ndarray] = []
        self.spans: list[np.ndarray] = []

    def add(
        self,
        ids: Sequence[str],
        labels: np.ndarray,
        probs: np.ndarray,
        attention: dict[str, tuple[np.ndarray, np.ndarray]],
        gate: np.ndarray | None,
        spans: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """One batch: ids, (B,) labels, (B, C) probabilities, modality -> ((B, T) weights,
        (B,) lengths), (B, H) gate or None, ((B, W, 2) word spans, (B,) word counts) or None."""
        self.ids += list(ids)
        self.labels.append(np.asarray(labels, np.int64))
        self.probs.append(np.asarray(probs, np.float32))
        for name, (weights, lengths) in attention.items():
            rows = self.attention.setdefault(name, [])
            rows += [
                np.asarray(w[: int(n)], np.float32) for w, n in zip(weights, lengths, strict=True)
            ]
        if gate is not None:
            self.gate.append(np.asarray(gate, np.float32).reshape(len(ids), -1).mean(1))
        if spans is not None:
            values, counts = spans
            self.spans += [
                np.asarray(v[: int(n)], np.int64) for v, n in zip(values, counts, strict=True)
            ]

    def result(self, class_names: Sequence[str], frame_step_s: float) -> Predictions:
        probs = np.concatenate(self.probs) if self.probs else np.zeros((0, len(class_names)))
        return Predictions(
            utterance_ids=list(self.ids),
            labels=np.concatenate(self.labels) if self.labels else np.zeros(0, np.int64),
            predictions=probs.argmax(1).astype(np.int64),
            probabilities=probs.astype(np.float32),
            class_names=list(class_names),
            frame_step_s=float(frame_step_s),
            attention={k: v for k, v in self.attention.items() if len(v) == len(self.ids)},
            gate=np.concatenate(self.gate) if self.gate else None,
            word_spans=self.spans if len(self.spans) == len(self.ids) else None,
        )


def mean_of(preds: Sequence[Predictions]) -> Predictions:
    """Several runs' predictions of the same utterances as one (e.g. the seeds of a fold): the
    probabilities averaged per utterance, in the first run's order; PredictionsError if the
    runs predicted different utterances."""
    first = preds[0]
    order = first.index()
    total = np.zeros_like(first.probabilities, dtype=np.float64)
    for p in preds:
        if set(p.utterance_ids) != set(order):
            raise PredictionsError("the runs predicted different utterances")
        total[[order[u] for u in p.utterance_ids]] += p.probabilities
    mean = total / len(preds)
    return Predictions(
        first.utterance_ids, first.labels, mean.argmax(1), mean, list(first.class_names)
    )


def write_predictions(path: Path, p: Predictions) -> Path:
    """Write `p` to `path` (npz, atomically)."""
    arrays: dict[str, np.ndarray] = {
        "utterance_ids": np.asarray(p.utterance_ids, dtype=str),
        "labels": np.asarray(p.labels, np.int64),
        "predictions": np.asarray(p.predictions, np.int64),
        "probabilities": np.asarray(p.probabilities, np.float32),
        "class_names": np.asarray(p.class_names, dtype=str),
        "frame_step_s": np.asarray(p.frame_step_s, np.float64),
    }
    for name, rows in p.attention.items():
        arrays[f"attention_{name}"] = (
            np.concatenate(rows).astype(np.float32) if rows else np.zeros(0, np.float32)
        )
        arrays[f"attention_{name}_offsets"] = np.concatenate(
            [[0], np.cumsum([len(r) for r in rows])]
        ).astype(np.int64)
    if p.gate is not None:
        arrays["gate"] = np.asarray(p.gate, np.float32)
    if p.word_spans is not None:
        arrays["word_spans"] = (
            np.concatenate(p.word_spans).astype(np.int64).reshape(-1, 2)
            if p.word_spans
            else np.zeros((0, 2), np.int64)
        )
        arrays["word_spans_offsets"] = np.concatenate(
            [[0], np.cumsum([len(r) for r in p.word_spans])]
        ).astype(np.int64)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def read_predictions(path: Path) -> Predictions:
    """The predictions in `path` (no pickle); PredictionsError naming the file if unusable."""
    path = Path(path)
    if not path.is_file():
        raise PredictionsError(f"no predictions file {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        ragged = {
            key: _split(arrays[key], arrays[f"{key}_offsets"])
            for key in arrays
            if f"{key}_offsets" in arrays
        }
        attention = {
            k.removeprefix("attention_"): v for k, v in ragged.items() if k.startswith("attention_")
        }
        return Predictions(
            utterance_ids=[str(u) for u in arrays["utterance_ids"]],
            labels=arrays["labels"].astype(np.int64),
            predictions=arrays["predictions"].astype(np.int64),
            probabilities=arrays["probabilities"].astype(np.float32),
            class_names=[str(c) for c in arrays["class_names"]],
            frame_step_s=float(arrays["frame_step_s"]),
            attention=attention,
            gate=arrays.get("gate"),
            word_spans=ragged.get("word_spans"),
        )
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise PredictionsError(f"cannot read predictions file {path}: {exc}") from exc


def _split(values: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Rows of a flattened ragged array."""
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
