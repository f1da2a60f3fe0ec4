"""Rank a tuning sweep by validation only: `python -m experiments.tune SWEEP_DIR`.

Groups the finished runs of a sweep (its `sweep.json`) by their parameters other than fold
and seed, averages each group's checkpoint-selection value (`metrics.json` "selection":
the best val/ua, or whatever the checkpoint monitored) over its folds, and prints the
groups best first with the winner's values as YAML to paste into a variant config. Test
figures are never read, so the test speakers stay unseen while tuning.

`--metric val/ua_smooth` ranks by the best epoch of another validation metric from each
run's CSV log instead (the highest value; the lowest for a loss): the best raw val UA of a
run is the maximum of ~20 noisy figures on a few speakers, the smoothed one less so.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

RUN_KEYS = ("data.fold", "seed_everything", "data.corpus")  # what varies inside a group


class TuneError(Exception):
    """A sweep folder that cannot be ranked; the message names it."""


def logged_best(run_dir: Path, metric: str) -> tuple[float, str]:
    """The best epoch's value of a validation `metric` in a run's CSV log, and the mode."""
    path = run_dir / "csv" / "metrics.csv"
    if not path.is_file():
        raise TuneError(f"{path} not found: --metric reads each run's CSV log")
    log = pd.read_csv(path)
    if metric not in log.columns or log[metric].isna().all():
        raise TuneError(f"{path} logs no {metric!r}")
    mode = "min" if "loss" in metric else "max"
    values = log[metric].dropna()
    return float(values.min() if mode == "min" else values.max()), mode


def rank(sweep_dir: Path, metric: str | None = None) -> list[dict[str, Any]]:
    """Groups of runs best first: params, mean/sd of the selection value (or of the best
    epoch of the logged validation `metric`), folds, mode."""
    if metric is not None and not metric.startswith("val/"):
        raise TuneError(f"--metric {metric!r} is not a validation metric (val/...)")
    manifest = Path(sweep_dir) / "sweep.json"
    if not manifest.is_file():
        raise TuneError(f"{manifest} not found: rank the folder a sweep wrote")
    runs = json.loads(manifest.read_text(encoding="utf-8")).get("runs") or []
    groups: dict[str, dict[str, Any]] = {}
    for run in runs:
        metrics_path = Path(sweep_dir) / run["name"] / "metrics.json"
        if not metrics_path.is_file():
            continue
        selection = json.loads(metrics_path.read_text(encoding="utf-8")).get("selection") or {}
        if metric is not None:
            best, mode = logged_best(metrics_path.parent, metric)
            selection = {"monitor": metric, "mode": mode, "best": best}
        if selection.get("best") is None:
            raise TuneError(f"{metrics_path} records no checkpoint selection value")
        params = {k: v for k, v in run["params"].items() if k not in RUN_KEYS}
        key = json.dumps(params, sort_keys=True)
        group = groups.setdefault(
            key, {"params": params, "values": [], "monitor": selection.get("monitor"),
                  "mode": selection.get("mode", "max")}
        )  # fmt: skip
        group["values"].append(float(selection["best"]))
    if not groups:
        raise TuneError(f"no finished run in {sweep_dir}")
    out = []
    for g in groups.values():
        v = np.asarray(g.pop("values"))
        out.append({**g, "mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else
                    float("nan"), "n": int(len(v))})  # fmt: skip
    sign = -1.0 if all(g["mode"] == "max" for g in out) else 1.0
    return sorted(out, key=lambda g: (-g["n"], sign * g["mean"]))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.tune", description=__doc__)
    p.add_argument("sweep_dir", type=Path)
    p.add_argument(
        "--metric",
        help="rank by the best epoch of this logged validation metric (e.g. val/ua_smooth) "
        "instead of the checkpoint's selection value",
    )
    args = p.parse_args(argv)
    try:
        ranked = rank(args.sweep_dir, args.metric)
    except TuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for i, g in enumerate(ranked, 1):
        shown = ", ".join(f"{k}={v}" for k, v in g["params"].items() if k != "config")
        print(f"{i:2d}. {g['monitor']} {g['mean']:.3f} ± {g['sd']:.3f} (n={g['n']})  {shown}")
    best = ranked[0]["params"]
    nested: dict[str, Any] = {}
    for key, value in best.items():
        if key == "config" or "." not in key:
            continue
        section, name = key.split(".", 1)
        nested.setdefault(section, {})[name] = value
    print(f"\n# best by mean {ranked[0]['monitor']} over folds ({args.sweep_dir})")
    print(yaml.safe_dump(nested, sort_keys=True).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
