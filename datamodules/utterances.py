"""The utterance table: one schema for every corpus, and where prepared corpora live.

A prepared corpus is `cache/<name>/utterances.csv` plus `cache/<name>/prepare.json`
(reader, root, classes, drop counts). Every later step refers to it by its name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

# Paths and atomic writes live in datamodules.paths; re-exported for the readers' imports.
from datamodules.paths import (  # noqa: F401
    REPO_ROOT,
    CorpusError,
    atomic_write_bytes,
    atomic_write_text,
    cache_root,
    corpus_dir,
    table_path,
)

# Columns every utterances.csv has, in this order; readers may add more after them.
COLUMNS = (
    "utterance_id",
    "speaker",
    "session",
    "label",
    "audio_path",
    "duration_s",
    "transcript",
    "words",
    "start_s",
    "end_s",
)

# Non-lexical tokens kept as words of the lexical input (they get reserved embeddings).
SPECIAL_TOKENS = ("<sil>", "++BREATHING++", "++LAUGHTER++")


@dataclass(frozen=True)
class Word:
    """One word of a transcript; start/end in seconds from the utterance start, None if unknown."""

    text: str
    start: float | None = None
    end: float | None = None


@dataclass
class Utterance:
    """One row of the utterance table."""

    utterance_id: str
    speaker: str
    session: str
    label: str
    audio_path: str = ""  # absolute path; "" for text-only corpora
    duration_s: float = float("nan")
    transcript: str = ""
    words: list[Word] = field(default_factory=list)
    start_s: float | None = None  # segment of a longer file, seconds
    end_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "utterance_id": self.utterance_id,
            "speaker": self.speaker,
            "session": self.session,
            "label": self.label,
            "audio_path": self.audio_path,
            "duration_s": self.duration_s,
            "transcript": self.transcript,
            "words": words_to_json(self.words),
            "start_s": self.start_s,
            "end_s": self.end_s,
        }
        row.update(self.extra)
        return row


def words_to_json(words: Sequence[Word]) -> str:
    """Words as a compact JSON list of [text, start, end]."""
    return json.dumps([[w.text, w.start, w.end] for w in words], ensure_ascii=False)


def words_from_json(text: str | float | None) -> list[Word]:
    """Inverse of `words_to_json`; empty or NaN cells give no words."""
    if text is None or (isinstance(text, float)) or text == "":
        return []
    return [Word(str(t), s, e) for t, s, e in json.loads(text)]


def utterances_to_frame(utterances: Iterable[Utterance]) -> pd.DataFrame:
    rows = [u.to_row() for u in utterances]
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=list(COLUMNS))
    extra = [c for c in frame.columns if c not in COLUMNS]
    return frame[list(COLUMNS) + extra]


def write_table(name: str, utterances: Iterable[Utterance], meta: dict[str, Any]) -> Path:
    """Write `cache/<name>/utterances.csv` and `prepare.json` atomically; returns the csv path."""
    frame = utterances_to_frame(utterances)
    path = table_path(name)
    atomic_write_text(path, frame.to_csv(index=False))
    meta = {**meta, "name": name, "n": len(frame), "table_sha256": table_hash(frame)}
    atomic_write_text(corpus_dir(name) / "prepare.json", json.dumps(meta, indent=2, default=str))
    return path


def read_table(name: str) -> pd.DataFrame:
    """The prepared table of corpus `name`, with string ids and float durations."""
    path = table_path(name)
    if not path.is_file():
        raise CorpusError(
            f"corpus '{name}' is not prepared: {path} does not exist "
            f"(run `python -m experiments.prepare ... --name {name}` first)"
        )
    try:
        frame = pd.read_csv(
            path,
            dtype={
                "utterance_id": str,
                "speaker": str,
                "session": str,
                "label": str,
                "audio_path": str,
                "transcript": str,
                "words": str,
            },
            keep_default_na=False,
            na_values={"duration_s": [""], "start_s": [""], "end_s": [""]},
        )
    except Exception as exc:  # pandas raises many types; the user needs the file name
        raise CorpusError(f"cannot read prepared table {path}: {exc}") from exc
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise CorpusError(f"prepared table {path} lacks columns {missing}; prepare it again")
    return frame


def read_meta(name: str) -> dict[str, Any]:
    path = corpus_dir(name) / "prepare.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def frame_to_utterances(frame: pd.DataFrame) -> list[Utterance]:
    extra_cols = [c for c in frame.columns if c not in COLUMNS]
    out = []
    for row in frame.to_dict("records"):
        out.append(
            Utterance(
                utterance_id=row["utterance_id"],
                speaker=row["speaker"],
                session=row["session"],
                label=row["label"],
                audio_path=row["audio_path"] or "",
                duration_s=float(row["duration_s"]),
                transcript=row["transcript"] or "",
                words=words_from_json(row["words"]),
                start_s=None if pd.isna(row["start_s"]) else float(row["start_s"]),
                end_s=None if pd.isna(row["end_s"]) else float(row["end_s"]),
                extra={c: row[c] for c in extra_cols},
            )
        )
    return out


def table_hash(frame: pd.DataFrame) -> str:
    """Content hash of the columns that change features or labels (not of file mtimes)."""
    cols = ["utterance_id", "label", "audio_path", "transcript", "words", "start_s", "end_s"]
    text = frame[cols].astype(str).to_csv(index=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
