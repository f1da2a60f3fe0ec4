"""What a finished test adds to a run's W&B record, drawn from the run's own artifacts.

`log_test_results(run, run_dir, metrics)` logs, into an open `wandb` run:
- `test/confusion_matrix`: W&B's confusion-matrix chart (from `predictions.npz`), and
  `test/confusion_counts` the same counts as a Table (rows = true class; from metrics.json);
- `test/per_class_recall`: a bar chart of recall per class;
- `test/attention`, `test/gate`: the report's figures (`plots.run_attention_figure`,
  `plots.run_gate_figure`) for a few test utterances, when the model has attention / a gate;
- the test figures and the budget (epochs, parameters) in the run summary;
- optionally the checkpoint as a `model` artifact (offline runs keep it until `wandb sync`).
W&B must never break a run: a failure here is printed and the run goes on.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import numpy as np


def log_test_results(
    run: Any,
    run_dir: Path,
    metrics: dict[str, Any],
    checkpoint: str | None = None,
    n_utterances: int = 3,
) -> None:
    """Log a run's test results (see the module docstring); `run` is a `wandb` run."""
    if not hasattr(run, "log"):  # Lightning's DummyExperiment on ranks > 0
        return
    try:
        _log(run, Path(run_dir), metrics, checkpoint, n_utterances)
    except Exception as exc:  # W&B is a mirror; metrics.json is the record
        print(
            f"W&B: logging the test results failed ({type(exc).__name__}: {exc})", file=sys.stderr
        )


def _log(run: Any, run_dir: Path, metrics: dict[str, Any], checkpoint: str | None, n: int) -> None:
    import wandb

    from experiments import plots
    from experiments.runs import RunRecord
    from lightning_modules.predictions import PredictionsError

    logged: dict[str, Any] = {}
    confusion = metrics.get("confusion") or {}
    labels = [str(x) for x in confusion.get("labels") or []]
    counts = confusion.get("counts") or []
    if labels and counts:
        logged["test/confusion_counts"] = wandb.Table(
            columns=["true", *labels],
            data=[[t, *map(int, row)] for t, row in zip(labels, counts, strict=True)],
        )
    record = RunRecord(run_dir, metrics)
    try:
        p = record.predictions()
    except PredictionsError:
        p = None
    if p is not None and len(p):
        known = np.asarray(p.labels) >= 0
        logged["test/confusion_matrix"] = wandb.plot.confusion_matrix(
            y_true=np.asarray(p.labels)[known].tolist(),
            preds=np.asarray(p.predictions)[known].tolist(),
            class_names=list(p.class_names),
            title="test confusion matrix (rows = true class)",
        )
    per_class = metrics.get("per_class") or {}
    if per_class:
        table = wandb.Table(
            columns=["class", "recall"], data=[[str(k), float(v)] for k, v in per_class.items()]
        )
        logged["test/per_class_recall"] = wandb.plot.bar(
            table, "class", "recall", title="test recall per class"
        )
    if p is not None:
        out = run_dir / "figures"
        for key, draw in (
            ("test/attention", lambda: plots.run_attention_figure(record, p, out, n)),
            ("test/gate", lambda: plots.run_gate_figure(record, p, out)),
        ):
            # PlotUnavailable: this model has no attention over frames / no gate
            with contextlib.suppress(plots.PlotUnavailable):
                logged[key] = wandb.Image(str(draw()))
    run.log(logged)
    for key in ("wa", "ua", "macro_f1", "loss"):
        if isinstance(metrics.get(key), int | float):
            run.summary[f"test/{key}"] = metrics[key]
    for key, value in (metrics.get("budget") or {}).items():
        if value is not None:
            run.summary[f"budget/{key}"] = value
    if checkpoint and Path(checkpoint).is_file():
        artifact = wandb.Artifact(f"model-{run.id}", type="model", metadata=metrics.get("config"))
        artifact.add_file(str(checkpoint), name="best.ckpt")
        run.log_artifact(artifact, aliases=["best"])
