"""The one LightningModule: every variant, one shared step, WA/UA/F1 metrics per stage."""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from datamodules.batch import Batch
from lightning_modules.augment import FrameMasking, Mix, WeightAverage, draw_mix, drop_modality
from lightning_modules.branch_init import init_branch
from lightning_modules.metrics import build_metrics, class_names_or_default, summarize
from lightning_modules.model import EmotionNet, ModelConfigError, ModelOutput, modalities_for
from lightning_modules.predictions import PredictionCollector, Predictions
from lightning_modules.probe_init import (
    ProbeFit,
    check_probe_init,
    fit_probe,
    shortcut_features,
    start_head_from_probe,
)
from lightning_modules.record import RECORD_KEY, build_record, model_init_args

log = logging.getLogger(__name__)

SCHEDULERS = ("none", "cosine", "plateau")
SMOOTHING = 0.6  # val/ua_smooth = 0.6 * previous + 0.4 * this epoch (an exponential average)
EMA_KEY = "ser_ema"  # checkpoint key of the live weights of an EMA run
STAGES = ("train", "val", "test")


class EmotionClassifier(pl.LightningModule):
    """Batch -> logits (B, C) for any architecture; cross-entropy, AdamW, metrics per stage.

    `results[stage]` holds the last epoch's metrics.json fields (wa, ua, macro_f1, loss,
    per_class, confusion, n) for each stage that ran; `test_predictions` the last test epoch's
    per-utterance outputs (`Predictions`).
    """

    class_weight: Tensor  # (C,) buffer

    def __init__(
        self,
        architecture: str = "acoustic",
        pooling: str = "attention",
        fusion: str = "gmu",
        hidden_size: int = 128,
        num_layers: int = 1,
        dropout: float = 0.2,
        head_hidden: int = 0,
        sequence_encoder: str = "blstm",
        input_stats: bool = False,
        stats_norm: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        scheduler: str = "none",
        warmup_epochs: int = 0,
        class_weighting: bool = False,
        label_smoothing: float = 0.0,
        mixup: float = 0.0,
        time_masks: int = 0,
        time_width: float = 0.1,
        feature_masks: int = 0,
        feature_width: int = 8,
        frame_dropout: float = 0.0,
        modality_dropout: float = 0.0,
        ema_decay: float = 0.0,
        branch_loss: float = 0.0,
        num_classes: int = 4,
        acoustic_dim: int = 65,
        acoustic_layers: int = 1,
        lexical_dim: int = 384,
        class_names: list[str] | None = None,
        utterance_stats_dim: int = 0,
        init_acoustic: str = "",
        init_lexical: str = "",
        freeze_init: bool = False,
        posterior_branch: str = "",
        probe_init: bool = False,
    ) -> None:
        """Recipe switches (training only, all off by default): `time_masks`/`time_width`,
        `feature_masks`/`feature_width` and `frame_dropout` mask acoustic frames (SpecAugment,
        `lightning_modules.augment`); `modality_dropout` zeroes one modality of an item of a
        two-modality model; `branch_loss` > 0 adds, in training, that weight times the mean
        cross-entropy of each branch's own classifier (mmb, mmmla: each branch must learn on its
        own, so the stronger one cannot starve the other); `label_smoothing` smooths the targets
        of the training loss, branch losses included (val and test losses stay plain); `mixup`
        > 0 mixes each training batch's pooled vectors and targets with lam ~ Beta(mixup,
        mixup) (`augment.Mix`);
        `ema_decay` > 0 validates, tests and saves an exponential moving average of the weights.
        `val/ua_smooth` (an average of val/ua over epochs) is logged for checkpoint selection on
        small val sets. `utterance_stats_dim` > 0 (linked from the datamodule's
        `utterance_stats`) joins each clip's standardised statistics to the acoustic branch.
        `probe_init` starts the head from a logistic probe fitted on its statistics shortcut
        at the start of `fit` (`lightning_modules.probe_init`)."""
        super().__init__()
        if scheduler not in SCHEDULERS:
            raise ModelConfigError(
                f"model.scheduler must be one of {SCHEDULERS}; got {scheduler!r}"
            )
        self.save_hyperparameters()
        self.architecture, self.class_weighting = architecture, class_weighting
        self.lr, self.weight_decay = lr, weight_decay
        self.scheduler, self.warmup_epochs = scheduler, warmup_epochs
        self.class_names = class_names_or_default(class_names, num_classes)
        self.net = EmotionNet(
            architecture,
            num_classes,
            acoustic_dim,
            lexical_dim,
            pooling,
            fusion,
            hidden_size,
            num_layers,
            dropout,
            head_hidden,
            sequence_encoder,
            acoustic_layers,
            branch_heads=branch_loss > 0,
            input_stats=input_stats,
            stats_norm=stats_norm,
            utterance_stats_dim=utterance_stats_dim,
            posterior_branch=posterior_branch,
        )
        try:
            self.frame_masking = FrameMasking(
                time_masks, time_width, feature_masks, feature_width, frame_dropout
            )
        except ValueError as exc:
            raise ModelConfigError(f"model: {exc}") from exc
        if not 0.0 <= modality_dropout < 1.0 or not 0.0 <= ema_decay < 1.0:
            raise ModelConfigError(
                "model.modality_dropout and model.ema_decay must be in [0, 1); got "
                f"{modality_dropout}, {ema_decay}"
            )
        if not 0.0 <= label_smoothing < 1.0:
            raise ModelConfigError(
                f"model.label_smoothing must be in [0, 1); got {label_smoothing}"
            )
        self.label_smoothing = label_smoothing
        if mixup < 0:
            raise ModelConfigError(f"model.mixup (a Beta alpha) must be >= 0; got {mixup}")
        self.mixup = mixup
        if branch_loss < 0:
            raise ModelConfigError(f"model.branch_loss must be >= 0; got {branch_loss}")
        self.init_paths = {
            m: p for m, p in (("acoustic", init_acoustic), ("lexical", init_lexical)) if p
        }
        if freeze_init and not self.init_paths:
            raise ModelConfigError(
                "model.freeze_init freezes the branches model.init_acoustic / model.init_lexical "
                "start from; neither is set"
            )
        self.freeze_init = freeze_init
        self.probe_init = probe_init
        self.probe_record: dict[str, Any] | None = None  # the probe's C and val UA, once fitted
        if probe_init:
            check_probe_init(self.net.encoder, head_hidden)
        self.frozen: list[nn.Module] = []
        self.modality_dropout, self.ema_decay = modality_dropout, ema_decay
        self.branch_loss = branch_loss
        self.ema: WeightAverage | None = None
        self._ema_resume: dict[str, Any] | None = None
        self._ua_smooth: float | None = None
        # A buffer so that a class-weighted model's weights travel in its checkpoint.
        self.register_buffer("class_weight", torch.ones(num_classes))
        metrics = build_metrics(num_classes)
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.results: dict[str, dict[str, Any]] = {}
        self.test_predictions: Predictions | None = None
        self._collector: PredictionCollector | None = None

    @property
    def modalities(self) -> list[str]:
        """The Batch modalities this model reads."""
        return modalities_for(self.architecture)

    def forward(self, batch: Batch, mix: Mix | None = None) -> ModelOutput:
        return self.net(batch, mix)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if stage == "fit" and self.class_weighting and datamodule is not None:
            weights = torch.as_tensor(datamodule.class_weights(), dtype=torch.float32)
            self.class_weight.copy_(weights.to(self.class_weight.device))
        if stage == "fit" and self.init_paths:
            self._init_branches(datamodule)
        if stage == "fit" and self.probe_init and datamodule is not None:
            self.start_from_probe(datamodule)

    def start_from_probe(self, datamodule: Any) -> ProbeFit:
        """The head's statistics shortcut starts at the logistic probe fitted on the training
        part, C picked on val (`probe_init`; the datamodule gives `part_dataloader`), or the
        grid's middle C where there is no val part to pick on (none, or `fit_on` train+val).
        The training order's RNG is left untouched."""
        encoder = check_probe_init(self.net.encoder, self.hparams["head_hidden"])
        # with fit_on train+val the val clips are training clips: no place to pick C
        parts = (
            ["train"] if getattr(datamodule, "fit_on", "train") == "train+val" else ["train", "val"]
        )
        with torch.random.fork_rng(devices=[]):
            features = {
                part: shortcut_features(
                    encoder,
                    datamodule.part_dataloader(part),
                    self.net.layer_mix,
                    fit_norm=part == "train",
                )
                for part in parts
            }
        val = features.get("val")
        fit = fit_probe(
            features["train"], val if val and len(val[1]) else None, len(self.class_names)
        )
        start_head_from_probe(self.net.head.output, encoder, fit)
        self.probe_record = {
            "C": fit.c,
            "val_ua_by_C": {str(c): round(v, 4) for c, v in fit.val_ua.items()},
        }
        log.info(
            "model.probe_init: head started from the logistic probe, C=%g (val UA by C: %s)",
            fit.c,
            {c: round(v, 3) for c, v in fit.val_ua.items()},
        )
        return fit

    def _init_branches(self, datamodule: Any) -> None:
        """Start (and with freeze_init freeze) the branches named by init_acoustic/init_lexical."""
        state = datamodule.state_dict() if datamodule is not None else {}
        test: set[str] = set()
        if datamodule is not None and getattr(datamodule, "split", None):
            speaker_of = datamodule.prepared.speaker_of
            test = {speaker_of[u] for u in datamodule.split["test"]}
        self.frozen = []
        for modality, path in self.init_paths.items():
            branch = init_branch(
                self.net.encoder, modality, path, state, test, list(self.class_names)
            )
            log.info("model.init_%s: %s branch started from %s", modality, modality, path)
            if self.freeze_init:
                branch.requires_grad_(False)
                branch.eval()
                self.frozen.append(branch)

    def train(self, mode: bool = True) -> EmotionClassifier:
        """Train mode, except for frozen branches: their dropout and StatsNorm stay in eval."""
        super().train(mode)
        for branch in getattr(self, "frozen", ()):
            branch.eval()
        return self

    def _augment(self, batch: Batch) -> Batch:
        if batch.acoustic is not None and batch.acoustic_mask is not None:
            batch = replace(batch, acoustic=self.frame_masking(batch.acoustic, batch.acoustic_mask))
        return drop_modality(batch, self.modality_dropout)

    def _shared_step(self, batch: Batch, stage: str) -> Tensor:
        mix: Mix | None = None
        if stage == "train":
            batch = self._augment(batch)
            if self.mixup > 0:
                mix = draw_mix(len(batch), self.mixup, batch.labels.device)
        output = self(batch, mix)
        if stage == "test":
            self._collect(batch, output)
        weight = self.class_weight if self.class_weighting else None
        # smoothed targets in training only: val/test losses stay comparable across runs
        smoothing = self.label_smoothing if stage == "train" else 0.0

        def cross_entropy(logits: Tensor) -> Tensor:
            if mix is not None:
                return mix.loss(logits, batch.labels, weight=weight, label_smoothing=smoothing)
            return F.cross_entropy(logits, batch.labels, weight=weight, label_smoothing=smoothing)

        loss = cross_entropy(output.logits)
        if stage == "train" and self.branch_loss > 0 and output.branch_logits:
            branch = [cross_entropy(logits) for logits in output.branch_logits.values()]
            loss = loss + self.branch_loss * torch.stack(branch).mean()
        preds = output.logits.argmax(-1)
        getattr(self, f"{stage}_metrics").update(preds, batch.labels)
        getattr(self, f"{stage}_loss").update(loss.detach(), weight=len(batch))
        if stage == "train":
            self.log("train/loss_step", loss, batch_size=len(batch), prog_bar=True)
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")

    def predict_step(self, batch: Batch, batch_idx: int) -> ModelOutput:
        return self(batch)

    def _epoch_end(self, stage: str) -> None:
        metrics, loss_mean = getattr(self, f"{stage}_metrics"), getattr(self, f"{stage}_loss")
        if loss_mean.update_count == 0:
            return  # e.g. a stage with no batches
        computed = metrics.compute()  # synced across DDP processes
        loss = loss_mean.compute()
        record = summarize(computed, self.class_names, prefix=f"{stage}/", loss=float(loss))
        self.results[stage] = record
        scalars = {f"{stage}/{k}": record[k] for k in ("wa", "ua", "macro_f1", "loss")}
        scalars |= {f"{stage}/acc_{name}": v for name, v in record["per_class"].items()}
        # torchmetrics already reduced these over processes: sync_dist only averages equal values.
        if stage == "val" and not (self._trainer is not None and self.trainer.sanity_checking):
            ua = float(record["ua"])
            smooth = (
                ua
                if self._ua_smooth is None
                else SMOOTHING * self._ua_smooth + (1 - SMOOTHING) * ua
            )
            self._ua_smooth = smooth
            scalars["val/ua_smooth"] = smooth
        self.log_dict(scalars, prog_bar=stage == "val", sync_dist=True)
        metrics.reset()
        loss_mean.reset()

    def on_train_epoch_end(self) -> None:
        self._epoch_end("train")

    def on_fit_start(self) -> None:
        if self.ema_decay > 0:
            self.ema = WeightAverage(self, self.ema_decay)
            if self._ema_resume is not None:  # the average saved with the resumed checkpoint
                for k, v in self._ema_resume["shadow"].items():
                    if k in self.ema.shadow:
                        self.ema.shadow[k].copy_(v)
                self.ema.steps = int(self._ema_resume["steps"])
                self._ema_resume = None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update()

    def on_validation_epoch_start(self) -> None:
        if self.ema is not None:
            self.ema.swap()  # validate the average

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")
        if self.ema is not None:
            self.ema.swap()  # back to the live weights before training (and saving) go on

    def on_test_epoch_start(self) -> None:
        self._collector = PredictionCollector()

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")
        if self._collector is not None:
            self.test_predictions = self._collector.result(self.class_names, self._frame_step())
            self._collector = None

    def _collect(self, batch: Batch, output: ModelOutput) -> None:
        """Per-utterance probabilities, attention (padding removed) and gate of a test batch."""
        if self._collector is None:
            return
        lengths = {"acoustic": batch.acoustic_lengths, "lexical": batch.word_lengths}
        attention = {
            name: (w.detach().float().cpu().numpy(), n.cpu().numpy())
            for name, w in output.attention.items()
            if (n := lengths.get(name)) is not None and w.dim() == 2
        }
        gate = None if output.gate is None else output.gate.detach().float().cpu().numpy()
        spans = None
        if batch.word_spans is not None and batch.word_mask is not None:
            spans = (batch.word_spans.cpu().numpy(), batch.word_mask.sum(1).cpu().numpy())
        self._collector.add(
            batch.utterance_ids,
            batch.labels.cpu().numpy(),
            torch.softmax(output.logits.detach().float(), -1).cpu().numpy(),
            attention,
            gate,
            spans,
        )

    def _datamodule_state(self) -> dict[str, Any]:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        state = datamodule.state_dict() if datamodule is not None else {}
        return state if isinstance(state, dict) else {}

    def _frame_step(self) -> float:
        return float(self._datamodule_state().get("frame_step_s") or 0.01)

    def configure_optimizers(self) -> Any:
        trainable = [p for p in self.parameters() if p.requires_grad]  # frozen branches: none
        optimizer = torch.optim.AdamW(trainable, lr=self.lr, weight_decay=self.weight_decay)
        if self.scheduler == "plateau":
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", patience=2)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": plateau, "monitor": "val/ua"},
            }
        if self.scheduler == "cosine" or self.warmup_epochs > 0:
            total = max(int(self.trainer.max_epochs or 1), 1) if self._trainer else 1
            warmup = self.warmup_epochs
            cosine = self.scheduler == "cosine"

            def factor(epoch: int) -> float:
                if epoch < warmup:
                    return (epoch + 1) / (warmup + 1)
                if not cosine:
                    return 1.0
                progress = (epoch - warmup) / max(total - warmup, 1)
                return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler}}
        return optimizer

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Resuming an EMA run: train on from the live weights, keep averaging the average.
        saved = checkpoint.get(EMA_KEY)
        fitting = self._trainer is not None and self.trainer.state.fn == "fit"
        if saved and fitting:
            shadow = {k: checkpoint["state_dict"][k] for k in saved["live"]}
            checkpoint["state_dict"].update(saved["live"])
            self._ema_resume = {"shadow": shadow, "steps": saved["steps"]}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.ema is not None:
            # The saved weights are the average (what was validated, and what is tested and
            # served); the live ones travel beside them for --ckpt_path last.
            live = {k: checkpoint["state_dict"][k] for k in self.ema.shadow}
            checkpoint["state_dict"].update({k: v.clone() for k, v in self.ema.shadow.items()})
            checkpoint[EMA_KEY] = {"live": live, "steps": self.ema.steps}
        # The suite's record (lightning_modules.checkpoint): all prediction needs, plain values.
        args = model_init_args(type(self), dict(self.hparams))
        args["class_names"] = list(self.class_names)
        checkpoint[RECORD_KEY] = build_record(
            args, self.class_names, self.modalities, self.net.fusion_name, self._datamodule_state()
        )
