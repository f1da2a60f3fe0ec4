"""The `wandb agent` path: the sweep resolved for `wandb sweep`, and a reachable server probed."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from datamodules.utterances import REPO_ROOT, atomic_write_text
from experiments.sweeps.spec import RunSpec, SweepSpec, config_path


def wandb_server() -> str | None:
    """The W&B server URL when one is reachable and W&B is not offline, else None."""
    if os.environ.get("WANDB_MODE", "") in ("offline", "disabled", "dryrun"):
        return None
    if shutil.which("wandb") is None and not Path(sys.executable).with_name("wandb").exists():
        return None
    url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=3):
            return url
    except OSError:
        return None


def wandb_yaml(spec: SweepSpec, runs: Sequence[RunSpec], out: Path | None = None) -> dict[str, Any]:
    """The sweep for `wandb sweep`: folds and command-line overrides resolved to values.

    With `out`, every agent run writes under `out/<WANDB_RUN_ID>/` (the trainer appends the
    run id the agent sets; see `experiments.train.EmotionCLI.before_instantiate_classes`).
    """
    raw = {k: v for k, v in spec.raw.items() if k not in ("run_cap",) or spec.method == "random"}
    params = dict(spec.parameters)
    for key in {k for r in runs for k in r.params}:
        values = sorted({json.dumps(r.params[key]) for r in runs if key in r.params})
        decoded = [json.loads(v) for v in values]
        if "distribution" in params.get(key, {}):
            continue
        params[key] = {"value": decoded[0]} if len(decoded) == 1 else {"values": decoded}
    if "config" in params:  # wandb passes values verbatim: give it file paths
        spec_c = params["config"]
        if "values" in spec_c:
            params["config"] = {"values": [config_path(str(v)) for v in spec_c["values"]]}
        else:
            params["config"] = {"value": config_path(str(spec_c["value"]))}
    if out is not None:
        params["trainer.default_root_dir"] = {"value": str(out)}
    raw["parameters"] = params
    return raw


def run_wandb_agent(spec: SweepSpec, runs: Sequence[RunSpec], out: Path) -> int:
    """Register the resolved sweep with `wandb sweep` and run `wandb agent` on it."""
    out.mkdir(parents=True, exist_ok=True)
    resolved = out / "wandb_sweep.yaml"
    atomic_write_text(resolved, yaml.safe_dump(wandb_yaml(spec, runs, out), sort_keys=False))
    wandb_bin = str(Path(sys.executable).with_name("wandb"))
    if not Path(wandb_bin).exists():
        wandb_bin = "wandb"
    proc = subprocess.run(
        [wandb_bin, "sweep", str(resolved)], cwd=REPO_ROOT, capture_output=True, text=True
    )
    text = proc.stdout + proc.stderr
    print(text)
    match = re.search(r"wandb agent (\S+)", text)
    if proc.returncode != 0 or not match:
        print("sweep: `wandb sweep` did not give a sweep id", file=sys.stderr)
        return 1
    return subprocess.call([wandb_bin, "agent", match.group(1)], cwd=REPO_ROOT)
