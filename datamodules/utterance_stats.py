"""Utterance statistics of normalised acoustic frames, standardised per speaker.

`data.utterance_stats true` gives every acoustic model, besides its frames, one vector per
utterance: for each frame dimension the mean, standard deviation, 1st/25th/50th/75th/99th
percentiles, and the mean absolute and standard deviation of the frame-to-frame differences
(`STATISTICS`; (len(STATISTICS) * F,)). Like the functionals of the classic baseline they are
then z-scored per speaker over that speaker's utterances (with `normalization speaker`; test
speakers included, from their own unlabelled clips, as the frames are) or with the training
part's statistics (`global`, and for a speaker the checkpoint never saw). Measured offline on
RAVDESS (README): the per-speaker step is what makes pooled LLD statistics competitive.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from datamodules.normalization import Normalizer

PERCENTILES = (1, 25, 50, 75, 99)
STATISTICS = (
    "mean",
    "std",
    *(f"p{q}" for q in PERCENTILES),
    "abs_delta_mean",
    "delta_std",
)


def stats_dim(frame_dim: int) -> int:
    """Length of the statistics vector of (T, frame_dim) frames."""
    return len(STATISTICS) * frame_dim


def utterance_stats(frames: np.ndarray) -> np.ndarray:
    """(T, F) frames -> (len(STATISTICS) * F,) float32, statistic-major (all means first).
    No frames give zeros; a single frame gives zero spread and zero differences."""
    x = np.asarray(frames, dtype=np.float64)
    f = x.shape[1]
    if len(x) == 0:
        return np.zeros(stats_dim(f), np.float32)
    delta = np.diff(x, axis=0) if len(x) > 1 else np.zeros((1, f))
    parts = [
        x.mean(0),
        x.std(0),
        *np.percentile(x, PERCENTILES, axis=0),
        np.abs(delta).mean(0),
        delta.std(0),
    ]
    return np.nan_to_num(np.concatenate(parts)).astype(np.float32)


def fit_stats_normalizer(
    stats: Mapping[str, np.ndarray],
    fit_ids: list[str],
    speaker_of: Mapping[str, str],
    frame_normalization: str,
) -> Normalizer:
    """Standardisation of utterance statistics: per speaker where the frames are normalised
    per speaker, else with the statistics of the utterances trained on (`fit_ids`)."""
    mode = "speaker" if frame_normalization == "speaker" else "global"
    return Normalizer.fit({u: s[None] for u, s in stats.items()}, fit_ids, speaker_of, mode)


def standardised(stats: np.ndarray, normalizer: Normalizer, speaker: str | None) -> np.ndarray:
    """One utterance's statistics vector standardised (global statistics for a new speaker)."""
    return normalizer.normalize(stats[None], speaker)[0]
