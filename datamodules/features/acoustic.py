"""openSMILE ComParE_2016 low-level descriptors: (T, 65) float32 frames every 10 ms."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from datamodules.audio import SAMPLE_RATE, AudioError, change_speed, load_audio, resample
from datamodules.features.config import FRAME_STEP_S, FeatureError

log = logging.getLogger(__name__)

ACOUSTIC_DIM = 65
# The longest ComParE_2016 LLD window is 60 ms; shorter input gives openSMILE no frame at all.
MIN_SAMPLES = int(0.06 * SAMPLE_RATE)
RMS_COLUMN = 8  # pcm_RMSenergy_sma, used to find the voiced part of a clip
VOICED_DB = 30.0  # frames within this many dB of the clip's loudest frame count as voiced


class AcousticError(FeatureError):
    """Audio that gives no acoustic features (too short, unreadable); the message names it."""


class AcousticExtractor:
    """ComParE_2016 LLDs of a waveform or file: (T, 65) float32, frame t starts at t * 10 ms.

    Clips shorter than 60 ms (one analysis window) raise `AcousticError`; digitally silent
    clips are processed as they are (openSMILE gives finite values for them).
    """

    frame_step_s = FRAME_STEP_S

    def __init__(self, feature_set: str = "ComParE_2016") -> None:
        if feature_set != "ComParE_2016":
            raise FeatureError(f"only feature_set 'ComParE_2016' is supported, got '{feature_set}'")
        self.feature_set = feature_set
        self._smile = None

    @property
    def smile(self):  # created lazily: a pool worker builds its own
        if self._smile is None:
            import opensmile

            self._smile = opensmile.Smile(
                feature_set=opensmile.FeatureSet.ComParE_2016,
                feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
            )
            names = self._smile.feature_names
            if len(names) != ACOUSTIC_DIM or names[RMS_COLUMN] != "pcm_RMSenergy_sma":
                raise FeatureError(f"unexpected openSMILE LLD columns ({len(names)}): {names[:10]}")
        return self._smile

    @property
    def feature_names(self) -> list[str]:
        return list(self.smile.feature_names)

    def from_waveform(self, x: np.ndarray, sr: int, name: str = "waveform") -> np.ndarray:
        """(N,) or (N, C) samples at `sr` Hz -> (T, 65) float32 LLD frames."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 2:
            log.info("%s: %d channels averaged to mono", name, x.shape[1])
            x = x.mean(axis=1)
        if x.ndim != 1:
            raise AcousticError(f"{name}: expected (N,) or (N, C) samples, got shape {x.shape}")
        if sr != SAMPLE_RATE:
            log.info("%s: resampled %d Hz -> %d Hz", name, sr, SAMPLE_RATE)
            x = resample(x, sr, SAMPLE_RATE)
        if x.shape[0] < MIN_SAMPLES:
            raise AcousticError(
                f"{name}: {x.shape[0] / SAMPLE_RATE * 1000:.1f} ms of audio is shorter than one "
                f"60 ms openSMILE window"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            frames = self.smile.process_signal(x, SAMPLE_RATE).to_numpy(dtype=np.float32)
        if not np.isfinite(frames).all():
            log.warning("%s: non-finite openSMILE values set to 0", name)
            frames = np.nan_to_num(frames, nan=0.0, posinf=0.0, neginf=0.0)
        return np.ascontiguousarray(frames)

    def from_file(
        self,
        path: str | Path,
        start_s: float | None = None,
        end_s: float | None = None,
        speed: float = 1.0,
    ) -> np.ndarray:
        """(T, 65) float32 LLD frames of a file, or of its segment [start_s, end_s), played
        `speed` times as fast (`change_speed`)."""
        try:
            x = change_speed(load_audio(path, start_s, end_s), speed)
        except AudioError as exc:
            raise AcousticError(str(exc)) from exc
        return self.from_waveform(x, SAMPLE_RATE, name=str(path))

    def frame_times(self, n_frames: int) -> np.ndarray:
        """(T,) start time in seconds of each frame."""
        return np.arange(n_frames, dtype=np.float64) * self.frame_step_s


def voiced_frames(frames: np.ndarray) -> np.ndarray:
    """(T, 65) LLD frames -> (T,) bool: RMS energy within `VOICED_DB` dB of the loudest frame."""
    rms = frames[:, RMS_COLUMN].astype(np.float64)
    peak = rms.max(initial=0.0)
    if peak <= 0:
        return np.zeros(len(rms), dtype=bool)
    return rms >= peak * 10 ** (-VOICED_DB / 20)
