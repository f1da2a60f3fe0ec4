"""Paired corpus: RAVDESS clips with MELD texts of their class, on a generated tree and the
shared corpora; the manifest prepares into a corpus with the actors' speakers and genders."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datamodules.corpora import meld
from datamodules.corpora.pairing import text_key, usable_texts
from datamodules.splits import speaker_groups
from datamodules.utterances import read_table
from experiments import pair_corpus, prepare

CLASSES = "neutral,happy,sad"
ACTORS = (1, 2, 3, 4)  # odd = male, even = female
EMOTION_CODES = {"neutral": "01", "calm": "02", "happy": "03", "sad": "04"}
MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode"
NUMBERS = [str(n) for n in range(12)]
# MELD's spelling: joy, sadness (the reader maps them to happy, sad)
GENERATED = {
    "neutral": [f"We meet at the station at {n} tomorrow." for n in NUMBERS],
    "joy": [f"This is the best day ever, number {n}!" for n in NUMBERS],
    "sadness": [f"I miss her, {n}." for n in NUMBERS],  # 4 words each
}
DUPLICATE = ("joy", "I am SO happy today!", "i am so happy today")
AMBIGUOUS = ("What are you doing here?", "neutral", "surprise")
SHORT = "Okay."


def _clip(path: Path, seconds: float = 0.3) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.1 * np.sin(np.arange(int(seconds * 16000)) / 7.0)
    sf.write(path, x.astype(np.float32), 16000)


def _meld_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    lines = [MELD_HEADER]
    for i, (text, emotion) in enumerate(rows):
        quoted = '"' + text.replace('"', '""') + '"'
        lines.append(f"{i},{quoted},Monica,{emotion},neutral,{i // 5},{i % 5},1,1")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A RAVDESS tree (4 actors, 2 clips of neutral, calm, happy, sad each; wav and flac) and
    a MELD text folder (train + dev) with 12 texts per class plus a duplicate, an ambiguous
    and a short line."""
    base = tmp_path_factory.mktemp("paired")
    audio = base / "ravdess"
    for actor in ACTORS:
        for code in EMOTION_CODES.values():
            for statement, suffix in (("01", "wav"), ("02", "flac")):
                name = f"03-01-{code}-01-{statement}-01-{actor:02d}.{suffix}"
                _clip(audio / f"Actor_{actor:02d}" / name)
    text = base / "meld_text"
    text.mkdir()
    train = [(t, e) for e, texts in GENERATED.items() for t in texts[:8]]
    train += [(DUPLICATE[1], DUPLICATE[0]), (AMBIGUOUS[0], AMBIGUOUS[1]), (SHORT, "neutral")]
    dev = [(t, e) for e, texts in GENERATED.items() for t in texts[8:]]
    dev += [(DUPLICATE[2], DUPLICATE[0]), (AMBIGUOUS[0], AMBIGUOUS[2]), (SHORT, "neutral")]
    _meld_csv(text / "train_sent_emo.csv", train)
    _meld_csv(text / "dev_sent_emo.csv", dev)
    return audio, text


def build(
    roots: tuple[Path, Path], out: Path, *extra: str, classes: str = CLASSES
) -> list[dict[str, str]]:
    audio, text = roots
    argv = ["--audio-root", str(audio), "--text-root", str(text), "--classes", classes]
    assert pair_corpus.main([*argv, "--out", str(out), *extra]) == 0
    with out.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_every_clip_gets_a_distinct_text_of_its_class(
    roots: tuple[Path, Path], tmp_path: Path
) -> None:
    rows = build(roots, tmp_path / "p.csv")
    assert len(rows) == len(ACTORS) * 2 * 3  # calm left out by --classes
    label_of = {u.utterance_id: u.label for u in meld.read_text(roots[1])}
    assert all(label_of[r["text_id"]] == r["label"] for r in rows)
    assert len({r["text_id"] for r in rows}) == len(rows)
    assert len({text_key(r["transcript"]) for r in rows}) == len(rows)
    assert not {text_key(AMBIGUOUS[0]), text_key(SHORT)} & {text_key(r["transcript"]) for r in rows}
    assert all(r["gender"] == ("male" if int(r["speaker"][-2:]) % 2 else "female") for r in rows)
    record = json.loads((tmp_path / "p.json").read_text())
    assert record["per_class"]["sad"] == {
        "clips": 8,
        "text_rows": 12,
        "usable_texts": 12,
        "rest_texts": 4,
    }
    assert record["per_class"]["happy"] == {
        "clips": 8,
        "text_rows": 14,
        "usable_texts": 13,
        "rest_texts": 5,
    }
    assert record["text"]["dropped"] == {
        "shorter than min_words": 2,
        "labelled with two classes": 1,  # its surprise row is not of a paired class
        "duplicate": 1,
    }
    assert record["seed"] == 0 and record["classes"] == CLASSES.split(",") and record["n"] == 24


def test_texts_are_deduplicated_by_normalised_string(roots: tuple[Path, Path]) -> None:
    texts = usable_texts(meld.read_text(roots[1]), ["neutral", "happy"], min_words=3)
    happy = [text_key(u.transcript) for u in texts.by_class["happy"]]
    assert happy.count(text_key(DUPLICATE[1])) == 1 and len(happy) == len(set(happy)) == 13
    neutral = [text_key(u.transcript) for u in texts.by_class["neutral"]]
    assert text_key(AMBIGUOUS[0]) not in neutral and text_key(SHORT) not in neutral
    assert len(usable_texts(meld.read_text(roots[1]), ["neutral"], 0).by_class["neutral"]) == 13


def test_pairing_is_deterministic_per_seed(roots: tuple[Path, Path], tmp_path: Path) -> None:
    a = build(roots, tmp_path / "a.csv", "--seed", "0")
    b = build(roots, tmp_path / "b.csv", "--seed", "0")
    c = build(roots, tmp_path / "c.csv", "--seed", "1")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert [r["text_id"] for r in a] == [r["text_id"] for r in b]
    assert [r["text_id"] for r in a] != [r["text_id"] for r in c]
    assert [r["utterance_id"] for r in a] == [r["utterance_id"] for r in c]
    # a class's pairs do not depend on which other classes are paired
    sad = build(roots, tmp_path / "sad.csv", "--seed", "0", classes="sad")
    assert [r["text_id"] for r in sad] == [r["text_id"] for r in a if r["label"] == "sad"]


def test_too_few_texts_names_the_class(
    roots: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audio, text = roots
    argv = ["--audio-root", str(audio), "--text-root", str(text), "--classes", CLASSES]
    out = tmp_path / "p.csv"
    assert pair_corpus.main([*argv, "--min-words", "5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "class 'sad' has 0 usable texts for 8 clips" in err and "12 text rows" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("classes", "named"),
    [
        ("neutral,calm", "class 'calm' of the audio corpus has no partner in the text corpus"),
        ("neutral,surprised,fear", "class 'fear' of the text corpus has no partner"),
        ("neutral,joy", "unknown class 'joy'"),
    ],
)
def test_a_class_without_partner_is_named(
    roots: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    classes: str,
    named: str,
) -> None:
    audio, text = roots
    argv = ["--audio-root", str(audio), "--text-root", str(text), "--classes", classes]
    assert pair_corpus.main([*argv, "--out", str(tmp_path / "p.csv")]) == 2
    assert named in capsys.readouterr().err


def test_manifest_prepares_with_the_actors_speakers_and_genders(
    roots: tuple[Path, Path], tmp_path: Path, cache_dir: Path
) -> None:
    rows = build(roots, tmp_path / "paired.csv")
    argv = ["--root", str(tmp_path / "paired.csv"), "--name", "paired", "--classes", CLASSES]
    assert prepare.main(["manifest", *argv]) == 0
    assert (
        prepare.main(["ravdess", "--root", str(roots[0]), "--name", "rav", "--classes", CLASSES])
        == 0
    )
    paired, rav = read_table("paired"), read_table("rav")
    assert sorted(paired["utterance_id"]) == sorted(rav["utterance_id"])
    assert paired["transcript"].tolist() == [r["transcript"] for r in rows]
    assert Counter(paired["label"]) == Counter(rav["label"])
    gender = dict(zip(paired["speaker"], paired["gender"], strict=True))
    assert gender == {f"Actor_{a:02d}": "male" if a % 2 else "female" for a in ACTORS}
    assert (paired["session"] == paired["speaker"]).all()
    # speaker_kfold deals the same gender-balanced speaker folds as on RAVDESS itself
    for seed in (0, 1):
        assert speaker_groups(paired, 2, seed) == speaker_groups(rav, 2, seed)
    assert json.loads((cache_dir / "paired" / "prepare.json").read_text())["classes"] == [
        "neutral",
        "happy",
        "sad",
    ]


def test_shared_corpora_four_classes(ravdess_root: Path, meld_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "ravdess_meld4.csv"
    argv = ["--audio-root", str(ravdess_root), "--text-root", str(meld_root)]
    assert pair_corpus.main([*argv, "--classes", "four", "--out", str(out)]) == 0
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 504
    assert Counter(r["label"] for r in rows) == {
        "neutral": 72,
        "happy": 144,
        "sad": 144,
        "angry": 144,
    }
    assert len({r["speaker"] for r in rows}) == 18
    assert len({r["text_id"] for r in rows}) == 504
    assert len({text_key(r["transcript"]) for r in rows}) == 504
    assert all(len(text_key(r["transcript"]).split()) >= 3 for r in rows)
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["n"] == 504 and record["speakers"] == 18
    assert all(v["usable_texts"] >= v["clips"] for v in record["per_class"].values())


def test_rest_out_holds_every_usable_text_no_clip_got(
    roots: tuple[Path, Path], tmp_path: Path, cache_dir: Path
) -> None:
    rows = build(roots, tmp_path / "p.csv", "--rest-out", str(tmp_path / "rest.csv"))
    with (tmp_path / "rest.csv").open(encoding="utf-8", newline="") as f:
        rest = list(csv.DictReader(f))
    assert "audio_path" not in rest[0]  # a text-only corpus
    paired = {text_key(r["transcript"]) for r in rows}
    unpaired = {text_key(r["transcript"]) for r in rest}
    assert not paired & unpaired and len(unpaired) == len(rest)
    usable = usable_texts(meld.read_text(roots[1]), CLASSES.split(","), 3)
    for c, texts in usable.by_class.items():  # paired + rest = every usable text of the class
        keys = {text_key(u.transcript) for u in texts}
        assert keys == {text_key(r["transcript"]) for r in [*rows, *rest] if r["label"] == c}
    record = json.loads((tmp_path / "p.json").read_text())
    assert record["per_class"]["sad"]["rest_texts"] == 12 - 8
    assert record["rest_manifest"] == "rest.csv"
    assert {r["speaker"] for r in rest} == {"Monica"}
    assert all(r["utterance_id"].split("_")[0] in ("train", "dev") for r in rest)
    argv = ["--root", str(tmp_path / "rest.csv"), "--name", "rest", "--classes", CLASSES]
    assert prepare.main(["manifest", *argv]) == 0
    table = read_table("rest")
    assert len(table) == len(rest) and set(table["label"]) == set(CLASSES.split(","))


def test_rest_out_may_not_overwrite_the_manifest(
    roots: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audio, text = roots
    argv = ["--audio-root", str(audio), "--text-root", str(text), "--classes", CLASSES]
    out = str(tmp_path / "p.csv")
    assert pair_corpus.main([*argv, "--out", out, "--rest-out", out]) == 2
    assert "--rest-out" in capsys.readouterr().err and not (tmp_path / "p.csv").exists()
