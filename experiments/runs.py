"""Run records and their aggregation: every finished run of a folder, grouped by variant.

A run is a folder with `metrics.json` (written by `experiments.train`) and, since the test
stage writes it, `predictions.npz` (`lightning_modules.predictions`). Reports and plots read
runs through this module only; nothing here imports the model or the datamodule.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments.stats import mean_sd_ci
from lightning_modules.predictions import FILE_NAME as PREDICTIONS_FILE
from lightning_modules.predictions import Predictions, read_predictions

# Headline metrics: (key in metrics.json, column title, higher is better).
HEADLINE = (
    ("loss", "Avg Loss", False),
    ("wa", "WA", True),
    ("ua", "UA", True),
    ("macro_f1", "Macro-F1", True),
)
CLASS_PREFIX = "acc_"
# Training settings a run records (`experiments.run_record`) and the real-speech table splits a
# variant's row by when its runs differ in them (`experiments.benchmark`): model keys, then
# data keys. The BLSTM's size (`ENCODER_SETTING_KEYS`) does not apply to a probe.
ENCODER_SETTING_KEYS = ("hidden_size", "num_layers")
MODEL_SETTING_KEYS = (*ENCODER_SETTING_KEYS, "dropout", "head_hidden", "lr", "weight_decay")
DATA_SETTING_KEYS = ("batch_size", "bucketing")
SETTING_KEYS = MODEL_SETTING_KEYS + DATA_SETTING_KEYS


class ReportError(Exception):
    """A runs folder that cannot be reported on; the message names the folder or file."""


@dataclass
class RunRecord:
    """One finished run: its folder and its `metrics.json`."""

    run_dir: Path
    metrics: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return self.metrics.get("config") or {}

    @property
    def checkpoint_path(self) -> Path | None:
        """The run's checkpoint: the file of the recorded name in the run's own `checkpoints/`
        where there is one (the run folder may have been moved or copied since it recorded an
        absolute path), else the path metrics.json records."""
        recorded = self.metrics.get("checkpoint")
        if not recorded:
            return None
        path = Path(str(recorded))
        own = self.run_dir / "checkpoints" / path.name
        return own if own.is_file() else path

    @property
    def predictions_path(self) -> Path:
        return self.run_dir / str(self.metrics.get("predictions") or PREDICTIONS_FILE)

    def predictions(self) -> Predictions:
        """The run's per-utterance test outputs (PredictionsError if it has none)."""
        return read_predictions(self.predictions_path)

    def values(self) -> dict[str, float]:
        """Every figure of the run by column key (headline metrics, then `acc_<class>`)."""
        out = {k: float(self.metrics[k]) for k, _, _ in HEADLINE if _is_number(self.metrics.get(k))}
        for name, recall in (self.metrics.get("per_class") or {}).items():
            if _is_number(recall):
                out[CLASS_PREFIX + str(name)] = float(recall)
        return out


@dataclass
class Stat:
    """Mean ± sd of one figure over `n` runs, and its t-based 95% CI (NaN for one run)."""

    mean: float
    sd: float  # sample sd; 0 for one run (tables print "n=1" then, never "± 0.0")
    n: int
    ci_low: float = math.nan
    ci_high: float = math.nan


@dataclass
class VariantRow:
    """One variant: what it is, its runs and the aggregated figures."""

    key: tuple[str, ...]
    architecture: str
    modality: str
    pooling: str
    fusion: str
    protocol: str
    corpus: str
    features: str = ""  # the run's feature_set label (ComParE_2016, whisper_base+minilm, ...)
    runs: list[RunRecord] = field(default_factory=list)
    stats: dict[str, Stat] = field(default_factory=dict)
    transcripts: str = ""  # "" for gold words in training and test, else e.g. "gold→asr"

    @property
    def label(self) -> str:
        parts = [self.architecture] + [
            p for p in (self.pooling, self.fusion, self.transcripts) if p
        ]
        shown = [f for f in self.features.split("+") if f and f not in DEFAULT_FEATURES]
        return " · ".join(parts + ["+".join(shown)] if shown else parts)

    def budget(self) -> dict[str, Any]:
        """What the variant's runs cost (from metrics.json "budget"; older runs lack it)."""
        budgets = [r.metrics.get("budget") or {} for r in self.runs]
        epochs = [b["epochs_trained"] for b in budgets if _is_number(b.get("epochs_trained"))]
        params = {b["n_params"] for b in budgets if _is_number(b.get("n_params"))}
        features = {str(b["feature_set"]) for b in budgets if b.get("feature_set")}
        hidden = {b["hidden_size"] for b in budgets if b.get("hidden_size") is not None}
        hidden |= {r.config["hidden_size"] for r in self.runs if r.config.get("hidden_size")}
        return {
            "epochs": (min(epochs), float(np.mean(epochs)), max(epochs)) if epochs else None,
            "n_params": sorted(params),
            "feature_set": sorted(features),
            "hidden_size": sorted(hidden),
        }

    def best_run(self) -> RunRecord:
        """The run with the highest UA (ties: the first)."""
        return max(self.runs, key=lambda r: r.values().get("ua", float("-inf")))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


DEFAULT_FEATURES = ("ComParE_2016", "minilm")  # not repeated in variant labels


def load_runs(sweep_dir: Path) -> tuple[list[RunRecord], list[str]]:
    """Every readable `metrics.json` under `sweep_dir`, and a note per unreadable one."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ReportError(f"sweep folder {sweep_dir} does not exist")
    runs, skipped = [], []
    for path in sorted(sweep_dir.rglob("metrics.json")):
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            skipped.append(f"{path}: not valid JSON ({exc})")
            continue
        if not isinstance(metrics, dict) or not _is_number(metrics.get("ua")):
            skipped.append(f"{path}: no numeric 'ua'")
            continue
        runs.append(RunRecord(path.parent, _with_training_seed(metrics, path.parent)))
    return runs, skipped


def _with_training_seed(metrics: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """`metrics` whose config's seed is the run's `seed_everything` (from its `config.yaml`):
    records written before 2026-12-07 gave seed 1 the split's seed (1 == True there), so
    seeds 0 and 1 of a fold shared one pairing key."""
    config = metrics.get("config")
    saved = run_dir / "config.yaml"
    if not isinstance(config, dict) or not saved.is_file():
        return metrics
    try:
        found = re.search(r"^seed_everything:\s*(\d+)\s*$", saved.read_text("utf-8"), re.M)
    except (OSError, UnicodeDecodeError):
        return metrics
    if found:
        config["seed"] = int(found.group(1))
    return metrics


def transcript_setting(run: RunRecord) -> str:
    """ "<train>→<test>" transcript sources of a run ("gold→gold" for runs that predate them)."""
    c = run.config
    train = _text(c.get("transcripts")) or "gold"
    return f"{train}→{_text(c.get('test_transcripts')) or train}"


def variant_key(run: RunRecord) -> tuple[str, ...]:
    """(architecture, modality group, pooling, fusion, protocol, corpus, feature set,
    transcripts) of a run.

    transcripts is "" for gold words throughout, else the setting ("gold→asr": trained on
    gold words, tested on recognised ones), so ASR runs never mix into gold rows.

    The modality group is "acoustic", "lexical" or "multimodal" (the trainer records the
    architecture's modalities as "acoustic+lexical"). A probe (`sequence_encoder: none`) is
    its own variant: its pooling reads "<pooling> probe".
    """
    c = run.config
    arch = _text(c.get("architecture")) or run.run_dir.name
    modality = _text(c.get("modality")) or arch
    if modality not in ("acoustic", "lexical"):
        modality = "multimodal"
    fusion = _text(c.get("fusion"))
    pooling = _text(c.get("pooling"))
    if c.get("sequence_encoder") == "none":
        pooling = f"{pooling} probe"
    return (
        arch,
        modality,
        pooling,
        "" if fusion == "none" else fusion,
        _text(c.get("protocol")),
        _text(c.get("corpus")),
        _text(c.get("feature_set")),
        "" if transcript_setting(run) == "gold→gold" else transcript_setting(run),
    )


def class_names(runs: Sequence[RunRecord]) -> list[str]:
    """Class names in first-seen order (the confusion labels' order where given)."""
    names: list[str] = []
    for run in runs:
        labels = (run.metrics.get("confusion") or {}).get("labels") or []
        for name in list(labels) + list(run.metrics.get("per_class") or {}):
            if str(name) not in names:
                names.append(str(name))
    return names


def stat(values: Sequence[float]) -> Stat:
    """Mean, sample sd (ddof=1; 0 for one value) and the t-based 95% CI (`stats.mean_sd_ci`)."""
    s = mean_sd_ci(values)
    return Stat(s.mean, 0.0 if s.n == 1 else s.sd, s.n, s.ci_low, s.ci_high)


def pair_key(run: RunRecord) -> tuple[str, str]:
    """What pairs runs of two variants: the same fold (and the same seed)."""
    return (_text(run.config.get("fold")), _text(run.config.get("seed")))


def paired_values(
    a: VariantRow, b: VariantRow, col: str = "ua"
) -> tuple[list[float], list[float], list[tuple[str, str]]]:
    """`col` of the runs of `a` and `b` matched by (fold, seed); unmatched runs are left out."""
    va = {pair_key(r): r.values().get(col) for r in a.runs}
    vb = {pair_key(r): r.values().get(col) for r in b.runs}
    keys = sorted(k for k in va.keys() & vb.keys() if va[k] is not None and vb[k] is not None)
    return [float(va[k]) for k in keys], [float(vb[k]) for k in keys], keys  # type: ignore[arg-type]


def per_fold(row: VariantRow, col: str = "ua") -> dict[str, Stat]:
    """`col` per fold of a variant: the mean (± sd) over that fold's seeds."""
    values: dict[str, list[float]] = {}
    for run in row.runs:
        v = run.values().get(col)
        if v is not None:
            values.setdefault(_text(run.config.get("fold")), []).append(v)
    return {fold: stat(v) for fold, v in values.items()}


def aggregate(runs: Sequence[RunRecord]) -> tuple[list[VariantRow], list[str]]:
    """Group runs by variant and aggregate; returns rows (sorted) and column keys."""
    groups: dict[tuple[str, ...], VariantRow] = {}
    for run in runs:
        key = variant_key(run)
        if key not in groups:
            arch, modality, pooling, fusion, protocol, corpus, features, transcripts = key
            groups[key] = VariantRow(
                key,
                arch,
                modality,
                pooling,
                fusion,
                protocol,
                corpus,
                features,
                transcripts=transcripts,
            )
        groups[key].runs.append(run)
    columns = [k for k, _, _ in HEADLINE] + [CLASS_PREFIX + n for n in class_names(runs)]
    for row in groups.values():
        per_run = [r.values() for r in row.runs]
        for col in columns:
            values = [v[col] for v in per_run if col in v]
            if values:
                row.stats[col] = stat(values)
    modality_order = {"acoustic": 0, "lexical": 1}
    pooling_order = {  # the seed's table order, then the statistics poolings
        "last": 0,
        "cls": 1,
        "mean": 2,
        "attention": 3,
        "stats": 4,
        "attentive_stats": 5,
    }
    rows = sorted(
        groups.values(),
        key=lambda r: (
            r.corpus,
            r.protocol,
            modality_order.get(r.modality, 2),
            r.architecture,
            pooling_order.get(r.pooling, 9),
            r.pooling,
            r.fusion,
            r.features,
            r.transcripts,
        ),
    )
    return rows, columns


def display_decimals(col: str) -> tuple[float, int]:
    """(scale, decimals) a column is shown with: loss as is to 3 places, the rest in % to 1."""
    return (1.0, 3) if col == "loss" else (100.0, 1)


def best_rows(rows: Sequence[VariantRow], columns: Sequence[str]) -> dict[str, set[int]]:
    """For each column, every row whose shown mean ties the best (min loss, max others).

    Means are compared as printed (`display_decimals`): rows that read the same are all
    marked, so a reader never sees one of two equal figures in bold. A column with a single
    row has nothing to compare and marks none.
    """
    lower = {k for k, _, higher in HEADLINE if not higher}
    best: dict[str, set[int]] = {}
    for col in columns:
        scale, decimals = display_decimals(col)
        shown = {
            i: round(scale * r.stats[col].mean, decimals)
            for i, r in enumerate(rows)
            if col in r.stats
        }
        if len(shown) < 2:
            continue
        target = min(shown.values()) if col in lower else max(shown.values())
        best[col] = {i for i, m in shown.items() if m == target}
    return best


def failed_runs(sweep_dir: Path) -> list[str]:
    """Run folders with a FAILED marker and no metrics (first line of the marker)."""
    out = []
    for marker in sorted(Path(sweep_dir).rglob("FAILED")):
        if not (marker.parent / "metrics.json").is_file():
            first = marker.read_text(encoding="utf-8", errors="replace").splitlines()[:1]
            out.append(f"{marker.parent.relative_to(sweep_dir)}: {first[0] if first else ''}")
    return out
