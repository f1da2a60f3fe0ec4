"""Speed perturbation (`data.speed_perturb`): the signal, the copies' table and cache, the
datamodule's training part, the features CLI and a training run that records it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import datamodules.datamodule as dm_module
from datamodules.audio import SAMPLE_RATE, AudioError, change_speed, load_audio
from datamodules.corpus import PreparedCorpus
from datamodules.datamodule import DataModuleError, EmotionDataModule
from datamodules.features import FeatureConfig, extract, feature_key, load
from datamodules.features.frontends import CompareLLD
from datamodules.perturb import PerturbError, check_factors, copy_id, speed_view
from datamodules.utterances import Utterance, Word, write_table
from tests.test_datamodule import LABELS, FakeSource, toy_corpus

REPO = Path(__file__).resolve().parents[1]


def tone(freq: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_change_speed_shortens_the_clip_and_raises_its_pitch() -> None:
    x = tone(200.0)
    fast = change_speed(x, 1.25)
    assert len(fast) == round(len(x) / 1.25)
    spectrum = np.abs(np.fft.rfft(fast))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(fast)
    assert abs(peak_hz - 250.0) < 2.0  # read at the same rate: 1.25 times the pitch
    assert len(change_speed(x, 0.9)) == round(len(x) / 0.9)
    assert change_speed(x, 1.0) is x
    with pytest.raises(AudioError, match="speed factor must be > 0"):
        change_speed(x, 0.0)


def test_factors_are_checked_and_named() -> None:
    assert check_factors([1.1, 0.9, 1.1]) == [0.9, 1.1]
    assert check_factors(None) == []
    for bad in ([1.0], [3.0], [0.2]):
        with pytest.raises(PerturbError, match=r"data\.speed_perturb: .* differ from 1"):
            check_factors(bad)
    with pytest.raises(PerturbError, match="data.speed_perturb: 'fast' is not a number"):
        check_factors(["fast"])


def test_a_speed_view_holds_copies_as_new_speakers_with_scaled_word_times(
    cache_dir: Path,
) -> None:
    write_table("toy", toy_corpus(1, 4), {"reader": "test", "classes": list(LABELS)})
    corpus = PreparedCorpus.load("toy")
    view = speed_view(corpus, 0.8)
    row, copy = corpus.table.iloc[1], view.table.iloc[1]
    assert (
        copy["utterance_id"] == copy_id(row["utterance_id"], 0.8) == f"{row['utterance_id']}@sp0.8"
    )
    assert copy["speaker"] == f"{row['speaker']}@sp0.8" and copy["label"] == row["label"]
    assert copy["audio_path"] == row["audio_path"] and copy["speed"] == 0.8
    assert copy["duration_s"] == pytest.approx(row["duration_s"] / 0.8)
    words, copied = json.loads(row["words"]), json.loads(copy["words"])
    assert [w[0] for w in copied] == [w[0] for w in words] and words
    assert copied[0][1] == pytest.approx(words[0][1] / 0.8)
    assert corpus.table.columns.tolist() == PreparedCorpus.load("toy").table.columns.tolist()
    # each speed has its own feature key, named in its slug; the clips' key is unchanged
    keys = {feature_key(v, FeatureConfig()) for v in (corpus, view, speed_view(corpus, 1.1))}
    assert len(keys) == 3 and feature_key(view, FeatureConfig()).split("-")[4] == "sp0.8"


def toy_audio_corpus(folder: Path, speakers: int = 3) -> list[Utterance]:
    """One harmonic clip per class and speaker (1-1.5 s), on disk as 16 kHz WAV."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for s in range(speakers):
        speaker = f"S{s}{'FM'[s % 2]}"
        for i, label in enumerate(LABELS):
            seconds = 1.0 + 0.1 * i
            x = tone(120.0 + 40 * i + 10 * s, seconds) + 0.5 * tone(2 * (120.0 + 40 * i), seconds)
            path = folder / f"{speaker}_{label}.wav"
            sf.write(path, x, SAMPLE_RATE)
            out.append(
                Utterance(
                    utterance_id=f"{speaker}_{label}",
                    speaker=speaker,
                    session=speaker,
                    label=label,
                    audio_path=str(path),
                    duration_s=seconds,
                    transcript="so it is",
                    words=[Word("so", 0.1, 0.3), Word("it", 0.35, 0.5), Word("is", 0.55, 0.8)],
                )
            )
    return out


def test_copies_are_cached_from_the_sped_up_audio_and_resume(
    cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from experiments.features import main as features_main

    utts = toy_audio_corpus(tmp_path / "wav")
    write_table("tones", utts, {"reader": "test", "classes": list(LABELS)})
    args = ["tones", "--modalities", "acoustic", "--workers", "1", "--no-progress"]
    assert features_main([*args, "--speed-perturb", "0.8,1.25"]) == 0
    keys = [line[5:] for line in capsys.readouterr().out.splitlines() if line.startswith("key: ")]
    assert len(keys) == 3 and keys[1].split("-")[4] == "sp0.8" and "sp1.25" in keys[2]
    corpus = PreparedCorpus.load("tones")
    clips = load(corpus, keys[0], ["acoustic"]).acoustic
    slow = load(speed_view(corpus, 0.8), keys[1], ["acoustic"]).acoustic
    uid = utts[2].utterance_id
    expected = CompareLLD().encode(change_speed(load_audio(utts[2].audio_path), 0.8))
    np.testing.assert_array_equal(slow[copy_id(uid, 0.8)], expected)
    assert len(slow[copy_id(uid, 0.8)]) == pytest.approx(len(clips[uid]) / 0.8, abs=2)
    # a rerun finds all three caches complete and computes nothing
    report = extract(speed_view(corpus, 0.8), FeatureConfig(), ["acoustic"], workers=1)
    assert report.key == keys[1] and report.done() == {}
    assert features_main([*args, "--speed-perturb", "1"]) == 2
    assert "data.speed_perturb: 1 must lie in" in capsys.readouterr().err


def test_training_part_gains_the_copies_and_nothing_else_changes(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_table("toy", toy_corpus(), {"reader": "test", "classes": list(LABELS)})
    speeds: list[list[float]] = []

    class SpeedSource(FakeSource):
        def extract(self, corpus, config, modalities):  # noqa: ANN001, ANN201
            speeds.append(sorted({float(v) for v in corpus.table.get("speed", [1.0])}))
            return super().extract(corpus, config, modalities)

    monkeypatch.setattr(dm_module, "FEATURES", SpeedSource())

    def make(**kwargs) -> EmotionDataModule:
        dm = EmotionDataModule(corpus="toy", protocol="loso", fold=0, batch_size=8, **kwargs)
        dm.prepare_data()
        dm.setup("fit")
        return dm

    plain = make(normalization="speaker")
    dm = make(normalization="speaker", speed_perturb=[1.1, 0.9])
    # the clips, then copies of the whole corpus at each factor
    assert speeds == [[1.0], [1.0], [0.9], [1.1]]
    train = plain.split["train"]
    expected = [*train, *(copy_id(u, 0.9) for u in train), *(copy_id(u, 1.1) for u in train)]
    assert dm.datasets["train"].ids == expected and dm.copies == expected[len(train) :]
    assert dm.datasets["train"].labels == plain.datasets["train"].labels * 3
    assert dm.datasets["train"].speakers[len(train)].endswith("@sp0.9")
    for part in ("val", "test"):
        assert dm.datasets[part].ids == plain.datasets[part].ids
    # every copy is a speaker of its own for the per-speaker statistics; the global fallback
    # is still fitted on the clips alone
    assert f"{plain.datasets['train'].speakers[0]}@sp1.1" in dm.normalizer.speaker_mean
    np.testing.assert_allclose(dm.normalizer.mean, plain.normalizer.mean, rtol=1e-6)
    batches = list(dm.train_dataloader())
    assert sum(len(b.labels) for b in batches) == 3 * len(train)
    assert dm.state_dict()["speed_perturb"] == [0.9, 1.1]
    assert plain.state_dict()["speed_perturb"] == []
    with pytest.raises(DataModuleError, match=r"data\.speed_perturb: 1 must lie in"):
        EmotionDataModule(corpus="toy", speed_perturb=[1.0])


def train_on_tones(tmp_path: Path, config: str, *args: str) -> Path:
    """One epoch of `configs/<config>` on 4 speakers' tone clips (corpus "tones", leave one
    speaker out), with `args` added; the run folder."""
    from experiments.train import main

    write_table(
        "tones", toy_audio_corpus(tmp_path / "wav", 4), {"reader": "test", "classes": list(LABELS)}
    )
    root = tmp_path / "run"
    main(
        ["fit", "--config", str(REPO / "configs" / config), "--data.corpus", "tones",
         "--data.protocol", "lospko", "--data.batch_size", "4", "--trainer.max_epochs", "1",
         "--trainer.default_root_dir", str(root), "--wandb", "false", *args],
        datamodule_class=EmotionDataModule,
    )  # fmt: skip
    return root


def test_a_training_run_with_speed_perturbation_records_it(cache_dir: Path, tmp_path: Path) -> None:
    from experiments.benchmark import recipe_labels

    root = train_on_tones(
        tmp_path, "acoustic_attention.yaml", "--data.speed_perturb", "[0.9, 1.1]",
        "--model.hidden_size", "8",
    )  # fmt: skip
    metrics = json.loads((root / "metrics.json").read_text())
    assert metrics["n"] == 4  # the test speaker's own clips, never a copy
    assert metrics["config"]["speed_perturb"] == [0.9, 1.1]
    # the benchmark gives such runs a row of their own
    assert "speed perturbation [0.9, 1.1]" in recipe_labels(metrics["config"])
    ckpt = torch.load(root / "checkpoints" / "best.ckpt", weights_only=True, map_location="cpu")
    state = ckpt["EmotionDataModule"]
    assert state["speed_perturb"] == [0.9, 1.1]
    assert "-sp" not in state["feature_key"]  # the clips' features are what prediction uses

    # ... and trains the SVM on functionals of the same copies, beside the plain SVM
    from experiments.benchmark import run_benchmark

    rows, _ = run_benchmark(root, out=tmp_path / "table")
    names = {r["name"] for r in rows}
    assert {"svm functionals", "svm functionals · speed perturbation [0.9, 1.1]"} <= names
    files = (cache_dir / "tones" / "functionals").glob("ComParE_2016*.npz")
    tags = sorted(f.name.removeprefix("ComParE_2016").rsplit("-", 1)[0] for f in files)
    assert tags == ["", "-sp0.9", "-sp1.1"]  # the clips' and each speed's own cache
