"""Corpus readers: each turns one corpus layout into rows of the utterance table.

Every reader is `read(root: Path, options: <Reader>Options) -> PrepareResult`; `READERS`
maps the name used by `python -m experiments.prepare NAME` to the reader module.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar

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
