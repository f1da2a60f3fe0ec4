"""experiments.baseline_cache: a baseline fit is kept under a key of everything it reads, read
back instead of refitted, and a broken cache file is refitted, never trusted."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from experiments import baseline_cache as bc


def test_the_key_changes_with_every_input_and_only_with_them() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    features = bc.digest_arrays([x])
    split = {"train": ["a", "b"], "val": ["c"], "test": ["d"]}
    y = {"train": np.array([0, 1]), "val": np.array([1]), "test": np.array([0])}
    key = bc.fit_key(features, kind="svm", split=split, y=y, fit="train+val")
    assert key == bc.fit_key(bc.digest_arrays([x.copy()]), kind="svm", split=dict(split), y=y,
                             fit="train+val")  # fmt: skip
    changed_x = x.copy()
    changed_x[2, 3] += 1e-3
    others = [
        bc.fit_key(bc.digest_arrays([changed_x]), kind="svm", split=split, y=y, fit="train+val"),
        bc.fit_key(
            bc.digest_arrays([x.astype(np.float64)]), kind="svm", split=split, y=y, fit="train+val"
        ),  # fmt: skip
        bc.fit_key(features, kind="probe", split=split, y=y, fit="train+val"),
        bc.fit_key(features, kind="svm", split={**split, "test": ["e"]}, y=y, fit="train+val"),
        bc.fit_key(
            features, kind="svm", split=split, y={**y, "test": np.array([1])}, fit="train+val"
        ),  # fmt: skip
        bc.fit_key(features, kind="svm", split=split, y=y, fit="train"),
    ]
    assert len({key, *others}) == 1 + len(others)


def test_a_fit_is_made_once_then_read_back(cache_dir: Path) -> None:
    calls: list[int] = []

    def fit() -> dict[str, float]:
        calls.append(1)
        return {"ua": 0.75, "wa": 0.8, "macro_f1": 0.7, "C": 0.01}

    first = bc.cached_fit("toy", "k1", fit)
    again = bc.cached_fit("toy", "k1", fit)
    assert first == again == {"ua": 0.75, "wa": 0.8, "macro_f1": 0.7, "C": 0.01}
    assert len(calls) == 1
    assert json.loads((cache_dir / "toy" / "baselines" / "k1.json").read_text())["ua"] == 0.75
    bc.cached_fit("toy", "k2", fit)  # another key is another fit
    assert len(calls) == 2
    fresh = bc.cached_fit(
        "toy", "k1", lambda: {"ua": 0.5, "wa": 0.5, "macro_f1": 0.5}, refresh=True
    )
    assert fresh["ua"] == 0.5  # refresh: fitted although cached, and stored in its place
    assert bc.cached_fit("toy", "k1", fit)["ua"] == 0.5 and len(calls) == 2


@pytest.mark.parametrize("content", ['{"ua": 0.75, "wa"', '{"C": 1.0}', "[1, 2]", "\udcff"])
def test_a_broken_cache_file_is_refitted_and_named(
    cache_dir: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = cache_dir / "toy" / "baselines" / "k.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    with caplog.at_level(logging.WARNING, logger="experiments.baseline_cache"):
        out = bc.cached_fit("toy", "k", lambda: {"ua": 0.5, "wa": 0.5, "macro_f1": 0.5})
    assert out["ua"] == 0.5
    assert str(path) in caplog.text
    assert json.loads(path.read_text()) == out  # overwritten with the fresh fit
    assert [p.name for p in path.parent.iterdir()] == ["k.json"]  # no temp file left
