"""The real-speech table's rows and its outputs: `Row` (per-fold scores of a model, a seed
ensemble or a baseline), the paired tests against the best baseline and against attention
(`build_table`), and `benchmark.md` / `.csv` / `.json` (`write_outputs`). Filled by
`experiments.benchmark`.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments.stats import mean_sd_ci, wilcoxon

METRICS = ("ua", "wa", "macro_f1")


@dataclass
class Row:
    """One line of the table: per-fold scores (a list per fold: one per seed)."""

    name: str
    features: str
    kind: str  # "model", "ensemble", "baseline" or "late" (late fusion with text)
    # by fold number, or by test speakers for held-out speaker sets (`benchmark.fold_of`)
    per_fold: dict[int | str, list[dict[str, float]]] = field(default_factory=dict)
    branch: str = ""  # a late-fusion row: the name of the acoustic row it fuses with text
    # runs per code version (`experiments.provenance.code_label`): a model row's runs
    code: dict[str, int] = field(default_factory=dict)

    def add(self, fold: int | str, scores: dict[str, float]) -> None:
        self.per_fold.setdefault(fold, []).append({m: float(scores[m]) for m in METRICS})

    def values(self, metric: str) -> list[float]:
        return [s[metric] for runs in self.per_fold.values() for s in runs]

    def fold_means(self, metric: str = "ua") -> dict[int | str, float]:
        return {f: float(np.mean([s[metric] for s in v])) for f, v in self.per_fold.items()}

    @property
    def n_seeds(self) -> int:
        return max((len(v) for v in self.per_fold.values()), default=0)


def compare(row: Row, other: Row) -> dict[str, Any] | None:
    """Wilcoxon on per-fold UA means over the folds both rows have (None if < 2 folds)."""
    a, b = row.fold_means(), other.fold_means()
    folds = sorted(a.keys() & b.keys(), key=str)
    if len(folds) < 2:
        return None
    res = wilcoxon([a[f] for f in folds], [b[f] for f in folds])
    return {"vs": other.name, "p": res.pvalue, "diff": res.mean_diff, "n": len(folds),
            "min_p": res.min_p}  # fmt: skip


def build_table(rows: list[Row]) -> list[dict[str, Any]]:
    baselines = [r for r in rows if r.kind == "baseline"]
    best = max(baselines, key=lambda r: np.mean(list(r.fold_means().values())), default=None)
    attention = {r.features: r for r in rows if r.kind == "model" and r.name.endswith("attention")}
    by_name = {r.name: r for r in rows}
    table = []
    for row in rows:
        entry: dict[str, Any] = {
            "name": row.name,
            "features": row.features,
            "kind": row.kind,
            "folds": len(row.per_fold),
            "seeds": row.n_seeds,
        }
        if row.code:
            entry["code"] = dict(sorted(row.code.items()))
        for m in METRICS:
            s = mean_sd_ci(row.values(m))
            entry[m] = {"mean": s.mean, "sd": s.sd, "n": s.n}
        entry["per_fold_ua"] = {
            str(f): v for f, v in sorted(row.fold_means().items(), key=lambda kv: str(kv[0]))
        }
        if best is not None and row is not best:
            entry["vs_best_baseline"] = compare(row, best)
        ref = attention.get(row.features)
        if row.kind == "model" and ref is not None and ref is not row:
            entry["vs_attention"] = compare(row, ref)
        if row.branch in by_name:
            entry["vs_branch"] = compare(row, by_name[row.branch])
        table.append(entry)
    order = {"baseline": 0, "model": 1, "ensemble": 2, "late": 3}
    table.sort(key=lambda e: (e["features"], order[e["kind"]], -e["ua"]["mean"]))
    return table


def _pct(stat: dict[str, float]) -> str:
    if stat["n"] == 1 or math.isnan(stat["sd"]):
        return f"{100 * stat['mean']:.1f} (n=1)"
    return f"{100 * stat['mean']:.1f} ± {100 * stat['sd']:.1f}"


def _test(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "–"
    sign = "+" if entry["diff"] >= 0 else "−"
    return f"{sign}{100 * abs(entry['diff']):.1f}, p={entry['p']:.3f}"


def markdown(table: list[dict[str, Any]], corpus: str, seconds: float) -> str:
    late = any("vs_branch" in e for e in table)
    head = (
        f"# Results on real speech: {corpus}\n\n"
        f"UA / WA / macro-F1 in %, mean ± sd over folds × seeds (baselines: over folds). "
        f"Paired Wilcoxon signed-rank tests across folds on per-fold mean UA (difference in UA "
        f"points, two-sided p). Made by `python -m experiments.benchmark` on "
        f"{time.strftime('%Y-%m-%d')} in {seconds / 60:.1f} min (baselines and table).\n\n"
        "| model | features | folds × seeds | UA | WA | macro-F1 | vs best baseline | "
        "vs attention |"
        + (" late fusion vs its acoustic row |" if late else "")
        + "\n|---|---|---|---|---|---|---|---|"
        + ("---|" if late else "")
        + "\n"
    )
    lines = [
        f"| {e['name']} | {e['features']} | {e['folds']} × {e['seeds']} | {_pct(e['ua'])} | "
        f"{_pct(e['wa'])} | {_pct(e['macro_f1'])} | {_test(e.get('vs_best_baseline'))} | "
        f"{_test(e.get('vs_attention'))} |" + (f" {_test(e.get('vs_branch'))} |" if late else "")
        for e in table
    ]
    return head + "\n".join(lines) + "\n" + _code_note(table)


def _code_note(table: list[dict[str, Any]]) -> str:
    """Names the rows whose runs came from more than one version of the code."""
    mixed = [e for e in table if len(e.get("code") or {}) > 1]
    if not mixed:
        return ""
    lines = [
        f"- {e['name']} ({e['features']}): "
        + ", ".join(f"{label} × {n}" for label, n in e["code"].items())
        for e in mixed
    ]
    return (
        "\nRows whose runs were trained by more than one version of the code (commit, "
        "`+dirty` for uncommitted changes; runs per version):\n" + "\n".join(lines) + "\n"
    )


def write_outputs(table: list[dict[str, Any]], out: Path, corpus: str, seconds: float) -> str:
    from datamodules.paths import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    md = markdown(table, corpus, seconds)
    atomic_write_text(out / "benchmark.md", md)
    atomic_write_text(out / "benchmark.json", json.dumps(table, indent=1))
    fields = ["name", "features", "kind", "folds", "seeds"]
    fields += [f"{m}_{s}" for m in METRICS for s in ("mean", "sd")]
    fields += ["p_vs_best_baseline", "p_vs_attention", "p_vs_branch"]
    with open(out / "benchmark.csv.tmp", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for e in table:
            writer.writerow(
                {k: e[k] for k in fields[:5]}
                | {f"{m}_{s}": e[m][s] for m in METRICS for s in ("mean", "sd")}
                | {
                    "p_vs_best_baseline": (e.get("vs_best_baseline") or {}).get("p"),
                    "p_vs_attention": (e.get("vs_attention") or {}).get("p"),
                    "p_vs_branch": (e.get("vs_branch") or {}).get("p"),
                }
            )
    (out / "benchmark.csv.tmp").replace(out / "benchmark.csv")
    return md
