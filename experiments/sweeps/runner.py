"""The local sweep runner: each run a training subprocess in its own process group.

`SweepRunner(runs, out, parallel=N).run()` starts `parallel` runs at a time, skips those with
`metrics.json`, writes `FAILED` (the tail of the log) for a failed run and goes on. When the
sweep ends in any way (SIGTERM, SIGINT, an error, interpreter exit) every run still going is
terminated with its whole group (the training's data-loader workers too), SIGKILL after
`KILL_GRACE_S`.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datamodules.processes import child_setup
from datamodules.utterances import REPO_ROOT, atomic_write_text
from experiments.sweeps.spec import RunSpec, train_args

DEFAULT_TRAIN_CMD = (sys.executable, "-m", "experiments.train", "fit")
LOG_TAIL_LINES = 40
KILL_GRACE_S = 10.0  # between SIGTERM and SIGKILL of a run's process group


class SweepInterrupted(KeyboardInterrupt):
    """The sweep received SIGTERM (or SIGINT/SIGHUP); its runs are stopped before it exits."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"sweep stopped by {signal.Signals(signum).name}")
        self.signum = signum


def stop_process_groups(procs: Sequence[subprocess.Popen], grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM each running process's group, wait up to `grace_s`, then SIGKILL the rest."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    for proc in procs:  # the leader may be gone while its workers linger: kill every group
        _signal_group(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)  # the run's group id is its pid (child_setup)


@dataclass
class RunResult:
    """How one run ended: `ok`, `skipped` (metrics already there) or `failed`."""

    name: str
    status: str
    seconds: float = 0.0
    message: str = ""
    cpu_s: float = 0.0  # user + sys CPU seconds of the run's process tree


def _reap(proc: subprocess.Popen) -> tuple[int | None, float]:
    """(exit code or None while running, CPU seconds) without blocking.

    `os.wait4` also gives the child's CPU time: on a shared machine wall time says little,
    CPU time says what the run costs on idle cores.
    """
    if proc.returncode is not None:
        return proc.returncode, 0.0
    try:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
    except ChildProcessError:  # already reaped elsewhere
        return proc.wait(), 0.0
    if pid == 0:
        return None, 0.0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def _tail(path: Path, n: int = LOG_TAIL_LINES) -> str:
    if not path.is_file():
        return ""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(lines[-n:])


def _fmt_s(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class SweepRunner:
    """Runs sweep runs as subprocesses, `parallel` at a time, resuming finished ones."""

    def __init__(
        self,
        runs: Sequence[RunSpec],
        out: Path,
        train_cmd: Sequence[str] = DEFAULT_TRAIN_CMD,
        parallel: int = 1,
        env: dict[str, str] | None = None,
        cwd: Path = REPO_ROOT,
        print_fn: Callable[[str], None] = print,
    ) -> None:
        self.runs = list(runs)
        self.out = Path(out)
        self.train_cmd = list(train_cmd)
        self.parallel = max(1, int(parallel))
        self.env = env
        self.cwd = Path(cwd)
        self.print = print_fn

    def command(self, run: RunSpec) -> list[str]:
        return self.train_cmd + train_args(run.params, self.out / run.name)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ if self.env is None else self.env)
        # Runs share the cores: without this each torch process spawns one thread per core.
        threads = str(max(1, (os.cpu_count() or 1) // self.parallel))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, threads)
        env.setdefault("PYTHONUNBUFFERED", "1")
        pythonpath = env.get("PYTHONPATH", "")
        if str(self.cwd) not in pythonpath.split(os.pathsep):
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.cwd), pythonpath) if p)
        return env

    def write_manifest(self) -> None:
        """`sweep.json`: every run with its parameters and command, for reports and humans."""
        manifest = {
            "runs": [
                {"name": r.name, "params": r.params, "command": self.command(r)} for r in self.runs
            ]
        }
        atomic_write_text(self.out / "sweep.json", json.dumps(manifest, indent=2, default=str))

    def run(self) -> list[RunResult]:
        """Run every unfinished run; returns one result per run, in sweep order."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.write_manifest()
        results: dict[str, RunResult] = {}
        todo = []
        for run in self.runs:
            if (self.out / run.name / "metrics.json").is_file():
                results[run.name] = RunResult(run.name, "skipped")
            else:
                todo.append(run)
        total = len(self.runs)
        if results:
            self.print(f"sweep: {len(results)}/{total} runs already finished, skipped")
        self.print(f"sweep: {len(todo)} runs to do in {self.out} ({self.parallel} at a time)")
        env = self._env()
        active: dict[str, tuple[subprocess.Popen, float, Any]] = {}
        durations: list[float] = []
        pending = list(todo)

        def stop_active() -> None:
            stop_process_groups([proc for proc, _, _ in active.values()])
            for _, _, log in active.values():
                log.close()
            active.clear()

        atexit.register(stop_active)
        restore = _install_signal_handlers()
        try:
            while pending or active:
                while pending and len(active) < self.parallel:
                    run = pending.pop(0)
                    active[run.name] = self._start(run, env)
                time.sleep(0.2)
                for name, (proc, started, log) in list(active.items()):
                    code, cpu = _reap(proc)
                    if code is None:
                        continue
                    log.close()
                    del active[name]
                    seconds = time.monotonic() - started
                    durations.append(seconds)
                    results[name] = self._finish(name, code, seconds, cpu)
                    done = len(results)
                    eta = (
                        sum(durations)
                        / len(durations)
                        * (len(pending) + len(active))
                        / self.parallel
                    )
                    self.print(
                        f"[{done}/{total}] {results[name].status:6s} {name} "
                        f"{_fmt_s(seconds)} {results[name].message}  ETA {_fmt_s(eta)}"
                    )
        finally:  # SIGTERM, SIGINT, an error: no run outlives the sweep
            if active:
                self.print(f"sweep: stopping {len(active)} running runs: {', '.join(active)}")
            stop_active()
            atexit.unregister(stop_active)
            restore()
        return [results[r.name] for r in self.runs]

    def _start(self, run: RunSpec, env: dict[str, str]) -> tuple[subprocess.Popen, float, Any]:
        run_dir = self.out / run.name
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "FAILED").unlink(missing_ok=True)
        cmd = self.command(run)
        log = open(run_dir / "train.log", "w", encoding="utf-8")  # noqa: SIM115 (closed on finish)
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=self.cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # its own process group, stopped with the sweep, and SIGTERMed by the kernel
            # should the sweep be SIGKILLed
            preexec_fn=functools.partial(child_setup, os.getpid()),
        )
        return proc, time.monotonic(), log

    def _finish(self, name: str, returncode: int, seconds: float, cpu: float = 0.0) -> RunResult:
        run_dir = self.out / name
        metrics = run_dir / "metrics.json"
        if returncode == 0 and metrics.is_file():
            try:
                values = json.loads(metrics.read_text(encoding="utf-8"))
                message = f"ua={values['ua']:.3f} wa={values['wa']:.3f}"
            except (ValueError, KeyError, TypeError):
                message = "metrics.json unreadable"
            return RunResult(name, "ok", seconds, f"{message} cpu={_fmt_s(cpu)}", cpu)
        reason = f"exit code {returncode}" if returncode else "no metrics.json written"
        atomic_write_text(
            run_dir / "FAILED",
            f"{reason}\n--- last lines of train.log ---\n{_tail(run_dir / 'train.log')}\n",
        )
        return RunResult(name, "failed", seconds, f"{reason}, see {run_dir / 'FAILED'}", cpu)


def _install_signal_handlers() -> Callable[[], None]:
    """SIGTERM/SIGHUP (and SIGINT) raise SweepInterrupted in the main thread; returns a restorer."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, _frame: Any) -> None:
        raise SweepInterrupted(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}

    def restore() -> None:
        for signum, previous in old.items():
            signal.signal(signum, previous)

    return restore


def summarize(results: Sequence[RunResult]) -> str:
    """One line of counts, then each failed run."""
    count = {s: sum(r.status == s for r in results) for s in ("ok", "skipped", "failed")}
    ran = [r for r in results if r.status != "skipped"]
    lines = [
        f"sweep done: {count['ok']} ran, {count['skipped']} skipped, {count['failed']} failed"
        + (
            f" (runs took {_fmt_s(sum(r.seconds for r in ran))} wall, "
            f"{_fmt_s(sum(r.cpu_s for r in ran))} CPU in all)"
            if ran
            else ""
        )
    ]
    lines += [f"  FAILED {r.name}: {r.message}" for r in results if r.status == "failed"]
    return "\n".join(lines)


def run_for_cli(runner: SweepRunner, prog: str, done: str) -> int:
    """`runner.run()` for a command-line tool: prints the summary, then `prog: done`; the exit
    status is 0, 1 when a run failed, 128 + the signal when stopped (rerun to resume)."""
    try:
        results = runner.run()
    except SweepInterrupted as exc:
        print(f"{prog}: {exc}; its runs were stopped (rerun to resume)", file=sys.stderr)
        return 128 + exc.signum
    print(summarize(results))
    print(f"{prog}: {done}")
    return 1 if any(r.status == "failed" for r in results) else 0
