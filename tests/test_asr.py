"""Bundled ASR (Whisper tiny.en, offline) and aligning a transcript to its words."""

from __future__ import annotations

from pathlib import Path

import pytest

from datamodules.asr import AsrError, align_words, transcribe
from datamodules.audio import load_audio
from datamodules.utterances import Word, read_table
from experiments import prepare

CLIP = "Actor_01/03-01-05-02-02-01-01.flac"  # angry, strong: "Dogs are sitting by the door"


def test_align_words_matches_interpolates_and_nulls() -> None:
    heard = [
        Word("Dogs", 0.1, 0.4),
        Word("are", 0.4, 0.6),
        Word("sittin'", 0.7, 1.0),
        Word("by", 1.2, 1.3),
        Word("door.", 1.5, 1.9),
    ]
    words = align_words("Dogs are sitting by the door", heard)
    assert [w.text for w in words] == ["dogs", "are", "sitting", "by", "the", "door"]
    assert (words[0].start, words[0].end) == (0.1, 0.4)
    assert (words[2].start, words[2].end) == (0.7, 1.0)  # heard differently: takes its place
    assert (words[4].start, words[4].end) == (1.3, 1.5)  # missed: spread over the gap
    assert (words[5].start, words[5].end) == (1.5, 1.9)
    assert all(w.start is None for w in align_words("nothing heard", []))


def test_bad_audio() -> None:
    import numpy as np

    with pytest.raises(AsrError, match="1-D"):
        transcribe(np.zeros((2, 100), dtype=np.float32))


def test_transcribe_ravdess_clip(ravdess_root: Path) -> None:
    x = load_audio(ravdess_root / CLIP)
    result = transcribe(x)
    assert result.language == "en"
    tokens = [w.text.strip(".,!?").lower() for w in result.words]
    assert {"dogs", "sitting", "door"} <= set(tokens), result.text
    duration = len(x) / 16000
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)
    assert all(0 <= w.start <= w.end <= duration + 0.05 for w in result.words)
    words = align_words("Dogs are sitting by the door", result.words)
    assert all(w.start is not None for w in words)


def test_manifest_align_asr(ravdess_root: Path, tmp_path: Path, cache_dir: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text(
        f"audio_path,label,transcript\n{ravdess_root / CLIP},angry,Dogs are sitting by the door\n"
    )
    assert prepare.main(["manifest", "--root", str(csv), "--align", "asr"]) == 0
    row = read_table("manifest").iloc[0]
    assert "null" not in row["words"] and '"door"' in row["words"]


def test_pocketsphinx_backend_on_ravdess_clip(ravdess_root: Path) -> None:
    """The lighter backend: the statement's words, timed in order within the clip."""
    clip = ravdess_root / "Actor_01" / "03-01-05-01-02-01-01.flac"  # "Dogs are sitting by the door"
    x = load_audio(clip)
    heard = transcribe(x, backend="pocketsphinx")
    tokens = [w.text for w in heard.words]
    assert "door" in tokens and "sitting" in tokens, heard.text
    assert heard.text == " ".join(tokens) and not any("(" in t or "<" in t for t in tokens)
    starts = [w.start for w in heard.words]
    assert starts == sorted(starts)
    assert all(0 <= w.start < w.end <= len(x) / 16000 + 0.02 for w in heard.words)


def test_unknown_backend_is_named() -> None:
    import numpy as np

    with pytest.raises(AsrError, match="unknown ASR backend 'kaldi'"):
        transcribe(np.zeros(16000, dtype=np.float32), backend="kaldi")
