"""Pair audio clips of one corpus with texts of another by class: a paired audio+text corpus.

Each clip of class c gets the transcript of one text utterance of class c (labels in the
shared names of `datamodules.corpora.common`), so the audio carries the acoustic evidence
and the text the lexical one. Texts are first made usable: one per normalised string
(lower-case tokens, punctuation dropped), none that the text corpus labels with two
classes, none shorter than `min_words` tokens; each usable text is used at most once, so
a generic line ("Okay.") cannot sit in a training and a test fold at once.
"""

from __future__ import annotations

import csv
import io
import zlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from datamodules.corpora.text import tokenize
from datamodules.utterances import CorpusError, Utterance

# Columns of the written manifest: the first seven are read by the manifest reader
# (datamodules/corpora/manifest.py); text_id and text_emotion are provenance it ignores.
MANIFEST_COLUMNS = (
    "utterance_id",
    "audio_path",
    "label",
    "speaker",
    "session",
    "gender",
    "transcript",
    "text_id",
    "text_emotion",
)
# Columns of the rest manifest (`rest_csv`): a text-only corpus (no audio_path column).
REST_COLUMNS = ("utterance_id", "label", "speaker", "session", "transcript", "text_emotion")
SHORT, AMBIGUOUS, DUPLICATE = "shorter than min_words", "labelled with two classes", "duplicate"


@dataclass
class UsableTexts:
    """Texts per class in first-seen order, and the text rows left out per reason."""

    by_class: dict[str, list[Utterance]]
    rows: Counter[str]  # class -> text rows of that class before any filter
    min_words: int
    dropped: dict[str, int] = field(default_factory=dict)


def text_key(text: str) -> str:
    """The string texts are deduplicated by: `Okay.` and `okay!` are one text."""
    return " ".join(tokenize(text))


def check_partners(
    classes: Sequence[str], audio_labels: Sequence[str], text_labels: Sequence[str]
) -> None:
    """Every class must exist in both corpora; the error names the first class that does not."""
    if len(set(classes)) != len(classes):
        raise CorpusError(f"classes {list(classes)} name a class twice")
    for c in classes:
        if c not in audio_labels and c not in text_labels:
            raise CorpusError(
                f"unknown class '{c}': the audio corpus has {list(audio_labels)}, "
                f"the text corpus {list(text_labels)}"
            )
        side, other, labels = (
            ("text", "audio", text_labels) if c in audio_labels else ("audio", "text", audio_labels)
        )
        if c not in labels:
            raise CorpusError(
                f"class '{c}' of the {other} corpus has no partner in the {side} corpus "
                f"(its classes: {list(labels)}); leave it out of the classes"
            )


def usable_texts(texts: Sequence[Utterance], classes: Sequence[str], min_words: int) -> UsableTexts:
    """Per class, the texts a clip may get: long enough, one label, one per normalised string."""
    labels_of: defaultdict[str, set[str]] = defaultdict(set)
    for u in texts:  # over every class: "what" as neutral and as surprised is ambiguous
        labels_of[text_key(u.transcript)].add(u.label)
    dropped = {SHORT: 0, AMBIGUOUS: 0, DUPLICATE: 0}
    by_class: dict[str, list[Utterance]] = {c: [] for c in classes}
    seen: set[str] = set()
    for u in texts:
        if u.label not in by_class:
            continue
        key = text_key(u.transcript)
        if len(key.split()) < min_words:
            dropped[SHORT] += 1
        elif len(labels_of[key]) > 1:
            dropped[AMBIGUOUS] += 1
        elif key in seen:
            dropped[DUPLICATE] += 1
        else:
            seen.add(key)
            by_class[u.label].append(u)
    rows = Counter(u.label for u in texts if u.label in by_class)
    return UsableTexts(by_class, rows, min_words, dropped)


def pair(
    clips: Sequence[Utterance], texts: UsableTexts, seed: int
) -> list[tuple[Utterance, Utterance]]:
    """(clip, text) for every clip, sorted by clip id; class c's texts drawn without
    replacement by a generator seeded with (seed, c), so one class's pairs do not depend on
    which other classes are paired."""
    by_class: defaultdict[str, list[Utterance]] = defaultdict(list)
    for clip in sorted(clips, key=lambda u: u.utterance_id):
        by_class[clip.label].append(clip)
    out = []
    for c, members in by_class.items():
        pool = texts.by_class.get(c, [])
        if len(pool) < len(members):
            raise CorpusError(
                f"class '{c}' has {len(pool)} usable texts for {len(members)} clips "
                f"({texts.rows[c]} text rows of that class before dropping those shorter than "
                f"{texts.min_words} words, labelled with two classes or duplicated); lower the "
                "minimum word count or leave the class out"
            )
        rng = np.random.default_rng([seed, zlib.crc32(c.encode("utf-8"))])
        chosen = rng.permutation(len(pool))[: len(members)]
        out += [(clip, pool[i]) for clip, i in zip(members, chosen, strict=True)]
    return sorted(out, key=lambda p: p[0].utterance_id)


def manifest_csv(pairs: Sequence[tuple[Utterance, Utterance]]) -> str:
    """The pairs as a manifest CSV: the clip's id, audio, label, speaker and gender with the
    text's transcript."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for clip, text in pairs:
        writer.writerow(
            [
                clip.utterance_id,
                clip.audio_path,
                clip.label,
                clip.speaker,
                clip.session,
                clip.extra.get("gender", ""),
                text.transcript,
                text.utterance_id,
                text.extra.get("emotion", text.label),
            ]
        )
    return buf.getvalue()


def rest_csv(
    texts: UsableTexts, pairs: Sequence[tuple[Utterance, Utterance]]
) -> tuple[str, Counter[str]]:
    """The usable texts no clip got, as a text-only manifest CSV, and their count per class.

    Texts are usable once per normalised string, so none of these shares its words with a
    paired text: a lexical model trained on them (branch pretraining) has never read a line of
    the paired corpus, whichever fold that line is tested in."""
    used = {text.utterance_id for _, text in pairs}
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(REST_COLUMNS)
    counts: Counter[str] = Counter()
    for c, members in texts.by_class.items():
        for u in members:
            if u.utterance_id in used:
                continue
            counts[c] += 1
            writer.writerow(
                [u.utterance_id, c, u.speaker, u.session, u.transcript, u.extra.get("emotion", c)]
            )
    return buf.getvalue(), counts
