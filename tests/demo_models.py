"""Tiny built-in corpus and checkpoints shared by the prediction and demo tests (made once).

`demo_models(root)` prepares a small built-in corpus in `root/cache` and trains, with the real
`experiments.train` CLI, the acoustic and MMMLA models into `root/runs/demo/<arch>/` (the
place the demo keeps the built-in models, so the acoustic one is also the MMMLA's fallback).
`$SER_TEST_MODELS` names a folder to keep them in between test sessions (made if absent).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PER_CLASS = 4  # utterances per speaker and class: 64 clips
EPOCHS = 1  # the tests check the pipeline, not accuracy
HIDDEN = 32
ARCHS = ("acoustic", "mmmla")
CONFIGS = {"acoustic": "acoustic_attention", "mmmla": "mmmla"}


@dataclass(frozen=True)
class DemoModels:
    root: Path
    cache: Path
    runs: Path

    def checkpoint(self, arch: str) -> Path:
        return self.runs / "demo" / arch / "checkpoints" / "best.ckpt"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SER_CACHE": str(self.cache),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "WANDB_MODE": "disabled",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "PYTHONPATH": str(REPO),
        }


def _run(cmd: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("a") as out:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{tail}")


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def demo_models(root: Path) -> DemoModels:
    """Prepare the tiny corpus and train both models, unless `root` already holds them."""
    root = Path(os.environ.get("SER_TEST_MODELS") or root)
    models = DemoModels(root, root / "cache", root / "runs")
    done = root / "done.json"
    if done.is_file():
        return models
    root.mkdir(parents=True, exist_ok=True)
    env, log = models.env(), root / "log.txt"
    py = sys.executable
    _run([py, "-m", "experiments.prepare", "builtin", "--per-class", str(PER_CLASS)], env, log)
    # Features once, then the two trainings side by side (they only read the cache).
    _run([py, "-m", "experiments.features", "builtin", "--no-progress"], env, log)
    procs = []
    for arch in ARCHS:
        cmd = [
            py, "-m", "experiments.train", "fit",
            "--config", str(REPO / "configs" / f"{CONFIGS[arch]}.yaml"),
            "--data.corpus", "builtin",
            "--trainer.default_root_dir", str(models.checkpoint(arch).parent.parent),
            "--trainer.max_epochs", str(EPOCHS),
            "--model.hidden_size", str(HIDDEN),
            "--trainer.enable_progress_bar", "false",
            "--wandb", "false",
        ]  # fmt: skip
        arch_log = root / f"train-{arch}.txt"
        procs.append((arch, arch_log, _start(cmd, env, arch_log)))
    for arch, arch_log, proc in procs:
        if proc.wait() != 0 or not models.checkpoint(arch).is_file():
            tail = "\n".join(arch_log.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"training {arch} failed ({proc.returncode}):\n{tail}")
    done.write_text(json.dumps({"archs": list(ARCHS)}))
    return models
