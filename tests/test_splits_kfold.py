"""speaker_kfold: speaker groups that cover every speaker once, balanced by gender, leak-free,
reproducible, with a val of several training speakers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from datamodules.splits import (
    SplitError,
    load_keyed_split,
    load_or_create_split,
    make_split,
    n_folds,
    speaker_groups,
    split_key,
    split_path,
)
from datamodules.utterances import Utterance, read_table, write_table


def ravdess_like(actors: int = 18, per_actor: int = 8) -> pd.DataFrame:
    """Actors 1..N, odd = male and even = female (RAVDESS's rule), four labels each."""
    rows = []
    for a in range(1, actors + 1):
        for i in range(per_actor):
            rows.append(
                {
                    "utterance_id": f"a{a:02d}_{i}",
                    "speaker": f"Actor_{a:02d}",
                    "session": f"Actor_{a:02d}",
                    "label": ("neutral", "happy", "sad", "angry")[i % 4],
                    "gender": "male" if a % 2 else "female",
                }
            )
    return pd.DataFrame(rows)


def speakers_of(table: pd.DataFrame, ids: list[str]) -> set[str]:
    return set(table.set_index("utterance_id").loc[ids, "speaker"])


def test_groups_cover_every_speaker_once_balanced_by_gender() -> None:
    table = ravdess_like()
    groups = speaker_groups(table, folds=6, seed=0)
    flat = [s for g in groups for s in g]
    assert sorted(flat) == sorted(table["speaker"].unique())
    assert len(flat) == len(set(flat))
    assert [len(g) for g in groups] == [3] * 6
    gender = table.groupby("speaker")["gender"].first()
    per_group = [Counter(gender[s] for s in g) for g in groups]
    # 9 men and 9 women dealt over 6 groups: every group has 1 or 2 of each
    assert all(1 <= c["male"] <= 2 and 1 <= c["female"] <= 2 for c in per_group)
    assert speaker_groups(table, 6, seed=0) == groups  # reproducible
    assert speaker_groups(table, 6, seed=1) != groups  # the seed redraws them


def test_folds_are_leak_free_and_val_has_several_speakers() -> None:
    table = ravdess_like()
    assert n_folds(table, "speaker_kfold", 6) == 6
    tested: list[str] = []
    for fold in range(6):
        split = make_split(table, "speaker_kfold", fold=fold, seed=0, folds=6)
        test, val, train = (speakers_of(table, split[p]) for p in ("test", "val", "train"))
        assert not (test & val or test & train or val & train)
        assert len(val) >= 2 and len(test) == 3 and len(train) == 18 - 3 - len(val)
        assert len(set(table.loc[table.speaker.isin(val), "gender"])) == 2  # both genders
        assert set(split["train"]) | set(split["val"]) | set(split["test"]) == set(
            table["utterance_id"]
        )
        tested += sorted(test)
    assert sorted(tested) == sorted(table["speaker"].unique())  # each speaker tested once


def test_val_grows_with_the_training_speakers() -> None:
    table = ravdess_like(actors=40, per_actor=4)
    split = make_split(table, "speaker_kfold", fold=0, seed=0, folds=5)
    assert len(speakers_of(table, split["val"])) == round(0.15 * 32)  # 15% of 32 training


def test_without_gender_and_bad_fold_counts() -> None:
    table = ravdess_like(actors=7).drop(columns="gender")
    groups = speaker_groups(table, folds=3)
    assert sorted(len(g) for g in groups) == [2, 2, 3]
    with pytest.raises(SplitError, match="at least 8 speakers"):
        speaker_groups(table, folds=8)
    with pytest.raises(SplitError, match="folds >= 2"):
        speaker_groups(table, folds=1)
    with pytest.raises(SplitError, match="has 3 folds; got fold 3"):
        make_split(table, "speaker_kfold", fold=3, folds=3)
    with pytest.raises(SplitError, match="test_speakers does not apply"):
        make_split(table, "speaker_kfold", test_speakers=["Actor_01"], folds=3)


def test_split_file_is_keyed_by_fold_count_and_reused(cache_dir: Path) -> None:
    table = ravdess_like(actors=10, per_actor=4)
    utts = [
        Utterance(**{k: v for k, v in r.items() if k != "gender"}) for r in table.to_dict("records")
    ]
    write_table("kf", utts, {"reader": "test"})
    split = load_or_create_split("kf", "speaker_kfold", fold=1, seed=2, folds=5)
    path = split_path("kf", "speaker_kfold", fold=1, seed=2, folds=5)
    assert path.is_file() and "speaker_kfold-k5-seed2" in str(path)
    assert split_path("kf", "speaker_kfold", fold=1, seed=2, folds=4) != path
    assert load_or_create_split("kf", "speaker_kfold", fold=1, seed=2, folds=5) == split
    assert n_folds(read_table("kf"), "speaker_kfold", 5) == 5


def test_excluded_speakers_are_in_no_part_and_inner_folds_cover_the_rest(cache_dir: Path) -> None:
    """Cross-fitting: inner folds over an outer fold's training speakers only."""
    table = ravdess_like()
    outer = make_split(table, "speaker_kfold", fold=2, seed=0, folds=6)
    held_out = sorted(speakers_of(table, outer["test"]))
    rest = set(table["speaker"]) - set(held_out)
    tested: list[str] = []
    for k in range(3):
        inner = make_split(
            table, "speaker_kfold", fold=k, seed=0, folds=3, exclude_speakers=held_out
        )
        for part in ("train", "val", "test"):
            assert not speakers_of(table, inner[part]) & set(held_out)
        assert len(speakers_of(table, inner["val"])) >= 2
        tested += inner["test"]
    assert speakers_of(table, tested) == rest and len(tested) == len(set(tested))
    # the split file is its own, keyed by the exclusion, and read back the same
    write_table(
        "kfx",
        [
            Utterance(**{k: v for k, v in r.items() if k != "gender"})
            for r in table.to_dict("records")
        ],
        {"reader": "test"},
    )
    split = load_or_create_split("kfx", "speaker_kfold", 1, 0, folds=3, exclude_speakers=held_out)
    path = split_path("kfx", "speaker_kfold", 1, 0, folds=3, exclude_speakers=held_out)
    assert path.is_file() and "-ex" in path.parent.name
    assert path != split_path("kfx", "speaker_kfold", 1, 0, folds=3)
    data = {"corpus": "kfx", "protocol": "speaker_kfold", "folds": 3, "fold": 1, "seed": 0}
    key = split_key({**data, "exclude_speakers": list(reversed(held_out))})
    assert load_keyed_split(key) == split
    assert load_keyed_split(split_key(data)) != split  # without it, the 18 speakers are dealt


def test_excluding_unknown_or_every_speaker_is_refused() -> None:
    table = ravdess_like(actors=4, per_actor=4)
    with pytest.raises(SplitError, match="Actor_99"):
        make_split(table, "speaker_kfold", 0, 0, folds=2, exclude_speakers=["Actor_99"])
    with pytest.raises(SplitError, match="no speaker"):
        make_split(table, "sd8020", exclude_speakers=sorted(table["speaker"].unique()))
