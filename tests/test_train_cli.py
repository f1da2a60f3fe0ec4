"""experiments.train (LightningCLI): every config runs, fit writes metrics.json, test and resume work."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from experiments.train import main
from tests.model_fakes import FakeDataModule

REPO = Path(__file__).resolve().parents[1]
VARIANTS = sorted(p for p in (REPO / "configs").glob("*.yaml") if p.name not in ("defaults.yaml",))
EXPECTED = {
    "acoustic_last", "acoustic_mean", "acoustic_attention", "lexical_last", "lexical_cls",
    "lexical_mean", "lexical_attention", "mmb", "mmmla", "hierarchical",
    "acoustic_stats", "acoustic_attentive_stats", "acoustic_probe", "acoustic_attentive_probe",
    "acoustic_attention_tuned", "acoustic_attention_lld",
}  # fmt: skip


def run(args: list[str], root: Path, datamodule_class=FakeDataModule):
    return main(
        [*args, "--trainer.default_root_dir", str(root), "--wandb", "false"],
        datamodule_class=datamodule_class,
    )


def test_every_variant_has_a_config() -> None:
    assert {p.stem for p in VARIANTS} == EXPECTED


@pytest.mark.parametrize("config", VARIANTS, ids=lambda p: p.stem)
def test_config_runs_fast_dev_run(config: Path, tmp_path: Path) -> None:
    cli = run(
        ["fit", "--config", str(config), "--trainer.fast_dev_run", "2", "--model.hidden_size", "8"],
        tmp_path,
    )
    model, data = cli.model, cli.datamodule
    assert data.modalities == model.modalities  # linked from the architecture at parse time
    assert model.hparams.num_classes == 3 and model.hparams.class_names == ["ang", "hap", "sad"]
    assert model.hparams.acoustic_dim == 6 and model.hparams.lexical_dim == 5
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["stage"] == "test" and metrics["checkpoint"] is None  # fast_dev_run keeps none
    assert metrics["config"]["architecture"] == model.hparams.architecture
    assert metrics["n"] == sum(sum(row) for row in metrics["confusion"]["counts"]) > 0


def test_fit_tests_best_checkpoint_then_test_and_resume(tmp_path: Path) -> None:
    root = tmp_path / "run"
    args = ["--config", str(REPO / "configs" / "acoustic_mean.yaml"), "--model.hidden_size", "8"]
    cli = run(["fit", *args, "--trainer.max_epochs", "2", "--seed_everything", "3"], root)
    best, last = root / "checkpoints" / "best.ckpt", root / "checkpoints" / "last.ckpt"
    assert best.is_file() and last.is_file() and (root / "config.yaml").is_file()
    assert (root / "csv" / "metrics.csv").is_file()
    metrics = json.loads((root / "metrics.json").read_text())
    assert Path(metrics["checkpoint"]).resolve() == best.resolve()
    assert set(metrics) >= {"wa", "ua", "macro_f1", "loss", "per_class", "confusion", "n"}
    assert metrics["per_class"].keys() == {"ang", "hap", "sad"}
    config = metrics["config"]
    assert config["modality"] == "acoustic" and config["pooling"] == "mean"
    assert config["fusion"] == "none" and config["seed"] == 3
    assert config["protocol"] == "sd8020" and config["feature_key"] == "fake-key"
    assert cli.datamodule.modalities == ["acoustic"]  # an acoustic model loads no word vectors

    # Checkpoints load without pickled objects and carry the datamodule's state.
    ckpt = torch.load(best, weights_only=True)
    assert ckpt["FakeDataModule"]["class_names"] == ["ang", "hap", "sad"]
    assert ckpt["hyper_parameters"]["architecture"] == "acoustic"

    # `test --ckpt_path` rebuilds the model from the checkpoint's hyperparameters alone.
    test_root = tmp_path / "eval"
    cli = run(["test", "--ckpt_path", str(best)], test_root)
    again = json.loads((test_root / "metrics.json").read_text())
    assert cli.model.hparams.pooling == "mean"
    assert again["ua"] == pytest.approx(metrics["ua"]) and again["n"] == metrics["n"]
    assert again["checkpoint"] == str(best.resolve())

    # A stopped run resumes from last.ckpt and goes on to the new max_epochs.
    before = torch.load(last, weights_only=True)
    cli = run(["fit", *args, "--trainer.max_epochs", "3", "--ckpt_path", "last"], root)
    assert cli.trainer.current_epoch == 3
    after = torch.load(last, weights_only=True)
    assert after["epoch"] == before["epoch"] + 1
    assert after["global_step"] == before["global_step"] * 3 // 2  # one more epoch, not three
    assert before["epoch"] == 1  # last.ckpt follows every epoch, not only the best ones


def test_unknown_key_fails_loudly(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        run(
            ["fit", "--config", str(REPO / "configs" / "mmb.yaml"), "--model.poolng", "mean"],
            tmp_path,
        )
    assert "poolng" in capsys.readouterr().err


def test_bad_architecture_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises((SystemExit, ValueError)):
        run(["fit", "--model.architecture", "video", "--trainer.fast_dev_run", "1"], tmp_path)
    captured = capsys.readouterr()
    assert "architecture" in captured.err + captured.out


def test_wandb_offline_run_holds_confusion_best_summaries_and_full_config(
    tmp_path: Path, monkeypatch
) -> None:
    wandb = pytest.importorskip("wandb")
    from tests.wandb_records import read_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    root = tmp_path / "run"
    main(
        ["fit", "--config", str(REPO / "configs" / "mmmla.yaml"), "--model.hidden_size", "8",
         "--trainer.max_epochs", "2", "--trainer.default_root_dir", str(root),
         "--wandb_log_model", "true"],
        datamodule_class=FakeDataModule,
    )  # fmt: skip
    wandb.finish()  # flush the run's log (a process exit would)
    runs = list((root / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and (root / "metrics.json").is_file()
    run = read_run(runs[0])
    # names and groups say corpus, protocol, feature set and variant; the job type the fold
    assert run.group == "builtin/sd8020/ComParE_2016+minilm/mmmla-attention-gmu"
    assert run.name == run.group + "/fold0/seed0" and run.job_type == "fold0"
    # the whole resolved config, trainer and data included
    cli = run.config["cli"]
    assert cli["trainer"]["max_epochs"] == 2 and cli["data"]["protocol"] == "sd8020"
    assert cli["model"]["hidden_size"] == 8 and run.config["feature_set"] == "ComParE_2016+minilm"
    # best, not last, values in the summary
    assert run.metrics["val/ua"].summary.max and run.metrics["val/loss"].summary.min
    assert set(run.summary["val/ua"]) == {"max"} and set(run.summary["val/loss"]) == {"min"}
    # test confusion matrix, per-class recall, attention and gate figures, the model
    assert {"test/confusion_matrix_table/_type", "test/confusion_counts/_type",
            "test/per_class_recall_table/_type", "test/attention/_type",
            "test/gate/_type"} <= run.history_keys  # fmt: skip
    assert run.summary["test/ua"] == pytest.approx(
        json.loads((root / "metrics.json").read_text())["ua"]
    )
    assert run.summary["budget/epochs_trained"] == 2 and run.summary["budget/n_params"] > 0
    assert any(a.startswith("model:") for a in run.artifacts)


def test_wandb_agent_runs_get_one_folder_each(tmp_path: Path, monkeypatch) -> None:
    """`wandb agent` starts every run with the same arguments; WANDB_RUN_ID tells them apart."""
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep123")
    args = ["fit", "--config", str(REPO / "configs" / "acoustic_mean.yaml"),
            "--model.hidden_size", "8", "--trainer.fast_dev_run", "1"]  # fmt: skip
    for run_id in ("run-a", "run-b"):
        monkeypatch.setenv("WANDB_RUN_ID", run_id)
        run(args, tmp_path / "sweep")
    assert (tmp_path / "sweep" / "run-a" / "metrics.json").is_file()
    assert (tmp_path / "sweep" / "run-b" / "metrics.json").is_file()
    assert not (tmp_path / "sweep" / "metrics.json").exists()


def test_metrics_json_records_the_budget(tmp_path: Path) -> None:
    cli = run(["fit", "--config", str(REPO / "configs" / "acoustic_mean.yaml"),
               "--model.hidden_size", "8", "--trainer.max_epochs", "2"], tmp_path)  # fmt: skip
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    budget = metrics["budget"]
    assert budget["epochs_trained"] == 2 and budget["max_epochs"] == 2
    assert 1 <= budget["best_epoch"] <= 2 and budget["hidden_size"] == 8
    assert budget["n_params"] == sum(p.numel() for p in cli.model.parameters())
    assert budget["feature_set"] == "ComParE_2016"
    # the code it was trained with: this checkout's commit (None where it is not one)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=False) if shutil.which("git") else None  # fmt: skip
    expected = head.stdout.strip() if head is not None and head.returncode == 0 else None
    assert metrics["code"]["commit"] == expected
    assert metrics["code"]["versions"]["torch"] == torch.__version__


def test_real_datamodule_on_twelve_ravdess_clips(
    ravdess_root: Path, cache_dir: Path, tmp_path: Path
) -> None:
    """The real EmotionDataModule and feature cache (openSMILE + MiniLM) through the CLI."""
    from datamodules.corpora import ravdess
    from datamodules.datamodule import EmotionDataModule
    from datamodules.utterances import write_table

    classes = ["neutral", "happy", "sad", "angry"]
    utts = ravdess.read(ravdess_root, ravdess.RavdessOptions(classes=classes)).utterances
    pick = [
        u
        for u in utts
        if u.speaker in ("Actor_01", "Actor_02", "Actor_03")
        and u.extra["repetition"] == 1
        and u.extra["intensity"] == "normal"
        and u.extra["statement"].startswith("Kids")
    ]
    write_table("ravmini", pick, {"reader": "ravdess", "classes": classes})
    data = ["--data.corpus", "ravmini", "--data.protocol", "lospko", "--data.batch_size", "4"]
    for variant in ("acoustic_attention", "lexical_cls", "hierarchical"):
        root = tmp_path / variant
        cli = run(
            ["fit", "--config", str(REPO / "configs" / f"{variant}.yaml"), *data,
             "--model.hidden_size", "8", "--trainer.fast_dev_run", "1"],
            root, datamodule_class=EmotionDataModule,
        )  # fmt: skip
        assert cli.model.hparams.class_names == classes
        expected = {"acoustic_attention": (65, 0), "lexical_cls": (0, 384)}.get(variant, (65, 384))
        assert (cli.model.hparams.acoustic_dim, cli.model.hparams.lexical_dim) == expected
        metrics = json.loads((root / "metrics.json").read_text())
        assert metrics["n"] == 4 and metrics["config"]["corpus"] == "ravmini"  # Actor_01's clips
        assert metrics["config"]["feature_key"].startswith("compare_2016-minilm-last-mean-")


def test_acoustic_model_on_text_only_corpus_is_one_error_line(
    cache_dir: Path, tmp_path: Path
) -> None:
    """No traceback from inside LightningCLI: the corpus error, named, and exit code 2."""
    import subprocess
    import sys

    from datamodules.utterances import Utterance, Word, write_table

    utts = [
        Utterance(f"t{i}", f"s{i % 3}", f"s{i % 3}", ["joy", "anger"][i % 2],
                  transcript="so happy today", words=[Word("so"), Word("happy"), Word("today")])
        for i in range(12)
    ]  # fmt: skip
    write_table("textonly", utts, {"reader": "manifest", "classes": ["anger", "joy"]})
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.train", "fit", "--config",
         str(repo / "configs" / "acoustic_attention.yaml"), "--data.corpus", "textonly",
         "--wandb", "false", "--trainer.default_root_dir", str(tmp_path / "run")],
        cwd=repo, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "error: corpus 'textonly'" in proc.stderr and "no audio" in proc.stderr


def test_build_makes_the_fit_setup_without_running(tmp_path: Path) -> None:
    import pytorch_lightning as pl

    from experiments.train import build

    timer = pl.Callback()
    cli = build(
        ["--config", str(REPO / "configs" / "acoustic_mean.yaml"), "--model.hidden_size", "8"]
        + ["--trainer.default_root_dir", str(tmp_path), "--wandb", "false"],
        datamodule_class=FakeDataModule,
        callbacks=[timer],
    )
    assert timer in cli.trainer.callbacks
    # configs/defaults.yaml is read as by `fit`: trainer, callbacks and the data->model links
    assert cli.trainer.max_epochs == 30 and cli.trainer.gradient_clip_val == 1.0
    assert cli.trainer.checkpoint_callback.monitor == "val/ua"
    assert cli.model.hparams.architecture == "acoustic" and cli.model.hparams.num_classes == 3
    assert cli.datamodule.modalities == ["acoustic"]
    assert not (tmp_path / "metrics.json").exists() and cli.trainer.state.fn is None
