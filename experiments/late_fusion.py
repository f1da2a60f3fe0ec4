"""Late fusion: an acoustic model's test probabilities mixed with a text model's, per utterance.

    fused = (1 - w) · p_acoustic + w · p_text

The text probabilities come from runs of a lexical model (`experiments.train` writes each
run's `predictions.npz`): a text model trained per fold, or one model tested on every fold
(e.g. a text branch pretrained on other lines: `experiments.train test --ckpt_path ...
--data.fold K`). Where several text runs tested an utterance (seeds), their probabilities are
averaged first. Only test predictions are read, so an utterance's text probability comes from a
model that did not train on it, as long as the text runs' own splits were leak-free.

`DEFAULT_TEXT_WEIGHT` (1/3): on RAVDESS audio + MELD text (4 classes, 6 speaker folds × 3
seeds, experiments/RESULTS.md "Late fusion") w = 0.2 and 1/3 gave the same gain over the acoustic model on
Whisper states (90.5 UA against 88.8) and w = 0.5 none (88.9): a text model far weaker than
the acoustic one is worth a minority vote. It was read off those test folds, so it was checked on the three
held-out sets of six actors too (better on each). Choosing w on the val speakers does not work:
the acoustic checkpoint was selected on them, so they overrate it (w = 0 in 11 of 18 runs).
`late_rows` makes the benchmark's rows (`experiments.benchmark --late-text`); prediction mixes
the same way (`experiments.predict --text-weight`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from experiments.benchmark_table import Row
from experiments.runs import RunRecord, load_runs
from lightning_modules.predictions import Predictions, mean_of

DEFAULT_TEXT_WEIGHT = 1 / 3


class LateFusionError(Exception):
    """Text runs that cannot be fused with an acoustic run; the message says which and why."""


def check_weight(weight: float) -> float:
    """`weight` as a float, or LateFusionError outside [0, 1]."""
    if not 0.0 <= weight <= 1.0:
        raise LateFusionError(f"the text weight must be in [0, 1]; got {weight}")
    return float(weight)


def mix(p_audio: np.ndarray, p_text: np.ndarray, weight: float) -> np.ndarray:
    """Late fusion of class probabilities: (1 - weight) · p_audio + weight · p_text."""
    w = check_weight(weight)
    return (1 - w) * np.asarray(p_audio, np.float64) + w * np.asarray(p_text, np.float64)


class TextPosteriors:
    """Per-utterance class probabilities of a folder of text runs (the seeds' mean)."""

    def __init__(self, runs: Sequence[RunRecord], source: str = "") -> None:
        self.source = source
        self.class_names: list[str] = []
        self.features = ", ".join(sorted({str(r.config.get("feature_set") or "") for r in runs}))
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, int] = {}
        for run in runs:
            if "acoustic" in str(run.config.get("modality", "")):
                raise LateFusionError(
                    f"{run.run_dir} is a run of the {run.config.get('architecture')} model; "
                    "late fusion takes its text from lexical runs only"
                )
            pred = run.predictions()
            if not self.class_names:
                self.class_names = list(pred.class_names)
            elif list(pred.class_names) != self.class_names:
                raise LateFusionError(
                    f"{run.run_dir} predicts {list(pred.class_names)}, but the other text "
                    f"runs predict {self.class_names}"
                )
            for uid, p in zip(pred.utterance_ids, pred.probabilities, strict=True):
                sums[uid] = sums.get(uid, 0.0) + p.astype(np.float64)
                counts[uid] = counts.get(uid, 0) + 1
        if not sums:
            raise LateFusionError(f"no text run with predictions under {source or 'the runs'}")
        self.probabilities = {u: s / counts[u] for u, s in sums.items()}

    @classmethod
    def from_dir(cls, runs_dir: Path) -> TextPosteriors:
        runs, _ = load_runs(runs_dir)
        if not runs:
            raise LateFusionError(f"no finished text run (metrics.json) under {runs_dir}")
        return cls(runs, str(runs_dir))

    def of(self, pred: Predictions) -> np.ndarray:
        """(N, C) text probabilities of `pred`'s utterances, in its order."""
        return self.of_ids(pred.utterance_ids, pred.class_names)

    def of_ids(self, ids: Sequence[str], class_names: Sequence[str]) -> np.ndarray:
        """(N, C) text probabilities of the utterances `ids` (an acoustic run's, predicting
        `class_names`), in that order."""
        if list(class_names) != self.class_names:
            raise LateFusionError(
                f"the text runs ({self.source}) predict {self.class_names}, the acoustic run "
                f"{list(class_names)}"
            )
        missing = [u for u in ids if u not in self.probabilities]
        if missing:
            raise LateFusionError(
                f"the text runs ({self.source}) tested none of {len(missing)} utterances the "
                f"acoustic run did, e.g. {missing[:3]}"
            )
        return np.stack([self.probabilities[u] for u in ids])

    def fuse(self, pred: Predictions, weight: float) -> np.ndarray:
        """(N, C) fused probabilities: (1 - weight) · the run's + weight · the text's."""
        return mix(pred.probabilities, self.of(pred), weight)


def late_rows(
    acoustic: Sequence[tuple[Row, dict[int | str, list[Predictions]]]],
    text: TextPosteriors,
    weight: float,
) -> list[Row]:
    """Per acoustic row (with its runs' predictions by fold), its runs' probabilities fused
    with the text's (`TextPosteriors.fuse`), run by run, named after it and tested against it,
    and likewise its seed ensemble's where a fold has seeds; and one row for the text alone on
    the same folds' test utterances."""
    from experiments.baselines import scores

    out: list[Row] = []
    alone = Row(f"text alone ({Path(text.source).name or 'text runs'})", text.features, "model")
    suffix = f" + text, late fusion w {weight:.2f}"
    for row, folds in acoustic:
        late = Row(row.name + suffix, row.features, "late", branch=row.name)
        for fold, preds in folds.items():
            for pred in preds:
                late.add(fold, scores(pred.labels, text.fuse(pred, weight).argmax(1)))
            if fold not in alone.per_fold:
                alone.add(fold, scores(preds[0].labels, text.of(preds[0]).argmax(1)))
        out.append(late)
        if any(len(p) > 1 for p in folds.values()):
            ensemble = f"{row.name} (seed ensemble)"  # the row benchmark.model_rows makes
            late = Row(ensemble + suffix, row.features, "late", branch=ensemble)
            for fold, preds in folds.items():
                mean = mean_of(preds)
                late.add(fold, scores(mean.labels, text.fuse(mean, weight).argmax(1)))
            out.append(late)
    return out + ([alone] if out else [])
