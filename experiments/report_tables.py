"""The report's tables as text: markdown (results, UA per fold, budget), booktabs LaTeX and
`results.csv`, from the aggregated `VariantRow`s of `experiments.runs`.

Bold marks every row whose figure, as printed, equals the column's best (`best`: column ->
row indices, from `experiments.runs.best_rows`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from experiments.runs import CLASS_PREFIX, HEADLINE, Stat, VariantRow, display_decimals, per_fold


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
