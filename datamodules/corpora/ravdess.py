"""RAVDESS reader: `Actor_XX/MM-VV-EE-II-SS-RR-AA.{wav,flac}`, every filename field decoded.

Speaker and session are the actor (`Actor_01`). The transcript is the spoken statement;
its words have unknown (null) spans unless `align="asr"` times them with the bundled ASR
(the feature step spreads words without spans over the utterance).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from datamodules.audio import AudioError, audio_info
from datamodules.corpora import PrepareResult, keep_classes
from datamodules.corpora.text import words_without_spans
from datamodules.utterances import CorpusError, Utterance

MODALITY = {"01": "full-AV", "02": "video-only", "03": "audio-only"}
VOCAL_CHANNEL = {"01": "speech", "02": "song"}
EMOTION = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
INTENSITY = {"01": "normal", "02": "strong"}
STATEMENT = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
LABELS = tuple(EMOTION.values())

_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


@dataclass
class RavdessOptions:
    classes: list[str] | None = None  # default: all 8 emotions
    speech_only: bool = True  # drop sung clips (vocal channel 02)
    align: str = "none"  # "none": statement words without spans; "asr": spans from the bundled ASR


def decode_name(stem: str) -> dict[str, str | int]:
    """Filename fields of `03-01-05-02-01-01-12` as readable values."""
    m = _NAME.match(stem)
    if not m:
        raise ValueError(f"not a RAVDESS file name: {stem}")
    mod, voc, emo, inten, stat, rep, actor = m.groups()
    try:
        return {
            "modality": MODALITY[mod],
            "vocal_channel": VOCAL_CHANNEL[voc],
            "emotion": EMOTION[emo],
            "intensity": INTENSITY[inten],
            "statement": STATEMENT[stat],
            "repetition": int(rep),
            "actor": int(actor),
            "gender": "male" if int(actor) % 2 else "female",
        }
    except KeyError as exc:
        raise ValueError(f"not a RAVDESS file name: {stem} (unknown code {exc})") from exc


def read(root: Path, options: RavdessOptions) -> PrepareResult:
    """Every clip under `root/Actor_XX/`, labelled by its emotion code."""
    root = Path(root)
    actors = sorted(p for p in root.glob("Actor_*") if p.is_dir()) if root.is_dir() else []
    if not actors:
        raise CorpusError(f"no Actor_XX/ folders under {root}: is it the RAVDESS root?")
    if options.align not in ("none", "asr"):
        raise CorpusError(f"align must be 'none' or 'asr', not '{options.align}'")
    drops: dict[str, int] = {"not a RAVDESS file name": 0, "song": 0, "unreadable audio": 0}
    files: dict[str, list[str]] = {}
    utterances = []
    for actor_dir in actors:
        for path in sorted(actor_dir.iterdir()):
            if path.name.startswith("._") or path.suffix.lower() not in (".wav", ".flac"):
                continue
            try:
                fields = decode_name(path.stem)
            except ValueError:
                drops["not a RAVDESS file name"] += 1
                files.setdefault("not a RAVDESS file name", []).append(str(path))
                continue
            if options.speech_only and fields["vocal_channel"] == "song":
                drops["song"] += 1
                continue
            try:
                duration = audio_info(path).duration_s
            except AudioError:
                drops["unreadable audio"] += 1
                files.setdefault("unreadable audio", []).append(str(path))
                continue
            speaker = f"Actor_{int(fields['actor']):02d}"
            text = str(fields["statement"])
            utterances.append(
                Utterance(
                    utterance_id=path.stem,
                    speaker=speaker,
                    session=speaker,
                    label=str(fields["emotion"]),
                    audio_path=str(path.resolve()),
                    duration_s=duration,
                    transcript=text,
                    words=words_without_spans(text),
                    extra=fields,
                )
            )
    if not utterances and not any(drops.values()):
        raise CorpusError(f"no .wav or .flac clips under {root}/Actor_*/")
    utterances, classes = keep_classes(utterances, options.classes, LABELS, drops)
    notes = []
    if options.align == "asr":
        from datamodules.asr import align_utterances

        notes.append(align_utterances(utterances))
    else:
        notes.append("word spans: unknown (statement words, null spans); --align asr times them")
    return PrepareResult(utterances, classes, drops, files, notes)


Options = RavdessOptions
