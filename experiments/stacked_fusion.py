"""MMMLA's GMU fitted on cross-fitted posteriors: `python -m experiments.stacked_fusion`.

    python -m experiments.stacked_fusion --outer runs/benchmark/ravdess4/whisper_base_l3_tuned \\
        --inner runs/xfit --text runs/lex_on_paired --out runs/stacked

OUTER: acoustic runs (one per fold and seed, speaker-independent). INNER: acoustic runs of the
same settings over each outer fold's training speakers only (`--set data.exclude_speakers=[the
outer fold's test speakers] --set data.protocol=speaker_kfold --set data.folds=5 --set
data.fold=all`, the same seeds; `--inner-commands 5` prints those sweeps, `--train-inner 5` runs
them first), whose test predictions give every training utterance an
acoustic posterior from a model that never saw its speaker. TEXT: lexical runs that tested every
utterance (`experiments.late_fusion`). Per outer run, a `lightning_modules.stacking.PosteriorGMU`
(MMMLA's GMU and head over the two branches' log-probabilities) is fitted on the training
utterances' cross-fitted acoustic and text posteriors and applied to the outer run's test
utterances; beside it, late fusion with its text weight chosen on the same cross-fitted
posteriors (UA, weights 0, 0.05, ..., 1) and with the fixed `DEFAULT_TEXT_WEIGHT`. The GMU's
width, weight decay and steps are chosen per outer run by cross-validation over its inner folds
(`select_settings`; `--hidden H --epochs E` fixes them instead), recorded in
`fusion_settings.json`. Every row is
tested against the acoustic runs (Wilcoxon across folds); seed ensembles average the seeds'
probabilities per fold. Writes `benchmark.md/.csv/.json` into --out (and with --save, each
fitted fusion as `fusers/<fold>__seed-<S>.npz`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from datamodules.paths import atomic_write_text
from experiments.baselines import scores
from experiments.benchmark_table import Row, build_table, write_outputs
from experiments.late_fusion import DEFAULT_TEXT_WEIGHT, LateFusionError, TextPosteriors, mix
from experiments.runs import ReportError, RunRecord, load_runs
from lightning_modules.predictions import Predictions, PredictionsError, mean_of
from lightning_modules.stacking import (
    FitSettings,
    StackingError,
    fit_posterior_gmu,
    fused_probabilities,
    save_fusion,
    select_settings,
)

WEIGHT_GRID = np.round(np.arange(0.0, 1.0001, 0.05), 2)


@dataclass
class CrossFit:
    """Cross-fitted acoustic posteriors of one set of training speakers and one seed."""

    probabilities: dict[str, np.ndarray]  # utterance id -> (C,)
    labels: dict[str, int]
    class_names: list[str]
    groups: dict[str, str] = field(default_factory=dict)  # utterance id -> its inner run


def speakers_of(corpus: str) -> dict[str, str]:
    """Utterance id -> speaker of a prepared corpus (a seam the tests replace)."""
    from datamodules.corpus import as_corpus

    return as_corpus(corpus).speaker_of


def cross_fits(inner: Sequence[RunRecord]) -> dict[tuple[frozenset[str], int], CrossFit]:
    """Inner runs' test predictions by (excluded speakers, seed); StackingError where two
    runs of a group tested the same utterance or predict other classes."""
    out: dict[tuple[frozenset[str], int], CrossFit] = {}
    for run in inner:
        excluded = frozenset(map(str, run.config.get("exclude_speakers") or ()))
        if not excluded:
            raise StackingError(f"{run.run_dir} excluded no speakers: not an inner run")
        pred = run.predictions()
        key = (excluded, int(run.config.get("seed") or 0))
        fit = out.setdefault(key, CrossFit({}, {}, list(pred.class_names)))
        if list(pred.class_names) != fit.class_names:
            raise StackingError(
                f"{run.run_dir} predicts {list(pred.class_names)}, not {fit.class_names}"
            )
        for uid, p, y in zip(pred.utterance_ids, pred.probabilities, pred.labels, strict=True):
            if uid in fit.probabilities:
                raise StackingError(f"{run.run_dir}: {uid} was tested by two inner runs")
            fit.probabilities[uid], fit.labels[uid] = p.astype(np.float64), int(y)
            fit.groups[uid] = str(run.run_dir)
    return out


def fold_name(run: RunRecord, test_speakers: set[str]) -> int | str:
    """The outer run's fold: its number, or its test speakers for a held-out set."""
    if run.config.get("protocol") == "speakers":
        return "+".join(sorted(test_speakers))
    return int(run.config.get("fold") or 0)


def best_weight(p_audio: np.ndarray, p_text: np.ndarray, labels: np.ndarray) -> float:
    """The late-fusion text weight of best UA on these posteriors (the smallest on ties)."""
    uas = [scores(labels, mix(p_audio, p_text, w).argmax(1))["ua"] for w in WEIGHT_GRID]
    return float(WEIGHT_GRID[int(np.argmax(uas))])


def stack(
    outer: Sequence[RunRecord],
    inner: Sequence[RunRecord],
    text: TextPosteriors,
    settings: FitSettings | None = None,
    save_dir: Path | None = None,
    chosen: dict[str, dict[str, object]] | None = None,
) -> list[Row]:
    """The table's rows: the acoustic runs, the stacked GMU, the two late fusions, their seed
    ensembles, and the text alone, per fold of the outer runs. Without `settings`, each
    outer run's fusion takes the settings of `SELECTION_GRID` that cross-validate best over
    its inner folds (`select_settings`); `chosen` collects them by outer run folder."""
    fits = cross_fits(inner)
    speaker_cache: dict[str, dict[str, str]] = {}
    names = ["acoustic", "stacked GMU (MMMLA fusion on cross-fitted posteriors)",
             "late fusion, w fit on cross-fitted posteriors",
             f"late fusion, w {DEFAULT_TEXT_WEIGHT:.2f} fixed"]  # fmt: skip
    features = str(outer[0].config.get("feature_set") or "")
    rows = {n: Row(n, features, "late", branch=names[0]) for n in names[1:]}
    rows = {names[0]: Row(names[0], features, "model"), **rows}
    ens_name = names[0] + " (seed ensemble)"
    ens = {n: Row(n + " (seed ensemble)", features, "late", branch=ens_name) for n in names[1:]}
    ens = {names[0]: Row(ens_name, features, "ensemble"), **ens}
    alone = Row("text alone", features, "model")
    by_fold: dict[int | str, dict[str, list[Predictions]]] = defaultdict(lambda: defaultdict(list))
    for run in outer:
        pred = run.predictions()
        corpus = str(run.config.get("corpus"))
        speaker_of = speaker_cache.setdefault(corpus, speakers_of(corpus))
        test_spk = {speaker_of[u] for u in pred.utterance_ids}
        seed = int(run.config.get("seed") or 0)
        fit = fits.get((frozenset(test_spk), seed))
        if fit is None:
            raise StackingError(
                f"no inner runs for {run.run_dir} (seed {seed}): train them with "
                f"--seeds {seed} --set 'data.exclude_speakers=[{', '.join(sorted(test_spk))}]'"
            )
        if fit.class_names != list(pred.class_names):
            raise StackingError(
                f"{run.run_dir} predicts {list(pred.class_names)}, its inner runs {fit.class_names}"
            )
        training = sorted(u for u, s in speaker_of.items() if s not in test_spk)
        missing = [u for u in training if u not in fit.probabilities]
        if missing:
            raise StackingError(
                f"the inner runs of {run.run_dir} tested {len(training) - len(missing)} of its "
                f"{len(training)} training utterances (e.g. {missing[0]} missing): every inner fold must have run"
            )
        p_a = np.stack([fit.probabilities[u] for u in training])
        y = np.array([fit.labels[u] for u in training])
        p_t = text.of_ids(training, fit.class_names)
        use, cv = settings, None
        if use is None:
            groups = np.array([fit.groups[u] for u in training])
            use, cv = select_settings(p_a, p_t, y, groups, seed)
        gmu = fit_posterior_gmu(p_a, p_t, y, seed=seed, settings=use)
        w = best_weight(p_a, p_t, y)
        fold = fold_name(run, test_spk)
        if chosen is not None:
            chosen[str(run.run_dir)] = {"settings": asdict(use), "cv_ua": cv, "text_weight": w}
        if save_dir is not None:
            save_fusion(gmu, fit.class_names, save_dir / f"{fold}__seed-{seed}.npz")
        t = text.of(pred)
        fused = {
            names[0]: pred.probabilities,
            names[1]: fused_probabilities(gmu, pred.probabilities, t)[0],
            names[2]: mix(pred.probabilities, t, w),
            names[3]: mix(pred.probabilities, t, DEFAULT_TEXT_WEIGHT),
        }
        for name, p in fused.items():
            rows[name].add(fold, scores(pred.labels, p.argmax(1)))
            by_fold[fold][name].append(
                Predictions(pred.utterance_ids, pred.labels, p.argmax(1), p, fit.class_names)
            )
        if fold not in alone.per_fold:
            alone.add(fold, scores(pred.labels, t.argmax(1)))
    for fold, per_name in by_fold.items():
        for name, preds in per_name.items():
            if len(preds) > 1:
                mean = mean_of(preds)
                ens[name].add(fold, scores(mean.labels, mean.probabilities.argmax(1)))
    return [*rows.values(), *(r for r in ens.values() if r.per_fold), alone]


# Outer sweep parameters an inner sweep sets itself (its folds, seeds and corpus).
INNER_OWN_KEYS = ("data.protocol", "data.folds", "data.fold", "data.test_speakers",
                  "data.val_speakers", "data.exclude_speakers", "data.corpus", "seed_everything")  # fmt: skip


def inner_sweeps(outer: Sequence[RunRecord], inner_dir: Path, folds: int = 5) -> list[list[str]]:
    """The `experiments.sweep` command lines (argv, from "python") that train the inner runs
    of `outer` (runs of a sweep, whose `sweep.json` gives their settings): per outer fold,
    `folds` speaker folds over its training speakers, with the outer runs' seeds and settings."""
    plans: dict[tuple[str, tuple[str, ...], tuple[str, ...]], tuple[set[int], int | str]] = {}
    speaker_cache: dict[str, dict[str, str]] = {}
    for run in outer:
        manifest = run.run_dir.parent / "sweep.json"
        try:
            entries = json.loads(manifest.read_text(encoding="utf-8"))["runs"]
            params = next(e["params"] for e in entries if e["name"] == run.run_dir.name)
        except (OSError, ValueError, KeyError, StopIteration) as exc:
            raise StackingError(f"{run.run_dir} has no entry in {manifest} ({exc!r})") from exc
        corpus = str(run.config.get("corpus"))
        speaker_of = speaker_cache.setdefault(corpus, speakers_of(corpus))
        test = tuple(sorted({speaker_of[u] for u in run.predictions().utterance_ids}))
        sets = tuple(f"{k}={json.dumps(v) if isinstance(v, list) else v}"
                     for k, v in sorted(params.items()) if k not in INNER_OWN_KEYS)  # fmt: skip
        seeds, _ = plans.setdefault((corpus, test, sets), (set(), fold_name(run, set(test))))
        seeds.add(int(params.get("seed_everything") or 0))
    out = []
    for (corpus, test, sets), (seeds, fold) in plans.items():
        args = ["python", "-m", "experiments.sweep", "configs/sweeps/benchmark.yaml", "--corpus", corpus,
                "--seeds", ",".join(map(str, sorted(seeds))), "--set", "data.protocol=speaker_kfold",
                "--set", f"data.folds={folds}", "--set", "data.fold=all",
                "--set", f"data.exclude_speakers=[{', '.join(test)}]"]  # fmt: skip
        for item in sets:
            args += ["--set", item]
        out.append([*args, "--out", str(inner_dir / f"outer-{fold}"), "--parallel", "2"])
    return out


def inner_commands(outer: Sequence[RunRecord], inner_dir: Path, folds: int = 5) -> list[str]:
    """`inner_sweeps` as shell lines."""
    import shlex

    return [shlex.join(argv) for argv in inner_sweeps(outer, inner_dir, folds)]


def train_inner(outer: Sequence[RunRecord], inner_dir: Path, folds: int = 5) -> None:
    """Run `inner_sweeps` one after the other with this interpreter (a sweep skips the runs it
    finished before, so a rerun resumes); StackingError naming the first that fails."""
    import shlex
    import subprocess

    for argv in inner_sweeps(outer, inner_dir, folds):
        print("+", shlex.join(argv), flush=True)
        if subprocess.run([sys.executable, *argv[1:]], check=False).returncode != 0:
            raise StackingError(f"inner sweep failed (rerun resumes it): {shlex.join(argv)}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.stacked_fusion", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--outer", type=Path, required=True, help="acoustic runs, one per fold and seed")
    p.add_argument("--inner", type=Path, required=True, help="their cross-fitting runs")
    p.add_argument(
        "--text",
        type=Path,
        help="lexical runs that tested every utterance (needed but with --inner-commands)",
    )
    p.add_argument("--out", type=Path, help="where benchmark.md/csv/json go")
    p.add_argument(
        "--hidden",
        type=int,
        help="GMU width (default: chosen with the steps and weight decay "
        "by cross-validation over the inner folds)",
    )
    p.add_argument(
        "--epochs", type=int, default=FitSettings.epochs, help="full-batch steps (with --hidden)"
    )
    p.add_argument("--save", action="store_true", help="write each fitted fusion under OUT/fusers")
    p.add_argument(
        "--inner-commands", type=int, metavar="K",
        help="print the sweeps that train INNER for OUTER's runs (K folds per outer fold) and exit",
    )  # fmt: skip
    p.add_argument(
        "--train-inner", type=int, metavar="K",
        help="first train INNER for OUTER's runs (those sweeps, K folds per outer fold; "
        "finished runs are skipped), then stack",
    )  # fmt: skip
    p.add_argument("--seeds", help="only the outer runs of these seeds (comma-separated)")
    args = p.parse_args(argv)
    start = time.time()
    if not args.inner_commands and (args.text is None or args.out is None):
        p.error("--text and --out are needed (but with --inner-commands)")
    try:
        outer, _ = load_runs(args.outer)
        if args.seeds:
            keep = {int(x) for x in args.seeds.split(",")}
            outer = [r for r in outer if int(r.config.get("seed") or 0) in keep]
        if args.inner_commands:
            print("\n".join(inner_commands(outer, args.inner, args.inner_commands)))
            return 0
        if args.train_inner:
            train_inner(outer, args.inner, args.train_inner)
        inner, _ = load_runs(args.inner)
        if not outer or not inner:
            raise ReportError(f"no finished runs under {args.outer if not outer else args.inner}")
        fixed = None if args.hidden is None else FitSettings(args.hidden, args.epochs)
        chosen: dict[str, dict[str, object]] = {}
        rows = stack(outer, inner, TextPosteriors.from_dir(args.text), fixed,
                     args.out / "fusers" if args.save else None, chosen)  # fmt: skip
    except (StackingError, ReportError, LateFusionError, PredictionsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    md = write_outputs(build_table(rows), args.out, str(args.outer), time.time() - start)
    atomic_write_text(args.out / "fusion_settings.json", json.dumps(chosen, indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
