"""experiments.tune ranks sweep groups by the mean validation selection value, never test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments import tune


def write_sweep(root: Path, groups: dict[float, list[tuple[float, float]]]) -> None:
    runs = []
    for lr, results in groups.items():
        for fold, (val, test) in enumerate(results):
            name = f"lr-{lr}__fold-{fold}"
            params = {"config": "configs/x.yaml", "model.lr": lr, "data.fold": fold,
                      "seed_everything": 0}  # fmt: skip
            runs.append({"name": name, "params": params})
            (root / name).mkdir(parents=True)
            metrics = {"ua": test, "selection": {"monitor": "val/ua", "mode": "max", "best": val}}
            (root / name / "metrics.json").write_text(json.dumps(metrics))
    (root / "sweep.json").write_text(json.dumps({"runs": runs}))


def test_ranks_by_validation_not_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # lr 0.01 has the better test UA but the worse validation: validation decides
    write_sweep(tmp_path, {0.001: [(0.8, 0.5), (0.7, 0.5)], 0.01: [(0.6, 0.9), (0.6, 0.9)]})
    ranked = tune.rank(tmp_path)
    assert [g["params"]["model.lr"] for g in ranked] == [0.001, 0.01]
    assert ranked[0]["mean"] == pytest.approx(0.75) and ranked[0]["n"] == 2
    assert tune.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "model:\n  lr: 0.001" in out


def test_missing_manifest_and_selection_are_named(tmp_path: Path) -> None:
    with pytest.raises(tune.TuneError, match="sweep.json not found"):
        tune.rank(tmp_path)
    write_sweep(tmp_path, {0.1: [(0.5, 0.5)]})
    path = tmp_path / "lr-0.1__fold-0" / "metrics.json"
    path.write_text(json.dumps({"ua": 0.5}))
    with pytest.raises(tune.TuneError, match="records no checkpoint selection value"):
        tune.rank(tmp_path)


def test_a_logged_validation_metric_can_rank_instead(tmp_path: Path) -> None:
    write_sweep(tmp_path, {0.001: [(0.8, 0.5), (0.7, 0.5)], 0.01: [(0.6, 0.9), (0.6, 0.9)]})
    # the smoothed val UA of every epoch, from each run's CSV log: lr 0.01 leads there
    smooth = {0.001: [0.5, 0.6, 0.55], 0.01: [0.6, 0.7, 0.65]}
    for lr, values in smooth.items():
        for fold in (0, 1):
            log = tmp_path / f"lr-{lr}__fold-{fold}" / "csv"
            log.mkdir()
            rows = "".join(f"{v},{1 - v},{e}\n" for e, v in enumerate(values))
            (log / "metrics.csv").write_text("val/ua_smooth,val/loss,epoch\n" + rows)
    ranked = tune.rank(tmp_path, "val/ua_smooth")
    assert [g["params"]["model.lr"] for g in ranked] == [0.01, 0.001]
    assert ranked[0]["mean"] == pytest.approx(0.7) and ranked[0]["monitor"] == "val/ua_smooth"
    lowest = tune.rank(tmp_path, "val/loss")  # a loss: its lowest epoch, lower is better
    assert lowest[0]["mode"] == "min" and lowest[0]["mean"] == pytest.approx(0.3)
    assert [g["params"]["model.lr"] for g in lowest] == [0.01, 0.001]
    with pytest.raises(tune.TuneError, match="logs no 'val/wa'"):
        tune.rank(tmp_path, "val/wa")
    with pytest.raises(tune.TuneError, match="not a validation metric"):
        tune.rank(tmp_path, "test/ua")
