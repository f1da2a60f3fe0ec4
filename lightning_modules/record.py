"""The checkpoint record written into every checkpoint: `checkpoint["ser"]` (`RECORD_KEY`).

`EmotionClassifier.on_save_checkpoint` writes it with `build_record`; its fields and the loader
that reads it back are described in `lightning_modules.checkpoint`.
"""

from __future__ import annotations

import inspect
from typing import Any

RECORD_KEY = "ser"
RECORD_VERSION = 2
RECORD_FIELDS = ("architecture", "model", "class_names", "features", "normalizer", "data")


def build_record(
    model_args: dict[str, Any],
    class_names: list[str],
    modalities: list[str],
    fusion: str,
    data_state: dict[str, Any],
) -> dict[str, Any]:
    """`checkpoint["ser"]` from the model's init arguments and the datamodule's state."""
    features = {
        "config": dict(data_state.get("feature_config") or {}),
        "key": data_state.get("feature_key"),
        "acoustic_dim": data_state.get("acoustic_dim") or model_args.get("acoustic_dim"),
        "lexical_dim": data_state.get("lexical_dim") or model_args.get("lexical_dim"),
        "frame_step_s": data_state.get("frame_step_s", 0.01),
        "acoustic_layers": data_state.get("acoustic_layers", 1),
    }
    data_keys = (
        "corpus",
        "protocol",
        "fold",
        "folds",
        "seed",
        "test_speakers",
        "val_speakers",
        "exclude_speakers",
        "max_frames",
        "normalization",
        "utterance_stats",  # the statistics set (None, "frames", "speech"; old records: bool)
        "utterance_functionals",  # the clip's functionals follow the statistics (None: no)
    )
    return {
        "version": RECORD_VERSION,
        "architecture": model_args["architecture"],
        "modalities": list(modalities),
        "fusion": fusion,
        "model": dict(model_args),
        "class_names": list(class_names),
        "features": features,
        "normalizer": data_state.get("normalizer"),
        # the standardisation of utterance statistics (data.utterance_stats), else None
        "stats_normalizer": data_state.get("stats_normalizer"),
        "data": {k: data_state.get(k) for k in data_keys},
    }


def model_init_args(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The entries of `values` that `cls.__init__` accepts (drops LightningCLI's private keys)."""
    accepted = inspect.signature(cls).parameters
    return {k: v for k, v in values.items() if k in accepted}
