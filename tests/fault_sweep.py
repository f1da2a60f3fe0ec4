"""A fault sweep (issue #15): bad inputs through prepare, features, train and predict.

    python -m tests.fault_sweep [--models DIR] [--json OUT]

Each case runs the real command line in its own session and is scored on: the exit status
expected (0 where the input is odd but usable), no traceback on stderr, no process of its
session left behind, and, for the whole sweep, no byte changed in the prepared corpus, feature
cache and checkpoints it started from (data lost: none). `--models` is a `tests.demo_models`
folder (made if absent: about two minutes). Exit status 1 if any case fails a check.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SR = 16_000


@dataclass
class Case:
    name: str
    cmd: list[str]
    expect_rc: int | tuple[int, ...]  # 0: the input is odd but must work
    says: str = ""  # text the output must hold
    env: dict[str, str] | None = None


@dataclass
class Outcome:
    name: str
    rc: int
    ok: bool
    traceback: bool
    left: int  # processes of the case's session still alive after it returned
    seconds: float
    message: str


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] != "Z":  # session id is field 6 of stat
            pids.append(int(entry.name))
    return pids


def run_case(case: Case, env: dict[str, str], timeout: float = 240) -> Outcome:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *case.cmd],
        cwd=REPO,
        env={**env, **(case.env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its session id is its pid: survivors are findable
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    time.sleep(0.2)
    left = _session_pids(proc.pid)
    for pid in left:  # clean up after a failing case, by pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    expect = case.expect_rc if isinstance(case.expect_rc, tuple) else (case.expect_rc,)
    text = out + err
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    message = (
        lines[-1] if lines else (err.strip().splitlines() or out.strip().splitlines() or [""])[-1]
    )
    traceback = "Traceback (most recent call last)" in text
    ok = proc.returncode in expect and not traceback and not left and case.says in text
    return Outcome(
        case.name, proc.returncode, ok, traceback, len(left),
        round(time.perf_counter() - t0, 1), message[:300],
    )  # fmt: skip


def _tone(path: Path, seconds: float, sr: int = SR, channels: int = 1, amp: float = 0.3) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    x = (amp * np.sin(2 * np.pi * 180 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))).astype(
        np.float32
    )
    sf.write(path, np.stack([x] * channels, 1) if channels > 1 else x, sr)
    return path


def _bad_checkpoint(src: Path, dst: Path, **config: object) -> Path:
    import torch

    from lightning_modules.checkpoint import RECORD_KEY, read_checkpoint

    ckpt = copy.deepcopy(read_checkpoint(src))
    ckpt[RECORD_KEY]["features"]["config"].update(config)
    torch.save(ckpt, dst)
    return dst


def _fingerprint(roots: list[Path]) -> dict[str, str]:
    out = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.name.endswith((".lock", ".tmp")):
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def build_cases(models, work: Path) -> list[Case]:
    """The bad inputs, made under `work`; `models` a tests.demo_models.DemoModels."""
    audio = work / "audio"
    audio.mkdir()
    good = _tone(audio / "good.wav", 2.0)
    _tone(audio / "good2.wav", 2.0)
    (audio / "empty.wav").write_bytes(b"")
    (audio / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(200)))
    _tone(audio / "short.wav", 0.05)
    sf.write(audio / "silent.wav", np.zeros(SR, np.float32), SR)
    _tone(audio / "cd.wav", 2.0, sr=44_100, channels=2)
    _tone(audio / "long.wav", 75.0)
    data = (audio / "good.wav").read_bytes()
    (audio / "cut.wav").write_bytes(data[: len(data) // 3])
    (audio / "notes.wav").write_text("not audio\n")

    def manifest(name: str, files: list[str]) -> str:
        path = work / f"{name}.csv"
        path.write_text("audio_path,label,speaker\n" + "".join(
            f"audio/{f},{'happy' if i % 2 else 'sad'},s{i % 2}\n" for i, f in enumerate(files)))  # fmt: skip
        return str(path)

    base = ["good.wav", "good2.wav"] * 3
    (work / "bad.yaml").write_text("classes: [sad]\nno_such_option: 1\n")
    (work / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (work / "ckpts").mkdir()
    ckpt = models.checkpoint("acoustic")
    mmmla = models.checkpoint("mmmla")
    garbage = work / "ckpts" / "garbage.ckpt"
    garbage.write_bytes(os.urandom(4096))
    empty_ckpt = work / "ckpts" / "empty.ckpt"
    empty_ckpt.write_bytes(b"")
    fe = _bad_checkpoint(ckpt, work / "ckpts" / "fe.ckpt", acoustic_features="whisper_huge")
    enc = _bad_checkpoint(mmmla, work / "ckpts" / "enc.ckpt", encoder="nobody/no-such-encoder")
    key = _bad_checkpoint(ckpt, work / "ckpts" / "key.ckpt", bogus_key=1)
    scratch = {"SER_CACHE": str(work / "cache")}  # prepare cases write here, not in the models'
    not_a_dir = work / "cache-file"
    not_a_dir.write_text("x")

    def prep(name: str, *args: str, rc=2, says: str = "", env=None) -> Case:
        return Case(name, ["-m", "experiments.prepare", *args], rc, says, env or scratch)

    def predict(name: str, *args: str, rc=1, says: str = "", ck: Path = ckpt) -> Case:
        return Case(name, ["-m", "experiments.predict", "--asr", "none", "--checkpoint",
                           str(ck), *map(str, args)], rc, says)  # fmt: skip

    train = ["-m", "experiments.train", "fit", "--config", str(REPO / "configs" /
             "acoustic_attention.yaml"), "--trainer.max_epochs", "1",
             "--trainer.default_root_dir", str(work / "runs" / "x")]  # fmt: skip
    return [
        # prepare
        prep("prepare: missing root", "ravdess", "--root", str(work / "nowhere"), says="error:"),
        prep("prepare: manifest, missing file", "--skip-bad", "manifest", "--root",
             manifest("m1", [*base, "gone.wav"]), rc=0, says="missing audio"),
        prep("prepare: corrupt audio", "manifest", "--root", manifest("m2", [*base, "corrupt.wav"]),
             says="undecodable audio"),
        prep("prepare: empty clip", "manifest", "--root", manifest("m3", [*base, "empty.wav"]),
             says="0 bytes"),
        prep("prepare: truncated wav", "manifest", "--root", manifest("m4", [*base, "cut.wav"]),
             says="truncated audio"),
        prep("prepare: silent + short, --skip-bad", "manifest", "--skip-bad", "--root",
             manifest("m5", [*base, "silent.wav", "short.wav"]), rc=0, says="silent audio"),
        prep("prepare: 44.1 kHz stereo (usable)", "manifest", "--root",
             manifest("m6", [*base, "cd.wav"]), rc=0, says="7 utterances"),
        prep("prepare: unknown config key", "manifest", "--root", manifest("m7", base),
             "--config", str(work / "bad.yaml"), says="no_such_option"),
        prep("prepare: --name ../../x", "builtin", "--name", "../../x", says="corpus name"),
        prep("prepare: binary manifest", "manifest", "--root", str(work / "binary.csv")),
        prep("prepare: cache is a file", "builtin", "--per-class", "1", says="Not a directory",
             env={"SER_CACHE": str(not_a_dir)}),
        # features
        Case("features: unknown corpus", ["-m", "experiments.features", "nope"], 2, "nope"),
        Case("features: corpus name ../x", ["-m", "experiments.features", "../x"], 2,
             "corpus name"),
        # train
        Case("train: unknown config key", [*train, "--model.no_such_key", "1"], (1, 2),
             "no_such_key"),
        Case("train: missing corpus", [*train, "--data.corpus", "nope"], (1, 2), "nope"),
        Case("train: missing config file", ["-m", "experiments.train", "fit", "--config",
                                            str(work / "none.yaml")], (1, 2)),  # fmt: skip
        # predict: audio
        predict("predict: missing file", work / "gone.wav", says="not found"),
        predict("predict: corrupt audio", audio / "corrupt.wav", says="corrupt.wav"),
        predict("predict: empty clip", audio / "empty.wav", says="0 bytes"),
        predict("predict: text as audio", audio / "notes.wav", says="notes.wav"),
        predict("predict: directory", audio, says="is a folder"),
        predict("predict: /dev/zero", "/dev/zero", says="not a regular file"),
        predict("predict: too short", audio / "short.wav", says="too short"),
        predict("predict: 44.1 kHz stereo (usable)", audio / "cd.wav", rc=0, says='"label"'),
        predict("predict: silence (no speech)", audio / "silent.wav", rc=0, says="no speech"),
        predict("predict: 75 s (windows)", audio / "long.wav", rc=0, says="windows"),
        # predict: checkpoints
        predict("checkpoint: garbage", good, rc=2, ck=garbage, says="can load safely"),
        predict("checkpoint: empty", good, rc=2, ck=empty_ckpt, says="empty"),
        predict("checkpoint: /dev/zero", good, rc=2, ck=Path("/dev/zero"), says="regular file"),
        predict("checkpoint: directory", good, rc=2, ck=work / "ckpts", says="folder"),
        predict("checkpoint: missing", good, rc=2, ck=work / "none.ckpt", says="not found"),
        predict("checkpoint: unknown front end", good, rc=2, ck=fe, says="whisper_huge"),
        predict("checkpoint: unknown feature key", good, rc=2, ck=key, says="bogus_key"),
        predict("checkpoint: unavailable encoder", good, rc=2, ck=enc, says="no-such-encoder"),
    ]  # fmt: skip


def sweep(models_dir: Path, only: str | None = None) -> dict:
    sys.path.insert(0, str(REPO))
    from tests.demo_models import demo_models

    models = demo_models(models_dir)
    env = {**models.env(), "WANDB_MODE": "offline"}
    guarded = [models.cache, models.runs]
    before = _fingerprint(guarded)
    with tempfile.TemporaryDirectory(prefix="ser-fault-sweep-") as tmp:
        cases = build_cases(models, Path(tmp))
        if only:
            cases = [c for c in cases if only in c.name]
        outcomes = []
        for case in cases:
            outcome = run_case(case, env)
            outcomes.append(outcome)
            mark = "ok  " if outcome.ok else "FAIL"
            print(f"{mark} {outcome.rc:>3} {outcome.seconds:>5.1f}s  {case.name}: "
                  f"{outcome.message}", flush=True)  # fmt: skip
    after = _fingerprint(guarded)
    lost = sorted(p for p in before if before[p] != after.get(p))
    return {
        "inputs": len(outcomes),
        "failed": [o.name for o in outcomes if not o.ok],
        "tracebacks": sum(o.traceback for o in outcomes),
        "processes_left": sum(o.left for o in outcomes),
        "data_lost": lost,
        "outcomes": [asdict(o) for o in outcomes],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fault_sweep", description=__doc__)
    p.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "ser-sweep-models")
    p.add_argument("--only", help="run the cases whose name holds this text")
    p.add_argument("--json", type=Path, help="write the summary here")
    args = p.parse_args(argv)
    result = sweep(Path(os.environ.get("SER_TEST_MODELS") or args.models), args.only)
    print(f"\ninputs {result['inputs']}, failed {len(result['failed'])}, tracebacks "
          f"{result['tracebacks']}, processes left {result['processes_left']}, data lost "
          f"{len(result['data_lost'])} files")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    ok = not (result["failed"] or result["tracebacks"] or result["processes_left"])
    return 0 if ok and not result["data_lost"] else 1


if __name__ == "__main__":
    sys.exit(main())
