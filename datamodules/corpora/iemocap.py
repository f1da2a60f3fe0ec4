"""IEMOCAP reader: the raw `IEMOCAP_full_release/` folder, as ../shared/docs/iemocap_format.md describes.

Protocol steps are switches of `IemocapOptions` (defaults = the seed's 4-class protocol),
applied in this order, each counted as a drop reason:
1. no alignment (wav but no .wdseg), 2. `xxx`, 3. exc -> hap, 4. classes,
5. breathing/garbage-only, then unreadable audio. Word-level steps: remove `++GARBAGE++`,
expand contractions, keep `<sil>`, `++BREATHING++`, `++LAUGHTER++`.
Events `++X++` other than BREATHING and LAUGHTER (NOISE, ...) are treated as garbage:
removed with it, and an utterance made only of them counts as non-speech.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from datamodules.audio import AudioError, audio_info
from datamodules.corpora import PrepareResult, keep_classes
from datamodules.corpora.text import expand_contractions, words_without_spans
from datamodules.utterances import CorpusError, Utterance, Word

LABELS = ("neu", "hap", "exc", "sad", "ang", "fru", "sur", "fea", "dis", "oth", "xxx")
FRAME_S = 0.01  # .wdseg frames are 10 ms

_HEADER = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)\s+\[([^\]]*)\]")
_TRANSCRIPT = re.compile(r"^(Ses\d\d[FM]_\S+_[FM]\d+)\s+\[[\d.]+-[\d.]+\]:\s?(.*)$")
_VARIANT = re.compile(r"\(\d+\)$")


@dataclass
class IemocapOptions:
    """Protocol switches; the defaults are the seed's 4-class protocol."""

    classes: list[str] | None = field(default_factory=lambda: ["ang", "hap", "neu", "sad"])
    drop_no_alignment: bool = True
    drop_xxx: bool = True
    merge_exc: bool = True  # exc -> hap
    drop_nonspeech_only: bool = True  # only ++BREATHING++/++GARBAGE++ (laughter-only is kept)
    remove_garbage: bool = True
    expand_contractions: bool = True
    keep_special_tokens: bool = True  # <sil>, ++BREATHING++, ++LAUGHTER++ as words


@dataclass
class _Raw:
    name: str
    dialog: str
    session: str
    label: str
    start: float
    end: float
    vad: tuple[float, float, float]
    wav: Path
    wdseg: Path


def speaker_of(utterance: str) -> str:
    """`Ses01F_impro01_M003` -> `Ses01M`: session plus the first letter of the LAST name part."""
    return utterance[:5] + utterance.rsplit("_", 1)[-1][0]


def _visible(paths: list[Path]) -> list[Path]:
    return sorted(p for p in paths if not p.name.startswith("._") and p.is_file())


def parse_evaluation(path: Path) -> list[tuple[str, str, float, float, tuple[float, float, float]]]:
    """(utterance, label, start, end, (v, a, d)) for each header line of an EmoEvaluation file."""
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _HEADER.match(line.strip())
        if not m:
            continue
        start, end, name, label, vad = m.groups()
        try:
            v, a, d = (float(x) for x in vad.split(","))
        except ValueError:
            v = a = d = float("nan")
        rows.append((name, label, float(start), float(end), (v, a, d)))
    return rows


def parse_transcriptions(path: Path) -> dict[str, str]:
    """Utterance name -> text; lines of no utterance (`..._FXX0`, other forms) are skipped."""
    out: dict[str, str] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _TRANSCRIPT.match(line.strip())
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def parse_wdseg(path: Path) -> list[Word]:
    """Words of a .wdseg file with spans in seconds; `<s>`, `</s>` dropped, `WORD(2)` -> `word`."""
    words = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) != 4 or not parts[0].isdigit() or not parts[1].isdigit():
            continue  # the header and the "Total score" line
        token = _VARIANT.sub("", parts[3])
        if token in ("<s>", "</s>"):
            continue
        if not (token == "<sil>" or (token.startswith("++") and token.endswith("++"))):
            token = token.lower()
        # [SFrm, EFrm] inclusive -> [SFrm, EFrm + 1) frames of 10 ms
        start = round(int(parts[0]) * FRAME_S, 2)
        end = round((int(parts[1]) + 1) * FRAME_S, 2)
        words.append(Word(token, start, end))
    return words


def _is_event(token: str) -> bool:
    return token.startswith("++") and token.endswith("++")


def _is_garbage(token: str) -> bool:
    return _is_event(token) and token not in ("++BREATHING++", "++LAUGHTER++")


def _is_nonspeech_only(words: list[Word]) -> bool:
    """Only breathing/garbage events (and <sil>): nothing spoken and no laughter."""
    return all(w.text == "<sil>" or w.text == "++BREATHING++" or _is_garbage(w.text) for w in words)


def _scan(root: Path) -> list[_Raw]:
    sessions = sorted(p for p in root.glob("Session*") if p.is_dir())
    if not sessions:
        raise CorpusError(f"no Session*/ folders under {root}: is it IEMOCAP_full_release/?")
    raws = []
    for session_dir in sessions:
        evaluations = _visible(list((session_dir / "dialog" / "EmoEvaluation").glob("*.txt")))
        if not evaluations:
            raise CorpusError(f"no dialog/EmoEvaluation/*.txt files in {session_dir}")
        for ev in evaluations:
            dialog = ev.stem
            for name, label, start, end, vad in parse_evaluation(ev):
                raws.append(
                    _Raw(
                        name=name,
                        dialog=dialog,
                        session=name[:5],
                        label=label,
                        start=start,
                        end=end,
                        vad=vad,
                        wav=session_dir / "sentences" / "wav" / dialog / f"{name}.wav",
                        wdseg=session_dir
                        / "sentences"
                        / "ForcedAlignment"
                        / dialog
                        / f"{name}.wdseg",
                    )
                )
    return raws


def read(root: Path, options: IemocapOptions) -> PrepareResult:
    """Read the release under `root` and apply the protocol in `options`."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"IEMOCAP root {root} is not a folder")
    raws = _scan(root)
    drops: dict[str, int] = {}
    dropped_files: dict[str, list[str]] = {}
    known = [lab for lab in LABELS if not (options.merge_exc and lab == "exc")]

    def drop(reason: str, keep: list[_Raw], before: list[_Raw]) -> list[_Raw]:
        drops[reason] = len(before) - len(keep)
        return keep

    if options.drop_no_alignment:
        raws = drop("no word alignment", [r for r in raws if r.wdseg.is_file()], raws)
    if options.drop_xxx:
        raws = drop("xxx (no majority)", [r for r in raws if r.label != "xxx"], raws)
        known.remove("xxx")
    if options.merge_exc:
        for r in raws:
            if r.label == "exc":
                r.label = "hap"

    transcripts: dict[str, dict[str, str]] = {}
    utterances = []
    for r in raws:
        words = parse_wdseg(r.wdseg) if r.wdseg.is_file() else []
        key = str(r.wav.parents[3] / "dialog" / "transcriptions" / f"{r.dialog}.txt")
        if key not in transcripts:
            transcripts[key] = parse_transcriptions(Path(key))
        text = transcripts[key].get(r.name, "")
        if not words and not r.wdseg.is_file():
            words = words_without_spans(text, expand=False)  # kept without alignment: no spans
        utterances.append(
            Utterance(
                utterance_id=r.name,
                speaker=speaker_of(r.name),
                session=r.session,
                label=r.label,
                audio_path=str(r.wav.resolve()),
                transcript=text,
                words=words,
                extra={
                    "dialog": r.dialog,
                    "dialog_start_s": r.start,
                    "dialog_end_s": r.end,
                    "valence": r.vad[0],
                    "activation": r.vad[1],
                    "dominance": r.vad[2],
                },
            )
        )

    utterances, classes = keep_classes(utterances, options.classes, known, drops)
    if options.drop_nonspeech_only:
        aligned = {r.name for r in raws if r.wdseg.is_file()}
        kept = [
            u
            for u in utterances
            if u.utterance_id not in aligned or not _is_nonspeech_only(u.words)
        ]
        drops["breathing/garbage only"] = len(utterances) - len(kept)
        utterances = kept

    for u in utterances:
        words = u.words
        if options.remove_garbage:
            words = [w for w in words if not _is_garbage(w.text)]
        if options.expand_contractions:
            words = expand_contractions(words)
        if not options.keep_special_tokens:
            words = [w for w in words if w.text != "<sil>" and not _is_event(w.text)]
        u.words = words

    kept = []
    for u in utterances:
        try:
            u.duration_s = audio_info(u.audio_path).duration_s
        except AudioError:
            dropped_files.setdefault("unreadable audio", []).append(u.audio_path)
            continue
        kept.append(u)
    drops["unreadable audio"] = len(utterances) - len(kept)
    return PrepareResult(kept, classes, drops, dropped_files)


Options = IemocapOptions
