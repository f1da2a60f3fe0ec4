"""IEMOCAP reader on a small generated tree with the release's quirks (never the real corpus)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from datamodules.corpora import iemocap
from datamodules.corpora.iemocap import IemocapOptions, parse_wdseg, speaker_of
from datamodules.utterances import CorpusError, read_table
from experiments import prepare

REPO = Path(__file__).resolve().parents[1]

# name: (label, wdseg words as (SFrm, EFrm, token) or None for a missing .wdseg, transcript)
DIALOGS = {
    "Ses01F_impro01": {
        "Ses01F_impro01_F000": (
            "neu",
            [(33, 51, "<sil>"), (52, 83, "EXCUSE"), (84, 124, "ME(2)")],
            "Excuse me.",
        ),
        "Ses01F_impro01_M000": ("xxx", [(10, 40, "WHAT")], "What?"),
        "Ses01F_impro01_F001": (
            "exc",
            [(5, 30, "I'M"), (31, 60, "SO"), (61, 99, "HAPPY")],
            "I'm so happy!",
        ),
        "Ses01F_impro01_M001": ("fru", [(0, 20, "NO")], "No."),
        "Ses01F_impro01_F002": ("ang", None, "Stop it."),
        "Ses01F_impro01_M002": (
            "sad",
            [(0, 30, "++BREATHING++"), (31, 50, "<sil>")],
            "[BREATHING]",
        ),
        "Ses01F_impro01_M003": (
            "ang",
            [(0, 30, "++GARBAGE++"), (31, 40, "++BREATHING++")],
            "[GARBAGE]",
        ),
        "Ses01F_impro01_F003": ("hap", [(0, 30, "++LAUGHTER++")], "[LAUGHTER]"),
        "Ses01F_impro01_M004": (
            "neu",
            [(0, 9, "++GARBAGE++"), (10, 40, "THAT'S(3)"), (41, 80, "FINE")],
            "That's fine.",
        ),
    },
    "Ses02M_script01_1": {
        "Ses02M_script01_1_F000": ("sad", [(0, 50, "GOODBYE")], "Goodbye."),
        "Ses02M_script01_1_M000": (
            "ang",
            [(0, 40, "CAN'T(2)"), (41, 60, "++NOISE++"), (61, 90, "STOP")],
            "Can't stop.",
        ),
        "Ses02M_script01_1_M001": ("neu", [(0, 30, "OKAY")], "Okay."),  # its wav is empty
        "Ses02M_script01_1_F001": ("sur", [(0, 30, "OH")], "Oh!"),
    },
}
EMPTY_WAV = "Ses02M_script01_1_M001"


def _wdseg(words: list[tuple[int, int, str]]) -> str:
    last = words[-1][1]
    rows = [(0, words[0][0] - 1, "<s>")] if words[0][0] > 0 else []
    rows += words + [(last + 1, last + 10, "</s>")]
    lines = [" SFrm  EFrm    SegAScr Word"]
    lines += [f"{s:5d} {e:6d} {-1000 * (e - s + 1):10d} {w}" for s, e, w in rows]
    lines.append(" Total score:         -716300")
    return "\n".join(lines) + "\n"


def build_tree(root: Path) -> Path:
    """An IEMOCAP_full_release-shaped tree with annotator folders, ._ files, XX lines."""
    for dialog, utts in DIALOGS.items():
        session = root / f"Session{int(dialog[3:5])}"
        ev_dir = session / "dialog" / "EmoEvaluation"
        (ev_dir / "Categorical").mkdir(parents=True)
        (ev_dir / "Categorical" / f"{dialog}_e1_cat.txt").write_text(
            "[1.0 - 2.0]\tSes09F_x_F000\tang\t[1, 1, 1]\n"
        )
        header = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        trans = [f"{dialog}_MXX0 [000.0000-001.0000]: not an utterance", "garbled line"]
        for i, (name, (label, words, text)) in enumerate(utts.items()):
            header += [
                f"[{i + 1.0:.4f} - {i + 2.5:.4f}]\t{name}\t{label}\t[2.5000, 3.0000, 2.0000]",
                "C-E2:\tNeutral;\t()",
                "A-E3:\tval 3; act 2; dom  2;\t()",
                "",
            ]
            trans.append(f"{name} [{i + 1.0:08.4f}-{i + 2.5:08.4f}]: {text}")
            wav_dir = session / "sentences" / "wav" / dialog
            wav_dir.mkdir(parents=True, exist_ok=True)
            if name == EMPTY_WAV:
                (wav_dir / f"{name}.wav").write_bytes(b"")
            else:
                x = 0.1 * np.sin(np.arange(int(1.5 * 16000)) / 10.0)
                sf.write(wav_dir / f"{name}.wav", x.astype(np.float32), 16000, subtype="PCM_16")
                (wav_dir / f"._{name}.wav").write_bytes(b"\x00\x05\x16\x07junk")
            if words is not None:
                fa = session / "sentences" / "ForcedAlignment" / dialog
                fa.mkdir(parents=True, exist_ok=True)
                (fa / f"{name}.wdseg").write_text(_wdseg(words))
        (ev_dir / f"{dialog}.txt").write_text("\n".join(header) + "\n")
        (ev_dir / f"._{dialog}.txt").write_bytes(b"\x00\x05\x16\x07\x00\x02junk[")
        tr_dir = session / "dialog" / "transcriptions"
        tr_dir.mkdir(parents=True)
        (tr_dir / f"{dialog}.txt").write_text("\n".join(trans) + "\n")
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return build_tree(tmp_path / "IEMOCAP_full_release")


def test_speaker_is_the_last_name_part() -> None:
    assert speaker_of("Ses01F_impro01_M003") == "Ses01M"
    assert speaker_of("Ses05M_script03_2_F012") == "Ses05F"


def test_wdseg_spans_and_variants(tmp_path: Path) -> None:
    path = tmp_path / "x.wdseg"
    path.write_text(_wdseg([(33, 51, "<sil>"), (52, 83, "EXCUSE"), (84, 124, "ME(2)")]))
    words = parse_wdseg(path)
    assert [w.text for w in words] == ["<sil>", "excuse", "me"]
    assert (words[1].start, words[1].end) == (0.52, 0.84)  # [52, 83] inclusive
    assert words[2].end == 1.25


def test_default_protocol_counts(tree: Path) -> None:
    result = iemocap.read(tree, IemocapOptions())
    assert result.classes == ["ang", "hap", "neu", "sad"]
    assert result.drops == {
        "no word alignment": 1,
        "xxx (no majority)": 1,
        "label not in classes": 2,
        "breathing/garbage only": 2,
        "unreadable audio": 1,
    }
    assert any(EMPTY_WAV in f for f in result.dropped_files["unreadable audio"])
    by_id = {u.utterance_id: u for u in result.utterances}
    assert sorted(by_id) == [
        "Ses01F_impro01_F000",
        "Ses01F_impro01_F001",
        "Ses01F_impro01_F003",
        "Ses01F_impro01_M004",
        "Ses02M_script01_1_F000",
        "Ses02M_script01_1_M000",
    ]
    assert pd.Series([u.label for u in result.utterances]).value_counts().to_dict() == {
        "hap": 2,
        "neu": 2,
        "sad": 1,
        "ang": 1,
    }
    speakers = pd.Series([u.speaker for u in result.utterances]).value_counts().to_dict()
    assert speakers == {"Ses01F": 3, "Ses01M": 1, "Ses02F": 1, "Ses02M": 1}
    assert by_id["Ses02M_script01_1_F000"].session == "Ses02"
    # contractions expanded, each part keeping the token's span
    f001 = by_id["Ses01F_impro01_F001"].words
    assert [(w.text, w.start, w.end) for w in f001[:2]] == [("i", 0.05, 0.31), ("am", 0.05, 0.31)]
    assert [w.text for w in by_id["Ses01F_impro01_M004"].words] == ["that", "is", "fine"]
    assert [w.text for w in by_id["Ses02M_script01_1_M000"].words] == ["cannot", "stop"]
    assert [w.text for w in by_id["Ses01F_impro01_F003"].words] == ["++LAUGHTER++"]
    assert [w.text for w in by_id["Ses01F_impro01_F000"].words] == ["<sil>", "excuse", "me"]
    assert by_id["Ses01F_impro01_F000"].transcript == "Excuse me."
    for u in result.utterances:
        assert u.duration_s == pytest.approx(1.5)
        assert all(0 <= w.start < w.end <= u.duration_s for w in u.words)


def test_six_class_and_exc_apart_configs(tree: Path, cache_dir: Path) -> None:
    assert (
        prepare.main(
            [
                "iemocap",
                "--root",
                str(tree),
                "--name",
                "iem6",
                "--config",
                str(REPO / "configs/corpora/iemocap_6class.yaml"),
            ]
        )
        == 0
    )
    labels = read_table("iem6")["label"].value_counts().to_dict()
    assert labels == {"neu": 2, "exc": 1, "hap": 1, "fru": 1, "sad": 1, "ang": 1}
    meta = json.loads((cache_dir / "iem6" / "prepare.json").read_text())
    assert meta["classes"] == ["ang", "hap", "exc", "neu", "sad", "fru"]
    assert meta["drops"]["label not in classes"] == 1
    assert (
        prepare.main(
            [
                "iemocap",
                "--root",
                str(tree),
                "--name",
                "iem5",
                "--config",
                str(REPO / "configs/corpora/iemocap_exc_apart.yaml"),
            ]
        )
        == 0
    )
    assert read_table("iem5")["label"].value_counts().to_dict() == {
        "neu": 2,
        "exc": 1,
        "hap": 1,
        "sad": 1,
        "ang": 1,
    }


def test_switches_off_keep_more(tree: Path) -> None:
    opts = IemocapOptions(
        drop_no_alignment=False,
        drop_nonspeech_only=False,
        remove_garbage=False,
        expand_contractions=False,
    )
    result = iemocap.read(tree, opts)
    by_id = {u.utterance_id: u for u in result.utterances}
    assert len(result.utterances) == 9
    assert by_id["Ses01F_impro01_F002"].words[0].start is None  # no alignment: no spans
    assert [w.text for w in by_id["Ses01F_impro01_M004"].words] == ["++GARBAGE++", "that's", "fine"]


def test_cli_prints_tables_and_writes_table(
    tree: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert prepare.main(["iemocap", "--root", str(tree)]) == 0
    out = capsys.readouterr().out
    assert "breathing/garbage only" in out and "Ses01F" in out and EMPTY_WAV in out
    frame = read_table("iemocap")
    assert len(frame) == 6
    assert list(frame.columns[:10]) == [
        "utterance_id",
        "speaker",
        "session",
        "label",
        "audio_path",
        "duration_s",
        "transcript",
        "words",
        "start_s",
        "end_s",
    ]


def test_bad_input(
    tmp_path: Path, tree: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CorpusError, match="no Session"):
        iemocap.read(empty, IemocapOptions())
    assert prepare.main(["iemocap", "--root", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no Session*/ folders under" in err and "Traceback" not in err
    with pytest.raises(CorpusError, match="unknown label"):
        iemocap.read(tree, IemocapOptions(classes=["ang", "joy"]))
    config = tmp_path / "bad.yaml"
    config.write_text("merge_exc: false\ndrop_xxxx: true\n")
    assert prepare.main(["iemocap", "--root", str(tree), "--config", str(config)]) == 2
    assert "drop_xxxx" in capsys.readouterr().err
