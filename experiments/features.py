"""Extract and cache features of a prepared corpus: `python -m experiments.features CORPUS`.

Prints the feature key and the cache folder. `--measure-throughput` instead times the cache
extraction against openSMILE alone on the same files and workers (see `measure_throughput`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from datamodules.audio import AudioError  # noqa: E402
from datamodules.corpus import PreparedCorpus  # noqa: E402
from datamodules.features import (  # noqa: E402
    FeatureConfig,
    FeatureError,
    extract,
    store,  # noqa: E402
)
from datamodules.perturb import PerturbError, check_factors, speed_view  # noqa: E402
from datamodules.utterances import CorpusError, corpus_dir, read_table  # noqa: E402

log = logging.getLogger("experiments.features")


def _audio_seconds(table: Any) -> float:
    import soundfile as sf

    durations = table["duration_s"].astype(float)
    if durations.notna().all():
        return float(durations.sum())
    return float(sum(sf.info(p).duration for p in table["audio_path"]))


def measure_throughput(
    corpus: str,
    workers: int | None = None,
    rounds: int = 2,
    config: FeatureConfig = FeatureConfig(),
    lexical: bool = True,
) -> dict[str, Any]:
    """Seconds of audio per second: cache extraction vs. `smile.process_files` alone.

    Both run on the corpus's files with the same worker count, alternating (A B, B A, ...)
    so load from other users of the machine hits both alike; the cache is built in a temp
    folder each round. Lexical throughput is timed once (encoder load time excluded).
    """
    import opensmile

    table = read_table(corpus)
    files = table["audio_path"].tolist()
    if not files or any(not p for p in files):
        raise FeatureError(f"corpus '{corpus}': throughput needs audio for every utterance")
    workers = max(1, int(workers or os.cpu_count() or 1))
    audio_s = _audio_seconds(table)
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.ComParE_2016,
        feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
        multiprocessing=True,
        num_workers=workers,
    )
    ids = table["utterance_id"].tolist()

    def run_opensmile() -> float:
        t0 = time.perf_counter()
        smile.process_files(files)
        return time.perf_counter() - t0

    def run_cache(root: Path) -> float:
        part = store.make_parts(root / "key", table, config)["acoustic"]
        t0 = time.perf_counter()
        store.build_acoustic(part, table, config, workers, False, "bench", Counter())
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {"opensmile": [], "cache": []}
    with tempfile.TemporaryDirectory(prefix="ser-bench-") as tmp:
        for r in range(rounds):
            order = ("opensmile", "cache") if r % 2 == 0 else ("cache", "opensmile")
            for name in order:
                root = Path(tmp) / f"round{r}"
                dt = run_opensmile() if name == "opensmile" else run_cache(root)
                times[name].append(dt)
                log.info("round %d %s: %.1f s (%.1f s audio/s)", r, name, dt, audio_s / dt)
        result: dict[str, Any] = {
            "corpus": corpus,
            "n": len(files),
            "audio_s": round(audio_s, 1),
            "workers": workers,
            "cpu_count": os.cpu_count(),
            "opensmile_s": [round(t, 2) for t in times["opensmile"]],
            "cache_s": [round(t, 2) for t in times["cache"]],
        }
        os_med = statistics.median(times["opensmile"])
        cache_med = statistics.median(times["cache"])
        result["opensmile_audio_s_per_s"] = round(audio_s / os_med, 1)
        result["cache_audio_s_per_s"] = round(audio_s / cache_med, 1)
        result["ratio_cache_to_opensmile"] = round(cache_med / os_med, 3)
        if lexical:
            from datamodules.features.lexical import LexicalEncoder

            parts = store.make_parts(Path(tmp) / "round0" / "key", table, config)
            t0 = time.perf_counter()
            encoder = LexicalEncoder(config)
            load_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            store.build_lexical(
                parts["lexical"],
                parts["acoustic"],
                table,
                config,
                False,
                "bench",
                Counter(),
                encoder,
            )
            dt = time.perf_counter() - t0
            n_words = sum(len(store.table_words(r)) for r in table.to_dict("records"))
            result.update(
                lexical_encoder=config.encoder,
                lexical_load_s=round(load_s, 2),
                lexical_s=round(dt, 2),
                lexical_audio_s_per_s=round(audio_s / dt, 1),
                lexical_utt_per_s=round(len(ids) / dt, 1),
                lexical_words_per_s=round(n_words / dt, 1),
            )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.features", description=__doc__)
    parser.add_argument("corpus", help="name of a prepared corpus (cache/<corpus>/utterances.csv)")
    parser.add_argument("--encoder", default="minilm", help="'minilm' or a HF name or local path")
    parser.add_argument("--layers", default="last", choices=["last", "last4"])
    parser.add_argument("--word-pooling", default="mean", choices=["mean", "first"])
    parser.add_argument(
        "--acoustic",
        default="compare_lld",
        help="acoustic front end: compare_lld, whisper_tiny, whisper_base or hf:<local path>",
    )
    parser.add_argument(
        "--acoustic-layer",
        default="last",
        help="neural front ends: hidden-state index (0 = before the first block), last, all",
    )
    parser.add_argument(
        "--device", default="cpu", choices=["cpu", "cuda", "auto"], help="neural front ends"
    )
    parser.add_argument(
        "--shard",
        default=None,
        help="K/N: build only cache shards i with i %% N == K (N processes fill one cache)",
    )
    parser.add_argument(
        "--shard-size", type=int, default=None, help="utterances per cache shard (default 256)"
    )
    parser.add_argument(
        "--modalities",
        default="acoustic,lexical",
        help="comma-separated subset of acoustic,lexical",
    )
    parser.add_argument(
        "--speed-perturb",
        default="",
        help="comma-separated speed factors, e.g. 0.9,1.1: also cache the corpus's copies at "
        "those speeds (what data.speed_perturb trains on)",
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--measure-throughput",
        action="store_true",
        help="time the cache extraction against openSMILE alone; print JSON",
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds for --measure-throughput")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = FeatureConfig(
            encoder=args.encoder,
            layers=args.layers,
            word_pooling=args.word_pooling,
            acoustic_features=args.acoustic,
            acoustic_layer=args.acoustic_layer,
        )
        if args.measure_throughput:
            print(
                json.dumps(
                    measure_throughput(args.corpus, args.workers, args.rounds, config), indent=2
                )
            )
            return 0
        modalities = tuple(m.strip() for m in args.modalities.split(",") if m.strip())
        factors = check_factors([f for f in args.speed_perturb.split(",") if f.strip()])
        corpus = PreparedCorpus.load(args.corpus)
        for view in (corpus, *(speed_view(corpus, f) for f in factors)):
            report = extract(
                view,
                config,
                modalities,
                args.workers,
                progress=not args.no_progress,
                device=args.device,
                shard=args.shard,
                shard_size=args.shard_size,
            )
            print(f"key: {report.key}")
            print(f"cache: {corpus_dir(args.corpus) / report.key}")
            print(f"shards: {report.done() or 'all cached, nothing to do'}")
            if not report.complete:
                print(f"shard {args.shard} done; the cache is complete once every shard has run")
    except (FeatureError, CorpusError, AudioError, PerturbError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
