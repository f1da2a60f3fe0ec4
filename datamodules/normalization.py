"""Per-dimension z-normalisation of acoustic frames, fitted on the training part only.

`Normalizer.fit` takes global statistics from the training utterances (and, in "speaker" mode,
each speaker's own statistics from that speaker's frames); `state_dict()`/`from_state()` carry
them in checkpoints as tensors and plain containers (loadable with weights_only=True).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

NORMALIZATIONS = ("global", "speaker", "none")
MIN_STD = 1e-5  # constant feature dimensions are centred, not blown up


class NormalizationError(Exception):
    """A normalisation mode or saved state that cannot be used; the message says which."""


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
            raise NormalizationError(f"normalization must be one of {NORMALIZATIONS}, got '{mode}'")
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
            raise NormalizationError(f"normalisation state is incomplete: {exc!r}") from exc


def _moments(xs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per dimension over all frames of xs (two passes in float64)."""
    xs = [x for x in xs if len(x)]
    if not xs:
        raise NormalizationError("no acoustic frames to fit the normalisation on")
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
