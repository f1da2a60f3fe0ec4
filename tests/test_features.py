"""Features: openSMILE frames, word vectors and spans, and the cache (hit, keys, resume, repair)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datamodules.features import (
    AcousticError,
    AcousticExtractor,
    ExtractReport,
    FeatureConfig,
    FeatureError,
    LexicalEncoder,
    feature_key,
    load,
    store,
    word_spans,
)
from datamodules.utterances import SPECIAL_TOKENS, Utterance, Word, corpus_dir, write_table

STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}


def ravdess_utterances(root: Path, n: int = 4) -> list[Utterance]:
    """The first n clips of Actor_01 with their statement as untimed words."""
    files = sorted((root / "Actor_01").glob("*.flac"))
    files = [f for f in files if f.stem.split("-")[4] == "01"][: n // 2] + [
        f for f in files if f.stem.split("-")[4] == "02"
    ][: n - n // 2]
    out = []
    for f in files:
        text = STATEMENTS[f.stem.split("-")[4]]
        out.append(
            Utterance(
                f.stem,
                "01",
                "01",
                f.stem.split("-")[2],
                str(f),
                sf.info(str(f)).duration,
                text,
                [Word(w) for w in text.split()],
            )
        )
    return out


@pytest.fixture
def small_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "SHARD_SIZE", 2)


@pytest.fixture(scope="module")
def encoder() -> LexicalEncoder:
    return LexicalEncoder(FeatureConfig())


@pytest.fixture
def rav(cache_dir: Path, ravdess_root: Path, small_shards: None) -> list[Utterance]:
    utts = ravdess_utterances(ravdess_root, 4)
    write_table("rav", utts, {"reader": "test"})
    return utts


REPORTS: list[ExtractReport] = []


def extract(*args, **kwargs) -> str:
    """`features.extract` as these tests read it: the key, with the report kept for `computed`."""
    REPORTS.append(store.extract(*args, **kwargs))
    return REPORTS[-1].key


def computed() -> dict[str, int]:
    """The shards the last extract call computed, linked or rebuilt."""
    return REPORTS[-1].done()


# ---------------------------------------------------------------- acoustic


def test_acoustic_frames_follow_duration(ravdess_root: Path) -> None:
    ext = AcousticExtractor()
    for utt in ravdess_utterances(ravdess_root, 2):
        x = ext.from_file(utt.audio_path)
        assert x.dtype == np.float32 and x.shape[1] == 65
        assert abs(x.shape[0] - utt.duration_s * 100) <= 6
        assert np.isfinite(x).all()
        assert ext.frame_times(x.shape[0])[1] == pytest.approx(0.01)
    # a segment gives proportionally fewer frames
    seg = ext.from_file(utt.audio_path, 0.5, 1.5)
    assert abs(seg.shape[0] - 100) <= 6


def test_acoustic_converts_rate_and_channels(caplog: pytest.LogCaptureFixture) -> None:
    t = np.arange(44_100) / 44_100
    stereo = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)], 1) * 0.3
    with caplog.at_level(logging.INFO):
        x = AcousticExtractor().from_waveform(stereo, 44_100, name="tone.wav")
    assert abs(x.shape[0] - 100) <= 6 and x.shape[1] == 65
    assert "resampled" in caplog.text and "channels" in caplog.text


def test_acoustic_too_short_is_a_named_error_and_silence_is_processed() -> None:
    ext = AcousticExtractor()
    with pytest.raises(AcousticError, match="click.wav.*shorter than one"):
        ext.from_waveform(np.ones(500, np.float32) * 0.1, 16_000, name="click.wav")
    silent = ext.from_waveform(np.zeros(16_000, np.float32), 16_000)
    assert silent.shape[1] == 65 and np.isfinite(silent).all()


# ---------------------------------------------------------------- spans and lexical


def test_word_spans_timed_untimed_and_no_audio() -> None:
    timed = [Word("a", 0.0, 0.104), Word("b", 0.2, 5.0)]
    assert word_spans(timed, 100).tolist() == [[0, 11], [20, 100]]  # ceil end, clipped to T
    voiced = np.zeros(100, bool)
    voiced[40:80] = True
    spans = word_spans([Word("ab"), Word("abcdef"), Word("ab")], 100, voiced)
    assert spans.tolist() == [[40, 48], [48, 72], [72, 80]]  # chars 2:6:2 over 40 frames
    mixed = word_spans([Word("x", 0.1, 0.2), Word("yy"), Word("z", 0.5, 0.6)], 100, voiced)
    assert mixed.tolist() == [[10, 20], [20, 50], [50, 60]]  # the gap between its neighbours
    tiny = word_spans([Word("a"), Word("b"), Word("c")], 2)
    assert (tiny[:, 1] > tiny[:, 0]).all() and tiny.max() <= 2 and tiny.min() >= 0
    assert word_spans([Word("a", 0.1, 0.2)], None).tolist() == [[0, 0]]


def test_special_tokens_deterministic_and_not_read_as_text(encoder: LexicalEncoder) -> None:
    words = [
        Word("we"),
        Word("<sil>"),
        Word("laughed"),
        Word("++LAUGHTER++"),
        Word("++BREATHING++"),
    ]
    vecs, cls, _ = encoder.encode(words)
    again, _, _ = LexicalEncoder(FeatureConfig()).encode(words)  # a fresh encoder
    np.testing.assert_allclose(vecs, again, atol=1e-5)
    assert vecs.shape == (5, encoder.dim) and cls.shape == (encoder.dim,)
    specials = vecs[[1, 3, 4]]
    assert (
        np.linalg.norm(specials[:, None] - specials[None], axis=-1)[np.triu_indices(3, 1)].min() > 1
    )
    saved = encoder.special_vectors
    try:
        encoder.special_vectors = {}  # the encoder's own reading of "<", "sil", ">"
        plain, _, _ = encoder.encode(words)
    finally:
        encoder.special_vectors = saved
    assert np.linalg.norm(plain[1] - vecs[1]) > 1
    assert set(SPECIAL_TOKENS) == set(saved)


def test_lexical_pooling_layers_and_long_transcript(encoder: LexicalEncoder) -> None:
    words = [Word("unbelievably"), Word("good")]
    mean, _, _ = encoder.encode(words)
    first, _, _ = LexicalEncoder(FeatureConfig(word_pooling="first")).encode(words)
    last4, _, _ = LexicalEncoder(FeatureConfig(layers="last4")).encode(words)
    assert not np.allclose(mean[0], first[0]) and not np.allclose(mean, last4)
    long = [Word(f"word{i}") for i in range(700)]  # > 512 sub-words: chunked, not a crash
    vecs, cls, spans = encoder.encode(long, 900)
    assert vecs.shape == (700, encoder.dim) and np.abs(vecs).sum(1).min() > 0
    assert (np.diff(spans[:, 0]) >= 0).all()
    batched = encoder.encode_many([words, [], long[:3]])
    assert [b[0].shape[0] for b in batched] == [2, 0, 3]
    np.testing.assert_allclose(batched[0][0], mean, atol=1e-4)  # padding changes nothing


# ---------------------------------------------------------------- cache


def test_extract_load_shapes_spans_and_cache_hit(rav: list[Utterance]) -> None:
    key = extract("rav", workers=1, progress=False)
    assert computed() == {"acoustic_computed": 2, "lexical_computed": 2}
    assert key == feature_key("rav", FeatureConfig())
    feats = load("rav", key)
    assert feats.ids == [u.utterance_id for u in rav]
    assert feats.meta["acoustic_dim"] == 65 and feats.meta["lexical_dim"] == 384
    assert feats.meta["frame_step_s"] == 0.01 and feats.meta["key"] == key
    for utt in rav:
        a, w, s = (
            feats.acoustic[utt.utterance_id],
            feats.words[utt.utterance_id],
            feats.spans[utt.utterance_id],
        )
        t = a.shape[0]
        assert a.dtype == np.float32 and abs(t - utt.duration_s * 100) <= 6
        assert w.shape == (6, 384) and feats.cls[utt.utterance_id].shape == (384,)
        assert s.dtype == np.int64 and s.shape == (6, 2)
        assert (s[:, 0] >= 0).all() and (s[:, 1] <= t).all() and (s[:, 1] > s[:, 0]).all()
        assert (np.diff(s[:, 0]) > 0).all() and (s[1:, 0] >= s[:-1, 1]).all()  # in order
        assert s[0, 0] > 20 and s[-1, 1] < t - 10  # on the voiced part, not the silence around it
    shard = corpus_dir("rav") / key / "acoustic" / "shard-00000.frames.npy"
    # parallel sweep runs read the cache while others call extract(): a complete part's
    # part.json must not be rewritten (not even briefly marked incomplete)
    infos = [corpus_dir("rav") / key / part / "part.json" for part in ("acoustic", "lexical")]
    mtimes = [p.stat().st_mtime_ns for p in [shard, *infos]]
    assert extract("rav", workers=1, progress=False) == key
    assert computed() == {} and [p.stat().st_mtime_ns for p in [shard, *infos]] == mtimes


def test_pool_matches_in_process(rav: list[Utterance]) -> None:
    key = extract("rav", modalities=("acoustic",), workers=2, progress=False)
    feats = load("rav", key, ("acoustic",))
    direct = AcousticExtractor().from_file(rav[3].audio_path)
    np.testing.assert_array_equal(feats.acoustic[rav[3].utterance_id], direct)
    with pytest.raises(FeatureError, match="no lexical features"):
        load("rav", key, ("lexical",))


def test_other_layers_new_key_reuses_acoustic(rav: list[Utterance]) -> None:
    key = extract("rav", workers=1, progress=False)
    key4 = extract("rav", FeatureConfig(layers="last4"), workers=1, progress=False)
    assert key4 != key
    assert computed() == {"acoustic_linked": 2, "lexical_computed": 2}
    a, b = load("rav", key), load("rav", key4)
    uid = rav[0].utterance_id
    np.testing.assert_array_equal(a.acoustic[uid], b.acoustic[uid])
    assert not np.allclose(a.words[uid], b.words[uid])


def test_changed_table_new_key_never_stale(rav: list[Utterance]) -> None:
    key = extract("rav", workers=1, progress=False)
    rav[0].label = "99"  # label only: new key, features reused (they do not depend on labels)
    write_table("rav", rav, {"reader": "test"})
    key_label = extract("rav", workers=1, progress=False)
    assert key_label != key and computed() == {"acoustic_linked": 2, "lexical_linked": 2}
    rav[1].words = [Word(w) for w in ["Nobody", "is", "talking"]]  # a transcript change
    write_table("rav", rav, {"reader": "test"})
    key_words = extract("rav", workers=1, progress=False)
    assert key_words not in (key, key_label)
    assert computed() == {"acoustic_linked": 2, "lexical_computed": 1, "lexical_linked": 1}
    assert load("rav", key_words).words[rav[1].utterance_id].shape[0] == 3
    assert load("rav", key).words[rav[1].utterance_id].shape[0] == 6  # the old key is intact
    write_table("rav", rav[:3], {"reader": "test"})  # an utterance removed
    assert feature_key("rav", FeatureConfig()) not in (key, key_label, key_words)


def test_interrupted_run_resumes(rav: list[Utterance], monkeypatch: pytest.MonkeyPatch) -> None:
    real, calls = store.write_shard, []

    def fail_on_second(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated interruption")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "write_shard", fail_on_second)
    with pytest.raises(KeyboardInterrupt):
        extract("rav", modalities=("acoustic",), workers=1, progress=False)
    monkeypatch.setattr(store, "write_shard", real)
    key = extract("rav", modalities=("acoustic",), workers=1, progress=False)
    assert computed() == {"acoustic_computed": 1}  # only the missing shard
    assert len(load("rav", key, ("acoustic",)).acoustic) == 4


def test_corrupt_shard_detected_and_rebuilt(
    rav: list[Utterance], caplog: pytest.LogCaptureFixture
) -> None:
    key = extract("rav", modalities=("acoustic",), workers=1, progress=False)
    good = load("rav", key, ("acoustic",)).acoustic[rav[3].utterance_id].copy()
    path = corpus_dir("rav") / key / "acoustic" / "shard-00001.frames.npy"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(FeatureError, match="shard-00001.*bytes"):
        load("rav", key, ("acoustic",))
    with caplog.at_level(logging.WARNING):
        extract("rav", modalities=("acoustic",), workers=1, progress=False)
    assert "shard-00001" in caplog.text and "rebuilding" in caplog.text
    assert computed() == {"acoustic_rebuilt": 1, "acoustic_computed": 1}
    np.testing.assert_array_equal(
        load("rav", key, ("acoustic",)).acoustic[rav[3].utterance_id], good
    )
    flipped = bytearray(path.read_bytes())  # same size, other bytes: the checksum finds it
    flipped[-1] ^= 0xFF
    path.write_bytes(bytes(flipped))
    extract("rav", modalities=("acoustic",), workers=1, progress=False)
    assert computed() == {"acoustic_rebuilt": 1, "acoustic_computed": 1}


def test_text_only_corpus(cache_dir: Path) -> None:
    utts = [
        Utterance("t1", "s1", "s1", "happy", transcript="I am so happy today"),
        Utterance("t2", "s2", "s2", "sad", words=[Word("oh"), Word("<sil>"), Word("no")]),
    ]
    write_table("texts", utts, {"reader": "test"})
    with pytest.raises(FeatureError, match="corpus 'texts'.*no audio"):
        extract("texts", progress=False)
    key = extract("texts", modalities=("lexical",), progress=False)
    feats = load("texts", key, ("lexical",))
    assert feats.words["t1"].shape == (5, 384) and feats.words["t2"].shape == (3, 384)
    assert feats.spans["t1"].tolist() == [[0, 0]] * 5
    assert feats.meta["lexical_dim"] == 384 and feats.meta["acoustic_dim"] is None


def test_cli_prints_key_and_names_errors(cache_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from experiments.features import main

    write_table("texts", [Utterance("t1", "s1", "s1", "happy", transcript="fine")], {"reader": "t"})
    assert main(["texts", "--modalities", "lexical", "--no-progress", "--layers", "last4"]) == 0
    out = capsys.readouterr().out
    key = feature_key("texts", FeatureConfig(layers="last4"))
    assert f"key: {key}" in out and str(corpus_dir("texts") / key) in out
    assert main(["texts", "--no-progress"]) == 2
    assert "corpus 'texts'" in capsys.readouterr().err
    assert main(["missing", "--no-progress"]) == 2
    assert "not prepared" in capsys.readouterr().err


@pytest.mark.slow
def test_iemocap_sized_cache_loads_in_seconds(cache_dir: Path) -> None:
    """5,500 utterances x 500 frames x 65 (715 MB) + word vectors: load is memory-mapped."""
    import time

    from datamodules.features import write_features

    n, t, w, d = 5500, 500, 12, 384
    utts = [
        Utterance(f"u{i:05d}", "s", "s", "neu", f"/nowhere/u{i}.wav", 5.0, "x", [Word("x")] * w)
        for i in range(n)
    ]
    write_table("big", utts, {"reader": "test"})
    config = FeatureConfig()
    rng = np.random.default_rng(0)
    key = write_features(
        "big",
        config,
        acoustic=lambda uid: rng.standard_normal((t, 65), dtype=np.float32),
        lexical=lambda uid: (
            rng.standard_normal((w, d), dtype=np.float32),
            rng.standard_normal(d, dtype=np.float32),
            np.zeros((w, 2), np.int64),
        ),
    ).key
    t0 = time.perf_counter()
    feats = load("big", key)
    total = sum(float(a[:, 0].sum()) for a in feats.acoustic.values())  # touch every utterance
    elapsed = time.perf_counter() - t0
    assert len(feats.acoustic) == n and feats.acoustic["u05499"].shape == (t, 65)
    assert feats.words["u00000"].shape == (w, d) and np.isfinite(total)
    print(f"IEMOCAP-sized cache loaded in {elapsed:.2f} s")
    assert elapsed < 10, f"loading took {elapsed:.1f} s"
