"""Reliability under hostile input, second pass (issue #15): file modes, cache names, labels,
audio checks in prepare, checksummed cache loads, checkpoint refusals, windowed prediction."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from datamodules.paths import atomic_write_text


def test_atomic_write_honours_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o600


def test_packaged_model_folder_honours_umask(tmp_path: Path) -> None:
    from datamodules.packaged import _assemble

    old = os.umask(0o022)
    try:
        out = _assemble(tmp_path / "model", lambda d: (d / "w.bin").write_bytes(b"x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
