"""Utterance statistics of normalised acoustic frames, standardised per speaker.

`data.utterance_stats true` (the set "frames") gives every acoustic model, besides its
frames, one vector per utterance: for each frame dimension the mean, standard deviation,
1st/25th/50th/75th/99th percentiles, and the mean absolute and standard deviation of the
frame-to-frame differences (`STATISTICS`; (len(STATISTICS) * F,)). `data.utterance_stats
speech` adds the same dimensions' mean, standard deviation and 1st/50th/99th percentiles over
the clip's speech frames only (`SPEECH_STATISTICS`; RMS energy within 30 dB of the clip's
loudest frame, `voiced_frames`, so ComParE LLD frames only) and the fraction of frames that are
speech: the leading and trailing silence of a clip no longer dilutes them, as the classic
functionals' voiced-segment statistics are not. Like the functionals of the classic baseline
they are then z-scored per speaker over that speaker's utterances (with `normalization
speaker`; test speakers included, from their own unlabelled clips, as the frames are) or with
the training part's statistics (`global`, and for a speaker the checkpoint never saw).
Measured offline on RAVDESS (experiments/RESULTS.md): the per-speaker step is what makes
pooled LLD statistics competitive.
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
SPEECH_PERCENTILES = (1, 50, 99)
SPEECH_STATISTICS = ("speech_mean", "speech_std", *(f"speech_p{q}" for q in SPEECH_PERCENTILES))
MIN_SPEECH_FRAMES = 3  # fewer speech frames than this: the speech statistics use every frame
STATS_SETS = ("frames", "speech")  # the values of data.utterance_stats besides off
# other spellings of data.utterance_stats (bools and None as str() writes them, lowercased)
STATS_ALIASES = {"false": None, "none": None, "off": None, "": None, "true": "frames"}


class StatsSetError(ValueError):
    """A data.utterance_stats value that names no statistics set."""


def stats_set(value: bool | str | None) -> str | None:
    """data.utterance_stats as a set name: None (off: false, none), "frames" (true, frames)
    or "speech"; anything else raises, naming the option and the values it takes."""
    text = str(value).strip().lower()
    if text in STATS_ALIASES:
        return STATS_ALIASES[text]
    if text not in STATS_SETS:
        raise StatsSetError(
            f"data.utterance_stats must be false, true or one of {STATS_SETS}, got {value!r}"
        )
    return text


def stats_dim(frame_dim: int, which: str = "frames") -> int:
    """Length of the statistics vector of (T, frame_dim) frames for set `which`."""
    n = len(STATISTICS) * frame_dim
    return n + len(SPEECH_STATISTICS) * frame_dim + 1 if which == "speech" else n


def utterance_stats(frames: np.ndarray, speech: np.ndarray | None = None) -> np.ndarray:
    """(T, F) frames -> (len(STATISTICS) * F,) float32, statistic-major (all means first).
    No frames give zeros; a single frame gives zero spread and zero differences.
    `speech` ((T,) bool, the set "speech"): followed by `SPEECH_STATISTICS` over those frames
    (over every frame where fewer than `MIN_SPEECH_FRAMES` are speech) and their fraction."""
    x = np.asarray(frames, dtype=np.float64)
    f = x.shape[1]
    if len(x) == 0:
        return np.zeros(stats_dim(f, "frames" if speech is None else "speech"), np.float32)
    delta = np.diff(x, axis=0) if len(x) > 1 else np.zeros((1, f))
    parts = [
        x.mean(0),
        x.std(0),
        *np.percentile(x, PERCENTILES, axis=0),
        np.abs(delta).mean(0),
        delta.std(0),
    ]
    if speech is not None:
        mask = np.asarray(speech, dtype=bool)
        if mask.shape != (len(x),):
            raise ValueError(f"speech mask of shape {mask.shape} for {len(x)} frames")
        s = x[mask] if mask.sum() >= MIN_SPEECH_FRAMES else x
        parts += [
            s.mean(0),
            s.std(0),
            *np.percentile(s, SPEECH_PERCENTILES, axis=0),
            np.array([mask.mean()]),
        ]
    return np.nan_to_num(np.concatenate(parts)).astype(np.float32)


def clip_stats(raw: np.ndarray, normalized: np.ndarray, which: str = "frames") -> np.ndarray:
    """One clip's statistics (set `which`) of its `normalized` frames; the speech frames of the
    set "speech" are found on its `raw` (un-normalised ComParE LLD) frames."""
    from datamodules.features.acoustic import voiced_frames  # loads the features package

    speech = voiced_frames(np.asarray(raw)) if which == "speech" else None
    return utterance_stats(normalized, speech)


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
