"""Prediction from a checkpoint: audio -> ASR -> features (as in training) -> model -> probabilities.

The one inference path shared by `experiments.predict` (CLI) and `experiments.demo` (Gradio).
A checkpoint is read with `torch.load(weights_only=True)`; the module is rebuilt from its
hyper-parameters and state dict, and the features from the datamodule state Lightning stored
beside them (class names, feature config, normalisation statistics), so inference computes
exactly the features the model was trained on.

Normalisation per speaker: a speaker seen at inference is unknown to the checkpoint, so its
frames (and, for a model trained with `data.utterance_stats`, the clip's statistics) are
normalised with the global (training-set) statistics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datamodules.audio import SAMPLE_RATE, AudioError, audio_info
from experiments.audio_input import (  # noqa: F401 - the prediction API, re-exported
    MIN_DURATION_S,
    MIN_SPEECH_S,
    VAD_DBFS,
    WINDOW_S,
    NoSpeechError,
    PredictError,
    check_duration,
    no_speech,
    read_audio,
    speech_seconds,
    transcribe_words,
    window_bounds,
    words_from_text,
)
from experiments.inference_features import (
    FeaturePipeline,
    feature_key,
    timed,
)
from experiments.late_fusion import LateFusionError, check_weight, mix
from experiments.model_finder import (  # noqa: F401 - re-exported
    DEFAULT_RUNS_DIR,
    checkpoint_record,
    demo_checkpoint,
    find_fallback,
    load_model,
)
from lightning_modules.checkpoint import LoadedModel
from lightning_modules.stacking import StackingError, fused_probabilities, load_fusion

log = logging.getLogger(__name__)


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
    frame_step_s: float  # of the acoustic frames (spans and attention are in these frames)
    shapes: dict[str, list[int]]
    timings_ms: dict[str, float]
    attention: dict[str, list[float]] = field(default_factory=dict)
    gate: list[float] | None = None
    fallback_checkpoint: str | None = None  # the acoustic checkpoint that answered, if one did
    # an ensemble's members whose probabilities were averaged (empty for one checkpoint)
    ensemble: list[str] = field(default_factory=list)
    # late fusion: the text models' share of the probabilities, where text models answered
    text_weight: float | None = None
    # stacked fusion: the posterior GMU file that fused them, where text models answered
    fusion: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("attention")
        out.pop("gate")
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
        ensemble: Sequence[str | Path] = (),
        text_weight: float | None = None,
        fusion: str | Path | None = None,
    ) -> None:
        """`ensemble`: more checkpoints (e.g. other seeds) whose class probabilities are
        averaged with this one's; they must predict the same classes. A member that needs
        words sits out a clip without any; attention and gate come from `checkpoint`.
        `text_weight` w makes it a late fusion: (1 - w) · the mean of the members that hear
        the audio + w · the mean of the text-only ones (`experiments.late_fusion`); a clip
        without words gets the audio members alone. `fusion` instead fuses the two means with a
        posterior GMU (`lightning_modules.stacking`, written by `experiments.stacked_fusion
        --save`)."""
        self.model = load_model(checkpoint)
        self.features = FeaturePipeline(self.model)
        self.members: list[tuple[LoadedModel, FeaturePipeline]] = [(self.model, self.features)]
        pipelines = {feature_key(self.model): self.features}
        for path in ensemble:
            member = load_model(path)
            if member.class_names != self.model.class_names:
                raise PredictError(
                    f"ensemble checkpoint {member.path} predicts {member.class_names}, but "
                    f"{self.model.path} predicts {self.model.class_names}"
                )
            key = feature_key(member)  # members with the same features compute them once
            pipelines.setdefault(key, FeaturePipeline(member))
            self.members.append((member, pipelines[key]))
        self.text_weight = text_weight
        self.fusion_path = Path(fusion) if fusion is not None else None
        self.fusion = None
        if text_weight is not None:
            try:
                check_weight(text_weight)
            except LateFusionError as exc:
                raise PredictError(str(exc)) from None
        if fusion is not None:
            if text_weight is not None:
                raise PredictError("give a text weight or a fusion file, not both")
            try:
                self.fusion, names = load_fusion(Path(fusion))
            except StackingError as exc:
                raise PredictError(str(exc)) from None
            if names != self.model.class_names:
                raise PredictError(
                    f"fusion file {fusion} fuses {names}, but {self.model.path} predicts "
                    f"{self.model.class_names}"
                )
        hears = [m.uses_acoustic for m, _ in self.members]
        if (text_weight is not None or fusion is not None) and (all(hears) or not any(hears)):
            raise PredictError(
                f"a {'text weight (late fusion)' if fusion is None else 'fusion file'} needs "
                "checkpoints of both kinds: at least one that hears the audio and one lexical "
                "(text-only) model; got "
                + ", ".join(f"{m.path} ({m.architecture})" for m, _ in self.members)
            )
        self.asr = asr
        self._fallback_path = Path(fallback) if fallback else None
        self._fallback: tuple[LoadedModel, FeaturePipeline] | None = None
        self.runs_dir = runs_dir
        if self._fallback_path is not None and not self._fallback_path.is_file():
            raise PredictError(f"fallback checkpoint not found: {self._fallback_path}")

    @property
    def load_ms(self) -> float:
        return round(sum(model.load_ms for model, _ in self.members), 2)

    def fallback_model(self) -> tuple[LoadedModel, FeaturePipeline]:
        """The acoustic model used when the ASR finds no words (loaded on first need)."""
        if self._fallback is None:
            path = self._fallback_path or find_fallback(self.model.path, self.runs_dir)
            if path is None:
                raise PredictError(
                    f"{self.model.path} needs words but the ASR found none, and no acoustic "
                    "checkpoint with its classes was found in its run tree or in runs/demo; "
                    "pass --fallback"
                )
            model = load_model(path)
            if model.architecture != "acoustic":
                raise PredictError(
                    f"fallback checkpoint {path} is a {model.architecture} model, "
                    "not an acoustic one"
                )
            if model.class_names != self.model.class_names:
                raise PredictError(
                    f"fallback checkpoint {path} predicts {model.class_names}, but "
                    f"{self.model.path} predicts {self.model.class_names}"
                )
            self._fallback = (model, FeaturePipeline(model))
        return self._fallback

    def predict_file(
        self, path: str | Path, transcript: str | None = None, window_s: float = WINDOW_S
    ) -> Prediction:
        """A file of any length: read and predicted window by window (memory stays that of one
        window); NoSpeechError when no window holds voice activity."""
        timings: dict[str, float] = {}
        name = str(path)
        try:
            info = audio_info(path)
        except AudioError as exc:
            raise PredictError(str(exc)) from exc
        n = int(info.frames * SAMPLE_RATE / info.sample_rate)
        bounds = window_bounds(n, window_s)
        if len(bounds) == 1 or transcript is not None:  # a given transcript is for the whole clip
            with timed(timings, "load"):
                x = read_audio(path)
            return self.predict_clip(x, name, transcript, timings, window_s=window_s)

        def read(a: int, b: int) -> np.ndarray:
            with timed(timings, "load"):
                return read_audio(path, a / SAMPLE_RATE, b / SAMPLE_RATE)

        return self._predict_windows(read, bounds, name, timings, None, window_s)

    def predict_clip(
        self,
        x: np.ndarray,
        name: str,
        transcript: str | None = None,
        timings: dict[str, float] | None = None,
        progress: Callable[[str], None] | None = None,
        window_s: float = WINDOW_S,
    ) -> Prediction:
        """`predict_waveform` after the voice-activity check, in windows when longer than
        `window_s` (the probabilities are the windows' mean weighted by their length)."""
        timings = dict(timings or {})
        check_duration(x, name)
        bounds = window_bounds(len(x), window_s)
        if len(bounds) == 1 or transcript is not None:
            speech = speech_seconds(x)
            if speech < MIN_SPEECH_S:
                raise no_speech(name, speech)
            return self.predict_waveform(x, name, transcript, timings, progress)
        return self._predict_windows(lambda a, b: x[a:b], bounds, name, timings, progress, window_s)

    def _predict_windows(
        self,
        read: Callable[[int, int], np.ndarray],
        bounds: list[tuple[int, int]],
        name: str,
        timings: dict[str, float],
        progress: Callable[[str], None] | None,
        window_s: float,
    ) -> Prediction:
        """Predict each window `read(a, b)` with voice activity; one Prediction for them all."""
        preds, weights, speech_total = [], [], 0.0
        for a, b in bounds:
            x = read(a, b)
            speech = speech_seconds(x)
            speech_total += speech
            if speech < MIN_SPEECH_S or len(x) / SAMPLE_RATE < MIN_DURATION_S:
                continue  # a silent (or too short) window says nothing about the emotion
            label = f"{name} [{a / SAMPLE_RATE:.0f}-{b / SAMPLE_RATE:.0f} s]"
            preds.append(self.predict_waveform(x, label, None, {}, progress))
            weights.append(float(b - a))
            del x
        if not preds:
            raise no_speech(name, speech_total)
        classes = list(preds[0].probabilities)
        w = np.array(weights, np.float64)
        probs = np.array([[p.probabilities[c] for c in classes] for p in preds]).T @ w
        probs /= probs.sum()
        out = preds[0]
        out.probabilities = {c: float(v) for c, v in zip(classes, probs, strict=True)}
        out.label = classes[int(probs.argmax())]
        out.file, out.duration_s = name, round(bounds[-1][1] / SAMPLE_RATE, 3)
        out.transcript = " ".join(p.transcript for p in preds if p.transcript)
        out.fallback = any(p.fallback for p in preds)
        out.text_weight = next((p.text_weight for p in preds if p.text_weight is not None), None)
        out.fallback_checkpoint = next(
            (p.fallback_checkpoint for p in preds if p.fallback_checkpoint), None
        )
        out.attention = {
            k: sum((p.attention.get(k, []) for p in preds), [])
            for k in ("acoustic",)
            if all(k in p.attention for p in preds)
        }
        out.words, out.gate = [], None
        skipped = len(bounds) - len(preds)
        out.note = "; ".join(
            filter(None, [
                *dict.fromkeys(p.note for p in preds if p.note),
                f"predicted in {len(preds)} windows of up to {window_s:g} s"
                + (f" ({skipped} without speech left out)" if skipped else ""),
            ])
        )  # fmt: skip
        total = dict(timings)
        for p in preds:
            for k, v in p.timings_ms.items():
                if k != "load":
                    total[k] = round(total.get(k, 0.0) + v, 2)
        out.timings_ms = total
        return out

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
        with timed(timings, "asr"):
            if transcript is not None:
                text, words = transcript.strip(), words_from_text(transcript)
            else:
                text, words = transcribe_words(x, self.asr, name)
        members, fallback, note = self._answering(bool(words))
        model, pipeline = members[0]
        step("features")
        computed = {id(pipeline): pipeline.compute(x, words, timings, name)}
        for _, other in members[1:]:
            if id(other) not in computed:
                computed[id(other)] = other.compute(x, words, timings, name)
        feats = computed[id(pipeline)]
        step("model")
        with timed(timings, "model"):
            outputs = []
            for member, member_pipeline in members:
                batch = self._batch(member, computed[id(member_pipeline)], name)
                with torch.inference_mode():
                    outputs.append(member.module(batch))
            out = outputs[0]  # attention and gate: the first model's
            each = [torch.softmax(o.logits.float(), dim=-1)[0].double().numpy() for o in outputs]
            hears = [m.uses_acoustic for m, _ in members]
            by_text = [p for p, h in zip(each, hears, strict=True) if not h]
            by_audio = [p for p, h in zip(each, hears, strict=True) if h]
            both = bool(by_text and by_audio)  # no words: no text
            weight = self.text_weight if both else None
            stacked = self.fusion if both else None
            if stacked is not None:
                p_audio, p_text = np.mean(by_audio, 0)[None], np.mean(by_text, 0)[None]
                probs = fused_probabilities(stacked, p_audio, p_text)[0][0].astype(np.float64)
            elif weight is None:
                probs = np.mean(each, 0)
            else:
                probs = mix(np.mean(by_audio, 0), np.mean(by_text, 0), weight)
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
            fallback_checkpoint=str(model.path) if fallback else None,
            note=note,
            duration_s=round(len(x) / SAMPLE_RATE, 3),
            frame_step_s=model.frame_step_s,
            shapes={k: list(v.shape) for k, v in feats.items()},
            timings_ms=timings,
            attention={
                k: v[0].float().tolist() for k, v in (out.attention or {}).items() if v is not None
            },
            gate=None if out.gate is None else out.gate[0].float().tolist(),
            ensemble=[str(m.path) for m, _ in members] if len(self.members) > 1 else [],
            text_weight=weight,
            fusion=str(self.fusion_path) if stacked is not None else None,
        )

    def _answering(
        self, has_words: bool
    ) -> tuple[list[tuple[LoadedModel, FeaturePipeline]], bool, str]:
        """(models that answer, whether that is the acoustic fallback, a note): without words,
        the models that need them sit out; the fallback answers if none is left."""
        if has_words:
            return self.members, False, ""
        members = [m for m in self.members if not m[0].needs_words]
        if not members:
            note = f"no words recognised: {self.model.architecture} needs words"
            return [self.fallback_model()], True, note
        if len(members) < len(self.members):
            return (
                members,
                False,
                (f"no words recognised: {len(members)} of the ensemble's models answered"),
            )
        if self.model.uses_lexical:
            arch = self.model.architecture
            return members, False, f"no words recognised: {arch} ran on the acoustic frames only"
        return members, False, ""

    def _batch(self, model: LoadedModel, feats: dict[str, np.ndarray], name: str) -> Any:
        """A one-item Batch normalised with the checkpoint's statistics (global for a new speaker)."""
        from datamodules.dataset import inference_batch

        feats = dict(feats)
        if model.uses_lexical and "words" not in feats:
            # No words (hierarchical model on silence): an empty word sequence, masked out.
            dim = model.lexical_dim
            feats["words"] = np.zeros((0, dim), np.float32)
            feats["cls"] = np.zeros((dim,), np.float32)
            feats["spans"] = np.zeros((0, 2), np.int64)
        return inference_batch(
            feats,
            model.modalities,
            model.normalizer,
            name,
            speaker=None,
            stats_normalizer=model.stats_normalizer,
            stats_which=model.stats_set,
            functionals=feats.get("functionals") if model.uses_functionals else None,
        )
