"""Train/val/test splits of a prepared corpus, written to disk once and reused.

Protocols (`fold` picks one of `n_folds(table, protocol)` folds; `seed` fixes every random choice):

- `sd8020`: speaker-dependent 80/20, stratified by label; val is carved from the training 80
  (stratified too). There is one fold; `fold > 0` gives another seeded repetition.
- `loso`: leave-one-session-out; folds are the sorted sessions (IEMOCAP's 5; for other corpora a
  session is whatever speaker group the reader wrote). The test part is a whole session; val is
  one speaker of the training sessions, drawn by (seed, fold), so val stays speaker-independent.
- `lospko`: leave-one-speaker-out; folds are the sorted speakers. Val is the other speaker of the
  test speaker's session when that session has exactly two speakers (the IEMOCAP convention),
  else one training speaker drawn by (seed, fold).
- `speakers`: explicit `test_speakers` (a fixed hold-out); val is `val_speakers` or one training
  speaker drawn by seed.
- `speaker_kfold`: k-fold speaker-group cross-validation (`folds` K, default 5) for corpora
  without IEMOCAP's sessions: the speakers are dealt into K groups by a seeded shuffle, balanced
  by gender where the table has a `gender` column (each gender dealt round-robin, continuing
  where the previous left off, so group sizes differ by at most one). Fold k tests group k; val
  is several training speakers, never one: max(2, 15% of them), alternating genders.
- `official`: the corpus's own partition, from the reader's `partition` column (train,
  val/dev/development, test); with several test sets (MSP-Podcast's test1, test2) fold k is the
  k-th. Rows of other values (or of the other test sets) are left out.

`exclude_speakers` (any protocol) leaves those speakers out of every part before the split is
drawn, as if the corpus lacked them: inner folds over an outer fold's training speakers
(cross-fitting, `experiments.stacked_fusion`), or learning curves over fewer speakers.

Files live in `cache/<corpus>/splits/<protocol>-seed<S>[-spk...][-ex...]/fold<K>.json` with `train`,
`val`, `test` lists of utterance ids; a file whose utterances are no longer exactly the table's
(the corpus was prepared again) is redrawn with a warning, never reused. For speaker-independent protocols no test speaker may be in
train or val: `SplitLeakError` otherwise, both when a split is made and when one is read back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from datamodules.corpus import PreparedCorpus, as_corpus
from datamodules.paths import atomic_write_text, corpus_dir

log = logging.getLogger(__name__)

Protocol = Literal["sd8020", "loso", "lospko", "speakers", "official", "speaker_kfold"]
PROTOCOLS: tuple[str, ...] = ("sd8020", "loso", "lospko", "speakers", "official", "speaker_kfold")
SPEAKER_INDEPENDENT: tuple[str, ...] = ("loso", "lospko", "speakers", "speaker_kfold")
DEFAULT_FOLDS = 5
VAL_SPEAKER_FRACTION = 0.15  # speaker_kfold, speakers: share of the training speakers held for val
MIN_VAL_SPEAKERS = 2
# Protocols whose val is several training speakers, balanced by gender (the others: one
# speaker, or lospko's session partner); `speakers` joined on 2026-11-29, its split folder
# tagged so that files drawn with one val speaker before are not reused
SEVERAL_VAL_SPEAKERS = ("speaker_kfold", "speakers")
PARTS: tuple[str, ...] = ("train", "val", "test")
TEST_FRACTION = 0.2


class SplitError(Exception):
    """A split that cannot be made or read; the message names the protocol, speaker or file."""


class SplitLeakError(SplitError):
    """A speaker of the test part appears in train or val of a speaker-independent split."""


def n_folds(table: pd.DataFrame, protocol: str, folds: int = DEFAULT_FOLDS) -> int:
    """Number of folds of `protocol` on this table (sessions for loso, speakers for lospko,
    `folds` for speaker_kfold)."""
    _check_protocol(protocol)
    if protocol == "speaker_kfold":
        return len(speaker_groups(table, folds, seed=0))
    if protocol == "loso":
        return int(table["session"].nunique())
    if protocol == "lospko":
        return int(table["speaker"].nunique())
    if protocol == "official":
        return len(_official_parts(table)["test"])
    return 1


def make_split(
    table: pd.DataFrame,
    protocol: str,
    fold: int = 0,
    seed: int = 0,
    test_speakers: Sequence[str] | None = None,
    val_speakers: Sequence[str] | None = None,
    val_fraction: float = 0.1,
    folds: int = DEFAULT_FOLDS,
    exclude_speakers: Sequence[str] | None = None,
) -> dict[str, list[str]]:
    """Split the utterance ids of `table` into train/val/test lists (each sorted), the
    `exclude_speakers` in none of them."""
    _check_protocol(protocol)
    table = without_speakers(table, exclude_speakers)
    if table["utterance_id"].duplicated().any():
        dup = table.loc[table["utterance_id"].duplicated(), "utterance_id"].iloc[0]
        raise SplitError(f"utterance id '{dup}' appears twice in the table")
    if not 0.0 <= val_fraction < 1.0:
        raise SplitError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng([seed, fold, _protocol_code(protocol)])
    if protocol == "official":
        if test_speakers or val_speakers:
            raise SplitError(
                "official follows the corpus's partition: test/val_speakers do not apply"
            )
        train, val, test = _official(table, fold)
    elif protocol == "sd8020":
        if fold < 0:
            raise SplitError(f"fold must be >= 0, got {fold}")
        if test_speakers or val_speakers:
            raise SplitError("sd8020 is speaker-dependent: test_speakers/val_speakers do not apply")
        rest, test = _stratified(table, TEST_FRACTION, rng)
        train, val = _stratified(table[table["utterance_id"].isin(rest)], val_fraction, rng)
    else:
        if protocol == "speaker_kfold":
            if test_speakers:
                raise SplitError(
                    "speaker_kfold draws its test groups: test_speakers does not apply"
                )
            groups = speaker_groups(table, folds, seed)
            if not 0 <= fold < len(groups):
                raise SplitError(f"speaker_kfold has {len(groups)} folds; got fold {fold}")
            test_spk = set(groups[fold])
        else:
            test_spk = _test_speakers(table, protocol, fold, test_speakers)
        val_spk = _val_speakers(table, protocol, test_spk, val_speakers, rng)
        speakers = table["speaker"]
        test = table.loc[speakers.isin(test_spk), "utterance_id"].tolist()
        if val_spk:
            val = table.loc[speakers.isin(val_spk), "utterance_id"].tolist()
            train = table.loc[~speakers.isin(test_spk | val_spk), "utterance_id"].tolist()
        else:
            # Only one speaker is left for training: val has to share it (logged, not silent).
            log.warning(
                "%s fold %d: a single training speaker, so val is a stratified %.0f%% of its "
                "utterances (speaker-dependent validation)",
                protocol,
                fold,
                100 * val_fraction,
            )
            train, val = _stratified(table[~speakers.isin(test_spk)], val_fraction, rng)
    split = {"train": sorted(train), "val": sorted(val), "test": sorted(test)}
    check_split(table, split, protocol)
    return split


def check_split(
    table: pd.DataFrame, split: dict[str, list[str]], protocol: str, source: str = "split"
) -> None:
    """Raise if parts overlap, name unknown ids, or leak a test speaker (speaker-independent)."""
    missing = [p for p in PARTS if p not in split]
    if missing:
        raise SplitError(f"{source} lacks parts {missing}")
    known = set(table["utterance_id"])
    for part in PARTS:
        unknown = [u for u in split[part] if u not in known]
        if unknown:
            raise SplitError(
                f"{source}: {len(unknown)} {part} ids are not in the prepared table "
                f"(e.g. '{unknown[0]}'); the corpus changed since the split was written: "
                "delete the split file to make a new one"
            )
    seen: dict[str, str] = {}
    for part in PARTS:
        for uid in split[part]:
            if uid in seen:
                raise SplitError(f"{source}: id '{uid}' is in both {seen[uid]} and {part}")
            seen[uid] = part
    if protocol not in SPEAKER_INDEPENDENT:
        return
    speaker_of = dict(zip(table["utterance_id"], table["speaker"], strict=True))
    test_spk = {speaker_of[u] for u in split["test"]}
    for part in ("train", "val"):
        leaked = sorted(test_spk & {speaker_of[u] for u in split[part]})
        if leaked:
            raise SplitLeakError(
                f"{source}: test speakers {leaked} are also in {part}; protocol '{protocol}' is "
                "speaker-independent"
            )


def split_path(
    corpus: str,
    protocol: str,
    fold: int = 0,
    seed: int = 0,
    test_speakers: Sequence[str] | None = None,
    val_speakers: Sequence[str] | None = None,
    val_fraction: float = 0.1,
    folds: int = DEFAULT_FOLDS,
    exclude_speakers: Sequence[str] | None = None,
) -> Path:
    """`cache/<corpus>/splits/<protocol>[-k<K>]-seed<S>[-spk..[-mv]][-val..][-vf..][-ex..]/fold<K>.json`."""
    name = f"{protocol}-seed{seed}"
    if protocol == "speaker_kfold":
        name = f"{protocol}-k{folds}-seed{seed}"
    if protocol == "speakers" and test_speakers:
        name += "-spk" + _speaker_tag(test_speakers)
        if not val_speakers:
            name += "-mv"  # several val speakers (SEVERAL_VAL_SPEAKERS)
    if val_speakers:
        name += "-val" + _speaker_tag(val_speakers)
    if val_fraction != 0.1:
        name += f"-vf{val_fraction:g}"
    if exclude_speakers:
        name += "-ex" + _speaker_tag(exclude_speakers)
    return corpus_dir(corpus) / "splits" / name / f"fold{fold}.json"


def load_or_create_split(
    corpus: str | PreparedCorpus,
    protocol: str,
    fold: int = 0,
    seed: int = 0,
    test_speakers: Sequence[str] | None = None,
    val_speakers: Sequence[str] | None = None,
    val_fraction: float = 0.1,
    folds: int = DEFAULT_FOLDS,
    exclude_speakers: Sequence[str] | None = None,
) -> dict[str, list[str]]:
    """Read the split file of these settings (checked against the table less the excluded
    speakers), or make and write it."""
    prepared = as_corpus(corpus)
    table = without_speakers(prepared.table, exclude_speakers)
    path = split_path(
        prepared.name,
        protocol,
        fold,
        seed,
        test_speakers,
        val_speakers,
        val_fraction,
        folds,
        exclude_speakers,
    )
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            split = {part: [str(u) for u in data[part]] for part in PARTS}
        except (ValueError, KeyError, TypeError) as exc:
            raise SplitError(f"cannot read split file {path}: {exc}; delete it") from exc
        in_file = {u for part in PARTS for u in split[part]}
        in_table = set(table["utterance_id"])
        drawn_for = data.get("table_sha256")
        table_sha = _split_hash(table)
        # a protocol may leave rows out (official: the other test sets), so the table's hash
        # decides where the file records it; older files are compared by their id set
        current = in_file <= in_table and (
            drawn_for == table_sha if drawn_for else in_file == in_table
        )
        if current:
            check_split(table, split, protocol, source=f"split file {path}")
            return split
        # the corpus was prepared again with other utterances: never reuse a stale split
        message = (
            f"split file {path} was drawn for another utterance set "
            f"({len(in_file - in_table)} of its ids are gone from the table, "
            f"{len(in_table - in_file)} table utterances are new); drawing it again"
        )
        log.warning(message)
        print(f"warning: {message}", file=sys.stderr)
    split = make_split(
        table, protocol, fold, seed, test_speakers, val_speakers, val_fraction, folds
    )
    record: dict[str, Any] = {
        "corpus": prepared.name,
        "table_sha256": _split_hash(table),
        "protocol": protocol,
        "fold": fold,
        "seed": seed,
        "folds": folds if protocol == "speaker_kfold" else None,
        "test_speakers": list(test_speakers or []),
        "val_speakers": list(val_speakers or []),
        "exclude_speakers": sorted(exclude_speakers or []),
        "val_fraction": val_fraction,
        "counts": {part: len(split[part]) for part in PARTS},
        "speakers": {part: _speakers_of(table, split[part]) for part in PARTS},
        **split,
    }
    atomic_write_text(path, json.dumps(record, indent=1))
    log.info("wrote split %s (%s)", path, record["counts"])
    return split


def split_key(data: Mapping[str, Any]) -> tuple[Any, ...]:
    """The hashable key of the split a checkpoint record's `data` (or a datamodule's state)
    describes: (corpus, protocol, folds, fold, seed, test, val and excluded speakers)."""
    return (
        data.get("corpus"),
        data.get("protocol"),
        data.get("folds"),
        data.get("fold"),
        data.get("seed"),
        tuple(data.get("test_speakers") or ()),
        tuple(data.get("val_speakers") or ()),
        tuple(sorted(data.get("exclude_speakers") or ())),
    )


def load_keyed_split(key: tuple[Any, ...]) -> dict[str, list[str]]:
    """The split of a `split_key` (its corpus a name or a loaded `PreparedCorpus`), read
    from its split file or drawn again."""
    corpus, protocol, folds, fold, seed, test_spk, val_spk, *rest = key
    return load_or_create_split(
        corpus,
        protocol,
        int(fold or 0),
        int(seed or 0),
        list(test_spk) or None,
        list(val_spk) or None,
        folds=int(folds or DEFAULT_FOLDS),
        exclude_speakers=list(rest[0]) if rest and rest[0] else None,
    )


def without_speakers(table: pd.DataFrame, speakers: Sequence[str] | None) -> pd.DataFrame:
    """`table` without the rows of `speakers`; SplitError naming any speaker it lacks, or
    where nothing would be left."""
    if not speakers:
        return table
    unknown = sorted(set(speakers) - set(table["speaker"]))
    if unknown:
        raise SplitError(
            f"exclude_speakers names speakers the corpus lacks: {unknown} "
            f"(it has e.g. {sorted(set(table['speaker']))[:3]})"
        )
    kept = table[~table["speaker"].isin(set(speakers))]
    if kept.empty:
        raise SplitError("exclude_speakers leaves no speaker to split")
    return kept.reset_index(drop=True)


def _split_hash(table: pd.DataFrame) -> str:
    """Hash of what a split depends on: ids, speakers, sessions, labels, genders, partition."""
    columns = [
        c
        for c in ("utterance_id", "speaker", "session", "label", "gender", PARTITION)
        if c in table
    ]
    text = table[columns].astype(str).to_csv(index=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise SplitError(f"unknown protocol '{protocol}'; choose one of {list(PROTOCOLS)}")


def _protocol_code(protocol: str) -> int:
    return PROTOCOLS.index(protocol)


def _stratified(
    table: pd.DataFrame, fraction: float, rng: np.random.Generator
) -> tuple[list[str], list[str]]:
    """(kept, held) ids; `fraction` of each label (rounded) is held out."""
    kept: list[str] = []
    held: list[str] = []
    for _, ids in sorted(table.groupby("label")["utterance_id"]):
        ids = sorted(ids)
        order = rng.permutation(len(ids))
        n_held = int(round(fraction * len(ids)))
        held += [ids[i] for i in order[:n_held]]
        kept += [ids[i] for i in order[n_held:]]
    return kept, held


def _test_speakers(
    table: pd.DataFrame, protocol: str, fold: int, test_speakers: Sequence[str] | None
) -> set[str]:
    if protocol == "speakers":
        if not test_speakers:
            raise SplitError("protocol 'speakers' needs test_speakers (a list of speaker ids)")
        unknown = sorted(set(test_speakers) - set(table["speaker"]))
        if unknown:
            raise SplitError(
                f"test_speakers {unknown} are not in the table (speakers: "
                f"{sorted(table['speaker'].unique())[:20]})"
            )
        return set(test_speakers)
    if test_speakers:
        raise SplitError(f"test_speakers is only for protocol 'speakers', not '{protocol}'")
    column = "session" if protocol == "loso" else "speaker"
    groups = sorted(table[column].unique())
    if not 0 <= fold < len(groups):
        raise SplitError(
            f"{protocol} has {len(groups)} folds ({column}s {groups}); got fold {fold}"
        )
    return set(table.loc[table[column] == groups[fold], "speaker"])


def _val_speakers(
    table: pd.DataFrame,
    protocol: str,
    test_spk: set[str],
    val_speakers: Sequence[str] | None,
    rng: np.random.Generator,
) -> set[str]:
    """Val speakers from the training side; empty when only one training speaker remains."""
    if val_speakers:
        val = set(val_speakers)
        unknown = sorted(val - set(table["speaker"]))
        if unknown:
            raise SplitError(f"val_speakers {unknown} are not in the table")
        leaked = sorted(val & test_spk)
        if leaked:
            raise SplitLeakError(f"val_speakers {leaked} are also test speakers")
        return val
    if protocol == "lospko":
        (speaker,) = test_spk
        sessions = table.loc[table["speaker"] == speaker, "session"].unique()
        if len(sessions) == 1:
            mates = set(table.loc[table["session"] == sessions[0], "speaker"])
            if len(mates) == 2:
                return mates - test_spk
    candidates = sorted(set(table["speaker"]) - test_spk)
    if protocol in SEVERAL_VAL_SPEAKERS and len(candidates) > MIN_VAL_SPEAKERS:
        n_val = max(MIN_VAL_SPEAKERS, int(round(VAL_SPEAKER_FRACTION * len(candidates))))
        by_gender = _by_gender(table, candidates)
        queues = [list(rng.permutation(spk)) for _, spk in sorted(by_gender.items())]
        start = int(rng.integers(len(queues)))
        queues = queues[start:] + queues[:start]
        interleaved = [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)]
        return {str(s) for s in interleaved[:n_val]}
    if len(candidates) < 2:
        return set()
    return {candidates[int(rng.integers(len(candidates)))]}


def speaker_groups(table: pd.DataFrame, folds: int, seed: int = 0) -> list[list[str]]:
    """The `folds` test groups of speaker_kfold: speakers dealt after a seeded shuffle, each
    gender in turn (continuing round-robin where the previous one stopped), so every group
    gets its share of each gender and group sizes differ by at most one."""
    speakers = sorted(table["speaker"].astype(str).unique())
    if folds < 2:
        raise SplitError(f"speaker_kfold needs folds >= 2, got {folds}")
    if folds > len(speakers):
        raise SplitError(
            f"speaker_kfold with {folds} folds needs at least {folds} speakers; the corpus has "
            f"{len(speakers)}: use fewer folds or lospko"
        )
    rng = np.random.default_rng([seed, folds, _protocol_code("speaker_kfold")])
    groups: list[list[str]] = [[] for _ in range(folds)]
    slot = 0
    for _, members in sorted(_by_gender(table, speakers).items()):
        for speaker in rng.permutation(members):
            groups[slot % folds].append(str(speaker))
            slot += 1
    return [sorted(g) for g in groups]


def _by_gender(table: pd.DataFrame, speakers: Sequence[str]) -> dict[str, list[str]]:
    """Speakers by the table's `gender` (the most frequent value per speaker; "" if none)."""
    if "gender" not in table:
        return {"": sorted(speakers)}
    gender = (
        table.assign(gender=table["gender"].fillna("").astype(str).str.strip().str.lower())
        .groupby(table["speaker"].astype(str))["gender"]
        .agg(lambda g: g.mode().iloc[0] if len(g.mode()) else "")
    )
    out: dict[str, list[str]] = {}
    for speaker in sorted(speakers):
        out.setdefault(str(gender.get(speaker, "")), []).append(speaker)
    return out


PARTITION = "partition"  # the reader's column of the official split
_PARTITION_NAMES = {"train": "train", "val": "val", "dev": "val", "development": "val"}


def _official_parts(table: pd.DataFrame) -> dict[str, list[str]]:
    """Partition values of the table by part: train, val and the sorted test sets."""
    values = table[PARTITION].fillna("").astype(str) if PARTITION in table else None
    if values is None or not (values.str.strip() != "").any():
        raise SplitError(
            "protocol 'official' needs the reader's 'partition' column and this corpus has no "
            "official partition; use a speaker protocol (lospko, loso or speakers)"
        )
    names = sorted(set(values.str.strip()) - {""})
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for name in names:
        key = name.lower()
        if key in _PARTITION_NAMES:
            parts[_PARTITION_NAMES[key]].append(name)
        elif re.fullmatch(r"test\d*", key):
            parts["test"].append(name)
    for part in PARTS:
        if not parts[part]:
            raise SplitError(
                f"protocol 'official': the partition column has no {part} rows "
                f"(values: {names}); expected train, val (or dev/development) and test"
            )
    return parts


def _official(table: pd.DataFrame, fold: int) -> tuple[list[str], list[str], list[str]]:
    """(train, val, test) ids of the partition column; fold k = the k-th test set."""
    parts = _official_parts(table)
    if not 0 <= fold < len(parts["test"]):
        raise SplitError(
            f"official has {len(parts['test'])} folds (test sets {parts['test']}); got fold {fold}"
        )
    values = table[PARTITION].fillna("").astype(str).str.strip()
    ids = table["utterance_id"]
    return (
        ids[values.isin(parts["train"])].tolist(),
        ids[values.isin(parts["val"])].tolist(),
        ids[values == parts["test"][fold]].tolist(),
    )


def _speaker_tag(speakers: Sequence[str]) -> str:
    tag = "_".join(re.sub(r"[^A-Za-z0-9.]+", "", s) for s in sorted(speakers))
    if len(tag) > 40 or not tag:
        tag = hashlib.sha1("\n".join(sorted(speakers)).encode()).hexdigest()[:12]
    return tag


def _speakers_of(table: pd.DataFrame, ids: list[str]) -> list[str]:
    return sorted(table.loc[table["utterance_id"].isin(ids), "speaker"].unique())
