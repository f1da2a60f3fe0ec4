"""Aggregate a sweep folder's `metrics.json` files into `report.md`, `results.csv` and plots.

`python -m experiments.report SWEEP_DIR [--no-plots] [--no-wandb]`

One row per variant (architecture + pooling + fusion + protocol, and corpus): Avg Loss, WA,
UA, macro-F1 and per-class accuracy (recall), each mean ± sd over folds and seeds (sample
sd, ddof=1; 0 for a single run), the best per column marked, and the runs behind each.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.utterances import atomic_write_text

# Headline metrics: (key in metrics.json, column title, higher is better).
HEADLINE = (
    ("loss", "Avg Loss", False),
    ("wa", "WA", True),
    ("ua", "UA", True),
    ("macro_f1", "Macro-F1", True),
)
CLASS_PREFIX = "acc_"


class ReportError(Exception):
    """A sweep folder that cannot be reported on; the message names the folder or file."""


@dataclass
class RunRecord:
    """One finished run: its folder and its `metrics.json`."""

    run_dir: Path
    metrics: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return self.metrics.get("config") or {}

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

    @property
    def label(self) -> str:
        parts = [self.architecture] + [p for p in (self.pooling, self.fusion) if p]
        return " · ".join(parts)

    def best_run(self) -> RunRecord:
        """The run with the highest UA (ties: the first)."""
        return max(self.runs, key=lambda r: r.values().get("ua", float("-inf")))


@dataclass
class Report:
    """What `write_report` produced."""

    rows: list[VariantRow]
    best: dict[str, set[int]]
    columns: list[str]
    skipped: list[str]
    failed: list[str]
    markdown: Path | None = None
    csv: Path | None = None


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


def variant_key(run: RunRecord) -> tuple[str, ...]:
    """(architecture, modality, pooling, fusion, protocol, corpus) of a run."""
    c = run.config
    arch = _text(c.get("architecture")) or run.run_dir.name
    modality = _text(c.get("modality")) or arch
    if modality not in ("acoustic", "lexical"):  # the trainer writes "acoustic+lexical"
        modality = "multimodal"
    fusion = _text(c.get("fusion"))
    return (
        arch,
        modality,
        _text(c.get("pooling")),
        "" if fusion == "none" else fusion,
        _text(c.get("protocol")),
        _text(c.get("corpus")),
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
            arch, modality, pooling, fusion, protocol, corpus = key
            groups[key] = VariantRow(key, arch, modality, pooling, fusion, protocol, corpus)
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


def column_title(col: str) -> str:
    for key, title, _ in HEADLINE:
        if key == col:
            return title
    return col[len(CLASS_PREFIX) :] if col.startswith(CLASS_PREFIX) else col


def format_stat(col: str, s: Stat, runs: int) -> str:
    """`62.3 ± 1.2` (percent) or `0.912 ± 0.031` (loss); `(n=k)` when fewer runs than the row."""
    if col == "loss":
        text = f"{s.mean:.3f} ± {s.sd:.3f}"
    else:
        text = f"{100 * s.mean:.1f} ± {100 * s.sd:.1f}"
    return text + (f" (n={s.n})" if s.n != runs else "")


def markdown_table(
    rows: Sequence[VariantRow], columns: Sequence[str], best: dict[str, set[int]]
) -> str:
    """The results table in markdown, the best per column in bold."""
    corpora = {r.corpus for r in rows}
    head = ["Variant", "Protocol"] + (["Corpus"] if len(corpora) > 1 else []) + ["Runs"]
    head += [column_title(c) for c in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, row in enumerate(rows):
        cells = [row.label, row.protocol or "–"] + ([row.corpus] if len(corpora) > 1 else [])
        cells.append(str(len(row.runs)))
        for col in columns:
            if col not in row.stats:
                cells.append("–")
                continue
            text = format_stat(col, row.stats[col], len(row.runs))
            cells.append(f"**{text}**" if i in best.get(col, set()) else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def csv_text(rows: Sequence[VariantRow], columns: Sequence[str], best: dict[str, set[int]]) -> str:
    """`results.csv`: raw fractions, `<col>_mean/_sd/_n` per figure, `best` = columns it wins."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    head = [
        "variant",
        "architecture",
        "modality",
        "pooling",
        "fusion",
        "protocol",
        "corpus",
        "runs",
    ]
    for col in columns:
        head += [f"{col}_mean", f"{col}_sd", f"{col}_n"]
    writer.writerow(head + ["best"])
    for i, row in enumerate(rows):
        cells: list[Any] = [
            row.label,
            row.architecture,
            row.modality,
            row.pooling,
            row.fusion,
            row.protocol,
            row.corpus,
            len(row.runs),
        ]
        for col in columns:
            s = row.stats.get(col)
            cells += [repr(s.mean), repr(s.sd), s.n] if s else ["", "", 0]
        cells.append(";".join(c for c in columns if i in best.get(c, set())))
        writer.writerow(cells)
    return buf.getvalue()


def failed_runs(sweep_dir: Path) -> list[str]:
    """Run folders with a FAILED marker and no metrics (first line of the marker)."""
    out = []
    for marker in sorted(Path(sweep_dir).rglob("FAILED")):
        if not (marker.parent / "metrics.json").is_file():
            first = marker.read_text(encoding="utf-8", errors="replace").splitlines()[:1]
            out.append(f"{marker.parent.relative_to(sweep_dir)}: {first[0] if first else ''}")
    return out


def write_report(
    sweep_dir: Path, plots: bool = True, wandb_log: bool = True, title: str | None = None
) -> Report:
    """Write `report.md`, `results.csv` (and `plots/`) into `sweep_dir`."""
    sweep_dir = Path(sweep_dir)
    runs, skipped = load_runs(sweep_dir)
    if not runs:
        raise ReportError(f"no finished run (metrics.json with 'ua') under {sweep_dir}")
    rows, columns = aggregate(runs)
    best = best_rows(rows, columns)
    failed = failed_runs(sweep_dir)
    report = Report(rows, best, columns, skipped, failed)

    figures: list[tuple[str, Path]] = []
    notes: list[str] = []
    if plots:
        from experiments import plots as plotting

        figures, notes = plotting.make_plots(rows, sweep_dir / "plots")
    if plots and wandb_log:
        notes += _log_wandb(sweep_dir, rows, columns, figures)

    md = [f"# {title or 'Sweep report'}: {sweep_dir.name}", ""]
    md += [
        f"{len(runs)} runs in {len(rows)} variants, from `{sweep_dir}`. Each figure is mean ± sd "
        "(sample sd) over folds and seeds; WA, UA, macro-F1 and per-class accuracy (recall) "
        "in %. Best per column in **bold**; `(n=k)` where a figure rests on fewer runs "
        "than its row.",
        "",
        markdown_table(rows, columns, best),
        "",
    ]
    if figures:
        md += ["## Plots", ""]
        for caption, path in figures:
            md += [
                f"### {caption}",
                "",
                f"![{caption}]({path.relative_to(sweep_dir).as_posix()})",
                "",
            ]
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    if failed:
        md += ["## Failed runs", ""] + [f"- {f}" for f in failed] + [""]
    if skipped:
        md += ["## Unreadable metrics", ""] + [f"- {s}" for s in skipped] + [""]
    report.markdown = sweep_dir / "report.md"
    report.csv = sweep_dir / "results.csv"
    atomic_write_text(report.markdown, "\n".join(md))
    atomic_write_text(report.csv, csv_text(rows, columns, best))
    return report


def _log_wandb(
    sweep_dir: Path,
    rows: Sequence[VariantRow],
    columns: Sequence[str],
    figures: Sequence[tuple[str, Path]],
) -> list[str]:
    """Log the table and figures to an (offline unless configured) W&B run; notes on failure."""
    import os

    if os.environ.get("WANDB_MODE") == "disabled":
        return []
    try:
        import wandb
    except ImportError:
        return ["wandb is not installed: figures not logged to W&B"]
    try:
        run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "ser-suite"),
            name=f"report-{sweep_dir.name}",
            job_type="report",
            dir=str(sweep_dir),
            mode="online" if os.environ.get("WANDB_MODE") == "online" else "offline",
            reinit="finish_previous",
        )
        head = ["variant", "protocol", "runs"] + [f"{c}_mean" for c in columns]
        data = [
            [r.label, r.protocol, len(r.runs)]
            + [r.stats[c].mean if c in r.stats else None for c in columns]
            for r in rows
        ]
        run.log({"results": wandb.Table(columns=list[str | int](head), data=data)})
        run.log({caption: wandb.Image(str(path)) for caption, path in figures})
        run.finish()
    except Exception as exc:  # W&B must never break the local report
        return [f"W&B logging failed ({type(exc).__name__}: {exc}); the local report is complete"]
    return [
        f"figures and table also logged to W&B ({os.environ.get('WANDB_MODE', 'offline')}) under {sweep_dir / 'wandb'}"
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument("--no-wandb", action="store_true", help="do not log to W&B")
    args = parser.parse_args(argv)
    try:
        report = write_report(args.sweep_dir, plots=not args.no_plots, wandb_log=not args.no_wandb)
    except ReportError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    n = sum(len(r.runs) for r in report.rows)
    print(
        f"report: {len(report.rows)} variants from {n} runs -> {report.markdown} and {report.csv}"
    )
    if report.failed:
        print(f"report: {len(report.failed)} failed runs listed in {report.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
