"""The main job (`make run`): prepare a corpus, extract features, run the pooling and fusion
sweeps, write the reports.

`python -m experiments.main --corpus builtin [--root PATH] [--size small|full] [--workers N]`

`small` (the default for the built-in corpus) trains few epochs of small models on one
speaker-dependent fold so the whole job fits in minutes on 2 CPU cores; `full` (the default
for other corpora) runs the sweeps as written (every fold of leave-one-session-out, the
configs' epochs and sizes). Every step skips work already done, so a rerun resumes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datamodules.utterances import REPO_ROOT, table_path
from experiments import report as report_mod
from experiments import sweep as sweep_mod

SWEEPS = ("pooling", "fusion")


@dataclass(frozen=True)
class Size:
    """How big the sweeps are: fixed train options (`--set`) and epochs (None = configs')."""

    name: str
    sets: dict[str, Any] = field(default_factory=dict)
    max_epochs: int | None = None
    seeds: tuple[int, ...] | None = None  # None = the sweeps' own seeds


# Small: 10 variants x 3 seeds (the report's sd, CI and paired tests need several runs per
# variant) of few epochs, sized to keep `make run` within 15 minutes on 2 CPU cores from a
# fresh clone, install included (20 epochs x 1 seed took 4.5 minutes after the install).
SIZES = {
    "small": Size(
        "small",
        sets={
            "data.protocol": "sd8020",
            "data.fold": 0,
            "model.hidden_size": 32,
            "data.batch_size": 32,
        },
        max_epochs=8,
        seeds=(0, 1, 2),
    ),
    "full": Size("full"),
}


class MainError(Exception):
    """A step of the main job that failed; the message names the step and its log."""


def cpu_seconds() -> float:
    """User + sys CPU time of this process and every child it waited for (runs included)."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _step(title: str) -> float:
    print(f"\n=== {title} ===", flush=True)
    return time.monotonic()


def _done(t0: float, what: str) -> None:
    print(
        f"--- {what} ({time.monotonic() - t0:.0f} s; {cpu_seconds():.0f} CPU s so far)", flush=True
    )


def _python(args: Sequence[str], what: str) -> None:
    """Run `python -m ...` with its output shown; MainError on failure."""
    print("$ python " + " ".join(args), flush=True)
    rc = subprocess.call([sys.executable, *args], cwd=REPO_ROOT)
    if rc != 0:
        raise MainError(f"{what} failed (exit code {rc}): `python {' '.join(args)}`")


def prepare(reader: str, name: str, root: Path | None) -> None:
    """Prepare the corpus unless its table exists."""
    t0 = _step(f"1/4 prepare corpus '{name}' ({reader})")
    if table_path(name).is_file():
        print(f"already prepared: {table_path(name)}")
    else:
        if reader != "builtin" and root is None:
            raise MainError(f"--corpus {reader} needs --root PATH (the corpus folder or manifest)")
        args = ["-m", "experiments.prepare", reader, "--name", name]
        _python(args + (["--root", str(root)] if root else []), "prepare")
    _done(t0, "prepared")


# The strongest front end measured on real speech: Whisper base's hidden state 3 of 6 (README
# "Results on real speech"; chosen on the val actors of the RAVDESS folds, where it led the
# logistic probe over every other state and the output layer, with either normalisation).
AUTO_FRONT_END = ("whisper_base", "3")


def acoustic_front_end(choice: str, corpus: str, layer: str = "auto") -> tuple[str, str]:
    """(front end, hidden state). `auto`: `AUTO_FRONT_END` for a real corpus, ComParE LLDs for
    the synthetic built-in one (its voices are espeak's, and the job must stay within
    minutes); any other value is taken as given. `layer` auto: the auto front end's state,
    else the front end's output ("last")."""
    if choice == "auto":
        name, auto_layer = ("compare_lld", "last") if corpus == "builtin" else AUTO_FRONT_END
    else:
        name, auto_layer = choice, "last"
    return name, auto_layer if layer == "auto" else layer


def default_protocol(name: str) -> dict[str, Any]:
    """Leave-one-session-out where sessions group several speakers (IEMOCAP), else speaker
    k-fold (RAVDESS and most corpora: a session per speaker would be leave-one-speaker-out
    with a single-speaker val)."""
    from datamodules.utterances import read_table

    table = read_table(name)
    if table["session"].nunique() < table["speaker"].nunique():
        return {"data.protocol": "loso"}
    return {"data.protocol": "speaker_kfold", "data.folds": min(5, table["speaker"].nunique())}


def features(name: str, workers: int, acoustic: str = "compare_lld", layer: str = "last") -> None:
    """Extract and cache both modalities' features (a no-op when cached)."""
    shown = acoustic if layer == "last" else f"{acoustic}, hidden state {layer}"
    t0 = _step(f"2/4 features of '{name}' ({shown})")
    if importlib.util.find_spec("experiments.features") is not None:
        args = ["-m", "experiments.features", name, "--workers", str(workers)]
        _python(args + ["--acoustic", acoustic, "--acoustic-layer", layer], "features")
    else:  # the CLI is optional: the library call does the same
        from datamodules.features import FeatureConfig, extract

        config = FeatureConfig(acoustic_features=acoustic, acoustic_layer=layer)
        report = extract(name, config, ("acoustic", "lexical"), workers=workers)
        print(f"features cached: {report.key}")
    _done(t0, "features ready")


def run_sweeps(name: str, size: Size, out: Path, parallel: int) -> list[sweep_mod.RunResult]:
    """Run the pooling and fusion sweeps into `out/<sweep>`; returns every run's result."""
    results = []
    for i, sweep in enumerate(SWEEPS):
        t0 = _step(f"3/4 sweep {i + 1}/{len(SWEEPS)}: {sweep} ({size.name})")
        spec = sweep_mod.load_sweep(REPO_ROOT / "configs" / "sweeps" / f"{sweep}.yaml")
        spec, runs = sweep_mod.build_runs(spec, name, size.max_epochs, size.seeds, size.sets)
        done = sweep_mod.SweepRunner(runs, out / sweep, parallel=parallel).run()
        print(sweep_mod.summarize(done))
        results += done
        _done(t0, f"{sweep} sweep")
    return results


def write_reports(out: Path, title: str) -> list[Path]:
    """One report per sweep and one over both (the combined one holds every figure)."""
    t0 = _step("4/4 reports")
    paths = []
    for folder in [out / s for s in SWEEPS] + [out]:
        try:
            # Only the combined report logs to W&B: one W&B run holds every figure.
            rep = report_mod.write_report(
                folder, wandb_log=folder == out, title=title if folder == out else None
            )
        except report_mod.ReportError as exc:
            print(f"report of {folder} skipped: {exc}")
            continue
        assert rep.markdown is not None  # write_report always writes it
        paths.append(rep.markdown)
        print(f"{rep.markdown}: {len(rep.rows)} variants")
    _done(t0, "reports written")
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.main", description=__doc__)
    parser.add_argument(
        "--corpus",
        default="builtin",
        help="builtin, iemocap, ravdess, manifest, or a prepared name",
    )
    parser.add_argument("--root", type=Path, help="corpus folder (or manifest CSV)")
    parser.add_argument("--name", help="prepared corpus name (default: the reader's)")
    parser.add_argument("--size", choices=sorted(SIZES), help="small (builtin default) or full")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes for feature extraction and parallel runs",
    )
    parser.add_argument("--out", type=Path, help="runs folder (default runs/main/<name>-<size>)")
    parser.add_argument(
        "--acoustic",
        default="auto",
        help="acoustic front end: auto (whisper_base hidden state 3 for real corpora, "
        "compare_lld for the built-in one), compare_lld, whisper_tiny, whisper_base or hf:<path>",
    )
    parser.add_argument(
        "--acoustic-layer",
        default="auto",
        help="hidden state of a neural front end: auto (3 for --acoustic auto, else last), "
        "an index, last or all",
    )
    args = parser.parse_args(argv)

    from datamodules.corpora import READERS

    readers = tuple(READERS)
    reader = args.corpus if args.corpus in readers else None
    name = args.name or args.corpus
    size = SIZES[args.size or ("small" if args.corpus == "builtin" else "full")]
    out = args.out or REPO_ROOT / "runs" / "main" / f"{name}-{size.name}"
    os.environ.setdefault("WANDB_MODE", "offline")
    t0 = time.monotonic()
    print(f"main job: corpus '{name}', size {size.name}, {args.workers} workers, runs in {out}")
    try:
        if reader:
            prepare(reader, name, args.root)
        elif not table_path(name).is_file():
            raise MainError(
                f"corpus '{name}' is neither a reader ({', '.join(readers)}) nor prepared"
            )
        acoustic, layer = acoustic_front_end(args.acoustic, args.corpus, args.acoustic_layer)
        features(name, args.workers, acoustic, layer)
        sets = dict(size.sets)
        if acoustic != "compare_lld":
            sets["data.acoustic_features"] = acoustic
        if layer != "last":
            sets["data.acoustic_layer"] = layer
        if size.name == "full":
            sets = {**default_protocol(name), **sets}
        size = Size(size.name, sets, size.max_epochs, size.seeds)
        results = run_sweeps(name, size, out, max(1, args.workers))
        reports = write_reports(out, f"{name} ({size.name})")
    except (MainError, sweep_mod.SweepError) as exc:
        print(f"\nmain job stopped: {exc}", file=sys.stderr)
        return 2
    failed = [r for r in results if r.status == "failed"]
    print(
        f"\nmain job done in {(time.monotonic() - t0) / 60:.1f} min "
        f"({cpu_seconds() / 60:.1f} CPU min): "
        f"{len(results) - len(failed)}/{len(results)} runs finished"
    )
    for path in reports:
        print(f"  report: {path}")
    if failed:
        print(f"  {len(failed)} runs failed (see FAILED in their folders)", file=sys.stderr)
    return 1 if failed or not reports else 0


if __name__ == "__main__":
    sys.exit(main())
