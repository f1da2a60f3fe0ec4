"""The `official` protocol: a corpus's own partition, from the reader's `partition` column."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pandas as pd
import pytest

from datamodules.corpora import esd, msppodcast
from datamodules.datamodule import EmotionDataModule
from datamodules.splits import SplitError, load_or_create_split, make_split, n_folds, split_path
from datamodules.utterances import Utterance, read_table, utterances_to_frame, write_table
from tests.test_corpora_readers import esd_tree, msp_tree


def toy(partitions: list[str]) -> pd.DataFrame:
    rows = [
        Utterance(f"u{i:02d}", f"s{i % 3}", f"s{i % 3}", "neutral", extra={"partition": p})
        for i, p in enumerate(partitions)
    ]
    return utterances_to_frame(rows)


def expected(table: pd.DataFrame, values: set[str]) -> list[str]:
    return sorted(table.loc[table["partition"].isin(values), "utterance_id"])


def test_msppodcast_partition_reproduced_fold_per_test_set(tmp_path: Path, cache_dir: Path) -> None:
    msp_tree(tmp_path)
    result = msppodcast.read(tmp_path, msppodcast.Options())
    write_table("msp", result.utterances, {"classes": result.classes})
    table = read_table("msp")
    assert n_folds(table, "official") == 2
    for fold, test_set in enumerate(("test1", "test2")):
        split = load_or_create_split("msp", "official", fold=fold)
        assert split == {
            "train": expected(table, {"train"}),
            "val": expected(table, {"val"}),
            "test": expected(table, {test_set}),
        }
    assert [len(v) for v in split.values()] == [12, 8, 4]
    record = json.loads(split_path("msp", "official", fold=1).read_text())
    assert record["counts"] == {"train": 12, "val": 8, "test": 4}
    assert load_or_create_split("msp", "official", fold=1) == split  # read back, checked
    with pytest.raises(
        SplitError, match=r"official has 2 folds \(test sets \['test1', 'test2'\]\)"
    ):
        make_split(table, "official", fold=2)


def test_esd_partition_reproduced(tmp_path: Path, cache_dir: Path) -> None:
    esd_tree(tmp_path, ("0011", "0013"), partitioned=True)
    result = esd.read(tmp_path, esd.Options())
    write_table("esd", result.utterances, {"classes": result.classes})
    table = read_table("esd")
    assert n_folds(table, "official") == 1
    split = make_split(table, "official")
    assert {k: len(v) for k, v in split.items()} == {"train": 20, "val": 10, "test": 10}
    assert split["val"] == expected(table, {"val"})


def test_partition_spellings() -> None:
    table = toy(["Train", "dev", "development", "Test", "", "Train"])
    split = make_split(table, "official")
    assert split == {
        "train": ["u00", "u05"],
        "val": ["u01", "u02"],
        "test": ["u03"],
    }  # u04 left out


def test_no_partition_suggests_a_speaker_protocol() -> None:
    no_column = toy(["train"] * 3).drop(columns="partition")
    for table in (no_column, toy(["", "", ""])):
        with pytest.raises(SplitError, match="no official partition; use a speaker protocol"):
            make_split(table, "official")
    with pytest.raises(SplitError, match=r"no val rows \(values: \['test', 'train'\]\)"):
        make_split(toy(["train", "test"]), "official")
    with pytest.raises(SplitError, match="test/val_speakers do not apply"):
        make_split(toy(["train", "val", "test"]), "official", test_speakers=["s0"])


def test_datamodule_accepts_official() -> None:
    annotation = inspect.signature(EmotionDataModule.__init__).parameters["protocol"].annotation
    assert "official" in str(annotation)
