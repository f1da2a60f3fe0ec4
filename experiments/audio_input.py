"""Audio as prediction reads it: decoding (whole or a window), the length and voice-activity
checks, windows for long files, and the words (ASR or a given transcript). Used by
`experiments.inference` (predict and the demo); errors are `PredictError`s naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datamodules.audio import SAMPLE_RATE, AudioError, load_audio
from datamodules.utterances import Word

MIN_DURATION_S = 0.25  # shorter clips give fewer frames than the acoustic encoder's context
WINDOW_S = 30.0  # longer audio is predicted in windows of this length (bounded memory)
VAD_DBFS = -45.0  # 30 ms frames louder than this count as voice activity
# ... and so do quieter ones above QUIET_DBFS that stand QUIET_RANGE_DB over the clip's own
# floor (its 10th-percentile frame): speech recorded at a low level (RAVDESS holds calm and
# sad clips peaking near -40 dBFS), while steady hum or hiss has no such range
QUIET_DBFS = -65.0
QUIET_RANGE_DB = 15.0
MIN_SPEECH_S = 0.1  # less voice activity than this: "no speech detected"


class PredictError(Exception):
    """An input or checkpoint prediction cannot use; the message names the file."""


class NoSpeechError(PredictError):
    """A clip whose voice activity is under the threshold: an answer, not a failure."""


def speech_seconds(x: np.ndarray, sr: int = SAMPLE_RATE, dbfs: float = VAD_DBFS) -> float:
    """Seconds of 30 ms frames whose RMS level is above `dbfs`, or above `QUIET_DBFS` and
    `QUIET_RANGE_DB` over the clip's floor (a plain energy voice detector)."""
    hop = int(0.03 * sr)
    n = len(x) // hop
    if n == 0:
        return 0.0
    frames = np.asarray(x[: n * hop], np.float64).reshape(n, hop)
    level = 10 * np.log10((frames**2).mean(axis=1) + 1e-20)  # dBFS per frame
    floor = np.percentile(level, 10)
    quiet = (level > QUIET_DBFS) & (level > floor + QUIET_RANGE_DB)
    return float(((level > dbfs) | quiet).sum() * hop / sr)


def no_speech(name: str, speech_s: float) -> NoSpeechError:
    return NoSpeechError(
        f"{name}: no speech detected ({speech_s:.2f} s of voice activity: frames above "
        f"{VAD_DBFS:g} dBFS, or above {QUIET_DBFS:g} dBFS and {QUIET_RANGE_DB:g} dB over the "
        "clip's floor); nothing to classify"
    )


def window_bounds(n_samples: int, window_s: float = WINDOW_S) -> list[tuple[int, int]]:
    """[start, stop) sample ranges of windows of `window_s`; a short tail joins the one before."""
    step = int(window_s * SAMPLE_RATE)
    if n_samples <= step:
        return [(0, n_samples)]
    starts = list(range(0, n_samples, step))
    if n_samples - starts[-1] < step // 4:
        starts.pop()
    return list(zip(starts, starts[1:] + [n_samples], strict=True))


def check_duration(x: np.ndarray, path: str) -> None:
    """Reject a clip too short (or silent-empty) for the acoustic front end."""
    duration = len(x) / SAMPLE_RATE
    if duration < MIN_DURATION_S:
        raise PredictError(
            f"{path}: clip too short ({duration:.3f} s; at least {MIN_DURATION_S} s needed)"
        )
    if not np.isfinite(x).all():
        raise PredictError(f"{path}: audio holds NaN or infinite samples")


def read_audio(
    path: str | Path, start_s: float | None = None, end_s: float | None = None
) -> np.ndarray:
    """(N,) float32 16 kHz mono of a file (or of [start_s, end_s)), or PredictError naming it."""
    try:
        x = load_audio(path, start_s, end_s)
    except AudioError as exc:
        raise PredictError(str(exc)) from exc
    except Exception as exc:  # a decoder error that load_audio does not name
        raise PredictError(f"cannot read audio file {path}: {exc}") from exc
    check_duration(x, str(path))
    return x


# ---------------------------------------------------------------------------------------
# ASR


def transcribe_words(x: np.ndarray, backend: str, name: str = "input") -> tuple[str, list[Word]]:
    """Transcript and timed words of a 16 kHz clip with the configured ASR backend."""
    if backend == "none":
        return "", []
    from datamodules.asr import AsrError, transcribe

    try:
        result = transcribe(x, backend=backend)
    except AsrError as exc:
        raise PredictError(f"{name}: ASR ({backend}) failed: {exc}") from exc
    return result.text.strip(), list(result.words)


def words_from_text(text: str) -> list[Word]:
    """Untimed words of a given transcript (spans are then left to the lexical encoder)."""
    return [Word(t) for t in text.split() if t.strip()]
