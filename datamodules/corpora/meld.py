"""MELD (audio) reader: the released `.mp4` clips, their audio extracted once with ffmpeg.

Layout (MELD.Raw, folders may sit at the root or one level down, e.g. `train/`):
`train_sent_emo.csv` + `train_splits/dia{D}_utt{U}.mp4`, `dev_sent_emo.csv` +
`dev_splits_complete/`, `test_sent_emo.csv` + `output_repeated_splits_test/`. The CSV
columns used: Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID, Season,
Episode. The official train/dev/test becomes the `partition` column train/val/test.
Emotions: neutral, joy -> happy, sadness -> sad, anger -> angry, surprise -> surprised,
fear, disgust (4-class set: neutral, joy, sadness, anger). Speaker = the character; session
= the dialogue. Audio: 16 kHz mono wav in `cache/meld_audio/<root hash>/` (or `audio_dir`),
written atomically and reused on a rerun; clips ffmpeg cannot decode are dropped and named.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from datamodules.corpora import PrepareResult, normalize_label
from datamodules.corpora.common import Drops, select_classes, words_of
from datamodules.corpora.manifest import read_csv
from datamodules.corpora.text import repair
from datamodules.utterances import CorpusError, Utterance, cache_root

EMOTIONS = {
    "neutral": "neutral",
    "joy": "happy",
    "sadness": "sad",
    "anger": "angry",
    "surprise": "surprised",
    "fear": "fear",
    "disgust": "disgust",
}
LABELS = ("neutral", "happy", "sad", "angry", "surprised", "fear", "disgust")
# release split -> (partition, labels CSV, clip folder names)
SPLITS = {
    "train": ("train", "train_sent_emo.csv", ("train_splits",)),
    "dev": ("val", "dev_sent_emo.csv", ("dev_splits_complete", "dev_splits")),
    "test": ("test", "test_sent_emo.csv", ("output_repeated_splits_test", "test_splits")),
}
REQUIRED = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")
EXTRA = {"Sentiment": "sentiment", "Season": "season", "Episode": "episode"}


@dataclass
class MeldOptions:
    classes: list[str] | None = None  # default: all 7 emotions; "four": neutral,happy,sad,angry
    audio_dir: str | None = None  # where extracted wavs go (default: cache/meld_audio/<root hash>)
    workers: int = 2  # parallel ffmpeg processes


def _find(root: Path, name: str, want_dir: bool) -> Path | None:
    """`root/name`, else the shallowest match below `root`."""
    direct = root / name
    if direct.is_dir() if want_dir else direct.is_file():
        return direct
    found = [p for p in root.rglob(name) if (p.is_dir() if want_dir else p.is_file())]
    return min(found, key=lambda p: (len(p.parts), str(p))) if found else None


def extract(clip: Path, wav: Path) -> bool:
    """Decode `clip`'s audio to 16 kHz mono `wav` (atomic; kept when present); False if ffmpeg fails."""
    if wav.is_file() and wav.stat().st_size > 44:
        return True
    wav.parent.mkdir(parents=True, exist_ok=True)
    tmp = wav.with_name(f".{wav.name}.{os.getpid()}.part")
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(clip)]
    cmd += ["-vn", "-ac", "1", "-ar", "16000", "-f", "wav", str(tmp)]
    done = subprocess.run(cmd, capture_output=True).returncode == 0
    if done and tmp.is_file() and tmp.stat().st_size > 44:  # 44 bytes: a header, no samples
        os.replace(tmp, wav)
        return True
    tmp.unlink(missing_ok=True)
    return False


def csv_utterances(labels: Path, split: str) -> list[tuple[str, Utterance]]:
    """(clip stem `dia{D}_utt{U}`, utterance without audio) for each row of one release CSV
    (`split` a key of SPLITS); an Emotion outside EMOTIONS is an error naming the line."""
    partition = SPLITS[split][0]
    header, rows = read_csv(labels)
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise CorpusError(f"{labels} lacks the column(s) {missing}; columns: {header}")
    out = []
    for line, row in rows:
        emotion = normalize_label(row["Emotion"])
        if emotion not in EMOTIONS:
            raise CorpusError(
                f"{labels} line {line}: Emotion '{row['Emotion']}' is not one of {list(EMOTIONS)}"
            )
        dia, utt = row["Dialogue_ID"].strip(), row["Utterance_ID"].strip()
        text = repair(row["Utterance"]).strip()
        utterance = Utterance(
            utterance_id=f"{split}_dia{dia}_utt{utt}",
            speaker=row["Speaker"].strip() or "unknown",
            session=f"{split}_dia{dia}",
            label=EMOTIONS[emotion],
            transcript=text,
            words=words_of(text),
            extra={
                "emotion": emotion,
                **{ours: row.get(theirs, "").strip() for theirs, ours in EXTRA.items()},
                "partition": partition,
            },
        )
        out.append((f"dia{dia}_utt{utt}", utterance))
    return out


def read_text(root: Path, splits: Sequence[str] = ("train", "dev")) -> list[Utterance]:
    """The utterances of the `splits` CSVs under `root`, text only (the clips are not needed:
    the text-only release, e.g. ../shared/corpora/meld_text, has none)."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"MELD root {root} is not a folder")
    found = {s: _find(root, SPLITS[s][1], want_dir=False) for s in splits}
    if not any(found.values()):
        names = ", ".join(SPLITS[s][1] for s in splits)
        raise CorpusError(f"no MELD CSV ({names}) under {root}")
    return [u for s, path in found.items() if path for _, u in csv_utterances(path, s)]


def read(root: Path, options: MeldOptions) -> PrepareResult:
    """Rows of the three CSVs whose clip exists and decodes, with the official partition."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"MELD root {root} is not a folder")
    if shutil.which("ffmpeg") is None:
        raise CorpusError(
            "the MELD reader needs ffmpeg on PATH to extract audio from the .mp4 clips"
        )
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:10]
    audio_dir = (
        Path(options.audio_dir) if options.audio_dir else cache_root() / "meld_audio" / digest
    )
    drops = Drops("no clip", "ffmpeg cannot decode", "unreadable audio")
    jobs: list[tuple[Path, Path, Utterance]] = []
    notes = []
    for split, (_, csv_name, folder_names) in SPLITS.items():
        labels = _find(root, csv_name, want_dir=False)
        if labels is None:
            notes.append(f"no {csv_name} under {root}: the {split} part is not read")
            continue
        folder = next((f for n in folder_names if (f := _find(root, n, want_dir=True))), None)
        if folder is None:
            raise CorpusError(f"{labels} found but no clip folder {folder_names[0]}/ under {root}")
        for stem, utterance in csv_utterances(labels, split):
            clip = folder / f"{stem}.mp4"
            if not clip.is_file():
                drops.add("no clip", clip)
                continue
            jobs.append((clip, audio_dir / split / f"{stem}.wav", utterance))
        notes.append(f"{split}: {labels} and {folder}")
    if not jobs and not any(drops.counts.values()):
        raise CorpusError(f"no MELD CSVs (train_sent_emo.csv, ...) with clips under {root}")
    with ThreadPoolExecutor(max(1, options.workers)) as pool:
        decoded = list(pool.map(lambda job: extract(job[0], job[1]), jobs))
    utterances = []
    for (clip, wav, utterance), ok in zip(jobs, decoded, strict=True):
        if not ok:
            drops.add("ffmpeg cannot decode", clip)
            continue
        duration = drops.duration(wav)
        if duration is None:
            continue
        utterance.audio_path, utterance.duration_s = str(wav.resolve()), duration
        utterances.append(utterance)
    utterances, classes = select_classes(utterances, options.classes, LABELS, drops.counts)
    notes.append(f"audio extracted to {audio_dir} (reused on a rerun)")
    return PrepareResult(utterances, classes, drops.counts, drops.files, notes)


Options = MeldOptions
