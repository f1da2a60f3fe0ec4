"""Helpers shared by the corpus readers: label names, class selection, drops, layouts, words.

Every reader spells its emotions with the shared names below (its module docstring gives
its code -> name table), so `--classes four` (or `neutral,happy,sad,angry`) picks the
IEMOCAP-style 4-class set on any corpus.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from datamodules.audio import AudioError, audio_info
from datamodules.corpora import keep_classes
from datamodules.corpora.text import repair, words_without_spans
from datamodules.utterances import CorpusError, Utterance, Word

# The 4-class set of the IEMOCAP literature; every reader maps its codes onto these names.
FOUR_CLASSES = ("neutral", "happy", "sad", "angry")
FOUR = "four"  # --classes four -> FOUR_CLASSES
# Shared spellings of the other emotions, so a name means one thing across corpora.
OTHER_CLASSES = ("fear", "disgust", "surprised", "boredom", "contempt", "other")
AUDIO_SUFFIXES = (".wav", ".flac")
_UNICODE_TOKEN = re.compile(r"\w+(?:'\w+)*")


def select_classes(
    utterances: Iterable[Utterance],
    classes: Sequence[str] | None,
    known: Sequence[str],
    drops: dict[str, int],
) -> tuple[list[Utterance], list[str]]:
    """`keep_classes` with `four` standing for FOUR_CLASSES."""
    if classes is not None and list(classes) == [FOUR]:
        classes = FOUR_CLASSES
    return keep_classes(utterances, classes, known, drops)


class Drops:
    """Counts per reason (in first-seen order) and the files named for each reason."""

    def __init__(self, *reasons: str) -> None:
        self.counts: dict[str, int] = {r: 0 for r in reasons}
        self.files: dict[str, list[str]] = {}

    def add(self, reason: str, name: str | Path | None = None) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if name is not None:
            self.files.setdefault(reason, []).append(str(name))

    def duration(self, path: Path) -> float | None:
        """Duration of a readable clip; None (counted as "unreadable audio") otherwise."""
        try:
            return audio_info(path).duration_s
        except AudioError:
            self.add("unreadable audio", path)
            return None


def audio_files(folder: Path) -> list[Path]:
    """Sorted .wav/.flac files directly in `folder`, without macOS `._` shadows."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith("._")
    )


def find_root(
    root: Path,
    looks_right: Callable[[Path], bool],
    nested: Sequence[str],
    corpus: str,
    expected: str,
) -> tuple[Path, str]:
    """The folder under `root` (itself or one of the `nested` names) for which `looks_right` holds.

    Returns the folder and a note naming the layout found; CorpusError with `expected` otherwise.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{corpus} root {root} is not a folder")
    for candidate in [root, *(root / n for n in nested)]:
        if candidate.is_dir() and looks_right(candidate):
            where = "" if candidate == root else f" (nested folder {candidate.relative_to(root)})"
            return candidate, f"layout: {corpus} files under {candidate}{where}"
    raise CorpusError(f"{root} does not look like {corpus}: expected {expected}")


def words_of(text: str, english: bool = True) -> list[Word]:
    """Transcript words with unknown spans; non-English text keeps its letters (ä, ß, ...)."""
    if english:
        return words_without_spans(text)
    return [Word(t) for t in _UNICODE_TOKEN.findall(repair(text).lower())]


def clip_utterance(
    path: Path,
    utterance_id: str,
    speaker: str,
    label: str,
    duration_s: float,
    text: str | None = None,
    extra: dict[str, str] | None = None,
    english: bool = True,
) -> Utterance:
    """One whole audio file as an utterance of a single-speaker session (how the acted
    corpora are laid out), with the untimed words of its fixed `text` where it has one."""
    return Utterance(
        utterance_id=utterance_id,
        speaker=speaker,
        session=speaker,
        label=label,
        audio_path=str(path.resolve()),
        duration_s=duration_s,
        transcript=text or "",
        words=words_of(text, english) if text else [],
        extra=dict(extra or {}),
    )


def spans_note() -> str:
    return "word spans: unknown (transcript words, null spans); the features step spreads them"
