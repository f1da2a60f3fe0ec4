"""Aggregate a sweep folder's `metrics.json` files into `report.md`, `report.tex`, `results.csv`
and plots.

`python -m experiments.report SWEEP_DIR [--no-plots] [--no-wandb]`

One row per variant (architecture + pooling + fusion + protocol, and corpus): Avg Loss, WA,
UA, macro-F1 and per-class accuracy (recall), each mean ± sd over folds and seeds (sample
sd, ddof=1) with the t-based 95% confidence interval of the headline figures; a figure from
one run reads "62.3 (n=1)", never "± 0.0". Bold marks every row whose figure, as printed,
equals the column's best (ties are all bold; a column with one row has none). Then: UA per
fold, the paired Wilcoxon signed-rank test of each variant against the best one (runs
matched by fold and seed; `experiments.stats`), and each row's budget (epochs actually
trained, feature set, hidden size, parameters). `report.tex` is the table as a booktabs
LaTeX table for a paper.
Runs on recognised words (`--data.transcripts`/`--data.test_transcripts asr`) are their own
rows and add a "Recognised transcripts" section (`experiments.transcripts_report`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from datamodules.paths import atomic_write_text
from experiments.report_tables import (
    budget_table,
    csv_text,
    fold_table,
    latex_table,
    markdown_table,
)
from experiments.runs import (
    CLASS_PREFIX,
    ReportError,
    Stat,
    VariantRow,
    aggregate,
    best_rows,
    failed_runs,
    load_runs,
    paired_values,
)
from experiments.stats import wilcoxon

__all__ = [
    "CLASS_PREFIX",
    "ReportError",
    "Stat",
    "VariantRow",
    "aggregate",
    "load_runs",
    "write_report",
]


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
    latex: Path | None = None


@dataclass
class Comparison:
    """A variant against the best of its corpus and protocol, paired by fold and seed."""

    row: VariantRow
    reference: VariantRow
    pairs: int
    mean_diff: float  # of `col`, this row minus the reference
    statistic: float
    pvalue: float
    min_p: float
    method: str


def comparisons(rows: Sequence[VariantRow], col: str = "ua") -> list[Comparison]:
    """Each variant vs the best (by mean `col`) of its corpus and protocol: Wilcoxon, two-sided."""
    out = []
    groups: dict[tuple[str, str], list[VariantRow]] = {}
    for row in rows:
        if col in row.stats:
            groups.setdefault((row.corpus, row.protocol), []).append(row)
    for group in groups.values():
        reference = max(group, key=lambda r: r.stats[col].mean)
        for row in group:
            if row is reference:
                continue
            a, b, _ = paired_values(row, reference, col)
            if not a:
                continue
            w = wilcoxon(a, b)
            out.append(
                Comparison(
                    row, reference, len(a), w.mean_diff, w.statistic, w.pvalue, w.min_p, w.method
                )
            )
    return out


def significance_table(found: Sequence[Comparison]) -> str:
    head = ["Variant", "vs (best UA)", "Protocol", "Pairs", "Δ UA (pp)", "W", "p", "min p", "test"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in found:
        cells = [
            c.row.label,
            c.reference.label,
            c.row.protocol or "–",
            str(c.pairs),
            f"{100 * c.mean_diff:+.1f}",
            f"{c.statistic:g}",
            f"{c.pvalue:.3g}",
            f"{c.min_p:.3g}",
            c.method,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
        "(sample sd) over folds and seeds, with the t-based 95% confidence interval of the mean "
        "in brackets for loss, WA, UA and macro-F1; WA, UA, macro-F1 and per-class accuracy "
        "(recall) in %. `(n=1)`: one run, no spread. Best per column in **bold**, every row "
        "that ties it as printed included; `(n=k)` where a figure rests on fewer runs than "
        "its row. The same table for LaTeX (booktabs): `report.tex`.",
        "",
        markdown_table(rows, columns, best),
        "",
        "## UA per fold",
        "",
        "Mean over the fold's seeds (± sd when there are several).",
        "",
        fold_table(rows),
        "",
    ]
    found = comparisons(rows)
    if found:
        md += [
            "## Paired significance (UA)",
            "",
            "Each variant against the best-UA variant of its corpus and protocol, runs paired "
            "by fold and seed: two-sided Wilcoxon signed-rank test (`experiments.stats`: "
            "scipy's exact test, or an exact permutation test over the sign assignments when "
            "differences tie or are zero), uncorrected for multiple comparisons. `min p` is "
            "the smallest p that many pairs can give: with fewer than 6 pairs p < 0.05 is out "
            "of reach whatever the difference.",
            "",
            significance_table(found),
            "",
        ]
    md += [
        "## Budget",
        "",
        "Epochs actually trained (early stopping may end a run before its maximum; mean and "
        "range over runs), input features, hidden size and parameter count.",
        "",
        budget_table(rows),
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
    report.latex = sweep_dir / "report.tex"
    atomic_write_text(report.markdown, "\n".join(md))
    atomic_write_text(report.csv, csv_text(rows, columns, best))
    caption = (
        f"{title or sweep_dir.name}: mean ± sd over folds and seeds, 95% CI (t) in "
        "brackets; WA, UA, macro-F1 in %; best in bold (ties all bold)."
    )
    atomic_write_text(report.latex, latex_table(rows, best, caption))
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
