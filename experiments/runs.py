"""Run records and their aggregation: every finished run of a folder, grouped by variant.

A run is a folder with `metrics.json` (written by `experiments.train`) and, since the test
stage writes it, `predictions.npz` (`lightning_modules.predictions`). Reports and plots read
runs through this module only; nothing here imports the model or the datamodule.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
    """Mean ± sd of one figure over `n` runs."""

    mean: float
    sd: float
    n: int


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
    runs: list[RunRecord] = field(default_factory=list)
    stats: dict[str, Stat] = field(default_factory=dict)
    transcripts: str = ""  # "" for gold words in training and test, else e.g. "gold→asr"

    @property
    def label(self) -> str:
        parts = [self.architecture] + [
            p for p in (self.pooling, self.fusion, self.transcripts) if p
        ]
        return " · ".join(parts)

    def best_run(self) -> RunRecord:
        """The run with the highest UA (ties: the first)."""
        return max(self.runs, key=lambda r: r.values().get("ua", float("-inf")))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


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
        runs.append(RunRecord(path.parent, metrics))
    return runs, skipped


def transcript_setting(run: RunRecord) -> str:
    """ "<train>→<test>" transcript sources of a run ("gold→gold" for runs that predate them)."""
    c = run.config
    train = _text(c.get("transcripts")) or "gold"
    return f"{train}→{_text(c.get('test_transcripts')) or train}"


def variant_key(run: RunRecord) -> tuple[str, ...]:
    """(architecture, modality group, pooling, fusion, protocol, corpus, transcripts) of a run.

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
    """Mean and sample sd (ddof=1; 0 for one value)."""
    x = np.asarray(values, dtype=np.float64)
    sd = float(np.std(x, ddof=1)) if len(x) > 1 else 0.0
    return Stat(float(np.mean(x)), sd, len(x))


def aggregate(runs: Sequence[RunRecord]) -> tuple[list[VariantRow], list[str]]:
    """Group runs by variant and aggregate; returns rows (sorted) and column keys."""
    groups: dict[tuple[str, ...], VariantRow] = {}
    for run in runs:
        key = variant_key(run)
        if key not in groups:
            arch, modality, pooling, fusion, protocol, corpus, transcripts = key
            groups[key] = VariantRow(
                key, arch, modality, pooling, fusion, protocol, corpus, transcripts=transcripts
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
    pooling_order = {"last": 0, "cls": 1, "mean": 2, "attention": 3}  # the seed's table order
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
            r.transcripts,
        ),
    )
    return rows, columns


def best_rows(rows: Sequence[VariantRow], columns: Sequence[str]) -> dict[str, set[int]]:
    """For each column, the indices of the rows with the best mean (min loss, max others)."""
    lower = {k for k, _, higher in HEADLINE if not higher}
    best: dict[str, set[int]] = {}
    for col in columns:
        means = {i: r.stats[col].mean for i, r in enumerate(rows) if col in r.stats}
        if not means:
            continue
        target = min(means.values()) if col in lower else max(means.values())
        best[col] = {i for i, m in means.items() if np.isclose(m, target, rtol=0, atol=1e-12)}
    return best


def failed_runs(sweep_dir: Path) -> list[str]:
    """Run folders with a FAILED marker and no metrics (first line of the marker)."""
    out = []
    for marker in sorted(Path(sweep_dir).rglob("FAILED")):
        if not (marker.parent / "metrics.json").is_file():
            first = marker.read_text(encoding="utf-8", errors="replace").splitlines()[:1]
            out.append(f"{marker.parent.relative_to(sweep_dir)}: {first[0] if first else ''}")
    return out
