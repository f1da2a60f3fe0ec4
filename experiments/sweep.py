"""Run a W&B-format sweep YAML: a local runner (grid or seeded random) or `wandb agent`.

`python -m experiments.sweep configs/sweeps/pooling.yaml [--corpus NAME] [--out DIR]
[--parallel N] [--max-epochs N] [--seeds 0,1,2] [--set KEY=VALUE ...] [--wandb-agent]`

Every parameter maps onto a train CLI option (`config` -> `--config configs/<v>.yaml`,
`data.fold` -> `--data.fold K`, ...). `data.fold: all` expands to every fold of the
protocol on the corpus. Each run gets one sub-folder named from its swept parameters; a
folder with `metrics.json` is skipped on a rerun, a failed run leaves `FAILED` (the tail
of its log) and the sweep goes on.

Each run is started in its own process group; when the sweep ends in any way (SIGTERM, SIGINT,
an error, interpreter exit) every run still going is terminated with its whole group (the
training's data-loader workers too), SIGKILL after `KILL_GRACE_S`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from datamodules.utterances import REPO_ROOT, CorpusError
from experiments.sweeps.agent import run_wandb_agent, wandb_server, wandb_yaml
from experiments.sweeps.runner import (
    DEFAULT_TRAIN_CMD,
    KILL_GRACE_S,
    RunResult,
    SweepInterrupted,
    SweepRunner,
    run_for_cli,
    stop_process_groups,
    summarize,
)
from experiments.sweeps.spec import (
    RunSpec,
    SweepError,
    SweepSpec,
    build_runs,
    config_path,
    expand,
    load_sweep,
    n_folds,
    override,
    run_name,
    train_args,
)

# The names callers (experiments.main, the tests) import from here; the code is in
# experiments.sweeps.
__all__ = [
    "DEFAULT_TRAIN_CMD",
    "KILL_GRACE_S",
    "REPO_ROOT",
    "RunResult",
    "RunSpec",
    "SweepError",
    "SweepInterrupted",
    "SweepRunner",
    "SweepSpec",
    "build_runs",
    "config_path",
    "expand",
    "load_sweep",
    "main",
    "n_folds",
    "override",
    "parse_set",
    "run_name",
    "run_wandb_agent",
    "stop_process_groups",
    "summarize",
    "train_args",
    "wandb_server",
    "wandb_yaml",
]


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs; VALUE is parsed as YAML, and `a,b` becomes a list to sweep. A value
    in YAML flow syntax (`[a, b]`, `{k: v}`) is one value, e.g. data.test_speakers=[A, B]."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise SweepError(f"--set {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        if "," in value and not value.lstrip().startswith(("[", "{")):
            out[key.strip()] = [yaml.safe_load(v) for v in value.split(",")]
            continue
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise SweepError(f"--set {item!r}: the value is not valid YAML ({exc})") from exc
        # a list written in flow syntax is one value of a list option, not values to sweep
        out[key.strip()] = {"value": parsed} if isinstance(parsed, list) else parsed
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.sweep", description=__doc__)
    parser.add_argument("sweep", type=Path, help="sweep YAML (W&B format)")
    parser.add_argument("--corpus", help="prepared corpus name (sets data.corpus)")
    parser.add_argument("--out", type=Path, help="sweep folder (default runs/sweeps/<name>)")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once")
    parser.add_argument("--max-epochs", type=int, help="sets trainer.max_epochs")
    parser.add_argument("--seeds", help="comma-separated seeds (sets seed_everything)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fix a train option for every run (a,b sweeps it); repeatable",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the runs, run nothing")
    parser.add_argument("--wandb-agent", action="store_true", help="run with `wandb agent`")
    args = parser.parse_args(argv)
    try:
        spec = load_sweep(args.sweep)
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
        spec, runs = build_runs(spec, args.corpus, args.max_epochs, seeds, parse_set(args.set))
    except (SweepError, CorpusError, ValueError) as exc:
        print(f"sweep: {exc}", file=sys.stderr)
        return 2
    out = args.out or REPO_ROOT / "runs" / "sweeps" / spec.name
    if args.dry_run:
        runner = SweepRunner(runs, out, parallel=args.parallel)
        for run in runs:
            print(run.name, " ".join(runner.command(run)))
        return 0
    if args.wandb_agent:
        server = wandb_server()
        if server:
            return run_wandb_agent(spec, runs, out)
        print(
            "sweep: no W&B server is reachable (WANDB_MODE offline/disabled or no network); "
            "running the same sweep with the local runner instead"
        )
    runner = SweepRunner(runs, out, parallel=args.parallel)
    return run_for_cli(
        runner, "sweep", f"runs in {out}; report with `python -m experiments.report {out}`"
    )


if __name__ == "__main__":
    sys.exit(main())
