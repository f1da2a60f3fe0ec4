"""experiments.benchmark: rows aggregate folds × seeds, paired tests use per-fold means against
the best baseline and against attention, the seed ensemble averages probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from experiments import benchmark as bm
from experiments.benchmark_table import markdown
from experiments.stats import wilcoxon
from lightning_modules.predictions import Predictions


def row(name: str, kind: str, per_fold: dict[int, list[float]], features: str = "wb") -> bm.Row:
    r = bm.Row(name, features, kind)
    for fold, uas in per_fold.items():
        for ua in uas:
            r.add(fold, {"ua": ua, "wa": ua + 0.01, "macro_f1": ua - 0.01})
    return r


def test_table_tests_each_model_against_the_best_baseline_and_attention() -> None:
    folds = range(6)
    svm = row("svm functionals", "baseline", {f: [0.60 + 0.01 * f] for f in folds}, "func")
    probe = row("lr probe wb", "baseline", {f: [0.70 + 0.01 * f] for f in folds})
    att = row(
        "acoustic · attention", "model", {f: [0.75 + 0.01 * f, 0.77 + 0.01 * f] for f in folds}
    )
    stats_row = row("acoustic · stats", "model", {f: [0.72 + 0.02 * (f % 2)] for f in folds})
    table = bm.build_table([svm, probe, att, stats_row])
    by_name = {e["name"]: e for e in table}
    a = by_name["acoustic · attention"]
    assert a["folds"] == 6 and a["seeds"] == 2 and a["ua"]["n"] == 12
    assert a["ua"]["mean"] == pytest.approx(np.mean(att.values("ua")))
    assert a["vs_best_baseline"]["vs"] == "lr probe wb"  # the better baseline
    expected = wilcoxon(list(att.fold_means().values()), list(probe.fold_means().values()))
    assert a["vs_best_baseline"]["p"] == pytest.approx(expected.pvalue)
    assert a["vs_best_baseline"]["diff"] == pytest.approx(0.06)
    s = by_name["acoustic · stats"]
    assert s["vs_attention"]["vs"] == "acoustic · attention" and s["vs_attention"]["diff"] < 0
    assert "vs_attention" not in a and "vs_best_baseline" not in by_name["lr probe wb"]
    md = markdown(table, "toy", 1.0)
    assert "| svm functionals | func | 6 × 1 |" in md
    assert "+6.0, p=" in md  # attention vs the probe, in UA points


def test_single_fold_rows_have_no_test_and_say_n1() -> None:
    one = row("acoustic · attention", "model", {0: [0.5]})
    base = row("svm functionals", "baseline", {0: [0.4]})
    table = bm.build_table([one, base])
    entry = next(e for e in table if e["kind"] == "model")
    assert entry["vs_best_baseline"] is None
    assert "50.0 (n=1)" in markdown(table, "toy", 1.0)


def test_seed_ensemble_averages_probabilities() -> None:
    ids = ["a", "b", "c", "d"]
    labels = np.array([0, 1, 0, 1])

    def preds(p1: list[float], order: list[int]) -> Predictions:
        prob = np.array([[1 - p, p] for p in p1], np.float32)
        return Predictions(
            [ids[i] for i in order], labels[order], prob[order].argmax(1), prob[order], ["x", "y"]
        )

    # seed 1 is right on a, b, c; seed 2 on b, c, d with more confidence on d: together all
    one = preds([0.4, 0.6, 0.45, 0.45], [0, 1, 2, 3])
    two = preds([0.55, 0.9, 0.1, 0.9], [3, 2, 1, 0])  # another order: aligned by id
    out = bm._ensemble_scores([one, two])
    assert out["ua"] == 1.0
    three = preds([0.5, 0.5, 0.5, 0.5], [0, 1, 2])  # a seed that tested other utterances
    with pytest.raises(bm.BenchmarkError, match="seeds of one fold: the runs predicted different"):
        bm._ensemble_scores([one, three])


def test_no_runs_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.json").write_text(json.dumps({"nope": 1}))
    assert bm.main([str(tmp_path)]) == 2
    assert f"no finished run (metrics.json) under {tmp_path}" in capsys.readouterr().err


def test_recipe_switches_name_their_own_rows() -> None:
    plain = {"normalization": "global", "time_masks": 0, "ema_decay": 0.0}
    assert bm.recipe_labels(plain) == []
    assert bm.recipe_labels({}) == []  # a run recorded before the switches existed
    tuned = {"normalization": "speaker", "time_masks": 2, "ema_decay": 0.99, "frame_dropout": 0}
    assert bm.recipe_labels(tuned) == ["speaker norm", "time masks ×2", "EMA 0.99"]
    tuned |= {"label_smoothing": 0.1, "input_stats": True, "stats_norm": True}
    assert bm.recipe_labels(tuned)[-3:] == ["label smoothing 0.1", "input stats", "stats norm"]
    # a pretrained branch is named by its checkpoint's run folder: two pretrainings, two rows
    pretrained = {"init_lexical": "runs/pre/lex_a/checkpoints/best.ckpt", "freeze_init": True}
    assert bm.recipe_labels(pretrained) == ["lexical branch from lex_a", "frozen"]
    other = {"init_lexical": "/x/lex_b.ckpt", "init_acoustic": "runs/f0/checkpoints/best.ckpt"}
    assert bm.recipe_labels(other) == ["acoustic branch from f0", "lexical branch from lex_b"]


def test_the_run_record_carries_the_recipe_switches() -> None:
    from experiments.run_record import config_record

    model = {"architecture": "acoustic", "pooling": "attention", "fusion": "gmu"}
    model |= {"time_masks": 2, "ema_decay": 0.99, "frame_dropout": 0.1}
    model |= {"label_smoothing": 0.1, "input_stats": True, "stats_norm": True}
    record = config_record(model, {"corpus": "c", "normalization": "speaker"}, 0)
    assert record["time_masks"] == 2 and record["ema_decay"] == 0.99
    assert record["label_smoothing"] == 0.1 and record["input_stats"] is True
    assert record["stats_norm"] is True
    assert bm.recipe_labels(record)[:2] == ["speaker norm", "time masks ×2"]


def test_speaker_normalised_baselines_join_when_a_run_normalised_per_speaker(
    monkeypatch: pytest.MonkeyPatch, cache_dir: Path
) -> None:
    """Each speaker's voice shifts every feature; the class is a small move within a speaker.
    Only the per-speaker standardised baselines can see it, so they must score higher."""
    import types

    import pandas as pd

    import datamodules.corpus
    import datamodules.features
    import experiments.baselines

    rng = np.random.default_rng(0)
    speakers = [f"s{i}" for i in range(6)]
    ids, spk, labels, frames = [], [], [], {}
    for i, s in enumerate(speakers):
        for k in range(12):
            u = f"{s}_{k}"
            label = k % 2
            ids.append(u), spk.append(s), labels.append(label)
            shift = 8.0 * (i - 2.5)  # the voice: larger than the class difference
            frames[u] = rng.normal(shift + 1.5 * label, 0.3, (20, 4)).astype(np.float32)
    table = pd.DataFrame({"utterance_id": ids, "speaker": spk, "audio_path": ids})
    corpus = types.SimpleNamespace(
        name="toy", table=table, classes=["a", "b"], label_of=dict(zip(ids, "ab" * 36, strict=True))
    )
    by_spk = {s: [u for u in ids if u.startswith(s)] for s in speakers}
    split = {
        "train": by_spk["s0"] + by_spk["s1"] + by_spk["s2"],
        "val": by_spk["s3"],
        "test": by_spk["s4"] + by_spk["s5"],
    }
    functional_rows = np.stack([frames[u].mean(0) for u in ids])
    monkeypatch.setattr(datamodules.corpus, "as_corpus", lambda name: corpus)
    monkeypatch.setattr(bm, "load_split", lambda key: split)
    monkeypatch.setattr(
        datamodules.features, "load", lambda c, k, m: types.SimpleNamespace(acoustic=frames)
    )
    monkeypatch.setattr(experiments.baselines, "functionals", lambda *a, **k: functional_rows)
    key = ("toy", "speaker_kfold", 6, 0, 0, (), ())
    splits = {key: {"feature_keys": {"fk": "wb"}}}

    plain = {r.name: r for r in bm.baseline_rows(splits)}
    assert set(plain) == {"svm functionals", "lr probe wb"}
    both = {r.name: r for r in bm.baseline_rows(splits, speaker_norm=True)}
    assert set(both) == set(plain) | {
        "svm functionals · speaker norm",
        "lr probe wb · speaker norm",
    }
    for name in plain:
        normalised = both[f"{name} · speaker norm"].values("ua")[0]
        assert normalised > plain[name].values("ua")[0] and normalised >= 0.9
    fits = {r.name for r in bm.baseline_rows(splits, fits=("train+val", "train"))}
    assert fits == set(plain) | {f"{name} · train only" for name in plain}


def test_runs_on_speed_perturbed_copies_get_an_svm_trained_on_the_same_copies(
    monkeypatch: pytest.MonkeyPatch, cache_dir: Path
) -> None:
    import types

    import pandas as pd

    import datamodules.corpus
    import experiments.baselines

    speakers = [f"s{i}" for i in range(4)]
    ids = [f"{s}_{k}" for s in speakers for k in range(6)]
    table = pd.DataFrame({"utterance_id": ids, "speaker": [u[:2] for u in ids], "audio_path": ids})
    corpus = types.SimpleNamespace(
        name="toy", table=table, classes=["a", "b"], label_of={u: "ab"[int(u[-1]) % 2] for u in ids}
    )
    split = {"train": ids[:12], "val": ids[12:18], "test": ids[18:]}
    speeds_read: list[float] = []

    def functionals(
        files: list[str], *, corpus: str, workers: int = 1, speed: float = 1.0
    ) -> np.ndarray:
        speeds_read.append(speed)
        x = np.random.default_rng(round(speed * 10)).normal(size=(len(files), 3))  # same per speed
        return np.c_[np.full(len(files), speed), x]  # column 0 says which copy a row is

    seen: list[dict] = []

    def svm(
        train_x: np.ndarray,
        train_y: np.ndarray,
        test_x: np.ndarray,
        test_y: np.ndarray,
        val: tuple,
        refit: bool = True,
        val_copies: tuple | None = None,
    ) -> dict[str, float]:
        seen.append({"train": train_x[:, 0], "n_y": len(train_y), "test": test_x[:, 0],
                     "val": val[0][:, 0], "copies": None if val_copies is None else val_copies[0][:, 0]})  # fmt: skip
        return {"ua": 0.5, "wa": 0.5, "macro_f1": 0.5}

    monkeypatch.setattr(datamodules.corpus, "as_corpus", lambda name: corpus)
    monkeypatch.setattr(bm, "load_split", lambda key: split)
    monkeypatch.setattr(experiments.baselines, "functionals", functionals)
    monkeypatch.setattr(experiments.baselines, "svm_on_functionals", svm)
    key = ("toy", "speaker_kfold", 6, 0, 0, (), ())
    rows = bm.baseline_rows({key: {"feature_keys": {}}}, speed_sets=[(0.9, 1.1)])
    assert [r.name for r in rows] == [
        "svm functionals",
        "svm functionals · speed perturbation [0.9, 1.1]",
    ]
    assert sorted(set(speeds_read)) == [0.9, 1.0, 1.1] and len(speeds_read) == 3  # each read once
    plain, perturbed = seen
    assert plain["copies"] is None and len(plain["train"]) == 12
    # train: the 12 clips, then their copies at 0.9 and 1.1; val and test: clips only
    assert perturbed["train"].tolist() == [1.0] * 12 + [0.9] * 12 + [1.1] * 12
    assert perturbed["n_y"] == 36 and set(perturbed["test"]) == set(perturbed["val"]) == {1.0}
    assert perturbed["copies"].tolist() == [0.9] * 6 + [1.1] * 6

    assert not np.all(perturbed["train"] == 0)

    # Per-speaker standardisation treats each copy as a speaker of its own: column 0 (the
    # speed, constant within a copy) standardises to 0 for every copy. The two fits without
    # it are the first table's, read back from the baseline cache, not fitted again.
    seen.clear()
    rows = bm.baseline_rows({key: {"feature_keys": {}}}, speaker_norm=True, speed_sets=[(0.9, 1.1)])
    assert "svm functionals · speed perturbation [0.9, 1.1] · speaker norm" in {
        r.name for r in rows
    }
    assert len(seen) == 2 and all(np.allclose(s["train"], 0, atol=1e-6) for s in seen)
    assert len(list((cache_dir / "toy" / "baselines").glob("*.json"))) == 4
    # --refit-baselines: all four fitted again, the cache overwritten in place
    seen.clear()
    bm.baseline_rows(
        {key: {"feature_keys": {}}}, speaker_norm=True, speed_sets=[(0.9, 1.1)], refresh=True
    )
    assert len(seen) == 4 and len(list((cache_dir / "toy" / "baselines").glob("*.json"))) == 4


def test_benchmark_cli_refit_baselines_reaches_the_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    got: list[bool] = []

    def run_benchmark(*args: object) -> tuple[list, str]:
        got.append(bool(args[-1]))
        return [], "table"

    monkeypatch.setattr(bm, "run_benchmark", run_benchmark)
    assert bm.main([str(tmp_path)]) == 0 and bm.main([str(tmp_path), "--refit-baselines"]) == 0
    assert got == [False, True]


def _run(tmp_path: Path, name: str, ua: float, **config: object) -> tuple[object, tuple]:
    from experiments.runs import RunRecord

    base = {"architecture": "acoustic", "modality": "acoustic", "pooling": "attention"}
    base |= {"fusion": "none", "corpus": "c", "protocol": "speaker_kfold", "feature_set": "wb"}
    metrics = {"ua": ua, "wa": ua, "macro_f1": ua, "config": base | config}
    return RunRecord(tmp_path / name, metrics), ("c", "speaker_kfold", 6, 0, 0, (), ())


def test_runs_differing_in_a_training_setting_never_share_a_row(tmp_path: Path) -> None:
    made = [
        _run(tmp_path, "a", 0.70, hidden_size=64, lr=0.001),
        _run(tmp_path, "b", 0.72, hidden_size=64, lr=0.001),
        _run(tmp_path, "c", 0.50, hidden_size=128, lr=0.001),
        # recorded before lr was recorded: lr is not compared, hidden_size still is
        _run(tmp_path, "d", 0.74, hidden_size=64),
    ]
    runs = [r for r, _ in made]
    splits = {str(r.run_dir): s for r, s in made}
    rows = {r.name: r for r in bm.model_rows(runs, splits)}
    assert set(rows) == {
        "acoustic · attention · hidden_size 64",
        "acoustic · attention · hidden_size 128",
    }
    assert rows["acoustic · attention · hidden_size 64"].values("ua") == [0.70, 0.72, 0.74]
    assert rows["acoustic · attention · hidden_size 128"].values("ua") == [0.50]
    # one setting throughout: one row, named as before
    same = bm.model_rows(runs[:2], splits)
    assert [r.name for r in same] == ["acoustic · attention"]


def test_a_probe_is_not_split_by_the_encoder_size_it_ignores(tmp_path: Path) -> None:
    probe = {"sequence_encoder": "none", "pooling": "stats"}
    made = [
        _run(tmp_path, "a", 0.70, hidden_size=64, bucketing=True, **probe),
        _run(tmp_path, "b", 0.75, hidden_size=128, bucketing=False, **probe),
    ]
    rows = bm.model_rows([r for r, _ in made], {str(r.run_dir): s for r, s in made})
    names = sorted(r.name for r in rows)
    assert names == [
        "acoustic · stats probe · bucketing off",
        "acoustic · stats probe · bucketing on",
    ]


def test_the_run_record_carries_the_training_settings() -> None:
    from experiments.run_record import config_record

    model = {"architecture": "acoustic", "pooling": "attention", "fusion": "gmu"}
    model |= {"lr": 0.003, "weight_decay": 0.01, "head_hidden": 0}
    record = config_record(model, {"corpus": "c", "batch_size": 16, "bucketing": False}, 0)
    assert bm.run_settings(record) == {
        "head_hidden": 0,
        "lr": 0.003,
        "weight_decay": 0.01,
        "batch_size": 16,
        "bucketing": False,
    }


def test_the_run_record_keeps_the_training_seed_and_old_records_get_it_back(
    tmp_path: Path,
) -> None:
    from experiments.run_record import config_record
    from experiments.runs import load_runs, pair_key

    model = {"architecture": "acoustic", "pooling": "attention", "fusion": "none"}
    data = {"corpus": "c", "seed": 0}
    # 1 == True and 0 == False: seed 1 was once recorded as the split's seed 0
    assert [config_record(model, data, s)["seed"] for s in (0, 1, 2)] == [0, 1, 2]
    assert config_record(model, {**data, "seed": 5}, None)["seed"] == 5
    assert config_record(model, {**data, "seed": 5}, True)["seed"] == 5
    for seed in (0, 1):  # two runs of one fold written with the old record
        run = tmp_path / f"fold-0__seed-{seed}"
        run.mkdir()
        metrics = {"ua": 0.5, "config": {"fold": 0, "seed": 0}}
        (run / "metrics.json").write_text(json.dumps(metrics))
        (run / "config.yaml").write_text(
            f"# lightning\nseed_everything: {seed}\ndata:\n  seed: 0\n"
        )
    runs, _ = load_runs(tmp_path)
    assert sorted(pair_key(r) for r in runs) == [("0", "0"), ("0", "1")]


def test_a_moved_run_folder_still_finds_its_checkpoint(tmp_path: Path) -> None:
    from experiments.runs import RunRecord

    old = tmp_path / "old" / "run"
    new = tmp_path / "new" / "run"
    (new / "checkpoints").mkdir(parents=True)
    (new / "checkpoints" / "best.ckpt").write_bytes(b"x")
    recorded = str(old / "checkpoints" / "best.ckpt")
    assert RunRecord(new, {"checkpoint": recorded}).checkpoint_path == new / "checkpoints/best.ckpt"
    elsewhere = RunRecord(tmp_path / "test-only", {"checkpoint": recorded})
    assert elsewhere.checkpoint_path == Path(recorded)  # not in its folder: as recorded
    with pytest.raises(bm.BenchmarkError, match="is gone"):
        bm.split_of(elsewhere)


def test_runs_selected_on_another_val_metric_get_their_own_row(tmp_path: Path) -> None:
    plain, key = _run(tmp_path, "a", 0.7)
    smooth, _ = _run(tmp_path, "b", 0.8)
    smooth.metrics["selection"] = {"monitor": "val/ua_smooth", "mode": "max", "best": 0.8}
    plain.metrics["selection"] = {"monitor": "val/ua", "mode": "max", "best": 0.7}
    rows = {
        r.name: r
        for r in bm.model_rows([plain, smooth], {str(r.run_dir): key for r in (plain, smooth)})
    }
    assert set(rows) == {"acoustic · attention", "acoustic · attention · selected on val/ua_smooth"}
    assert bm.selection_labels({"selection": None}) == []


def _text_run(tmp_path: Path, name: str, ids: list[str], probs: np.ndarray, **config: object):
    from experiments.runs import RunRecord
    from lightning_modules.predictions import write_predictions

    labels = np.zeros(len(ids), np.int64)
    pred = Predictions(ids, labels, probs.argmax(1), probs.astype(np.float32), ["x", "y"])
    write_predictions(tmp_path / name / "predictions.npz", pred)
    base = {"architecture": "lexical", "modality": "lexical", "feature_set": "minilm"}
    return RunRecord(tmp_path / name, {"ua": 0.5, "config": base | config})


def test_late_fusion_mixes_each_acoustic_run_with_the_text_and_tests_it_against_that_row(
    tmp_path: Path,
) -> None:
    from experiments.late_fusion import LateFusionError, TextPosteriors, late_rows

    ids = ["a", "b", "c", "d"]
    labels = np.array([0, 1, 0, 1])
    # the text: two seeds whose mean is right on every utterance, but only weakly
    t1 = np.array([[0.7, 0.3], [0.3, 0.7], [0.45, 0.55], [0.45, 0.55]])
    t2 = np.array([[0.5, 0.5], [0.5, 0.5], [0.65, 0.35], [0.35, 0.65]])
    text = TextPosteriors(
        [_text_run(tmp_path, "t1", ids, t1), _text_run(tmp_path, "t2", ids[::-1], t2[::-1])]
    )
    np.testing.assert_allclose(text.probabilities["c"], [0.55, 0.45])
    # the acoustic run: confident and right on a, b; unsure and wrong on c, d
    audio = np.array([[0.9, 0.1], [0.1, 0.9], [0.48, 0.52], [0.52, 0.48]], np.float32)
    pred = Predictions(ids, labels, audio.argmax(1), audio, ["x", "y"])
    fused = text.fuse(pred, 1 / 3)
    np.testing.assert_allclose(fused[2], 2 / 3 * audio[2] + 1 / 3 * np.array([0.55, 0.45]))
    assert (fused.argmax(1) == labels).all()  # the text settles the unsure two
    np.testing.assert_allclose(text.fuse(pred, 0.0), audio, atol=1e-7)
    row = bm.Row("acoustic · attention", "wb", "model")
    for fold in range(6):
        row.add(fold, {"ua": 0.5, "wa": 0.5, "macro_f1": 0.33})
    rows = late_rows([(row, {f: [pred, pred] for f in range(6)})], text, 1 / 3)
    late, late_ensemble, alone = rows
    assert late.kind == "late" and late.branch == "acoustic · attention"
    assert late.name == "acoustic · attention + text, late fusion w 0.33"
    assert late.values("ua") == [1.0] * 12 and alone.values("ua") == [1.0] * 6  # once per fold
    assert late_ensemble.branch == "acoustic · attention (seed ensemble)"
    assert late_ensemble.values("ua") == [1.0] * 6  # the two seeds' mean, fused once per fold
    entry = {e["name"]: e for e in bm.build_table([row, *rows])}[late.name]
    assert entry["vs_branch"]["vs"] == "acoustic · attention"
    assert entry["vs_branch"]["diff"] == pytest.approx(0.5)
    assert "late fusion vs its acoustic row" in markdown(bm.build_table([row, *rows]), "toy", 1)
    # what cannot be fused is named
    with pytest.raises(LateFusionError, match=r"tested none of 1 utterances .*\['e'\]"):
        text.of(Predictions([*ids, "e"], np.zeros(5), np.zeros(5), np.ones((5, 2)), ["x", "y"]))
    with pytest.raises(LateFusionError, match="predict \\['x', 'y'\\], the acoustic run"):
        text.of(Predictions(ids, labels, labels, audio, ["y", "x"]))
    with pytest.raises(LateFusionError, match="must be in \\[0, 1\\]; got 1.5"):
        text.fuse(pred, 1.5)
    audio_run = _text_run(tmp_path, "a1", ids, t1, architecture="acoustic", modality="acoustic")
    with pytest.raises(LateFusionError, match="a1 is a run of the acoustic model"):
        TextPosteriors([audio_run])


def test_benchmark_cli_late_text_names_a_folder_without_text_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "audio" / "r").mkdir(parents=True)
    (tmp_path / "audio" / "r" / "metrics.json").write_text(json.dumps({"ua": 0.5}))
    (tmp_path / "empty").mkdir()
    rc = bm.main([str(tmp_path / "audio"), "--late-text", str(tmp_path / "empty")])
    assert rc == 2
    assert (
        f"no finished text run (metrics.json) under {tmp_path / 'empty'}" in capsys.readouterr().err
    )
