"""The built-in corpus and its features in a private cache, for tests that train on it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def prepare_builtin(cache: Path, *prepare_args: str, workers: int | None = None) -> Path:
    """The built-in corpus and its features in `cache` (a SER_CACHE), via the real CLIs."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make system-deps): no built-in corpus")
    env = {**os.environ, "SER_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    features = ["experiments.features", "builtin", "--no-progress"]
    features += ["--workers", str(workers)] if workers else []
    for args in (["experiments.prepare", "builtin", *prepare_args], features):
        proc = subprocess.run(
            [sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return cache
