"""The features of a clip at inference, computed exactly as in training (`FeaturePipeline`),
and the timing helper the prediction path shares."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from datamodules.utterances import Word
from experiments.audio_input import PredictError
from lightning_modules.checkpoint import LoadedModel, brief


@contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Adds the block's wall time in ms to `timings[name]`."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(timings.get(name, 0.0) + (time.perf_counter() - t0) * 1e3, 2)


class FeaturePipeline:
    """The training-time feature code (`datamodules.features`) with the checkpoint's config."""

    def __init__(self, model: LoadedModel) -> None:
        from datamodules.features import FeatureConfig, FeatureError, LexicalEncoder
        from datamodules.features.frontends import build_frontend
        from datamodules.packaged import PackagedModelError

        try:
            self.config = FeatureConfig(**model.feature_config)
            # Frames are always computed: they give the words' spans (and voiced frames) even
            # for a lexical-only model, as the feature cache does. The checkpoint's front end
            # (ComParE LLDs, Whisper, hf:<path>) encodes the clip as the cache did.
            self.acoustic = build_frontend(
                self.config.acoustic_features,
                feature_set=self.config.feature_set,
                layer=self.config.acoustic_layer,
            )
            self.frame_step_s = self.acoustic.frame_step_s
            self.lexical = LexicalEncoder(self.config) if model.uses_lexical else None
            self.functionals = model.uses_functionals
        except (
            FeatureError,
            PackagedModelError,
            TypeError,
            ValueError,
            OSError,
            ImportError,
        ) as exc:
            # an encoder or front end not available here, a feature key this version lacks
            raise PredictError(
                f"checkpoint {model.path}: its features cannot be made: {brief(exc)}"
            ) from exc

    def compute(
        self, x: np.ndarray, words: list[Word], timings: dict[str, float], name: str = "input"
    ) -> dict[str, np.ndarray]:
        """Raw (un-normalised) features: acoustic (T, F), words (W, D), cls (D,), spans (W, 2);
        for a model that reads them, functionals (6373,) (`datamodules.functionals`)."""
        from datamodules.features import FeatureError, word_spans
        from datamodules.features.acoustic import voiced_frames
        from datamodules.functionals import FunctionalsError, clip_functionals

        out: dict[str, np.ndarray] = {}
        try:
            with timed(timings, "acoustic"):
                frames = self.acoustic.encode(x)
                lld = self.config.acoustic_features == "compare_lld"
                voiced = voiced_frames(frames) if lld else None
            out["acoustic"] = frames
            if self.functionals:
                with timed(timings, "acoustic"):
                    out["functionals"] = clip_functionals(x, name)
            with timed(timings, "lexical"):
                if self.lexical is not None and words:
                    vectors, cls, spans = self.lexical.encode(words, len(frames), voiced)
                    out["words"], out["cls"] = vectors, cls
                else:
                    spans = word_spans(words, len(frames), voiced, self.frame_step_s)
            out["spans"] = spans
        except FeatureError as exc:
            raise PredictError(f"{name}: {exc}") from exc
        except FunctionalsError as exc:
            raise PredictError(str(exc)) from exc
        return out


def feature_key(model: LoadedModel) -> str:
    """What decides the raw features a checkpoint's pipeline computes: its feature config (not
    its normalisation) and whether it encodes words (an acoustic model's pipeline does not, so
    a text model in its ensemble must not share it) and whether it computes functionals."""
    return json.dumps(
        [model.feature_config, model.uses_lexical, model.uses_functionals],
        sort_keys=True,
        default=str,
    )
