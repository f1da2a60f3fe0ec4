"""Classification metrics: one MetricCollection per stage, and the metrics.json record."""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassRecall,
)


def build_metrics(num_classes: int) -> MetricCollection:
    """WA (micro accuracy), UA (macro accuracy = mean recall), macro-F1, per-class recall, confusion counts."""
    return MetricCollection(
        {
            "wa": MulticlassAccuracy(num_classes, average="micro"),
            "ua": MulticlassAccuracy(num_classes, average="macro"),
            "macro_f1": MulticlassF1Score(num_classes, average="macro"),
            "recall": MulticlassRecall(num_classes, average=None),
            "confusion": MulticlassConfusionMatrix(num_classes),
        }
    )


def normalize_rows(counts: Tensor) -> Tensor:
    """(C, C) counts, rows = true class -> row-normalised rates (0 for a class with no items)."""
    counts = counts.double()
    return counts / counts.sum(1, keepdim=True).clamp(min=1)


def summarize(
    computed: dict[str, Tensor], class_names: list[str], prefix: str = "", loss: float | None = None
) -> dict[str, Any]:
    """Computed collection (keys maybe prefixed) -> the metrics.json fields (plain Python values)."""
    get = {k.removeprefix(prefix): v for k, v in computed.items()}
    counts = get["confusion"].long().cpu()
    recall = get["recall"].cpu()
    return {
        "wa": float(get["wa"]),
        "ua": float(get["ua"]),
        "macro_f1": float(get["macro_f1"]),
        "loss": None if loss is None else float(loss),
        "per_class": {name: float(r) for name, r in zip(class_names, recall, strict=True)},
        "confusion": {
            "labels": list(class_names),
            "counts": counts.tolist(),
            "normalized": [[round(x, 6) for x in row] for row in normalize_rows(counts).tolist()],
        },
        "n": int(counts.sum()),
    }


def class_names_or_default(class_names: list[str] | None, num_classes: int) -> list[str]:
    """The given names, or "class0".."classN" when a model was built without them."""
    if class_names:
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        return list(class_names)
    return [f"class{i}" for i in range(num_classes)]
