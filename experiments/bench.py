"""Benchmarks (`make bench`): throughput, latency and memory, and a classic baseline's accuracy.

`python -m experiments.bench [--quick] [--only features,training,inference,memory,baseline]
[--repeats N] [--out bench/results.json]` prints one table and writes the JSON. Every timed
figure is the median of `--repeats` runs with min and max; the machine is recorded with them.

Sections:
- features: seconds of audio per second for the acoustic cache and for openSMILE alone
  (`experiments.features.measure_throughput`, same workers), lexical, cold and warm `extract`.
- training: utterances per second (acoustic attention, MMMLA; bucketing on/off) over a fixed
  number of steps on an IEMOCAP-sized synthetic feature cache; the epoch time is extrapolated
  from that rate (train part only), and the share of step time spent waiting for data and the
  padding overhead are recorded, since those are what bucketing is meant to cut.
- inference: model load time and latency p50/p95 of `experiments.inference.Predictor`
  (ASR, features, model) on 1, 5 and 20 s clips cut from the corpus's speech.
- memory: peak RSS (psutil, process tree) of a training child and of the predictor process.
- baseline: openSMILE ComParE_2016 functionals + linear SVM against the suite's acoustic
  attention model on the same speaker-independent split (UA, WA).

Everything runs in its own feature cache (`--cache`, default `cache/bench`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import contextlib

import numpy as np  # noqa: E402

from datamodules.utterances import REPO_ROOT, Utterance, Word  # noqa: E402

log = logging.getLogger("experiments.bench")

SECTIONS = ("features", "training", "inference", "memory", "baseline")
RAVDESS_CLASSES = ["neutral", "happy", "sad", "angry"]
TEST_SPEAKERS = ["Actor_01", "Actor_02"]
VAL_SPEAKERS = ["Actor_03", "Actor_04"]
SYNTH_CORPUS = "bench_iemocap_synth"
CLIP_LENGTHS_S = (1.0, 5.0, 20.0)


class BenchError(Exception):
    """A benchmark input that is missing or unusable; the message names it."""


# ---------------------------------------------------------------------------------------
# Figures and the machine


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


# ---------------------------------------------------------------------------------------
# Peak memory of a child process (tree), polled with psutil


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


# ---------------------------------------------------------------------------------------
# Corpora


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
    checkpoints: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def default_ravdess_root() -> Path:
    shared = Path(os.environ.get("SER_SHARED", REPO_ROOT.parent / "shared"))
    return shared / "corpora" / "ravdess"


def prepare_corpora(ctx: Context) -> None:
    """Prepare RAVDESS (all clips, and the 4 classes) in the bench cache, or the built-in corpus."""
    from datamodules.utterances import read_table, table_path
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


# ---------------------------------------------------------------------------------------
# Features


def bench_features(ctx: Context) -> dict[str, Any]:
    """Audio seconds per second: cache vs openSMILE alone, lexical, cold and warm `extract`."""
    from datamodules.features import FeatureConfig, extract, feature_key
    from datamodules.utterances import corpus_dir, read_table
    from experiments.features import _audio_seconds, measure_throughput

    config = FeatureConfig()
    table = read_table(ctx.corpus_all)
    audio_s = _audio_seconds(table)
    # Two alternating rounds (A B, B A) at most: a round is two passes over the corpus.
    rounds = min(ctx.repeats, 2)
    tp = measure_throughput(ctx.corpus_all, ctx.workers, rounds, config, lexical=True)
    opensmile_rate = [audio_s / t for t in tp["opensmile_s"]]
    cache_rate = [audio_s / t for t in tp["cache_s"]]
    ratio = [c / o for c, o in zip(tp["cache_s"], tp["opensmile_s"], strict=True)]

    key = feature_key(ctx.corpus_all, config)
    shutil.rmtree(corpus_dir(ctx.corpus_all) / key, ignore_errors=True)
    t0 = time.perf_counter()
    extract(ctx.corpus_all, config, ("acoustic", "lexical"), ctx.workers, progress=False)
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(ctx.repeats):
        t0 = time.perf_counter()
        extract(ctx.corpus_all, config, ("acoustic", "lexical"), ctx.workers, progress=False)
        warm.append(time.perf_counter() - t0)
    return {
        "corpus": ctx.corpus_all,
        "n_clips": int(len(table)),
        "audio_s": round(audio_s, 1),
        "workers": ctx.workers,
        "opensmile_audio_s_per_s": stat(opensmile_rate, 1),
        "acoustic_audio_s_per_s": stat(cache_rate, 1),
        "acoustic_time_ratio_to_opensmile": stat(ratio, 3),
        "lexical_audio_s_per_s": stat([tp["lexical_audio_s_per_s"]], 1),
        "lexical_utt_per_s": tp["lexical_utt_per_s"],
        "lexical_encoder_load_s": tp["lexical_load_s"],
        "cold_extract_s": stat([cold], 2),
        "cold_extract_audio_s_per_s": stat([audio_s / cold], 1),
        "warm_extract_s": stat(warm, 3),
        "note": "acoustic/opensmile: alternating rounds in temp caches; lexical and cold "
        "extract (acoustic + lexical, empty cache) run once; warm = extract again",
    }


# ---------------------------------------------------------------------------------------
# The IEMOCAP-sized synthetic feature cache


def synth_name(ctx: Context) -> str:
    return f"{SYNTH_CORPUS}_{ctx.n_synthetic}"


def iemocap_durations(n: int, rng: np.random.Generator) -> np.ndarray:
    """IEMOCAP-like utterance lengths: lognormal, mean 4.5 s, clipped to [0.6, 30] s."""
    sigma = 0.65
    mu = np.log(4.5) - sigma**2 / 2
    return np.clip(rng.lognormal(mu, sigma, size=n), 0.6, 30.0).round(2)


def make_synthetic_corpus(name: str, n: int, seed: int = 0, dim: int = 384) -> str:
    """An IEMOCAP-shaped table plus a complete on-disk feature cache of random features.

    Real shards through `datamodules.features.store`, so the datamodule memory-maps them as it
    does real features; `audio_path` points at nothing (no extraction ever runs on it).
    """
    from datamodules.features import FeatureConfig, feature_key_for_table, store
    from datamodules.utterances import corpus_dir, read_table, table_path, write_table

    config = FeatureConfig()
    if table_path(name).is_file():
        table = read_table(name)
        key = feature_key_for_table(table, config)
        if len(table) == n and (corpus_dir(name) / key / "meta.json").is_file():
            return key
    rng = np.random.default_rng(seed)
    durations = iemocap_durations(n, rng)
    labels = ("ang", "hap", "neu", "sad")
    utts = []
    for i, dur in enumerate(durations):
        session = i % 5 + 1
        speaker = f"Ses0{session}{'FM'[(i // 5) % 2]}"
        n_words = int(np.clip(rng.poisson(12 * dur / 4.5), 1, 60))
        edges = np.linspace(0.0, float(dur), n_words + 1)
        words = [Word(f"w{j}", float(edges[j]), float(edges[j + 1])) for j in range(n_words)]
        utts.append(
            Utterance(
                utterance_id=f"{speaker}_synth_{i:05d}",
                speaker=speaker,
                session=f"Ses0{session}",
                label=labels[int(rng.integers(4))],
                audio_path=f"/nonexistent/{i:05d}.wav",
                duration_s=float(dur),
                transcript=" ".join(w.text for w in words),
                words=words,
            )
        )
    write_table(name, utts, {"reader": "bench-synthetic", "classes": list(labels)})
    table = read_table(name)
    key = feature_key_for_table(table, config)
    parts = store.make_parts(corpus_dir(name) / key, table, config)
    by_id = {u.utterance_id: u for u in utts}
    for part_name, part in parts.items():
        part.prepare()
        for i, ids in enumerate(part.shards):
            if part_name == "acoustic":
                frames = [
                    rng.normal(size=(int(by_id[u].duration_s * 100), 65)).astype(np.float32)
                    for u in ids
                ]
                offsets = np.concatenate([[0], np.cumsum([len(f) for f in frames])]).tolist()
                arrays = {"frames": np.concatenate(frames)}
            else:
                vecs = [rng.normal(size=(len(by_id[u].words), dim)).astype(np.float32) for u in ids]
                spans = [
                    np.array(
                        [
                            # the synthetic words are all timed; 0.0 only to satisfy the type
                            [
                                int((w.start or 0.0) * 100),
                                max(int((w.end or 0.0) * 100), int((w.start or 0.0) * 100) + 1),
                            ]
                            for w in by_id[u].words
                        ],
                        dtype=np.int64,
                    )
                    for u in ids
                ]
                offsets = np.concatenate([[0], np.cumsum([len(v) for v in vecs])]).tolist()
                arrays = {
                    "words": np.concatenate(vecs),
                    "spans": np.concatenate(spans),
                    "cls": rng.normal(size=(len(ids), dim)).astype(np.float32),
                }
            content = part.contents[i]
            assert content is not None  # make_parts hashes every shard it builds
            store.write_shard(part.dir, i, ids, content, arrays, offsets)
        extra = {"dim": 65} if part_name == "acoustic" else {"dim": dim, "encoder": config.encoder}
        part.write_info(complete=True, **extra)
    store._write_meta(name, key, table, config, parts)
    return key


# ---------------------------------------------------------------------------------------
# Training throughput


ARCHITECTURES: dict[str, dict[str, Any]] = {
    "acoustic_attention": {"architecture": "acoustic", "pooling": "attention"},
    "mmmla": {"architecture": "mmmla", "pooling": "attention", "fusion": "gmu"},
}


def _quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _datamodule(corpus: str, modalities: list[str], bucketing: bool, **kw: Any) -> Any:
    from datamodules.datamodule import EmotionDataModule

    dm = EmotionDataModule(
        corpus=corpus,
        modalities=modalities,
        bucketing=bucketing,
        batch_size=kw.pop("batch_size", 16),
        **kw,
    )
    return dm


def _classifier(variant: str, dm: Any, **kw: Any) -> Any:
    from lightning_modules.system import EmotionClassifier

    return EmotionClassifier(
        **ARCHITECTURES[variant],
        num_classes=dm.num_classes,
        acoustic_dim=dm.acoustic_dim or 65,
        lexical_dim=dm.lexical_dim or 384,
        class_names=dm.class_names,
        dropout=0.3,
        **kw,
    )


def _modalities(variant: str) -> list[str]:
    from lightning_modules.model import modalities_for

    return list(modalities_for(ARCHITECTURES[variant]["architecture"]))


class StepTimer:
    """Lightning callback: wall time of train steps after a warm-up, data wait, padding share."""

    def __init__(self, warmup: int) -> None:
        import pytorch_lightning as pl

        self.warmup = warmup
        self.t_start: float | None = None
        self.t_last_end: float | None = None
        self.utterances = 0
        self.data_wait = 0.0
        self.real_frames = 0
        self.padded_frames = 0
        self.steps = 0
        self.seen = 0
        outer = self

        class _CB(pl.Callback):
            def on_train_batch_start(self, trainer, module, batch, batch_idx):  # noqa: ANN001
                now = time.perf_counter()
                step = outer.seen  # batch_idx restarts every epoch: count steps ourselves
                outer.seen += 1
                if step == outer.warmup:
                    outer.t_start = now
                elif step > outer.warmup and outer.t_last_end is not None:
                    outer.data_wait += now - outer.t_last_end
                if step >= outer.warmup:
                    outer.utterances += len(batch)
                    outer.steps += 1
                    mask = batch.acoustic_mask if batch.acoustic is not None else batch.word_mask
                    outer.real_frames += int(mask.sum())
                    outer.padded_frames += int(mask.numel())

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):  # noqa: ANN001
                outer.t_last_end = time.perf_counter()

        self.callback = _CB()

    def result(self) -> dict[str, float]:
        if self.t_start is None or self.t_last_end is None or not self.steps:
            raise BenchError("too few training steps to time (raise --train-steps)")
        elapsed = self.t_last_end - self.t_start
        return {
            "utt_per_s": self.utterances / elapsed,
            "step_s": elapsed / self.steps,
            "data_wait_share": self.data_wait / elapsed,
            "padding_share": 1.0 - self.real_frames / max(self.padded_frames, 1),
        }


def time_training(
    corpus: str, variant: str, bucketing: bool, steps: int, warmup: int, seed: int = 0
) -> dict[str, float]:
    """Utterances per second of `steps` train steps (after `warmup`) with a pl.Trainer on CPU."""
    import pytorch_lightning as pl

    _quiet()
    pl.seed_everything(seed, verbose=False)
    dm = _datamodule(corpus, _modalities(variant), bucketing, seed=seed)
    dm.prepare_data = lambda: None  # the cache is complete; the synthetic one has no audio
    dm.setup("fit")
    model = _classifier(variant, dm)
    timer = StepTimer(warmup)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps + warmup,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=1.0,
        callbacks=[timer.callback],
    )
    trainer.fit(model, datamodule=dm)
    out = timer.result()
    out["n_train"] = len(dm.datasets["train"])
    return out


def bench_training(ctx: Context) -> dict[str, Any]:
    """Utterances/s per variant and bucketing setting; epoch time extrapolated from the rate."""
    t0 = time.perf_counter()
    make_synthetic_corpus(synth_name(ctx), ctx.n_synthetic)
    build_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "corpus": f"synthetic IEMOCAP-sized ({ctx.n_synthetic} utterances, lognormal lengths "
        "mean 4.5 s, 65-d frames at 100/s, ~12 words of 384-d), protocol sd8020, batch 16",
        "steps_per_run": ctx.train_steps,
        "warmup_steps": 3,
        "synthetic_cache_build_s": round(build_s, 1),
        "runs": {},
        "note": "epoch_s = train utterances / utt_per_s (extrapolated from the timed steps; "
        "validation not included)",
    }
    for variant in ARCHITECTURES:
        for bucketing in (True, False):
            runs = [
                time_training(synth_name(ctx), variant, bucketing, ctx.train_steps, 3, seed=r)
                for r in range(ctx.repeats)
            ]
            n_train = runs[0]["n_train"]
            name = f"{variant}/{'bucketing' if bucketing else 'no_bucketing'}"
            out["runs"][name] = {
                "utt_per_s": stat([r["utt_per_s"] for r in runs], 1),
                "step_s": stat([r["step_s"] for r in runs], 3),
                "epoch_s": stat([n_train / r["utt_per_s"] for r in runs], 1),
                "data_wait_share": stat([r["data_wait_share"] for r in runs], 3),
                "padding_share": stat([r["padding_share"] for r in runs], 3),
                "n_train": n_train,
            }
            log.info("training %s: %s utt/s", name, out["runs"][name]["utt_per_s"]["median"])
    return out


# ---------------------------------------------------------------------------------------
# Baseline and the suite's acoustic model on RAVDESS (speakers held out)


def _split(ctx: Context) -> dict[str, list[str]]:
    from datamodules.splits import load_or_create_split

    return load_or_create_split(
        ctx.corpus4, "speakers", 0, 0, ctx.test_speakers, ctx.val_speakers or None
    )


def _scores(y_true: Any, y_pred: Any) -> dict[str, float]:
    """UA and WA of label arrays."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    return {
        "ua": float(balanced_accuracy_score(y_true, y_pred)),
        "wa": float(accuracy_score(y_true, y_pred)),
    }


def opensmile_functionals(ctx: Context, files: list[str]) -> np.ndarray:
    """(N, 6373) ComParE_2016 functionals of the files, cached in the bench cache."""
    import hashlib

    import opensmile

    digest = hashlib.sha256("\n".join(files).encode()).hexdigest()[:16]
    path = ctx.cache / "baseline" / f"compare_functionals-{digest}.npy"
    if path.is_file():
        return np.load(path)
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.ComParE_2016,
        feature_level=opensmile.FeatureLevel.Functionals,
        multiprocessing=ctx.workers > 1,
        num_workers=ctx.workers,
    )
    x = smile.process_files(files).to_numpy(dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, x)
    tmp.replace(path)
    return x


def svm_baseline(ctx: Context) -> dict[str, Any]:
    """Standardised ComParE functionals + linear SVM, C chosen on val UA, refit on train+val."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    from datamodules.utterances import read_table

    table = read_table(ctx.corpus4).set_index("utterance_id", drop=False)
    split = _split(ctx)
    ids = [u for part in ("train", "val", "test") for u in split[part]]
    t0 = time.perf_counter()
    feats = opensmile_functionals(ctx, table.loc[ids, "audio_path"].tolist())
    feat_s = time.perf_counter() - t0
    row = {u: i for i, u in enumerate(ids)}
    classes = RAVDESS_CLASSES if ctx.corpus4.startswith("bench_ravdess") else None
    classes = classes or sorted(set(table["label"]))
    index = {c: i for i, c in enumerate(classes)}

    def xy(part: str) -> tuple[np.ndarray, np.ndarray]:
        us = split[part]
        x = np.nan_to_num(feats[[row[u] for u in us]])
        return x, np.array([index[table.loc[u, "label"]] for u in us])

    (xtr, ytr), (xva, yva), (xte, yte) = xy("train"), xy("val"), xy("test")

    def fit(c: float, x: np.ndarray, y: np.ndarray) -> Any:
        clf = make_pipeline(StandardScaler(), LinearSVC(C=c, max_iter=20000, dual=True))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return clf.fit(x, y)

    grid = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    val_ua = {c: _scores(yva, fit(c, xtr, ytr).predict(xva))["ua"] for c in grid}
    best = max(grid, key=lambda c: (val_ua[c], -c))
    t0 = time.perf_counter()
    clf = fit(best, np.concatenate([xtr, xva]), np.concatenate([ytr, yva]))
    fit_s = time.perf_counter() - t0
    return {
        **_scores(yte, clf.predict(xte)),
        "C": best,
        "val_ua_by_C": {str(c): round(v, 3) for c, v in val_ua.items()},
        "feature_dim": int(feats.shape[1]),
        "functionals_s": round(feat_s, 1),
        "fit_s": round(fit_s, 2),
    }


def train_suite_model(
    ctx: Context, variant: str, seed: int, epochs: int, out_dir: Path
) -> tuple[dict[str, Any], Path]:
    """Fit `variant` on the RAVDESS split (best val UA kept), test it; metrics and checkpoint."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    _quiet()
    pl.seed_everything(seed, verbose=False)
    dm = _datamodule(
        ctx.corpus4,
        _modalities(variant),
        True,
        protocol="speakers",
        test_speakers=ctx.test_speakers,
        val_speakers=ctx.val_speakers or None,
        seed=seed,
    )
    dm.prepare_data()
    dm.setup("fit")
    model = _classifier(variant, dm)
    ckpt = ModelCheckpoint(
        dirpath=out_dir, filename="best", monitor="val/ua", mode="max", save_top_k=1
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        gradient_clip_val=1.0,
        callbacks=[ckpt],
    )
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    fit_s = time.perf_counter() - t0
    trainer.test(model, datamodule=dm, ckpt_path="best", verbose=False)
    test = model.results["test"]
    return {
        "ua": float(test["ua"]),
        "wa": float(test["wa"]),
        "fit_s": fit_s,
        "epochs": epochs,
        "n": {p: len(dm.split[p]) for p in ("train", "val", "test")},
    }, Path(ckpt.best_model_path)


def bench_baseline(ctx: Context) -> dict[str, Any]:
    """The SVM baseline and the acoustic attention model on one split, side by side."""
    svm = svm_baseline(ctx)
    runs = []
    for seed in range(ctx.repeats):
        out_dir = ctx.cache / "checkpoints" / f"acoustic_attention-seed{seed}"
        shutil.rmtree(out_dir, ignore_errors=True)
        res, path = train_suite_model(ctx, "acoustic_attention", seed, ctx.epochs, out_dir)
        runs.append(res)
        ctx.checkpoints.setdefault("acoustic_attention", path)
    return {
        "corpus": ctx.corpus4,
        "classes": RAVDESS_CLASSES if ctx.corpus4.startswith("bench_ravdess") else None,
        "protocol": "speakers",
        "test_speakers": ctx.test_speakers,
        "val_speakers": ctx.val_speakers,
        "n": runs[0]["n"],
        "svm_compare_functionals": svm,
        "acoustic_attention": {
            "ua": stat([r["ua"] for r in runs], 3),
            "wa": stat([r["wa"] for r in runs], 3),
            "fit_s": stat([r["fit_s"] for r in runs], 1),
            "epochs": ctx.epochs,
            "seeds": list(range(ctx.repeats)),
        },
    }


# ---------------------------------------------------------------------------------------
# Inference and the app's memory


def ensure_checkpoints(ctx: Context) -> None:
    """An acoustic (fallback) and an MMMLA checkpoint trained briefly on the RAVDESS split."""
    for variant, epochs in (("acoustic_attention", 1), ("mmmla", 1)):
        if variant in ctx.checkpoints and ctx.checkpoints[variant].is_file():
            continue
        out_dir = ctx.cache / "checkpoints" / f"{variant}-inference"
        existing = out_dir / "best.ckpt"
        if existing.is_file():
            ctx.checkpoints[variant] = existing
            continue
        _, path = train_suite_model(ctx, variant, 0, epochs, out_dir)
        ctx.checkpoints[variant] = path


def make_clips(ctx: Context, lengths: Sequence[float], out_dir: Path) -> dict[float, Path]:
    """Speech clips of the given lengths: corpus clips concatenated, then cropped; 16 kHz wav."""
    import soundfile as sf

    from datamodules.audio import SAMPLE_RATE, load_audio
    from datamodules.utterances import read_table

    table = read_table(ctx.corpus4)
    paths = table.sort_values("utterance_id")["audio_path"].tolist()
    need = int(max(lengths) * SAMPLE_RATE)
    pieces, total = [], 0
    for p in paths:
        x = load_audio(p)
        pieces.append(x)
        total += len(x)
        if total >= need:
            break
    audio = np.concatenate(pieces)
    while len(audio) < need:  # a tiny corpus: repeat it
        audio = np.concatenate([audio, audio])
    out_dir.mkdir(parents=True, exist_ok=True)
    clips = {}
    for s in lengths:
        path = out_dir / f"clip_{s:g}s.wav"
        sf.write(path, audio[: int(s * SAMPLE_RATE)], SAMPLE_RATE)
        clips[s] = path
    return clips


def child_app(args: argparse.Namespace) -> dict[str, Any]:
    """In a fresh process: load the predictor, then time predictions of each clip."""
    t0 = time.perf_counter()
    from experiments.inference import Predictor

    import_s = time.perf_counter() - t0
    spec = json.loads(args.child_spec)
    load_ms = []
    t0 = time.perf_counter()
    predictor = Predictor(spec["checkpoint"], fallback=spec["fallback"], asr=spec["asr"])
    first_load_s = time.perf_counter() - t0
    load_ms.append(predictor.load_ms)
    for _ in range(max(spec["repeats"], 3) - 1):  # the first load pays the imports
        load_ms.append(
            Predictor(spec["checkpoint"], fallback=spec["fallback"], asr=spec["asr"]).load_ms
        )
    t0 = time.perf_counter()
    first = predictor.predict_file(spec["clips"][0][1])
    first_predict_s = time.perf_counter() - t0
    latency: dict[str, Any] = {}
    for length, path in spec["clips"]:
        times, steps = [], []
        for _ in range(spec["calls"]):
            t0 = time.perf_counter()
            pred = predictor.predict_file(path)
            times.append(time.perf_counter() - t0)
            steps.append(pred.timings_ms)
        latency[f"{length:g}s"] = {
            "p50_s": round(percentile(times, 50), 3),
            "p95_s": round(percentile(times, 95), 3),
            "min_s": round(min(times), 3),
            "max_s": round(max(times), 3),
            "calls": len(times),
            "steps_ms_median": {
                k: round(statistics.median(s.get(k, 0.0) for s in steps), 1) for k in steps[0]
            },
            "fallback": pred.fallback,
            "n_words": len(pred.words),
        }
    return {
        "import_s": round(import_s, 2),
        "first_load_s": round(first_load_s, 2),
        "load_ms": load_ms,
        "first_predict_s": round(first_predict_s, 2),
        "first_model_used": first.model_used,
        "latency": latency,
        "peak_rss_self": self_peak_rss(),
    }


def bench_inference(ctx: Context) -> dict[str, Any]:
    """Load time and p50/p95 latency (ASR, features, model) in a fresh predictor process."""
    ensure_checkpoints(ctx)
    clips = make_clips(ctx, CLIP_LENGTHS_S, ctx.cache / "clips")
    spec = {
        "checkpoint": str(ctx.checkpoints["mmmla"]),
        "fallback": str(ctx.checkpoints["acoustic_attention"]),
        "asr": ctx.asr,
        "repeats": ctx.repeats,
        "calls": 3 if ctx.quick else 10,
        "clips": [[s, str(p)] for s, p in clips.items()],
    }
    res, peak = run_child(["--child", "app", "--child-spec", json.dumps(spec)])
    return {
        "checkpoint": "mmmla (trained 1 epoch on the RAVDESS split; fallback acoustic_attention)",
        "asr": ctx.asr,
        "model_load_ms": stat(res["load_ms"][1:], 1),
        "first_model_load_ms": res["load_ms"][0],
        "cold_start_s": {
            "imports": res["import_s"],
            "first_load": res["first_load_s"],
            "first_predict_incl_asr_load": res["first_predict_s"],
        },
        "latency": res["latency"],
        "app_peak_rss_mib": round(peak / 2**20, 1),
        "app_peak_rss_vmhwm_mib": round(res["peak_rss_self"] / 2**20, 1),
        "note": "latency = Predictor.predict_file (read, ASR, acoustic + lexical features, model), "
        f"{spec['calls']} calls per length after one warm-up call",
    }


def child_train(args: argparse.Namespace) -> dict[str, Any]:
    """In a fresh process: set up the synthetic datamodule and train a number of steps."""
    spec = json.loads(args.child_spec)
    res = time_training(spec["corpus"], spec["variant"], True, spec["steps"], 3)
    return {**res, "peak_rss_self": self_peak_rss()}


def bench_memory(ctx: Context) -> dict[str, Any]:
    """Peak RSS of a training process on the IEMOCAP-sized set, and of the predictor process."""
    from datamodules.utterances import corpus_dir

    make_synthetic_corpus(synth_name(ctx), ctx.n_synthetic)
    cache_bytes = sum(f.stat().st_size for f in corpus_dir(synth_name(ctx)).rglob("*.npy"))
    out: dict[str, Any] = {"training": {}, "feature_cache_mib": round(cache_bytes / 2**20, 1)}
    for variant in ARCHITECTURES:
        peaks, selfs = [], []
        for _ in range(ctx.repeats):
            spec = {"corpus": synth_name(ctx), "variant": variant, "steps": ctx.train_steps}
            res, peak = run_child(["--child", "train", "--child-spec", json.dumps(spec)])
            peaks.append(peak / 2**20)
            selfs.append(res["peak_rss_self"] / 2**20)
        out["training"][variant] = {
            "peak_rss_mib": stat(peaks, 1),
            "peak_rss_vmhwm_mib": stat(selfs, 1),
        }
    out["note"] = (
        "RSS of the child process tree (psutil, polled every 50 ms) and the child's own "
        "VmHWM (exact peak, catches spikes the polling misses); the feature cache is memory-mapped, and setup() reads every training frame "
        "(normalisation statistics), so its pages count in the RSS"
    )
    return out


# ---------------------------------------------------------------------------------------
# The table


def _fmt(s: dict[str, Any] | float | None, unit: str = "") -> str:
    if s is None:
        return "-"
    if isinstance(s, dict):
        return f"{s['median']:g}{unit} [{s['min']:g}, {s['max']:g}]"
    return f"{s:g}{unit}"


def table_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    """(figure, value) rows of the printed table; values are median [min, max]."""
    rows: list[tuple[str, str]] = []
    f = results.get("features")
    if f:
        rows += [
            (
                "features: corpus",
                f"{f['corpus']}: {f['n_clips']} clips, {f['audio_s']:g} s audio, "
                f"{f['workers']} workers",
            ),
            ("features: openSMILE alone (audio s/s)", _fmt(f["opensmile_audio_s_per_s"])),
            ("features: acoustic cache (audio s/s)", _fmt(f["acoustic_audio_s_per_s"])),
            (
                "features: acoustic time / openSMILE time",
                _fmt(f["acoustic_time_ratio_to_opensmile"]),
            ),
            ("features: lexical (audio s/s)", _fmt(f["lexical_audio_s_per_s"])),
            ("features: cold extract, both (s)", _fmt(f["cold_extract_s"])),
            ("features: warm extract (s)", _fmt(f["warm_extract_s"])),
        ]
    t = results.get("training")
    if t:
        for name, r in t["runs"].items():
            rows.append((f"training {name}: utt/s", _fmt(r["utt_per_s"])))
            rows.append((f"training {name}: epoch (s, extrapolated)", _fmt(r["epoch_s"])))
            rows.append(
                (
                    f"training {name}: data wait / padding",
                    f"{r['data_wait_share']['median']:.1%} / {r['padding_share']['median']:.1%}",
                )
            )
    i = results.get("inference")
    if i:
        first = i.get("first_model_load_ms")
        rows.append(("inference: model load, warm (ms)", _fmt(i["model_load_ms"])))
        rows.append(("inference: first model load, incl. imports (ms)", _fmt(first)))
        rows.append(
            (
                "inference: first call (s, loads ASR)",
                _fmt(i["cold_start_s"]["first_predict_incl_asr_load"]),
            )
        )
        for length, r in i["latency"].items():
            rows.append(
                (f"inference: {length} clip p50 / p95 (s)", f"{r['p50_s']:g} / {r['p95_s']:g}")
            )
        rows.append(
            (
                "memory: app (predictor) peak RSS, polled / VmHWM (MiB)",
                f"{i['app_peak_rss_mib']:g} / {i['app_peak_rss_vmhwm_mib']:g}",
            )
        )
    m = results.get("memory")
    if m:
        for variant, r in m["training"].items():
            rows.append(
                (f"memory: training {variant} peak RSS, polled (MiB)", _fmt(r["peak_rss_mib"]))
            )
            rows.append((f"memory: training {variant} VmHWM (MiB)", _fmt(r["peak_rss_vmhwm_mib"])))
    b = results.get("baseline")
    if b:
        svm, net = b["svm_compare_functionals"], b["acoustic_attention"]
        rows.append(
            (
                "baseline: split",
                f"{b['corpus']} test {b['test_speakers']} val {b['val_speakers']} n {b['n']}",
            )
        )
        rows.append(
            (
                "baseline: SVM ComParE functionals UA / WA",
                f"{svm['ua']:.3f} / {svm['wa']:.3f} (C={svm['C']:g})",
            )
        )
        rows.append(("baseline: acoustic_attention UA", _fmt(net["ua"])))
        rows.append(("baseline: acoustic_attention WA", _fmt(net["wa"])))
    return rows


def print_table(results: dict[str, Any]) -> None:
    m = results["machine"]
    print(
        f"\nmachine: {m['cpu_model']}, {m['cores_usable']} usable cores, "
        f"{m['memory_gib']} GiB, torch {m['torch']} with {m['torch_threads']} threads; "
        f"load avg at start {m['load_avg_at_start']}"
    )
    print(f"repeats: {results['repeats']} (median [min, max])\n")
    rows = table_rows(results)
    width = max((len(k) for k, _ in rows), default=10)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    for note in results.get("notes", []):
        print(f"note: {note}")


# ---------------------------------------------------------------------------------------
# CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes, 1 repeat (< 2 minutes)")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated of {SECTIONS}")
    p.add_argument("--repeats", type=int, help="runs per figure (default 3; 1 with --quick)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results.json")
    p.add_argument("--cache", type=Path, help="the bench's SER_CACHE (default cache/bench)")
    p.add_argument("--corpus-root", type=Path, help="RAVDESS folder (default ../shared/...)")
    p.add_argument("--max-clips", type=int, help="use at most this many clips (features)")
    p.add_argument("--n-synthetic", type=int, help="IEMOCAP-sized set size (default 5500)")
    p.add_argument("--train-steps", type=int, help="timed train steps per run (default 30)")
    p.add_argument("--epochs", type=int, help="epochs of the suite's model in the baseline")
    p.add_argument("--workers", type=int, help="feature extraction processes (default: cores)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared 2-core machine 2 threads ran 5-7x slower)",
    )
    p.add_argument("--asr", default="whisper", help="ASR backend of the prediction path")
    p.add_argument("--child", choices=("train", "app"), help=argparse.SUPPRESS)
    p.add_argument("--child-spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SECTIONS)
    if unknown:
        p.error(f"--only: unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    return args


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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cache = (args.cache or REPO_ROOT / "cache" / "bench").resolve()
    os.environ["SER_CACHE"] = str(cache)
    import torch

    torch.set_num_threads(args.threads)
    if args.child:
        _quiet()
        out = child_app(args) if args.child == "app" else child_train(args)
        print(json.dumps(out))
        return 0
    quick = args.quick
    ctx = Context(
        quick=quick,
        repeats=args.repeats or (1 if quick else 3),
        workers=args.workers or os.cpu_count() or 1,
        cache=cache,
        corpus_root=args.corpus_root or default_ravdess_root(),
        n_synthetic=args.n_synthetic or (400 if quick else 5500),
        train_steps=args.train_steps or (8 if quick else 30),
        epochs=args.epochs or (2 if quick else 8),
        asr=args.asr,
        max_clips=args.max_clips or (120 if quick else None),
    )
    sections = [s for s in SECTIONS if s in args.only.split(",")]
    results: dict[str, Any] = {
        "command": "python -m experiments.bench " + " ".join(argv or sys.argv[1:]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "repeats": ctx.repeats,
        "quick": quick,
    }
    t_all = time.perf_counter()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        if {"features", "inference", "baseline"} & set(sections):
            prepare_corpora(ctx)
        runners: dict[str, Callable[[Context], dict[str, Any]]] = {
            "features": bench_features,
            "training": bench_training,
            "baseline": bench_baseline,  # before inference: its checkpoint is reused there
            "inference": bench_inference,
            "memory": bench_memory,
        }
        for name in ("features", "training", "baseline", "inference", "memory"):
            if name in sections:
                t0 = time.perf_counter()
                log.info("section %s ...", name)
                results[name] = runners[name](ctx)
                results[name]["section_s"] = round(time.perf_counter() - t0, 1)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results["notes"] = ctx.notes + [
        "timings on a shared machine (other users' load): medians of repeats, min and max shown"
    ]
    results["total_s"] = round(time.perf_counter() - t_all, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2), encoding="utf-8")
    tmp.replace(args.out)
    print_table(results)
    print(f"\ntotal {results['total_s']:g} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
