"""Recognised transcripts: a per-utterance ASR cache, WER against the gold text, and table views.

`recognise_corpus(name, utterances, backend, workers)` runs the recogniser of
`datamodules.asr` once per utterance and keeps what it heard in
`cache/<name>/asr/<backend>/<utterance id>.json` (written atomically; an entry is reused
while its audio file, segment, size and the ASR code version match, so an interrupted run
resumes and a second run recognises nothing). Workers are processes, as for openSMILE.

WER (`jiwer`) compares normalised token sequences: lower case, punctuation dropped, special
tokens (`<sil>`, ...) removed and contractions expanded as the gold words are (`i'm` -> `i am`).

A table prepared with `--transcripts asr` keeps the gold text in `gold_transcript`/`gold_words`;
one prepared with `--transcripts both` keeps ASR text in `asr_transcript`/`asr_words`.
`transcript_view(corpus, "gold"|"asr")` gives the corpus with the chosen text as its
`transcript`/`words`, so the feature step keys and computes lexical features per source.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datamodules.corpus import PreparedCorpus
from datamodules.paths import atomic_write_text, corpus_dir
from datamodules.utterances import SPECIAL_TOKENS, CorpusError, Utterance, Word, words_to_json

log = logging.getLogger(__name__)

ASR_CACHE_VERSION = "asr-1"  # bump when what a cache entry holds changes
SOURCES = ("gold", "asr")
# Where the non-main transcript lives, by source (the main one is `transcript`/`words`).
ALT_COLUMNS = {"gold": ("gold_transcript", "gold_words"), "asr": ("asr_transcript", "asr_words")}


# ---------------------------------------------------------------------------------- WER


def normalise(text: str) -> list[str]:
    """Tokens WER is computed on: lower case, no punctuation or special tokens, contractions expanded."""
    from datamodules.corpora.text import expand_contractions, tokenize

    for token in SPECIAL_TOKENS:
        text = text.replace(token, " ")
    return [w.text for w in expand_contractions([Word(t) for t in tokenize(text)])]


def utterance_wer(reference: str, hypothesis: str) -> float:
    """WER of one utterance (NaN when the reference has no words)."""
    import jiwer

    ref, hyp = normalise(reference), normalise(hypothesis)
    if not ref:
        return math.nan
    return float(jiwer.wer(" ".join(ref), " ".join(hyp) if hyp else ""))


def corpus_wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER (errors / reference words over all utterances with a reference; NaN if none)."""
    import jiwer

    pairs = [(normalise(r), normalise(h)) for r, h in zip(references, hypotheses, strict=True)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return math.nan
    return float(jiwer.wer([" ".join(r) for r, _ in pairs], [" ".join(h) for _, h in pairs]))


def asr_words(heard: Sequence[Word], duration_s: float | None = None) -> list[Word]:
    """Recognised words as table words: normalised tokens, each keeping its word's span
    (clipped to the clip's duration), contractions expanded as the gold words are."""
    from datamodules.corpora.text import expand_contractions, tokenize

    out = []
    for w in heard:
        start, end = w.start, w.end
        if duration_s is not None and start is not None and end is not None:
            start, end = min(start, duration_s), min(end, duration_s)
        out += [Word(t, start, end) for t in tokenize(w.text)]
    return expand_contractions(out)


# ---------------------------------------------------------------------------- the cache


@dataclass
class Heard:
    """One cached recognition: text and words (spans in seconds from the utterance start)."""

    text: str
    words: list[Word]
    seconds: float  # recognition wall-clock time when it was computed


@dataclass
class RecognitionReport:
    """What `recognise_corpus` did: how many utterances were recognised and reused."""

    backend: str
    heard: dict[str, Heard] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)  # "computed", "cached"
    seconds: float = 0.0


def asr_dir(corpus: str, backend: str) -> Path:
    """`cache/<corpus>/asr/<backend>/`."""
    return corpus_dir(corpus) / "asr" / backend


def entry_name(utterance_id: str) -> str:
    """A file name for an utterance id (ids with odd characters get a hash suffix)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", utterance_id)
    if safe != utterance_id or safe.startswith("."):
        safe = f"{safe.lstrip('.')}-{hashlib.sha256(utterance_id.encode()).hexdigest()[:8]}"
    return f"{safe}.json"


def _source(u: Utterance, backend: str) -> dict[str, Any]:
    """What the recognition depends on: the audio file (path, size, mtime), segment, backend."""
    path = Path(u.audio_path)
    stat = path.stat() if path.is_file() else None
    return {
        "version": ASR_CACHE_VERSION,
        "backend": backend,
        "utterance_id": u.utterance_id,
        "audio_path": u.audio_path,
        "bytes": stat.st_size if stat else None,
        "mtime_ns": stat.st_mtime_ns if stat else None,
        "start_s": u.start_s,
        "end_s": u.end_s,
    }


def _read_entry(path: Path, source: dict[str, Any]) -> Heard | None:
    """The cached recognition if `path` holds one for exactly `source`, else None."""
    if not path.is_file():
        return None
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        if entry.get("source") != source:
            return None
        words = [Word(str(t), s, e) for t, s, e in entry["words"]]
        return Heard(str(entry["text"]), words, float(entry.get("seconds", 0.0)))
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("%s: unreadable ASR cache entry; recognising again", path)
        return None


def _write_entry(path: Path, source: dict[str, Any], heard: Heard) -> None:
    entry = {
        "source": source,
        "text": heard.text,
        "words": json.loads(words_to_json(heard.words)),
        "seconds": round(heard.seconds, 4),
    }
    atomic_write_text(path, json.dumps(entry, ensure_ascii=False))


def recognise(task: tuple[str, float | None, float | None, str]) -> Heard:
    """(audio path, start_s, end_s, backend) -> what the recogniser heard (pool worker)."""
    from datamodules.asr import transcribe
    from datamodules.audio import SAMPLE_RATE, load_audio

    path, start, end, backend = task
    x = load_audio(path, start, end)
    out = transcribe(x, backend)
    return Heard(out.text, asr_words(out.words, len(x) / SAMPLE_RATE), out.seconds)


def _call(task: tuple[str, float | None, float | None, str]) -> Heard:
    return recognise(task)  # looked up at call time, so tests can count the calls


def _pool_map(fn: Callable, tasks: list, workers: int) -> Iterator[Any]:
    """fn over tasks in order: in-process for one worker, else a process pool."""
    if workers <= 1 or len(tasks) <= 1:
        yield from map(fn, tasks)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context)
    try:
        yield from pool.map(fn, tasks, chunksize=1)
    finally:  # on an interruption, drop the queued clips instead of finishing them
        pool.shutdown(wait=True, cancel_futures=True)


def recognise_corpus(
    corpus: str,
    utterances: Sequence[Utterance],
    backend: str = "whisper",
    workers: int | None = None,
    progress: bool = True,
) -> RecognitionReport:
    """What `backend` heard in each utterance, from the cache or recognised (and cached) now."""
    from tqdm.auto import tqdm

    from datamodules.asr import BACKENDS

    if backend not in BACKENDS:
        raise CorpusError(f"unknown ASR backend '{backend}'; choose one of {list(BACKENDS)}")
    silent = [u.utterance_id for u in utterances if not u.audio_path]
    if silent:
        raise CorpusError(
            f"corpus '{corpus}': {len(silent)} of {len(utterances)} utterances have no audio "
            f"(e.g. '{silent[0]}'); recognised transcripts need audio"
        )
    folder = asr_dir(corpus, backend)
    folder.mkdir(parents=True, exist_ok=True)
    for tmp in folder.glob(".*.tmp"):  # left by an interrupted run
        tmp.unlink(missing_ok=True)
    report = RecognitionReport(backend)
    todo: list[tuple[Utterance, dict[str, Any]]] = []
    for u in utterances:
        source = _source(u, backend)
        heard = _read_entry(folder / entry_name(u.utterance_id), source)
        if heard is None:
            todo.append((u, source))
        else:
            report.heard[u.utterance_id] = heard
            report.counts["cached"] += 1
    workers = max(1, int(workers or os.cpu_count() or 1))
    t0 = time.perf_counter()
    tasks = [(u.audio_path, u.start_s, u.end_s, backend) for u, _ in todo]
    with tqdm(total=len(tasks), desc=f"{corpus} asr {backend}", unit="utt",
              disable=not progress or not tasks) as bar:  # fmt: skip
        for (u, source), heard in zip(todo, _pool_map(_call, tasks, workers), strict=True):
            _write_entry(folder / entry_name(u.utterance_id), source, heard)
            report.heard[u.utterance_id] = heard
            report.counts["computed"] += 1
            bar.update(1)
    report.seconds = time.perf_counter() - t0
    return report


# ------------------------------------------------------------------- the prepared table


def add_transcripts(
    corpus: str,
    utterances: Sequence[Utterance],
    mode: str,
    backend: str = "whisper",
    workers: int | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], str]:
    """Put the recognised transcripts into the rows (in place); returns (meta, summary line).

    mode "asr": `transcript`/`words` become the recogniser's, gold kept in `gold_transcript`/
    `gold_words`; "both": gold stays, ASR goes into `asr_transcript`/`asr_words`. Every row
    gets `asr_backend` and its `wer`.
    """
    if mode not in ("asr", "both"):
        raise CorpusError(f"transcripts must be 'gold', 'asr' or 'both', not '{mode}'")
    report = recognise_corpus(corpus, utterances, backend, workers, progress)
    refs, hyps = [], []
    for u in utterances:
        heard = report.heard[u.utterance_id]
        wer = utterance_wer(u.transcript, heard.text)
        refs.append(u.transcript)
        hyps.append(heard.text)
        if mode == "asr":
            u.extra["gold_transcript"] = u.transcript
            u.extra["gold_words"] = words_to_json(u.words)
            u.transcript, u.words = heard.text, list(heard.words)
        else:
            u.extra["asr_transcript"] = heard.text
            u.extra["asr_words"] = words_to_json(heard.words)
        u.extra["asr_backend"] = backend
        u.extra["wer"] = wer
    total = corpus_wer(refs, hyps)
    meta = {
        "transcripts": mode,
        "asr_backend": backend,
        "wer": total,
        "asr_computed": report.counts["computed"],
        "asr_cached": report.counts["cached"],
    }
    line = (
        f"transcripts: {mode} (ASR {backend}); corpus WER {100 * total:.1f}% over "
        f"{sum(bool(normalise(r)) for r in refs)} utterances with a reference; "
        f"{report.counts['computed']} recognised in {report.seconds:.0f} s, "
        f"{report.counts['cached']} from {asr_dir(corpus, backend)}"
    )
    return meta, line


def main_source(corpus: PreparedCorpus) -> str:
    """Which transcript the table's `transcript`/`words` columns hold ("gold" or "asr")."""
    return "asr" if "gold_transcript" in corpus.table.columns else "gold"


def transcript_view(corpus: PreparedCorpus, source: str) -> PreparedCorpus:
    """`corpus` with the `source` ("gold"/"asr") transcript as its `transcript`/`words`."""
    if source not in SOURCES:
        raise CorpusError(f"transcripts must be one of {list(SOURCES)}, not '{source}'")
    if main_source(corpus) == source:
        return PreparedCorpus(corpus.name, corpus.table, corpus.meta, transcripts=source)
    text_col, words_col = ALT_COLUMNS[source]
    if text_col not in corpus.table.columns or words_col not in corpus.table.columns:
        raise CorpusError(
            f"corpus '{corpus.name}' ({corpus.table_file}) has no {source.upper()} transcripts "
            f"(columns {text_col}/{words_col}); prepare it with --transcripts both"
        )
    table = corpus.table.copy()
    table["transcript"] = table[text_col].astype(str)
    table["words"] = table[words_col].astype(str)
    return PreparedCorpus(corpus.name, table, corpus.meta, transcripts=source)
