"""The report's figures (PNG, matplotlib Agg): pooling bars, confusion matrices, attention, gates.

Figures from `metrics.json` always work; the attention and gate figures need a checkpoint
and the model code, and give a note instead of a figure when either is missing.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

if TYPE_CHECKING:
    from experiments.report import VariantRow

DPI = 110
N_ATTENTION_UTTERANCES = 3


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


def _checkpoint(row: VariantRow) -> Path:
    run = row.best_run()
    for candidate in (run.metrics.get("checkpoint"), run.run_dir / "checkpoints" / "best.ckpt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
        if candidate and (run.run_dir / str(candidate)).is_file():
            return run.run_dir / str(candidate)
    raise PlotUnavailable(f"{row.label}: no checkpoint in {run.run_dir} (checkpoints/best.ckpt)")


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
            figures.append((f"{caption}: {row.label}", fn(_checkpoint(row), out)))
        except PlotUnavailable as exc:
            notes.append(f"{caption.split(',')[0].lower()} figure skipped: {exc}")
        except Exception as exc:  # the model code is young; a figure must not sink the report
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


@dataclass
class Inspection:
    """A checkpoint's model run over its test part (per utterance, padding removed)."""

    class_names: list[str]
    corpus: str
    ids: list[str]
    labels: list[int]
    preds: list[int]
    attention: dict[str, list[np.ndarray]]  # modality -> per utterance (T,) or (W,)
    gate: list[float]  # mean gate value per utterance (empty without a gate)


def _init_args(cls: type, hparams: dict[str, Any]) -> dict[str, Any]:
    """The saved hyper-parameters `cls` accepts (LightningCLI adds `_instantiator` and such)."""
    accepted = inspect.signature(cls).parameters
    return {k: v for k, v in hparams.items() if k in accepted}


def inspect_checkpoint(checkpoint: Path, max_items: int = 2000) -> Inspection:
    """Rebuild model and datamodule from a checkpoint and run the model on its test part."""
    try:
        import torch

        from datamodules.datamodule import EmotionDataModule
        from experiments.inference import read_checkpoint
        from lightning_modules.system import EmotionClassifier
    except ImportError as exc:
        raise PlotUnavailable(f"model or data code missing ({exc})") from exc
    ckpt = read_checkpoint(checkpoint)
    state = next((v for k, v in ckpt.items() if k.endswith("DataModule") and v), None)
    if state is None or "datamodule_hyper_parameters" not in ckpt:
        raise PlotUnavailable(f"{checkpoint} holds no datamodule state to rebuild the test part")
    module = EmotionClassifier(**_init_args(EmotionClassifier, ckpt["hyper_parameters"]))
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    dm = EmotionDataModule(**_init_args(EmotionDataModule, ckpt["datamodule_hyper_parameters"]))
    dm.load_state_dict(state)
    dm.setup("test")
    out = Inspection(list(state["class_names"]), str(state["corpus"]), [], [], [], {}, [])
    with torch.no_grad():
        for batch in dm.test_dataloader():
            output = module(batch)
            lengths = {"acoustic": batch.acoustic_lengths, "lexical": batch.word_lengths}
            for name, weights in (output.attention or {}).items():
                if weights is None or lengths.get(name) is None:
                    continue
                out.attention.setdefault(name, []).extend(
                    w[: int(n)].numpy() for w, n in zip(weights, lengths[name], strict=True)
                )
            if output.gate is not None:
                out.gate.extend(output.gate.reshape(len(batch), -1).mean(1).tolist())
            out.ids += list(batch.utterance_ids)
            out.labels += batch.labels.tolist()
            out.preds += output.logits.argmax(-1).tolist()
            if len(out.ids) >= max_items:
                break
    return out


def _choose(ins: Inspection, table: Any, n: int) -> list[int]:
    """Up to n correctly classified test utterances of different classes, wordiest first."""
    words = dict(zip(table["utterance_id"], table["words"], strict=True))
    order = sorted(range(len(ins.ids)), key=lambda i: -len(str(words.get(ins.ids[i], ""))))
    chosen: list[int] = []
    for want_correct in (True, False):
        for i in order:
            if len(chosen) == n:
                return chosen
            cls_taken = {ins.labels[j] for j in chosen}
            if (ins.preds[i] == ins.labels[i]) == want_correct and ins.labels[i] not in cls_taken:
                chosen.append(i)
    return chosen


def attention_figure(checkpoint: Path, out: Path, n: int = N_ATTENTION_UTTERANCES) -> Path:
    """Attention weights over time under the spectrogram, words at their spans."""
    from datamodules.audio import load_audio
    from datamodules.utterances import frame_to_utterances, read_table

    ins = inspect_checkpoint(checkpoint)
    if not ins.attention.get("acoustic"):
        raise PlotUnavailable(f"{checkpoint}: the model returns no acoustic attention weights")
    table = read_table(ins.corpus)
    utts = {u.utterance_id: u for u in frame_to_utterances(table)}
    picks = _choose(ins, table, n)
    fig, axes = plt.subplots(
        2 * len(picks),
        1,
        figsize=(10, 3.2 * len(picks)),
        squeeze=False,
        gridspec_kw={"height_ratios": [2, 1] * len(picks)},
    )
    for k, i in enumerate(picks):
        utt = utts[ins.ids[i]]
        weights = ins.attention["acoustic"][i]
        t = (np.arange(len(weights)) + 0.5) * 0.01  # frame centres; 10 ms LLD frames
        ax_s, ax_a = axes[2 * k, 0], axes[2 * k + 1, 0]
        if utt.audio_path and Path(utt.audio_path).is_file():
            x = load_audio(utt.audio_path)
            if utt.start_s is not None:
                x = x[int(utt.start_s * 16000) : int(utt.end_s * 16000) if utt.end_s else None]
            ax_s.specgram(x, NFFT=400, Fs=16000, noverlap=240, cmap="magma")
            ax_s.set_ylim(0, 8000)
        ax_s.set_xlim(0, t[-1] + 0.005)
        ax_s.set_ylabel("Hz")
        ax_s.tick_params(labelbottom=False)
        truth, pred = ins.class_names[ins.labels[i]], ins.class_names[ins.preds[i]]
        ax_s.set_title(f"{utt.utterance_id}: true {truth}, predicted {pred}", fontsize=10)
        ax_a.plot(t, weights, color="#dd8452")
        ax_a.fill_between(t, weights, alpha=0.3, color="#dd8452")
        ax_a.set_xlim(ax_s.get_xlim())
        ax_a.set_ylabel("attention")
        ax_a.set_ylim(0, 1.35 * float(weights.max()))
        ax_a.set_xlabel("time (s)")
        for w in utt.words:
            if w.start is None or w.end is None:
                continue
            silent = w.text.startswith("<") or w.text.startswith("++")
            ax_s.axvline(w.start, color="white", lw=0.5, alpha=0.6)
            ax_a.axvline(w.start, color="grey", lw=0.5, alpha=0.6)
            if silent:  # the seed's point: pauses should get little weight
                ax_a.axvspan(w.start, w.end, color="grey", alpha=0.15)
            ax_a.text(
                (w.start + w.end) / 2,
                ax_a.get_ylim()[1] * 0.97,
                w.text,
                ha="center",
                va="top",
                fontsize=8,
                rotation=30,
                color="grey" if silent else "black",
            )
    fig.tight_layout()
    return _save(fig, Path(out) / "attention.png")


def gate_figure(checkpoint: Path, out: Path) -> Path:
    """Mean GMU gate value (1 = acoustic, 0 = lexical) per true class, ± sd over utterances."""
    ins = inspect_checkpoint(checkpoint)
    if not ins.gate:
        raise PlotUnavailable(f"{checkpoint}: the model returns no gate values")
    gate, labels = np.asarray(ins.gate), np.asarray(ins.labels)
    present = [c for c in range(len(ins.class_names)) if (labels == c).any()]
    means = [gate[labels == c].mean() for c in present]
    sds = [gate[labels == c].std() for c in present]
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(present), 3.6))
    ax.bar(range(len(present)), means, yerr=sds, capsize=4, color="#55a868")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(len(present)), [ins.class_names[c] for c in present])
    ax.set_ylim(0, 1)
    ax.set_ylabel("mean gate z (1 = acoustic)")
    ax.set_title(f"GMU gate per true class ({len(gate)} test utterances)")
    return _save(fig, Path(out) / "gate.png")
