"""Predict the emotion of audio files with a checkpoint: one JSON object per file on stdout.

    python -m experiments.predict --checkpoint runs/x/checkpoints/best.ckpt a.wav b.flac

`--checkpoint` repeated gives an ensemble (e.g. the seeds of one variant), and a folder stands
for every `checkpoints/best.ckpt` under it: the class probabilities of the models are
averaged and `ensemble` lists the checkpoints that answered. Acoustic and lexical checkpoints
together with `--text-weight W` make a late fusion: (1 - W) · the audio models' mean + W · the
text models' (`text_weight` in the output; a clip without words gets the audio models alone);
`--fusion FILE` fuses the two means with a posterior GMU fitted on cross-fitted posteriors
instead (`experiments.stacked_fusion --save`; `fusion` in the output).

Bad inputs (missing, corrupt, not audio, too short) get one error line on stderr naming the
file; the other files are still predicted, and the exit status is 1 if any file failed. A file
without voice activity gets `{"file": ..., "label": null, "no_speech": true, "note": ...}`;
audio longer than 30 s is read and predicted in windows (memory stays that of one window).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from datamodules.asr import BACKENDS  # noqa: E402
from experiments.inference import (  # noqa: E402
    DEFAULT_RUNS_DIR,
    NoSpeechError,
    PredictError,
    Predictor,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m experiments.predict", description=__doc__.split("\n")[0]
    )
    p.add_argument("files", nargs="+", type=Path, help="audio files (wav, flac, mp3, ...)")
    p.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        action="append",
        help="a .ckpt written by experiments.train; repeat it for an ensemble (e.g. seeds) "
        "whose class probabilities are averaged; a folder stands for every "
        "checkpoints/best.ckpt under it",
    )
    p.add_argument(
        "--text-weight",
        type=float,
        help="late fusion of audio and text checkpoints: (1 - W) · the mean of those that hear "
        "the audio + W · the mean of the lexical ones (default: one plain mean; W = 1/3 measured "
        "in experiments/RESULTS.md, 'Late fusion')",
    )
    p.add_argument(
        "--fusion",
        type=Path,
        help="fuse the audio and text checkpoints' means with a posterior GMU instead "
        "(a file `experiments.stacked_fusion --save` wrote; experiments/RESULTS.md, "
        "'Stacked fusion')",
    )
    p.add_argument("--transcript", help="use this transcript instead of ASR (same for every file)")
    p.add_argument("--asr", default="whisper", choices=[*BACKENDS, "none"])
    p.add_argument(
        "--fallback",
        type=Path,
        help="acoustic checkpoint used when the ASR finds no words (default: an acoustic "
        "checkpoint beside --checkpoint, else runs/demo/acoustic)",
    )
    p.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR)
    p.add_argument("--indent", type=int, default=None, help="pretty-print the JSON")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def checkpoints(paths: list[Path]) -> list[Path]:
    """The checkpoint files: a folder (e.g. a sweep of seeds) gives every
    `checkpoints/best.ckpt` under it, in path order; PredictError for a folder without one."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.rglob("checkpoints/best.ckpt"))
            if not found:
                raise PredictError(f"{path} is a folder with no checkpoints/best.ckpt under it")
            out += found
        else:
            out.append(path)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        first, *others = checkpoints(args.checkpoint)
        predictor = Predictor(
            first, args.fallback, args.asr, args.runs_dir, ensemble=others,
            text_weight=args.text_weight, fusion=args.fusion,
        )  # fmt: skip
    except PredictError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for path in args.files:
        try:
            pred = predictor.predict_file(path, args.transcript)
        except NoSpeechError as exc:  # an answer about the file, not a failure
            print(json.dumps({"file": str(path), "label": None, "no_speech": True,
                              "note": str(exc)}, indent=args.indent), flush=True)  # fmt: skip
            continue
        except PredictError as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
            continue
        except Exception as exc:  # a bug must not cost the other files their answers
            failed += 1
            logging.getLogger(__name__).debug("prediction failed", exc_info=True)
            print(
                f"error: {path}: prediction failed ({type(exc).__name__}: {exc})", file=sys.stderr
            )
            continue
        out = pred.to_json()
        out["model_load_ms"] = predictor.load_ms
        print(json.dumps(out, indent=args.indent), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
