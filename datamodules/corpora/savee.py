"""SAVEE reader: four male speakers (DC, JE, JK, KL), 480 clips such as `DC/sa01.wav`.

Accepted layouts (the note says which was found): the release's `AudioData/DC/a01.wav`,
speaker folders at the root (`DC/a01.wav`), and the flat Kaggle copy (`DC_a01.wav`,
anywhere below the root, e.g. `ALL/`). Emotion codes: a angry, d disgust, f fear,
h happy, n neutral, sa sad, su surprised (4-class set: n, h, sa, a). The audio release
has no transcripts and no official partition: use a speaker protocol.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from datamodules.corpora import PrepareResult
from datamodules.corpora.common import (
    AUDIO_SUFFIXES,
    Drops,
    audio_files,
    clip_utterance,
    select_classes,
)
from datamodules.utterances import CorpusError

SPEAKERS = ("DC", "JE", "JK", "KL")
EMOTIONS = {
    "a": "angry",
    "d": "disgust",
    "f": "fear",
    "h": "happy",
    "n": "neutral",
    "sa": "sad",
    "su": "surprised",
}
LABELS = ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprised")
_CLIP = re.compile(r"^(sa|su|a|d|f|h|n)(\d\d)$")
_FLAT = re.compile(r"^(DC|JE|JK|KL)_(sa|su|a|d|f|h|n)(\d\d)$")


@dataclass
class SaveeOptions:
    classes: list[str] | None = None  # default: all 7 emotions; "four": neutral,happy,sad,angry


def _layout(root: Path) -> tuple[list[tuple[str, Path]], str]:
    """(speaker, clip) pairs and the layout's description."""
    for base in (root / "AudioData", root):
        folders = [base / s for s in SPEAKERS if (base / s).is_dir()]
        if folders:
            pairs = [(f.name, p) for f in folders for p in audio_files(f)]
            return pairs, f"layout: speaker folders {[f.name for f in folders]} in {base}"
    flat = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in AUDIO_SUFFIXES and _FLAT.match(p.stem) and p.is_file()
    )
    if flat:
        where = sorted({str(p.parent) for p in flat})
        return [(p.stem[:2], p) for p in flat], f"layout: flat SPK_xxNN files in {where}"
    raise CorpusError(
        f"{root} does not look like SAVEE: expected AudioData/DC/a01.wav, DC/a01.wav or "
        "DC_a01.wav files"
    )


def read(root: Path, options: SaveeOptions) -> PrepareResult:
    """Every clip of the four speakers, labelled by its emotion letter code."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"SAVEE root {root} is not a folder")
    pairs, layout = _layout(root)
    drops = Drops("not a SAVEE file name", "unreadable audio")
    utterances = []
    for speaker, path in pairs:
        stem = path.stem[3:] if _FLAT.match(path.stem) else path.stem
        m = _CLIP.match(stem)
        if not m:
            drops.add("not a SAVEE file name", path)
            continue
        duration = drops.duration(path)
        if duration is None:
            continue
        utterances.append(
            clip_utterance(
                path,
                f"{speaker}_{stem}",
                speaker,
                EMOTIONS[m.group(1)],
                duration,
                extra={"emotion": m.group(1), "gender": "male"},
            )
        )
    utterances, classes = select_classes(utterances, options.classes, LABELS, drops.counts)
    notes = [layout, "no transcripts in the SAVEE audio release: lexical models do not apply"]
    return PrepareResult(utterances, classes, drops.counts, drops.files, notes)


Options = SaveeOptions
