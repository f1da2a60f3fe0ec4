"""experiments.bench: `--quick` on tiny inputs writes a sane results JSON (no timed assertions)."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from experiments.bench import cli, common, training
from experiments.bench import features as bench_features

EMOTIONS = {"01": "neutral", "03": "happy", "04": "sad", "05": "angry"}


def fake_ravdess(root: Path, actors: int = 6, seconds: float = 1.0) -> Path:
    """A RAVDESS-layout tree of 16 kHz tones with noise: 4 emotions x 2 statements per actor."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    for a in range(1, actors + 1):
        folder = root / f"Actor_{a:02d}"
        folder.mkdir(parents=True)
        for k, emo in enumerate(EMOTIONS):
            for statement in ("01", "02"):
                x = 0.3 * np.sin(2 * np.pi * (120 + 40 * k + 5 * a) * t)
                x = x + 0.02 * rng.normal(size=len(t))
                name = f"03-01-{emo}-01-{statement}-01-{a:02d}.wav"
                sf.write(folder / name, x.astype(np.float32), 16000)
    return root


def test_stat_and_percentile() -> None:
    s = common.stat([3.0, 1.0, 2.0])
    assert (s["median"], s["min"], s["max"], s["n"]) == (2.0, 1.0, 3.0, 3)
    assert common.percentile([1, 2, 3, 4, 5], 50) == 3.0
    with pytest.raises(common.BenchError):
        common.stat([])


def test_iemocap_durations_look_like_iemocap() -> None:
    d = bench_features.iemocap_durations(20000, np.random.default_rng(0))
    assert 4.2 < d.mean() < 4.8
    assert d.min() >= 0.6 and d.max() <= 30.0
    assert np.median(d) < d.mean()  # right-skewed, as IEMOCAP's lengths are


def test_synthetic_corpus_is_a_loadable_feature_cache(cache_dir: Path) -> None:
    from datamodules.features import FeatureConfig, feature_key, load
    from datamodules.utterances import read_table

    key = bench_features.make_synthetic_corpus("synth", 40, dim=16)
    assert key == feature_key("synth", FeatureConfig())
    meta = json.loads((Path(cache_dir) / "synth" / key / "meta.json").read_text())
    assert set(meta["parts"]) == {"acoustic", "lexical"} and meta["lexical_dim"] == 16
    table = read_table("synth")
    feats = load("synth", key, ("acoustic", "lexical"))
    assert len(feats.acoustic) == len(feats.words) == 40
    for row in table.itertuples():
        x, w, spans = feats.acoustic[row.utterance_id], feats.words[row.utterance_id], None
        spans = feats.spans[row.utterance_id]
        assert x.shape == (int(row.duration_s * 100), 65)
        assert w.shape[1] == 16 and len(w) == len(spans) >= 1
        assert (spans[:, 0] < spans[:, 1]).all() and spans[:, 1].max() <= len(x) + 1
    # a second call reuses the cache instead of writing it again
    before = sorted(p.stat().st_mtime_ns for p in (Path(cache_dir) / "synth").rglob("*.npy"))
    assert bench_features.make_synthetic_corpus("synth", 40, dim=16) == key
    after = sorted(p.stat().st_mtime_ns for p in (Path(cache_dir) / "synth").rglob("*.npy"))
    assert before == after


def test_quick_training_section(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    argv = ["--quick", "--only", "training", "--cache", str(tmp_path / "cache")]
    argv += ["--n-synthetic", "48", "--train-steps", "2", "--out", str(out)]
    assert cli.main(argv) == 0
    res = json.loads(out.read_text())
    assert "features" not in res and res["training"]["steps_per_run"] == 2
    for r in res["training"]["runs"].values():
        assert r["utt_per_s"]["median"] > 0 and r["epoch_s"]["median"] > 0
        assert r["n_train"] < 48 and 0 <= r["padding_share"]["median"] < 1


@pytest.mark.slow  # about a minute on an idle 2-core machine, several when it is shared
def test_quick_run_writes_sane_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = fake_ravdess(tmp_path / "ravdess")
    out = tmp_path / "results.json"
    argv = [
        "--quick",
        "--only",
        "features,training,baseline",
        "--corpus-root",
        str(root),
        "--cache",
        str(tmp_path / "cache"),
        "--n-synthetic",
        "48",
        "--train-steps",
        "2",
        "--epochs",
        "1",
        "--workers",
        "1",
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    res = json.loads(out.read_text())
    assert res["repeats"] == 1 and res["machine"]["cores_logical"] >= 1
    f = res["features"]
    assert f["n_clips"] == 48 and f["audio_s"] == pytest.approx(48.0, rel=0.01)
    for k in ("opensmile_audio_s_per_s", "acoustic_audio_s_per_s", "lexical_audio_s_per_s"):
        assert f[k]["min"] <= f[k]["median"] <= f[k]["max"] and f[k]["median"] > 0
    assert f["warm_extract_s"]["median"] < f["cold_extract_s"]["median"]
    runs = res["training"]["runs"]
    assert set(runs) == {
        f"{v}/{b}" for v in training.ARCHITECTURES for b in ("bucketing", "no_bucketing")
    }
    for r in runs.values():
        assert r["utt_per_s"]["median"] > 0 and r["n_train"] > 0
        assert 0 <= r["padding_share"]["median"] < 1 and 0 <= r["data_wait_share"]["median"] < 1
    # bucketing sorts by length: never more padding than without it, on the same data
    for v in training.ARCHITECTURES:
        assert (
            runs[f"{v}/bucketing"]["padding_share"]["median"]
            <= runs[f"{v}/no_bucketing"]["padding_share"]["median"] + 1e-9
        )
    b = res["baseline"]
    assert b["test_speakers"] == ["Actor_01", "Actor_02"]
    assert b["n"] == {"train": 16, "val": 16, "test": 16}
    assert b["svm_compare_functionals"]["feature_dim"] == 6373
    for score in ("ua", "wa"):
        assert 0 <= b["svm_compare_functionals"][score] <= 1
        assert 0 <= b["acoustic_attention"][score]["median"] <= 1
    printed = capsys.readouterr().out
    assert "machine:" in printed and "baseline: SVM ComParE functionals" in printed


def test_private_cache_writers_stay_in_store() -> None:
    """Only datamodules/features/store.py calls its `_` functions (the bench uses write_features)."""
    repo = Path(__file__).resolve().parents[1]
    private = re.compile(r"\bstore\._\w+|features\.store import[^\n]*\b_\w+")
    offenders = [
        str(f.relative_to(repo))
        for folder in ("datamodules", "lightning_modules", "experiments", "tests")
        for f in (repo / folder).rglob("*.py")
        if f.name != "store.py" and private.search(f.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_frontends_hook(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ctx = common.Context(quick=True, repeats=1, workers=1, cache=tmp_path, corpus_root=None)
    monkeypatch.setitem(sys.modules, "experiments.bench_frontends", None)  # absent: ImportError
    assert bench_features.bench_frontends(ctx) is None
    assert any("bench_frontends.py is not present" in n for n in ctx.notes)
    rows = cli.table_rows({"features": _features_result(None)})
    assert ("features: front ends", "skipped (see notes)") in rows

    calls = []

    def frontend_throughput(names=("a", "b"), seconds=30.0, device="cpu"):  # noqa: ANN001, ANN202
        calls.append((list(names), seconds, device))
        return [
            {"frontend": n, "device": device, "audio_s_per_s": 12.5, "load_s": 0.5} for n in names
        ]

    fake = types.ModuleType("experiments.bench_frontends")
    fake.frontend_throughput = frontend_throughput  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "experiments.bench_frontends", fake)
    ctx.frontends = ["compare_lld"]
    got = bench_features.bench_frontends(ctx)
    assert calls == [(["compare_lld"], 10.0, "cpu")] and got is not None
    rows = dict(cli.table_rows({"features": _features_result(got)}))
    assert rows["features: front end compare_lld (audio s/s, cpu)"] == "12.5 (load 0.5 s)"


def _features_result(frontends: list | None) -> dict:
    s = common.stat([1.0])
    keys = ("opensmile_audio_s_per_s", "acoustic_audio_s_per_s", "lexical_audio_s_per_s")
    keys += ("acoustic_time_ratio_to_opensmile", "cold_extract_s", "warm_extract_s")
    return {"corpus": "c", "n_clips": 1, "audio_s": 1.0, "workers": 1, "frontends": frontends} | {
        k: s for k in keys
    }


def test_bad_section_is_refused() -> None:
    with pytest.raises(SystemExit):
        cli.parse_args(["--only", "features,nonsense"])


@pytest.mark.slow
def test_quick_inference_and_memory(tmp_path: Path) -> None:
    root = fake_ravdess(tmp_path / "ravdess")
    out = tmp_path / "results.json"
    argv = ["--quick", "--only", "inference,memory", "--corpus-root", str(root)]
    argv += ["--cache", str(tmp_path / "cache"), "--n-synthetic", "48", "--train-steps", "2"]
    argv += ["--asr", "none", "--workers", "1", "--out", str(out)]
    assert cli.main(argv) == 0
    res = json.loads(out.read_text())
    lat = res["inference"]["latency"]
    assert set(lat) == {"1s", "5s", "20s"}
    for r in lat.values():
        assert 0 < r["p50_s"] <= r["p95_s"] <= r["max_s"]
    assert res["inference"]["app_peak_rss_mib"] > 50
    for r in res["memory"]["training"].values():
        assert r["peak_rss_mib"]["median"] > 50
