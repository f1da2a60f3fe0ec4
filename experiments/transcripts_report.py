"""The recognised-transcripts section of a sweep report (`experiments.report` calls it).

For the runs with words in their input (lexical, MM-B, MMMLA, hierarchical): UA per
transcript setting ("gold→gold", "gold→asr" = trained on gold words and tested on recognised
ones, "asr→asr"), the drop from gold→gold in points, UA per bin of per-utterance WER, and
the mean GMU gate (1 = acoustic) per WER bin. Per-utterance WER is the `wer` column of the
prepared corpus table (`prepare --transcripts both|asr`); predictions come from each run's
`predictions.npz`. Nothing here imports the model or the datamodule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments.runs import RunRecord, Stat, stat, transcript_setting

SETTINGS = ("gold→gold", "gold→asr", "asr→asr", "asr→gold")
# (low, high] WER bins; the first holds exactly 0
WER_BINS = ((-1.0, 0.0, "0"), (0.0, 0.25, "≤25%"), (0.25, 0.5, "25–50%"), (0.5, math.inf, ">50%"))


def uses_asr(runs: Sequence[RunRecord]) -> bool:
    """True when some run was trained or tested on recognised words."""
    return any(transcript_setting(r) != "gold→gold" for r in runs)


def _lexical_runs(runs: Sequence[RunRecord]) -> list[RunRecord]:
    return [r for r in runs if (r.config.get("modality") or "") != "acoustic"]


def _variant(run: RunRecord) -> tuple[str, str, str, str]:
    c = run.config
    fusion = str(c.get("fusion") or "")
    return (
        str(c.get("corpus") or ""),
        str(c.get("architecture") or run.run_dir.name),
        str(c.get("pooling") or ""),
        "" if fusion == "none" else fusion,
    )


def _settings(runs: Sequence[RunRecord]) -> list[str]:
    present = {transcript_setting(r) for r in runs}
    return [s for s in SETTINGS if s in present] + sorted(present - set(SETTINGS))


def ua_by_setting(
    runs: Sequence[RunRecord],
) -> tuple[list[str], dict[tuple[str, ...], dict[str, Stat]]]:
    """(settings, {variant: {setting: UA stat}}) over the runs that read words."""
    groups: dict[tuple[str, ...], dict[str, list[float]]] = {}
    for run in _lexical_runs(runs):
        cell = groups.setdefault(_variant(run), {}).setdefault(transcript_setting(run), [])
        cell.append(float(run.metrics["ua"]))
    table = {v: {s: stat(x) for s, x in cells.items()} for v, cells in sorted(groups.items())}
    return _settings(_lexical_runs(runs)), table


def ua_markdown(settings: Sequence[str], table: dict[tuple[str, ...], dict[str, Stat]]) -> str:
    """UA (%) per variant and setting, each non-gold setting followed by its drop from gold."""
    head = ["Corpus", "Variant"]
    for s in settings:
        head += [f"UA {s}"] + ([f"Δ {s}"] if s != "gold→gold" else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (corpus, arch, pooling, fusion), cells in table.items():
        row = [corpus, " · ".join(p for p in (arch, pooling, fusion) if p)]
        gold = cells.get("gold→gold")
        for s in settings:
            c = cells.get(s)
            row.append(f"{100 * c.mean:.1f} ± {100 * c.sd:.1f} (n={c.n})" if c else "–")
            if s != "gold→gold":
                row.append(f"{100 * (c.mean - gold.mean):+.1f}" if c and gold else "–")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def wer_of(corpus: str) -> dict[str, float] | None:
    """Per-utterance WER from the prepared table of `corpus` (None when it has none)."""
    from datamodules.utterances import CorpusError, read_table

    try:
        table = read_table(corpus)
    except CorpusError:
        return None
    if "wer" not in table.columns:
        return None
    values = table["wer"].replace("", np.nan).astype(float)
    return dict(zip(table["utterance_id"], values, strict=True))


def bin_index(wer: np.ndarray) -> np.ndarray:
    """(N,) WER -> bin of WER_BINS (-1 for NaN)."""
    out = np.full(len(wer), -1, dtype=np.int64)
    for k, (lo, hi, _) in enumerate(WER_BINS):
        out[(wer > lo) & (wer <= hi)] = k
    return out


def unweighted_accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Mean recall over the classes present in `labels` (NaN when empty)."""
    classes = np.unique(labels)
    if not len(classes):
        return math.nan
    return float(np.mean([(predictions[labels == c] == c).mean() for c in classes]))


def binned(runs: Sequence[RunRecord], wer: dict[str, float]) -> dict[str, dict[str, np.ndarray]]:
    """Per run group ("variant · setting"): UA, mean gate and count per WER bin (pooled runs)."""
    pooled: dict[tuple[Any, ...], dict[str, list[np.ndarray]]] = {}
    for run in _lexical_runs(runs):
        try:
            p = run.predictions()
        except Exception:  # a run without predictions just has no bins
            continue
        w = np.array([wer.get(u, math.nan) for u in p.utterance_ids], dtype=np.float64)
        corpus, arch, pooling, fusion = _variant(run)
        setting = transcript_setting(run)
        order = SETTINGS.index(setting) if setting in SETTINGS else len(SETTINGS)
        name = " · ".join(x for x in (arch, pooling, fusion, setting) if x)
        entry = pooled.setdefault(
            (arch, pooling, fusion, order, name), {"bins": [], "labels": [], "pred": [], "gate": []}
        )
        entry["bins"].append(bin_index(w))
        entry["labels"].append(np.asarray(p.labels))
        entry["pred"].append(np.asarray(p.predictions))
        entry["gate"].append(
            np.asarray(p.gate, np.float64) if p.gate is not None else np.full(len(w), np.nan)
        )
    out = {}
    for (*_, name), e in sorted(pooled.items(), key=lambda item: item[0]):
        bins, labels, pred, gate = (
            np.concatenate(e[k]) for k in ("bins", "labels", "pred", "gate")
        )
        ua, g, n = [], [], []
        for k in range(len(WER_BINS)):
            sel = bins == k
            ua.append(unweighted_accuracy(labels[sel], pred[sel]))
            g.append(
                float(np.nanmean(gate[sel]))
                if sel.any() and np.isfinite(gate[sel]).any()
                else math.nan
            )
            n.append(int(sel.sum()))
        out[name] = {"ua": np.array(ua), "gate": np.array(g), "n": np.array(n)}
    return out


def _figure(
    groups: dict[str, dict[str, np.ndarray]], key: str, ylabel: str, path: Path
) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = {n: g for n, g in groups.items() if np.isfinite(g[key]).any()}
    if not shown:
        return None
    x = np.arange(len(WER_BINS))
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, g in shown.items():
        style = "--" if name.endswith("gold→gold") else "-"
        ax.plot(x, g[key], style, marker="o", label=name)
    ax.set_xticks(
        x,
        [
            f"{b[2]}\n(n={int(max(g['n'][k] for g in shown.values()))})"
            for k, b in enumerate(WER_BINS)
        ],
    )
    ax.set_xlabel("per-utterance WER of the recognised transcript")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def section(
    runs: Sequence[RunRecord], sweep_dir: Path, plots: bool = True
) -> tuple[list[str], list[str]]:
    """Markdown lines of the "Recognised transcripts" section, and notes."""
    settings, table = ua_by_setting(runs)
    md = [
        "## Recognised transcripts",
        "",
        "UA (%, mean ± sd over folds and seeds) of the models that read words, per "
        "transcript setting train→test (gold→asr: trained on gold words, tested on the "
        "recogniser's, the deployment case); Δ = points from gold→gold.",
        "",
        ua_markdown(settings, table),
        "",
    ]
    notes: list[str] = []
    corpora = sorted({_variant(r)[0] for r in _lexical_runs(runs)})
    for corpus in corpora:
        wer = wer_of(corpus)
        if wer is None:
            notes.append(f"corpus '{corpus}': no per-utterance `wer` column; WER bins skipped")
            continue
        corpus_runs = [r for r in runs if _variant(r)[0] == corpus]
        groups = binned(corpus_runs, wer)
        if not groups:
            notes.append(f"corpus '{corpus}': no predictions.npz; WER bins skipped")
            continue
        head = (
            ["Run group"]
            + [f"UA WER {b[2]}" for b in WER_BINS]
            + [f"gate WER {b[2]}" for b in WER_BINS]
        )
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, g in groups.items():
            cells = [
                f"{100 * v:.1f} (n={n})" if np.isfinite(v) else "–"
                for v, n in zip(g["ua"], g["n"], strict=True)
            ]
            cells += [f"{v:.2f}" if np.isfinite(v) else "–" for v in g["gate"]]
            lines.append("| " + " | ".join([name, *cells]) + " |")
        md += [
            f"### {corpus}: UA and GMU gate per WER bin",
            "",
            "Test utterances pooled over each group's runs (n = utterances in the bin), binned "
            "by the WER of their recognised transcript; UA is the mean recall over the classes "
            "present in the bin, the gate the mean GMU gate value (1 = acoustic).",
            "",
            "\n".join(lines),
            "",
        ]
        if not plots:
            continue
        for key, ylabel, stem in (
            ("ua", "UA", "ua_by_wer"),
            ("gate", "mean GMU gate (1 = acoustic)", "gate_by_wer"),
        ):
            path = _figure(groups, key, ylabel, sweep_dir / "plots" / f"{stem}_{corpus}.png")
            if path is None:
                notes.append(f"corpus '{corpus}': no {key} values per WER bin to plot")
                continue
            caption = f"{corpus}: {ylabel} against per-utterance WER"
            md += [f"![{caption}]({path.relative_to(sweep_dir).as_posix()})", ""]
    return md, notes
