"""Latency and memory harnesses: the predictor and a training run, each in a fresh process.

`run_child` starts `python -m experiments.bench --child {app,train}`, which runs `child_app`
or `child_train` and prints one JSON line; the parent polls the process tree's RSS. Lightning is imported only where a
function needs it, so the predictor child's import time is its own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments.bench.common import Context, percentile, run_child, self_peak_rss, stat
from experiments.bench.features import make_synthetic_corpus, synth_name

CLIP_LENGTHS_S = (1.0, 5.0, 20.0)


def ensure_checkpoints(ctx: Context) -> None:
    """An acoustic (fallback) and an MMMLA checkpoint trained briefly on the RAVDESS split."""
    from experiments.bench.training import fit_suite_model

    for variant, epochs in (("acoustic_attention", 1), ("mmmla", 1)):
        if variant in ctx.checkpoints and ctx.checkpoints[variant].is_file():
            continue
        out_dir = ctx.cache / "checkpoints" / f"{variant}-inference"
        existing = out_dir / "checkpoints" / "best.ckpt"
        if existing.is_file():
            ctx.checkpoints[variant] = existing
            continue
        _, path = fit_suite_model(ctx, variant, 0, epochs, out_dir)
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
    from experiments.bench.training import WARMUP_STEPS, time_training

    spec = json.loads(args.child_spec)
    res = time_training(spec["corpus"], spec["variant"], True, spec["steps"], WARMUP_STEPS)
    return {**res, "peak_rss_self": self_peak_rss()}


def bench_memory(ctx: Context) -> dict[str, Any]:
    """Peak RSS of a training process on the IEMOCAP-sized set, and of the predictor process."""
    from datamodules.paths import corpus_dir
    from experiments.bench.training import ARCHITECTURES

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
