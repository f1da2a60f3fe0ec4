"""Splits: disjoint and covering parts, no speaker leak, stratification, reuse of split files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datamodules.splits import (
    SplitError,
    SplitLeakError,
    check_split,
    load_or_create_split,
    make_split,
    n_folds,
    split_path,
)
from datamodules.utterances import Utterance, read_table, write_table

LABELS = ("ang", "hap", "neu", "sad")


def iemocap_like(n_sessions: int = 5, per_speaker: int = 40, seed: int = 0) -> list[Utterance]:
    """Sessions of two speakers (F, M) with an unbalanced label mix, like IEMOCAP."""
    rng = np.random.default_rng(seed)
    out = []
    for s in range(1, n_sessions + 1):
        for sex in "FM":
            speaker = f"Ses0{s}{sex}"
            labels = rng.choice(LABELS, size=per_speaker, p=[0.15, 0.25, 0.4, 0.2])
            for i, label in enumerate(labels):
                out.append(
                    Utterance(
                        utterance_id=f"{speaker}_{i:03d}",
                        speaker=speaker,
                        session=f"Ses0{s}",
                        label=str(label),
                        duration_s=float(rng.uniform(1, 8)),
                    )
                )
    return out


@pytest.fixture
def table(cache_dir: Path) -> pd.DataFrame:
    write_table("toy", iemocap_like(), {"reader": "test", "classes": list(LABELS)})
    return read_table("toy")


def speakers(table: pd.DataFrame, ids: list[str]) -> set[str]:
    return set(table.set_index("utterance_id").loc[ids, "speaker"])


def assert_partition(table: pd.DataFrame, split: dict[str, list[str]]) -> None:
    parts = [set(split[p]) for p in ("train", "val", "test")]
    assert all(parts), "every part is non-empty"
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert parts[0] | parts[1] | parts[2] == set(table["utterance_id"])


def test_sd8020_stratified_and_seeded(table: pd.DataFrame) -> None:
    split = make_split(table, "sd8020", seed=3)
    assert_partition(table, split)
    assert 0.18 <= len(split["test"]) / len(table) <= 0.22
    overall = table["label"].value_counts(normalize=True)
    by_id = table.set_index("utterance_id")["label"]
    for part in ("test", "val", "train"):
        share = by_id.loc[split[part]].value_counts(normalize=True)
        for label in LABELS:
            assert abs(share.get(label, 0.0) - overall[label]) <= 0.02, (part, label)
    assert make_split(table, "sd8020", seed=3) == split
    assert make_split(table, "sd8020", seed=4)["test"] != split["test"]
    # speaker-dependent: the test speakers are also trained on
    assert speakers(table, split["test"]) <= speakers(table, split["train"])


def test_loso_holds_out_a_whole_session(table: pd.DataFrame) -> None:
    assert n_folds(table, "loso") == 5
    for fold in range(5):
        split = make_split(table, "loso", fold=fold, seed=0)
        assert_partition(table, split)
        assert speakers(table, split["test"]) == {f"Ses0{fold + 1}F", f"Ses0{fold + 1}M"}
        val_spk = speakers(table, split["val"])
        assert len(val_spk) == 1
        assert not val_spk & speakers(table, split["train"])
        assert not speakers(table, split["test"]) & speakers(table, split["train"] + split["val"])


def test_lospko_val_is_the_session_mate(table: pd.DataFrame) -> None:
    assert n_folds(table, "lospko") == 10
    for fold in range(10):
        split = make_split(table, "lospko", fold=fold)
        assert_partition(table, split)
        (test_spk,) = speakers(table, split["test"])
        mate = test_spk[:-1] + ("M" if test_spk.endswith("F") else "F")
        assert speakers(table, split["val"]) == {mate}
        assert test_spk not in speakers(table, split["train"])


def test_lospko_without_pairs_draws_a_training_speaker(table: pd.DataFrame) -> None:
    table = table.assign(session=table["speaker"])  # RAVDESS-like: one speaker per session
    split = make_split(table, "lospko", fold=0, seed=1)
    assert_partition(table, split)
    assert len(speakers(table, split["val"])) == 1
    assert not speakers(table, split["val"]) & speakers(table, split["train"] + split["test"])


def test_explicit_speakers(table: pd.DataFrame) -> None:
    split = make_split(
        table, "speakers", test_speakers=["Ses01F", "Ses02M"], val_speakers=["Ses03F"]
    )
    assert_partition(table, split)
    assert speakers(table, split["test"]) == {"Ses01F", "Ses02M"}
    assert speakers(table, split["val"]) == {"Ses03F"}
    # val drawn by the suite: several training speakers, as in speaker_kfold, never one
    drawn = make_split(table, "speakers", test_speakers=["Ses01F", "Ses02M"], seed=3)
    assert_partition(table, drawn)
    val_spk = speakers(table, drawn["val"])
    assert len(val_spk) >= 2 and not val_spk & {"Ses01F", "Ses02M"}
    assert not val_spk & speakers(table, drawn["train"])
    with pytest.raises(SplitError, match="Nobody"):
        make_split(table, "speakers", test_speakers=["Nobody"])
    with pytest.raises(SplitError, match="needs test_speakers"):
        make_split(table, "speakers")
    with pytest.raises(SplitLeakError):
        make_split(table, "speakers", test_speakers=["Ses01F"], val_speakers=["Ses01F"])


def test_forced_leak_fails_loudly(table: pd.DataFrame) -> None:
    split = make_split(table, "loso", fold=0)
    leaked = {**split, "train": split["train"] + split["test"][:1], "test": split["test"][1:]}
    with pytest.raises(SplitLeakError, match="Ses01"):
        check_split(table, leaked, "loso")
    check_split(table, leaked, "sd8020")  # speaker-dependent: allowed
    overlap = {**split, "val": split["val"] + split["train"][:1]}
    with pytest.raises(SplitError, match="both train and val"):
        check_split(table, overlap, "sd8020")


def test_bad_arguments(table: pd.DataFrame) -> None:
    with pytest.raises(SplitError, match="unknown protocol"):
        make_split(table, "random")
    with pytest.raises(SplitError, match="5 folds"):
        make_split(table, "loso", fold=5)
    with pytest.raises(SplitError, match="speaker-dependent"):
        make_split(table, "sd8020", test_speakers=["Ses01F"])


def test_split_file_written_and_reused(table: pd.DataFrame, cache_dir: Path) -> None:
    split = load_or_create_split("toy", "loso", fold=2, seed=1)
    path = split_path("toy", "loso", fold=2, seed=1)
    assert path == cache_dir / "toy" / "splits" / "loso-seed1" / "fold2.json"
    record = json.loads(path.read_text())
    assert record["counts"] == {p: len(split[p]) for p in ("train", "val", "test")}
    # a hand-edited file is what the next run reads: the file, not the seed, is the truth
    record["train"], record["val"] = record["train"][1:], record["val"] + record["train"][:1]
    path.write_text(json.dumps(record))
    again = load_or_create_split("toy", "loso", fold=2, seed=1)
    assert again["val"] == record["val"]
    assert not list(path.parent.glob(".*.tmp"))


def test_stale_split_file_is_redrawn_naming_the_file(table: pd.DataFrame, capsys) -> None:
    load_or_create_split("toy", "sd8020")
    path = split_path("toy", "sd8020")
    record = json.loads(path.read_text())
    record["test"].append("gone_001")
    path.write_text(json.dumps(record))
    split = load_or_create_split("toy", "sd8020")
    assert "gone_001" not in split["test"]
    assert_partition(table, split)
    err = capsys.readouterr().err
    assert "fold0.json was drawn for another utterance set" in err and "drawing it again" in err
    assert "gone_001" not in path.read_text()
    path.write_text("{not json")
    with pytest.raises(SplitError, match="cannot read split file"):
        load_or_create_split("toy", "sd8020")


def test_speakers_split_files_differ_by_speakers(table: pd.DataFrame) -> None:
    a = split_path("toy", "speakers", test_speakers=["Ses01F"])
    b = split_path("toy", "speakers", test_speakers=["Ses02F"])
    assert a != b and a.parent.name == "speakers-seed0-spkSes01F-mv"  # several val speakers
    given = split_path("toy", "speakers", test_speakers=["Ses01F"], val_speakers=["Ses03F"])
    assert given.parent.name == "speakers-seed0-spkSes01F-valSes03F"


def test_re_prepared_corpus_redraws_its_split(table: pd.DataFrame, capsys) -> None:
    """Issue #15: the corpus prepared again with fewer utterances never reuses the old split."""
    before = load_or_create_split("toy", "loso", fold=1)
    fewer = [u for u in iemocap_like() if not u.utterance_id.endswith("_000")]
    write_table("toy", fewer, {"reader": "test", "classes": list(LABELS)})
    after = load_or_create_split("toy", "loso", fold=1)
    assert_partition(read_table("toy"), after)
    assert sum(map(len, after.values())) == sum(map(len, before.values())) - 10
    assert "drawing it again" in capsys.readouterr().err
    assert load_or_create_split("toy", "loso", fold=1) == after  # the new file is reused
    assert "drawing it again" not in capsys.readouterr().err
