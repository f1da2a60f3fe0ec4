"""experiments.baselines: scorers learn separable data, standardise on train rows only, cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from experiments import baselines
from tests.test_bench import fake_ravdess


def blobs(n_per_class: int, dim: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four Gaussian classes, well apart, on features of very different scales."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(4, dim))
    y = np.repeat(np.arange(4), n_per_class)
    x = centres[y] + rng.normal(size=(len(y), dim))
    return (x * np.logspace(-3, 3, dim)).astype(np.float32), y


def test_scores_by_hand() -> None:
    s = baselines.scores([0, 0, 0, 1], [0, 0, 1, 1])
    assert s["wa"] == pytest.approx(0.75)
    assert s["ua"] == pytest.approx((2 / 3 + 1) / 2)
    assert s["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)


def test_svm_on_separable_functionals_beats_chance() -> None:
    x, y = blobs(40)
    part = np.arange(len(y)) % 4  # train 0-1, val 2, test 3
    train, val, test = part < 2, part == 2, part == 3
    out = baselines.svm_on_functionals(x[train], y[train], x[test], y[test], val=(x[val], y[val]))
    assert out["ua"] > 0.9 and out["wa"] > 0.9 and out["macro_f1"] > 0.9  # chance: 0.25
    assert out["feature_dim"] == 20
    assert set(out["val_ua_by_C"]) == {str(c) for c in baselines.C_GRID}


def test_standardisation_is_fitted_on_training_rows_only() -> None:
    x, y = blobs(40)
    train, test = np.arange(len(y)) % 4 != 0, np.arange(len(y)) % 4 == 0
    base = baselines.svm_on_functionals(x[train], y[train], x[test], y[test], grid=[0.1])
    assert base["ua"] > 0.9
    # Shifting only the test rows moves them away from the training statistics: a scaler fitted
    # on the test rows (or on train + test) would absorb the shift and keep the scores.
    shifted = x[test] + 8 * x[train].std(0)
    moved = baselines.svm_on_functionals(x[train], y[train], shifted, y[test], grid=[0.1])
    assert moved["ua"] < base["ua"] - 0.3
    # Rescaling every row by powers of two is undone exactly by the standardisation.
    scale = 2.0 ** np.arange(-10, 10)
    again = baselines.svm_on_functionals(
        x[train] * scale, y[train], x[test] * scale, y[test], grid=[0.1]
    )
    assert again["ua"] == base["ua"] and again["wa"] == base["wa"]


def test_logistic_probe_on_pooled_states() -> None:
    rng = np.random.default_rng(0)

    def states(n: int) -> tuple[list[np.ndarray], np.ndarray]:
        y = np.arange(n) % 3
        # classes differ in the frames' spread, not their mean: only the std half separates them
        return [rng.normal(scale=1 + 2 * c, size=(int(rng.integers(5, 40)), 8)) for c in y], y

    pooled = baselines.pool_states([np.ones((3, 8)), np.arange(16.0).reshape(2, 8)])
    assert pooled.shape == (2, 16) and np.allclose(pooled[0], [1] * 8 + [0] * 8)
    assert np.allclose(pooled[1, 8:], 4.0)
    (tr, ytr), (va, yva), (te, yte) = states(90), states(30), states(30)
    out = baselines.logistic_probe(tr, ytr, te, yte, val=(va, yva))
    assert out["ua"] > 0.8 and out["feature_dim"] == 16  # chance: 1/3


def test_probe_on_split_uses_the_split_parts_that_have_frames() -> None:
    rng = np.random.default_rng(1)
    ids = [f"u{i}" for i in range(90)]
    label_of = {u: i % 3 for i, u in enumerate(ids)}
    frames = {u: rng.normal(scale=1 + 2 * label_of[u], size=(12, 4)) for u in ids}
    split = {"train": ids[:60], "val": ids[60:75], "test": ids[75:] + ["no_frames"]}
    out = baselines.probe_on_split(frames, split, label_of, refit=False)
    part = {p: [u for u in split[p] if u in frames] for p in split}
    x = {p: [frames[u] for u in part[p]] for p in part}
    y = {p: np.array([label_of[u] for u in part[p]]) for p in part}
    by_hand = baselines.logistic_probe(
        x["train"], y["train"], x["test"], y["test"], val=(x["val"], y["val"]), refit=False
    )
    assert out["ua"] == by_hand["ua"] and out["C"] == by_hand["C"]
    assert out["val_ua_by_C"] and out["val_ua_by_C"] == by_hand["val_ua_by_C"]
    # without val utterances the probe keeps the middle of the grid and reports no val scores
    alone = baselines.probe_on_split(frames, {**split, "val": []}, label_of)
    assert alone["val_ua_by_C"] == {} and alone["C"] == 1.0


def test_refit_adds_val_rows_and_train_only_keeps_the_train_fit() -> None:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    x, y = blobs(40)
    part = np.arange(len(y)) % 4
    train, val, test = part == 0, (part == 1) | (part == 2), part == 3
    # twice as many val rows as train rows, labelled as the next class: a refit learns them
    wrong = (y[val] + 1) % 4
    grid = (0.01, 1.0)
    kept = baselines.svm_on_functionals(
        x[train], y[train], x[test], y[test], val=(x[val], wrong), grid=grid, refit=False
    )
    clf = make_pipeline(StandardScaler(), LinearSVC(C=kept["C"], max_iter=20000, dual=True))
    by_hand = baselines.scores(y[test], clf.fit(x[train], y[train]).predict(x[test]))
    assert kept["ua"] == pytest.approx(by_hand["ua"]) and kept["ua"] > 0.9
    refit = baselines.svm_on_functionals(
        x[train], y[train], x[test], y[test], val=(x[val], wrong), grid=grid
    )
    assert refit["C"] == kept["C"] and refit["ua"] < kept["ua"]


def test_one_class_in_training_is_refused() -> None:
    x, y = blobs(5)
    with pytest.raises(baselines.BaselineError, match="fewer than two classes"):
        baselines.svm_on_functionals(x[y == 0], y[y == 0], x, y)


def test_baseline_scores_on_a_split_and_the_functionals_cache(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datamodules.splits import load_or_create_split
    from experiments import prepare

    root = fake_ravdess(tmp_path / "ravdess", actors=4, seconds=0.5)
    assert prepare.main(["ravdess", "--root", str(root), "--name", "r4"]) == 0
    split = load_or_create_split("r4", "speakers", 0, 0, ["Actor_01"], ["Actor_02"])
    out = baselines.baseline_scores("r4", split)
    assert out["n"] == {"train": 16, "val": 8, "test": 8} and out["feature_dim"] == 6373
    assert 0 <= out["ua"] <= 1 and set(out["classes"]) >= {"angry", "happy", "neutral", "sad"}
    cached = list((cache_dir / "r4" / "functionals").glob("*.npz"))
    assert len(cached) == 1
    with np.load(cached[0], allow_pickle=False) as data:  # no pickled objects inside
        assert data["x"].shape == (32, 6373)

    # The second call reads the cache: openSMILE is not run again.
    import opensmile

    monkeypatch.setattr(opensmile, "Smile", None)
    assert baselines.baseline_scores("r4", split)["ua"] == out["ua"]


def test_functionals_of_sped_up_clips_are_those_of_the_sped_up_audio(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import opensmile
    import soundfile as sf

    from datamodules.audio import change_speed

    t = np.arange(16000) / 16000
    wav = tmp_path / "tone.wav"
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + t)).astype(np.float32), 16000)
    plain = baselines.functionals([str(wav)], corpus="tone")
    fast = baselines.functionals([str(wav)], corpus="tone", speed=1.25)
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.ComParE_2016,
        feature_level=opensmile.FeatureLevel.Functionals,
    )
    x = sf.read(wav, dtype="float32")[0]
    by_hand = smile.process_signal(change_speed(x, 1.25), 16000).to_numpy()[0]
    np.testing.assert_allclose(fast[0], by_hand, rtol=1e-5, atol=1e-5)
    assert not np.allclose(fast, plain)
    names = sorted(f.name for f in (cache_dir / "tone" / "functionals").glob("*.npz"))
    assert len(names) == 2 and "-sp1.25-" in names[1]
    monkeypatch.setattr(opensmile, "Smile", None)  # a rerun reads each speed's own cache
    np.testing.assert_array_equal(
        baselines.functionals([str(wav)], corpus="tone", speed=1.25), fast
    )


def test_val_copies_join_the_refit_only() -> None:
    x, y = blobs(40)
    part = np.arange(len(y)) % 4
    train, val, test = part == 0, part == 1, part == 3
    wrong = (y[part == 2] + 1) % 4  # copies labelled as the next class: only a refit learns them
    copies = (np.concatenate([x[part == 2]] * 3), np.concatenate([wrong] * 3))
    args = (x[train], y[train], x[test], y[test])
    plain = baselines.svm_on_functionals(*args, val=(x[val], y[val]), grid=(0.01, 1.0))
    with_copies = baselines.svm_on_functionals(
        *args, val=(x[val], y[val]), grid=(0.01, 1.0), val_copies=copies
    )
    kept = baselines.svm_on_functionals(
        *args, val=(x[val], y[val]), grid=(0.01, 1.0), val_copies=copies, refit=False
    )
    assert with_copies["C"] == plain["C"] and with_copies["ua"] < plain["ua"] - 0.1
    assert kept["ua"] > 0.9


def test_missing_audio_is_named(cache_dir: Path) -> None:
    with pytest.raises(baselines.BaselineError, match="audio files missing"):
        baselines.functionals(["/nonexistent/a.wav"], corpus="x")


def test_standardise_by_speaker_uses_each_speakers_own_statistics() -> None:
    rng = np.random.default_rng(0)
    # speaker b sits far from a (a louder voice): per-speaker z-scores remove the offset
    frames = [rng.normal(0, 1, (50, 3)), rng.normal(0, 1, (30, 3)), rng.normal(10, 2, (40, 3))]
    out = baselines.standardise_by_speaker(frames, ["a", "a", "b"])
    a = np.concatenate(out[:2])
    np.testing.assert_allclose(a.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(a.std(0), 1, atol=1e-4)
    np.testing.assert_allclose(out[2].mean(0), 0, atol=1e-5)
    assert out[0].shape == (50, 3)
    # feature vectors (one row per utterance) too; a constant dimension stays finite
    vectors = [np.array([1.0, 5.0]), np.array([3.0, 5.0])]
    np.testing.assert_allclose(
        baselines.standardise_by_speaker(vectors, ["s", "s"]), [[-1, 0], [1, 0]]
    )
    with pytest.raises(baselines.BaselineError, match="2 arrays but 1 speakers"):
        baselines.standardise_by_speaker(vectors, ["s"])
