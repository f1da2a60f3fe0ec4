"""Which code a run was trained with: the git commit of the checkout, whether its tracked files
had uncommitted changes, and the versions of the libraries that decide the numbers.

`experiments.train` records it in `metrics.json` ("code") when a run starts, and
`experiments.benchmark` names the rows whose runs came from more than one version, so a table
never silently averages runs of two codes (a change of the batch order, say) as one.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from datamodules.paths import REPO_ROOT

# The libraries whose versions can move a run's figures.
LIBRARIES = (
    "torch",
    "pytorch-lightning",
    "numpy",
    "scikit-learn",
    "transformers",
    "opensmile",
    "ctranslate2",
)
UNRECORDED = "unrecorded"


def _git(root: Path, *args: str) -> str | None:
    """One git command's output in `root`, None where git or the repository is missing."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def code_record(root: Path = REPO_ROOT) -> dict[str, Any]:
    """The commit of `root` (None outside a git checkout), `dirty` (tracked files changed
    since it; untracked files do not count), library versions, Python and the thread count."""
    commit = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=no") if commit else None
    import torch

    return {
        "commit": commit,
        "dirty": None if status is None else bool(status),
        "versions": {name: _version(name) for name in LIBRARIES},
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def code_label(metrics: dict[str, Any]) -> str:
    """A run's code version in a few characters: the short commit, `+dirty` where the tree had
    changes; `unrecorded` for runs written before the record existed or outside git."""
    code = metrics.get("code") or {}
    commit = code.get("commit")
    if not commit:
        return UNRECORDED
    return f"{str(commit)[:7]}{'+dirty' if code.get('dirty') else ''}"
