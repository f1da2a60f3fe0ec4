"""Refit finished runs on train + val: `python -m experiments.refit SWEEP_DIR [--out DIR]`.

The classic recipe the baselines follow (`experiments.baselines`: C chosen on val, then a
refit on train + val) for the trained models. Each finished run under SWEEP_DIR (a folder
with `metrics.json` and `config.yaml`, as `experiments.train fit` leaves it) is trained again
from scratch with its own config and seed on its training *and* validation speakers
(`--data.fit_on train+val`) for as many epochs as its checkpoint needed (`budget.best_epoch`,
chosen on val), and the weights after the last of them (the EMA average where the run used
one) are tested on the same test speakers. Nothing is chosen on the test part, and nothing
on the now in-sample val part: the epoch count is fixed beforehand. One run's best epoch is
chosen on a few val speakers and moves from seed to seed; `--epochs median` gives every run
the median best epoch of the runs that differ from it only in their seed (the seeds of a
variant on one fold), a steadier count chosen on the same val speakers.

Refit runs go to `--out` (default `<SWEEP_DIR>-refit`), one folder per run under the same
relative name, so `experiments.benchmark` over a folder holding both pairs each refit with
its run by fold and seed (rows "· refit on train+val"), and `experiments.report` over the
sweep folder is unchanged. They run as a sweep does (`--parallel N`, finished ones skipped
on a rerun, a failed one leaves `FAILED`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from experiments.run_record import checkpoint_epoch
from experiments.runs import ReportError, RunRecord, load_runs
from experiments.sweeps.runner import SweepRunner, run_for_cli
from experiments.sweeps.spec import RunSpec

REFIT_SUFFIX = "-refit"


class RefitError(Exception):
    """A run folder that cannot be refitted; the message names it."""


def run_epochs(run: RunRecord) -> int:
    """The epochs a run's checkpoint was chosen after (1-based), from its budget record or
    the checkpoint itself (`RunRecord.checkpoint_path`: found in a moved run folder too)."""
    budget = run.metrics.get("budget") or {}
    ckpt = run.checkpoint_path
    epochs = budget.get("best_epoch") or checkpoint_epoch(str(ckpt) if ckpt else None)
    if not epochs:
        raise RefitError(
            f"{run.run_dir}/metrics.json records no best epoch and its checkpoint "
            f"{run.metrics.get('checkpoint')!r} cannot be read"
        )
    return int(epochs)


def seed_group(run: RunRecord) -> str:
    """What a run shares with the other seeds of its variant on its fold: its config but the
    seed."""
    return json.dumps({k: v for k, v in run.config.items() if k != "seed"}, sort_keys=True)


def median_epochs(runs: Sequence[RunRecord]) -> dict[str, int]:
    """The median best epoch of each seed group (`seed_group`), rounded half up."""
    counts: dict[str, list[int]] = {}
    for run in runs:
        counts.setdefault(seed_group(run), []).append(run_epochs(run))
    return {k: int(statistics.median(v) + 0.5) for k, v in counts.items()}


def refit_runs(sweep_dir: Path, epochs: int | str | None = None) -> list[RunSpec]:
    """One refit per finished run under `sweep_dir` (refits themselves are left out):
    its config, train + val, and its best epoch count (or `epochs` for all, or with
    "median" the median best epoch of its seed group, `median_epochs`)."""
    sweep_dir = Path(sweep_dir)
    try:
        found, unreadable = load_runs(sweep_dir)
    except ReportError as exc:
        raise RefitError(str(exc)) from exc
    if unreadable:
        raise RefitError(f"cannot refit {unreadable[0]}")
    found = [run for run in found if run.config.get("fit_on") != "train+val"]
    medians = median_epochs(found) if epochs == "median" else {}
    runs = []
    for run in found:
        run_dir = run.run_dir
        config = run_dir / "config.yaml"
        if not config.is_file():
            raise RefitError(f"{run_dir} has no config.yaml to refit from")
        n = medians[seed_group(run)] if medians else int(epochs or run_epochs(run))
        params = {
            "config": str(config.resolve()),
            "data.fit_on": "train+val",
            "trainer.max_epochs": n,
            # no selection on the in-sample val part: keep the last epoch's weights
            "checkpoint.monitor": "null",
            "early_stopping.patience": n + 1,
        }
        name = "." if run_dir == sweep_dir else str(run_dir.relative_to(sweep_dir))
        runs.append(RunSpec(name, params))
    if not runs:
        raise RefitError(f"{sweep_dir} holds no finished run (metrics.json) to refit")
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.refit", description=__doc__)
    parser.add_argument("sweep", type=Path, help="a sweep folder (or one run folder)")
    parser.add_argument("--out", type=Path, help=f"refit folder (default <sweep>{REFIT_SUFFIX})")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once")
    parser.add_argument(
        "--epochs",
        help="train every refit this many epochs, or 'median': the median best epoch of the "
        "run's seeds on its fold (default: each run's own best)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the runs, run nothing")
    args = parser.parse_args(argv)
    epochs = args.epochs
    if epochs is not None and epochs != "median":
        if not epochs.isdigit() or int(epochs) < 1:
            print(f"refit: --epochs must be 'median' or >= 1, got {epochs!r}", file=sys.stderr)
            return 2
        epochs = int(epochs)
    try:
        runs = refit_runs(args.sweep, epochs)
    except RefitError as exc:
        print(f"refit: {exc}", file=sys.stderr)
        return 2
    sweep = args.sweep.resolve()
    out = args.out or sweep.with_name(sweep.name + REFIT_SUFFIX)
    runner = SweepRunner(runs, out, parallel=args.parallel)
    if args.dry_run:
        for run in runs:
            print(run.name, " ".join(runner.command(run)))
        return 0
    hint = f"runs in {out}; compare with `python -m experiments.benchmark {out.parent}`"
    return run_for_cli(runner, "refit", hint)


if __name__ == "__main__":
    sys.exit(main())
