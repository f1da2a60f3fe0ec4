"""Pair RAVDESS clips with MELD texts of the same class into one audio+text manifest.

`python -m experiments.pair_corpus --audio-root ../shared/corpora/ravdess --text-root
../shared/corpora/meld_text --classes four --seed 0 --out cache/paired/ravdess_meld4.csv`

RAVDESS speaks two fixed sentences, so alone it has no lexical signal; here each clip keeps
its audio, actor and gender and gets the transcript of a distinct MELD utterance (train and
dev CSVs) of its class (rules in `datamodules/corpora/pairing.py`). Writes the manifest CSV
(`prepare manifest` reads it) and a JSON sidecar of its provenance beside it. With
`--rest-out` also the usable texts of those classes that no clip got, as a text-only manifest:
a corpus to pretrain the lexical branch on (`--model.init_lexical`) without reading any line
of the paired corpus.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datamodules.corpora import meld, ravdess
from datamodules.corpora.common import FOUR, FOUR_CLASSES
from datamodules.corpora.pairing import (
    check_partners,
    manifest_csv,
    pair,
    rest_csv,
    usable_texts,
)
from datamodules.paths import atomic_write_text
from datamodules.utterances import CorpusError

DEFAULT_MIN_WORDS = 3


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.pair_corpus", description=__doc__)
    p.add_argument("--audio-root", type=Path, required=True, help="RAVDESS folder (Actor_XX/)")
    p.add_argument(
        "--text-root", type=Path, required=True, help="folder with MELD's *_sent_emo.csv"
    )
    p.add_argument(
        "--classes",
        required=True,
        help="comma-separated classes in the shared names, in this order (four = "
        "neutral,happy,sad,angry); a class missing from either corpus is an error",
    )
    p.add_argument("--seed", type=int, default=0, help="pairing seed (default %(default)s)")
    p.add_argument(
        "--min-words",
        type=int,
        default=DEFAULT_MIN_WORDS,
        help="leave out MELD texts with fewer words (default %(default)s)",
    )
    p.add_argument("--out", type=Path, required=True, help="manifest CSV to write")
    p.add_argument(
        "--rest-out",
        type=Path,
        help="also write the usable texts no clip got, as a text-only manifest CSV (a corpus "
        "for pretraining the lexical branch; none of its lines is in --out)",
    )
    return p.parse_args(argv)


def parse_classes(text: str) -> list[str]:
    classes = [c.strip() for c in text.split(",") if c.strip()]
    return list(FOUR_CLASSES) if classes == [FOUR] else classes


def build(args: argparse.Namespace) -> tuple[str, dict[str, Any], str]:
    """The manifest CSV text, its provenance record and the rest manifest's text."""
    classes = parse_classes(args.classes)
    if not classes:
        raise CorpusError("--classes names no class")
    if args.min_words < 0 or args.seed < 0:
        raise CorpusError(f"--min-words and --seed must be >= 0, got {args.min_words}, {args.seed}")
    check_partners(classes, ravdess.LABELS, meld.LABELS)  # before reading 1000+ clips
    audio = ravdess.read(args.audio_root, ravdess.RavdessOptions(classes=classes))
    texts = usable_texts(meld.read_text(args.text_root), classes, args.min_words)
    pairs = pair(audio.utterances, texts, args.seed)
    clips = Counter(clip.label for clip, _ in pairs)
    rest, rest_counts = rest_csv(texts, pairs)
    record = {
        "audio": {
            "corpus": "ravdess",
            "root": str(Path(args.audio_root).resolve()),
            "dropped": {r: n for r, n in audio.drops.items() if n},
        },
        "text": {
            "corpus": "meld",
            "root": str(Path(args.text_root).resolve()),
            "rows": sum(texts.rows.values()),
            "dropped": texts.dropped,
        },
        "seed": args.seed,
        "min_words": args.min_words,
        "classes": classes,
        "per_class": {
            c: {
                "clips": clips[c],
                "text_rows": texts.rows[c],
                "usable_texts": len(texts.by_class[c]),
                "rest_texts": rest_counts[c],
            }
            for c in classes
        },
        "n": len(pairs),
        "speakers": len({clip.speaker for clip, _ in pairs}),
        "manifest": Path(args.out).name,
        "rest_manifest": Path(args.rest_out).name if args.rest_out else None,
    }
    return manifest_csv(pairs), record, rest


def summary(out: Path, record: dict[str, Any], rest_out: Path | None = None) -> str:
    rows = [("class", "clips", "MELD rows", "usable texts")]
    rows += [
        (c, str(v["clips"]), str(v["text_rows"]), str(v["usable_texts"]))
        for c, v in record["per_class"].items()
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{record['n']} pairs, {record['speakers']} speakers -> {out}"]
    lines += [f"{r[0]:<{width}}  {r[1]:>6}  {r[2]:>10}  {r[3]:>13}" for r in rows]
    dropped = ", ".join(f"{n} {reason}" for reason, n in record["text"]["dropped"].items())
    lines.append(f"MELD rows left out: {dropped} (min_words={record['min_words']})")
    if record["audio"]["dropped"]:
        audio = ", ".join(f"{n} {reason}" for reason, n in record["audio"]["dropped"].items())
        lines.append(f"RAVDESS clips left out: {audio}")
    lines.append(
        f"prepare: python -m experiments.prepare manifest --root {out} --name {out.stem} "
        f"--classes {','.join(record['classes'])}"
    )
    if rest_out is not None:
        n = sum(v["rest_texts"] for v in record["per_class"].values())
        lines.append(
            f"{n} unpaired texts (text-only) -> {rest_out}; prepare: python -m "
            f"experiments.prepare manifest --root {rest_out} --name {rest_out.stem} "
            f"--classes {','.join(record['classes'])}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        out = Path(args.out).resolve()
        if out.suffix.lower() == ".json":
            raise CorpusError(f"--out {args.out}: the manifest is a CSV (its sidecar is .json)")
        rest_out = Path(args.rest_out).resolve() if args.rest_out else None
        if rest_out is not None and rest_out in (out, out.with_suffix(".json")):
            raise CorpusError(f"--rest-out {args.rest_out} would overwrite --out or its record")
        text, record, rest = build(args)
        atomic_write_text(out, text)
        if rest_out is not None:
            atomic_write_text(rest_out, rest)
        atomic_write_text(out.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc}", file=sys.stderr)
        return 2
    print(summary(out, record, rest_out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
