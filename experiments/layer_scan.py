"""Which hidden state of a neural front end to train on, chosen on the val speakers only.

`python -m experiments.layer_scan ravdess4 --acoustic whisper_base [--protocol speaker_kfold
--folds 6] [--normalization both]` caches every hidden state of the front end (feature key
with `acoustic_layer all`, sharded and resumable like any other), then fits the logistic
probe (`baselines.logistic_probe`: mean ⊕ std of the state's frames, C chosen on val UA) on
each state of each fold. The choice is the state with the best mean val UA over the folds;
the test UA of every state is printed beside it but plays no part in the choice. Writes
`<out>/layer_scan.md` and `layer_scan.json` (default `runs/layer_scan/<corpus>-<front end>/`).
Train on the choice with `--data.acoustic_layer N` (`configs/features/whisper_base_l3.yaml`).
The all-states cache is (depth + 1) times the size of a one-state cache.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.corpus import as_corpus
from datamodules.features import FeatureConfig, FeatureError, extract, load
from datamodules.paths import CorpusError, atomic_write_text
from datamodules.splits import SplitError, load_or_create_split, n_folds
from experiments.baselines import BaselineError, probe_on_split, standardise_by_speaker

REPO_ROOT = Path(__file__).resolve().parents[1]
NORMS = {"global": ("global",), "speaker": ("speaker",), "both": ("global", "speaker")}


def scan(
    corpus: str,
    acoustic: str,
    protocol: str = "speaker_kfold",
    folds: int = 6,
    norms: Sequence[str] = ("global", "speaker"),
    device: str = "cpu",
) -> dict[str, Any]:
    """{"states": [{state, norm, val_ua, test_ua, test_sd, test_by_fold}], "chosen": {...}}."""
    config = FeatureConfig(acoustic_features=acoustic, acoustic_layer="all")
    prepared = as_corpus(corpus)
    key = extract(prepared, config, ("acoustic",), progress=False, device=device).key
    cached = load(prepared, key, ("acoustic",))
    n_states = int(cached.meta.get("acoustic_layers") or 1)
    width = int(cached.meta["acoustic_dim"]) // n_states
    frames = cached.acoustic
    ids = [u for u in prepared.table["utterance_id"] if u in frames]
    table = prepared.table
    speaker_of = dict(zip(table["utterance_id"], table["speaker"].astype(str), strict=True))
    speakers = [speaker_of[u] for u in ids]
    index = {c: i for i, c in enumerate(prepared.classes)}
    label_of = {u: index[prepared.label_of[u]] for u in ids}
    splits = [
        load_or_create_split(prepared, protocol, f, 0, folds=folds)
        for f in range(n_folds(prepared.table, protocol, folds))
    ]
    rows: list[dict[str, Any]] = []
    for state in range(n_states):
        raw = {u: np.asarray(frames[u][:, state * width : (state + 1) * width]) for u in ids}
        for norm in norms:
            one = raw
            if norm == "speaker":
                one = dict(
                    zip(ids, standardise_by_speaker([raw[u] for u in ids], speakers), strict=True)
                )
            val, test = [], []
            for split in splits:
                out = probe_on_split(one, split, label_of)
                val.append(max(out["val_ua_by_C"].values(), default=float("nan")))
                test.append(out["ua"])
            rows.append(
                {
                    "state": state,
                    "norm": norm,
                    "val_ua": float(np.mean(val)),
                    "test_ua": float(np.mean(test)),
                    "test_sd": float(np.std(test, ddof=1)) if len(test) > 1 else float("nan"),
                    "test_by_fold": [round(float(t), 4) for t in test],
                }
            )
            print(
                f"state {state} {norm:>7}: val UA {100 * rows[-1]['val_ua']:.1f}  test UA "
                f"{100 * rows[-1]['test_ua']:.1f} ± {100 * rows[-1]['test_sd']:.1f}",
                flush=True,
            )
    chosen = max(rows, key=lambda r: (r["val_ua"], -r["state"]))
    return {
        "corpus": prepared.name,
        "acoustic": acoustic,
        "key": key,
        "protocol": protocol,
        "folds": len(splits),
        "states": rows,
        "chosen": {"state": chosen["state"], "norm": chosen["norm"], "val_ua": chosen["val_ua"]},
    }


def markdown(result: dict[str, Any]) -> str:
    """The scan as a table, one row per state × normalisation, the val choice marked."""
    chosen = result["chosen"]
    lines = [
        f"# Hidden states of {result['acoustic']} on {result['corpus']}",
        "",
        f"Logistic probe (mean ⊕ std pooled, C on val UA), {result['protocol']}, "
        f"{result['folds']} folds. Chosen on mean val UA: state {chosen['state']} "
        f"({chosen['norm']} normalisation). Test UA is shown, never used to choose.",
        "",
        "| state | normalisation | val UA | test UA |",
        "|---|---|---|---|",
    ]
    for r in result["states"]:
        mark = " ←" if (r["state"], r["norm"]) == (chosen["state"], chosen["norm"]) else ""
        lines.append(
            f"| {r['state']}{mark} | {r['norm']} | {100 * r['val_ua']:.1f} | "
            f"{100 * r['test_ua']:.1f} ± {100 * r['test_sd']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.layer_scan", description=__doc__)
    p.add_argument("corpus", help="a prepared corpus name")
    p.add_argument(
        "--acoustic", default="whisper_base", help="whisper_tiny, whisper_base, hf:<path>"
    )
    p.add_argument("--protocol", default="speaker_kfold", help="a split protocol with folds")
    p.add_argument("--folds", type=int, default=6, help="speaker_kfold folds")
    p.add_argument("--normalization", choices=sorted(NORMS), default="both")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument("--out", type=Path, help="folder for layer_scan.md/json")
    args = p.parse_args(argv)
    try:
        result = scan(
            args.corpus, args.acoustic, args.protocol, args.folds, NORMS[args.normalization],
            args.device,
        )  # fmt: skip
    except (FeatureError, SplitError, BaselineError, CorpusError) as exc:
        print(f"layer scan stopped: {exc}", file=sys.stderr)
        return 2
    slug = args.acoustic.replace(":", "-").replace("/", "-").strip("-")
    out = args.out or REPO_ROOT / "runs" / "layer_scan" / f"{args.corpus}-{slug}"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "layer_scan.json", json.dumps(result, indent=2))
    atomic_write_text(out / "layer_scan.md", markdown(result))
    print(markdown(result))
    print(f"written: {out / 'layer_scan.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
