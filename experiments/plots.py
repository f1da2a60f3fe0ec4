"""The report's figures (PNG, matplotlib Agg) and the attention renderer the demo shares.

Everything is drawn from run artifacts: `metrics.json` (pooling bars, confusion matrices) and
`predictions.npz` (attention over time, GMU gates); the corpus table and audio only add the
spectrogram and the words. No model or datamodule code is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments.runs import RunRecord, VariantRow  # noqa: E402
from lightning_modules.predictions import Predictions, PredictionsError  # noqa: E402

DPI = 110
N_ATTENTION_UTTERANCES = 3
SAMPLE_RATE = 16_000


class PlotUnavailable(Exception):
    """A figure that cannot be drawn here; the message says why (it goes into the report)."""


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def pooling_bars(rows: Sequence[VariantRow], path: Path) -> Path:
    """WA and UA (mean ± sd) of every pooling, one panel per unimodal modality."""
    uni = [r for r in rows if r.modality in ("acoustic", "lexical") and "ua" in r.stats]
    if not uni:
        raise PlotUnavailable("no acoustic or lexical runs: no pooling comparison")
    modalities = [m for m in ("acoustic", "lexical") if any(r.modality == m for r in uni)]
    protocols = sorted({r.protocol for r in uni})
    fig, axes = plt.subplots(1, len(modalities), figsize=(5.5 * len(modalities), 4), squeeze=False)
    for ax, modality in zip(axes[0], modalities, strict=True):
        group = [r for r in uni if r.modality == modality]
        labels = [r.pooling or r.architecture for r in group]
        if len(protocols) > 1:
            labels = [f"{lab}\n({r.protocol})" for lab, r in zip(labels, group, strict=True)]
        x = np.arange(len(group))
        for offset, metric, colour in ((-0.2, "wa", "#4c72b0"), (0.2, "ua", "#dd8452")):
            means = [100 * r.stats[metric].mean if metric in r.stats else 0 for r in group]
            sds = [100 * r.stats[metric].sd if metric in r.stats else 0 for r in group]
            ax.bar(x + offset, means, 0.4, yerr=sds, capsize=4, label=metric.upper(), color=colour)
        n_classes = sum(k.startswith("acc_") for k in group[0].stats)
        if n_classes:
            ax.axhline(100 / n_classes, color="grey", ls="--", lw=0.8, label="chance UA")
        ax.set_xticks(x, labels)
        ax.set_title(f"{modality}: pooling")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
        ax.legend()
    return _save(fig, path)


def mean_confusion(row: VariantRow) -> tuple[list[str], np.ndarray]:
    """Row-normalised confusion averaged over a variant's runs: (labels, (C, C))."""
    mats, labels = [], None
    for run in row.runs:
        conf = run.metrics.get("confusion") or {}
        if not conf.get("labels"):
            continue
        if conf.get("normalized") is not None:
            m = np.asarray(conf["normalized"], dtype=np.float64)
        elif conf.get("counts") is not None:
            counts = np.asarray(conf["counts"], dtype=np.float64)
            m = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        else:
            continue
        if labels is None:
            labels = list(conf["labels"])
        if list(conf["labels"]) == labels and m.shape == (len(labels), len(labels)):
            mats.append(m)
    if not mats or labels is None:
        raise PlotUnavailable(f"{row.label}: no confusion matrix in its metrics.json")
    return labels, np.mean(mats, axis=0)


def best_per_modality(rows: Sequence[VariantRow]) -> dict[str, VariantRow]:
    """The variant with the highest mean UA for each modality."""
    best: dict[str, VariantRow] = {}
    for row in rows:
        if "ua" not in row.stats:
            continue
        cur = best.get(row.modality)
        if cur is None or row.stats["ua"].mean > cur.stats["ua"].mean:
            best[row.modality] = row
    return best


def confusion_figure(row: VariantRow, path: Path) -> Path:
    """A normalised confusion matrix (rows = true class) with the values written in."""
    labels, m = mean_confusion(row)
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(labels), 0.8 + 0.9 * len(labels)))
    im = ax.imshow(m, vmin=0, vmax=1, cmap="Blues")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                f"{m[i, j]:.2f}",
                ha="center",
                va="center",
                color="white" if m[i, j] > 0.5 else "black",
                fontsize=9,
            )
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ua = row.stats["ua"]
    ax.set_title(
        f"{row.label} ({row.protocol})\nUA {100 * ua.mean:.1f} ± {100 * ua.sd:.1f}, {ua.n} runs"
    )
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def make_plots(rows: Sequence[VariantRow], out: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """Every figure that can be drawn into `out`; returns (caption, path) pairs and notes."""
    out = Path(out)
    figures: list[tuple[str, Path]] = []
    notes: list[str] = []
    try:
        figures.append(
            ("Pooling per modality (WA, UA; mean ± sd)", pooling_bars(rows, out / "pooling.png"))
        )
    except PlotUnavailable as exc:
        notes.append(f"pooling bar chart skipped: {exc}")
    for modality, row in best_per_modality(rows).items():
        try:
            path = confusion_figure(row, out / f"confusion_{modality}.png")
            figures.append((f"Normalised confusion, best {modality} model: {row.label}", path))
        except PlotUnavailable as exc:
            notes.append(f"confusion matrix for {modality} skipped: {exc}")
    for caption, fn, pick in (
        ("Attention over time, best acoustic-attention model", attention_figure, attention_row),
        ("GMU gate per class", gate_figure, gate_row),
    ):
        try:
            row = pick(rows)
            figures.append((f"{caption}: {row.label}", fn(row, out)))
        except PlotUnavailable as exc:
            notes.append(f"{caption.split(',')[0].lower()} figure skipped: {exc}")
        except Exception as exc:  # a figure must not sink the report
            notes.append(
                f"{caption.split(',')[0].lower()} figure failed: {type(exc).__name__}: {exc}"
            )
    return figures, notes


def attention_row(rows: Sequence[VariantRow]) -> VariantRow:
    """The best variant with acoustic attention pooling (acoustic first, then fusion models)."""
    for modality in ("acoustic", "multimodal"):
        cands = [r for r in rows if r.modality == modality and r.pooling == "attention"]
        cands += [r for r in rows if r.modality == modality and r.architecture == "mmmla"]
        if cands:
            return max(cands, key=lambda r: r.stats["ua"].mean)
    raise PlotUnavailable("no run with acoustic attention pooling in this sweep")


def gate_row(rows: Sequence[VariantRow]) -> VariantRow:
    """The best MMMLA variant; the best other GMU-fused one (hierarchical) only without MMMLA."""
    cands = [r for r in rows if r.architecture == "mmmla"]
    cands = cands or [r for r in rows if r.fusion == "gmu"]
    if not cands:
        raise PlotUnavailable("no MMMLA (GMU) run in this sweep")
    return max(cands, key=lambda r: r.stats["ua"].mean)


def _predictions(row: VariantRow) -> tuple[RunRecord, Predictions]:
    """The best run of a variant and its predictions file."""
    run = row.best_run()
    try:
        return run, run.predictions()
    except PredictionsError as exc:
        raise PlotUnavailable(f"{row.label}: {exc}") from exc


def _choose(p: Predictions, n: int, wordiest: dict[str, int]) -> list[int]:
    """Up to n correctly classified test utterances of different classes, wordiest first."""
    order = sorted(range(len(p)), key=lambda i: -wordiest.get(p.utterance_ids[i], 0))
    chosen: list[int] = []
    for want_correct in (True, False):
        for i in order:
            if len(chosen) == n:
                return chosen
            taken = {int(p.labels[j]) for j in chosen}
            correct = int(p.predictions[i]) == int(p.labels[i])
            if correct == want_correct and int(p.labels[i]) not in taken:
                chosen.append(i)
    return chosen


def draw_attention(
    ax_spec: Any,
    ax_att: Any,
    weights: np.ndarray,
    frame_step_s: float,
    words: Sequence[str] = (),
    spans: np.ndarray | None = None,
    audio: np.ndarray | None = None,
    title: str = "",
) -> None:
    """Attention over time (ax_att) under the spectrogram (ax_spec), words at their spans.

    `weights` (T,) over the acoustic frames, `spans` (W, 2) [first, last + 1) frames of the
    `words`; `audio` 16 kHz samples (no spectrogram without it). The report and the demo both
    draw with this.
    """
    weights = np.asarray(weights, dtype=np.float64)
    t = (np.arange(len(weights)) + 0.5) * frame_step_s  # frame centres
    end = max(len(weights) * frame_step_s, frame_step_s)
    if audio is not None and len(audio) > 400:
        ax_spec.specgram(audio, NFFT=400, Fs=SAMPLE_RATE, noverlap=240, cmap="magma")
        ax_spec.set_ylim(0, 8000)
    ax_spec.set_xlim(0, end)
    ax_spec.set_ylabel("Hz")
    ax_spec.tick_params(labelbottom=False)
    if title:
        ax_spec.set_title(title, fontsize=10)
    ax_att.plot(t, weights, color="#dd8452")
    ax_att.fill_between(t, weights, alpha=0.3, color="#dd8452")
    ax_att.set_xlim(0, end)
    ax_att.set_ylabel("attention")
    ax_att.set_ylim(0, 1.35 * float(weights.max(initial=0.0)) or 1.0)
    ax_att.set_xlabel("time (s)")
    if spans is None or len(spans) != len(words):
        return
    top = ax_att.get_ylim()[1]
    for text, (first, last) in zip(words, np.asarray(spans), strict=True):
        a, b = float(first) * frame_step_s, float(last) * frame_step_s
        silent = text.startswith("<") or text.startswith("++")
        ax_spec.axvline(a, color="white", lw=0.5, alpha=0.6)
        ax_att.axvline(a, color="grey", lw=0.5, alpha=0.6)
        if silent:  # the seed's point: pauses should get little weight
            ax_att.axvspan(a, b, color="grey", alpha=0.15)
        ax_att.text(
            (a + b) / 2,
            top * 0.97,
            text,
            ha="center",
            va="top",
            fontsize=8,
            rotation=30,
            color="grey" if silent else "black",
        )


def _table_rows(corpus: str) -> dict[str, dict[str, Any]]:
    """The corpus's table rows by utterance id ({} when it is not prepared here)."""
    from datamodules.utterances import CorpusError, read_table

    try:
        return {r["utterance_id"]: r for r in read_table(corpus).to_dict("records")}
    except CorpusError:
        return {}


def _clip(row: dict[str, Any]) -> np.ndarray | None:
    """The utterance's audio, or None when the file is not here."""
    from datamodules.audio import AudioError, load_audio

    if not row.get("audio_path") or not Path(row["audio_path"]).is_file():
        return None

    def seconds(value: Any) -> float | None:
        return None if value is None or value != value else float(value)  # NaN: whole file

    try:
        return load_audio(row["audio_path"], seconds(row.get("start_s")), seconds(row.get("end_s")))
    except AudioError:
        return None


def attention_figure(row: VariantRow, out: Path, n: int = N_ATTENTION_UTTERANCES) -> Path:
    """Attention over time of a few test utterances of the variant's best run."""
    return run_attention_figure(*_predictions(row), out, n)


def run_attention_figure(
    run: RunRecord, p: Predictions, out: Path, n: int = N_ATTENTION_UTTERANCES
) -> Path:
    """Attention over time of up to n test utterances of one run (`out/attention.png`)."""
    from datamodules.features.store import table_words

    weights = p.attention.get("acoustic")
    if not weights:
        raise PlotUnavailable(f"{run.run_dir}: its predictions hold no acoustic attention")
    table = _table_rows(str(run.config.get("corpus") or ""))
    words = {u: [w.text for w in table_words(r)] for u, r in table.items()}
    picks = _choose(p, n, {u: len(w) for u, w in words.items()})
    fig, axes = plt.subplots(
        2 * len(picks),
        1,
        figsize=(10, 3.2 * len(picks)),
        squeeze=False,
        gridspec_kw={"height_ratios": [2, 1] * len(picks)},
    )
    for k, i in enumerate(picks):
        uid = p.utterance_ids[i]
        truth, pred = p.class_names[int(p.labels[i])], p.class_names[int(p.predictions[i])]
        draw_attention(
            axes[2 * k, 0],
            axes[2 * k + 1, 0],
            weights[i],
            p.frame_step_s,
            words.get(uid, []),
            None if p.word_spans is None else p.word_spans[i],
            _clip(table[uid]) if uid in table else None,
            f"{uid}: true {truth}, predicted {pred}",
        )
    fig.tight_layout()
    return _save(fig, Path(out) / "attention.png")


def gate_figure(row: VariantRow, out: Path) -> Path:
    """Mean GMU gate value (1 = acoustic, 0 = lexical) per true class, ± sd over utterances."""
    return run_gate_figure(*_predictions(row), out)


def run_gate_figure(run: RunRecord, p: Predictions, out: Path) -> Path:
    """One run's mean GMU gate value per true class (`out/gate.png`)."""
    if p.gate is None:
        raise PlotUnavailable(f"{run.run_dir}: its predictions hold no gate values")
    gate, labels = np.asarray(p.gate), np.asarray(p.labels)
    present = [c for c in range(len(p.class_names)) if (labels == c).any()]
    means = [gate[labels == c].mean() for c in present]
    sds = [gate[labels == c].std() for c in present]
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(present), 3.6))
    ax.bar(range(len(present)), means, yerr=sds, capsize=4, color="#55a868")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(len(present)), [p.class_names[c] for c in present])
    ax.set_ylim(0, 1)
    ax.set_ylabel("mean gate z (1 = acoustic)")
    ax.set_title(f"GMU gate per true class ({len(gate)} test utterances)")
    return _save(fig, Path(out) / "gate.png")
