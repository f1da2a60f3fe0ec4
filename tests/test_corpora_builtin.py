"""Built-in synthetic corpus: deterministic, resumable, exact word spans."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datamodules.corpora import builtin
from datamodules.corpora.builtin import BuiltinOptions
from datamodules.utterances import CorpusError, read_table, utterances_to_frame
from experiments import prepare

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def test_counts_spans_and_acoustics(tmp_path: Path) -> None:
    result = builtin.read(tmp_path / "a", BuiltinOptions(per_class=2, workers=2))
    assert result.classes == ["angry", "happy", "neutral", "sad"]
    assert len(result.utterances) == 4 * 4 * 2
    assert Counter(u.label for u in result.utterances) == {c: 8 for c in builtin.CLASSES}
    assert Counter(u.speaker for u in result.utterances) == {s: 8 for s in builtin.SPEAKERS}
    for u in result.utterances:
        assert u.words and u.transcript
        spans = [(w.start, w.end) for w in u.words]
        assert all(0 <= s < e <= u.duration_s for s, e in spans)
        assert all(e0 <= s1 for (_, e0), (s1, _) in zip(spans, spans[1:], strict=False))
        spoken = [w.text for w in u.words if w.text != "<sil>"]
        assert " ".join(spoken) == u.transcript.rstrip(".").lower()
    # loudness differs by emotion: angry clips are louder than sad ones
    rms = {c: [] for c in builtin.CLASSES}
    for u in result.utterances:
        rms[u.label].append(float(np.sqrt(np.mean(sf.read(u.audio_path)[0] ** 2))))
    assert np.mean(rms["angry"]) > 1.5 * np.mean(rms["sad"])


def test_deterministic_and_resumable(tmp_path: Path) -> None:
    opts = BuiltinOptions(per_class=1, seed=7, workers=1)
    a = builtin.read(tmp_path / "a", opts)
    b = builtin.read(tmp_path / "b", opts)
    table = lambda r: utterances_to_frame(r.utterances).drop(columns="audio_path")  # noqa: E731
    assert table(a).equals(table(b))
    first = Path(a.utterances[0].audio_path)
    assert first.read_bytes() == Path(b.utterances[0].audio_path).read_bytes()

    # a rerun regenerates only the missing clip; a half-written temp file is never used
    other = Path(a.utterances[1].audio_path)
    before = other.stat().st_mtime_ns
    first.with_suffix(".json").unlink()
    (first.parent / f".{first.name}.junk.tmp").write_bytes(b"half")
    again = builtin.read(tmp_path / "a", opts)
    assert other.stat().st_mtime_ns == before
    assert first.read_bytes() == Path(b.utterances[0].audio_path).read_bytes()
    assert table(again).equals(table(a))

    # another seed makes other clips in place
    c = builtin.read(tmp_path / "a", BuiltinOptions(per_class=1, seed=8, workers=1))
    assert [u.transcript for u in c.utterances] != [u.transcript for u in a.utterances]


def test_cli_default_root_and_classes(cache_dir: Path) -> None:
    assert (
        prepare.main(["builtin", "--per-class", "1", "--classes", "sad,angry", "--name", "b2"]) == 0
    )
    frame = read_table("b2")
    assert frame["label"].value_counts().to_dict() == {"sad": 4, "angry": 4}
    assert (cache_dir / "builtin" / "audio" / "generation.json").is_file()


def test_missing_espeak(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(builtin.shutil, "which", lambda name: None)
    with pytest.raises(CorpusError, match="apt-get install espeak-ng"):
        builtin.read(tmp_path, BuiltinOptions(per_class=1))


@pytest.mark.slow
def test_default_size(tmp_path: Path) -> None:
    result = builtin.read(tmp_path, BuiltinOptions())
    assert len(result.utterances) == 320
    assert len({u.speaker for u in result.utterances}) == 4
