"""Stacked fusion: MMMLA's GMU over two branches' posteriors, fitted on cross-fitted acoustic
posteriors (lightning_modules.stacking, experiments.stacked_fusion)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from experiments import stacked_fusion as sf
from experiments.late_fusion import TextPosteriors
from experiments.runs import load_runs
from lightning_modules.predictions import Predictions, write_predictions
from lightning_modules.stacking import (
    FitSettings,
    StackingError,
    fit_posterior_gmu,
    fused_probabilities,
    load_fusion,
    save_fusion,
    select_settings,
)

CLASSES = ["neutral", "happy", "sad", "angry"]


def posteriors(labels: np.ndarray, knows: set[int], rng: np.random.Generator) -> np.ndarray:
    """(N, 4) probabilities: confident in the right class for labels in `knows`, else about flat."""
    n = len(labels)
    p = np.full((n, 4), 0.1) + rng.uniform(0, 0.05, (n, 4))
    known = np.isin(labels, list(knows))
    p[known, labels[known]] = 0.7
    p[~known] += 0.15
    return p / p.sum(1, keepdims=True)


def ua(labels: np.ndarray, p: np.ndarray) -> float:
    pred = p.argmax(1)
    return float(np.mean([np.mean(pred[labels == c] == c) for c in range(4)]))


def test_the_gmu_learns_which_branch_to_trust_per_class() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    audio, text = posteriors(y, {0, 1, 2}, rng), posteriors(y, {3}, rng)
    model = fit_posterior_gmu(audio, text, y, seed=0)
    yt = rng.integers(0, 4, 400)
    at, tt = posteriors(yt, {0, 1, 2}, rng), posteriors(yt, {3}, rng)
    fused, gate = fused_probabilities(model, at, tt)
    assert ua(yt, fused) > max(ua(yt, at), ua(yt, tt)) + 0.1
    assert fused.shape == (400, 4) and np.allclose(fused.sum(1), 1, atol=1e-5)
    assert gate.shape == (400,) and ((gate > 0) & (gate < 1)).all()
    again = fused_probabilities(fit_posterior_gmu(audio, text, y, seed=0), at, tt)[0]
    assert np.allclose(again, fused)  # the seed fixes the fit
    with pytest.raises(StackingError, match="same utterances"):
        fit_posterior_gmu(audio, text[:10], y)
    with pytest.raises(StackingError, match="labels must be in"):
        fit_posterior_gmu(audio, text, np.full(400, -1))


def test_a_saved_fusion_predicts_the_same_and_a_bad_file_is_named(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 50)
    a, t = posteriors(y, {0, 1}, rng), posteriors(y, {2, 3}, rng)
    model = fit_posterior_gmu(a, t, y, seed=3)
    path = save_fusion(model, CLASSES, tmp_path / "f.npz")
    loaded, names = load_fusion(path)
    assert names == CLASSES
    assert np.allclose(fused_probabilities(loaded, a, t)[0], fused_probabilities(model, a, t)[0])
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(StackingError, match="bad.npz"):
        load_fusion(tmp_path / "bad.npz")


def test_settings_are_chosen_on_held_out_groups() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 4, 240)
    audio, text = posteriors(y, {0, 1, 2}, rng), posteriors(y, {3}, rng)
    groups = np.repeat(np.arange(3), 80)
    untrained, trained = FitSettings(hidden=4, epochs=0), FitSettings(hidden=4, epochs=100)
    best, means = select_settings(audio, text, y, groups, grid=(untrained, trained))
    assert best == trained and len(means) == 2 and means[1] > means[0] + 0.2
    assert means[1] == pytest.approx(
        np.mean(
            [
                balanced_accuracy_score(
                    y[groups == g],
                    fused_probabilities(
                        fit_posterior_gmu(audio[groups != g], text[groups != g], y[groups != g], 0, trained),
                        audio[groups == g],
                        text[groups == g],
                    )[0].argmax(1),
                )
                for g in range(3)
            ]
        )
    )  # fmt: skip
    with pytest.raises(StackingError, match="at least 2 speaker groups"):
        select_settings(audio, text, y, np.zeros(240))


# ---------------------------------------------------------------------------------------
# experiments.stacked_fusion on run folders written here: 6 speakers, 2 outer folds of 3


SPEAKERS = [f"s{i}" for i in range(6)]


def corpus(n_per_speaker: int = 40) -> tuple[dict[str, str], dict[str, int]]:
    rng = np.random.default_rng(2)
    speaker_of, label_of = {}, {}
    for s in SPEAKERS:
        for i in range(n_per_speaker):
            uid = f"{s}_{i}"
            speaker_of[uid], label_of[uid] = s, int(rng.integers(0, 4))
    return speaker_of, label_of


def write_run(root: Path, ids: list[str], labels: np.ndarray, p: np.ndarray, **config) -> None:
    root.mkdir(parents=True)
    pred = Predictions(ids, labels, p.argmax(1), p.astype(np.float32), CLASSES)
    write_predictions(root / "predictions.npz", pred)
    metrics = {"ua": ua(labels, p), "predictions": "predictions.npz", "config": config}
    (root / "metrics.json").write_text(json.dumps(metrics))


def write_runs(tmp_path: Path, seeds=(0, 1), skip_inner: bool = False) -> None:
    speaker_of, label_of = corpus()
    rng = np.random.default_rng(3)
    outer_folds = [SPEAKERS[:3], SPEAKERS[3:]]
    ids = sorted(speaker_of)
    y = np.array([label_of[u] for u in ids])
    # the text knows "angry"; every acoustic run knows the other three classes
    write_run(tmp_path / "text", ids, y, posteriors(y, {3}, rng), modality="lexical")
    for k, test in enumerate(outer_folds):
        for seed in seeds:
            cfg = {"corpus": "toy", "fold": k, "seed": seed, "protocol": "speaker_kfold"}
            t_ids = [u for u in ids if speaker_of[u] in test]
            ty = np.array([label_of[u] for u in t_ids])
            write_run(
                tmp_path / f"outer/f{k}s{seed}", t_ids, ty, posteriors(ty, {0, 1, 2}, rng), **cfg
            )
            rest = [s for s in SPEAKERS if s not in test]
            for j, spk in enumerate(rest):  # inner folds of one speaker each
                if skip_inner and (k, j) == (1, 0):
                    continue
                i_ids = [u for u in ids if speaker_of[u] == spk]
                iy = np.array([label_of[u] for u in i_ids])
                write_run(
                    tmp_path / f"inner/o{k}/s{seed}/f{j}", i_ids, iy, posteriors(iy, {0, 1, 2}, rng),
                    **cfg, exclude_speakers=test,
                )  # fmt: skip


@pytest.fixture
def toy_speakers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sf, "speakers_of", lambda corpus: corpus_speakers())


def corpus_speakers() -> dict[str, str]:
    return corpus()[0]


def test_stacking_fits_on_the_training_speakers_and_beats_the_acoustic_runs(
    tmp_path: Path, toy_speakers: None
) -> None:
    write_runs(tmp_path)
    outer, _ = load_runs(tmp_path / "outer")
    inner, _ = load_runs(tmp_path / "inner")
    text = TextPosteriors.from_dir(tmp_path / "text")
    rows = {r.name: r for r in sf.stack(outer, inner, text, save_dir=tmp_path / "fusers")}
    acoustic = np.mean(rows["acoustic"].values("ua"))
    stacked = rows["stacked GMU (MMMLA fusion on cross-fitted posteriors)"]
    assert sorted(stacked.per_fold) == [0, 1] and stacked.n_seeds == 2
    assert np.mean(stacked.values("ua")) > acoustic + 0.1
    fitted_w = rows["late fusion, w fit on cross-fitted posteriors"]
    assert np.mean(fitted_w.values("ua")) > acoustic
    assert "acoustic (seed ensemble)" in rows and "text alone" in rows
    assert sorted(p.name for p in (tmp_path / "fusers").iterdir()) == [
        "0__seed-0.npz", "0__seed-1.npz", "1__seed-0.npz", "1__seed-1.npz"
    ]  # fmt: skip


def test_an_outer_run_without_all_its_inner_folds_is_refused(
    tmp_path: Path, toy_speakers: None
) -> None:
    write_runs(tmp_path, seeds=(0,), skip_inner=True)
    text = TextPosteriors.from_dir(tmp_path / "text")
    outer, _ = load_runs(tmp_path / "outer")
    inner, _ = load_runs(tmp_path / "inner")
    with pytest.raises(StackingError, match="tested 80 of its 120 training utterances"):
        sf.stack(outer, inner, text)
    other_seed = [r for r in outer if r.config["fold"] == 0]
    for r in other_seed:
        r.metrics["config"]["seed"] = 7
    with pytest.raises(
        StackingError, match=r"--seeds 7 --set 'data.exclude_speakers=\[s0, s1, s2\]'"
    ):
        sf.stack(other_seed, inner, text)


def test_cli_writes_the_table_and_names_a_missing_folder(
    tmp_path: Path, toy_speakers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    write_runs(tmp_path, seeds=(0,))
    args = ["--outer", str(tmp_path / "outer"), "--inner", str(tmp_path / "inner")]
    assert sf.main([*args, "--text", str(tmp_path / "text"), "--out", str(tmp_path / "t")]) == 0
    md = (tmp_path / "t" / "benchmark.md").read_text()
    assert "stacked GMU" in md and "late fusion vs its acoustic row" in md
    chosen = json.loads((tmp_path / "t" / "fusion_settings.json").read_text())
    assert len(chosen) == 2 and all(len(c["cv_ua"]) == 8 for c in chosen.values())
    assert all(0 <= c["text_weight"] <= 1 for c in chosen.values())
    assert sf.main([*args, "--text", str(tmp_path / "none"), "--out", str(tmp_path / "t")]) == 2
    assert "none" in capsys.readouterr().err
    # outer runs of a seed without inner runs: named, unless --seeds leaves them out
    seed9 = tmp_path / "outer" / "f0s9"
    seed9.mkdir()
    metrics = json.loads((tmp_path / "outer" / "f0s0" / "metrics.json").read_text())
    metrics["config"]["seed"] = 9
    (seed9 / "metrics.json").write_text(json.dumps(metrics))
    (seed9 / "predictions.npz").write_bytes(
        (tmp_path / "outer" / "f0s0" / "predictions.npz").read_bytes()
    )
    text = ["--text", str(tmp_path / "text"), "--out", str(tmp_path / "t2")]
    assert sf.main([*args, *text]) == 2
    assert "--seeds 9" in capsys.readouterr().err
    assert sf.main([*args, *text, "--seeds", "0"]) == 0


def test_inner_commands_cover_each_outer_fold_with_its_seeds_and_settings(
    tmp_path: Path, toy_speakers: None
) -> None:
    write_runs(tmp_path)
    outer, _ = load_runs(tmp_path / "outer")
    with pytest.raises(StackingError, match="sweep.json"):
        sf.inner_commands(outer, tmp_path / "inner5")
    params = {"config": "configs/x.yaml", "data.protocol": "speaker_kfold", "data.folds": 6}
    params |= {"data.speed_perturb": [0.9, 1.1], "data.corpus": "toy"}
    entries = [
        {"name": r.run_dir.name,
         "params": {**params, "data.fold": r.config["fold"], "seed_everything": r.config["seed"]}}
        for r in outer
    ]  # fmt: skip
    (tmp_path / "outer" / "sweep.json").write_text(json.dumps({"runs": entries}))
    commands = sf.inner_commands(outer, tmp_path / "inner5", folds=5)
    assert len(commands) == 2
    first = commands[0] if "s0, s1, s2" in commands[0] else commands[1]
    assert "--seeds 0,1" in first and "--set data.folds=5" in first
    assert "'data.exclude_speakers=[s0, s1, s2]'" in first
    assert "'data.speed_perturb=[0.9, 1.1]'" in first and "config=configs/x.yaml" in first
    assert "data.folds=6" not in first and "data.fold=0" not in first
    assert first.endswith(f"--out {tmp_path / 'inner5' / 'outer-0'} --parallel 2")


def test_train_inner_runs_the_inner_sweeps_then_stacks_and_names_a_failed_one(
    tmp_path: Path, toy_speakers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shlex
    import subprocess
    import sys

    write_runs(tmp_path, seeds=(0,))
    outer, _ = load_runs(tmp_path / "outer")
    entries = [
        {"name": r.run_dir.name,
         "params": {"config": "configs/x.yaml", "data.fold": r.config["fold"], "seed_everything": 0}}
        for r in outer
    ]  # fmt: skip
    (tmp_path / "outer" / "sweep.json").write_text(json.dumps({"runs": entries}))
    ran: list[list[str]] = []
    rc = {"value": 0}

    def fake_run(command, check=False):
        ran.append(command)
        return subprocess.CompletedProcess(command, rc["value"])

    monkeypatch.setattr(subprocess, "run", fake_run)
    # the inner runs the test wrote stand for what the sweeps would train
    args = ["--outer", str(tmp_path / "outer"), "--inner", str(tmp_path / "inner"),
            "--text", str(tmp_path / "text"), "--out", str(tmp_path / "t"), "--train-inner", "4"]  # fmt: skip
    assert sf.main(args) == 0
    expected = sf.inner_commands(outer, tmp_path / "inner", folds=4)
    assert [c[1:] for c in ran] == [shlex.split(e)[1:] for e in expected]
    assert all(c[0] == sys.executable for c in ran) and len(ran) == 2
    assert (tmp_path / "t" / "benchmark.md").is_file()
    rc["value"] = 1
    ran.clear()
    assert sf.main(args) == 2 and len(ran) == 1  # the first failure stops it
