"""MSP-Podcast reader: `Labels/labels_consensus.csv`, `Audios/` (or `Audio/`), `Transcripts/`.

One row per clip: FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set.
EmoClass: A angry, S sad, H happy, U surprised, F fear, D disgust, C contempt, N neutral,
O other, X no agreement (dropped, counted) (4-class set: N, H, S, A). EmoAct/EmoVal/EmoDom
become the columns activation/valence/dominance. Split_Set Train/Development/Test1/Test2
becomes the `partition` column train/val/test1/test2 (`--data.protocol official`, fold k =
the k-th test set). SpkrID "Unknown" becomes speaker "unknown" (one group for speaker
protocols; `drop_unknown_speaker: true` drops them). Transcripts: `Transcripts/<name>.txt`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from datamodules.corpora import PrepareResult
from datamodules.corpora.common import Drops, select_classes, words_of
from datamodules.corpora.manifest import read_csv
from datamodules.utterances import CorpusError, Utterance

EMOTIONS = {
    "A": "angry",
    "S": "sad",
    "H": "happy",
    "U": "surprised",
    "F": "fear",
    "D": "disgust",
    "C": "contempt",
    "N": "neutral",
    "O": "other",
}
NO_AGREEMENT = "X"
LABELS = ("neutral", "happy", "sad", "angry", "surprised", "fear", "disgust", "contempt", "other")
LABELS_CSV = Path("Labels") / "labels_consensus.csv"
REQUIRED = ("FileName", "EmoClass", "Split_Set")
DIMENSIONS = {"EmoAct": "activation", "EmoVal": "valence", "EmoDom": "dominance"}
UNKNOWN = "unknown"
_TEST = re.compile(r"^test\d*$")


@dataclass
class MspPodcastOptions:
    classes: list[str] | None = None  # default: all 9 classes; "four": neutral,happy,sad,angry
    drop_unknown_speaker: bool = False  # SpkrID "Unknown": kept as speaker "unknown" by default


def partition_of(split_set: str) -> str | None:
    """Train -> train, Development -> val, Test1 -> test1; None for anything else."""
    value = split_set.strip().lower()
    if value == "train":
        return "train"
    if value in ("development", "dev", "validation"):
        return "val"
    return value if _TEST.match(value) else None


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return math.nan


def read(root: Path, options: MspPodcastOptions) -> PrepareResult:
    """The labelled clips of `labels_consensus.csv` whose audio is present and readable."""
    root = Path(root)
    labels = root / LABELS_CSV
    if not labels.is_file():
        raise CorpusError(f"no {LABELS_CSV} under {root}: is it the MSP-Podcast root?")
    audio_dir = next((root / d for d in ("Audios", "Audio") if (root / d).is_dir()), None)
    if audio_dir is None:
        raise CorpusError(f"no Audios/ (or Audio/) folder under {root}")
    header, rows = read_csv(labels)
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise CorpusError(f"{labels} lacks the column(s) {missing}; columns: {header}")
    drops = Drops("X (no agreement)", "unknown speaker", "missing audio", "unreadable audio")
    utterances = []
    n_unknown = n_no_transcript = 0
    for line, row in rows:
        name = row["FileName"].strip()
        code = row["EmoClass"].strip()
        partition = partition_of(row["Split_Set"])
        if partition is None:
            raise CorpusError(
                f"{labels} line {line}: Split_Set '{row['Split_Set']}' is not Train, "
                "Development or Test<N>"
            )
        if code == NO_AGREEMENT:
            drops.add("X (no agreement)")
            continue
        if code not in EMOTIONS:
            raise CorpusError(
                f"{labels} line {line}: EmoClass '{code}' is not one of {[*EMOTIONS, NO_AGREEMENT]}"
            )
        speaker = row.get("SpkrID", "").strip()
        if speaker.lower() in ("", "unknown"):
            if options.drop_unknown_speaker:
                drops.add("unknown speaker")
                continue
            speaker, n_unknown = UNKNOWN, n_unknown + 1
        path = audio_dir / name
        if not path.is_file():
            drops.add("missing audio", path)
            continue
        duration = drops.duration(path)
        if duration is None:
            continue
        transcript_file = root / "Transcripts" / f"{Path(name).stem}.txt"
        text = ""
        if transcript_file.is_file():
            text = transcript_file.read_text(encoding="utf-8", errors="replace").strip()
        else:
            n_no_transcript += 1
        gender = row.get("Gender", "").strip().lower()
        utterances.append(
            Utterance(
                utterance_id=Path(name).stem,
                speaker=speaker,
                session=speaker,
                label=EMOTIONS[code],
                audio_path=str(path.resolve()),
                duration_s=duration,
                transcript=text,
                words=words_of(text),
                extra={
                    "emotion": code,
                    **{ours: _number(row.get(theirs, "")) for theirs, ours in DIMENSIONS.items()},
                    "gender": gender if gender in ("male", "female") else "",
                    "partition": partition,
                },
            )
        )
    utterances, classes = select_classes(utterances, options.classes, LABELS, drops.counts)
    notes = [f"audio from {audio_dir}"]
    if n_unknown:
        notes.append(
            f"{n_unknown} clips have SpkrID 'Unknown': speaker '{UNKNOWN}' (one group for "
            "speaker protocols; drop_unknown_speaker: true drops them)"
        )
    if n_no_transcript:
        notes.append(f"{n_no_transcript} clips have no Transcripts/<name>.txt: empty transcript")
    return PrepareResult(utterances, classes, drops.counts, drops.files, notes)


Options = MspPodcastOptions
