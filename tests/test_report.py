"""The report: figures equal numpy's over the runs' metrics.json, best marks, runs, plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from experiments import report as rp

CLASSES = ["angry", "happy", "neutral", "sad"]
# (architecture, modality, pooling, fusion): the seed's acoustic/lexical/fusion variants.
VARIANTS = [
    ("acoustic", "acoustic", "mean", "none"),
    ("acoustic", "acoustic", "attention", "none"),
    ("lexical", "lexical", "cls", "none"),
    ("mmmla", "acoustic+lexical", "attention", "gmu"),
]


def _fake_run(
    root: Path,
    rng: np.random.Generator,
    variant: tuple,
    fold: int,
    seed: int,
    drop_class: str | None = None,
) -> dict:
    """A realistic metrics.json from a random confusion matrix, as the trainer writes it."""
    arch, modality, pooling, fusion = variant
    counts = rng.integers(0, 6, size=(4, 4)) + np.eye(4, dtype=int) * rng.integers(5, 20)
    normalized = counts / counts.sum(1, keepdims=True)
    recall = np.diag(normalized)
    per_class = dict(zip(CLASSES, recall.tolist(), strict=True))
    if drop_class:
        del per_class[drop_class]
    metrics = {
        "wa": float(np.trace(counts) / counts.sum()),
        "ua": float(recall.mean()),
        "macro_f1": float(recall.mean() - rng.uniform(0, 0.05)),
        "loss": float(rng.uniform(0.8, 1.4)),
        "per_class": per_class,
        "confusion": {
            "labels": CLASSES,
            "counts": counts.tolist(),
            "normalized": normalized.tolist(),
        },
        "n": int(counts.sum()),
        "stage": "test",
        "checkpoint": "",
        "config": {
            "architecture": arch,
            "modality": modality,
            "pooling": pooling,
            "fusion": fusion,
            "corpus": "builtin",
            "protocol": "loso",
            "fold": fold,
            "seed": seed,
        },
    }
    run_dir = root / f"{arch}_{pooling}__fold-{fold}__seed-{seed}"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return metrics


@pytest.fixture
def sweep_dir(tmp_path: Path, monkeypatch) -> tuple[Path, dict]:
    """4 variants x 3 folds x 2 seeds; one run lacks the 'sad' recall."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    rng = np.random.default_rng(7)
    root = tmp_path / "sweep"
    runs: dict[tuple, list[dict]] = {}
    for variant in VARIANTS:
        for fold in range(3):
            for seed in range(2):
                drop = "sad" if (variant[2], fold, seed) == ("cls", 1, 0) else None
                runs.setdefault(variant, []).append(_fake_run(root, rng, variant, fold, seed, drop))
    return root, runs


def _expected(metrics: list[dict], key: str) -> tuple[float, float, int]:
    if key.startswith(rp.CLASS_PREFIX):
        values = [m["per_class"][key[4:]] for m in metrics if key[4:] in m["per_class"]]
    else:
        values = [m[key] for m in metrics]
    return float(np.mean(values)), float(np.std(values, ddof=1)), len(values)


def test_csv_figures_equal_numpy_over_the_runs(sweep_dir) -> None:
    root, runs = sweep_dir
    rep = rp.write_report(root, plots=False)
    rows = list(csv.DictReader(rep.csv.open()))
    assert len(rows) == len(VARIANTS)
    keys = ["loss", "wa", "ua", "macro_f1"] + [f"acc_{c}" for c in CLASSES]
    for row in rows:
        metrics = next(
            v for k, v in runs.items() if (k[0], k[2]) == (row["architecture"], row["pooling"])
        )
        assert int(row["runs"]) == len(metrics) == 6
        for key in keys:
            mean, sd, n = _expected(metrics, key)
            assert float(row[f"{key}_mean"]) == pytest.approx(mean, abs=1e-12), key
            assert float(row[f"{key}_sd"]) == pytest.approx(sd, abs=1e-12), key
            assert int(row[f"{key}_n"]) == n
    cls_row = next(r for r in rows if r["pooling"] == "cls")
    assert cls_row["acc_sad_n"] == "5"


def test_best_per_column_is_marked_in_csv_and_markdown(sweep_dir) -> None:
    root, runs = sweep_dir
    rep = rp.write_report(root, plots=False)
    rows = list(csv.DictReader(rep.csv.open()))
    for key, pick in (("ua", max), ("wa", max), ("loss", min), ("acc_happy", max)):
        means = {r["variant"]: float(r[f"{key}_mean"]) for r in rows}
        winner = pick(means, key=means.get)
        marked = [r["variant"] for r in rows if key in r["best"].split(";")]
        assert marked == [winner], key
    md = rep.markdown.read_text()
    ua_col = ["Variant", "Protocol", "Runs", "Avg Loss", "WA", "UA"].index("UA")
    first = md.split("\n\n## ")[0]  # the results table; per-fold and other tables follow
    table = [line for line in first.splitlines() if line.startswith("| ")][1:]
    assert len(table) == len(VARIANTS)
    bold_ua = [line.split(" | ")[0][2:] for line in table if "**" in line.split(" | ")[ua_col]]
    best_ua = max(rows, key=lambda r: float(r["ua_mean"]))
    assert bold_ua == [best_ua["variant"]]
    mean = 100 * float(best_ua["ua_mean"])
    assert f"**{mean:.1f} ± " in md
    assert "(n=5)" in md  # the 'sad' figure of lexical · cls rests on 5 of its 6 runs


def test_plots_are_written_and_linked(sweep_dir) -> None:
    root, runs = sweep_dir
    rep = rp.write_report(root, plots=True)
    md = rep.markdown.read_text()
    for name in (
        "pooling.png",
        "confusion_acoustic.png",
        "confusion_lexical.png",
        "confusion_multimodal.png",
    ):
        path = root / "plots" / name
        assert path.is_file() and path.stat().st_size > 5000, name
        assert f"](plots/{name})" in md
    # no checkpoints in fake runs: the model figures are skipped with a note, not an error
    assert "attention over time figure skipped" in md
    assert "gmu gate per class figure skipped" in md


def test_mean_confusion_averages_the_normalised_matrices(sweep_dir) -> None:
    root, runs = sweep_dir
    all_runs, _ = rp.load_runs(root)
    rows, _ = rp.aggregate(all_runs)
    from experiments.plots import best_per_modality, mean_confusion

    best = best_per_modality(rows)["acoustic"]
    labels, m = mean_confusion(best)
    expected = np.mean([r.metrics["confusion"]["normalized"] for r in best.runs], axis=0)
    assert labels == CLASSES
    np.testing.assert_allclose(m, expected)
    acoustic = [r for r in rows if r.modality == "acoustic"]
    assert best.stats["ua"].mean == max(r.stats["ua"].mean for r in acoustic)


def test_bad_runs_are_listed_and_empty_folders_are_an_error(tmp_path: Path, sweep_dir) -> None:
    root, _ = sweep_dir
    bad = root / "broken_run"
    bad.mkdir()
    (bad / "metrics.json").write_text("{not json")
    failed = root / "crashed_run"
    failed.mkdir()
    (failed / "FAILED").write_text("exit code 1\n--- last lines ---\nboom\n")
    rep = rp.write_report(root, plots=False)
    md = rep.markdown.read_text()
    assert "broken_run" in md and "not valid JSON" in md
    assert "crashed_run: exit code 1" in md
    assert sum(len(r.runs) for r in rep.rows) == 24
    with pytest.raises(rp.ReportError, match="no finished run"):
        rp.write_report(_empty(tmp_path))
    assert rp.main([str(tmp_path / "does-not-exist")]) == 2


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty"
    path.mkdir()
    return path


def test_gate_figure_prefers_mmmla_over_a_better_hierarchical_run() -> None:
    from experiments.plots import gate_row
    from experiments.report import Stat, VariantRow

    def row(arch: str, fusion: str, ua: float) -> VariantRow:
        return VariantRow(
            (arch,), arch, "multimodal", "attention", fusion, "sd8020", "builtin",
            stats={"ua": Stat(ua, 0.0, 1)},
        )  # fmt: skip

    rows = [row("hierarchical", "gmu", 0.9), row("mmmla", "gmu", 0.8), row("mmb", "concat", 0.95)]
    assert gate_row(rows).architecture == "mmmla"
    assert gate_row([rows[0], rows[2]]).architecture == "hierarchical"


def _tex_rows(tex: str) -> tuple[list[str], list[list[str]]]:
    """Header cells and body rows of a booktabs tabular (cells split on unescaped &)."""
    import re

    assert tex.count("\\begin{tabular}") == 1 and tex.count("\\end{tabular}") == 1
    body = tex.split("\\begin{tabular}", 1)[1].split("\\end{tabular}", 1)[0]
    spec = re.match(r"\{([lrc]+)\}", body)
    assert spec, "tabular without a column spec"
    assert body.count("\\toprule") == body.count("\\midrule") == body.count("\\bottomrule") == 1
    assert body.index("\\toprule") < body.index("\\midrule") < body.index("\\bottomrule")
    assert "\\hline" not in body  # booktabs rules only

    def cells(line: str) -> list[str]:
        assert line.endswith("\\\\"), line
        return [c.strip() for c in re.split(r"(?<!\\)&", line[:-2])]

    head = body.split("\\toprule", 1)[1].split("\\midrule", 1)[0].strip()
    rows = body.split("\\midrule", 1)[1].split("\\bottomrule", 1)[0].strip().splitlines()
    header = cells(head)
    assert len(header) == len(spec.group(1))
    out = [cells(r.strip()) for r in rows]
    for r in out:
        assert len(r) == len(header), r
        text = " ".join(r)
        assert text.count("{") == text.count("}") and text.replace("\\$", "").count("$") % 2 == 0
    return header, out


def test_report_tex_is_a_booktabs_table(sweep_dir) -> None:
    root, _ = sweep_dir
    rep = rp.write_report(root, plots=False)
    tex = rep.latex.read_text()
    header, rows = _tex_rows(tex)
    assert header[:6] == ["Variant", "Protocol", "Runs", "Avg Loss", "WA", "UA"]
    assert len(rows) == len(VARIANTS)
    assert sum("\\textbf{" in r[header.index("UA")] for r in rows) == 1
    assert "$\\pm$" in tex and "\\caption{" in tex and "95\\% CI" in tex


def _single(root: Path, name: str, ua: float, fold: int = 0, seed: int = 0, arch: str = "acoustic",
            pooling: str = "mean", budget: dict | None = None) -> None:  # fmt: skip
    run = root / name
    run.mkdir(parents=True)
    metrics = {
        "ua": ua, "wa": ua, "macro_f1": ua, "loss": 1.0, "per_class": {"a": ua, "b": ua},
        "config": {"architecture": arch, "modality": "acoustic", "pooling": pooling,
                   "fusion": "none", "corpus": "builtin", "protocol": "sd8020", "fold": fold,
                   "seed": seed, "hidden_size": 32},
    }  # fmt: skip
    if budget:
        metrics["budget"] = budget
    (run / "metrics.json").write_text(json.dumps(metrics))


def test_single_run_row_says_n1_and_ties_are_all_bold(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    budget = {"epochs_trained": 7, "n_params": 12345, "feature_set": "ComParE_2016"}
    _single(tmp_path, "mean", 0.62341, pooling="mean", budget=budget)
    _single(tmp_path, "attention", 0.62339, pooling="attention")  # prints as 62.3 too
    _single(tmp_path, "last", 0.50, pooling="last")
    rep = rp.write_report(tmp_path, plots=False)
    md = rep.markdown.read_text()
    assert "62.3 (n=1)" in md and "± 0.0" not in md
    assert md.count("**62.3 (n=1)**") == 2 * 5  # WA, UA, F1, 'a', 'b': a tie in each column
    assert "**50.0" not in md
    rows = list(csv.DictReader(rep.csv.open()))
    assert all(r["ua_sd"] == "" and r["ua_n"] == "1" for r in rows)
    assert {r["pooling"] for r in rows if "ua" in r["best"].split(";")} == {"mean", "attention"}
    _, tex_rows = _tex_rows(rep.latex.read_text())
    assert all("($n{=}1$)" in r[5] for r in tex_rows)
    # the budget row of the variant whose runs recorded one
    line = next(x for x in md.splitlines() if x.startswith("| acoustic · mean | sd8020 | 1 | 7"))
    assert "ComParE_2016" in line and "12,345" in line and "| 32 |" in line


def test_paired_significance_uses_stats_wilcoxon(tmp_path: Path, monkeypatch) -> None:
    from experiments import stats

    monkeypatch.setenv("WANDB_MODE", "disabled")
    good = [0.70, 0.74, 0.69, 0.80, 0.77]
    bad = [0.61, 0.66, 0.70, 0.62, 0.60]
    for fold, (g, b) in enumerate(zip(good, bad, strict=True)):
        _single(tmp_path, f"attention_{fold}", g, fold=fold, pooling="attention")
        _single(tmp_path, f"mean_{fold}", b, fold=fold, pooling="mean")
    rep = rp.write_report(tmp_path, plots=False)
    found = rp.comparisons(rep.rows)
    assert len(found) == 1 and found[0].reference.pooling == "attention" and found[0].pairs == 5
    want = stats.wilcoxon(bad, good)
    assert found[0].pvalue == pytest.approx(want.pvalue)
    md = rep.markdown.read_text()
    assert "## Paired significance (UA)" in md and f"{want.pvalue:.3g}" in md
    assert "## UA per fold" in md and "fold 4" in md
    s = stats.mean_sd_ci(good)
    assert (
        f"{100 * s.mean:.1f} ± {100 * s.sd:.1f} [{100 * s.ci_low:.1f}, {100 * s.ci_high:.1f}]" in md
    )
