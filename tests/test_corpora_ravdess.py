"""RAVDESS reader: the shared corpus (1080 clips) and a tiny generated wav tree."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datamodules.corpora import ravdess
from datamodules.corpora.ravdess import RavdessOptions, decode_name
from datamodules.utterances import CorpusError, read_table
from experiments import prepare


def test_decode_name() -> None:
    f = decode_name("03-01-05-02-01-01-12")
    assert f == {
        "modality": "audio-only",
        "vocal_channel": "speech",
        "emotion": "angry",
        "intensity": "strong",
        "statement": "Kids are talking by the door",
        "repetition": 1,
        "actor": 12,
        "gender": "female",
    }
    with pytest.raises(ValueError):
        decode_name("03-01-09-02-01-01-12")


def test_shared_corpus_counts(ravdess_root: Path, cache_dir: Path) -> None:
    assert prepare.main(["ravdess", "--root", str(ravdess_root)]) == 0
    frame = read_table("ravdess")
    assert len(frame) == 1080
    assert frame["speaker"].nunique() == 18
    counts = frame["label"].value_counts().to_dict()
    assert counts == {"neutral": 72, **{c: 144 for c in ravdess.LABELS if c != "neutral"}}
    assert (frame["speaker"] == frame["session"]).all()
    assert (frame["duration_s"] > 2).all()
    assert set(frame["transcript"]) == set(ravdess.STATEMENT.values())

    assert (
        prepare.main(
            [
                "ravdess",
                "--root",
                str(ravdess_root),
                "--name",
                "ravdess4",
                "--classes",
                "neutral,happy,sad,angry",
            ]
        )
        == 0
    )
    four = read_table("ravdess4")
    assert four["label"].value_counts().to_dict() == {
        "neutral": 72,
        "happy": 144,
        "sad": 144,
        "angry": 144,
    }


def _clip(path: Path, seconds: float = 0.5) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.1 * np.sin(np.arange(int(seconds * 16000)) / 7.0)).astype(np.float32), 16000)


def test_wav_layout_and_drops(tmp_path: Path) -> None:
    root = tmp_path / "rav"
    _clip(root / "Actor_01" / "03-01-01-01-01-01-01.wav")
    _clip(root / "Actor_01" / "03-01-05-02-02-01-01.wav", 0.8)
    _clip(root / "Actor_02" / "03-02-04-01-01-02-02.wav")  # song
    _clip(root / "Actor_02" / "03-01-04-01-01-02-02.wav")
    (root / "Actor_02" / "03-01-03-01-01-01-02.wav").write_bytes(b"RIFF0000WAVEjunk")  # corrupt
    (root / "Actor_02" / "._03-01-04-01-01-02-02.wav").write_bytes(b"junk")
    _clip(root / "Actor_02" / "notes.wav")
    result = ravdess.read(root, RavdessOptions())
    assert result.drops == {"not a RAVDESS file name": 1, "song": 1, "unreadable audio": 1}
    assert result.dropped_files["unreadable audio"][0].endswith("03-01-03-01-01-01-02.wav")
    assert Counter(u.speaker for u in result.utterances) == {"Actor_01": 2, "Actor_02": 1}
    angry = next(u for u in result.utterances if u.label == "angry")
    assert angry.duration_s == pytest.approx(0.8)
    assert angry.transcript == "Dogs are sitting by the door"
    assert [w.text for w in angry.words] == ["dogs", "are", "sitting", "by", "the", "door"]
    assert angry.extra["gender"] == "male" and angry.extra["intensity"] == "strong"
    assert result.classes == ["neutral", "sad", "angry"]


def test_bad_root_and_classes(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no Actor_XX"):
        ravdess.read(tmp_path, RavdessOptions())
    _clip(tmp_path / "Actor_01" / "03-01-01-01-01-01-01.wav")
    with pytest.raises(CorpusError, match="unknown label.*'happpy'"):
        ravdess.read(tmp_path, RavdessOptions(classes=["neutral", "happpy"]))
