"""Corpus readers: each turns one corpus layout into rows of the utterance table.

Every reader is `read(root: Path, options: <Reader>Options) -> PrepareResult`; `READERS`
maps the name used by `python -m experiments.prepare NAME` to the reader module.
"""

from __future__ import annotations

import dataclasses
import difflib
import multiprocessing
import os
import signal
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar

from datamodules.audio import MIN_AUDIO_S, audio_problem
from datamodules.utterances import CorpusError, Utterance


@dataclass
class PrepareResult:
    """What a reader returns: kept utterances, ordered class names, drops per reason."""

    utterances: list[Utterance]
    classes: list[str]
    drops: dict[str, int] = field(default_factory=dict)  # reason -> count, in protocol order
    dropped_files: dict[str, list[str]] = field(default_factory=dict)  # reason -> files named
    notes: list[str] = field(default_factory=list)  # said in the printed summary


def reader(name: str) -> ModuleType:
    """The reader module for a corpus name (a key of READERS)."""
    import importlib

    if name not in READERS:
        raise CorpusError(f"unknown corpus reader '{name}'; choose one of {sorted(READERS)}")
    return importlib.import_module(f"datamodules.corpora.{READERS[name]}")


# corpus name (the `prepare` argument) -> module of datamodules.corpora; the one list of readers.
READERS = {
    "iemocap": "iemocap",
    "ravdess": "ravdess",
    "cremad": "cremad",
    "tess": "tess",
    "savee": "savee",
    "emodb": "emodb",
    "msppodcast": "msppodcast",
    "meld": "meld",
    "esd": "esd",
    "manifest": "manifest",
    "builtin": "builtin",
}

T = TypeVar("T")

MIN_CLASS_COUNT = 10  # fewer utterances of a class than this get a warning in the summary


def normalize_label(text: str) -> str:
    """A label as written in user data, in the table's form: `ANGRY ` -> `angry`.

    For labels from user files (manifests, CSV columns); a corpus's own codes (IEMOCAP's
    `neu`, `xxx`) are mapped by their reader and not passed through this."""
    return " ".join(str(text).split()).lower()


def label_warnings(counts: Counter[str], min_count: int = MIN_CLASS_COUNT) -> list[str]:
    """Warnings for the summary: classes under `min_count` utterances, and labels so alike
    (difflib ratio >= 0.8: `hapy`, `happy`) that one is likely a typo of the other."""
    out = []
    small = sorted((c for c, n in counts.items() if n < min_count), key=lambda c: (counts[c], c))
    if small:
        listed = ", ".join(f"{c} ({counts[c]})" for c in small)
        out.append(
            f"warning: {len(small)} class(es) with fewer than {min_count} utterances: {listed}"
        )
    labels = sorted(counts)
    pairs = []
    for i, a in enumerate(labels):
        for b in difflib.get_close_matches(a, labels[i + 1 :], n=3, cutoff=0.8):
            pairs.append(f"'{a}' ({counts[a]}) ~ '{b}' ({counts[b]})")
    if pairs:
        out.append(
            "hint: near-duplicate labels, perhaps typos of one class: "
            + ", ".join(pairs)
            + " (fix the source, or keep the ones meant with --classes)"
        )
    return out


def options_from_dict(cls: type[T], values: dict[str, Any], source: str) -> T:
    """Build an options dataclass; an unknown key fails with its name and `source`."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise CorpusError(
            f"unknown option(s) {unknown} in {source}; known options: {sorted(names)}"
        )
    return cls(**values)


def keep_classes(
    utterances: Iterable[Utterance],
    classes: Sequence[str] | None,
    known: Sequence[str],
    drops: dict[str, int],
    reason: str = "label not in classes",
) -> tuple[list[Utterance], list[str]]:
    """Keep utterances whose label is in `classes` (ordered); an unknown class is an error."""
    utterances = list(utterances)
    if classes is None:
        present = {u.label for u in utterances}
        return utterances, [c for c in known if c in present] + sorted(present - set(known))
    unknown = [c for c in classes if c not in known]
    if unknown:
        raise CorpusError(f"unknown label(s) {unknown} in classes; this corpus has {list(known)}")
    if len(set(classes)) != len(classes):
        raise CorpusError(f"classes {list(classes)} name a label twice")
    kept = [u for u in utterances if u.label in classes]
    drops[reason] = drops.get(reason, 0) + len(utterances) - len(kept)
    return kept, list(classes)


def count_by(utterances: Iterable[Utterance], attr: str) -> Counter[str]:
    return Counter(getattr(u, attr) for u in utterances)


POOL_MIN_FILES = 64  # fewer files are decoded in-process (a pool's start-up would cost more)
MAX_NAMED = 20  # bad files named in an error message


def _screen_worker_init(parent: int) -> None:
    from datamodules.processes import die_with_parent

    die_with_parent(signal.SIGKILL, parent)  # a killed prepare leaves no decoder behind


def _decode_all(paths: list[str], workers: int | None) -> list[tuple[str, str] | None]:
    """`audio_problem` of each path: in a process pool when there are many."""
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    if workers <= 1 or len(paths) < POOL_MIN_FILES:
        return [audio_problem(p) for p in paths]
    from concurrent.futures import ProcessPoolExecutor

    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_screen_worker_init, initargs=(os.getpid(),)
    )
    try:
        return list(pool.map(audio_problem, paths, chunksize=max(1, len(paths) // (workers * 8))))
    finally:  # an interruption drops the queued files and stops the busy workers
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
            proc.join(timeout=5)


def screen_audio(
    result: PrepareResult, skip_bad: bool = False, workers: int | None = None
) -> PrepareResult:
    """Decode every audio file of `result` once (`audio_problem`); a segment shorter than
    `MIN_AUDIO_S` counts as too short. Bad files fail the prepare with a CorpusError naming
    them, or with `skip_bad` their utterances are dropped, counted per reason."""
    paths = sorted({u.audio_path for u in result.utterances if u.audio_path})
    problems = {p: q for p, q in zip(paths, _decode_all(paths, workers), strict=True) if q}
    bad: dict[str, tuple[str, str, str]] = {}  # utterance id -> (reason, file, detail)
    for u in result.utterances:
        if not u.audio_path:
            continue
        if u.audio_path in problems:
            reason, detail = problems[u.audio_path]
            bad[u.utterance_id] = (reason, u.audio_path, detail)
        elif u.end_s is not None and u.end_s - (u.start_s or 0.0) < MIN_AUDIO_S:
            span = f"segment [{u.start_s}, {u.end_s}] s"
            bad[u.utterance_id] = ("too short audio", f"{u.audio_path} {span}", span)
    if not bad:
        return result
    if not skip_bad:
        named = sorted({(f, r, d) for r, f, d in bad.values()})
        shown = "; ".join(f"{f} ({r}: {d})" for f, r, d in named[:MAX_NAMED])
        more = f"; ... and {len(named) - MAX_NAMED} more" if len(named) > MAX_NAMED else ""
        raise CorpusError(
            f"{len(named)} audio file(s) cannot be used: {shown}{more}; fix or remove them, "
            "or pass --skip-bad to leave them out (counted per reason in the summary)"
        )
    for reason, file, _ in bad.values():
        result.drops[reason] = result.drops.get(reason, 0) + 1
        files = result.dropped_files.setdefault(reason, [])
        if file not in files:
            files.append(file)
    result.utterances = [u for u in result.utterances if u.utterance_id not in bad]
    return result
