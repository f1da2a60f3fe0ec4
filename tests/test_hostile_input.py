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
    index = store.read_index(tmp_path, 0)
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
    from experiments import audio_input

    real = audio_input.load_audio

    def spy(*args, **kwargs):
        x = real(*args, **kwargs)
        reads.append(len(x))
        return x

    monkeypatch.setattr(audio_input, "load_audio", spy)
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


# ------------------------------------------------------------ checkpoints predict refuses


def _variant(src: Path, dst: Path, change) -> Path:
    import copy

    import torch

    from lightning_modules.checkpoint import RECORD_KEY, read_checkpoint

    ckpt = copy.deepcopy(read_checkpoint(src))
    change(ckpt[RECORD_KEY]["features"]["config"])
    torch.save(ckpt, dst)
    return dst


def _hostile_checkpoints(src: Path, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (checkpoint path, what its one error line must say)."""
    (tmp_path / "folder.ckpt").mkdir()
    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "garbage.ckpt").write_bytes(bytes(range(256)) * 8)
    fifo = tmp_path / "fifo.ckpt"
    os.mkfifo(fifo)  # opening it would wait for a writer forever
    return {
        "encoder": (_variant(src, tmp_path / "enc.ckpt", lambda c: c.update(
            encoder="nobody/no-such-encoder")), "cannot load encoder 'nobody/no-such-encoder'"),
        "feature key": (_variant(src, tmp_path / "key.ckpt", lambda c: c.update(bogus_key=1)),
                        "bogus_key"),
        "front end": (_variant(src, tmp_path / "fe.ckpt", lambda c: c.update(
            acoustic_features="whisper_huge")), "whisper_huge"),
        "hf front end": (_variant(src, tmp_path / "hf.ckpt", lambda c: c.update(
            acoustic_features="hf:/nonexistent/model")), "/nonexistent/model"),
        "empty": (tmp_path / "empty.ckpt", "empty (0 bytes)"),
        "folder": (tmp_path / "folder.ckpt", "is a folder"),
        "/dev/zero": (Path("/dev/zero"), "not a regular file"),
        "fifo": (fifo, "not a regular file"),
        "garbage": (tmp_path / "garbage.ckpt", "can load safely"),
    }  # fmt: skip


def test_bad_checkpoints_get_one_line_no_traceback(
    demo_ckpts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import numpy as np
    import soundfile as sf

    from experiments import predict

    monkeypatch.setenv("SER_CACHE", str(demo_ckpts.cache))
    clip = tmp_path / "a.wav"
    sf.write(clip, (0.3 * np.sin(np.arange(16_000) / 8)).astype(np.float32), 16_000)
    cases = _hostile_checkpoints(demo_ckpts.checkpoint("mmmla"), tmp_path)
    for name, (ckpt, says) in cases.items():
        rc = predict.main(["--asr", "none", "--transcript", "hi there", "--checkpoint", str(ckpt),
                           str(clip)])  # fmt: skip
        out = capsys.readouterr()
        lines = out.err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), (name, out.err)
        assert says in lines[0] and str(ckpt) in lines[0], (name, lines[0])
        assert "Traceback" not in out.err and out.out == ""


def test_big_checkpoint_refused_before_torch_load(tmp_path: Path, monkeypatch) -> None:
    from lightning_modules import checkpoint_file as checkpoint

    big = tmp_path / "big.ckpt"
    with open(big, "wb") as f:
        f.truncate(4096)  # sparse: "large" without the disk
    monkeypatch.setattr(checkpoint, "MAX_CHECKPOINT_BYTES", 1024)
    monkeypatch.setattr(checkpoint.torch, "load", lambda *a, **k: pytest.fail("read it"))
    with pytest.raises(checkpoint.CheckpointError, match="big.ckpt.*not loaded"):
        checkpoint.read_checkpoint(big)


def test_demo_shows_bad_checkpoint_as_one_line(demo_ckpts, tmp_path: Path, monkeypatch) -> None:
    import numpy as np
    import soundfile as sf

    from experiments import demo, demo_backend

    monkeypatch.setenv("SER_CACHE", str(demo_ckpts.cache))
    clip = tmp_path / "a.wav"
    sf.write(clip, (0.3 * np.sin(np.arange(16_000) / 8)).astype(np.float32), 16_000)
    ckpt, _ = _hostile_checkpoints(demo_ckpts.checkpoint("acoustic"), tmp_path)["front end"]
    menu = [demo.ModelChoice(str(ckpt), "bad", "acoustic", ckpt)]
    monkeypatch.setattr(demo_backend, "available_models", lambda _runs, _late=None: menu)
    backend = demo.DemoBackend(tmp_path / "runs", asr="none")
    try:
        with pytest.raises(demo.PredictError) as info:
            backend.predict(str(ckpt), clip)
    finally:
        backend.close()
    assert "\n" not in str(info.value) and "whisper_huge" in str(info.value)


# ------------------------------------------------------------ fallback discovery


def _copy_run(src: Path, run: Path, ua: float, classes: list[str] | None = None) -> Path:
    import json
    import shutil

    import torch

    from lightning_modules.checkpoint import RECORD_KEY, read_checkpoint

    dst = run / "checkpoints" / "best.ckpt"
    dst.parent.mkdir(parents=True)
    if classes is None:
        shutil.copy(src, dst)
    else:
        ckpt = read_checkpoint(src)
        ckpt[RECORD_KEY]["class_names"] = classes
        torch.save(ckpt, dst)
    metrics = {"ua": ua, "config": {"architecture": "acoustic", "corpus": "builtin"}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    return dst


def test_fallback_with_other_classes_is_skipped_with_a_warning(
    demo_ckpts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog, capsys
) -> None:
    import json
    import logging
    import shutil

    import numpy as np
    import soundfile as sf

    from experiments import predict
    from experiments.inference import find_fallback
    from lightning_modules.checkpoint import read_record

    monkeypatch.setenv("SER_CACHE", str(demo_ckpts.cache))
    sweep = tmp_path / "runs" / "sweep"
    main = sweep / "mmmla" / "checkpoints" / "best.ckpt"
    main.parent.mkdir(parents=True)
    shutil.copy(demo_ckpts.checkpoint("mmmla"), main)
    acoustic = demo_ckpts.checkpoint("acoustic")
    classes = list(read_record(acoustic)["class_names"])
    other = _copy_run(acoustic, sweep / "other", 0.9, [*classes[:-1], "bored"])
    swapped = _copy_run(acoustic, sweep / "swapped", 0.8, classes[::-1])
    good = _copy_run(acoustic, sweep / "good", 0.5)
    with caplog.at_level(logging.WARNING, logger="experiments.inference"):
        assert find_fallback(main, tmp_path / "runs") == good.resolve()
    assert f"{other.resolve()} skipped" in caplog.text and "other classes" in caplog.text
    assert f"{swapped.resolve()} skipped" in caplog.text and "another order" in caplog.text

    noise = tmp_path / "noise.wav"
    rng = np.random.default_rng(0)
    sf.write(noise, (0.1 * rng.standard_normal(2 * 16_000)).astype(np.float32), 16_000)
    rc = predict.main(["--asr", "none", "--checkpoint", str(main), "--runs-dir",
                       str(tmp_path / "runs"), str(noise)])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["fallback"] is True
    assert out["fallback_checkpoint"] == str(good.resolve())


# ------------------------------------------------------------ prepare decodes every file


def _bad_audio_manifest(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A manifest of 8 good clips (2 classes, 2 speakers) and one of each bad kind."""
    import numpy as np
    import soundfile as sf

    audio = tmp_path / "audio"
    audio.mkdir()
    t = np.arange(16_000) / 16_000
    rows = []
    for i in range(8):
        sf.write(audio / f"good{i}.wav", (0.3 * np.sin(2 * np.pi * (200 + i) * t)).astype(
            np.float32), 16_000)  # fmt: skip
        rows.append((f"good{i}.wav", "happy" if i % 2 else "sad", f"s{i % 2}"))
    sf.write(audio / "silent.wav", np.zeros(16_000, np.float32), 16_000)
    sf.write(audio / "short.wav", (0.3 * np.sin(t[:800] * 900)).astype(np.float32), 16_000)
    sf.write(audio / "cut.flac", (0.3 * np.sin(2 * np.pi * 3 * np.arange(320_000) / 16_000)
                                 ).astype(np.float32), 16_000)  # fmt: skip
    data = (audio / "cut.flac").read_bytes()
    (audio / "cut.flac").write_bytes(data[: len(data) // 2])
    sf.write(audio / "cut.wav", (0.3 * np.sin(t * 900)).astype(np.float32), 16_000)
    data = (audio / "cut.wav").read_bytes()
    (audio / "cut.wav").write_bytes(data[: len(data) // 2])  # libsndfile alone would not say
    (audio / "noise.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(200)))
    bad = {
        "silent.wav": "silent audio",
        "short.wav": "too short audio",
        "cut.flac": "truncated audio",
        "cut.wav": "truncated audio",
        "noise.wav": "undecodable audio",
    }
    rows += [(name, "happy", "s0") for name in bad]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("audio_path,label,speaker\n" + "".join(f"audio/{a},{b},{c}\n"
                                                              for a, b, c in rows))  # fmt: skip
    return manifest, bad


def test_prepare_fails_naming_bad_audio_files(cache_dir: Path, tmp_path: Path, capsys) -> None:
    from experiments import prepare

    manifest, bad = _bad_audio_manifest(tmp_path)
    rc = prepare.main(["manifest", "--root", str(manifest), "--workers", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "--skip-bad" in err and "Traceback" not in err
    for name, reason in bad.items():
        assert f"{name} ({reason}" in err, (name, err)
    assert err.count("\n") == 1
    assert not (cache_dir / "manifest" / "utterances.csv").exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_prepare_skip_bad_drops_and_counts(
    cache_dir: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, workers: str
) -> None:
    import json

    from datamodules import corpora
    from datamodules.utterances import read_table
    from experiments import prepare

    monkeypatch.setattr(corpora, "POOL_MIN_FILES", 4)  # the pool path on a small corpus
    manifest, bad = _bad_audio_manifest(tmp_path)
    rc = prepare.main(["manifest", "--root", str(manifest), "--skip-bad", "--workers", workers])
    out = capsys.readouterr().out
    assert rc == 0
    assert len(read_table("manifest")) == 8
    drops = json.loads((cache_dir / "manifest" / "prepare.json").read_text())["drops"]
    assert {k: v for k, v in drops.items() if k.endswith("audio")} == {
        "silent audio": 1,
        "too short audio": 1,
        "truncated audio": 2,
        "undecodable audio": 1,
    }
    for name, reason in bad.items():
        assert reason in out and name in out


# ------------------------------------------------------------ labels from user data


def test_labels_normalised_and_small_or_near_duplicate_classes_warned(
    cache_dir: Path, tmp_path: Path, capsys
) -> None:
    import json

    import numpy as np
    import soundfile as sf

    from datamodules.corpora import normalize_label
    from datamodules.utterances import read_table
    from experiments import prepare

    assert normalize_label("  ANGRY ") == "angry" == normalize_label("Angry")
    labels = ["ANGRY "] * 6 + ["angry"] * 6 + [" Sad"] * 12 + ["happy"] * 12 + ["hapy"] * 2
    wav = tmp_path / "a.wav"
    sf.write(wav, (0.3 * np.sin(np.arange(16_000) / 5)).astype(np.float32), 16_000)
    manifest = tmp_path / "m.csv"
    manifest.write_text("audio_path,label\n" + "".join(f"a.wav,{x}\n" for x in labels))
    assert prepare.main(["manifest", "--root", str(manifest), "--name", "typo"]) == 0
    out = capsys.readouterr().out
    counts = read_table("typo")["label"].value_counts().to_dict()
    assert counts == {"angry": 12, "sad": 12, "happy": 12, "hapy": 2}
    assert "fewer than 10 utterances: hapy (2)" in out
    assert "'happy' (12) ~ 'hapy' (2)" in out
    notes = json.loads((cache_dir / "typo" / "prepare.json").read_text())["notes"]
    assert any("hapy" in n for n in notes)
    assert prepare.main(["manifest", "--root", str(manifest), "--name", "typo",
                         "--classes", "ANGRY,Sad", "--min-class-count", "20"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "fewer than 20 utterances: angry (12), sad (12)" in out and "~" not in out


def test_prepare_with_the_cache_path_a_file_is_one_error_line(tmp_path: Path, monkeypatch, capsys):
    from experiments import prepare

    (tmp_path / "cache").write_text("x")
    monkeypatch.setenv("SER_CACHE", str(tmp_path / "cache"))
    assert prepare.main(["builtin", "--per-class", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write") and err.count("\n") == 1


def test_audio_folder_and_device_are_named_as_such(tmp_path: Path) -> None:
    from datamodules.audio import AudioError, audio_info

    with pytest.raises(AudioError, match="is a folder"):
        audio_info(tmp_path)
    with pytest.raises(AudioError, match="/dev/zero is not a regular file"):
        audio_info("/dev/zero")
    with pytest.raises(AudioError, match="not found"):
        audio_info(tmp_path / "gone.wav")


@pytest.mark.slow
def test_fault_sweep(tmp_path_factory: pytest.TempPathFactory) -> None:
    """34 bad inputs (about 8 minutes on 2 busy cores): no traceback, no survivor, no loss."""
    from tests import fault_sweep

    result = fault_sweep.sweep(tmp_path_factory.getbasetemp() / "ser-demo-models")
    assert result["inputs"] >= 20 and result["failed"] == [], result["failed"]
    assert result["tracebacks"] == 0 and result["processes_left"] == 0
    assert result["data_lost"] == []
