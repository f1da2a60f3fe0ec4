"""EmoDB (Berlin) reader: `wav/03a01Fa.wav` = speaker 03, text a01, emotion F, version a.

Ten actors (03, 10, 11, 12, 15 male; 08, 09, 13, 14, 16 female) speak ten German texts.
Emotion letters (German initials): W angry (Wut), L boredom (Langeweile), E disgust
(Ekel), A fear (Angst), F happy (Freude), T sad (Trauer), N neutral (4-class set: N, F,
T, W). The transcript is the German text of the code (words keep their umlauts). No
official partition: use a speaker protocol.
"""

from __future__ import annotations

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

TEXTS = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
EMOTIONS = {
    "W": "angry",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happy",
    "T": "sad",
    "N": "neutral",
}
GENDER = {
    **{s: "male" for s in ("03", "10", "11", "12", "15")},
    **{s: "female" for s in ("08", "09", "13", "14", "16")},
}
LABELS = ("neutral", "happy", "sad", "angry", "fear", "disgust", "boredom")
_NAME = re.compile(r"^(\d\d)([ab]\d\d)([WLEAFTN])([a-z])$")


@dataclass
class EmodbOptions:
    classes: list[str] | None = None  # default: all 7 emotions; "four": neutral,happy,sad,angry


def read(root: Path, options: EmodbOptions) -> PrepareResult:
    """Every clip of `root/wav/` (or of `root` itself), labelled by its emotion letter."""
    wav_dir, layout = find_root(
        root,
        lambda d: any(_NAME.match(p.stem) for p in audio_files(d)),
        ["wav"],
        "EmoDB",
        "wav/03a01Fa.wav files",
    )
    drops = Drops("not an EmoDB file name", "unreadable audio")
    utterances = []
    for path in audio_files(wav_dir):
        m = _NAME.match(path.stem)
        if not m or m.group(1) not in GENDER or m.group(2) not in TEXTS:
            drops.add("not an EmoDB file name", path)
            continue
        speaker, text_code, emotion, version = m.groups()
        duration = drops.duration(path)
        if duration is None:
            continue
        text = TEXTS[text_code]
        utterances.append(
            clip_utterance(
                path,
                path.stem,
                speaker,
                EMOTIONS[emotion],
                duration,
                text,
                extra={
                    "emotion": emotion,
                    "text_code": text_code,
                    "version": version,
                    "gender": GENDER[speaker],
                },
                english=False,
            )
        )
    utterances, classes = select_classes(utterances, options.classes, LABELS, drops.counts)
    notes = [layout, "transcripts are German: pick a German or multilingual --encoder"]
    return PrepareResult(utterances, classes, drops.counts, drops.files, notes)


Options = EmodbOptions
