"""Readers of CREMA-D, TESS, SAVEE, EmoDB, MSP-Podcast, MELD and ESD on generated trees.

Each tree follows the corpus's documented layout with a few tiny clips per speaker and
emotion, plus the corpus's quirks; the tests assert exact counts per class, speaker and
partition, and the 4-class mapping.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datamodules.corpora import READERS, reader
from datamodules.corpora.common import FOUR_CLASSES
from datamodules.utterances import CorpusError, read_table
from experiments import prepare


def clip(path: Path, seconds: float = 0.1, sr: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.1 * np.sin(np.arange(int(seconds * sr)) / 7.0)).astype(np.float32), sr)
    return path


def run(name: str, root: Path, *args: str) -> tuple[int, str]:
    code = prepare.main([name, "--root", str(root), *args])
    return code, name


def counts(frame, column: str) -> dict[str, int]:
    return dict(Counter(frame[column]))


def test_reader_names_come_from_readers() -> None:
    assert tuple(READERS) == prepare.READER_NAMES
    for name in ("cremad", "tess", "savee", "emodb", "msppodcast", "meld", "esd"):
        assert hasattr(reader(name), "read") and hasattr(reader(name), "Options")


# --- CREMA-D ---------------------------------------------------------------------------


def cremad_tree(root: Path) -> None:
    for actor in ("1001", "1002"):
        for emotion in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD"):
            clip(root / "AudioWAV" / f"{actor}_IEO_{emotion}_HI.wav")
            clip(root / "AudioWAV" / f"{actor}_DFA_{emotion}_XX.wav")
    clip(root / "AudioWAV" / "1001_XYZ_ANG_HI.wav")  # unknown sentence code
    (root / "AudioWAV" / "1002_TIE_SAD_LO.wav").write_bytes(b"")  # empty file in the release
    (root / "VideoDemographics.csv").write_text(
        "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
        "1002,21,Female,Caucasian,Not Hispanic\n"
    )


def test_cremad(tmp_path: Path, cache_dir: Path) -> None:
    cremad_tree(tmp_path / "crema")
    assert run("cremad", tmp_path / "crema")[0] == 0
    t = read_table("cremad")
    assert len(t) == 24
    assert counts(t, "label") == {
        c: 4 for c in ("angry", "disgust", "fear", "happy", "neutral", "sad")
    }
    assert counts(t, "speaker") == {"1001": 12, "1002": 12}
    assert counts(t, "intensity") == {"high": 12, "unspecified": 12}
    assert set(t.loc[t.speaker == "1001", "gender"]) == {"male"}
    assert set(t.loc[t.speaker == "1002", "gender"]) == {"female"}
    row = t.set_index("utterance_id").loc["1001_DFA_ANG_XX"]
    assert row.transcript == "Don't forget a jacket" and row.emotion == "ANG"
    assert '"do", null, null' in row.words and '"not"' in row.words  # contraction expanded
    assert (
        prepare.main(
            ["cremad", "--root", str(tmp_path / "crema"), "--name", "c4", "--classes", "four"]
        )
        == 0
    )
    four = read_table("c4")
    assert counts(four, "label") == {c: 4 for c in FOUR_CLASSES}


def test_cremad_drops_are_counted(tmp_path: Path) -> None:
    cremad_tree(tmp_path)
    from datamodules.corpora import cremad

    result = cremad.read(tmp_path, cremad.Options())
    assert result.drops == {"not a CREMA-D file name": 1, "unreadable audio": 1}
    assert result.dropped_files["unreadable audio"][0].endswith("1002_TIE_SAD_LO.wav")


def test_cremad_without_demographics_and_wrong_root(tmp_path: Path) -> None:
    from datamodules.corpora import cremad

    clip(tmp_path / "AudioWAV" / "1001_IEO_NEU_XX.wav")
    result = cremad.read(tmp_path / "AudioWAV", cremad.Options())  # the folder itself works too
    assert [u.extra["gender"] for u in result.utterances] == [""]
    assert any("gender left empty" in n for n in result.notes)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="does not look like CREMA-D"):
        cremad.read(tmp_path / "empty", cremad.Options())
    with pytest.raises(CorpusError, match="unknown label"):
        cremad.read(tmp_path, cremad.Options(classes=["calm"]))


# --- TESS --------------------------------------------------------------------------------

TESS_FOLDERS = ("angry", "disgust", "Fear", "happy", "neutral", "Pleasant_surprise", "sad")


def tess_tree(base: Path) -> None:
    for speaker in ("OAF", "YAF"):
        for folder in TESS_FOLDERS:
            emotion = "ps" if folder == "Pleasant_surprise" else folder.lower()
            for word in ("back", "bar"):
                clip(base / f"{speaker}_{folder}" / f"{speaker}_{word}_{emotion}.wav")


def test_tess_nested_release_with_duplicate_copy(tmp_path: Path, cache_dir: Path) -> None:
    outer = tmp_path / "tess" / "TESS Toronto emotional speech set data"
    tess_tree(outer)
    tess_tree(outer / "TESS Toronto emotional speech set data")  # Kaggle's second copy
    code, _ = run("tess", tmp_path / "tess")
    assert code == 0
    t = read_table("tess")
    assert len(t) == 28
    assert counts(t, "speaker") == {"OAF": 14, "YAF": 14}
    assert counts(t, "label") == {
        c: 4 for c in ("angry", "disgust", "fear", "happy", "neutral", "surprised", "sad")
    }
    assert set(t["transcript"]) == {"Say the word back", "Say the word bar"}
    assert set(t["gender"]) == {"female"}
    meta = json.loads((cache_dir / "tess" / "prepare.json").read_text())
    assert meta["drops"]["duplicate copy"] == 28
    assert any("TESS Toronto emotional speech set data" in n for n in meta["notes"])


def test_tess_not_a_tess_root(tmp_path: Path) -> None:
    from datamodules.corpora import tess

    with pytest.raises(CorpusError, match="OAF_<emotion>"):
        tess.read(tmp_path, tess.Options())


# --- SAVEE -------------------------------------------------------------------------------

SAVEE_CODES = ("a", "d", "f", "h", "n", "sa", "su")


@pytest.mark.parametrize("layout", ["AudioData", "speaker folders", "kaggle flat"])
def test_savee_layouts(tmp_path: Path, layout: str) -> None:
    from datamodules.corpora import savee

    for speaker in savee.SPEAKERS:
        for code in SAVEE_CODES:
            for n in (1, 2):
                name = f"{code}{n:02d}.wav"
                if layout == "AudioData":
                    clip(tmp_path / "AudioData" / speaker / name)
                elif layout == "speaker folders":
                    clip(tmp_path / speaker / name)
                else:
                    clip(tmp_path / "ALL" / f"{speaker}_{name}")
    if layout == "AudioData":
        clip(tmp_path / "AudioData" / "DC" / "x01.wav")  # not a SAVEE name
    result = savee.read(tmp_path, savee.Options(classes=["four"]))
    assert result.classes == list(FOUR_CLASSES)
    assert Counter(u.label for u in result.utterances) == {c: 8 for c in FOUR_CLASSES}
    assert Counter(u.speaker for u in result.utterances) == {s: 8 for s in savee.SPEAKERS}
    assert result.drops["label not in classes"] == 4 * 3 * 2
    assert "DC_sa01" in {u.utterance_id for u in result.utterances}
    assert {u.label for u in result.utterances if u.extra["emotion"] == "sa"} == {"sad"}
    if layout == "AudioData":
        assert result.drops["not a SAVEE file name"] == 1
    assert result.notes[0].startswith(
        "layout: flat" if layout == "kaggle flat" else "layout: speaker"
    )


def test_savee_wrong_root(tmp_path: Path) -> None:
    from datamodules.corpora import savee

    with pytest.raises(CorpusError, match="does not look like SAVEE"):
        savee.read(tmp_path, savee.Options())


# --- EmoDB -------------------------------------------------------------------------------


def test_emodb(tmp_path: Path, cache_dir: Path) -> None:
    from datamodules.corpora import emodb

    for speaker in ("03", "08"):
        for letter in "WLEAFTN":
            clip(tmp_path / "wav" / f"{speaker}a01{letter}a.wav")
            clip(tmp_path / "wav" / f"{speaker}a04{letter}b.wav")
    clip(tmp_path / "wav" / "99a01Wa.wav")  # no such speaker
    assert run("emodb", tmp_path)[0] == 0
    t = read_table("emodb")
    assert len(t) == 28
    assert counts(t, "label") == {
        c: 4 for c in ("angry", "boredom", "disgust", "fear", "happy", "sad", "neutral")
    }
    assert counts(t, "speaker") == {"03": 14, "08": 14}
    assert counts(t, "gender") == {"male": 14, "female": 14}
    row = t.set_index("utterance_id").loc["03a04Fb"]
    assert row.label == "happy" and row.transcript == emodb.TEXTS["a04"]
    assert '"könnte"' in row.words
    result = emodb.read(tmp_path, emodb.Options(classes=["four"]))
    assert Counter(u.extra["emotion"] for u in result.utterances) == {
        "N": 4,
        "F": 4,
        "T": 4,
        "W": 4,
    }
    assert result.drops["not an EmoDB file name"] == 1


# --- MSP-Podcast -------------------------------------------------------------------------


def msp_tree(root: Path) -> None:
    rows = ["FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"]
    splits = ["Train"] * 3 + ["Development"] * 2 + ["Test1"] * 2 + ["Test2"]
    i = 0
    for code in ("N", "H", "S", "A", "X"):  # X: no agreement, dropped
        for k, split in enumerate(splits):
            i += 1
            name = f"MSP-PODCAST_{i:04d}_0001.wav"
            speaker = "Unknown" if k == 7 else str(100 + k % 3)
            gender = {"Unknown": "Unknown"}.get(speaker, "Female" if k % 3 else "Male")
            rows.append(f"{name},{code},{1 + k % 7}.0,4.2,3.5,{speaker},{gender},{split}")
            clip(root / "Audios" / name)
            (root / "Transcripts").mkdir(parents=True, exist_ok=True)
            if k != 0:
                (root / "Transcripts" / f"{Path(name).stem}.txt").write_text("I'm fine thanks\n")
    (root / "Labels").mkdir(parents=True, exist_ok=True)
    (root / "Labels" / "labels_consensus.csv").write_text("\n".join(rows) + "\n")


def test_msppodcast(tmp_path: Path, cache_dir: Path) -> None:
    msp_tree(tmp_path)
    assert run("msppodcast", tmp_path)[0] == 0
    t = read_table("msppodcast")
    assert len(t) == 32
    assert counts(t, "label") == {c: 8 for c in FOUR_CLASSES}
    assert counts(t, "partition") == {"train": 12, "val": 8, "test1": 8, "test2": 4}
    assert counts(t, "speaker") == {"100": 12, "101": 8, "102": 8, "unknown": 4}
    assert counts(t, "gender") == {"male": 12, "female": 16, "": 4}
    assert {"activation", "valence", "dominance"} <= set(t.columns)
    assert sorted(set(t["activation"])) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    assert (t["valence"] == 4.2).all()
    first = t.set_index("utterance_id").loc["MSP-PODCAST_0001_0001"]
    assert first.transcript == "" and first.emotion == "N"
    second = t.set_index("utterance_id").loc["MSP-PODCAST_0002_0001"]
    assert second.transcript == "I'm fine thanks" and '"am"' in second.words
    meta = json.loads((cache_dir / "msppodcast" / "prepare.json").read_text())
    assert meta["drops"]["X (no agreement)"] == 8


def test_msppodcast_options_and_errors(tmp_path: Path) -> None:
    from datamodules.corpora import msppodcast

    msp_tree(tmp_path)
    result = msppodcast.read(tmp_path, msppodcast.Options(drop_unknown_speaker=True))
    assert len(result.utterances) == 28 and result.drops["unknown speaker"] == 4
    (tmp_path / "Audios" / "MSP-PODCAST_0001_0001.wav").unlink()
    result = msppodcast.read(tmp_path, msppodcast.Options())
    assert result.drops["missing audio"] == 1
    labels = tmp_path / "Labels" / "labels_consensus.csv"
    labels.write_text(labels.read_text().replace("Test2", "Holdout", 1))
    with pytest.raises(CorpusError, match=r"labels_consensus.csv line \d+: Split_Set 'Holdout'"):
        msppodcast.read(tmp_path, msppodcast.Options())
    with pytest.raises(CorpusError, match="Labels/labels_consensus.csv"):
        msppodcast.read(tmp_path / "Audios", msppodcast.Options())


# --- MELD --------------------------------------------------------------------------------

MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime"
MELD_EMOTIONS = ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust")


def mp4(path: Path) -> None:
    """A 0.2 s clip with a black video track and a sine audio track."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        "ffmpeg",
        "-nostdin",
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=0.2",
    ]
    cmd += ["-f", "lavfi", "-i", "color=c=black:s=16x16:d=0.2", "-shortest", str(path)]
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def one_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed: the MELD reader extracts audio with it")
    path = tmp_path_factory.mktemp("mp4") / "clip.mp4"
    mp4(path)
    return path


def meld_tree(root: Path, one_mp4: Path) -> None:
    layout = {
        "train": ("train/train_sent_emo.csv", "train/train_splits", 2),
        "dev": ("dev_sent_emo.csv", "dev/dev_splits_complete", 1),
        "test": ("test_sent_emo.csv", "output_repeated_splits_test", 1),
    }
    for csv_name, folder, per_emotion in layout.values():
        rows = [MELD_HEADER]
        for d in range(per_emotion):
            for u, emotion in enumerate(MELD_EMOTIONS):
                speaker = "Chandler" if u % 2 else "Monica"
                rows.append(
                    f'{u},"Oh, I don\u2019t know.",{speaker},{emotion},neutral,{d},{u},1,2,0,0'
                )
                (root / folder).mkdir(parents=True, exist_ok=True)
                shutil.copy(one_mp4, root / folder / f"dia{d}_utt{u}.mp4")
        (root / csv_name).parent.mkdir(parents=True, exist_ok=True)
        (root / csv_name).write_bytes(("\n".join(rows) + "\n").encode("cp1252"))
    (root / "train/train_splits/dia1_utt2.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42broken")
    (root / "dev/dev_splits_complete/dia0_utt6.mp4").unlink()  # a clip missing from the release


def test_meld(tmp_path: Path, cache_dir: Path, one_mp4: Path) -> None:
    meld_tree(tmp_path / "MELD.Raw", one_mp4)
    assert run("meld", tmp_path / "MELD.Raw")[0] == 0
    t = read_table("meld")
    assert len(t) == 26
    assert counts(t, "partition") == {"train": 13, "val": 6, "test": 7}
    assert counts(t, "label") == {
        "neutral": 4,
        "happy": 4,
        "sad": 3,
        "angry": 4,
        "surprised": 4,
        "fear": 4,
        "disgust": 3,
    }
    assert counts(t, "speaker") == {"Monica": 14, "Chandler": 12}
    assert set(t["transcript"]) == {"Oh, I don\u2019t know."}
    assert "train_dia1_utt1" in set(t["utterance_id"]) and "train_dia1_utt2" not in set(
        t["utterance_id"]
    )
    wavs = sorted((cache_dir / "meld_audio").rglob("*.wav"))
    assert len(wavs) == 26 and not list((cache_dir / "meld_audio").rglob("*.part"))
    info = sf.info(str(wavs[0]))
    assert info.samplerate == 16000 and info.channels == 1
    meta = json.loads((cache_dir / "meld" / "prepare.json").read_text())
    assert meta["drops"] == {"no clip": 1, "ffmpeg cannot decode": 1, "unreadable audio": 0}
    assert meta["dropped_files"]["ffmpeg cannot decode"][0].endswith("train_splits/dia1_utt2.mp4")

    # rerun: the extracted audio is reused, not decoded again
    stamps = {w: w.stat().st_mtime_ns for w in wavs}
    assert run("meld", tmp_path / "MELD.Raw", "--name", "meld4", "--classes", "four")[0] == 0
    assert {w: w.stat().st_mtime_ns for w in wavs} == stamps
    assert counts(read_table("meld4"), "label") == {"neutral": 4, "happy": 4, "sad": 3, "angry": 4}


def test_meld_errors(tmp_path: Path, one_mp4: Path) -> None:
    from datamodules.corpora import meld

    with pytest.raises(CorpusError, match="no MELD CSVs"):
        meld.read(tmp_path, meld.Options(audio_dir=str(tmp_path / "a")))
    (tmp_path / "train_sent_emo.csv").write_text(MELD_HEADER + "\n")
    with pytest.raises(CorpusError, match="no clip folder train_splits"):
        meld.read(tmp_path, meld.Options(audio_dir=str(tmp_path / "a")))
    (tmp_path / "train_splits").mkdir()
    (tmp_path / "train_sent_emo.csv").write_text(
        MELD_HEADER + "\n1,Hi,Ross,happy,positive,0,0,1,1,0,0\n"
    )
    with pytest.raises(CorpusError, match="train_sent_emo.csv line 2: Emotion 'happy'"):
        meld.read(tmp_path, meld.Options(audio_dir=str(tmp_path / "a")))


# --- ESD ---------------------------------------------------------------------------------

ESD_FOLDERS = ("Angry", "Happy", "Neutral", "Sad", "Surprise")
ESD_PARTS = {"train": 2, "evaluation": 1, "test": 1}


def esd_tree(base: Path, speakers: tuple[str, ...], partitioned: bool) -> None:
    for speaker in speakers:
        lines = []
        n = 0
        for emotion in ESD_FOLDERS:
            for sub, k in ESD_PARTS.items():
                for _ in range(k):
                    n += 1
                    uid = f"{speaker}_{n:06d}"
                    lines.append(f"{uid}\tIt's a nice day number {n}.\t{emotion}")
                    folder = base / speaker / emotion / (sub if partitioned else "")
                    clip(folder / f"{uid}.wav")
        (base / speaker / f"{speaker}.txt").write_text("\n".join(lines) + "\n")


def test_esd_partitioned(tmp_path: Path, cache_dir: Path) -> None:
    esd_tree(tmp_path / "Emotion Speech Dataset", ("0011", "0012"), partitioned=True)
    clip(tmp_path / "Emotion Speech Dataset" / "0001" / "Angry" / "0001_000001.wav")  # Mandarin
    assert run("esd", tmp_path)[0] == 0
    t = read_table("esd")
    assert len(t) == 40
    assert counts(t, "speaker") == {"0011": 20, "0012": 20}
    assert counts(t, "label") == {c: 8 for c in ("angry", "happy", "neutral", "sad", "surprised")}
    assert counts(t, "partition") == {"train": 20, "val": 10, "test": 10}
    row = t.set_index("utterance_id").loc["0011_000005"]
    assert row.transcript == "It's a nice day number 5." and row.label == "happy"
    assert '"it", null, null], ["is"' in row.words


def test_esd_flat_has_no_partition(tmp_path: Path) -> None:
    from datamodules.corpora import esd

    esd_tree(tmp_path, ("0020",), partitioned=False)
    result = esd.read(tmp_path, esd.Options(classes=["four"]))
    assert Counter(u.label for u in result.utterances) == {c: 4 for c in FOUR_CLASSES}
    assert all("partition" not in u.extra for u in result.utterances)
    assert any("no train/evaluation/test partition" in n for n in result.notes)
    with pytest.raises(CorpusError, match="0011/ ... 0020/"):
        esd.read(tmp_path / "0020", esd.Options())
