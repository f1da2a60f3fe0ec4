"""Feature throughput (cache, openSMILE alone, lexical, front ends) and the synthetic cache."""

from __future__ import annotations

import shutil
import time
from typing import Any

import numpy as np

from datamodules.utterances import Utterance, Word
from experiments.bench.common import Context, stat

SYNTH_CORPUS = "bench_iemocap_synth"
FRONTEND_SECONDS = {True: 10.0, False: 30.0}  # audio per front end, by --quick


def bench_features(ctx: Context) -> dict[str, Any]:
    """Audio seconds per second: cache vs openSMILE alone, lexical, cold and warm `extract`."""
    from datamodules.features import FeatureConfig, extract, feature_key
    from datamodules.paths import corpus_dir
    from datamodules.utterances import read_table
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
        "frontends": bench_frontends(ctx),
        "note": "acoustic/opensmile: alternating rounds in temp caches; lexical and cold "
        "extract (acoustic + lexical, empty cache) run once; warm = extract again",
    }


def bench_frontends(ctx: Context) -> list[dict[str, Any]] | None:
    """HOOK: `experiments.bench_frontends.frontend_throughput(names, seconds, device)` when that
    module is present (another branch adds it); None, with a note in the table, otherwise."""
    try:
        from experiments.bench_frontends import frontend_throughput
    except ImportError:
        ctx.notes.append("front ends skipped: experiments/bench_frontends.py is not present")
        return None
    kwargs: dict[str, Any] = {"seconds": FRONTEND_SECONDS[ctx.quick], "device": "cpu"}
    if ctx.frontends:  # otherwise the module's own default list
        kwargs["names"] = ctx.frontends
    try:
        return list(frontend_throughput(**kwargs))
    except Exception as exc:  # a front end whose weights are absent must not end the bench
        ctx.notes.append(f"front ends skipped: {type(exc).__name__}: {exc}")
        return None


# The IEMOCAP-sized synthetic feature cache (training and memory sections)


def synth_name(ctx: Context) -> str:
    return f"{SYNTH_CORPUS}_{ctx.n_synthetic}"


def iemocap_durations(n: int, rng: np.random.Generator) -> np.ndarray:
    """IEMOCAP-like utterance lengths: lognormal, mean 4.5 s, clipped to [0.6, 30] s."""
    sigma = 0.65
    mu = np.log(4.5) - sigma**2 / 2
    return np.clip(rng.lognormal(mu, sigma, size=n), 0.6, 30.0).round(2)


def synthetic_utterances(n: int, rng: np.random.Generator) -> list[Utterance]:
    """IEMOCAP-shaped rows (5 sessions, 2 speakers each, 4 labels, ~12 timed words per 4.5 s)."""
    labels = ("ang", "hap", "neu", "sad")
    utts = []
    for i, dur in enumerate(iemocap_durations(n, rng)):
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
    return utts


def make_synthetic_corpus(name: str, n: int, seed: int = 0, dim: int = 384) -> str:
    """An IEMOCAP-shaped table plus a complete feature cache of random features; its key.

    Written by the cache format's public writer, so the datamodule memory-maps it as it does
    real features; `audio_path` points at nothing (no extraction ever runs on it).
    """
    from datamodules.corpus import PreparedCorpus
    from datamodules.features import FeatureConfig, feature_key_for_table, write_features
    from datamodules.paths import table_path
    from datamodules.utterances import write_table

    config = FeatureConfig()
    if table_path(name).is_file():
        corpus = PreparedCorpus.load(name)
        key = feature_key_for_table(corpus.table, config)
        if len(corpus.table) == n and (corpus.dir / key / "meta.json").is_file():
            return key
    rng = np.random.default_rng(seed)
    utts = synthetic_utterances(n, rng)
    write_table(name, utts, {"reader": "bench-synthetic", "classes": ["ang", "hap", "neu", "sad"]})
    by_id = {u.utterance_id: u for u in utts}

    def acoustic(uid: str) -> np.ndarray:
        """(T, 65) frames at 100 per second."""
        return rng.normal(size=(int(by_id[uid].duration_s * 100), 65)).astype(np.float32)

    def lexical(uid: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(W, dim) word vectors, (dim,) CLS, (W, 2) frame spans of the timed words."""
        words = by_id[uid].words
        # the synthetic words are all timed; `or 0.0` only satisfies the type
        starts = [int((w.start or 0.0) * 100) for w in words]
        ends = [max(int((w.end or 0.0) * 100), s + 1) for w, s in zip(words, starts, strict=True)]
        return (
            rng.normal(size=(len(words), dim)).astype(np.float32),
            rng.normal(size=dim).astype(np.float32),
            np.array([starts, ends], dtype=np.int64).T,
        )

    return write_features(name, config, acoustic=acoustic, lexical=lexical).key
