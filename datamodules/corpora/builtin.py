"""The built-in corpus: synthetic emotional speech the suite generates itself, offline.

What it is
    4 speakers (distinct espeak-ng voices) x 4 classes (angry, happy, neutral, sad) x
    `per_class` utterances (default 20, so 320 clips), 16 kHz mono wav. Sentences are
    written from per-emotion word lists mixed with filler words and topics shared by all
    classes (and now and then a word of another class), so the text carries the emotion
    without being one give-away word. The acoustics differ by emotion: pitch, pitch range
    (SSML prosody), speaking rate and loudness, jittered per utterance, plus a little noise.
    Words are synthesised one by one and joined with short gaps, so every word span is
    exact; occasional pauses are words `<sil>` with their own span.

What it is for
    Checking the whole pipeline on a fresh machine (prepare -> features -> train ->
    report -> demo) in minutes, with a signal that a working model must pick up in both
    modalities. It is NOT a benchmark: robot voices and scripted words say nothing about
    real emotional speech. Report results on IEMOCAP, RAVDESS or your own corpus.

How it is made
    Deterministic from `seed`: the same seed and espeak-ng version give the same table
    and the same wav bytes. Clips are written atomically (temp + rename, the per-clip
    .json last), each tagged with the hash of the generation parameters, so a rerun
    regenerates only the clips that are missing or were made with other parameters.
    `generation.json` in the root records the parameters. Needs the Debian package
    espeak-ng (`apt-get install espeak-ng`, or `make system-deps`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from datamodules.audio import SAMPLE_RATE, audio_info, resample
from datamodules.corpora import PrepareResult, keep_classes
from datamodules.utterances import (
    CorpusError,
    Utterance,
    Word,
    atomic_write_bytes,
    atomic_write_text,
)

GENERATOR_VERSION = 1
CLASSES = ("angry", "happy", "neutral", "sad")

# speaker id -> (espeak-ng voice, pitch offset); voice variants differ in timbre and formants.
SPEAKERS = {
    "us_male": ("en-us+m3", -6),
    "gb_female": ("en-gb+f3", 4),
    "us_female": ("en-us+f4", 0),
    "scot_male": ("en-gb-scotland+m1", -2),
}

# emotion -> (pitch 0-99, rate wpm, amplitude 0-200, SSML pitch range)
PROSODY = {
    "angry": (52, 195, 170, "high"),
    "happy": (68, 180, 135, "x-high"),
    "neutral": (45, 160, 105, "medium"),
    "sad": (32, 120, 75, "x-low"),
}

EMOTION_WORDS = {
    "angry": [
        "furious",
        "hate",
        "outrageous",
        "annoyed",
        "ridiculous",
        "unacceptable",
        "stupid",
        "angry",
        "disgusting",
        "liar",
        "awful",
        "sick",
    ],
    "happy": [
        "wonderful",
        "love",
        "delighted",
        "great",
        "fantastic",
        "amazing",
        "excited",
        "lovely",
        "brilliant",
        "glad",
        "fun",
        "perfect",
    ],
    "neutral": [
        "scheduled",
        "reported",
        "tuesday",
        "documents",
        "usual",
        "standard",
        "noted",
        "regular",
        "normal",
        "listed",
        "agenda",
        "fine",
    ],
    "sad": [
        "miserable",
        "lonely",
        "crying",
        "lost",
        "sorry",
        "heartbroken",
        "tired",
        "empty",
        "gloomy",
        "alone",
        "hopeless",
        "gone",
    ],
}
TOPICS = [
    "meeting",
    "weekend",
    "project",
    "dinner",
    "letter",
    "train",
    "weather",
    "plan",
    "house",
    "phone",
    "party",
    "report",
]
TEMPLATES = [
    "the {t} was {e} today",
    "i think this {t} is really {e}",
    "honestly the {t} feels {e} and {e}",
    "so {e} about the {t} again",
    "this {t} is {e} you know",
    "well the {t} seems {e} to me",
    "we talked about the {t} and it was {e}",
]
DISTRACTOR_P = 0.2  # chance that one slot takes a word of another class


@dataclass
class BuiltinOptions:
    classes: list[str] | None = None  # default: all four
    seed: int = 0
    per_class: int = 20  # utterances per speaker and class
    workers: int | None = None  # processes for synthesis (default: CPU count)


@dataclass(frozen=True)
class ClipSpec:
    utterance_id: str
    speaker: str
    label: str
    text: str
    voice: str
    pitch: int
    rate: int
    amplitude: int
    pitch_range: str
    seed: int
    params_hash: str


def espeak_path() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise CorpusError(
            "espeak-ng not found: the built-in corpus needs it; install it with "
            "`apt-get install espeak-ng` (or `make system-deps`)"
        )
    return path


def espeak_version() -> str:
    out = subprocess.run([espeak_path(), "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def generation_params(options: BuiltinOptions) -> dict[str, object]:
    """Everything that decides the clips' content (not `classes` or `workers`)."""
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": options.seed,
        "per_class": options.per_class,
        "speakers": SPEAKERS,
        "prosody": PROSODY,
        "emotion_words": EMOTION_WORDS,
        "topics": TOPICS,
        "templates": TEMPLATES,
        "espeak": espeak_version(),
    }


def _sentence(rng: np.random.Generator, label: str) -> str:
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    topic = TOPICS[int(rng.integers(len(TOPICS)))]
    words = []
    for _ in range(template.count("{e}")):
        cls = label
        if rng.random() < DISTRACTOR_P:
            cls = str(rng.choice([c for c in CLASSES if c != label]))
        words.append(EMOTION_WORDS[cls][int(rng.integers(len(EMOTION_WORDS[cls])))])
    text = template.replace("{t}", topic)
    for w in words:
        text = text.replace("{e}", w, 1)
    return text


def clip_specs(options: BuiltinOptions, params_hash: str) -> list[ClipSpec]:
    """The clips to generate, each with its sentence and jittered prosody (deterministic)."""
    specs = []
    for s, (speaker, (voice, pitch_offset)) in enumerate(SPEAKERS.items()):
        for c, label in enumerate(CLASSES):
            pitch, rate, amp, prange = PROSODY[label]
            for k in range(options.per_class):
                rng = np.random.default_rng([options.seed, s, c, k])
                specs.append(
                    ClipSpec(
                        utterance_id=f"{speaker}_{label}_{k:03d}",
                        speaker=speaker,
                        label=label,
                        text=_sentence(rng, label),
                        voice=voice,
                        pitch=int(np.clip(pitch + pitch_offset + rng.integers(-5, 6), 0, 99)),
                        rate=int(rate * (1 + rng.uniform(-0.08, 0.08))),
                        amplitude=int(np.clip(amp * (1 + rng.uniform(-0.1, 0.1)), 10, 200)),
                        pitch_range=prange,
                        seed=int(rng.integers(2**31)),
                        params_hash=params_hash,
                    )
                )
    return specs


def _synth_word(spec: ClipSpec, word: str) -> np.ndarray:
    """(N,) float32 at 16 kHz of one word, silence trimmed."""
    ssml = f'<speak><prosody range="{spec.pitch_range}">{word}</prosody></speak>'
    cmd = [
        espeak_path(),
        "-m",
        "-z",
        "-v",
        spec.voice,
        "-p",
        str(spec.pitch),
        "-s",
        str(spec.rate),
        "-a",
        str(spec.amplitude),
        "--stdout",
        ssml,
    ]
    out = subprocess.run(cmd, capture_output=True, check=False)
    if out.returncode != 0 or len(out.stdout) <= 44:
        raise CorpusError(
            f"espeak-ng failed on '{word}' ({spec.voice}): {out.stderr.decode()[:200]}"
        )
    sr = int.from_bytes(out.stdout[24:28], "little")
    x = np.frombuffer(out.stdout[44:], dtype="<i2").astype(np.float32) / 32768.0
    x = resample(x, sr, SAMPLE_RATE)
    loud = np.flatnonzero(np.abs(x) > 0.01 * max(float(np.abs(x).max()), 1e-6))
    if loud.size == 0:
        raise CorpusError(f"espeak-ng gave silence for '{word}' ({spec.voice})")
    return x[loud[0] : loud[-1] + 1]


def render(spec: ClipSpec) -> tuple[np.ndarray, list[Word]]:
    """(N,) float32 16 kHz waveform and its words with exact spans."""
    rng = np.random.default_rng(spec.seed)
    pieces = [np.zeros(int(rng.uniform(0.08, 0.2) * SAMPLE_RATE), np.float32)]
    words: list[Word] = []
    pos = len(pieces[0])
    tokens = spec.text.split()
    for i, token in enumerate(tokens):
        x = _synth_word(spec, token)
        words.append(
            Word(token, round(pos / SAMPLE_RATE, 4), round((pos + len(x)) / SAMPLE_RATE, 4))
        )
        pieces.append(x)
        pos += len(x)
        if i == len(tokens) - 1:
            break
        if rng.random() < 0.12:  # a pause long enough to be a word of its own
            n = int(rng.uniform(0.25, 0.45) * SAMPLE_RATE)
            words.append(
                Word("<sil>", round(pos / SAMPLE_RATE, 4), round((pos + n) / SAMPLE_RATE, 4))
            )
        else:
            n = int(rng.uniform(0.03, 0.1) * SAMPLE_RATE)
        pieces.append(np.zeros(n, np.float32))
        pos += n
    pieces.append(np.zeros(int(rng.uniform(0.08, 0.2) * SAMPLE_RATE), np.float32))
    y = np.concatenate(pieces)
    y = y + rng.normal(0.0, 0.002, size=y.shape).astype(np.float32)  # a little room noise
    return np.clip(y, -1.0, 1.0).astype(np.float32), words


def _clip_paths(root: Path, spec: ClipSpec) -> tuple[Path, Path]:
    base = root / spec.speaker / spec.utterance_id
    return base.with_suffix(".wav"), base.with_suffix(".json")


def _is_valid(root: Path, spec: ClipSpec) -> bool:
    wav, meta = _clip_paths(root, spec)
    if not (wav.is_file() and meta.is_file()):
        return False
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("params_hash") == spec.params_hash
    except (OSError, json.JSONDecodeError):
        return False


def generate_clip(root: Path, spec: ClipSpec) -> None:
    """Write `<speaker>/<id>.wav` then `<id>.json` atomically; the json marks a complete clip."""
    y, words = render(spec)
    wav, meta = _clip_paths(root, spec)
    buf = io.BytesIO()
    sf.write(buf, y, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    atomic_write_bytes(wav, buf.getvalue())
    record = {**asdict(spec), "words": [[w.text, w.start, w.end] for w in words]}
    atomic_write_text(meta, json.dumps(record, indent=1))


def _generate_one(args: tuple[Path, ClipSpec]) -> None:
    generate_clip(*args)


def generate(root: Path, options: BuiltinOptions) -> list[ClipSpec]:
    """Make every clip that is missing or stale under `root`; returns all clip specs."""
    params = generation_params(options)
    params_hash = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    specs = clip_specs(options, params_hash)
    todo = [s for s in specs if not _is_valid(root, s)]
    if todo:
        workers = options.workers or os.cpu_count() or 1
        if workers > 1 and len(todo) > 8:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                list(pool.map(_generate_one, [(root, s) for s in todo], chunksize=4))
        else:
            for s in todo:
                generate_clip(root, s)
    atomic_write_text(
        root / "generation.json", json.dumps({**params, "params_hash": params_hash}, indent=1)
    )
    return specs


def read(root: Path, options: BuiltinOptions) -> PrepareResult:
    """Generate what is missing under `root`, then read the clips into utterances."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise CorpusError(f"built-in corpus root {root} is not a folder")
    if options.per_class < 1:
        raise CorpusError(f"per_class must be at least 1, not {options.per_class}")
    specs = generate(root, options)
    utterances = []
    for spec in specs:
        wav, meta = _clip_paths(root, spec)
        record = json.loads(meta.read_text(encoding="utf-8"))
        utterances.append(
            Utterance(
                utterance_id=spec.utterance_id,
                speaker=spec.speaker,
                session=spec.speaker,
                label=spec.label,
                audio_path=str(wav.resolve()),
                duration_s=audio_info(wav).duration_s,
                transcript=spec.text[0].upper() + spec.text[1:] + ".",
                words=[Word(t, s, e) for t, s, e in record["words"]],
                extra={
                    "voice": spec.voice,
                    "pitch": spec.pitch,
                    "rate": spec.rate,
                    "amplitude": spec.amplitude,
                },
            )
        )
    drops: dict[str, int] = {}
    utterances, classes = keep_classes(utterances, options.classes, CLASSES, drops)
    notes = ["synthetic corpus (espeak-ng) for pipeline checks, not a benchmark"]
    return PrepareResult(utterances, classes, drops, {}, notes)


Options = BuiltinOptions
