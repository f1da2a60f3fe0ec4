"""The real-speech results table: `python -m experiments.benchmark RUNS [--out DIR]`.

Reads every finished run under RUNS (a `configs/sweeps/benchmark.yaml` sweep, usually one
folder per feature set and seed), and on the very same splits (read from each run's
checkpoint record, so baselines and models see identical speakers) computes the classic
baselines:

- `svm functionals`: openSMILE ComParE_2016 functionals + linear SVM (`experiments.baselines`),
  and where runs trained on speed-perturbed copies, the SVM trained on the same copies too,
- `lr probe <feature set>`: logistic regression on the mean ⊕ std of the cached frames of each
  acoustic feature set the runs used (the linear probe a sequence model must beat).

Each baseline fit is cached under a key of everything it reads (`experiments.baseline_cache`),
so a table redrawn over the same folds reads its baselines back instead of refitting them
(`--refit-baselines` fits them again and overwrites the cache).

Each model row is UA / WA / macro-F1, mean ± sd over folds × seeds; a `seed ensemble` row per
variant averages the seeds' test probabilities per fold. Paired tests (`experiments.stats.
wilcoxon`) run across folds on per-fold means: each model row against the best baseline, and
each pooling against attention on the same feature set. `--late-text TEXT_RUNS` adds, per
acoustic row, its late fusion with a text model's test probabilities (`experiments.late_fusion`),
tested against that row, and the text alone. Writes `benchmark.md`, `benchmark.csv` and
`benchmark.json` into --out (default: RUNS) and prints the table.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.splits import load_keyed_split, split_key
from datamodules.utterance_stats import stats_set
from experiments.benchmark_table import Row, build_table, write_outputs
from experiments.late_fusion import (
    DEFAULT_TEXT_WEIGHT,
    LateFusionError,
    TextPosteriors,
    late_rows,
)
from experiments.provenance import code_label
from experiments.run_record import acoustic_label
from experiments.runs import (
    ENCODER_SETTING_KEYS,
    SETTING_KEYS,
    ReportError,
    RunRecord,
    load_runs,
    variant_key,
)
from lightning_modules.predictions import Predictions, PredictionsError, mean_of

log = logging.getLogger("experiments.benchmark")

SVM_ROW = "svm functionals"
PROBE_ROW = "lr probe"


class BenchmarkError(Exception):
    """Runs that cannot be compared (none, mixed corpora, no split); the message says which."""


# ---------------------------------------------------------------------------------------
# Runs and their splits


def split_of(run: RunRecord) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """(split key, checkpoint record's data and features) of a run, from its checkpoint."""
    from lightning_modules.checkpoint import read_checkpoint, read_record

    ckpt = run.checkpoint_path
    if ckpt is None or not ckpt.is_file():
        recorded = run.metrics.get("checkpoint")
        raise BenchmarkError(
            f"{run.run_dir}: its checkpoint {recorded!r} is gone; the split is unknown"
        )
    record = read_record(read_checkpoint(ckpt), ckpt)
    data = record["data"]
    return split_key(data), {"data": data, "features": record["features"]}


def fold_of(key: tuple[Any, ...]) -> int | str:
    """A split's fold in the table: its fold number, or for protocol `speakers` its test
    speakers ("A+B"), so that several held-out sets are several folds, not one."""
    if key[1] == "speakers" and key[5]:
        return "+".join(sorted(map(str, key[5])))
    return int(key[3])


def load_split(key: tuple[Any, ...]) -> dict[str, list[str]]:
    """The split of a `split_of` key (a seam the tests replace)."""
    return load_keyed_split(key)


# Row-name suffix of a baseline per fit (`baseline_rows`' `fits`).
FIT_SUFFIX = {"train+val": "", "train": " · train only"}


# data.utterance_stats by its value: the statistics set a row's runs read.
STATS_LABELS = {"frames": "utterance stats", "speech": "utterance stats · speech frames"}
# Recipe switches a row names when a run turned them on (config key -> label).
RECIPE_LABELS = {
    "utterance_functionals": "functionals",
    "speed_perturb": "speed perturbation {}",
    "time_masks": "time masks ×{}",
    "feature_masks": "feature masks ×{}",
    "frame_dropout": "frame dropout {}",
    "modality_dropout": "modality dropout {}",
    "ema_decay": "EMA {}",
    "branch_loss": "branch loss {}",
    "label_smoothing": "label smoothing {}",
    "mixup": "mixup {}",
    "input_stats": "input stats",
    "stats_norm": "stats norm",
    "probe_init": "probe init",
    "freeze_init": "frozen",
    "posterior_branch": "{} posteriors",
}


def init_label(path: str) -> str:
    """A pretrained branch's checkpoint by its run folder (…/<run>/checkpoints/best.ckpt)."""
    p = Path(path)
    return p.parent.parent.name if p.parent.name == "checkpoints" else p.stem


def recipe_labels(config: dict[str, Any]) -> list[str]:
    """What sets a run apart from the plain recipe: speaker/no normalisation, balanced
    sampling, a refit on train + val (`experiments.refit`) and every switch in
    `RECIPE_LABELS` it turned on (runs recorded before a switch existed read as off)."""
    labels = [f"{config['normalization']} norm"] if config.get("normalization") not in (
        None, "global") else []  # fmt: skip
    labels += ["balanced"] if config.get("balanced_sampling") else []
    labels += ["refit on train+val"] if config.get("fit_on") == "train+val" else []
    labels += [
        f"{m} branch from {init_label(config[f'init_{m}'])}"
        for m in ("acoustic", "lexical")
        if config.get(f"init_{m}")
    ]
    stats = stats_set(config.get("utterance_stats"))  # older runs: true
    labels += [STATS_LABELS[stats]] if stats else []
    labels += [label.format(config[k]) for k, label in RECIPE_LABELS.items() if config.get(k)]
    return labels


def selection_labels(metrics: dict[str, Any]) -> list[str]:
    """A run whose checkpoint was chosen on another val metric than val/ua says which."""
    monitor = (metrics.get("selection") or {}).get("monitor")
    return [f"selected on {monitor}"] if monitor not in (None, "val/ua") else []


def run_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The `SETTING_KEYS` a run recorded (older records lack some: those are not compared);
    a probe has no BLSTM, so its encoder size is not one of them."""
    keys = [
        k
        for k in SETTING_KEYS
        if config.get("sequence_encoder") != "none" or k not in ENCODER_SETTING_KEYS
    ]
    return {k: config[k] for k in keys if config.get(k) is not None}


def _setting_label(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"{key} {'on' if value else 'off'}"
    return f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}"


def model_rows(
    runs: Sequence[RunRecord],
    splits: dict[str, tuple],
    text: TextPosteriors | None = None,
    text_weight: float = DEFAULT_TEXT_WEIGHT,
) -> list[Row]:
    """A row per variant × feature set × recipe, split further where runs differ in a
    `SETTING_KEYS` value every one of them recorded (never one row over two settings), and a
    seed-ensemble row where a fold has ≥ 2 seeds. With `text`, each acoustic row gets a
    late-fusion row (`late_rows`)."""
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for run in runs:
        labels = [*recipe_labels(run.config), *selection_labels(run.metrics)]
        groups[(*variant_key(run), *labels)].append(run)
    rows: dict[tuple, Row] = {}
    probs: dict[tuple, dict[int | str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for base, members in groups.items():
        settings = [run_settings(r.config) for r in members]
        known = set.intersection(*(set(s) for s in settings))
        varying = [
            k for k in SETTING_KEYS if k in known and len({repr(s[k]) for s in settings}) > 1
        ]
        arch, _, pooling, fusion, _, _, features, transcripts = base[:8]
        for run, setting in zip(members, settings, strict=True):
            extra = tuple(_setting_label(k, setting[k]) for k in varying)
            key = (*base, *extra)
            parts = (arch, pooling, fusion, transcripts, *base[8:], *extra)
            row = rows.setdefault(key, Row(" · ".join(p for p in parts if p), features, "model"))
            fold = fold_of(splits[str(run.run_dir)])
            row.add(fold, run.metrics)
            version = code_label(run.metrics)
            row.code[version] = row.code.get(version, 0) + 1
            try:
                probs[key][fold].append(run.predictions())
            except Exception as exc:  # noqa: BLE001 - an old run without predictions: no ensemble
                log.info("%s: no predictions for the seed ensemble (%s)", run.run_dir, exc)
    out = list(rows.values())
    for key, folds in probs.items():
        if not any(len(p) > 1 for p in folds.values()):
            continue
        base_row = rows[key]
        ensemble = Row(f"{base_row.name} (seed ensemble)", base_row.features, "ensemble")
        ensemble.code = dict(base_row.code)
        for fold, preds in folds.items():
            ensemble.add(fold, _ensemble_scores(preds))
        out.append(ensemble)
    if text is not None:
        acoustic = [(rows[k], folds) for k, folds in probs.items() if k[1] == "acoustic"]
        out += late_rows(acoustic, text, text_weight)
    return out


def _ensemble_scores(preds: Sequence[Predictions]) -> dict[str, float]:
    from experiments.baselines import scores

    try:
        mean = mean_of(preds)
    except PredictionsError as exc:
        raise BenchmarkError(f"seeds of one fold: {exc}") from exc
    return scores(mean.labels, mean.predictions)


# ---------------------------------------------------------------------------------------
# Baselines on the same splits


def baseline_rows(
    splits: dict[tuple, dict[str, Any]],
    workers: int = 1,
    with_svm: bool = True,
    speaker_norm: bool = False,
    fits: Sequence[str] = ("train+val",),
    speed_sets: Sequence[tuple[float, ...]] = (),
    refresh: bool = False,
) -> list[Row]:
    """SVM on functionals and an LR probe per acoustic feature key, on each distinct split;
    with `speaker_norm` (some run normalised per speaker) each once more on features
    standardised per speaker (`baselines.standardise_by_speaker`), rows named so. `fits`:
    "train+val" refits on train + val after choosing C on val (the classic recipe), "train"
    keeps the train-only fit (the data the models train on), in rows named "· train only".
    `speed_sets` (the factors of runs trained on speed-perturbed copies): the SVM once more per
    set, trained on the clips and their copies as those runs were (each copy a speaker of its
    own for the per-speaker standardisation; C chosen on the val clips; the refit takes val's
    copies too), in rows named "· speed perturbation [...]". Each fit is read from the
    baseline cache where it is there, unless `refresh` (`baseline_cache.cached_fit`)."""
    from datamodules.corpus import as_corpus
    from datamodules.features import load
    from experiments.baseline_cache import cached_fit, digest_arrays, fit_key
    from experiments.baselines import (
        functional_matrix,
        probe_on_split,
        standardise_by_speaker,
        svm_on_split,
    )

    rows: dict[str, Row] = {}
    feature_cache: dict[tuple[str, str], Any] = {}
    memo: dict[tuple, tuple[np.ndarray, str]] = {}
    norms = ("", " · speaker norm") if speaker_norm else ("",)
    for key, info in sorted(splits.items(), key=lambda kv: str(kv[0])):
        corpus = as_corpus(str(key[0]))
        fold = fold_of(key)
        split = load_split(key)
        index = {c: i for i, c in enumerate(corpus.classes)}
        ids = corpus.table["utterance_id"].tolist()
        speakers = corpus.table["speaker"].astype(str).tolist()

        label_of = {u: index[corpus.label_of[u]] for u in ids}
        row_of = {u: i for i, u in enumerate(ids)}

        def labels(ids: list[str], label_of: dict = label_of) -> np.ndarray:
            return np.array([label_of[u] for u in ids])

        idx = {p: [row_of[u] for u in split[p]] for p in ("train", "val", "test")}
        y = {p: labels(split[p]) for p in idx}
        for norm in norms if with_svm else ():
            for factors, fit in ((f, fit) for f in [(), *speed_sets] for fit in fits):
                read = {
                    s: functional_matrix(corpus, s, bool(norm), workers, memo)
                    for s in (1.0, *factors)
                }
                x = {s: matrix for s, (matrix, _) in read.items()}
                digests = "+".join(digest for _, digest in read.values())
                fit_id = fit_key(digests, kind="svm", idx=idx, y=y, fit=fit, speeds=factors)
                svm = partial(svm_on_split, x, y, idx, factors, fit)
                out = cached_fit(corpus.name, fit_id, svm, refresh)
                speeds = RECIPE_LABELS["speed_perturb"].format(list(factors))
                name = SVM_ROW + (f" · {speeds}" if factors else "") + norm + FIT_SUFFIX[fit]
                rows.setdefault(name, Row(name, "ComParE_2016 functionals", "baseline"))
                rows[name].add(fold, out)
        for fkey, norm in ((f, n) for f in sorted(info["feature_keys"]) for n in norms):
            label = info["feature_keys"][fkey]
            if (fkey, norm) not in feature_cache:
                frames = load(corpus, fkey, ("acoustic",)).acoustic
                if norm:
                    frames = dict(
                        zip(
                            ids,
                            standardise_by_speaker([frames[u] for u in ids], speakers),
                            strict=True,
                        )
                    )
                have = sorted(frames)  # the clips with frames, and their frames
                digest = digest_arrays([np.asarray(have), *(frames[u] for u in have)])
                feature_cache[fkey, norm] = frames, digest
            frames, digest = feature_cache[fkey, norm]
            for fit in fits:
                fit_id = fit_key(digest, kind="probe", split=split, y=y, fit=fit)
                final = fit == "train+val"
                out = cached_fit(
                    corpus.name,
                    fit_id,
                    partial(probe_on_split, frames, split, label_of, final),
                    refresh,
                )
                name = f"{PROBE_ROW} {label}{norm}{FIT_SUFFIX[fit]}"
                rows.setdefault(name, Row(name, label, "baseline"))
                rows[name].add(fold, out)
    return list(rows.values())


def run_benchmark(
    runs_dir: Path,
    out: Path | None = None,
    workers: int = 1,
    with_svm: bool = True,
    fits: Sequence[str] = ("train+val",),
    late_text: Path | None = None,
    text_weight: float = DEFAULT_TEXT_WEIGHT,
    refit_baselines: bool = False,
) -> tuple[list[dict[str, Any]], str]:
    t0 = time.perf_counter()
    text = TextPosteriors.from_dir(late_text) if late_text else None
    runs, skipped = load_runs(runs_dir)
    for note in skipped:
        log.warning("skipped %s", note)
    if not runs:
        raise BenchmarkError(f"no finished run (metrics.json) under {runs_dir}")
    splits: dict[tuple, dict[str, Any]] = {}
    run_split: dict[str, tuple] = {}
    for run in runs:
        key, info = split_of(run)
        run_split[str(run.run_dir)] = key
        entry = splits.setdefault(key, {"feature_keys": {}})
        features = info["features"]
        if features.get("key") and "acoustic" in str(run.config.get("modality", "")):
            config = features.get("config") or {}
            label = acoustic_label(config.get("acoustic_features"), config.get("acoustic_layer"))
            entry["feature_keys"][features["key"]] = label  # as the runs name it
    corpora = {k[0] for k in splits}
    if len(corpora) != 1:
        raise BenchmarkError(f"runs of several corpora under {runs_dir}: {sorted(corpora)}")
    speaker_norm = any(run.config.get("normalization") == "speaker" for run in runs)
    speed_sets = sorted(
        {tuple(r.config["speed_perturb"]) for r in runs if r.config.get("speed_perturb")}
    )
    rows = model_rows(runs, run_split, text, text_weight) + baseline_rows(
        splits, workers, with_svm, speaker_norm, fits, speed_sets, refit_baselines
    )
    table = build_table(rows)
    md = write_outputs(table, Path(out or runs_dir), corpora.pop(), time.perf_counter() - t0)
    return table, md


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.benchmark", description=__doc__)
    p.add_argument("runs", type=Path, help="folder of benchmark runs (searched recursively)")
    p.add_argument("--out", type=Path, help="where benchmark.md/csv/json go (default: RUNS)")
    p.add_argument("--workers", type=int, default=1, help="openSMILE workers for functionals")
    p.add_argument("--no-svm", action="store_true", help="skip the functionals + SVM baseline")
    p.add_argument(
        "--refit-baselines",
        action="store_true",
        help="fit every baseline again instead of reading cache/<corpus>/baselines/ "
        "(and store the new fits there)",
    )
    p.add_argument(
        "--baseline-fit",
        choices=("train+val", "train", "both"),
        default="train+val",
        help="baselines refit on train + val once C is chosen (default, the classic recipe), "
        "keep the train-only fit (the data the models train on), or both rows",
    )
    p.add_argument(
        "--late-text",
        type=Path,
        metavar="TEXT_RUNS",
        help="runs of a text model tested on the same utterances: adds, per acoustic row, its "
        "late fusion with their probabilities, and the text alone (experiments.late_fusion)",
    )
    p.add_argument(
        "--text-weight",
        type=float,
        default=DEFAULT_TEXT_WEIGHT,
        help="the text's weight in the late fusion (default: %(default).2f)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        fits = ("train+val", "train") if args.baseline_fit == "both" else (args.baseline_fit,)
        _, md = run_benchmark(
            args.runs, args.out, args.workers, not args.no_svm, fits,
            args.late_text, args.text_weight, args.refit_baselines,
        )  # fmt: skip
    except (BenchmarkError, ReportError, LateFusionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
