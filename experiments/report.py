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
    display_decimals,
    failed_runs,
    load_runs,
    paired_values,
    per_fold,
)
from experiments.stats import wilcoxon

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
    latex: Path | None = None


def column_title(col: str) -> str:
    for key, title, _ in HEADLINE:
        if key == col:
            return title
    return col[len(CLASS_PREFIX) :] if col.startswith(CLASS_PREFIX) else col


def format_stat(col: str, s: Stat, runs: int, ci: bool = False) -> str:
    """`62.3 ± 1.2` (percent) or `0.912 ± 0.031` (loss), `[59.4, 65.2]` the 95% CI when `ci`;
    `62.3 (n=1)` for one run; `(n=k)` when fewer runs than the row."""
    scale, d = display_decimals(col)
    if s.n == 1:
        return f"{scale * s.mean:.{d}f} (n=1)"
    text = f"{scale * s.mean:.{d}f} ± {scale * s.sd:.{d}f}"
    if ci:
        text += f" [{scale * s.ci_low:.{d}f}, {scale * s.ci_high:.{d}f}]"
    return text + (f" (n={s.n})" if s.n != runs else "")


def markdown_table(
    rows: Sequence[VariantRow], columns: Sequence[str], best: dict[str, set[int]]
) -> str:
    """The results table in markdown, the best per column in bold, CIs on headline figures."""
    headline = {k for k, _, _ in HEADLINE}
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
            text = format_stat(col, row.stats[col], len(row.runs), ci=col in headline)
            cells.append(f"**{text}**" if i in best.get(col, set()) else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fold_table(rows: Sequence[VariantRow], col: str = "ua") -> str:
    """UA (%) per fold and variant: the mean over the fold's seeds (`(k seeds)` if more than one)."""
    folds = sorted({f for r in rows for f in per_fold(r, col)}, key=_fold_order)
    head = ["Variant", "Protocol"] + [f"fold {f}" if f else "fold ?" for f in folds]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    scale, d = display_decimals(col)
    for row in rows:
        values = per_fold(row, col)
        cells = [row.label, row.protocol or "–"]
        for f in folds:
            s = values.get(f)
            if s is None:
                cells.append("–")
            elif s.n == 1:
                cells.append(f"{scale * s.mean:.{d}f}")
            else:
                cells.append(f"{scale * s.mean:.{d}f} ± {scale * s.sd:.{d}f} ({s.n} seeds)")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fold_order(fold: str) -> tuple[int, str]:
    return (int(fold), "") if fold.isdigit() else (10**9, fold)


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


def _budget_cells(row: VariantRow) -> list[str]:
    b = row.budget()
    epochs = b["epochs"]
    if epochs is None:
        ep = "–"
    elif epochs[0] == epochs[2]:
        ep = f"{epochs[0]:g}"
    else:
        ep = f"{epochs[1]:.1f} ({epochs[0]:g}–{epochs[2]:g})"
    params = ", ".join(f"{p:,}" for p in b["n_params"]) or "–"
    hidden = ", ".join(str(h) for h in b["hidden_size"]) or "–"
    return [ep, ", ".join(b["feature_set"]) or "–", hidden, params]


def budget_table(rows: Sequence[VariantRow]) -> str:
    head = ["Variant", "Protocol", "Runs", "Epochs trained", "Features", "Hidden", "Parameters"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.label, row.protocol or "–", str(len(row.runs)), *_budget_cells(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                 "^": r"\textasciicircum{}"}  # fmt: skip


def latex_escape(text: str) -> str:
    """Plain text -> LaTeX: specials escaped, `·` and `±` in math mode."""
    out = "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)
    return out.replace("·", "$\\cdot$").replace("±", "$\\pm$")


def latex_table(
    rows: Sequence[VariantRow], best: dict[str, set[int]], caption: str, label: str = "tab:results"
) -> str:
    """The headline figures (mean ± sd, 95% CI in brackets) and the budget, booktabs style."""
    cols = [k for k, _, _ in HEADLINE]
    head = ["Variant", "Protocol", "Runs"] + [column_title(c) for c in cols]
    head += ["Epochs", "Params"]
    spec = "ll" + "r" * (len(head) - 2)
    lines = [
        "% Generated by experiments.report; needs \\usepackage{booktabs}.",
        "\\begin{table}[t]",
        "\\centering",
        "\\small",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(latex_escape(h) for h in head) + " \\\\",
        "\\midrule",
    ]
    for i, row in enumerate(rows):
        cells = [latex_escape(row.label), latex_escape(row.protocol or "--"), str(len(row.runs))]
        for col in cols:
            s = row.stats.get(col)
            if s is None:
                cells.append("--")
                continue
            scale, d = display_decimals(col)
            if s.n == 1:
                text = f"{scale * s.mean:.{d}f} ($n{{=}}1$)"
            else:
                text = (
                    f"{scale * s.mean:.{d}f} $\\pm$ {scale * s.sd:.{d}f} "
                    f"[{scale * s.ci_low:.{d}f}, {scale * s.ci_high:.{d}f}]"
                )
            cells.append(f"\\textbf{{{text}}}" if i in best.get(col, set()) else text)
        ep, _features, _hidden, params = _budget_cells(row)
        cells += [latex_escape(ep.replace("–", "--")), latex_escape(params.replace("–", "--"))]
        lines.append(" & ".join(cells) + " \\\\")
    lines += [
        "\\bottomrule",
        "\\end{tabular}",
        f"\\caption{{{latex_escape(caption)}}}",
        f"\\label{{{label}}}",
        "\\end{table}",
        "",
    ]
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
        head += [f"{col}_mean", f"{col}_sd", f"{col}_n", f"{col}_ci_low", f"{col}_ci_high"]
    writer.writerow(
        head + ["best", "epochs_trained_mean", "n_params", "feature_set", "hidden_size"]
    )
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
            if s is None:
                cells += ["", "", 0, "", ""]
            elif s.n == 1:  # one run: no spread, no interval
                cells += [repr(s.mean), "", 1, "", ""]
            else:
                cells += [repr(s.mean), repr(s.sd), s.n, repr(s.ci_low), repr(s.ci_high)]
        cells.append(";".join(c for c in columns if i in best.get(c, set())))
        b = row.budget()
        cells += [
            repr(b["epochs"][1]) if b["epochs"] else "",
            ";".join(str(p) for p in b["n_params"]),
            ";".join(b["feature_set"]),
            ";".join(str(h) for h in b["hidden_size"]),
        ]
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
