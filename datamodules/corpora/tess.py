"""TESS reader: `OAF_angry/OAF_back_angry.wav`, one folder per speaker and emotion.

Two speakers (OAF, aged 64, and YAF, aged 26; both female) say "Say the word <word>" in
7 emotions. The emotion is the file name's last part: angry, disgust, fear, happy,
neutral, sad, ps/pleasant_surprise(d) -> surprised (4-class set: neutral, happy, sad,
angry). Folder names vary in case (`OAF_Fear`, `YAF_pleasant_surprised`). Releases nest
the folders (`TESS Toronto emotional speech set data/`, sometimes twice, holding a second
copy): every `[OY]AF_*` folder below `--root` is read and a clip seen twice is counted as
a duplicate copy. No official partition: use a speaker protocol.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from datamodules.corpora import PrepareResult
from datamodules.corpora.common import Drops, audio_files, clip_utterance, select_classes
from datamodules.utterances import CorpusError

SPEAKERS = {"OAF": "older adult female (64)", "YAF": "younger adult female (26)"}
EMOTIONS = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happy",
    "neutral": "neutral",
    "sad": "sad",
    "ps": "surprised",
    "pleasant_surprise": "surprised",
    "pleasant_surprised": "surprised",
}
LABELS = ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprised")
CARRIER = "Say the word {}"
_FOLDER = re.compile(r"^(OAF|YAF)_(.+)$", re.IGNORECASE)
_NAME = re.compile(r"^(OAF|YAF)_([a-z]+)_([a-z_]+)$", re.IGNORECASE)


@dataclass
class TessOptions:
    classes: list[str] | None = None  # default: all 7 emotions; "four": neutral,happy,sad,angry


def speaker_folders(root: Path) -> list[Path]:
    """Every `[OY]AF_<emotion>` folder at most three levels below `root`, sorted by path."""
    found = []
    for depth in ("*", "*/*", "*/*/*", "*/*/*/*"):
        found += [p for p in root.glob(depth) if p.is_dir() and _FOLDER.match(p.name)]
    return sorted(found)


def read(root: Path, options: TessOptions) -> PrepareResult:
    """Every clip of every speaker/emotion folder under `root`."""
    root = Path(root)
    folders = speaker_folders(root) if root.is_dir() else []
    if not folders:
        raise CorpusError(
            f"no OAF_<emotion>/ or YAF_<emotion>/ folders under {root}: is it the TESS root "
            "(or its `TESS Toronto emotional speech set data/` folder)?"
        )
    drops = Drops("not a TESS file name", "duplicate copy", "unreadable audio")
    seen: set[str] = set()
    utterances = []
    for folder in folders:
        for path in audio_files(folder):
            m = _NAME.match(path.stem)
            emotion = m.group(3).lower() if m else ""
            if not m or emotion not in EMOTIONS:
                drops.add("not a TESS file name", path)
                continue
            speaker, word = m.group(1).upper(), m.group(2).lower()
            uid = f"{speaker}_{word}_{EMOTIONS[emotion]}"
            if uid in seen:
                drops.add("duplicate copy", path)
                continue
            duration = drops.duration(path)
            if duration is None:
                continue
            seen.add(uid)
            text = CARRIER.format(word)
            utterances.append(
                clip_utterance(
                    path,
                    uid,
                    speaker,
                    EMOTIONS[emotion],
                    duration,
                    text,
                    extra={"emotion": emotion, "word": word, "gender": "female"},
                )
            )
    utterances, classes = select_classes(utterances, options.classes, LABELS, drops.counts)
    parents = sorted({str(f.parent.relative_to(root)) for f in folders})
    notes = [f"layout: speaker/emotion folders in {', '.join(parents)} (relative to {root})"]
    return PrepareResult(utterances, classes, drops.counts, drops.files, notes)


Options = TessOptions
