"""ESD reader (English part): speakers 0011-0020, `0011/Angry/0011_000351.wav`.

Emotion folders Angry, Happy, Neutral, Sad, Surprise -> angry, happy, neutral, sad,
surprised (4-class set: Neutral, Happy, Sad, Angry). The release's
`Angry/train|evaluation|test/` subfolders become the `partition` column train/val/test
(`--data.protocol official`); the flat variant (clips directly in `Angry/`) has no
partition. Transcripts: `0011/0011.txt`, tab-separated id, text, emotion. A root holding
one `Emotion Speech Dataset/` (or `ESD/`) folder is accepted. The Mandarin speakers
(0001-0010) are not read.
"""

from __future__ import annotations

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

ENGLISH = tuple(f"{i:04d}" for i in range(11, 21))
EMOTIONS = {
    "Angry": "angry",
    "Happy": "happy",
    "Neutral": "neutral",
    "Sad": "sad",
    "Surprise": "surprised",
}
LABELS = ("neutral", "happy", "sad", "angry", "surprised")
PARTITIONS = {"train": "train", "evaluation": "val", "test": "test"}


@dataclass
class EsdOptions:
    classes: list[str] | None = None  # default: all 5 emotions; "four": neutral,happy,sad,angry


def read_transcripts(path: Path) -> dict[str, str]:
    """Utterance id -> text from `<speaker>.txt` (id<TAB>text<TAB>emotion); {} if absent."""
    if not path.is_file():
        return {}
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "utf-16", "cp1252"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    out = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise CorpusError(f"{path} line {number}: expected id<TAB>text<TAB>emotion")
        out[parts[0].strip()] = parts[1].strip()
    return out


def _clips(emotion_dir: Path) -> list[tuple[Path, str]]:
    """(clip, partition) pairs: from train/evaluation/test subfolders, else the folder itself."""
    pairs = [
        (p, partition)
        for sub, partition in PARTITIONS.items()
        if (emotion_dir / sub).is_dir()
        for p in audio_files(emotion_dir / sub)
    ]
    return pairs + [(p, "") for p in audio_files(emotion_dir)]


def read(root: Path, options: EsdOptions) -> PrepareResult:
    """Every clip of the English speakers, labelled by its emotion folder."""
    base, layout = find_root(
        root,
        lambda d: any((d / s).is_dir() for s in ENGLISH),
        ["Emotion Speech Dataset", "ESD"],
        "ESD",
        "speaker folders 0011/ ... 0020/ (English part)",
    )
    drops = Drops("clip of another speaker", "unreadable audio")
    utterances = []
    partitions = set()
    for speaker in ENGLISH:
        speaker_dir = base / speaker
        if not speaker_dir.is_dir():
            continue
        texts = read_transcripts(speaker_dir / f"{speaker}.txt")
        for folder, label in EMOTIONS.items():
            if not (speaker_dir / folder).is_dir():
                continue
            for path, partition in _clips(speaker_dir / folder):
                if not path.stem.startswith(f"{speaker}_"):
                    drops.add("clip of another speaker", path)
                    continue
                duration = drops.duration(path)
                if duration is None:
                    continue
                text = texts.get(path.stem, "")
                partitions.add(partition)
                extra = {"emotion": folder}
                if partition:
                    extra["partition"] = partition
                utterances.append(
                    clip_utterance(path, path.stem, speaker, label, duration, text, extra)
                )
    if not utterances and not any(drops.counts.values()):
        raise CorpusError(f"no clips in <speaker>/<Emotion>/ folders under {base}")
    utterances, classes = select_classes(utterances, options.classes, LABELS, drops.counts)
    notes = [layout]
    if partitions == {""}:
        notes.append("flat emotion folders: no train/evaluation/test partition")
    elif "" in partitions:
        notes.append("some clips lie outside train/evaluation/test: their partition is empty")
    return PrepareResult(utterances, classes, drops.counts, drops.files, notes)


Options = EsdOptions
