"""CSV manifest reader: any corpus as one CSV (`--root` is the CSV file).

Columns (names changed with `columns={"label": "Emotion", ...}`):
`audio_path`, `label` required; `speaker`, `session`, `transcript`, `start_s`/`end_s`
(a segment of a longer file), `utterance_id`, `gender` (male/female, m/f or empty; kept as
the table's `gender` column, which speaker_kfold balances folds by) optional. Paths are
relative to the CSV; other columns are ignored.
A CSV with a `transcript` and no `audio_path` column is a text-only corpus: `audio_path`
is "" and `duration_s` NaN. Word spans come from the bundled ASR with `align="asr"`;
otherwise the words are the transcript's tokens with null spans.
The file is read as UTF-8 (else cp1252); quoted multi-line fields are fine.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from datamodules.audio import AudioError, audio_info
from datamodules.corpora import PrepareResult, keep_classes, normalize_label
from datamodules.corpora.text import repair, words_without_spans
from datamodules.utterances import CorpusError, Utterance

FIELDS = (
    "utterance_id",
    "audio_path",
    "label",
    "speaker",
    "session",
    "transcript",
    "start_s",
    "end_s",
    "gender",
)
UNKNOWN_SPEAKER = "unknown"
GENDERS = {"male": "male", "m": "male", "female": "female", "f": "female", "": ""}


@dataclass
class ManifestOptions:
    classes: list[str] | None = None  # default: every label in the CSV, sorted
    columns: dict[str, str] | None = None  # our column name -> the CSV's, e.g. {"label": "Emotion"}
    align: str = "none"  # "asr": word spans from the bundled ASR matched to the transcript
    expand_contractions: bool = True
    # True (as prepare sets it): an unreadable audio file is left to prepare's audio screen,
    # which names every bad file at once (or drops them with --skip-bad)
    defer_bad_audio: bool = False


def read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and (line number, row) pairs; UTF-8 (with or without BOM), else cp1252."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorpusError(f"cannot read manifest {path}: {exc}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise CorpusError(f"manifest {path} is empty") from None
    except csv.Error as exc:
        raise CorpusError(f"manifest {path} is not a CSV: {exc}") from exc
    rows = []
    try:
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                raise CorpusError(
                    f"manifest {path} line {reader.line_num}: {len(values)} fields, "
                    f"the header has {len(header)}"
                )
            rows.append((reader.line_num, dict(zip(header, values, strict=True))))
    except csv.Error as exc:
        raise CorpusError(f"manifest {path} line {reader.line_num}: {exc}") from exc
    return header, rows


def _resolve_columns(
    path: Path, header: list[str], mapping: dict[str, str] | None
) -> dict[str, str]:
    """Our field -> CSV column, for the fields the CSV has."""
    mapping = dict(mapping or {})
    unknown = sorted(set(mapping) - set(FIELDS))
    if unknown:
        raise CorpusError(f"unknown manifest field(s) {unknown} in columns; fields: {list(FIELDS)}")
    for ours, theirs in mapping.items():
        if theirs not in header:
            raise CorpusError(
                f"manifest {path} has no column '{theirs}' (mapped to {ours}); columns: {header}"
            )
    cols = {f: f for f in FIELDS if f in header and f not in mapping}
    cols.update(mapping)
    if "label" not in cols:
        raise CorpusError(f"manifest {path} lacks the required column 'label'; columns: {header}")
    if "audio_path" not in cols and "transcript" not in cols:
        raise CorpusError(
            f"manifest {path} lacks the required column 'audio_path' (or a 'transcript' "
            f"column for a text-only corpus); columns: {header}"
        )
    if ("start_s" in cols) != ("end_s" in cols):
        raise CorpusError(f"manifest {path} has only one of start_s/end_s; give both or neither")
    return cols


def _seconds(value: str, path: Path, line: int, name: str) -> float | None:
    if value.strip() == "":
        return None
    try:
        x = float(value)
    except ValueError:
        raise CorpusError(
            f"manifest {path} line {line}: {name} '{value}' is not a number"
        ) from None
    if not math.isfinite(x) or x < 0:
        raise CorpusError(f"manifest {path} line {line}: {name} {value} is not a time in seconds")
    return x


def read(root: Path, options: ManifestOptions) -> PrepareResult:
    """Read the CSV at `root` into utterances; audio problems are errors naming file and line."""
    path = Path(root)
    if not path.is_file():
        raise CorpusError(f"manifest {path} is not a file (for `manifest`, --root is the CSV)")
    if options.align not in ("none", "asr"):
        raise CorpusError(f"align must be 'none' or 'asr', not '{options.align}'")
    header, rows = read_csv(path)
    cols = _resolve_columns(path, header, options.columns)
    text_only = "audio_path" not in cols
    if text_only and options.align == "asr":
        raise CorpusError(f"manifest {path} has no audio: --align asr needs an audio_path column")

    drops = {"no label": 0}
    utterances: list[Utterance] = []
    seen: dict[str, int] = {}
    for i, (line, row) in enumerate(rows):

        def get(f: str, row: dict[str, str] = row) -> str:
            return row[cols[f]].strip() if f in cols else ""

        label = normalize_label(get("label"))  # `ANGRY ` and `angry` are one class
        if not label:
            drops["no label"] += 1
            continue
        uid = get("utterance_id") or f"{path.stem}_{i:05d}"
        if uid in seen:
            raise CorpusError(
                f"manifest {path} line {line}: utterance_id '{uid}' repeats line {seen[uid]}"
            )
        seen[uid] = line
        speaker = get("speaker") or UNKNOWN_SPEAKER
        extra: dict[str, str] = {}
        if "gender" in cols:
            gender = normalize_label(get("gender"))
            if gender not in GENDERS:
                raise CorpusError(
                    f"manifest {path} line {line}: gender '{get('gender')}' is not male, "
                    "female, m, f or empty"
                )
            extra["gender"] = GENDERS[gender]
        transcript = repair(get("transcript"))
        audio, duration = "", float("nan")
        start = _seconds(get("start_s"), path, line, "start_s")
        end = _seconds(get("end_s"), path, line, "end_s")
        if not text_only:
            if not get("audio_path"):
                raise CorpusError(f"manifest {path} line {line}: empty audio_path")
            audio_file = (path.parent / get("audio_path")).resolve()
            try:
                info = audio_info(audio_file)
            except AudioError as exc:
                if not options.defer_bad_audio:
                    raise AudioError(f"manifest {path} line {line}: {exc}") from None
                info = None  # prepare's screen (screen_audio) names it and counts the drop
            audio, duration = str(audio_file), info.duration_s if info else float("nan")
            if info is not None and (start is not None or end is not None):
                s, e = start or 0.0, end if end is not None else info.duration_s
                if not s < e <= info.duration_s + 0.01:
                    raise CorpusError(
                        f"manifest {path} line {line}: segment [{s}, {e}] s does not fit "
                        f"{audio_file} ({info.duration_s:.2f} s)"
                    )
                duration = e - s
        utterances.append(
            Utterance(
                utterance_id=uid,
                speaker=speaker,
                session=get("session") or speaker,
                label=label,
                audio_path=audio,
                duration_s=duration,
                transcript=transcript,
                words=words_without_spans(transcript, options.expand_contractions),
                start_s=start,
                end_s=end,
                extra=extra,
            )
        )
    known = sorted({u.label for u in utterances})
    wanted = [normalize_label(c) for c in options.classes] if options.classes else None
    utterances, classes = keep_classes(utterances, wanted, known, drops)
    notes = []
    if text_only:
        notes.append("text-only corpus: no audio (acoustic models refuse it); word spans: none")
    elif options.align == "asr":
        from datamodules.asr import align_utterances

        notes.append(align_utterances(utterances, options.expand_contractions))
    else:
        notes.append(
            "word spans: none in the manifest; words from the transcript with null spans "
            "(--align asr takes them from the bundled ASR)"
        )
    if "speaker" not in cols:
        notes.append(f"no speaker column: every utterance has speaker '{UNKNOWN_SPEAKER}'")
    return PrepareResult(utterances, classes, drops, {}, notes)


Options = ManifestOptions
