"""CSV manifest reader: MELD text as released, audio manifests, segments and bad input."""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datamodules.audio import AudioError
from datamodules.corpora import manifest
from datamodules.corpora.manifest import ManifestOptions
from datamodules.utterances import CorpusError, read_table
from experiments import prepare

MELD_COLUMNS = "transcript=Utterance,label=Emotion,speaker=Speaker,session=Dialogue_ID"


@pytest.mark.parametrize("split", ["train", "dev"])
def test_meld_text_only(meld_root: Path, cache_dir: Path, split: str) -> None:
    path = meld_root / f"{split}_sent_emo.csv"
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    name = f"meld_{split}"
    assert (
        prepare.main(["manifest", "--root", str(path), "--name", name, "--columns", MELD_COLUMNS])
        == 0
    )
    frame = read_table(name)
    assert len(frame) == len(rows)
    assert frame["label"].value_counts().to_dict() == dict(Counter(r["Emotion"] for r in rows))
    assert frame["speaker"].value_counts().to_dict() == dict(Counter(r["Speaker"] for r in rows))
    assert set(frame["label"]) == {
        "neutral",
        "joy",
        "surprise",
        "anger",
        "sadness",
        "disgust",
        "fear",
    }
    assert (frame["audio_path"] == "").all() and frame["duration_s"].isna().all()
    assert frame["transcript"].tolist() == [r["Utterance"] for r in rows]
    # curly apostrophes become ASCII in words, and contractions expand: "must’ve" -> must have
    if split == "train":
        assert '["must", null, null], ["have", null, null]' in frame.loc[1, "words"]


def _wav(path: Path, seconds: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.1 * np.sin(np.arange(int(seconds * 16000)) / 5.0)).astype(np.float32), 16000)
    return path


def test_audio_manifest_relative_paths_segments_and_encoding(tmp_path: Path) -> None:
    _wav(tmp_path / "audio" / "a.wav", 1.0)
    _wav(tmp_path / "audio" / "long.wav", 4.0)
    text = (
        "Path,Emotion,Who,transcript,start_s,end_s\n"
        'audio/a.wav,happy,spk1,"It\u2019s fine,\nreally",,\n'  # saved as cp1252 (byte 0x92), multi-line field
        "audio/long.wav,sad,spk2,First part,0.5,2.0\n"
        "audio/long.wav,sad,spk2,Second part,2.0,4.0\n"
        "audio/a.wav,,spk3,no label,,\n"
    )
    path = tmp_path / "meta.csv"
    path.write_bytes(text.encode("cp1252"))
    opts = ManifestOptions(columns={"audio_path": "Path", "label": "Emotion", "speaker": "Who"})
    result = manifest.read(path, opts)
    assert result.drops == {"no label": 1}
    assert result.classes == ["happy", "sad"]
    a, first, second = result.utterances
    assert a.audio_path == str((tmp_path / "audio" / "a.wav").resolve())
    assert a.utterance_id == "meta_00000" and a.session == "spk1"
    assert a.transcript == "It’s fine,\nreally"
    assert [w.text for w in a.words] == ["it", "is", "fine", "really"]
    assert all(w.start is None for w in a.words)
    assert a.duration_s == pytest.approx(1.0) and a.start_s is None
    assert (first.start_s, first.end_s, first.duration_s) == (0.5, 2.0, 1.5)
    assert second.duration_s == pytest.approx(2.0)
    assert any("null spans" in n for n in result.notes)


def test_bad_manifests(tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _wav(tmp_path / "a.wav", 0.5)
    (tmp_path / "empty.wav").write_bytes(b"")

    def write(name: str, text: str) -> Path:
        (tmp_path / name).write_text(text)
        return tmp_path / name

    with pytest.raises(CorpusError, match=r"no_label\.csv lacks the required column 'label'"):
        manifest.read(write("no_label.csv", "audio_path,emotion\na.wav,sad\n"), ManifestOptions())
    with pytest.raises(CorpusError, match="lacks the required column 'audio_path'"):
        manifest.read(write("no_audio.csv", "label,speaker\nsad,x\n"), ManifestOptions())
    with pytest.raises(AudioError, match=r"line 3: .*missing\.wav"):
        manifest.read(
            write("missing.csv", "audio_path,label\na.wav,sad\nmissing.wav,sad\n"),
            ManifestOptions(),
        )
    with pytest.raises(AudioError, match=r"empty \(0 bytes\).*empty\.wav"):
        manifest.read(write("e.csv", "audio_path,label\nempty.wav,sad\n"), ManifestOptions())
    with pytest.raises(CorpusError, match=r"segment \[0.2, 3.0\] s does not fit"):
        manifest.read(
            write("seg.csv", "audio_path,label,start_s,end_s\na.wav,sad,0.2,3.0\n"),
            ManifestOptions(),
        )
    with pytest.raises(CorpusError, match="no column 'Feeling'"):
        manifest.read(tmp_path / "no_label.csv", ManifestOptions(columns={"label": "Feeling"}))
    ok = write("ok.csv", "audio_path,label\na.wav,sad\na.wav,angry\n")
    with pytest.raises(CorpusError, match=r"unknown label\(s\) \['happy'\]"):
        manifest.read(ok, ManifestOptions(classes=["sad", "happy"]))
    # the command line: one line on stderr, exit code 2, no traceback
    assert prepare.main(["manifest", "--root", str(tmp_path / "missing.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "missing.wav" in err
    assert prepare.main(["manifest", "--root", str(ok), "--classes", "angry"]) == 0
    frame = read_table("manifest")
    assert frame["label"].tolist() == ["angry"] and math.isclose(frame["duration_s"][0], 0.5)


def test_mis_encoded_text_is_repaired(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav", 0.5)
    path = tmp_path / "m.csv"
    path.write_text(
        "audio_path,label,transcript\na.wav,sad,\u201cI can\x92t\u201d\u2026\n", encoding="utf-8"
    )
    (u,) = manifest.read(path, ManifestOptions()).utterances
    assert u.transcript == "\u201cI can\u2019t\u201d\u2026"
    assert [w.text for w in u.words] == ["i", "cannot"]


def test_gender_column_is_kept_for_speaker_folds(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav", 0.5)
    path = tmp_path / "g.csv"
    path.write_text("audio_path,label,speaker,Sex\na.wav,sad,s1,F\na.wav,sad,s2, Male\n")
    result = manifest.read(path, ManifestOptions(columns={"gender": "Sex"}))
    assert [u.extra for u in result.utterances] == [{"gender": "female"}, {"gender": "male"}]
    plain = manifest.read(path, ManifestOptions())  # no gender column: no gender extra
    assert [u.extra for u in plain.utterances] == [{}, {}]
    path.write_text("audio_path,label,gender\na.wav,sad,female\na.wav,sad,x\n")
    with pytest.raises(CorpusError, match=r"line 3: gender 'x' is not male, female"):
        manifest.read(path, ManifestOptions())
