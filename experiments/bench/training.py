"""Training throughput, and the accuracy section: the classic baseline vs the suite's model.

Both train through `experiments.train`, the trainer users get from the variant's config:
throughput times steps of `train.build(...)` with a callback, accuracy runs `train.main(["fit",
...])` and reads the run's metrics.json.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from datamodules.paths import REPO_ROOT
from experiments.bench.common import RAVDESS_CLASSES, BenchError, Context, quiet, stat
from experiments.bench.features import make_synthetic_corpus, synth_name

log = logging.getLogger("experiments.bench")

# variant name -> its config file; the models are exactly what `make train CONFIG=...` builds
ARCHITECTURES: dict[str, Path] = {
    "acoustic_attention": REPO_ROOT / "configs" / "acoustic_attention.yaml",
    "mmmla": REPO_ROOT / "configs" / "mmmla.yaml",
}
WARMUP_STEPS = 3
# What a timed run changes in the user's setup: no validation, loggers, bars or W&B.
TIMING_ARGS = [
    "--trainer.limit_val_batches=0",
    "--trainer.num_sanity_val_steps=0",
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--early_stopping.check_on_train_epoch_end=false",  # val/ua never exists here
    "--wandb=false",
]


class StepTimer(pl.Callback):
    """Wall time of train steps after a warm-up, the time between steps, the padding share."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.t_start: float | None = None
        self.t_last_end: float | None = None
        self.utterances = self.steps = self.seen = 0
        self.real_frames = self.padded_frames = 0
        self.data_wait = 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:  # noqa: ANN001
        now = time.perf_counter()
        step = self.seen  # batch_idx restarts every epoch: count steps here
        self.seen += 1
        if step == self.warmup:
            self.t_start = now
        elif step > self.warmup and self.t_last_end is not None:
            self.data_wait += now - self.t_last_end
        if step >= self.warmup:
            self.utterances += len(batch)
            self.steps += 1
            mask = batch.acoustic_mask if batch.acoustic is not None else batch.word_mask
            self.real_frames += int(mask.sum())
            self.padded_frames += int(mask.numel())

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.t_last_end = time.perf_counter()

    def result(self) -> dict[str, float]:
        if self.t_start is None or self.t_last_end is None or not self.steps:
            raise BenchError("too few training steps to time (raise --train-steps)")
        elapsed = self.t_last_end - self.t_start
        return {
            "utt_per_s": self.utterances / elapsed,
            "step_s": elapsed / self.steps,
            "data_wait_share": self.data_wait / elapsed,
            "padding_share": 1.0 - self.real_frames / max(self.padded_frames, 1),
        }


def time_training(
    corpus: str, variant: str, bucketing: bool, steps: int, warmup: int, seed: int = 0
) -> dict[str, Any]:
    """Utterances per second of `steps` train steps (after `warmup`) of the user's trainer."""
    from experiments.train import build

    quiet()
    with tempfile.TemporaryDirectory(prefix="ser-bench-train-") as root:
        timer = StepTimer(warmup)
        cli = build(
            [
                f"--config={ARCHITECTURES[variant]}",
                f"--data.corpus={corpus}",
                f"--data.bucketing={str(bucketing).lower()}",
                f"--data.seed={seed}",
                f"--seed_everything={seed}",
                f"--trainer.default_root_dir={root}",
                f"--trainer.max_steps={steps + warmup}",
                *TIMING_ARGS,
            ],
            callbacks=[timer],
        )
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return {
        **timer.result(),
        "n_train": len(cli.datamodule.datasets["train"]),
        "accelerator": type(cli.trainer.accelerator).__name__,
    }


def bench_training(ctx: Context) -> dict[str, Any]:
    """Utterances/s per variant and bucketing setting; epoch time extrapolated from the rate."""
    t0 = time.perf_counter()
    make_synthetic_corpus(synth_name(ctx), ctx.n_synthetic)
    build_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "corpus": f"synthetic IEMOCAP-sized ({ctx.n_synthetic} utterances, lognormal lengths "
        "mean 4.5 s, 65-d frames at 100/s, ~12 words of 384-d), protocol sd8020, batch 16",
        "steps_per_run": ctx.train_steps,
        "warmup_steps": WARMUP_STEPS,
        "synthetic_cache_build_s": round(build_s, 1),
        "runs": {},
        "note": "the trainer of `experiments.train fit --config configs/<variant>.yaml` "
        "without validation; epoch_s = train utterances / utt_per_s (extrapolated from the "
        "timed steps; validation not included)",
    }
    for variant in ARCHITECTURES:
        for bucketing in (True, False):
            runs = [
                time_training(
                    synth_name(ctx), variant, bucketing, ctx.train_steps, WARMUP_STEPS, seed=r
                )
                for r in range(ctx.repeats)
            ]
            n_train = runs[0]["n_train"]
            name = f"{variant}/{'bucketing' if bucketing else 'no_bucketing'}"
            out["runs"][name] = {
                "utt_per_s": stat([r["utt_per_s"] for r in runs], 1),
                "step_s": stat([r["step_s"] for r in runs], 3),
                "epoch_s": stat([n_train / r["utt_per_s"] for r in runs], 1),
                "data_wait_share": stat([r["data_wait_share"] for r in runs], 3),
                "padding_share": stat([r["padding_share"] for r in runs], 3),
                "n_train": n_train,
                "accelerator": runs[0]["accelerator"],
            }
            log.info("training %s: %s utt/s", name, out["runs"][name]["utt_per_s"]["median"])
    return out


def fit_suite_model(
    ctx: Context, variant: str, seed: int, epochs: int, out_dir: Path
) -> tuple[dict[str, Any], Path]:
    """`python -m experiments.train fit` of `variant` on the bench split; test scores, best.ckpt."""
    from experiments.train import main, user_error

    quiet()
    args = [
        "fit",
        f"--config={ARCHITECTURES[variant]}",
        f"--data.corpus={ctx.corpus4}",
        "--data.protocol=speakers",
        f"--data.test_speakers={json.dumps(ctx.test_speakers)}",
        f"--seed_everything={seed}",
        f"--data.seed={seed}",
        f"--trainer.max_epochs={epochs}",
        f"--trainer.default_root_dir={out_dir}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--wandb=false",
    ]
    if ctx.val_speakers:
        args.append(f"--data.val_speakers={json.dumps(ctx.val_speakers)}")
    t0 = time.perf_counter()
    try:
        cli = main(args)
    except Exception as exc:
        found = user_error(exc)
        if found is None:
            raise
        raise BenchError(f"training {variant} on {ctx.corpus4}: {found}") from exc
    fit_s = time.perf_counter() - t0
    metrics = json.loads((out_dir / "metrics.json").read_text(encoding="utf-8"))
    split = cli.datamodule.split
    return {
        "ua": float(metrics["ua"]),
        "wa": float(metrics["wa"]),
        "macro_f1": float(metrics["macro_f1"]),
        "fit_s": fit_s,
        "epochs": epochs,
        "n": {p: len(split[p]) for p in ("train", "val", "test")},
    }, out_dir / "checkpoints" / "best.ckpt"


def bench_baseline(ctx: Context) -> dict[str, Any]:
    """`experiments.baselines` (functionals + SVM) and the acoustic attention model, one split."""
    from datamodules.splits import load_or_create_split
    from experiments.baselines import BaselineError, baseline_scores

    split = load_or_create_split(
        ctx.corpus4, "speakers", 0, 0, ctx.test_speakers, ctx.val_speakers or None
    )
    try:
        svm = baseline_scores(ctx.corpus4, split, workers=ctx.workers)
    except BaselineError as exc:
        raise BenchError(f"baseline on {ctx.corpus4}: {exc}") from exc
    svm.pop("classes")
    runs = []
    for seed in range(ctx.repeats):
        out_dir = ctx.cache / "checkpoints" / f"acoustic_attention-seed{seed}"
        shutil.rmtree(out_dir, ignore_errors=True)
        res, path = fit_suite_model(ctx, "acoustic_attention", seed, ctx.epochs, out_dir)
        runs.append(res)
        ctx.checkpoints.setdefault("acoustic_attention", path)
    return {
        "corpus": ctx.corpus4,
        "classes": RAVDESS_CLASSES if ctx.corpus4.startswith("bench_ravdess") else None,
        "protocol": "speakers",
        "test_speakers": ctx.test_speakers,
        "val_speakers": ctx.val_speakers,
        "n": svm.pop("n"),
        "svm_compare_functionals": svm,
        "acoustic_attention": {
            "ua": stat([r["ua"] for r in runs], 3),
            "wa": stat([r["wa"] for r in runs], 3),
            "macro_f1": stat([r["macro_f1"] for r in runs], 3),
            "fit_s": stat([r["fit_s"] for r in runs], 1),
            "epochs": ctx.epochs,
            "seeds": list(range(ctx.repeats)),
            "n": runs[0]["n"],
        },
        "note": "acoustic_attention: `experiments.train fit` with configs/acoustic_attention.yaml "
        "(early stopping and best-checkpoint testing included; fit_s includes the test)",
    }
