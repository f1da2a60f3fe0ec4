"""Reading audio: any rate and channel count in, 16 kHz mono float32 out, with named errors."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000


class AudioError(Exception):
    """An audio file that is missing, empty, corrupt or not audio; the message names it."""


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def audio_info(path: str | Path) -> AudioInfo:
    """Header of an audio file, without decoding it."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file not found: {path}")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file is empty (0 bytes): {path}")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile's errors do not name the file
        raise AudioError(f"not a readable audio file: {path} ({exc})") from exc
    if info.frames <= 0:
        raise AudioError(f"audio file holds no samples: {path}")
    return AudioInfo(str(path), int(info.samplerate), int(info.channels), int(info.frames))


def resample(x: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited polyphase resampling of a 1-D signal."""
    if sr_in == sr_out:
        return x
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(sr_in, sr_out)
    return resample_poly(x, sr_out // g, sr_in // g).astype(np.float32)


def load_audio(
    path: str | Path,
    start_s: float | None = None,
    end_s: float | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """(N,) float32 mono at `sample_rate`; a segment [start_s, end_s) if given.

    Other rates are resampled and several channels averaged, both logged, not rejected.
    """
    info = audio_info(path)
    start = int(round((start_s or 0.0) * info.sample_rate))
    stop = int(round(end_s * info.sample_rate)) if end_s is not None else info.frames
    if start >= info.frames or stop <= start:
        raise AudioError(
            f"segment [{start_s}, {end_s}] s is outside {path} ({info.duration_s:.2f} s long)"
        )
    try:
        data, sr = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"cannot decode audio file {path}: {exc}") from exc
    if data.size == 0:
        raise AudioError(f"audio file holds no samples: {path}")
    if data.shape[1] > 1:
        log.info("%s: %d channels averaged to mono", path, data.shape[1])
        data = data.mean(axis=1, keepdims=True)
    x = data[:, 0]
    if sr != sample_rate:
        log.info("%s: resampled %d Hz -> %d Hz", path, sr, sample_rate)
        x = resample(x, sr, sample_rate)
    return np.ascontiguousarray(x, dtype=np.float32)
