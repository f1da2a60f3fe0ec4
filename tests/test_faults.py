"""Reliability under faults: killed sweeps, live and stale locks, resumes (issue #15).

Kill tests send real signals to real child processes and then look for survivors by pid.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datamodules.locks import LockedError, PidLock, pid_alive

REPO = Path(__file__).resolve().parents[1]

# A training stand-in that starts a "data-loader worker" grandchild, writes both pids, and
# runs until killed.
SLOW_TRAIN = r"""
import os, subprocess, sys, time
from pathlib import Path
args = sys.argv[1:]
opts = {args[i][2:]: args[i + 1] for i in range(1, len(args), 2)}
out = Path(opts["trainer.default_root_dir"])
out.mkdir(parents=True, exist_ok=True)
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
(out / "pids").write_text(f"{os.getpid()} {worker.pid}")
time.sleep(600)
"""

SWEEP_DRIVER = r"""
import sys
from pathlib import Path
from experiments import sweep as sw
runs = [sw.RunSpec(f"r{i}", {"data.fold": i}) for i in range(2)]
runner = sw.SweepRunner(runs, Path(sys.argv[1]), train_cmd=[sys.executable, sys.argv[2], "fit"],
                        parallel=2)
runner.run()
"""


def _wait_for(paths: list[Path], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.is_file() and p.read_text().strip() for p in paths):
        assert time.monotonic() < deadline, f"{paths} never appeared"
        time.sleep(0.1)


def _gone(pids: list[int], timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if pid_alive(p)]
        if not alive:
            return []
        time.sleep(0.1)
    return alive


def _start_sweep(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    (tmp_path / "train.py").write_text(SLOW_TRAIN)
    (tmp_path / "driver.py").write_text(SWEEP_DRIVER)
    out = tmp_path / "sweep"
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "driver.py"), str(out), str(tmp_path / "train.py")],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    files = [out / f"r{i}" / "pids" for i in range(2)]
    _wait_for(files)
    pids = [int(x) for f in files for x in f.read_text().split()]
    assert all(pid_alive(p) for p in pids)
    return proc, pids


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_killing_a_sweep_stops_its_runs_and_their_workers(tmp_path: Path, signum: int) -> None:
    proc, pids = _start_sweep(tmp_path)
    proc.send_signal(signum)
    assert proc.wait(timeout=60) != 0
    left = _gone(pids)
    for pid in left:  # never leave them behind, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert left == []


def test_sigkilled_sweep_takes_its_runs_with_it(tmp_path: Path) -> None:
    proc, pids = _start_sweep(tmp_path)
    proc.kill()
    proc.wait(timeout=30)
    runs = pids[0::2]  # the trainings die with the sweep (PDEATHSIG)
    left = _gone(runs)
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert left == []


HOLDER = r"""
import sys, time
from datamodules.locks import PidLock
PidLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_live_run_lock_refuses_and_a_dead_holders_lock_is_taken_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lock_path = tmp_path / "run" / ".lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError, match=f"in use by pid {holder.pid}"):
            PidLock(lock_path, "run folder x").acquire()
    finally:
        holder.kill()
        holder.wait()
    assert lock_path.read_text().strip() == str(holder.pid)  # the killed holder's pid stays
    with caplog.at_level("WARNING"), PidLock(lock_path, "run folder x") as lock:
        assert lock_path.read_text().strip() == str(os.getpid())
        assert lock.fd is not None
    assert f"stale lock of pid {holder.pid}" in caplog.text


def test_train_refuses_a_live_run_folder(tmp_path: Path, capsys) -> None:
    from experiments.train import cli

    root = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root / ".lock")],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        argv = ["fit", "--config", str(REPO / "configs" / "acoustic_mean.yaml"),
                "--trainer.default_root_dir", str(root), "--wandb", "false"]  # fmt: skip
        with pytest.raises(SystemExit) as exc:
            _cli(cli, argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: run folder") and f"pid {holder.pid}" in err[-1]
    finally:
        holder.kill()
        holder.wait()


def _cli(cli, argv: list[str]) -> None:
    from experiments import train
    from tests.model_fakes import FakeDataModule

    old = sys.argv
    sys.argv = ["train", *argv]
    real = train.main
    try:
        train.main = lambda: real(argv, datamodule_class=FakeDataModule)  # type: ignore
        cli()
    finally:
        train.main = real
        sys.argv = old


def test_resume_without_a_checkpoint_names_the_folder(tmp_path: Path, capsys) -> None:
    from experiments.train import cli

    root = tmp_path / "never-ran"
    argv = ["fit", "--config", str(REPO / "configs" / "acoustic_mean.yaml"),
            "--trainer.default_root_dir", str(root), "--wandb", "false", "--ckpt_path", "last"]  # fmt: skip
    with pytest.raises(SystemExit):
        _cli(cli, argv)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: --ckpt_path last") and str(root) in err


def test_resume_keeps_the_rows_logged_before_the_stop(tmp_path: Path) -> None:
    from experiments.train import main
    from tests.model_fakes import FakeDataModule

    root = tmp_path / "run"
    args = ["--config", str(REPO / "configs" / "acoustic_mean.yaml"), "--model.hidden_size", "8",
            "--trainer.default_root_dir", str(root), "--wandb", "false"]  # fmt: skip
    main(["fit", *args, "--trainer.max_epochs", "2"], datamodule_class=FakeDataModule)
    rows = list(csv.DictReader((root / "csv" / "metrics.csv").open()))
    epochs_before = {r["epoch"] for r in rows if r.get("val/ua")}
    main(["fit", *args, "--trainer.max_epochs", "3", "--ckpt_path", "last"],
         datamodule_class=FakeDataModule)  # fmt: skip
    after = list(csv.DictReader((root / "csv" / "metrics.csv").open()))
    assert len(after) > len(rows)
    assert {r["epoch"] for r in after if r.get("val/ua")} >= epochs_before | {"2"}
    assert not (root / ".lock").read_text().strip()  # released at the end of the run


EXTRACTOR = r"""
import os, sys, time
from pathlib import Path
from datamodules.features import store
from datamodules.features.acoustic import AcousticExtractor
from datamodules.utterances import Utterance, write_table

pids = Path(sys.argv[1])
def slow(self, path, start=None, end=None, speed=1.0):
    (pids / str(os.getpid())).write_text("busy")
    time.sleep(600)
AcousticExtractor.from_file = slow
write_table("slow", [Utterance(f"u{i}", "s", "s", "hap", f"/nowhere/u{i}.wav", 1.0)
                     for i in range(8)], {"reader": "test"})
store.extract("slow", modalities=("acoustic",), workers=2, progress=False)
"""


def test_sigkilled_extraction_leaves_no_opensmile_workers(tmp_path: Path, cache_dir: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", EXTRACTOR, str(pids)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.monotonic() + 60
    while len(list(pids.iterdir())) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, "workers never started"
        time.sleep(0.1)
    workers = [int(p.name) for p in pids.iterdir()]
    proc.kill()
    proc.wait()
    left = _gone(workers)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []


# ------------------------------------------------------------------ the feature cache


def _fake_cache(name: str, n: int = 6) -> str:
    import numpy as np

    from datamodules.features import FeatureConfig, store
    from datamodules.utterances import Utterance, write_table

    utts = [Utterance(f"u{i}", "s", "s", "hap", f"/nowhere/u{i}.wav", 1.0) for i in range(n)]
    write_table(name, utts, {"reader": "test"})
    rng = np.random.default_rng(0)
    report = store.write_features(
        name, FeatureConfig(), acoustic=lambda u: rng.normal(size=(5, 65)).astype(np.float32)
    )
    return report.key


def test_reading_a_complete_cache_writes_nothing(cache_dir: Path, monkeypatch) -> None:
    import errno

    from datamodules.features import store

    key = _fake_cache("ro")
    store.extract("ro", modalities=("acoustic",), progress=False)  # meta.json as extract has it
    before = {p: p.stat().st_mtime_ns for p in (cache_dir / "ro").rglob("*")}

    def refuse(path, data) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(store, "atomic_write_bytes", refuse)
    monkeypatch.setattr(store, "atomic_write_text", refuse)
    report = store.extract("ro", modalities=("acoustic",), progress=False)
    assert report.key == key and report.done() == {}
    features = store.load("ro", key, ("acoustic",))
    assert len(features.acoustic) == 6
    assert {p: p.stat().st_mtime_ns for p in (cache_dir / "ro").rglob("*")} == before


@pytest.mark.parametrize("code", ["ENOSPC", "EROFS"])
def test_full_or_read_only_disk_is_one_error_line(
    cache_dir: Path, monkeypatch, capsys, code
) -> None:
    import errno

    from datamodules.features import store
    from datamodules.utterances import Utterance, write_table
    from experiments import features as features_cli

    write_table("full", [Utterance("u0", "s", "s", "hap", "/nowhere/u0.wav", 1.0)], {"reader": "t"})
    monkeypatch.setattr(store, "_extract_one", lambda task: __import__("numpy").zeros((5, 65), "f"))

    def fail(path, data) -> None:
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)), str(path))

    monkeypatch.setattr(store, "atomic_write_bytes", fail)
    monkeypatch.setattr(store, "atomic_write_text", fail)
    monkeypatch.setattr(store, "_init_worker", lambda *a: None)
    assert features_cli.main(["full", "--modalities", "acoustic", "--workers", "1",
                              "--no-progress"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot write the feature cache")
    assert os.strerror(getattr(errno, code)) in err[0] and "Traceback" not in err[0]


def test_corrupt_part_and_meta_json_are_rebuilt(cache_dir: Path, caplog) -> None:
    from datamodules.features import FeatureError, store

    key = _fake_cache("bad")
    store.extract("bad", modalities=("acoustic",), progress=False)
    key_dir = cache_dir / "bad" / key
    (key_dir / "meta.json").write_text("{not json")
    with pytest.raises(FeatureError, match="meta.json is corrupt"):
        store.load("bad", key, ("acoustic",))
    (key_dir / "acoustic" / "part.json").write_text("[1, 2")
    with caplog.at_level("WARNING"):
        report = store.extract("bad", modalities=("acoustic",), progress=False)
    assert "part.json is corrupt" in caplog.text
    assert report.done() == {}  # the shards were intact: nothing recomputed
    assert len(store.load("bad", key, ("acoustic",)).acoustic) == 6


def test_bad_clips_are_skipped_and_reported_keeping_the_shard(
    cache_dir: Path, ravdess_root: Path, tmp_path: Path, caplog
) -> None:
    import numpy as np
    import soundfile as sf

    from datamodules.features import store
    from datamodules.utterances import Utterance, write_table

    good = sorted((ravdess_root / "Actor_01").glob("*.flac"))[:3]
    truncated = tmp_path / "truncated.wav"
    sf.write(truncated, np.zeros(SR_TEST, np.float32), SR_TEST)
    truncated.write_bytes(truncated.read_bytes()[:30])  # the header cut off mid-way
    short = tmp_path / "short.wav"
    sf.write(short, np.full(int(0.05 * SR_TEST), 0.1, np.float32), SR_TEST)  # 0.05 s
    utts = [Utterance(f.stem, "01", "01", "hap", str(f), 3.0) for f in good]
    utts += [Utterance("truncated", "01", "01", "sad", str(truncated), 1.0),
             Utterance("short", "01", "01", "sad", str(short), 0.05)]  # fmt: skip
    write_table("bad", utts, {"reader": "test"})
    with caplog.at_level("WARNING"):
        report = store.extract("bad", modalities=("acoustic",), workers=1, progress=False)
    assert report.done()["acoustic_skipped"] == 2 and report.done()["acoustic_computed"] == 1
    assert "utterance truncated skipped" in caplog.text and "utterance short skipped" in caplog.text
    features = store.load("bad", report.key, ("acoustic",))
    assert sorted(features.acoustic) == sorted(f.stem for f in good)
    assert all(len(x) > 100 for x in features.acoustic.values())
    again = store.extract("bad", modalities=("acoustic",), workers=1, progress=False)
    assert again.done() == {}  # the skipped clips do not make the shard look unfinished


SR_TEST = 16_000
