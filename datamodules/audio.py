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
        if path.is_dir():
            raise AudioError(f"{path} is a folder, not an audio file")
        if path.exists():  # /dev/zero, a FIFO: reading would never end
            raise AudioError(f"{path} is not a regular file, so not an audio file")
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


def change_speed(x: np.ndarray, factor: float) -> np.ndarray:
    """The signal played `factor` times as fast (tempo and pitch together, as Kaldi's speed
    perturbation): resampled to len(x) / factor samples, read at the same rate."""
    if factor <= 0:
        raise AudioError(f"a speed factor must be > 0, got {factor}")
    if factor == 1.0:
        return x
    from fractions import Fraction

    from scipy.signal import resample_poly

    ratio = Fraction(1 / factor).limit_denominator(100)
    return resample_poly(x, ratio.numerator, ratio.denominator).astype(np.float32)


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


MIN_AUDIO_S = 0.1  # shorter clips (or segments) hold too few frames to say anything


def _wav_declared_frames(path: Path) -> int | None:
    """Frames a RIFF/WAVE header promises (its data chunk size), None if not a plain WAV.

    libsndfile quietly shortens a WAV whose data ends early, so a truncated WAV decodes
    without error: the header is what tells."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = 0
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], int.from_bytes(chunk[4:], "little")
                if cid == b"fmt ":
                    body = f.read(size)
                    block_align = int.from_bytes(body[12:14], "little") if len(body) >= 14 else 0
                    f.seek(size % 2, 1)
                elif cid == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):  # streamed: size unknown
                        return None
                    return size // block_align
                else:
                    f.seek(size + size % 2, 1)
    except OSError:
        return None


def audio_problem(path: str | Path, block_frames: int = 8192) -> tuple[str, str] | None:
    """Decode a whole file: None if it is sound, else (reason, detail).

    Reasons: "missing audio", "undecodable audio", "truncated audio", "too short audio"
    (under `MIN_AUDIO_S`), "silent audio" (every sample zero). Blocks are decoded one at a
    time, so memory stays that of one block whatever the file's length.
    """
    path = Path(path)
    if not path.is_file():
        return "missing audio", "not found"
    try:
        info = audio_info(path)
    except AudioError as exc:
        return "undecodable audio", str(exc)
    decoded, peak = 0, 0.0
    try:
        with sf.SoundFile(str(path)) as f:
            for block in f.blocks(block_frames, dtype="float32", always_2d=True):
                decoded += len(block)
                if peak == 0.0 and len(block):
                    peak = float(np.abs(block).max())
    except Exception as exc:  # libsndfile: "flac decoder lost sync" and the like
        if decoded:
            return "truncated audio", f"decoding stops after {decoded} of {info.frames} frames"
        return "undecodable audio", str(exc)
    declared = _wav_declared_frames(path)
    expected = max(info.frames, declared or 0)
    if decoded < expected:
        return "truncated audio", f"{decoded} of {expected} frames decode"
    if decoded / info.sample_rate < MIN_AUDIO_S:
        return "too short audio", f"{decoded / info.sample_rate:.3f} s"
    if not np.isfinite(peak):
        return "undecodable audio", "NaN or infinite samples"
    if peak == 0.0:
        return "silent audio", "every sample is zero"
    return None
