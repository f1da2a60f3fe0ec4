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
