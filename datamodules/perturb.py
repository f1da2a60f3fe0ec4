"""Speed perturbation of the training clips (`data.speed_perturb`, e.g. [0.9, 1.1]).

Each clip trained on is also trained on as a copy played at each factor (resampled, so tempo
and pitch change together: Kaldi's speed perturbation, Ko et al. 2015). A copy is a row of a
derived table, `speed_view(corpus, factor)`: id `<id>@sp<factor>`, speaker `<speaker>@sp<factor>`
(a new speaker, so per-speaker normalisation standardises each copy with its own statistics),
the same label and audio file, word times divided by the factor, and a `speed` column that the
feature cache reads (`datamodules.features`) and keys on. The copies of the whole corpus are
cached once per factor and feature set, so every fold and seed reuses them; only the training
part's copies are trained on, and val and test never see one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from datamodules.corpus import PreparedCorpus
from datamodules.utterances import words_from_json, words_to_json

SPEED_RANGE = (0.5, 2.0)  # outside it a copy is no longer plausible speech


class PerturbError(ValueError):
    """A speed perturbation setting that cannot be used; the message names the value."""


def check_factors(factors: Sequence[float] | None) -> list[float]:
    """Sorted distinct factors, each in `SPEED_RANGE` and not 1 (PerturbError naming the key)."""
    out: list[float] = []
    for value in factors or []:
        try:
            factor = float(value)
        except (TypeError, ValueError) as exc:
            raise PerturbError(f"data.speed_perturb: '{value}' is not a number") from exc
        if not SPEED_RANGE[0] <= factor <= SPEED_RANGE[1] or factor == 1.0:
            raise PerturbError(
                f"data.speed_perturb: {factor:g} must lie in [{SPEED_RANGE[0]}, "
                f"{SPEED_RANGE[1]}] and differ from 1 (the clips themselves are always used)"
            )
        out.append(factor)
    return sorted(set(out))


def copy_id(name: str, factor: float) -> str:
    """The id of a clip's copy at speed `factor` (and the name of a speaker's copy)."""
    return f"{name}@sp{factor:g}"


def _scaled_words(words: Any, factor: float) -> str:
    scaled = []
    for w in words_from_json(words):
        start = None if w.start is None else w.start / factor
        end = None if w.end is None else w.end / factor
        scaled.append(replace(w, start=start, end=end))
    return words_to_json(scaled)


def speed_view(corpus: PreparedCorpus, factor: float) -> PreparedCorpus:
    """`corpus` as copies played at speed `factor` (see the module docstring)."""
    table = corpus.table.copy()
    table["utterance_id"] = [copy_id(u, factor) for u in table["utterance_id"]]
    table["speaker"] = [copy_id(s, factor) for s in table["speaker"].astype(str)]
    table["speed"] = factor
    table["words"] = [_scaled_words(w, factor) for w in table["words"]]
    if "duration_s" in table.columns:
        table["duration_s"] = table["duration_s"] / factor
    return PreparedCorpus(corpus.name, table, corpus.meta, transcripts=corpus.transcripts)
