"""Learning, not just running: models beat chance on a synthetic signal, the built-in corpus and RAVDESS.

The built-in and RAVDESS tests build a real feature cache (espeak-ng synthesis / openSMILE +
MiniLM) and train on CPU for a few epochs: about 5 minutes together on 2 cores. They are part of the
default run because they are the evidence that the models learn. Chance is 0.25 UA for 4 classes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.train import main
from tests.builtin_cache import prepare_builtin
from tests.model_fakes import FakeDataModule

REPO = Path(__file__).resolve().parents[1]
# Short CPU training shared by the tests (a smaller model, cropped clips, a few epochs).
QUICK = ["--model.hidden_size", "32", "--model.lr", "0.003", "--seed_everything", "0",
         "--wandb", "false", "--trainer.enable_progress_bar", "false"]  # fmt: skip


def fit(config: str, root: Path, *extra: str, datamodule_class=None) -> dict:
    """Runs `fit` (then the test of the best checkpoint) and returns metrics.json."""
    args = ["fit", "--config", str(REPO / "configs" / f"{config}.yaml"), *QUICK, *extra]
    main([*args, "--trainer.default_root_dir", str(root)], datamodule_class=datamodule_class)
    return json.loads((root / "metrics.json").read_text())


def test_attention_model_learns_a_synthetic_signal(tmp_path: Path) -> None:
    """Class-shifted frames and words (tests/model_fakes.py): every fused variant must find them."""
    metrics = fit(
        "mmmla", tmp_path, "--model.hidden_size", "16", "--trainer.max_epochs", "6",
        datamodule_class=FakeDataModule,
    )  # fmt: skip
    assert metrics["n"] == 12
    assert metrics["ua"] >= 0.75, metrics


@pytest.fixture(scope="module")
def builtin_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default built-in corpus (4 speakers x 4 classes x 20) with its features, in a tmp cache."""
    return prepare_builtin(tmp_path_factory.mktemp("builtin_cache"))


@pytest.mark.parametrize("config", ["lexical_attention", "mmmla"])
def test_builtin_lexical_and_fused_models_beat_chance(
    config: str, builtin_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SER_CACHE", str(builtin_cache))
    metrics = fit(
        config, tmp_path, "--data.corpus", "builtin", "--data.protocol", "sd8020",
        "--trainer.max_epochs", "8", "--data.max_frames", "150",
    )  # fmt: skip
    assert metrics["n"] >= 40
    assert metrics["ua"] >= 0.45, metrics  # measured: lexical 0.62, MMMLA 0.88 (chance 0.25)


def test_ravdess_acoustic_attention_beats_chance(
    ravdess_root: Path, cache_dir: Path, tmp_path: Path
) -> None:
    """ravdess4 (neutral, happy, sad, angry), Actor_01 and Actor_02 held out."""
    from datamodules.corpora import ravdess
    from datamodules.utterances import write_table

    classes = ["neutral", "happy", "sad", "angry"]
    # The same table as `experiments.prepare ravdess --classes ... --name ravdess4`.
    result = ravdess.read(ravdess_root, ravdess.RavdessOptions(classes=classes))
    write_table("ravdess4", result.utterances, {"reader": "ravdess", "classes": classes})
    metrics = fit(
        "acoustic_attention", tmp_path, "--data.corpus", "ravdess4", "--data.protocol", "speakers",
        "--data.test_speakers", "[Actor_01, Actor_02]", "--data.max_frames", "150",
        "--data.batch_size", "32", "--trainer.max_epochs", "6",
    )  # fmt: skip
    assert metrics["config"]["modality"] == "acoustic" and metrics["n"] == 56
    assert metrics["ua"] >= 0.40, metrics
