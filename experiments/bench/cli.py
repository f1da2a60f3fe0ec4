"""The printed table, the arguments and `main` of `python -m experiments.bench`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from datamodules.paths import REPO_ROOT, atomic_write_text
from experiments.bench import __doc__ as BENCH_DOC
from experiments.bench.common import (
    BenchError,
    Context,
    default_ravdess_root,
    machine,
    prepare_corpora,
    quiet,
)

log = logging.getLogger("experiments.bench")

SECTIONS = ("features", "training", "inference", "memory", "baseline")


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
        if f.get("frontends") is None:
            rows.append(("features: front ends", "skipped (see notes)"))
        for r in f.get("frontends") or []:
            rows.append(
                (
                    f"features: front end {r['frontend']} (audio s/s, {r['device']})",
                    f"{r['audio_s_per_s']:g} (load {r['load_s']:g} s)",
                )
            )
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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.bench", description=BENCH_DOC)
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
    p.add_argument("--frontends", help="comma-separated front ends (default: all it knows)")
    p.add_argument("--child", choices=("train", "app"), help=argparse.SUPPRESS)
    p.add_argument("--child-spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SECTIONS)
    if unknown:
        p.error(f"--only: unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cache = (args.cache or REPO_ROOT / "cache" / "bench").resolve()
    os.environ["SER_CACHE"] = str(cache)
    import torch

    torch.set_num_threads(args.threads)
    if args.child:
        from experiments.bench.inference import child_app, child_train

        quiet()
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
        frontends=[n for n in (args.frontends or "").split(",") if n],
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
    from experiments.bench.features import bench_features
    from experiments.bench.inference import bench_inference, bench_memory
    from experiments.bench.training import bench_baseline, bench_training

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
    atomic_write_text(args.out, json.dumps(results, indent=2))
    print_table(results)
    print(f"\ntotal {results['total_s']:g} s; results in {args.out}")
    return 0
