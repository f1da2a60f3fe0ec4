"""Prediction from a checkpoint: audio -> ASR -> features (as in training) -> model -> probabilities.

The one inference path shared by `experiments.predict` (CLI) and `experiments.demo` (Gradio).
A checkpoint is read with `torch.load(weights_only=True)`; the module is rebuilt from its
hyper-parameters and state dict, and the features from the datamodule state Lightning stored
beside them (class names, feature config, normalisation statistics), so inference computes
exactly the features the model was trained on.

Normalisation per speaker: a speaker seen at inference is unknown to the checkpoint, so its
frames are normalised with the global (training-set) statistics.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datamodules.audio import SAMPLE_RATE, AudioError, load_audio
from datamodules.utterances import REPO_ROOT, Word

log = logging.getLogger(__name__)

# Architectures whose input must hold at least one word; the hierarchical model handles
# word-less items itself (its utterance-level acoustic branch still sees all frames).
NEEDS_WORDS = frozenset({"lexical", "mmb", "mmmla"})
MIN_DURATION_S = 0.25  # shorter clips give fewer frames than the acoustic encoder's context
DEFAULT_RUNS_DIR = REPO_ROOT / "runs"


class PredictError(Exception):
    """An input or checkpoint prediction cannot use; the message names the file."""


@dataclass
class WordSpan:
    """A recognised (or given) word with its time and its frame span in the acoustic frames."""

    text: str
    start_s: float | None
    end_s: float | None
    first_frame: int
    last_frame: int  # exclusive


@dataclass
class Prediction:
    """Everything one prediction reports; `to_json()` is what the CLI prints."""

    file: str
    transcript: str
    words: list[WordSpan]
    label: str
    probabilities: dict[str, float]
    model_used: str
    checkpoint: str
    fallback: bool
    note: str
    duration_s: float
    shapes: dict[str, list[int]]
    timings_ms: dict[str, float]
    attention: dict[str, list[float]] = field(default_factory=dict)
    gate: list[float] | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("attention")
        out.pop("gate")
        return out


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(timings.get(name, 0.0) + (time.perf_counter() - t0) * 1e3, 2)


def check_duration(x: np.ndarray, path: str) -> None:
    """Reject a clip too short (or silent-empty) for the acoustic front end."""
    duration = len(x) / SAMPLE_RATE
    if duration < MIN_DURATION_S:
        raise PredictError(
            f"{path}: clip too short ({duration:.3f} s; at least {MIN_DURATION_S} s needed)"
        )
    if not np.isfinite(x).all():
        raise PredictError(f"{path}: audio holds NaN or infinite samples")


def read_audio(path: str | Path) -> np.ndarray:
    """(N,) float32 16 kHz mono of a file, or PredictError naming it."""
    try:
        x = load_audio(path)
    except AudioError as exc:
        raise PredictError(str(exc)) from exc
    except Exception as exc:  # a decoder error that load_audio does not name
        raise PredictError(f"cannot read audio file {path}: {exc}") from exc
    check_duration(x, str(path))
    return x


# ---------------------------------------------------------------------------------------
# ASR


def transcribe_words(x: np.ndarray, backend: str, name: str = "input") -> tuple[str, list[Word]]:
    """Transcript and timed words of a 16 kHz clip with the configured ASR backend."""
    if backend == "none":
        return "", []
    from datamodules.asr import AsrError, transcribe

    try:
        result = transcribe(x, backend=backend)
    except AsrError as exc:
        raise PredictError(f"{name}: ASR ({backend}) failed: {exc}") from exc
    return result.text.strip(), list(result.words)


def words_from_text(text: str) -> list[Word]:
    """Untimed words of a given transcript (spans are then left to the lexical encoder)."""
    return [Word(t) for t in text.split() if t.strip()]


# ---------------------------------------------------------------------------------------
# Checkpoints


@dataclass
class LoadedModel:
    """A rebuilt classifier with everything needed to compute its inputs."""

    path: Path
    module: torch.nn.Module
    architecture: str
    class_names: list[str]
    data_state: dict[str, Any]
    hparams: dict[str, Any]
    load_ms: float
    _features: Any = None

    @property
    def needs_words(self) -> bool:
        return self.architecture in NEEDS_WORDS

    @property
    def uses_lexical(self) -> bool:
        return self.architecture != "acoustic"

    @property
    def uses_acoustic(self) -> bool:
        return self.architecture != "lexical"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, loaded without pickle (`weights_only=True`)."""
    path = Path(path)
    if not path.is_file():
        raise PredictError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PredictError(f"cannot load checkpoint {path} with weights_only=True: {exc}") from exc


def checkpoint_architecture(ckpt: dict[str, Any]) -> str:
    """The architecture name stored in a checkpoint's hyper-parameters."""
    arch = ckpt.get("hyper_parameters", {}).get("architecture")
    if not isinstance(arch, str):
        raise PredictError("checkpoint hyper-parameters name no architecture")
    return arch


def load_model(path: str | Path) -> LoadedModel:
    """Rebuild the EmotionClassifier and its feature pipeline from a checkpoint."""
    t0 = time.perf_counter()  # load time includes the first import of Lightning and the encoder
    from lightning_modules.system import EmotionClassifier

    path = Path(path)
    ckpt = read_checkpoint(path)
    hparams = dict(ckpt.get("hyper_parameters", {}))
    data_state = _datamodule_state(ckpt, path)
    # LightningCLI adds private keys (`_instantiator`, `_class_path`): keep the init arguments.
    accepted = inspect.signature(EmotionClassifier.__init__).parameters
    kwargs = {k: v for k, v in hparams.items() if k in accepted and k != "self"}
    try:
        module = EmotionClassifier(**kwargs)
        module.load_state_dict(ckpt["state_dict"])
    except Exception as exc:
        raise PredictError(
            f"checkpoint {path} does not rebuild an EmotionClassifier: {exc}"
        ) from exc
    module.eval()
    model = LoadedModel(
        path=path,
        module=module,
        architecture=checkpoint_architecture(ckpt),
        class_names=list(data_state["class_names"]),
        data_state=data_state,
        hparams=hparams,
        load_ms=0.0,
    )
    model._features = _FeaturePipeline(model)
    model.load_ms = round((time.perf_counter() - t0) * 1e3, 2)
    return model


def _datamodule_state(ckpt: dict[str, Any], path: Path) -> dict[str, Any]:
    for key, value in ckpt.items():
        if key.endswith("DataModule") and isinstance(value, dict):
            return value
    raise PredictError(
        f"checkpoint {path} holds no datamodule state (class names, feature config, "
        "normalisation); it was not written by experiments.train"
    )


def find_fallback(checkpoint: str | Path, runs_dir: Path = DEFAULT_RUNS_DIR) -> Path | None:
    """An acoustic checkpoint beside `checkpoint` (same runs/sweep folder), else the demo's."""
    checkpoint = Path(checkpoint).resolve()
    run_dir = (
        checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    )
    try:
        own = read_checkpoint(checkpoint)
        own_classes = list(_datamodule_state(own, checkpoint).get("class_names", []))
    except PredictError:
        own_classes = []
    candidates: list[tuple[int, Path]] = []
    # Siblings first (the sweep's other runs), then the folder above (nested sweeps).
    for rank, root in enumerate((run_dir.parent, run_dir.parent.parent)):
        for cand in sorted(root.glob("*/checkpoints/*.ckpt")):
            if cand.resolve() == checkpoint:
                continue
            try:
                ckpt = read_checkpoint(cand)
                if checkpoint_architecture(ckpt) != "acoustic":
                    continue
                classes = list(_datamodule_state(ckpt, cand).get("class_names", []))
            except Exception:  # an unreadable neighbour is not our input's problem
                continue
            # Prefer same class set, then nearer folder, then best.ckpt over last.ckpt.
            score = (0 if classes == own_classes else 10) + rank * 2 + (cand.name != "best.ckpt")
            candidates.append((score, cand))
    if candidates:
        return min(candidates, key=lambda c: c[0])[1]
    builtin = demo_checkpoint("acoustic", runs_dir)
    return builtin if builtin.is_file() else None


def demo_checkpoint(architecture: str, runs_dir: Path = DEFAULT_RUNS_DIR) -> Path:
    """Where the demo keeps the built-in corpus's model of one architecture."""
    return Path(runs_dir) / "demo" / architecture / "checkpoints" / "best.ckpt"


# ---------------------------------------------------------------------------------------
# Features, exactly as in training


class _FeaturePipeline:
    """The training-time feature code (`datamodules.features`) with the checkpoint's config."""

    def __init__(self, model: LoadedModel) -> None:
        from datamodules.features import AcousticExtractor, FeatureConfig, LexicalEncoder

        state = model.data_state
        self.config = FeatureConfig(**state["feature_config"])
        modalities = list(state.get("modalities", ("acoustic", "lexical")))
        # Frames are always computed: they give the words' spans (and voiced frames) even
        # for a lexical-only model, as the feature cache does.
        self.acoustic = AcousticExtractor(self.config.feature_set)
        self.lexical = LexicalEncoder(self.config) if "lexical" in modalities else None

    def compute(
        self, x: np.ndarray, words: list[Word], timings: dict[str, float], name: str = "input"
    ) -> dict[str, np.ndarray]:
        """Raw (un-normalised) features: acoustic (T, F), words (W, D), cls (D,), spans (W, 2)."""
        from datamodules.features import FeatureError, word_spans
        from datamodules.features.acoustic import voiced_frames

        out: dict[str, np.ndarray] = {}
        try:
            with _timed(timings, "acoustic"):
                frames = self.acoustic.from_waveform(x, SAMPLE_RATE, name=name)
                voiced = voiced_frames(frames)
            out["acoustic"] = frames
            with _timed(timings, "lexical"):
                if self.lexical is not None and words:
                    vectors, cls, spans = self.lexical.encode(words, len(frames), voiced)
                    out["words"], out["cls"] = vectors, cls
                else:
                    spans = word_spans(words, len(frames), voiced)
            out["spans"] = spans
        except FeatureError as exc:
            raise PredictError(f"{name}: {exc}") from exc
        return out


# ---------------------------------------------------------------------------------------
# Prediction


class Predictor:
    """Predict one file or waveform with a checkpoint, falling back to an acoustic model."""

    def __init__(
        self,
        checkpoint: str | Path,
        fallback: str | Path | None = None,
        asr: str = "whisper",
        runs_dir: Path = DEFAULT_RUNS_DIR,
    ) -> None:
        self.model = load_model(checkpoint)
        self.asr = asr
        self._fallback_path = Path(fallback) if fallback else None
        self._fallback: LoadedModel | None = None
        self.runs_dir = runs_dir
        if self._fallback_path is not None and not self._fallback_path.is_file():
            raise PredictError(f"fallback checkpoint not found: {self._fallback_path}")

    @property
    def load_ms(self) -> float:
        return self.model.load_ms

    def fallback_model(self) -> LoadedModel:
        """The acoustic model used when the ASR finds no words (loaded on first need)."""
        if self._fallback is None:
            path = self._fallback_path or find_fallback(self.model.path, self.runs_dir)
            if path is None:
                raise PredictError(
                    f"{self.model.path} needs words but the ASR found none, and no acoustic "
                    "fallback checkpoint was found beside it or in runs/demo; pass --fallback"
                )
            self._fallback = load_model(path)
            if self._fallback.architecture != "acoustic":
                raise PredictError(
                    f"fallback checkpoint {path} is a {self._fallback.architecture} model, "
                    "not an acoustic one"
                )
        return self._fallback

    def predict_file(self, path: str | Path, transcript: str | None = None) -> Prediction:
        timings: dict[str, float] = {}
        with _timed(timings, "load"):
            x = read_audio(path)
        return self.predict_waveform(x, str(path), transcript, timings)

    def predict_waveform(
        self,
        x: np.ndarray,
        name: str,
        transcript: str | None = None,
        timings: dict[str, float] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> Prediction:
        """Predict a (N,) float32 16 kHz clip; `name` labels it in messages."""
        timings = dict(timings or {})
        timings.setdefault("load", 0.0)
        check_duration(x, name)
        step = progress or (lambda _msg: None)
        step("speech recognition")
        with _timed(timings, "asr"):
            if transcript is not None:
                text, words = transcript.strip(), words_from_text(transcript)
            else:
                text, words = transcribe_words(x, self.asr, name)
        model, fallback, note = self.model, False, ""
        if not words and model.needs_words:
            model, fallback = self.fallback_model(), True
            note = f"no words recognised: {self.model.architecture} needs words"
        elif not words and model.uses_lexical:
            note = f"no words recognised: {model.architecture} ran on the acoustic frames only"
        step("features")
        feats = model._features.compute(x, words, timings, name)
        step("model")
        with _timed(timings, "model"):
            batch = self._batch(model, feats, name)
            with torch.inference_mode():
                out = model.module(batch)
            probs = torch.softmax(out.logits.float(), dim=-1)[0].double().numpy()
        probs = probs / probs.sum()
        label = model.class_names[int(probs.argmax())]
        spans = feats["spans"]
        return Prediction(
            file=name,
            transcript=text,
            words=[
                WordSpan(w.text, w.start, w.end, int(spans[i, 0]), int(spans[i, 1]))
                for i, w in enumerate(words)
            ],
            label=label,
            probabilities={c: float(p) for c, p in zip(model.class_names, probs, strict=True)},
            model_used=(f"acoustic fallback ({model.path})" if fallback else model.architecture),
            checkpoint=str(model.path),
            fallback=fallback,
            note=note,
            duration_s=round(len(x) / SAMPLE_RATE, 3),
            shapes={k: list(v.shape) for k, v in feats.items()},
            timings_ms=timings,
            attention={
                k: v[0].float().tolist() for k, v in (out.attention or {}).items() if v is not None
            },
            gate=None if out.gate is None else out.gate[0].float().tolist(),
        )

    def _batch(self, model: LoadedModel, feats: dict[str, np.ndarray], name: str) -> Any:
        """A one-item Batch normalised with the checkpoint's statistics (global for a new speaker)."""
        from datamodules.datamodule import inference_batch

        feats = dict(feats)
        if model.uses_lexical and "words" not in feats:
            # No words (hierarchical model on silence): an empty word sequence, masked out.
            dim = int(model.data_state.get("lexical_dim") or model.hparams.get("lexical_dim", 384))
            feats["words"] = np.zeros((0, dim), np.float32)
            feats["cls"] = np.zeros((dim,), np.float32)
            feats["spans"] = np.zeros((0, 2), np.int64)
        return inference_batch(model.data_state, feats, utterance_id=name, speaker=None)
