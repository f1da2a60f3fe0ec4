"""What the sections share: figures (median [min, max]), the machine, child processes and their
peak memory, the settings (`Context`) and the prepared corpora."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.paths import REPO_ROOT, table_path

RAVDESS_CLASSES = ["neutral", "happy", "sad", "angry"]
TEST_SPEAKERS = ["Actor_01", "Actor_02"]
VAL_SPEAKERS = ["Actor_03", "Actor_04"]


class BenchError(Exception):
    """A benchmark input that is missing or unusable; the message names it."""


def stat(values: Sequence[float], digits: int = 3) -> dict[str, Any]:
    """Median, min and max of repeated runs (the runs kept too)."""
    vals = [float(v) for v in values]
    if not vals:
        raise BenchError("no runs to summarise")
    r = lambda v: round(v, digits)  # noqa: E731
    return {
        "median": r(statistics.median(vals)),
        "min": r(min(vals)),
        "max": r(max(vals)),
        "n": len(vals),
        "runs": [r(v) for v in vals],
    }


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def machine() -> dict[str, Any]:
    """Cores, CPU model, memory and the torch thread count the figures were taken with."""
    import psutil
    import torch

    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores_logical": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def run_child(argv: list[str], timeout_s: float = 900.0) -> tuple[dict[str, Any], int]:
    """Run `python -m experiments.bench --child ...`; its JSON line and the tree's peak RSS (bytes)."""
    import psutil
    import torch

    argv = [*argv, "--threads", str(torch.get_num_threads()), "--cache", os.environ["SER_CACHE"]]
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.bench", *argv],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    stop = threading.Event()

    def poll() -> None:
        nonlocal peak
        try:
            root = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while not stop.is_set():
            total = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
            except psutil.Error:
                break
            peak = max(peak, total)
            stop.wait(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        raise BenchError(f"child {' '.join(argv)} ran over {timeout_s:.0f} s") from exc
    finally:
        stop.set()
        poller.join()
    if proc.returncode != 0:
        raise BenchError(f"child {' '.join(argv)} failed ({proc.returncode}):\n{err[-3000:]}")
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if not lines:
        raise BenchError(f"child {' '.join(argv)} printed no result:\n{err[-3000:]}")
    return json.loads(lines[-1]), peak


def self_peak_rss() -> int:
    """This process's peak RSS in bytes: VmHWM (ru_maxrss would carry the parent's over exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Context:
    """What the sections share: settings, the prepared corpora, checkpoints made on the way."""

    quick: bool
    repeats: int
    workers: int
    cache: Path
    corpus_root: Path | None
    corpus_all: str = ""
    corpus4: str = ""
    test_speakers: list[str] = field(default_factory=list)
    val_speakers: list[str] = field(default_factory=list)
    n_synthetic: int = 5500
    train_steps: int = 30
    epochs: int = 15
    asr: str = "whisper"
    max_clips: int | None = None
    frontends: list[str] = field(default_factory=list)
    checkpoints: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def default_ravdess_root() -> Path:
    shared = Path(os.environ.get("SER_SHARED", REPO_ROOT.parent / "shared"))
    return shared / "corpora" / "ravdess"


def prepare_corpora(ctx: Context) -> None:
    """Prepare RAVDESS (all clips, and the 4 classes) in the bench cache, or the built-in corpus."""
    from datamodules.utterances import read_table
    from experiments import prepare

    def run(argv: list[str]) -> None:
        if prepare.main(argv) != 0:
            raise BenchError(f"python -m experiments.prepare {' '.join(argv)} failed")

    root = ctx.corpus_root
    if root is not None and root.is_dir():
        suffix = f"_max{ctx.max_clips}" if ctx.max_clips else ""
        ctx.corpus_all, ctx.corpus4 = f"bench_ravdess{suffix}", f"bench_ravdess4{suffix}"
        if not table_path(ctx.corpus_all).is_file():
            run(["ravdess", "--root", str(root), "--name", ctx.corpus_all])
            subset_corpus(ctx.corpus_all, ctx.max_clips)
        if not table_path(ctx.corpus4).is_file():
            run(
                [
                    "ravdess",
                    "--root",
                    str(root),
                    "--name",
                    ctx.corpus4,
                    "--classes",
                    ",".join(RAVDESS_CLASSES),
                ]
            )
            subset_corpus(ctx.corpus4, ctx.max_clips)
        speakers = sorted(set(read_table(ctx.corpus4)["speaker"]))
        ctx.test_speakers = [s for s in TEST_SPEAKERS if s in speakers]
        ctx.val_speakers = [s for s in VAL_SPEAKERS if s in speakers]
    else:
        ctx.notes.append(f"RAVDESS not found at {root}: the built-in corpus is used instead")
        ctx.corpus_all = ctx.corpus4 = "builtin"
        if not table_path("builtin").is_file():
            run(["builtin"])
        speakers = sorted(set(read_table("builtin")["speaker"]))
        ctx.test_speakers, ctx.val_speakers = speakers[:1], speakers[1:2]
    if len(speakers) < len(ctx.test_speakers) + len(ctx.val_speakers) + 1 or not ctx.test_speakers:
        raise BenchError(
            f"corpus {ctx.corpus4}: speakers {speakers} cannot give test speakers "
            f"{TEST_SPEAKERS}, val speakers {VAL_SPEAKERS} and a training part"
        )


def subset_corpus(name: str, max_clips: int | None) -> None:
    """Keep the first `max_clips` clips of a prepared corpus, spread over its speakers."""
    from datamodules.utterances import frame_to_utterances, read_meta, read_table, write_table

    table = read_table(name)
    if not max_clips or len(table) <= max_clips:
        return
    table = table.assign(_rank=table.groupby("speaker").cumcount()).sort_values(
        ["_rank", "utterance_id"]
    )
    keep = table.head(max_clips).drop(columns="_rank").sort_values("utterance_id")
    write_table(name, frame_to_utterances(keep), read_meta(name))


def quiet() -> None:
    """Silence Lightning's and the libraries' warnings in timed runs and children."""
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
