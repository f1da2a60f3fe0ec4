"""Run a W&B-format sweep YAML: a local runner (grid or seeded random) or `wandb agent`.

`python -m experiments.sweep configs/sweeps/pooling.yaml [--corpus NAME] [--out DIR]
[--parallel N] [--max-epochs N] [--seeds 0,1,2] [--set KEY=VALUE ...] [--wandb-agent]`

Every parameter maps onto a train CLI option (`config` -> `--config configs/<v>.yaml`,
`data.fold` -> `--data.fold K`, ...). `data.fold: all` expands to every fold of the
protocol on the corpus. Each run gets one sub-folder named from its swept parameters; a
folder with `metrics.json` is skipped on a rerun, a failed run leaves `FAILED` (the tail
of its log) and the sweep goes on.

Each run is started in its own process group; when the sweep ends in any way (SIGTERM, SIGINT,
an error, interpreter exit) every run still going is terminated with its whole group (the
training's data-loader workers too), SIGKILL after `KILL_GRACE_S`.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import itertools
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from datamodules.processes import child_setup
from datamodules.splits import DEFAULT_FOLDS, SplitError
from datamodules.splits import n_folds as split_folds
from datamodules.utterances import REPO_ROOT, CorpusError, atomic_write_text, read_table

DEFAULT_TRAIN_CMD = (sys.executable, "-m", "experiments.train", "fit")
LOG_TAIL_LINES = 40
KILL_GRACE_S = 10.0  # between SIGTERM and SIGKILL of a run's process group
# Short names for run folders; anything else uses the last dotted component.
SHORT_KEYS = {
    "config": "",
    "seed_everything": "seed",
    "data.protocol": "",
    "data.corpus": "",
    "trainer.max_epochs": "ep",
}


class SweepError(Exception):
    """A sweep file or option that cannot be used; the message names the file or key."""


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
class SweepSpec:
    """A parsed sweep YAML (W&B sweep format)."""

    name: str
    method: str
    metric: dict[str, Any]
    parameters: dict[str, dict[str, Any]]
    run_cap: int | None = None
    seed: int = 0
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSpec:
    """One run of a sweep: its folder name and the train options it sets."""

    name: str
    params: dict[str, Any]


@dataclass
class RunResult:
    """How one run ended: `ok`, `skipped` (metrics already there) or `failed`."""

    name: str
    status: str
    seconds: float = 0.0
    message: str = ""
    cpu_s: float = 0.0  # user + sys CPU seconds of the run's process tree


def load_sweep(path: Path) -> SweepSpec:
    """Read and check a sweep YAML."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SweepError(f"sweep file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SweepError(f"sweep file {path}: top level must be a mapping")
    method = raw.get("method", "grid")
    if method not in ("grid", "random"):
        raise SweepError(f"sweep file {path}: method '{method}' is not grid or random")
    params = raw.get("parameters")
    if not isinstance(params, dict) or not params:
        raise SweepError(f"sweep file {path}: 'parameters' must be a non-empty mapping")
    for key, spec in params.items():
        if not isinstance(spec, dict) or not ({"value", "values", "distribution"} & spec.keys()):
            raise SweepError(
                f"sweep file {path}: parameter '{key}' needs 'value', 'values' or 'distribution'"
            )
        if "values" in spec and (not isinstance(spec["values"], list) or not spec["values"]):
            raise SweepError(f"sweep file {path}: parameter '{key}': 'values' must be a list")
        if method == "grid" and "distribution" in spec and spec["distribution"] != "categorical":
            raise SweepError(
                f"sweep file {path}: parameter '{key}' has a distribution; grid needs values"
            )
    run_cap = raw.get("run_cap")
    if method == "random" and not run_cap:
        raise SweepError(f"sweep file {path}: method random needs 'run_cap'")
    return SweepSpec(
        name=str(raw.get("name", path.stem)),
        method=method,
        metric=raw.get("metric", {"name": "val/ua", "goal": "maximize"}),
        parameters=dict(params),
        run_cap=int(run_cap) if run_cap else None,
        seed=int(raw.get("seed", 0)),
        raw=raw,
    )


def override(spec: SweepSpec, values: dict[str, Any]) -> SweepSpec:
    """The spec with parameters fixed (a scalar) or re-swept (a list) from the command line."""
    params = dict(spec.parameters)
    for key, value in values.items():
        params[key] = {"values": list(value)} if isinstance(value, list) else {"value": value}
    return SweepSpec(spec.name, spec.method, spec.metric, params, spec.run_cap, spec.seed, spec.raw)


def n_folds(corpus: str, protocol: str, folds: int = DEFAULT_FOLDS) -> int:
    """Number of folds of `protocol` on a prepared corpus (sessions for loso, speakers for
    lospko, `data.folds` for speaker_kfold)."""
    try:
        return int(split_folds(read_table(corpus), protocol, folds))
    except SplitError as exc:
        raise SweepError(f"data.protocol '{protocol}' on corpus '{corpus}': {exc}") from exc


def _sample(key: str, spec: dict[str, Any], rng: random.Random) -> Any:
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        return rng.choice(spec["values"])
    dist = spec["distribution"]
    lo, hi = spec.get("min"), spec.get("max")
    if lo is None or hi is None:
        raise SweepError(f"parameter '{key}': distribution '{dist}' needs 'min' and 'max'")
    if dist == "int_uniform":
        return rng.randint(int(lo), int(hi))
    if dist == "uniform":
        return rng.uniform(float(lo), float(hi))
    if dist == "log_uniform_values":
        return math.exp(rng.uniform(math.log(float(lo)), math.log(float(hi))))
    if dist == "q_uniform":
        q = float(spec.get("q", 1))
        return round(rng.uniform(float(lo), float(hi)) / q) * q
    raise SweepError(f"parameter '{key}': distribution '{dist}' is not supported locally")


def _combinations(spec: SweepSpec) -> list[dict[str, Any]]:
    keys = list(spec.parameters)
    if spec.method == "grid":
        choices = [
            spec.parameters[k]["values"]
            if "values" in spec.parameters[k]
            else [spec.parameters[k]["value"]]
            for k in keys
        ]
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*choices)]
    rng = random.Random(spec.seed)
    return [
        {k: _sample(k, spec.parameters[k], rng) for k in keys} for _ in range(spec.run_cap or 1)
    ]


def expand(spec: SweepSpec, fold_count: Callable[[str, int], int] | None = None) -> list[RunSpec]:
    """All runs of a sweep: grid product or `run_cap` seeded samples, `data.fold: all` expanded.

    `fold_count(protocol, folds)` gives the number of folds (`folds`: the run's `data.folds`);
    it is only asked when a fold is `all`.
    """
    swept = [k for k, s in spec.parameters.items() if "value" not in s]
    runs: list[RunSpec] = []
    seen: set[str] = set()
    for combo in _combinations(spec):
        folds = [combo.get("data.fold")]
        if combo.get("data.fold") == "all":
            if fold_count is None:
                raise SweepError("data.fold is 'all' but no corpus was given to count folds")
            protocol = str(combo.get("data.protocol", "sd8020"))
            k = int(combo.get("data.folds", DEFAULT_FOLDS))
            folds = list(range(fold_count(protocol, k)))
        for fold in folds:
            params = dict(combo)
            if fold is not None:
                params["data.fold"] = fold
            fold_swept = combo.get("data.fold") == "all"
            keys = [k for k in spec.parameters if k in swept or (k == "data.fold" and fold_swept)]
            name = run_name(params, keys)
            if name in seen:  # random search may draw the same point twice
                continue
            seen.add(name)
            runs.append(RunSpec(name, params))
    return runs


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def run_name(params: dict[str, Any], keys: Sequence[str]) -> str:
    """A stable, filesystem-safe folder name from the swept parameters."""
    if not keys:
        return "run"
    parts = []
    for key in keys:
        value = params[key]
        if key == "config":
            value = Path(str(value)).stem
        if isinstance(value, float):
            value = f"{value:.4g}"
        short = SHORT_KEYS.get(key, key.rsplit(".", 1)[-1])
        parts.append(_slug(f"{short}-{value}" if short else str(value)))
    return "__".join(parts)


def config_path(value: str) -> str:
    """A variant name (`acoustic_attention`) or a path -> the config file path."""
    path = Path(value)
    if path.suffix in (".yaml", ".yml"):
        return str(path)
    return str(Path("configs") / f"{value}.yaml")


def train_args(params: dict[str, Any], run_dir: Path) -> list[str]:
    """Train CLI options for one run (the config file first, as LightningCLI wants)."""
    args: list[str] = []
    if "config" in params:
        args += ["--config", config_path(str(params["config"]))]
    for key, value in params.items():
        if key == "config":
            continue
        if isinstance(value, bool):
            value = str(value).lower()
        args += [f"--{key}", str(value)]
    args += ["--trainer.default_root_dir", str(run_dir)]
    return args


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


def wandb_server() -> str | None:
    """The W&B server URL when one is reachable and W&B is not offline, else None."""
    if os.environ.get("WANDB_MODE", "") in ("offline", "disabled", "dryrun"):
        return None
    if shutil.which("wandb") is None and not Path(sys.executable).with_name("wandb").exists():
        return None
    url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=3):
            return url
    except OSError:
        return None


def wandb_yaml(spec: SweepSpec, runs: Sequence[RunSpec], out: Path | None = None) -> dict[str, Any]:
    """The sweep for `wandb sweep`: folds and command-line overrides resolved to values.

    With `out`, every agent run writes under `out/<WANDB_RUN_ID>/` (the trainer appends the
    run id the agent sets; see `experiments.train.EmotionCLI.before_instantiate_classes`).
    """
    raw = {k: v for k, v in spec.raw.items() if k not in ("run_cap",) or spec.method == "random"}
    params = dict(spec.parameters)
    for key in {k for r in runs for k in r.params}:
        values = sorted({json.dumps(r.params[key]) for r in runs if key in r.params})
        decoded = [json.loads(v) for v in values]
        if "distribution" in params.get(key, {}):
            continue
        params[key] = {"value": decoded[0]} if len(decoded) == 1 else {"values": decoded}
    if "config" in params:  # wandb passes values verbatim: give it file paths
        spec_c = params["config"]
        if "values" in spec_c:
            params["config"] = {"values": [config_path(str(v)) for v in spec_c["values"]]}
        else:
            params["config"] = {"value": config_path(str(spec_c["value"]))}
    if out is not None:
        params["trainer.default_root_dir"] = {"value": str(out)}
    raw["parameters"] = params
    return raw


def run_wandb_agent(spec: SweepSpec, runs: Sequence[RunSpec], out: Path) -> int:
    """Register the resolved sweep with `wandb sweep` and run `wandb agent` on it."""
    out.mkdir(parents=True, exist_ok=True)
    resolved = out / "wandb_sweep.yaml"
    atomic_write_text(resolved, yaml.safe_dump(wandb_yaml(spec, runs, out), sort_keys=False))
    wandb_bin = str(Path(sys.executable).with_name("wandb"))
    if not Path(wandb_bin).exists():
        wandb_bin = "wandb"
    proc = subprocess.run(
        [wandb_bin, "sweep", str(resolved)], cwd=REPO_ROOT, capture_output=True, text=True
    )
    text = proc.stdout + proc.stderr
    print(text)
    match = re.search(r"wandb agent (\S+)", text)
    if proc.returncode != 0 or not match:
        print("sweep: `wandb sweep` did not give a sweep id", file=sys.stderr)
        return 1
    return subprocess.call([wandb_bin, "agent", match.group(1)], cwd=REPO_ROOT)


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs; VALUE is parsed as YAML, and `a,b` becomes a list to sweep."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise SweepError(f"--set {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        parts = [yaml.safe_load(v) for v in value.split(",")] if "," in value else None
        out[key.strip()] = parts if parts is not None else yaml.safe_load(value)
    return out


def build_runs(
    spec: SweepSpec,
    corpus: str | None = None,
    max_epochs: int | None = None,
    seeds: Sequence[int] | None = None,
    sets: dict[str, Any] | None = None,
) -> tuple[SweepSpec, list[RunSpec]]:
    """Apply the command-line overrides to a spec and expand it into runs."""
    values: dict[str, Any] = dict(sets or {})
    if corpus:
        values["data.corpus"] = corpus
    if max_epochs:
        values["trainer.max_epochs"] = int(max_epochs)
    if seeds:
        values["seed_everything"] = [int(s) for s in seeds]  # a list: the seed stays in names
    spec = override(spec, values)
    corpus_name = spec.parameters.get("data.corpus", {}).get("value")

    def fold_count(protocol: str, folds: int) -> int:
        if not corpus_name:
            raise SweepError("data.fold: all needs a corpus (--corpus NAME)")
        return n_folds(str(corpus_name), protocol, folds)

    return spec, expand(spec, fold_count)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.sweep", description=__doc__)
    parser.add_argument("sweep", type=Path, help="sweep YAML (W&B format)")
    parser.add_argument("--corpus", help="prepared corpus name (sets data.corpus)")
    parser.add_argument("--out", type=Path, help="sweep folder (default runs/sweeps/<name>)")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once")
    parser.add_argument("--max-epochs", type=int, help="sets trainer.max_epochs")
    parser.add_argument("--seeds", help="comma-separated seeds (sets seed_everything)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fix a train option for every run (a,b sweeps it); repeatable",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the runs, run nothing")
    parser.add_argument("--wandb-agent", action="store_true", help="run with `wandb agent`")
    args = parser.parse_args(argv)
    try:
        spec = load_sweep(args.sweep)
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
        spec, runs = build_runs(spec, args.corpus, args.max_epochs, seeds, parse_set(args.set))
    except (SweepError, CorpusError, ValueError) as exc:
        print(f"sweep: {exc}", file=sys.stderr)
        return 2
    out = args.out or REPO_ROOT / "runs" / "sweeps" / spec.name
    if args.dry_run:
        runner = SweepRunner(runs, out, parallel=args.parallel)
        for run in runs:
            print(run.name, " ".join(runner.command(run)))
        return 0
    if args.wandb_agent:
        server = wandb_server()
        if server:
            return run_wandb_agent(spec, runs, out)
        print(
            "sweep: no W&B server is reachable (WANDB_MODE offline/disabled or no network); "
            "running the same sweep with the local runner instead"
        )
    try:
        results = SweepRunner(runs, out, parallel=args.parallel).run()
    except SweepInterrupted as exc:
        print(f"sweep: {exc}; its runs were stopped (rerun to resume)", file=sys.stderr)
        return 128 + exc.signum
    print(summarize(results))
    print(f"sweep: runs in {out}; report with `python -m experiments.report {out}`")
    return 1 if any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
