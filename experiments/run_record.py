"""What a run is compared by: the record `experiments.train` writes into `metrics.json`
("config", "budget", "selection") and gives W&B (config, tags, group and run names).

Functions of the parsed config groups, the model, the trainer's numbers and the checkpoint
callback; `experiments.train.EmotionCLI` fills them in.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytorch_lightning.callbacks import ModelCheckpoint

from experiments.runs import DATA_SETTING_KEYS, MODEL_SETTING_KEYS
from lightning_modules.architectures import architecture

if TYPE_CHECKING:
    from torch import nn

# Config keys copied into metrics.json and the W&B run (data keys first looked up on the data).
RECORD_MODEL_KEYS = (
    "architecture",
    "pooling",
    "fusion",
    "sequence_encoder",
    "input_stats",
    "stats_norm",
    *MODEL_SETTING_KEYS,
    # recipe switches (lightning_modules.system): a run's row names the ones it turned on
    "time_masks",
    "feature_masks",
    "frame_dropout",
    "modality_dropout",
    "ema_decay",
    "branch_loss",
    "label_smoothing",
    "mixup",
    "probe_init",
    # branch pretraining (lightning_modules.branch_init)
    "init_acoustic",
    "init_lexical",
    "freeze_init",
    "posterior_branch",
)
RECORD_DATA_KEYS = (
    "corpus",
    "protocol",
    "fold",
    "folds",
    "test_speakers",
    "exclude_speakers",
    "encoder",
    "layers",
    "word_pooling",
    "acoustic_features",
    "acoustic_layer",
    "transcripts",
    "test_transcripts",
    "normalization",
    "balanced_sampling",
    "fit_on",
    "utterance_stats",
    "utterance_functionals",
    "speed_perturb",
    *DATA_SETTING_KEYS,
)
# Record fields that tag a W&B run (`corpus:iemocap`, ...).
WANDB_TAG_KEYS = (
    "corpus",
    "modality",
    "pooling",
    "fusion",
    "protocol",
    "fold",
    "seed",
    "transcripts",
    "test_transcripts",
)


def config_record(model: Any, data: Any, seed: Any, datamodule: Any = None) -> dict[str, Any]:
    """The config fields a run is compared by (metrics.json "config", W&B config and tags).

    `model`, `data`: the parsed config groups; `seed`: `seed_everything`; `datamodule`: the
    instantiated one, when there is one (its feature keys and ASR backend).
    """
    record: dict[str, Any] = {k: model.get(k) for k in RECORD_MODEL_KEYS}
    spec = architecture(record["architecture"])
    record["modality"] = spec.modality
    record["fusion"] = spec.fusion(record["fusion"])
    for key in RECORD_DATA_KEYS:
        value = data.get(key) if data is not None else None
        record[key] = list(value) if isinstance(value, (list, tuple)) else value
    # the test words are the training words unless set (the datamodule's default)
    record["transcripts"] = record.get("transcripts") or "gold"
    record["test_transcripts"] = record.get("test_transcripts") or record["transcripts"]
    # the training seed (seed_everything); its absence (None, or a bool: "draw one") falls
    # back to the split's. Not `seed in (None, True, False)`: 1 == True and 0 == False there
    unset = seed is None or isinstance(seed, bool)
    record["seed"] = data.get("seed") if unset and data else seed
    if datamodule is not None:
        record["feature_key"] = getattr(datamodule, "feature_key", None)
        test_key = getattr(datamodule, "test_feature_key", None)
        if test_key and test_key != record["feature_key"]:
            record["test_feature_key"] = test_key
        record["asr_backend"] = getattr(datamodule, "asr_backend", None)
    record["feature_set"] = feature_set_label(record, getattr(datamodule, "feature_config", None))
    return record


def checkpoint_epoch(checkpoint: str | None) -> int | None:
    """The 1-based epoch a checkpoint was saved after, None when it cannot be read."""
    if not checkpoint or not Path(checkpoint).is_file():
        return None
    try:
        import torch

        return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"]) + 1
    except Exception:  # an old or foreign checkpoint: the budget is still useful
        return None


def budget_record(
    model: nn.Module,
    record: dict[str, Any],
    max_epochs: int | None,
    epochs_trained: int | None,
    checkpoint: str | None,
    train_seconds: float = 0.0,
) -> dict[str, Any]:
    """What a result cost: epochs trained (and the best one's), parameters, size, features."""
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    best_epoch = checkpoint_epoch(checkpoint)
    return {
        "epochs_trained": epochs_trained if epochs_trained is not None else best_epoch,
        "best_epoch": best_epoch,
        "max_epochs": max_epochs,
        "n_params": int(params),
        "n_trainable_params": int(trainable),
        "hidden_size": record.get("hidden_size"),
        "feature_set": record.get("feature_set"),
        "train_seconds": round(train_seconds, 1) or None,
    }


def selection_record(callback: Any) -> dict[str, Any] | None:
    """The checkpoint's selection criterion and its best value (val side only: tuning
    reads this, never the test figures)."""
    if not isinstance(callback, ModelCheckpoint) or not callback.monitor:
        return None
    best = callback.best_model_score
    return {
        "monitor": callback.monitor,
        "mode": callback.mode,
        "best": None if best is None else float(best),
    }


def wandb_tags(record: dict[str, Any]) -> list[str]:
    """`key:value` tags of a W&B run, for filtering the run table."""
    return [f"{k}:{record[k]}" for k in WANDB_TAG_KEYS]


def acoustic_label(front_end: str | None, layer: Any = None) -> str:
    """`ComParE_2016`, `whisper_base`, `whisper_base-l4` (a hidden state other than the last)."""
    front_end = str(front_end or "compare_lld")
    if front_end == "compare_lld":  # the openSMILE set's own name, as before front ends
        return "ComParE_2016"
    return front_end if str(layer or "last") == "last" else f"{front_end}-l{layer}"


def feature_set_label(record: dict[str, Any], feature_config: Any = None) -> str:
    """The features a run read: `ComParE_2016`, `minilm`, `ComParE_2016+minilm` (+ options)."""
    parts = []
    modality = str(record.get("modality") or "")
    if "acoustic" in modality:
        parts.append(
            acoustic_label(
                getattr(feature_config, "acoustic_features", None),
                getattr(feature_config, "acoustic_layer", None),
            )
        )
    if "lexical" in modality:
        text = Path(str(record.get("encoder") or "minilm")).name
        if record.get("layers") not in (None, "last"):
            text += f"-{record['layers']}"
        if record.get("word_pooling") not in (None, "mean"):
            text += f"-{record['word_pooling']}"
        parts.append(text)
    return "+".join(parts) or "?"


def variant_name(record: dict[str, Any]) -> str:
    """`mmmla-attention-gmu`, `acoustic-mean`: architecture, pooling and fusion (if any)."""
    parts = [record.get("architecture"), record.get("pooling")]
    if record.get("fusion") not in (None, "none", ""):
        parts.append(record["fusion"])
    if record.get("sequence_encoder") == "none":
        parts.append("probe")
    return "-".join(str(p) for p in parts if p)


def wandb_group(record: dict[str, Any]) -> str:
    """Runs that differ only by fold and seed: corpus/protocol/feature set/variant."""
    return (
        "/".join(str(record.get(k) or "?") for k in ("corpus", "protocol", "feature_set"))
        + f"/{variant_name(record)}"
    )


def wandb_run_name(record: dict[str, Any]) -> str:
    """The group plus fold and seed: unique within a sweep, readable in W&B's run table."""
    return f"{wandb_group(record)}/fold{record.get('fold')}/seed{record.get('seed')}"
