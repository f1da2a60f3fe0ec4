"""A prepared corpus, read once: its name, utterance table, `prepare.json` and classes.

Feature keying, extraction and splitting take a `PreparedCorpus` (or a name, read here), so
one training run reads `utterances.csv` once however many steps look at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from datamodules.paths import corpus_dir, table_path
from datamodules.utterances import CorpusError, read_meta, read_table, table_hash


@dataclass
class PreparedCorpus:
    """`cache/<name>/utterances.csv` and `prepare.json` of one prepared corpus."""

    name: str
    table: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)
    # which transcript `transcript`/`words` hold, "gold" or "asr" ("": as prepared, see
    # `datamodules.transcripts.transcript_view`); lexical feature keys depend on it
    transcripts: str = ""

    @classmethod
    def load(cls, name: str) -> PreparedCorpus:
        """Read the table and its prepare.json (CorpusError naming the file if not prepared)."""
        return cls(name, read_table(name), read_meta(name))

    @property
    def dir(self) -> Path:
        return corpus_dir(self.name)

    @property
    def table_file(self) -> Path:
        return table_path(self.name)

    @cached_property
    def table_sha256(self) -> str:
        """Content hash of the columns that change features or labels."""
        return table_hash(self.table)

    @cached_property
    def classes(self) -> list[str]:
        """prepare.json "classes" if present, else the sorted labels; every label must be a class."""
        labels = sorted(set(self.table["label"]))
        classes = list(self.meta.get("classes") or labels)
        stray = sorted(set(labels) - set(classes))
        if stray:
            raise CorpusError(
                f"{self.table_file} has labels {stray} outside the classes {classes} of its "
                "prepare.json; prepare the corpus again"
            )
        return classes

    @cached_property
    def speaker_of(self) -> dict[str, str]:
        return dict(zip(self.table["utterance_id"], self.table["speaker"], strict=True))

    @cached_property
    def label_of(self) -> dict[str, str]:
        return dict(zip(self.table["utterance_id"], self.table["label"], strict=True))

    @property
    def transcript_source(self) -> str:
        """ "asr" when the transcript columns hold recognised text, else "gold"."""
        if self.transcripts:
            return self.transcripts
        return "asr" if "gold_transcript" in self.table.columns else "gold"

    @property
    def has_audio(self) -> bool:
        """True when at least one utterance has an audio file."""
        return bool((self.table["audio_path"].astype(str) != "").any())


def as_corpus(corpus: str | PreparedCorpus) -> PreparedCorpus:
    """A `PreparedCorpus` from itself or from a prepared corpus's name."""
    return corpus if isinstance(corpus, PreparedCorpus) else PreparedCorpus.load(corpus)
