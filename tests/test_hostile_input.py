"""Reliability under hostile input, second pass (issue #15): file modes, cache names, labels,
audio checks in prepare, checksummed cache loads, checkpoint refusals, windowed prediction."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from datamodules.paths import atomic_write_text


def test_atomic_write_honours_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o600


def test_packaged_model_folder_honours_umask(tmp_path: Path) -> None:
    from datamodules.packaged import _assemble

    old = os.umask(0o022)
    try:
        out = _assemble(tmp_path / "model", lambda d: (d / "w.bin").write_bytes(b"x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755


@pytest.mark.parametrize("name", ["../../x", "a/b", ".hidden", "..", "", "x y", "/abs", "é"])
def test_corpus_name_must_stay_under_cache(cache_dir: Path, name: str, capsys) -> None:
    from datamodules.paths import CorpusError, corpus_dir
    from experiments import prepare

    with pytest.raises(CorpusError, match="corpus name"):
        corpus_dir(name)
    rc = prepare.main(["builtin", "--name", name, "--per-class", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "corpus name" in err and repr(name) in err
    assert list(cache_dir.parent.glob("**/utterances.csv")) == []


def test_corpus_name_allowed_chars(cache_dir: Path) -> None:
    from datamodules.paths import corpus_dir

    assert corpus_dir("iemocap_4.v2-a") == cache_dir / "iemocap_4.v2-a"


# ------------------------------------------------------------------ checksummed cache loads


def _tone_table(root: Path, name: str = "tones", n: int = 3) -> list:
    import numpy as np
    import soundfile as sf

    from datamodules.utterances import Utterance, write_table

    rng = np.random.default_rng(0)
    utts = []
    for i in range(n):
        path = root / f"t{i}.wav"
        t = np.arange(16000) / 16000
        x = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.01 * rng.standard_normal(16000)
        sf.write(path, x.astype(np.float32), 16000)
        utts.append(
            Utterance(f"u{i}", f"s{i % 2}", "1", "happy" if i % 2 else "sad", str(path), 1.0)
        )
    write_table(name, utts, {"reader": "test"})
    return utts


@pytest.mark.parametrize("where", ["data", "header"])
def test_byte_flipped_shard_fails_load_naming_the_file(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    from datamodules.features import FeatureError, extract, load, store
    from datamodules.paths import corpus_dir

    monkeypatch.setattr(store, "SHARD_SIZE", 2)
    _tone_table(tmp_path)
    key = extract("tones", modalities=("acoustic",), workers=1, progress=False).key
    assert len(load("tones", key, ("acoustic",)).acoustic) == 3
    path = corpus_dir("tones") / key / "acoustic" / "shard-00001.frames.npy"
    data = bytearray(path.read_bytes())
    data[20 if where == "header" else len(data) - 3] ^= 0x40  # same size, one byte other
    path.write_bytes(bytes(data))
    with pytest.raises(FeatureError, match=r"shard-00001\.frames\.npy.*sha256"):
        load("tones", key, ("acoustic",))


def test_verified_load_returns_the_arrays_written(tmp_path: Path) -> None:
    import numpy as np

    from datamodules.features import store

    a = np.arange(24, dtype=np.float32).reshape(6, 4)
    b = np.asfortranarray(np.arange(6, dtype=np.int64).reshape(3, 2))
    store.write_shard(tmp_path, 0, ["x"], "h", {"a": a, "b": b}, [0, 6])
    index = store._read_index(tmp_path, 0)
    for name, want in (("a", a), ("b", b)):
        got = store.open_verified(tmp_path / index["files"][name]["file"], index["files"][name])
        np.testing.assert_array_equal(got, want)
        assert not got.flags.writeable


# ------------------------------------------------------------ single-file prediction, windows


@pytest.fixture(scope="module")
def demo_ckpts(tmp_path_factory: pytest.TempPathFactory):
    from tests.demo_models import demo_models

    return demo_models(tmp_path_factory.getbasetemp() / "ser-demo-models")


def test_long_file_is_read_and_predicted_in_windows(
    demo_ckpts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """65 s of tone+noise at 48 kHz: no read of more than one window, one answer for the file."""
    import numpy as np
    import soundfile as sf

    from experiments import inference

    monkeypatch.setenv("SER_CACHE", str(demo_ckpts.cache))
    rng = np.random.default_rng(0)
    sr, seconds = 48_000, 65
    path = tmp_path / "long.wav"
    with sf.SoundFile(path, "w", sr, 1, "FLOAT") as f:
        for s in range(seconds):  # written in blocks: the test itself stays small
            t = np.arange(sr) / sr + s
            f.write((0.2 * np.sin(2 * np.pi * 180 * t) + 0.02 * rng.standard_normal(sr)).astype(
                np.float32))  # fmt: skip
    reads: list[int] = []
    real = inference.load_audio

    def spy(*args, **kwargs):
        x = real(*args, **kwargs)
        reads.append(len(x))
        return x

    monkeypatch.setattr(inference, "load_audio", spy)
    predictor = inference.Predictor(demo_ckpts.checkpoint("acoustic"), asr="none")
    pred = predictor.predict_file(path)
    assert reads == [30 * 16_000, 35 * 16_000]  # 30 s, then 30 s + the 5 s tail
    assert pred.duration_s == pytest.approx(65, abs=0.01) and "2 windows" in pred.note
    assert sum(pred.probabilities.values()) == pytest.approx(1.0)
    assert pred.label in pred.probabilities


def test_long_silent_file_is_no_speech(demo_ckpts, tmp_path: Path, monkeypatch) -> None:
    import numpy as np
    import soundfile as sf

    from experiments.inference import NoSpeechError, Predictor

    monkeypatch.setenv("SER_CACHE", str(demo_ckpts.cache))
    path = tmp_path / "quiet.wav"
    sf.write(path, np.full(65 * 16_000, 1e-4, np.float32), 16_000)  # -80 dBFS hum
    with pytest.raises(NoSpeechError, match="quiet.wav: no speech detected"):
        Predictor(demo_ckpts.checkpoint("acoustic"), asr="none").predict_file(path)
