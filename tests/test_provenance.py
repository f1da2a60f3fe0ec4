"""experiments.provenance: a run records the commit it was trained with, dirty or not, and the
real-speech table names the rows whose runs came from several versions of the code."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from experiments import benchmark as bm
from experiments.benchmark_table import build_table, markdown
from experiments.provenance import UNRECORDED, code_label, code_record
from experiments.runs import RunRecord

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


@needs_git
def test_the_record_names_the_commit_and_a_changed_tracked_file(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "commit", "-q", "-m", "one")
    head = _git(tmp_path, "rev-parse", "HEAD")
    record = code_record(tmp_path)
    assert record["commit"] == head and record["dirty"] is False
    assert record["versions"]["torch"] and record["threads"] >= 1
    (tmp_path / "notes.txt").write_text("untracked files do not make a tree dirty\n")
    assert code_record(tmp_path)["dirty"] is False
    (tmp_path / "a.py").write_text("x = 2\n")
    assert code_record(tmp_path)["dirty"] is True
    assert code_label({"code": code_record(tmp_path)}) == f"{head[:7]}+dirty"


def test_outside_a_checkout_the_commit_is_none_not_an_error(tmp_path: Path) -> None:
    record = code_record(tmp_path / "not-a-repo")
    assert record["commit"] is None and record["dirty"] is None
    assert code_label({"code": record}) == UNRECORDED == code_label({})


def _run(tmp_path: Path, name: str, fold: int, commit: str | None) -> tuple[RunRecord, tuple]:
    config = {"architecture": "acoustic", "modality": "acoustic", "pooling": "attention",
              "fusion": "none", "corpus": "c", "protocol": "speaker_kfold", "feature_set": "wb"}  # fmt: skip
    metrics = {"ua": 0.7, "wa": 0.7, "macro_f1": 0.7, "config": config}
    if commit:
        metrics["code"] = {"commit": commit, "dirty": False}
    return RunRecord(tmp_path / name, metrics), ("c", "speaker_kfold", 6, fold, 0, (), ())


def test_the_table_names_rows_trained_by_several_versions(tmp_path: Path) -> None:
    made = [_run(tmp_path, "a", 0, "a" * 40), _run(tmp_path, "b", 1, "a" * 40)]
    runs, splits = [r for r, _ in made], {str(r.run_dir): s for r, s in made}
    table = build_table(bm.model_rows(runs, splits))
    assert table[0]["code"] == {"aaaaaaa": 2}
    assert "more than one version" not in markdown(table, "c", 1.0)
    made.append(_run(tmp_path, "c", 2, "b" * 40))
    made.append(_run(tmp_path, "d", 3, None))
    runs, splits = [r for r, _ in made], {str(r.run_dir): s for r, s in made}
    md = markdown(build_table(bm.model_rows(runs, splits)), "c", 1.0)
    assert "more than one version" in md
    assert "acoustic · attention (wb): aaaaaaa × 2, bbbbbbb × 1, unrecorded × 1" in md
