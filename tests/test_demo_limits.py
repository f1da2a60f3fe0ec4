"""Demo backend under hostile input (issue #15): duration cap, silence, model field, queue, LRU,
windows, playback files. A stand-in predictor replaces the model: these are the backend's rules."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from experiments import demo, demo_backend, demo_models
from experiments.inference import WINDOW_S, Prediction, Predictor
from lightning_modules.stacking import PosteriorGMU, save_fusion

SR = 16_000


class FakePredictor(Predictor):
    """The real Predictor's windows and voice-activity check around a stand-in model."""

    loaded: list[Path] = []
    built: list[tuple[Path, list[Path], float | None, Path | None]] = []
    calls: list[int] = []
    delay = 0.0
    load_ms = 1.0

    def __init__(
        self,
        ckpt,
        fallback=None,
        asr="none",
        runs_dir=None,
        ensemble=(),
        text_weight=None,
        fusion=None,
    ) -> None:
        FakePredictor.loaded.append(Path(ckpt))
        FakePredictor.built.append((Path(ckpt), [Path(p) for p in ensemble], text_weight, fusion))

    def predict_waveform(self, x, name, transcript=None, timings=None, progress=None):
        FakePredictor.calls.append(len(x))
        time.sleep(FakePredictor.delay)
        return Prediction(name, "", [], "hap", {"hap": 0.7, "sad": 0.3}, "acoustic", "x", False,
                          "", len(x) / SR, 0.01, {"acoustic": [len(x) // 160, 65]}, {},
                          {"acoustic": [1.0 / max(1, len(x) // 160)] * (len(x) // 160)})  # fmt: skip


@pytest.fixture
def backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> demo.DemoBackend:
    runs = tmp_path / "runs"
    ckpts = [runs / n / "checkpoints" / "best.ckpt" for n in ("a", "b", "c")]
    for c in ckpts:
        c.parent.mkdir(parents=True)
        c.write_bytes(b"x")
    menu = [demo.ModelChoice(str(c), c.parent.parent.name, "acoustic", c) for c in ckpts]
    monkeypatch.setattr(demo_backend, "available_models", lambda _runs, _late=None: menu)
    monkeypatch.setattr(demo, "available_models", lambda _runs, _late=None: menu)  # the tests' list
    monkeypatch.setattr(demo_backend, "Predictor", FakePredictor)
    monkeypatch.setattr(demo_models, "checkpoint_record", lambda _c: {"architecture": "acoustic"})
    FakePredictor.loaded, FakePredictor.calls, FakePredictor.delay = [], [], 0.0
    FakePredictor.built = []
    b = demo.DemoBackend(runs, max_upload_mb=50, asr="none", max_duration_s=60, queue_limit=1)
    yield b
    b.close()


def speech(path: Path, seconds: float) -> Path:
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR)
    return path


def test_audio_over_the_duration_cap_is_refused(backend, tmp_path: Path) -> None:
    with pytest.raises(demo.DemoError, match=r"long\.wav: 61\.0 s of audio is over .* 60 s limit"):
        backend.predict("acoustic", speech(tmp_path / "long.wav", 61))
    assert FakePredictor.calls == []  # refused from the header, before decoding


def test_silence_is_no_speech_not_a_label(backend, tmp_path: Path) -> None:
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.random.default_rng(0).normal(0, 1e-4, SR * 2).astype(np.float32), SR)
    with pytest.raises(demo.DemoError, match="quiet.wav: no speech detected"):
        backend.predict("acoustic", quiet)
    assert FakePredictor.calls == []


def test_model_field_takes_only_menu_names(backend, tmp_path: Path, monkeypatch) -> None:
    touched: list[str] = []
    real = Path.is_file
    monkeypatch.setattr(Path, "is_file", lambda p: touched.append(str(p)) or real(p))
    clip = speech(tmp_path / "ok.wav", 1)
    secret = tmp_path / "elsewhere" / "best.ckpt"
    secret.parent.mkdir()
    secret.write_bytes(b"x")
    for key in (str(secret), "../../etc/passwd", "/dev/zero", "builtin:../../x"):
        with pytest.raises(demo.DemoError, match="unknown model"):
            backend.predict(key, clip)
    assert not [t for t in touched if "elsewhere" in t or "passwd" in t or "zero" in t]
    assert FakePredictor.loaded == []


def test_loaded_models_are_bounded_lru(backend, tmp_path: Path) -> None:
    clip = speech(tmp_path / "ok.wav", 1)
    keys = [c.key for c in demo.available_models(backend.runs_dir)]
    for key in (keys[0], keys[1], keys[0], keys[2]):
        backend.predict(key, clip)
    assert list(backend._predictors) == [keys[0], keys[2]]  # b was least recent
    assert len(FakePredictor.loaded) == 3


def test_one_request_per_model_and_a_bounded_queue(backend, tmp_path: Path) -> None:
    clip = speech(tmp_path / "ok.wav", 1)
    key = demo.available_models(backend.runs_dir)[0].key
    FakePredictor.delay = 1.0
    results: list[str] = []

    def ask() -> None:
        try:
            backend.predict(key, clip)
            results.append("ok")
        except demo.DemoError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join()
    assert results.count("ok") == 2  # one running, one waiting (queue_limit=1)
    assert sum("busy" in r for r in results) == 2


def test_long_audio_is_predicted_in_windows(backend, tmp_path: Path) -> None:
    key = demo.available_models(backend.runs_dir)[0].key
    pred, _, _ = backend.predict(key, speech(tmp_path / "50s.wav", 50))
    assert max(FakePredictor.calls) <= WINDOW_S * SR and len(FakePredictor.calls) == 2
    assert pred.duration_s == 50 and "2 windows" in pred.note
    assert sum(pred.probabilities.values()) == pytest.approx(1.0)


def test_playback_files_are_bounded_and_removed_at_close(backend, tmp_path: Path) -> None:
    clip = speech(tmp_path / "ok.wav", 0.5)
    key = demo.available_models(backend.runs_dir)[0].key
    for _ in range(demo.KEEP_PLAYBACK + 3):
        backend.predict(key, clip)
    assert len(list(backend.playback_dir.glob("*.wav"))) == demo.KEEP_PLAYBACK
    backend.close()
    assert not backend.playback_dir.exists()


def test_late_fusion_entries_pair_acoustic_models_of_the_text_models_classes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    records = {
        "a4": ("acoustic", ["ang", "hap", "neu", "sad"]),
        "a8": ("acoustic", ["ang", "cal", "dis", "fea", "hap", "neu", "sad", "sur"]),
        "m4": ("mmmla", ["ang", "hap", "neu", "sad"]),
        "text": ("lexical", ["ang", "hap", "neu", "sad"]),
    }
    for name in records:
        c = runs / name / "checkpoints" / "best.ckpt"
        c.parent.mkdir(parents=True)
        c.write_bytes(b"x")

    def record(path) -> dict:
        arch, classes = records[Path(path).parent.parent.name]
        return {"architecture": arch, "class_names": classes, "data": {"corpus": "c"}}

    monkeypatch.setattr(demo_models, "checkpoint_record", record)
    monkeypatch.setattr(demo_backend, "Predictor", FakePredictor)
    FakePredictor.loaded, FakePredictor.built, FakePredictor.calls = [], [], []
    text = runs / "text" / "checkpoints" / "best.ckpt"
    late_text = demo.LateText.check(text, 0.4)
    menu = demo.available_models(runs, late_text)
    late = [c for c in menu if c.text is not None]
    # only the 4-class acoustic model: the 8-class one and the fused model get no entry
    assert [(c.checkpoint.parent.parent.name, c.text, c.text_weight) for c in late] == [
        ("a4", text, 0.4)
    ]
    assert late[0].key.startswith("late:") and menu[-1] == late[0]
    assert late[0].label == "late fusion · runs/a4 (c) + text runs/text (w 0.40)"
    assert len(menu) == len(demo.available_models(runs)) + 1
    backend = demo.DemoBackend(runs, asr="none", max_duration_s=60, late_text=late_text)
    try:
        backend.predict(late[0].key, speech(tmp_path / "ok.wav", 1))
        assert FakePredictor.built == [(late[0].checkpoint, [text], 0.4, None)]
        backend.predict("acoustic", speech(tmp_path / "ok.wav", 1))  # the plain a4 model
        assert FakePredictor.built[-1] == (late[0].checkpoint, [], None, None)
        assert list(backend._predictors) == [late[0].key, str(late[0].checkpoint)]
    finally:
        backend.close()
    with pytest.raises(
        demo.DemoError, match=r"--late-text: .*a4.*holds a model of architecture 'acoustic'"
    ):
        demo.LateText.check(runs / "a4" / "checkpoints" / "best.ckpt")
    # a fusion file adds one stacked entry per paired acoustic model, after the late ones
    fusion = save_fusion(PosteriorGMU(4), records["text"][1], tmp_path / "f.npz")
    stacked_text = demo.LateText.check(text, 0.4, fusion)
    menu = demo.available_models(runs, stacked_text)
    assert [c.key for c in menu[-2:]] == [late[0].key, f"stacked:{late[0].checkpoint}"]
    entry = menu[-1]
    assert (entry.text, entry.text_weight, entry.fusion) == (text, None, fusion)
    assert entry.label == "stacked fusion · runs/a4 (c) + text runs/text (GMU f.npz)"
    backend = demo.DemoBackend(runs, asr="none", max_duration_s=60, late_text=stacked_text)
    try:
        backend.predict(entry.key, speech(tmp_path / "ok.wav", 1))
        assert FakePredictor.built[-1] == (entry.checkpoint, [text], None, fusion)
    finally:
        backend.close()
    save_fusion(PosteriorGMU(8), records["a8"][1], tmp_path / "f8.npz")
    with pytest.raises(demo.DemoError, match=r"--fusion: .*f8.npz fuses \['ang', 'cal'"):
        demo.LateText.check(text, 0.4, tmp_path / "f8.npz")
    (tmp_path / "bad.npz").write_bytes(b"no")
    with pytest.raises(demo.DemoError, match=r"--fusion: cannot read fusion file .*bad.npz"):
        demo.LateText.check(text, 0.4, tmp_path / "bad.npz")
    assert demo.main(["--fusion", str(fusion), "--no-examples", "--train", ""]) == 2
    assert "--fusion needs --late-text" in capsys.readouterr().err
