"""Throughput of the acoustic front ends: seconds of audio encoded per second of wall time.

`python -m experiments.bench_frontends [--names compare_lld,whisper_tiny,whisper_base,whisper_base@3]
[--seconds 30] [--device cpu]` prints one JSON line per front end (`NAME@N`: hidden state N, the
PyTorch port for Whisper). The audio is a fixed synthetic signal (speech-like harmonics,
clips of 2-6 s), so runs compare across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from datamodules.audio import SAMPLE_RATE  # noqa: E402
from datamodules.features.frontends import ACOUSTIC_FRONTENDS, build_frontend  # noqa: E402


def synthetic_clips(seconds: float, seed: int = 0) -> list[np.ndarray]:
    """Clips of 2-6 s adding up to `seconds`: a gliding harmonic tone with noise."""
    rng = np.random.default_rng(seed)
    clips, total = [], 0.0
    while total < seconds:
        d = float(min(rng.uniform(2.0, 6.0), max(seconds - total, 0.5)))
        t = np.arange(int(d * SAMPLE_RATE)) / SAMPLE_RATE
        f0 = 120 + 40 * np.sin(2 * np.pi * 0.5 * t)
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        x = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.1
        clips.append((x + 0.005 * rng.standard_normal(len(t))).astype(np.float32))
        total += d
    return clips


DEFAULT_NAMES = (*ACOUSTIC_FRONTENDS, "whisper_base@3")


def frontend_throughput(
    names: list[str] | tuple[str, ...] = DEFAULT_NAMES,
    seconds: float = 30.0,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """Per front end: load time, and seconds of audio per second (one thread on CPU)."""
    clips = synthetic_clips(seconds)
    audio_s = sum(len(x) for x in clips) / SAMPLE_RATE
    rows = []
    for name in names:
        front_end, _, layer = name.partition("@")
        t0 = time.perf_counter()
        frontend = build_frontend(front_end, device=device, layer=layer or "last")
        load_s = time.perf_counter() - t0
        frontend.encode(clips[0])  # warm-up
        t0 = time.perf_counter()
        frames = frontend.encode_many(clips)
        dt = time.perf_counter() - t0
        rows.append(
            {
                "frontend": name,
                "device": device,
                "dim": frontend.dim,
                "frame_step_s": frontend.frame_step_s,
                "audio_s": round(audio_s, 1),
                "frames": int(sum(len(f) for f in frames)),
                "load_s": round(load_s, 2),
                "seconds": round(dt, 2),
                "audio_s_per_s": round(audio_s / dt, 1),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.bench_frontends", description=__doc__)
    p.add_argument("--names", default=",".join(DEFAULT_NAMES), help="comma-separated, NAME@N")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds of audio to encode")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    args = p.parse_args(argv)
    names = [n.strip() for n in args.names.split(",") if n.strip()]
    for row in frontend_throughput(names, args.seconds, args.device):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
