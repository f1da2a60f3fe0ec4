"""Train and evaluate one model variant: `python -m experiments.train {fit,test,validate} --config ...`.

LightningCLI over `EmotionClassifier` and `EmotionDataModule`. `configs/defaults.yaml` is read
first by every subcommand (trainer, callbacks, data defaults); a variant file such as
`configs/mmmla.yaml` changes only what differs, and any key can be overridden on the command
line (`--data.corpus ravdess4 --model.pooling mean --trainer.max_epochs 5`). Unknown keys fail.

The run folder is `--trainer.default_root_dir`: `checkpoints/{best,last}.ckpt`, `config.yaml`,
`csv/metrics.csv`, `wandb/` (offline unless WANDB_MODE=online; `--wandb false` turns it off)
and `metrics.json`, written after `fit` (testing the best checkpoint) and after `test`.

A stopped run resumes with `fit --config <same> --ckpt_path last` (the run folder's
`checkpoints/last.ckpt`); resuming is never automatic, so rerunning a folder starts afresh.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback
from pytorch_lightning.loggers import CSVLogger, Logger

from datamodules.paths import REPO_ROOT, atomic_write_text
from lightning_modules.architectures import architecture, modalities_for
from lightning_modules.predictions import FILE_NAME as PREDICTIONS_FILE
from lightning_modules.predictions import write_predictions
from lightning_modules.system import EmotionClassifier

DEFAULTS = REPO_ROOT / "configs" / "defaults.yaml"
# Datamodule attributes (known after setup) that size and name the model's outputs.
DATA_TO_MODEL = ("num_classes", "acoustic_dim", "lexical_dim", "class_names")
# Config keys copied into metrics.json and the W&B run (data keys first looked up on the data).
RECORD_MODEL_KEYS = (
    "architecture",
    "pooling",
    "fusion",
    "sequence_encoder",
    "hidden_size",
    "num_layers",
    "dropout",
)
RECORD_DATA_KEYS = (
    "corpus",
    "protocol",
    "fold",
    "test_speakers",
    "encoder",
    "layers",
    "word_pooling",
    "transcripts",
    "test_transcripts",
)


def datamodule_value(datamodule: pl.LightningDataModule, key: str) -> Any:
    """One of DATA_TO_MODEL from a datamodule, setting it up for "fit" first if needed.

    Instantiation links run before the trainer exists, so the datamodule is prepared and set
    up here (both cache their work: the trainer's later calls are cheap).
    """
    if not getattr(datamodule, "_ser_ready", False):
        datamodule.prepare_data()
        datamodule.setup("fit")
        datamodule._ser_ready = True  # type: ignore[attr-defined]
    value = getattr(datamodule, key)
    return list(value) if key == "class_names" else int(value)


def _link(key: str):  # noqa: ANN202 - jsonargparse inspects the function
    def compute(datamodule: pl.LightningDataModule) -> Any:
        return datamodule_value(datamodule, key)

    compute.__name__ = f"datamodule_{key}"
    return compute


class RunConfigCallback(SaveConfigCallback):
    """Writes the full config to `<default_root_dir>/config.yaml` (not to a logger's folder)."""

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        root = Path(trainer.default_root_dir)
        root.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, root / "config.yaml", skip_none=False, overwrite=True)


class EmotionCLI(LightningCLI):
    """LightningCLI with data->model links, run-folder loggers/checkpoints and metrics.json."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument(
            "--wandb", type=bool, default=True, help="also log to W&B (offline by default)"
        )
        # Callbacks as their own groups: `--early_stopping.patience 5` and a config
        # `checkpoint:` block (values in configs/defaults.yaml; monitor val/ua).
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        # Parse time: the architecture decides which features the datamodule loads, so an
        # acoustic model never loads word vectors.
        parser.link_arguments("model.architecture", "data.modalities", compute_fn=modalities_for)
        for key in DATA_TO_MODEL:
            parser.link_arguments(
                "data", f"model.{key}", compute_fn=_link(key), apply_on="instantiate"
            )

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        config = self._get(self.config_init, "trainer", default={})
        root = Path(config.get("default_root_dir") or os.getcwd())
        if config.get("logger") in (None, True) and not config.get("fast_dev_run"):
            kwargs["logger"] = self._loggers(root)
        trainer = super().instantiate_trainer(**kwargs)
        # Checkpoints live in the run folder whatever logger is used.
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                callback.dirpath = os.path.realpath(root / "checkpoints")
        return trainer

    def _loggers(self, root: Path) -> list[Logger]:
        loggers: list[Logger] = [CSVLogger(str(root), name="csv", version="")]
        if self._get(self.config, "wandb"):
            from pytorch_lightning.loggers import WandbLogger

            record = self.run_record()
            tags = [
                f"{k}:{record[k]}"
                for k in (
                    "modality",
                    "pooling",
                    "fusion",
                    "protocol",
                    "fold",
                    "seed",
                    "transcripts",
                    "test_transcripts",
                )
            ]
            loggers.append(
                WandbLogger(
                    save_dir=str(root),
                    name=root.name,
                    project=os.environ.get("WANDB_PROJECT", "ser-suite"),
                    group=f"{record['architecture']}-{record['pooling']}-{record['fusion']}",
                    tags=tags,
                    config=record,
                    offline=os.environ.get("WANDB_MODE", "offline") != "online",
                )
            )
        return loggers

    def run_record(self) -> dict[str, Any]:
        """The config fields a run is compared by (metrics.json "config", W&B config and tags)."""
        model = self._get(self.config, "model")
        data = self._get(self.config, "data")
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
        seed = self._get(self.config, "seed_everything")
        record["seed"] = data.get("seed") if seed in (None, True, False) and data else seed
        if getattr(self, "datamodule", None) is not None:
            record["feature_key"] = getattr(self.datamodule, "feature_key", None)
            test_key = getattr(self.datamodule, "test_feature_key", None)
            if test_key and test_key != record["feature_key"]:
                record["test_feature_key"] = test_key
            record["asr_backend"] = getattr(self.datamodule, "asr_backend", None)
        return record

    def after_fit(self) -> None:
        trainer = self.trainer
        if trainer.interrupted:
            return
        callback = trainer.checkpoint_callback
        best = getattr(callback, "best_model_path", "") or ""
        # fast_dev_run keeps no checkpoints: test the weights as they are then.
        ckpt_path = "best" if best and not getattr(trainer, "fast_dev_run", False) else None
        trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt_path)
        self.write_metrics(best if ckpt_path else None)

    def after_test(self) -> None:
        ckpt_path = self._get(self.config, "ckpt_path")
        self.write_metrics(str(Path(ckpt_path).resolve()) if ckpt_path else None)

    def write_metrics(self, checkpoint: str | None) -> Path | None:
        """Writes `metrics.json` and `predictions.npz` into the run folder (rank 0)."""
        result = self.model.results.get("test")
        if result is None or not self.trainer.is_global_zero:
            return None
        root = Path(self.trainer.default_root_dir)
        if self.model.test_predictions is not None:
            # under DDP this holds rank 0's share of the test part only
            write_predictions(root / PREDICTIONS_FILE, self.model.test_predictions)
        record = {
            **result,
            "stage": "test",
            "checkpoint": checkpoint,
            "predictions": PREDICTIONS_FILE if self.model.test_predictions is not None else None,
            "config": self.run_record(),
        }
        path = root / "metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")
        return path


def main(
    args: list[str] | None = None,
    datamodule_class: type[pl.LightningDataModule] | None = None,
    run: bool = True,
) -> EmotionCLI:
    """Runs the CLI (`args` as on the command line; `datamodule_class` for tests)."""
    os.environ.setdefault("WANDB_MODE", "offline")
    if datamodule_class is None:
        from datamodules.datamodule import EmotionDataModule

        datamodule_class = EmotionDataModule
    subcommand_kwargs = {"default_config_files": [str(DEFAULTS)]}
    # last.ckpt after every validation (Lightning's save_last only follows new best ones).
    last = ModelCheckpoint(
        filename="last", monitor=None, save_top_k=1, enable_version_counter=False
    )
    return EmotionCLI(
        EmotionClassifier,
        datamodule_class,
        trainer_defaults={"callbacks": [last]},
        save_config_callback=RunConfigCallback,
        save_config_kwargs={"overwrite": True, "save_to_log_dir": False},
        parser_kwargs={
            name: dict(subcommand_kwargs) for name in ("fit", "validate", "test", "predict")
        },
        args=args,
        run=run,
    )


def user_error(exc: BaseException) -> BaseException | None:
    """The suite's own error behind `exc` (LightningCLI and jsonargparse wrap them), if any."""
    from datamodules.audio import AudioError
    from datamodules.datamodule import DataModuleError
    from datamodules.features.config import FeatureError
    from datamodules.normalization import NormalizationError
    from datamodules.splits import SplitError
    from datamodules.utterances import CorpusError
    from lightning_modules.model import ModelConfigError

    ours = (
        AudioError,
        CorpusError,
        DataModuleError,
        FeatureError,
        ModelConfigError,
        NormalizationError,
        SplitError,
    )
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ours):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def cli() -> None:
    """`python -m experiments.train`: bad corpora, features or splits give one line, exit 2."""
    try:
        main()
    except Exception as exc:
        found = user_error(exc)
        if found is None:
            raise
        print(f"error: {found}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    cli()
