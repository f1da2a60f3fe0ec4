"""Train and evaluate one model variant: `python -m experiments.train {fit,test,validate} --config ...`.

LightningCLI over `EmotionClassifier` and `EmotionDataModule`. `configs/defaults.yaml` is read
first by every subcommand (trainer, callbacks, data defaults); a variant file such as
`configs/mmmla.yaml` changes only what differs, and any key can be overridden on the command
line (`--data.corpus ravdess4 --model.pooling mean --trainer.max_epochs 5`). Unknown keys fail.

The run folder is `--trainer.default_root_dir`: `checkpoints/{best,last}.ckpt`, `config.yaml`,
`csv/metrics.csv`, `wandb/` (offline unless WANDB_MODE=online; `--wandb false` turns it off)
and `metrics.json`, written after `fit` (testing the best checkpoint) and after `test`.

A stopped run resumes with `fit --config <same> --ckpt_path last` (the run folder's
`checkpoints/last.ckpt`, an error naming the folder when there is none); resuming keeps the
rows `csv/metrics.csv` had, and is never automatic, so rerunning a folder starts afresh.
One process at a time writes into a run folder: it holds `<run folder>/.lock` with its pid
(a lock left by a killed process is taken over).
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.cli import LightningCLI, SaveConfigCallback
from pytorch_lightning.loggers import CSVLogger, Logger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from datamodules.locks import LockedError, PidLock
from datamodules.paths import REPO_ROOT, atomic_write_text
from experiments.provenance import code_record
from experiments.run_record import (
    budget_record,
    config_record,
    selection_record,
    wandb_group,
    wandb_run_name,
    wandb_tags,
)
from lightning_modules.architectures import modalities_for
from lightning_modules.predictions import FILE_NAME as PREDICTIONS_FILE
from lightning_modules.predictions import write_predictions
from lightning_modules.system import EmotionClassifier

DEFAULTS = REPO_ROOT / "configs" / "defaults.yaml"
# Datamodule attributes (known after setup) that size and name the model's outputs.
DATA_TO_MODEL = (
    "num_classes",
    "acoustic_dim",
    "acoustic_layers",
    "lexical_dim",
    "class_names",
    "utterance_stats_dim",
)
# Values W&B keeps as each run's best: the summary shows these, not the last epoch's.
BEST_SUMMARIES = {"val/ua": "max", "val/wa": "max", "val/macro_f1": "max", "val/loss": "min"}
N_FIGURE_UTTERANCES = 3  # test utterances per attention figure logged to W&B


class RunError(Exception):
    """A run folder that cannot be used as asked (nothing to resume); the message names it."""


class _KeepingWriter(ExperimentWriter):
    """A CSV writer that appends to the metrics.csv a resumed run wrote before it stopped
    (Lightning's deletes it)."""

    def _check_log_dir_exists(self) -> None:
        if not os.path.isfile(self.metrics_file_path):
            return
        with open(self.metrics_file_path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), None)
        if header:
            self.metrics_keys = list(header)  # save() appends under this header


class ResumedCSVLogger(CSVLogger):
    """CSVLogger of a resumed run: the rows logged before the stop are kept."""

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return cast(ExperimentWriter, self._experiment)  # only ever a _KeepingWriter


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
        parser.add_argument(
            "--wandb_log_model",
            type=bool,
            default=False,
            help="also log checkpoints/best.ckpt to W&B as a 'model' artifact",
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

    def before_instantiate_classes(self) -> None:
        """Under `wandb agent` every run gets its own folder: <default_root_dir>/<run id>.

        The agent starts each run with the same arguments (one `trainer.default_root_dir` for
        the whole sweep) and tells them apart by WANDB_RUN_ID; without this they would share,
        and overwrite, one folder.
        """
        run_id = os.environ.get("WANDB_RUN_ID")
        if not (os.environ.get("WANDB_SWEEP_ID") and run_id):
            return
        config = self.config[self.subcommand] if self.subcommand else self.config
        root = Path(config.trainer.default_root_dir or os.getcwd())
        if root.name != run_id:
            config.trainer.default_root_dir = str(root / run_id)

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        config = self._get(self.config_init, "trainer", default={})
        root = Path(config.get("default_root_dir") or os.getcwd())
        resume = self._get(self.config, "ckpt_path") == "last"
        if resume and not (root / "checkpoints" / "last.ckpt").is_file():
            raise RunError(
                f"--ckpt_path last: the run folder {root} has no checkpoints/last.ckpt to resume"
            )
        # held until the process ends: a second process must not write into a live run
        self.run_lock = PidLock(root / ".lock", f"run folder {root}").acquire()
        if config.get("logger") in (None, True) and not config.get("fast_dev_run"):
            kwargs["logger"] = self._loggers(root, resume)
        trainer = super().instantiate_trainer(**kwargs)
        # Checkpoints live in the run folder whatever logger is used.
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                callback.dirpath = os.path.realpath(root / "checkpoints")
        self._fit_started = time.monotonic()
        self._code = code_record()  # the code as this process imported it, not as it is later
        return trainer

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        finally:
            lock = getattr(self, "run_lock", None)
            if lock is not None:
                lock.release()

    def _loggers(self, root: Path, resume: bool = False) -> list[Logger]:
        csv_class = ResumedCSVLogger if resume else CSVLogger
        loggers: list[Logger] = [csv_class(str(root), name="csv", version="")]
        if self._get(self.config, "wandb"):
            from pytorch_lightning.loggers import WandbLogger

            record = self.run_record()
            logger = WandbLogger(
                save_dir=str(root),
                name=wandb_run_name(record),
                group=wandb_group(record),
                job_type=f"fold{record['fold']}",
                project=os.environ.get("WANDB_PROJECT", "ser-suite"),
                tags=wandb_tags(record),
                # The comparison fields at the top level (W&B's run table filters on them),
                # the whole resolved config (trainer, data, model, callbacks) under "cli".
                config={**record, "cli": self.resolved_config()},
                offline=os.environ.get("WANDB_MODE", "offline") != "online",
            )
            experiment = logger.experiment  # rank 0: the wandb run; other ranks: a no-op
            if hasattr(experiment, "define_metric"):
                for name, summary in BEST_SUMMARIES.items():
                    experiment.define_metric(
                        name, summary=summary, step_metric="trainer/global_step"
                    )
            loggers.append(logger)
        return loggers

    def resolved_config(self) -> dict[str, Any]:
        """This subcommand's full config (defaults, files and command line merged), JSON-safe."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        return json.loads(json.dumps(config.as_dict(), default=str))

    def run_record(self) -> dict[str, Any]:
        """The config fields a run is compared by (`experiments.run_record.config_record`)."""
        return config_record(
            self._get(self.config, "model"),
            self._get(self.config, "data"),
            self._get(self.config, "seed_everything"),
            getattr(self, "datamodule", None),
        )

    def after_fit(self) -> None:
        trainer = self.trainer
        if trainer.interrupted:
            return
        callback = trainer.checkpoint_callback
        best = getattr(callback, "best_model_path", "") or ""
        # fast_dev_run keeps no checkpoints: test the weights as they are then.
        ckpt_path = "best" if best and not getattr(trainer, "fast_dev_run", False) else None
        self._epochs_trained = int(trainer.current_epoch)
        self._train_seconds = time.monotonic() - getattr(self, "_fit_started", time.monotonic())
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
            "budget": budget_record(
                self.model,
                self.run_record(),
                self.trainer.max_epochs,
                getattr(self, "_epochs_trained", None),
                checkpoint,
                getattr(self, "_train_seconds", 0.0),
            ),
            "selection": selection_record(self.trainer.checkpoint_callback),
            # model.probe_init's C and its val UA per C (a fit that started the head)
            **(
                {"probe_init": probe}
                if (probe := getattr(self.model, "probe_record", None))
                else {}
            ),
            "config": self.run_record(),
            "code": self._code,  # set in instantiate_trainer, which every subcommand runs first
        }
        path = root / "metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")
        self._log_wandb_test(record, root, checkpoint)
        return path

    def _log_wandb_test(self, record: dict[str, Any], root: Path, checkpoint: str | None) -> None:
        """Test confusion matrix, per-class recall, attention/gate figures (and the model)."""
        from pytorch_lightning.loggers import WandbLogger

        loggers = [lg for lg in self.trainer.loggers if isinstance(lg, WandbLogger)]
        if not loggers:
            return
        from experiments.wandb_log import log_test_results

        log_test_results(
            loggers[0].experiment,
            root,
            record,
            checkpoint if self._get(self.config, "wandb_log_model") else None,
            N_FIGURE_UTTERANCES,
        )


def main(
    args: list[str] | None = None,
    datamodule_class: type[pl.LightningDataModule] | None = None,
    run: bool = True,
    callbacks: Sequence[pl.Callback] = (),
) -> EmotionCLI:
    """Runs the CLI (`args` as on the command line; `datamodule_class` for tests).

    `run=False` (see `build`) parses `args` without a subcommand and only instantiates;
    `callbacks` join the trainer's own (a benchmark's timer).
    """
    os.environ.setdefault("WANDB_MODE", "offline")
    if datamodule_class is None:
        from datamodules.datamodule import EmotionDataModule

        datamodule_class = EmotionDataModule
    subcommand_kwargs = {"default_config_files": [str(DEFAULTS)]}
    # Without subcommands the defaults go to the main parser (LightningCLI splits by name).
    parser_kwargs: dict[str, Any] = (
        {name: dict(subcommand_kwargs) for name in ("fit", "validate", "test", "predict")}
        if run
        else dict(subcommand_kwargs)
    )
    # last.ckpt after every validation (Lightning's save_last only follows new best ones).
    last = ModelCheckpoint(
        filename="last", monitor=None, save_top_k=1, enable_version_counter=False
    )
    return EmotionCLI(
        EmotionClassifier,
        datamodule_class,
        trainer_defaults={"callbacks": [last, *callbacks]},
        save_config_callback=RunConfigCallback,
        save_config_kwargs={"overwrite": True, "save_to_log_dir": False},
        parser_kwargs=parser_kwargs,
        args=args,
        run=run,
    )


def build(
    args: list[str],
    datamodule_class: type[pl.LightningDataModule] | None = None,
    callbacks: Sequence[pl.Callback] = (),
) -> EmotionCLI:
    """The trainer, model and datamodule `fit` would use with `args`, built but not run.

    Same defaults file, links, callbacks and run-folder loggers as `python -m experiments.train
    fit` (`args` without the subcommand); `cli.trainer.fit(cli.model, datamodule=cli.datamodule)`
    is then `fit` without the test and metrics.json. The benchmarks time steps this way, with
    their timer in `callbacks`.
    """
    return main(args, datamodule_class, run=False, callbacks=callbacks)


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
        LockedError,
        RunError,
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
