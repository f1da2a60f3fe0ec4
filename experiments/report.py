"""Aggregate a sweep folder's `metrics.json` files into `report.md`, `results.csv` and plots.

`python -m experiments.report SWEEP_DIR [--no-plots] [--no-wandb]`

One row per variant (architecture + pooling + fusion + protocol, and corpus): Avg Loss, WA,
UA, macro-F1 and per-class accuracy (recall), each mean ± sd over folds and seeds (sample
sd, ddof=1; 0 for a single run), the best per column marked, and the runs behind each.
Runs on recognised words (`--data.transcripts`/`--data.test_transcripts asr`) are their own
rows and add a "Recognised transcripts" section (`experiments.transcripts_report`).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datamodules.paths import atomic_write_text
from experiments.runs import (
    CLASS_PREFIX,
    HEADLINE,
    ReportError,
    Stat,
    VariantRow,
    aggregate,
    best_rows,
    failed_runs,
    load_runs,
)

__all__ = ["ReportError", "Stat", "VariantRow", "aggregate", "load_runs", "write_report"]


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
    from experiments import transcripts_report

    if transcripts_report.uses_asr(runs):
        lines, asr_notes = transcripts_report.section(runs, sweep_dir, plots)
        md += lines
        notes += asr_notes
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
