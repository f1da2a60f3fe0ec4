"""Shared test fixtures: a private cache per test, the shared corpora, the slow marker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SER_SHARED", REPO.parent / "shared"))
RAVDESS = SHARED / "corpora" / "ravdess"
MELD = SHARED / "corpora" / "meld_text"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow test: set RUN_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SER_CACHE for one test."""
    path = tmp_path / "cache"
    path.mkdir()
    monkeypatch.setenv("SER_CACHE", str(path))
    return path


@pytest.fixture(scope="session")
def ravdess_root() -> Path:
    if not RAVDESS.is_dir():
        pytest.skip(f"RAVDESS not found at {RAVDESS} (set SER_SHARED to the shared folder)")
    return RAVDESS


@pytest.fixture(scope="session")
def meld_root() -> Path:
    if not MELD.is_dir():
        pytest.skip(f"MELD text not found at {MELD} (set SER_SHARED to the shared folder)")
    return MELD
