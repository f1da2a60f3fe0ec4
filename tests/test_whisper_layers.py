"""Whisper hidden states from the PyTorch port of the CTranslate2 weights: the port matches
CTranslate2's output, every layer is selectable, and a bad model file names itself."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from datamodules.features import FeatureConfig, FeatureError, feature_key, load
from datamodules.features.frontends import build_frontend, whisper_model_dir
from datamodules.features.whisper_layers import WhisperLayers, read_ct2_variables


def speech_like(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a moving pitch and noise: 16 kHz float32, no corpus needed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 140 + 40 * np.sin(2 * np.pi * 1.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (0.1 * x + 0.005 * rng.standard_normal(t.size)).astype(np.float32)


def test_port_matches_ctranslate2_output_and_gives_every_layer() -> None:
    x = speech_like()
    ct2 = build_frontend("whisper_tiny", threads=1)
    reference = ct2.encode(x)  # CTranslate2's encode(): the final layer norm's output
    port = build_frontend("whisper_tiny", threads=1, layer=4)  # tiny.en has 4 blocks
    last = port.encode(x)
    assert last.shape == reference.shape == (101, 384) and port.layers == 1
    scale = np.abs(reference).max()
    assert np.abs(last - reference).max() < 1e-3 * scale
    every = build_frontend("whisper_tiny", threads=1, layer="all")
    stacked = every.encode(x)
    assert every.layers == 5 and every.dim == 5 * 384 and stacked.shape == (101, 5 * 384)
    np.testing.assert_array_equal(stacked[:, -384:], last)
    middle = build_frontend("whisper_tiny", threads=1, layer=2).encode(x)
    np.testing.assert_array_equal(stacked[:, 2 * 384 : 3 * 384], middle)
    assert np.abs(middle - last).mean() > 0.1  # a different state, not the output again
    # encoded alone or beside a clip of another length: the same frames
    other = speech_like(3.1, seed=1)
    batched = build_frontend("whisper_tiny", threads=1, layer=2).encode_many([other, x])
    np.testing.assert_array_equal(batched[1], middle)
    with pytest.raises(FeatureError, match="layer 5 outside the 5 hidden states"):
        build_frontend("whisper_tiny", layer=5)


def test_port_reads_the_encoder_of_the_bundled_model() -> None:
    encoder = WhisperLayers.from_ct2(whisper_model_dir("whisper_tiny"))
    assert (encoder.depth, encoder.dim, encoder.n_mels, encoder.heads) == (4, 384, 80, 6)
    assert encoder.max_positions == 1500
    assert not list(encoder.parameters())  # weights are buffers: moved by .to(), never trained


def _ct2_file(path: Path, version: int = 6, truncate: int = 0) -> Path:
    """A CTranslate2-format model.bin holding one float32 encoder variable."""

    def string(s: str) -> bytes:
        return struct.pack("H", len(s) + 1) + s.encode() + b"\0"

    data = np.arange(6, dtype=np.float32)
    body = struct.pack("I", version) + string("WhisperSpec") + struct.pack("II", 3, 1)
    body += string("encoder/conv1/bias") + struct.pack("B", 2) + struct.pack("II", 2, 3)
    body += struct.pack("B", 0) + struct.pack("I", data.nbytes) + data.tobytes()
    body += struct.pack("I", 0)
    path.write_bytes(body[: len(body) - truncate] if truncate else body)
    return path


def test_ct2_reader_reads_and_names_bad_files(tmp_path: Path) -> None:
    good = read_ct2_variables(_ct2_file(tmp_path / "good.bin"))
    assert list(good) == ["conv1/bias"]
    np.testing.assert_array_equal(good["conv1/bias"], np.arange(6, dtype=np.float32).reshape(2, 3))
    with pytest.raises(FeatureError, match=r"short\.bin: truncated"):
        read_ct2_variables(_ct2_file(tmp_path / "short.bin", truncate=10))
    with pytest.raises(FeatureError, match=r"old\.bin: CTranslate2 binary version 2"):
        read_ct2_variables(_ct2_file(tmp_path / "old.bin", version=2))
    with pytest.raises(FeatureError, match="no variables named decoder/"):
        read_ct2_variables(_ct2_file(tmp_path / "good.bin"), prefix="decoder/")
    with pytest.raises(FeatureError, match="absent.bin"):
        read_ct2_variables(tmp_path / "absent.bin")
    with pytest.raises(FeatureError, match="lack 'num_heads'"):
        WhisperLayers({"conv1/bias": np.zeros(3, np.float32)})


def test_layer_option_keys_and_validation() -> None:
    last = FeatureConfig(acoustic_features="whisper_base")
    layer = FeatureConfig(acoustic_features="whisper_base", acoustic_layer="4")
    every = FeatureConfig(acoustic_features="whisper_base", acoustic_layer="all")
    import pandas as pd

    from datamodules.features.config import feature_key_for_table

    cols = ["utterance_id", "label", "audio_path", "transcript", "words", "start_s", "end_s"]
    table = pd.DataFrame([["u1", "sad", "/a/u1.wav", "", "[]", "", ""]], columns=cols)
    keys = [feature_key_for_table(table, c) for c in (last, layer, every)]
    assert len(set(keys)) == 3
    assert keys[1].startswith("whisper-base-l4-") and keys[2].startswith("whisper-base-lall-")
    with pytest.raises(FeatureError, match="applies to neural front ends"):
        FeatureConfig(acoustic_features="compare_lld", acoustic_layer="4")


def test_cache_of_every_whisper_layer_serves_the_weighted_sum(
    ravdess_root: Path, cache_dir: Path
) -> None:
    import json

    from datamodules.features.store import extract
    from datamodules.utterances import write_table
    from tests.test_features import ravdess_utterances

    write_table("rav", ravdess_utterances(ravdess_root, 2), {"reader": "test"})
    config = FeatureConfig(acoustic_features="whisper_tiny", acoustic_layer="all")
    built = extract("rav", config, workers=1, progress=False, modalities=("acoustic",))
    assert built.key == feature_key("rav", config)
    meta = json.loads((cache_dir / "rav" / built.key / "meta.json").read_text())
    assert meta["acoustic_dim"] == 5 * 384 and meta["acoustic_layers"] == 5
    frames = load("rav", built.key, ("acoustic",)).acoustic
    assert all(f.shape[1] == 5 * 384 for f in frames.values()) and len(frames) == 2


def test_front_end_configs_name_real_options() -> None:
    """Each configs/features/*.yaml sets only datamodule options, and its front end is valid."""
    import inspect

    import yaml

    from datamodules.datamodule import EmotionDataModule

    options = set(inspect.signature(EmotionDataModule.__init__).parameters)
    files = sorted((Path(__file__).resolve().parents[1] / "configs" / "features").glob("*.yaml"))
    assert {f.stem for f in files} >= {"compare_lld", "whisper_base", "whisper_base_l3"}
    for path in files:
        data = yaml.safe_load(path.read_text())["data"]
        assert set(data) <= options, (path.name, set(data) - options)
        FeatureConfig(
            acoustic_features=data.get("acoustic_features", "compare_lld"),
            acoustic_layer=str(data.get("acoustic_layer", "last")),
        )


def test_throughput_bench_takes_a_layer() -> None:
    from experiments.bench_frontends import DEFAULT_NAMES, frontend_throughput

    assert "whisper_base@3" in DEFAULT_NAMES
    (row,) = frontend_throughput(["whisper_tiny@all"], seconds=3.0)
    assert row["frontend"] == "whisper_tiny@all" and row["dim"] == 5 * 384
    assert abs(row["frames"] - row["audio_s"] / 0.02) < 10 and row["audio_s_per_s"] > 0


@pytest.mark.parametrize("name", ["whisper_base_l3", "whisper_base", "compare_lld"])
def test_front_end_configs_parse_in_the_training_cli(name: str, capsys) -> None:
    """README's `--config <variant> --config configs/features/<set>.yaml` parses as written
    (a layer index in YAML is an int)."""
    import yaml

    from experiments.train import main

    repo = Path(__file__).resolve().parents[1]
    path = repo / "configs" / "features" / f"{name}.yaml"
    variant = repo / "configs" / "acoustic_attention_tuned.yaml"
    with pytest.raises(SystemExit) as exited:
        main(["fit", "--config", str(variant), "--config", str(path), "--print_config"])
    assert exited.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)["data"]
    wanted = yaml.safe_load(path.read_text())["data"]
    assert str(printed["acoustic_layer"]) == str(wanted.get("acoustic_layer", "last"))
    assert printed["acoustic_features"] == wanted["acoustic_features"]
