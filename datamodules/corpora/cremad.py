"""CREMA-D reader: `AudioWAV/1001_DFA_ANG_XX.wav` (actor, sentence, emotion, intensity).

Speaker and session are the actor id (`1001`); the transcript is the sentence of the code;
gender comes from `VideoDemographics.csv` (ActorID, Sex) where the file is present.
Emotions: ANG angry, DIS disgust, FEA fear, HAP happy, NEU neutral, SAD sad (4-class set:
NEU, HAP, SAD, ANG). Intensity LO/MD/HI/XX -> low/medium/high/unspecified (a column).
No official partition: use a speaker protocol.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from datamodules.corpora import PrepareResult
from datamodules.corpora.common import (
    Drops,
    audio_files,
    clip_utterance,
    find_root,
    select_classes,
)
from datamodules.utterances import CorpusError

SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
EMOTIONS = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
INTENSITY = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
LABELS = ("neutral", "happy", "sad", "angry", "fear", "disgust")
DEMOGRAPHICS = "VideoDemographics.csv"
_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


@dataclass
class CremadOptions:
    classes: list[str] | None = None  # default: all 6 emotions; "four": neutral,happy,sad,angry


def read_genders(path: Path) -> dict[str, str]:
    """ActorID -> "male"/"female" from VideoDemographics.csv; {} when the file is absent."""
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"ActorID", "Sex"} <= set(rows[0]):
        raise CorpusError(f"{path} lacks the columns ActorID and Sex; columns: {list(rows[0])}")
    return {r["ActorID"].strip(): r["Sex"].strip().lower() for r in rows}


def read(root: Path, options: CremadOptions) -> PrepareResult:
    """Every clip of `root/AudioWAV/` (or of `root` itself), labelled by its emotion code."""
    wav_dir, layout = find_root(
        root,
        lambda d: any(_NAME.match(p.stem) for p in audio_files(d)),
        ["AudioWAV"],
        "CREMA-D",
        "AudioWAV/1001_DFA_ANG_XX.wav files",
    )
    genders = read_genders(Path(root) / DEMOGRAPHICS) or read_genders(wav_dir.parent / DEMOGRAPHICS)
    drops = Drops("not a CREMA-D file name", "unreadable audio")
    utterances = []
    for path in audio_files(wav_dir):
        m = _NAME.match(path.stem)
        if not m or m.group(2) not in SENTENCES or m.group(3) not in EMOTIONS:
            drops.add("not a CREMA-D file name", path)
            continue
        actor, sentence, emotion, intensity = m.groups()
        duration = drops.duration(path)
        if duration is None:
            continue
        text = SENTENCES[sentence]
        utterances.append(
            clip_utterance(
                path,
                path.stem,
                actor,
                EMOTIONS[emotion],
                duration,
                text,
                extra={
                    "emotion": emotion,
                    "intensity": INTENSITY.get(intensity, intensity),
                    "sentence": sentence,
                    "gender": genders.get(actor, ""),
                },
            )
        )
    utterances, classes = select_classes(utterances, options.classes, LABELS, drops.counts)
    notes = [layout]
    if not genders:
        notes.append(f"no {DEMOGRAPHICS} next to AudioWAV/: gender left empty")
    return PrepareResult(utterances, classes, drops.counts, drops.files, notes)


Options = CremadOptions
