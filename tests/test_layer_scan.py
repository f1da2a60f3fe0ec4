"""`experiments.layer_scan`: every hidden state probed on speaker folds, chosen on val only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.test_frontends import mini_ravdess, prepare


def test_scan_probes_every_state_and_chooses_on_val(
    ravdess_root: Path, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from experiments import layer_scan

    prepare(
        mini_ravdess(ravdess_root, tmp_path / "rav", actors=(1, 2, 3, 4, 5, 6)), "mini", cache_dir
    )
    out = tmp_path / "scan"
    rc = layer_scan.main(
        ["mini", "--acoustic", "whisper_tiny", "--folds", "3", "--normalization", "speaker",
         "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    result = json.loads((out / "layer_scan.json").read_text())
    rows = result["states"]
    assert [r["state"] for r in rows] == [0, 1, 2, 3, 4] and result["folds"] == 3
    assert all(len(r["test_by_fold"]) == 3 and 0 <= r["test_ua"] <= 1 for r in rows)
    best = max(rows, key=lambda r: r["val_ua"])
    assert result["chosen"]["state"] == best["state"]  # by val UA, whatever test says
    assert np.isclose(result["chosen"]["val_ua"], best["val_ua"])
    assert f"| {best['state']} ← | speaker |" in (out / "layer_scan.md").read_text()
    # a second scan reads the cached states: nothing is encoded again
    from datamodules.features import store

    monkeypatch.setattr(store, "build_frontend", lambda *a, **k: pytest.fail("re-encoded"))
    again = layer_scan.scan("mini", "whisper_tiny", folds=3, norms=("global",))
    assert again["key"] == result["key"] and len(again["states"]) == 5


def test_scan_names_a_front_end_without_states(cache_dir: Path, capsys) -> None:
    from experiments import layer_scan

    assert layer_scan.main(["nosuch", "--acoustic", "compare_lld"]) == 2
    assert "applies to neural front ends" in capsys.readouterr().err
    assert layer_scan.main(["nosuch", "--acoustic", "whisper_tiny"]) == 2
    assert "corpus 'nosuch' is not prepared" in capsys.readouterr().err
