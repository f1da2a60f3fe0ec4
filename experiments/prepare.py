"""Read a corpus into the utterance table: `python -m experiments.prepare READER --root PATH`.

Writes `cache/<name>/utterances.csv` and `prepare.json`, then prints the count per
emotion, the count per speaker and the drops per reason. `--transcripts asr|both [--asr
whisper|pocketsphinx]` adds recognised transcripts (cached per utterance under
`cache/<name>/asr/<backend>/`), a per-utterance `wer` column and the corpus WER.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from datamodules.asr import BACKENDS, AsrError
from datamodules.audio import AudioError
from datamodules.corpora import (
    MIN_CLASS_COUNT,
    READERS,
    PrepareResult,
    count_by,
    label_warnings,
    options_from_dict,
    reader,
    screen_audio,
)
from datamodules.paths import check_corpus_name
from datamodules.utterances import CorpusError, cache_root, write_table

READER_NAMES = tuple(READERS)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.prepare", description=__doc__)
    p.add_argument("reader", choices=READER_NAMES)
    p.add_argument("--root", type=Path, help="corpus folder (manifest: the CSV; builtin: optional)")
    p.add_argument("--name", help="name of the prepared corpus (default: the reader's name)")
    p.add_argument(
        "--classes",
        help="comma-separated labels to keep, in this order (new readers: four = neutral,happy,sad,angry)",
    )
    p.add_argument("--config", type=Path, help="YAML file of reader options (unknown keys fail)")
    p.add_argument("--align", choices=("none", "asr"), help="ravdess/manifest: word spans from ASR")
    p.add_argument(
        "--columns",
        help="manifest: column mapping, e.g. transcript=Utterance,label=Emotion,speaker=Speaker",
    )
    p.add_argument(
        "--transcripts",
        choices=("gold", "asr", "both"),
        default="gold",
        help="asr: recognised text replaces the transcript (gold kept in gold_transcript/"
        "gold_words); both: gold stays, ASR added as asr_transcript/asr_words; needs audio",
    )
    p.add_argument("--asr", choices=BACKENDS, default="whisper", help="ASR backend (--transcripts)")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out undecodable, truncated, too short (< 0.1 s) and silent audio files "
        "(counted per reason) instead of failing on them",
    )
    p.add_argument(
        "--min-class-count",
        type=int,
        default=MIN_CLASS_COUNT,
        help="warn about classes with fewer utterances than this (default %(default)s)",
    )
    p.add_argument(
        "--workers",
        type=int,
        help="processes that decode the audio and run the ASR (default: cores)",
    )
    p.add_argument("--seed", type=int, help="builtin: generation seed")
    p.add_argument("--per-class", type=int, help="builtin: utterances per speaker and class")
    return p.parse_args(argv)


def load_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    if not path.is_file():
        raise CorpusError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise CorpusError(f"cannot parse config {path}: {exc}") from exc
    if not isinstance(values, dict):
        raise CorpusError(f"config {path} must be a mapping of option: value")
    return values


def build_options(args: argparse.Namespace, options_cls: type) -> Any:
    """Config file values, overridden by the command-line flags that were given."""
    values = load_config(args.config)
    source = str(args.config) if args.config else "command line"
    if args.classes is not None:
        values["classes"] = [c.strip() for c in args.classes.split(",") if c.strip()]
    flags = {
        "align": args.align,
        "seed": args.seed,
        "per_class": args.per_class,
        "columns": _parse_columns(args.columns) if args.columns else None,
    }
    fields = {f.name for f in dataclasses.fields(options_cls)}
    if "defer_bad_audio" in fields:  # screen_audio names every bad file, not the reader the first
        values["defer_bad_audio"] = True
    for key, value in flags.items():
        if value is None:
            continue
        if key not in fields:
            raise CorpusError(f"--{key.replace('_', '-')} does not apply to reader {args.reader}")
        values[key] = value
    return options_from_dict(options_cls, values, source)


def _parse_columns(text: str) -> dict[str, str]:
    mapping = {}
    for item in text.split(","):
        if "=" not in item:
            raise CorpusError(f"--columns item '{item}' is not of the form column=SourceName")
        key, value = item.split("=", 1)
        mapping[key.strip()] = value.strip()
    return mapping


def table(title: str, rows: Sequence[tuple[str, int]]) -> str:
    """A small aligned two-column table."""
    width = max([len(title)] + [len(str(k)) for k, _ in rows])
    lines = [f"{title:<{width}}  {'n':>6}", "-" * (width + 8)]
    lines += [f"{k!s:<{width}}  {v:>6d}" for k, v in rows]
    return "\n".join(lines)


MAX_SPEAKER_ROWS = 40


def _speaker_table(per_speaker: Counter[str]) -> str:
    if len(per_speaker) <= MAX_SPEAKER_ROWS:
        return table("speaker", sorted(per_speaker.items()))
    rows = per_speaker.most_common(MAX_SPEAKER_ROWS)
    rest = len(per_speaker) - MAX_SPEAKER_ROWS
    return table("speaker (most frequent)", rows) + f"\n... and {rest} more speakers"


def summary(name: str, result: PrepareResult, path: Path) -> str:
    per_class = count_by(result.utterances, "label")
    per_speaker = count_by(result.utterances, "speaker")
    parts = [
        f"{name}: {len(result.utterances)} utterances, {len(per_speaker)} speakers -> {path}",
        table("emotion", [(c, per_class.get(c, 0)) for c in result.classes]),
        _speaker_table(per_speaker),
        table("dropped because", list(result.drops.items())) if result.drops else "dropped: none",
    ]
    for reason, files in result.dropped_files.items():
        shown = "\n  ".join(files[:20])
        more = f"\n  ... and {len(files) - 20} more (see prepare.json)" if len(files) > 20 else ""
        parts.append(f"{reason}:\n  {shown}{more}")
    parts += result.notes
    return "\n\n".join(parts)


def prepare(args: argparse.Namespace) -> tuple[PrepareResult, Path]:
    # checked before the (long) read, not after it
    name = check_corpus_name(args.reader if args.name is None else args.name)
    module = reader(args.reader)
    options = build_options(args, module.Options)
    root = args.root
    if root is None:
        if args.reader != "builtin":
            raise CorpusError(f"--root is required for reader {args.reader}")
        root = cache_root() / "builtin" / "audio"
    result = module.read(root, options)
    result = screen_audio(result, args.skip_bad, args.workers)  # every file decoded once
    if not result.utterances:
        raise CorpusError(f"no utterances left from {root} after the protocol: {result.drops}")
    name = args.name or args.reader
    transcripts: dict[str, Any] = {"transcripts": "gold"}
    if args.transcripts != "gold":
        from datamodules.transcripts import add_transcripts

        silent = [u.utterance_id for u in result.utterances if not u.audio_path]
        if silent:
            raise CorpusError(
                f"--transcripts {args.transcripts}: {root} has no audio for {len(silent)} of "
                f"{len(result.utterances)} utterances (e.g. '{silent[0]}'); recognised "
                "transcripts need an audio_path for every utterance"
            )
        transcripts, line = add_transcripts(
            name, result.utterances, args.transcripts, args.asr, args.workers
        )
        result.notes.append(line)
    result.notes += label_warnings(count_by(result.utterances, "label"), args.min_class_count)
    meta = {
        "reader": args.reader,
        "root": str(Path(root).resolve()),
        "classes": result.classes,
        "options": dataclasses.asdict(options),
        "drops": result.drops,
        "dropped_files": result.dropped_files,
        "notes": result.notes,
        **transcripts,
        "skip_bad": args.skip_bad,
    }
    return result, write_table(name, result.utterances, meta)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result, path = prepare(args)
    except (CorpusError, AudioError, AsrError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the cache not writable, a path through a file, a full disk
        print(f"error: cannot write the prepared corpus: {exc}", file=sys.stderr)
        return 2
    print(summary(args.name or args.reader, result, path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
