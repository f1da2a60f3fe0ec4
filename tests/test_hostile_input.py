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


@pytest.mark.parametrize("name", ["../../x", "a/b", ".hidden", "..", "", "x y", "/abs", "é"])
def test_corpus_name_must_stay_under_cache(cache_dir: Path, name: str, capsys) -> None:
    from datamodules.paths import CorpusError, corpus_dir
    from experiments import prepare

    with pytest.raises(CorpusError, match="corpus name"):
        corpus_dir(name)
    rc = prepare.main(["builtin", "--name", name, "--per-class", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "corpus name" in err and repr(name) in err
    assert list(cache_dir.parent.glob("**/utterances.csv")) == []


def test_corpus_name_allowed_chars(cache_dir: Path) -> None:
    from datamodules.paths import corpus_dir

    assert corpus_dir("iemocap_4.v2-a") == cache_dir / "iemocap_4.v2-a"
