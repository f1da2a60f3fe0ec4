"""Prediction: the CLI on real clips, the acoustic fallback, bad inputs, train/inference features."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.demo_models import REPO, DemoModels, demo_models

# Statement 01 "Kids are talking by the door", 02 "Dogs are sitting by the door".
RAVDESS_CLIPS = (
    "Actor_01/03-01-05-01-01-01-01.flac",  # angry, statement 01
    "Actor_02/03-01-03-02-02-01-02.flac",  # happy, statement 02
    "Actor_03/03-01-04-01-01-02-03.flac",  # sad, statement 01
)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> DemoModels:
    return demo_models(tmp_path_factory.getbasetemp() / "ser-demo-models")


def predict_cli(models: DemoModels, *args: str | Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "experiments.predict", *map(str, args)]
    return subprocess.run(
        cmd, cwd=REPO, env=models.env(), capture_output=True, text=True, timeout=300
    )


def predict_main(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """The CLI's main() in this process (imports and models loaded once per session)."""
    from experiments.predict import main

    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.mark.shared
def test_cli_on_ravdess_clips(models: DemoModels, ravdess_root: Path, tmp_path: Path) -> None:
    clips = [ravdess_root / c for c in RAVDESS_CLIPS]
    clips = [c for c in clips if c.is_file()]
    assert len(clips) >= 2, f"RAVDESS clips missing under {ravdess_root}"
    # Another rate and channel count: 44.1 kHz stereo wav and an mp3 of the first clip.
    x, sr = sf.read(clips[0], dtype="float32")
    from datamodules.audio import resample

    y = resample(x, sr, 44_100)
    stereo = tmp_path / "stereo44k.wav"
    sf.write(stereo, np.stack([y, 0.5 * y], axis=1), 44_100)
    mp3 = tmp_path / "clip.mp3"
    sf.write(mp3, x, sr, format="MP3")
    ckpt = models.checkpoint("mmmla")
    proc = predict_cli(models, "--checkpoint", ckpt, *clips, stereo, mp3)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json_lines(proc.stdout)
    assert [o["file"] for o in out] == [str(p) for p in [*clips, stereo, mp3]]
    classes = {"angry", "happy", "neutral", "sad"}
    for o in out:
        assert set(o["probabilities"]) == classes
        assert sum(o["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert o["label"] == max(o["probabilities"], key=o["probabilities"].get)
        assert o["model_used"] == "mmmla" and not o["fallback"]
        text = o["transcript"].lower()
        assert "door" in text and ("kids" in text or "dogs" in text), o["transcript"]
        assert len(o["words"]) == o["shapes"]["words"][0] >= 4
        t = o["shapes"]["acoustic"][0]
        assert o["shapes"]["acoustic"][1] == 65 and abs(t - o["duration_s"] * 100) < 10
        assert all(0 <= w["first_frame"] < w["last_frame"] <= t for w in o["words"])
        assert set(o["timings_ms"]) == {"load", "asr", "acoustic", "lexical", "model"}
        assert o["model_load_ms"] > 0
    statement = {"01": "kids", "02": "dogs"}
    for o, clip in zip(out, clips, strict=False):
        assert statement[clip.stem.split("-")[4]] in o["transcript"].lower()


def test_silence_is_no_speech_and_noise_falls_back_to_acoustic(
    models: DemoModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    silence, noise = tmp_path / "silence.wav", tmp_path / "noise.wav"
    sf.write(silence, np.zeros(3 * 16_000, np.float32), 16_000)
    rng = np.random.default_rng(0)
    sf.write(noise, (0.1 * rng.standard_normal(3 * 16_000)).astype(np.float32), 16_000)
    rc, stdout, stderr = predict_main(
        capsys, "--checkpoint", models.checkpoint("mmmla"), silence, noise
    )
    assert rc == 0, stderr[-3000:]
    quiet, *out = json_lines(stdout)
    assert quiet["file"] == str(silence) and quiet["label"] is None and quiet["no_speech"]
    assert "no speech detected" in quiet["note"]
    assert len(out) == 1
    fallback = models.checkpoint("acoustic")
    for o in out:
        assert o["words"] == [] and o["fallback"] is True
        assert o["model_used"] == f"acoustic fallback ({fallback})"
        assert "no words" in o["note"] and "mmmla" in o["note"]
        assert sum(o["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert "words" not in o["shapes"]


def test_bad_inputs_get_one_error_line_each(
    models: DemoModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.wav"
    rng = np.random.default_rng(1)
    t = np.arange(16_000) / 16_000
    sf.write(good, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16_000)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + rng.bytes(200))
    text = tmp_path / "notes.wav"
    text.write_text("this is a text file, not audio\n")
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(800, np.float32), 16_000)  # 50 ms
    missing = tmp_path / "missing.wav"
    rc, stdout, stderr = predict_main(
        capsys, "--checkpoint", models.checkpoint("acoustic"), missing, corrupt, good, text, short
    )
    assert rc == 1
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 4, stderr[-3000:]
    for bad, line in zip([missing, corrupt, text, short], errors, strict=True):
        assert str(bad) in line
    assert "not found" in errors[0] and "too short" in errors[3]
    assert "Traceback" not in stderr
    out = json_lines(stdout)
    assert [o["file"] for o in out] == [str(good)]  # the good file between them still answered


def test_missing_checkpoint_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, stderr = predict_main(capsys, "--checkpoint", tmp_path / "nope.ckpt", tmp_path / "a.wav")
    assert rc == 2
    assert f"checkpoint not found: {tmp_path / 'nope.ckpt'}" in stderr


def test_inference_features_equal_the_cached_ones(
    models: DemoModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A training clip's features on the inference path == the cache's, after normalisation."""
    monkeypatch.setenv("SER_CACHE", str(models.cache))
    from datamodules.dataset import inference_batch
    from datamodules.features import load
    from datamodules.utterances import frame_to_utterances, read_table
    from experiments.inference import FeaturePipeline, load_model, read_audio

    model = load_model(models.checkpoint("mmmla"))
    features = FeaturePipeline(model)
    utt = frame_to_utterances(read_table("builtin"))[5]
    cached = load("builtin", model.record["features"]["key"], ("acoustic", "lexical"))
    raw = {
        "acoustic": cached.acoustic[utt.utterance_id],
        "words": cached.words[utt.utterance_id],
        "cls": cached.cls[utt.utterance_id],
        "spans": cached.spans[utt.utterance_id],
    }
    timings: dict[str, float] = {}
    x = read_audio(utt.audio_path)
    live = features.compute(x, utt.words, timings, utt.utterance_id)
    assert set(timings) == {"acoustic", "lexical"}
    np.testing.assert_allclose(live["acoustic"], raw["acoustic"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(live["words"], raw["words"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(live["cls"], raw["cls"], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(live["spans"], raw["spans"])
    a = inference_batch(live, model.modalities, model.normalizer, utt.utterance_id)
    b = inference_batch(raw, model.modalities, model.normalizer, utt.utterance_id)
    # Normalised with the checkpoint's training statistics, not re-fitted on this clip.
    assert a.acoustic.abs().mean() > 0.1 and not torch.allclose(
        a.acoustic, torch.from_numpy(np.array(raw["acoustic"]))
    )
    torch.testing.assert_close(a.acoustic, b.acoustic, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(a.words, b.words, rtol=1e-4, atol=1e-4)
    assert torch.equal(a.word_spans, b.word_spans)


def test_hierarchical_model_answers_wordless_clips_itself(
    models: DemoModels, tmp_path: Path
) -> None:
    """No fallback for the hierarchical model: it runs on the frames alone, and says so."""
    from experiments.inference import Predictor
    from lightning_modules.architectures import ARCHITECTURES
    from lightning_modules.checkpoint import RECORD_KEY, read_checkpoint
    from lightning_modules.system import EmotionClassifier

    ckpt = read_checkpoint(models.checkpoint("mmmla"))
    record = dict(ckpt[RECORD_KEY])
    hparams = {**record["model"], "architecture": "hierarchical"}
    torch.manual_seed(0)
    module = EmotionClassifier(**hparams)  # untrained weights: the path is under test
    record.update(
        architecture="hierarchical",
        model=hparams,
        modalities=list(ARCHITECTURES["hierarchical"].modalities),
        fusion=ARCHITECTURES["hierarchical"].fusion(hparams.get("fusion", "gmu")),
    )
    path = tmp_path / "runs" / "hierarchical" / "checkpoints" / "best.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({RECORD_KEY: record, "state_dict": module.state_dict()}, path)
    pred = Predictor(path).predict_waveform(np.zeros(2 * 16_000, np.float32), "silence")
    assert pred.words == [] and not pred.fallback
    assert pred.model_used == "hierarchical" and "acoustic frames only" in pred.note
    assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    spoken = Predictor(path, asr="none").predict_waveform(
        np.zeros(2 * 16_000, np.float32), "given", transcript="kids are talking"
    )
    assert [w.text for w in spoken.words] == ["kids", "are", "talking"]
    assert spoken.shapes["words"] == [3, hparams["lexical_dim"]] and spoken.note == ""


def test_quiet_speech_is_voice_activity_but_steady_hiss_is_not(ravdess_root: Path) -> None:
    from experiments.audio_input import MIN_SPEECH_S, speech_seconds

    rng = np.random.default_rng(0)
    sr = 16_000
    floor = rng.normal(0, 10 ** (-80 / 20), 3 * sr)  # a quiet room
    burst = np.zeros(3 * sr)
    t = np.arange(sr) / sr
    burst[sr : 2 * sr] = 10 ** (-48 / 20) * np.sqrt(2) * np.sin(2 * np.pi * 220 * t)  # -48 dBFS
    assert speech_seconds((floor + burst).astype(np.float32)) == pytest.approx(1.0, abs=0.1)
    hiss = rng.normal(0, 10 ** (-60 / 20), 3 * sr).astype(np.float32)  # steady, no range
    assert speech_seconds(hiss) == 0.0
    assert speech_seconds(np.full(3 * sr, 10 ** (-50 / 20), np.float32)) == 0.0  # steady hum
    # a real calm-voiced clip that peaks near -36 dBFS (every frame under -45 dBFS)
    clip = ravdess_root / "Actor_09" / "03-01-01-01-01-02-09.flac"
    if not clip.is_file():
        pytest.skip(f"{clip} not found")
    x, _ = sf.read(clip, dtype="float32")
    assert 20 * np.log10(np.abs(x).max()) < -30
    assert speech_seconds(x) > 10 * MIN_SPEECH_S


def test_an_ensemble_averages_its_models_and_a_wordless_clip_leaves_out_those_needing_words(
    models: DemoModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from experiments.inference import PredictError, Predictor
    from lightning_modules.checkpoint import RECORD_KEY, read_checkpoint

    acoustic, mmmla = models.checkpoint("acoustic"), models.checkpoint("mmmla")
    rng = np.random.default_rng(0)
    t = np.arange(2 * 16_000) / 16_000
    x = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.1 * rng.standard_normal(len(t)))
    x = x.astype(np.float32)
    text = "kids are talking by the door"

    def probs(pred) -> np.ndarray:
        return np.array([pred.probabilities[c] for c in sorted(pred.probabilities)])

    alone = {
        name: Predictor(path, asr="none").predict_waveform(x, "clip", transcript=text)
        for name, path in (("acoustic", acoustic), ("mmmla", mmmla))
    }
    assert not np.allclose(probs(alone["acoustic"]), probs(alone["mmmla"]))
    both = Predictor(mmmla, asr="none", ensemble=[acoustic])
    pred = both.predict_waveform(x, "clip", transcript=text)
    np.testing.assert_allclose(
        probs(pred), (probs(alone["acoustic"]) + probs(alone["mmmla"])) / 2, atol=1e-6
    )
    assert (
        pred.ensemble == [str(mmmla), str(acoustic)] and pred.attention == alone["mmmla"].attention
    )
    # no words: MMMLA sits out, the acoustic member answers alone (no fallback needed)
    wordless = both.predict_waveform(x, "clip")
    np.testing.assert_allclose(
        probs(wordless),
        probs(Predictor(acoustic, asr="none").predict_waveform(x, "clip")),
        atol=1e-6,
    )
    assert wordless.ensemble == [str(acoustic)] and not wordless.fallback
    assert "1 of the ensemble's models answered" in wordless.note
    # the CLI: --checkpoint repeated
    clip = tmp_path / "clip.wav"
    sf.write(clip, x, 16_000, subtype="FLOAT")  # the same samples as x
    rc, stdout, stderr = predict_main(
        capsys, "--checkpoint", mmmla, "--checkpoint", acoustic, "--transcript", text, clip
    )
    assert rc == 0, stderr[-3000:]
    (out,) = json_lines(stdout)
    assert out["ensemble"] == [str(mmmla), str(acoustic)]
    np.testing.assert_allclose(
        [out["probabilities"][c] for c in sorted(out["probabilities"])], probs(pred), atol=1e-6
    )
    # a folder stands for every checkpoints/best.ckpt under it
    rc, stdout, stderr = predict_main(
        capsys, "--checkpoint", models.runs / "demo", "--transcript", text, clip
    )
    assert rc == 0, stderr[-3000:]
    (out,) = json_lines(stdout)
    assert out["ensemble"] == [str(acoustic), str(mmmla)]  # path order
    rc, _, stderr = predict_main(capsys, "--checkpoint", tmp_path, clip)
    assert rc == 2 and f"{tmp_path} is a folder with no checkpoints/best.ckpt" in stderr
    # members must predict the same classes
    ckpt = read_checkpoint(acoustic)
    record = {**ckpt[RECORD_KEY], "class_names": ["a", "b", "c", "d"]}
    other = tmp_path / "other.ckpt"
    torch.save({**ckpt, RECORD_KEY: record}, other)
    with pytest.raises(PredictError, match="ensemble checkpoint .*other.ckpt predicts"):
        Predictor(acoustic, ensemble=[other])


@pytest.fixture(scope="module")
def lexical(models: DemoModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A text-only model of the built-in corpus (1 epoch), outside the demo's runs folder."""
    from tests.demo_models import HIDDEN

    root = tmp_path_factory.mktemp("lex")
    cmd = [
        sys.executable, "-m", "experiments.train", "fit",
        "--config", str(REPO / "configs" / "lexical_attention.yaml"),
        "--data.corpus", "builtin", "--trainer.default_root_dir", str(root),
        "--trainer.max_epochs", "1", "--model.hidden_size", str(HIDDEN),
        "--trainer.enable_progress_bar", "false", "--wandb", "false",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=models.env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "checkpoints" / "best.ckpt"


def test_late_fusion_weighs_audio_and_text_checkpoints_and_needs_both(
    models: DemoModels, lexical: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from experiments.inference import PredictError, Predictor

    acoustic, mmmla = models.checkpoint("acoustic"), models.checkpoint("mmmla")
    x = (0.3 * np.sin(2 * np.pi * 180 * np.arange(32_000) / 16_000)).astype(np.float32)
    text = "kids are talking by the door"

    def probs(pred) -> np.ndarray:
        return np.array([pred.probabilities[c] for c in sorted(pred.probabilities)])

    audio = probs(Predictor(acoustic, asr="none").predict_waveform(x, "clip", transcript=text))
    words = probs(Predictor(lexical, asr="none").predict_waveform(x, "clip", transcript=text))
    assert not np.allclose(audio, words)
    late = Predictor(lexical, asr="none", ensemble=[acoustic], text_weight=0.25)
    pred = late.predict_waveform(x, "clip", transcript=text)
    np.testing.assert_allclose(probs(pred), 0.75 * audio + 0.25 * words, atol=1e-6)
    assert pred.text_weight == 0.25 and pred.ensemble == [str(lexical), str(acoustic)]
    # no words: the text model sits out and the audio one answers alone, unweighted
    wordless = late.predict_waveform(x, "clip")
    np.testing.assert_allclose(probs(wordless), audio, atol=1e-6)
    assert wordless.text_weight is None
    # the CLI
    clip = tmp_path / "clip.wav"
    sf.write(clip, x, 16_000, subtype="FLOAT")
    rc, stdout, stderr = predict_main(
        capsys, "--checkpoint", acoustic, "--checkpoint", lexical, "--text-weight", "0.25",
        "--transcript", text, clip,
    )  # fmt: skip
    assert rc == 0, stderr[-3000:]
    (out,) = json_lines(stdout)
    assert out["text_weight"] == 0.25
    np.testing.assert_allclose(
        [out["probabilities"][c] for c in sorted(out["probabilities"])], probs(pred), atol=1e-6
    )
    # a weight needs an audio model and a text-only one, and lies in [0, 1]
    with pytest.raises(PredictError, match="needs checkpoints of both kinds"):
        Predictor(acoustic, ensemble=[mmmla], text_weight=0.3)
    with pytest.raises(PredictError, match=r"must be in \[0, 1\]; got 1.5"):
        Predictor(acoustic, ensemble=[lexical], text_weight=1.5)


def test_a_stacked_fusion_file_fuses_audio_and_text_checkpoints(
    models: DemoModels, lexical: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from experiments.inference import PredictError, Predictor
    from lightning_modules.stacking import fit_posterior_gmu, fused_probabilities, save_fusion

    acoustic = models.checkpoint("acoustic")
    x = (0.3 * np.sin(2 * np.pi * 180 * np.arange(32_000) / 16_000)).astype(np.float32)
    text = "kids are talking by the door"
    audio_only = Predictor(acoustic, asr="none")
    names = audio_only.model.class_names

    def probs(pred) -> np.ndarray:
        return np.array([pred.probabilities[c] for c in names])

    audio = probs(audio_only.predict_waveform(x, "clip", transcript=text))
    words = probs(Predictor(lexical, asr="none").predict_waveform(x, "clip", transcript=text))
    rng = np.random.default_rng(0)
    k = len(names)
    y = rng.integers(0, k, 64)
    gmu = fit_posterior_gmu(rng.dirichlet(np.ones(k), 64), rng.dirichlet(np.ones(k), 64), y)
    path = save_fusion(gmu, names, tmp_path / "fusion.npz")
    expected = fused_probabilities(gmu, audio[None], words[None])[0][0]
    stacked = Predictor(acoustic, asr="none", ensemble=[lexical], fusion=path)
    pred = stacked.predict_waveform(x, "clip", transcript=text)
    np.testing.assert_allclose(probs(pred), expected / expected.sum(), atol=1e-5)
    assert pred.fusion == str(path) and pred.text_weight is None
    wordless = stacked.predict_waveform(x, "clip")  # no words: the audio model alone
    np.testing.assert_allclose(probs(wordless), audio, atol=1e-6)
    assert wordless.fusion is None
    clip = tmp_path / "clip.wav"
    sf.write(clip, x, 16_000, subtype="FLOAT")
    rc, stdout, stderr = predict_main(
        capsys, "--checkpoint", acoustic, "--checkpoint", lexical, "--fusion", path,
        "--transcript", text, clip,
    )  # fmt: skip
    assert rc == 0, stderr[-3000:]
    (out,) = json_lines(stdout)
    assert out["fusion"] == str(path)
    np.testing.assert_allclose([out["probabilities"][c] for c in names], probs(pred), atol=1e-5)
    with pytest.raises(PredictError, match="needs checkpoints of both kinds"):
        Predictor(acoustic, fusion=path)
    with pytest.raises(PredictError, match="not both"):
        Predictor(acoustic, ensemble=[lexical], fusion=path, text_weight=0.3)
    save_fusion(gmu, [*names[:-1], "other"], tmp_path / "other.npz")
    with pytest.raises(PredictError, match="other.npz fuses"):
        Predictor(acoustic, ensemble=[lexical], fusion=tmp_path / "other.npz")
    (tmp_path / "bad.npz").write_text("no")
    with pytest.raises(PredictError, match="bad.npz"):
        Predictor(acoustic, ensemble=[lexical], fusion=tmp_path / "bad.npz")
    # the demo serves the same fusion as a menu entry beside each paired acoustic model
    from experiments import demo

    backend = demo.DemoBackend(
        models.runs, asr="none", late_text=demo.LateText.check(lexical, fusion=path)
    )
    try:
        entry = backend.resolve(f"stacked:{acoustic}")
        served = backend.predictor(entry).predict_waveform(x, "clip", transcript=text)
        np.testing.assert_allclose(probs(served), probs(pred), atol=1e-6)
        assert served.fusion == str(path)
    finally:
        backend.close()


def test_demo_offers_each_acoustic_model_late_fused_with_the_named_text_model(
    models: DemoModels, lexical: Path, tmp_path: Path
) -> None:
    from experiments import demo
    from experiments.inference import Predictor

    acoustic = models.checkpoint("acoustic")
    plain = demo.DemoBackend(models.runs, asr="none")
    late_text = demo.LateText.check(lexical, 0.25)
    backend = demo.DemoBackend(models.runs, asr="none", late_text=late_text)
    try:
        menu = backend.choices()
        assert menu[: len(plain.choices())] == plain.choices()  # the plain entries stay first
        late = [c for c in menu if c.text is not None]
        acoustic_entries = [c for c in plain.choices() if c.architecture == "acoustic"]
        assert [c.checkpoint for c in late] == [c.checkpoint for c in acoustic_entries]
        assert all(c.text == lexical and c.text_weight == 0.25 for c in late)
        assert all(c.label.startswith("late fusion · ") and "(w 0.25)" in c.label for c in late)
        entry = next(c for c in late if c.checkpoint == acoustic)
        # an architecture name still means its plain model
        assert backend.resolve("acoustic").text is None
        x = (0.3 * np.sin(2 * np.pi * 180 * np.arange(32_000) / 16_000)).astype(np.float32)
        text = "kids are talking by the door"

        def probs(pred) -> np.ndarray:
            return np.array([pred.probabilities[c] for c in sorted(pred.probabilities)])

        expected = Predictor(acoustic, asr="none", ensemble=[lexical], text_weight=0.25)
        served = backend.predictor(backend.resolve(entry.key))
        np.testing.assert_allclose(
            probs(served.predict_waveform(x, "clip", transcript=text)),
            probs(expected.predict_waveform(x, "clip", transcript=text)),
            atol=1e-6,
        )
        # through the page's call: no ASR here, so no words, and the acoustic model answers
        clip = tmp_path / "clip.wav"
        sf.write(clip, x, 16_000)
        pred, _, _ = backend.predict(entry.key, clip)
        alone, _, _ = plain.predict(str(acoustic), clip)
        np.testing.assert_allclose(probs(pred), probs(alone), atol=1e-6)
        # the operator's text model must exist and be text-only, its weight in [0, 1]
        with pytest.raises(
            demo.DemoError, match=r"--late-text: .*best.ckpt holds a model of architecture 'mmmla'"
        ):
            demo.LateText.check(models.checkpoint("mmmla"))
        with pytest.raises(demo.DemoError, match="--late-text: no checkpoint at .*nowhere"):
            demo.LateText.check(tmp_path / "nowhere.ckpt")
        with pytest.raises(demo.DemoError, match=r"--text-weight: .*got -0.1"):
            demo.LateText.check(lexical, -0.1)
        assert demo.main(["--late-text", str(acoustic), "--no-examples"]) == 2
    finally:
        backend.close()
        plain.close()
