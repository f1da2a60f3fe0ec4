"""Finding and opening checkpoints for prediction: the loader as `PredictError`s, a run's
summary, the acoustic fallback nearest a checkpoint in its run tree, the demo's own models."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from datamodules.paths import REPO_ROOT
from experiments.audio_input import PredictError
from lightning_modules.checkpoint import CheckpointError, LoadedModel, load_checkpoint, read_record

log = logging.getLogger(__name__)

DEFAULT_RUNS_DIR = REPO_ROOT / "runs"

# ---------------------------------------------------------------------------------------
# Checkpoints (the contract and the loader live in lightning_modules.checkpoint)


def load_model(path: str | Path) -> LoadedModel:
    """`load_checkpoint` with its errors as PredictError, and the feature pipeline attached."""
    try:
        model = load_checkpoint(path)
    except CheckpointError as exc:
        raise PredictError(str(exc)) from exc
    return model


def checkpoint_record(path: str | Path) -> dict[str, Any]:
    """The record of a checkpoint file (architecture, classes, corpus), as PredictError."""
    try:
        return read_record(path, path)
    except CheckpointError as exc:
        raise PredictError(str(exc)) from exc


def _run_summary(ckpt: Path) -> dict[str, Any]:
    """architecture/corpus/ua of the run a checkpoint belongs to, from its metrics.json (cheap)."""
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        config = metrics.get("config") or {}
        return {
            "architecture": config.get("architecture"),
            "corpus": config.get("corpus"),
            "ua": metrics.get("ua"),
        }
    except (OSError, ValueError, AttributeError):
        return {}


def find_fallback(checkpoint: str | Path, runs_dir: Path = DEFAULT_RUNS_DIR) -> Path | None:
    """The acoustic checkpoint nearest `checkpoint` in its run tree with the same classes.

    Searched: the checkpoint's sweep folder, then up to two folders above it (a `make run`
    output holds the pooling and fusion sweeps side by side), then the demo's built-in model.
    Among equally near ones: the same corpus, then the highest test UA, then best.ckpt.
    Candidates with other classes are never used (their labels would not match).
    """
    checkpoint = Path(checkpoint).resolve()
    run_dir = (
        checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    )
    try:
        own = read_record(checkpoint, checkpoint)
        own_classes, own_corpus = list(own["class_names"]), own["data"].get("corpus")
    except CheckpointError:
        own_classes, own_corpus = [], None
    seen: set[Path] = {checkpoint}
    candidates: list[tuple[tuple[float, ...], Path]] = []
    for rank, root in enumerate(list(run_dir.parents)[:3]):
        for cand in sorted(root.rglob("checkpoints/*.ckpt")):
            cand = cand.resolve()
            if cand in seen:
                continue
            seen.add(cand)
            summary = _run_summary(cand)
            if summary.get("architecture") not in (None, "acoustic"):
                continue  # metrics.json says it is not acoustic: no need to open it
            try:
                record = read_record(cand, cand)
            except CheckpointError:  # an unreadable neighbour is not our input's problem
                continue
            if record["architecture"] != "acoustic":
                continue
            if own_classes and list(record["class_names"]) != own_classes:
                _warn_classes(cand, list(record["class_names"]), checkpoint, own_classes)
                continue
            ua = summary.get("ua")
            score = (
                rank,
                0 if record["data"].get("corpus") == own_corpus else 1,
                -(float(ua) if isinstance(ua, int | float) else -1.0),
                cand.name != "best.ckpt",
            )
            candidates.append((score, cand))
        if candidates:
            return min(candidates, key=lambda c: c[0])[1]
    builtin = demo_checkpoint("acoustic", runs_dir)
    if builtin.is_file():
        try:
            classes = list(read_record(builtin, builtin)["class_names"])
        except CheckpointError:
            return None
        if not own_classes or classes == own_classes:
            return builtin
        _warn_classes(builtin, classes, checkpoint, own_classes)
    return None


def _warn_classes(cand: Path, classes: list[str], checkpoint: Path, own: list[str]) -> None:
    how = "in another order" if sorted(classes) == sorted(own) else "other classes"
    log.warning(
        "fallback candidate %s skipped: it predicts %s (%s), %s predicts %s",
        cand, classes, how, checkpoint, own,
    )  # fmt: skip


def demo_checkpoint(architecture: str, runs_dir: Path = DEFAULT_RUNS_DIR) -> Path:
    """Where the demo keeps the built-in corpus's model of one architecture."""
    return Path(runs_dir) / "demo" / architecture / "checkpoints" / "best.ckpt"
