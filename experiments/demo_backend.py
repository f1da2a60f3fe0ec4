"""The demo's backend: the model cache (LRU), upload and duration checks, one request per
model at a time, start-up, and one prediction (`experiments.demo` builds the page on it)."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from datamodules.audio import SAMPLE_RATE
from experiments.demo_models import (
    BUILTIN,
    DEMO_EPOCHS,
    STARTUP_MODELS,
    DemoError,
    LateText,
    ModelChoice,
    available_models,
    how_to_make,
    train_builtin,
)
from experiments.inference import (
    DEFAULT_RUNS_DIR,
    NoSpeechError,
    PredictError,
    Prediction,
    Predictor,
    read_audio,
)
from lightning_modules.architectures import ARCHITECTURES

log = logging.getLogger("experiments.demo")


DEFAULT_MAX_UPLOAD_MB = 20.0
DEFAULT_MAX_DURATION_S = 60.0
DEFAULT_QUEUE_LIMIT = 4  # requests waiting per model
DEFAULT_MAX_MODELS = 2  # models kept loaded
KEEP_PLAYBACK = 16
SOURCES = ("Microphone", "Upload a file", "Bundled example")


@dataclass
class _Gate:
    """One model's turn: one request runs, `waiting` counts the ones queued behind it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    waiting: int = 0


# ---------------------------------------------------------------------------------------
# The backend: model cache, upload checks, one prediction


class DemoBackend:
    """What the page calls: resolve a model choice, check the input, predict."""

    def __init__(
        self,
        runs_dir: Path = DEFAULT_RUNS_DIR,
        max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
        asr: str = "whisper",
        epochs: int = DEMO_EPOCHS,
        max_duration_s: float = DEFAULT_MAX_DURATION_S,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        max_models: int = DEFAULT_MAX_MODELS,
        late_text: LateText | None = None,
    ) -> None:
        """`late_text`: the text model each acoustic model of the same classes is also
        offered fused with (late fusion, its own menu entry; and stacked fusion where it
        names a fusion file)."""
        self.runs_dir = Path(runs_dir)
        self.late_text = late_text
        self.max_upload_mb = max_upload_mb
        self.asr = asr
        self.epochs = epochs
        self.max_duration_s = float(max_duration_s)
        self.queue_limit = max(0, int(queue_limit))
        self.max_models = max(1, int(max_models))
        # by menu key, least recent first
        self._predictors: OrderedDict[str, Predictor] = OrderedDict()
        self._gates: dict[str, _Gate] = {}
        self._lock = threading.Lock()
        self.playback_dir = Path(tempfile.mkdtemp(prefix="ser-demo-"))
        # Set when start-up is done; a backend used without `start_up` (tests, scripts) is ready.
        self.ready = threading.Event()
        self.status = "ready"
        self.ready.set()
        atexit.register(self.close)

    def close(self) -> None:
        """Remove the playback files (also run at interpreter exit)."""
        shutil.rmtree(self.playback_dir, ignore_errors=True)

    def choices(self) -> list[ModelChoice]:
        return available_models(self.runs_dir, self.late_text)

    def default_choice(self) -> ModelChoice | None:
        """MMMLA (the full model) when there is one, else the first model."""
        choices = self.choices()
        return next((c for c in choices if c.architecture == "mmmla"), None) or next(
            iter(choices), None
        )

    def missing_text(self) -> str:
        """The menu's note on architectures without a model."""
        have = {c.architecture for c in self.choices()}
        missing = [a for a in ARCHITECTURES if a not in have]
        if not missing:
            return ""
        return (
            f"not available: {', '.join(missing)}; restart with `--train "
            f"{','.join(missing)}` to train them on the built-in corpus at start-up, or "
            "`make train CONFIG=configs/<variant>.yaml`"
        )

    def _say(self, message: str, say: Callable[[str], None]) -> None:
        if message != self.status:
            self.status = message
            say(f"demo: {message}")

    def start_up(
        self,
        train: Sequence[str] = STARTUP_MODELS,
        examples: Sequence[Path] = (),
        say: Callable[[str], None] = print,
    ) -> None:
        """Train the missing `train` models, load the default one and run it once (warm-up).

        Every step is printed (`say`) and kept in `status` for the page; `ready` is set at the
        end, whatever happened. Requests never train: this is the only place that does.
        """
        self.ready.clear()
        try:
            have = {c.architecture for c in self.choices()}
            for arch in train:
                if arch in have:
                    continue
                self._say(f"training the built-in {arch} model ({self.epochs} epochs)", say)
                train_builtin(arch, self.runs_dir, self.epochs, lambda _f, m: self._say(m, say))
            choice = self.default_choice()
            if choice is None:
                self._say(f"no model under {self.runs_dir}: {how_to_make('mmmla')}", say)
                return
            self._say(f"loading {choice.label} and warming it up", say)
            predictor = self.predictor(choice)
            if predictor.model.needs_words:
                try:  # the acoustic fallback answers when the ASR hears no words
                    predictor.fallback_model()
                except PredictError as exc:
                    say(f"demo: {exc}")
            if examples:  # loads the ASR, the feature extractors and the model
                predictor.predict_waveform(read_audio(examples[0]), examples[0].name)
            n = len(self.choices())
            note = self.missing_text()
            self._say(f"ready: {n} model{'s' * (n != 1)}" + (f" ({note})" if note else ""), say)
        except Exception as exc:  # the page stays up and says what went wrong
            log.exception("start-up failed")
            self._say(f"start-up failed: {exc}", say)
        finally:
            self.ready.set()

    def resolve(
        self, key: str, progress: Callable[[float, str], None] | None = None
    ) -> ModelChoice:
        """A menu key or an architecture name (its first plain entry) -> a menu entry."""
        if not key:
            raise DemoError("choose a model first")
        if not self.ready.is_set():
            raise DemoError(f"the demo is still starting ({self.status}); try again shortly")
        if key.startswith(f"{BUILTIN}:"):
            key = key.split(":", 1)[1]
        choices = self.choices()
        if key in ARCHITECTURES:
            for choice in choices:
                if choice.architecture == key and choice.text is None:
                    return choice
            raise DemoError(f"no {key} model under {self.runs_dir}: {how_to_make(key)}")
        # only the server's own menu: a request never names a file on the server
        for choice in choices:
            if choice.key == key:
                return choice
        shown = key if len(key) <= 80 else key[:77] + "..."
        raise DemoError(
            f"unknown model '{shown}': choose one of the server's models "
            f"({', '.join(sorted(ARCHITECTURES))} or a menu entry)"
        )

    def predictor(self, choice: ModelChoice) -> Predictor:
        """The loaded model(s) of a menu entry; the acoustic fallback of a model that needs
        words is found (never trained) by `inference.find_fallback` in its run tree, else the
        demo's built-in acoustic model."""
        key = choice.key
        with self._lock:
            if key in self._predictors:
                self._predictors.move_to_end(key)
            else:
                while len(self._predictors) >= self.max_models:  # least recently used goes
                    self._predictors.popitem(last=False)
                text = [choice.text] if choice.text is not None else []
                self._predictors[key] = Predictor(
                    choice.checkpoint,
                    None,
                    self.asr,
                    self.runs_dir,
                    text,
                    choice.text_weight,
                    fusion=choice.fusion,
                )
            return self._predictors[key]

    def check_upload(self, path: str | Path | None) -> Path:
        """Reject a missing, oversized upload with a message naming it (audio checks follow)."""
        if path is None or str(path) == "":
            raise DemoError("no audio: record, upload or pick an example first")
        path = Path(path)
        if not path.is_file():
            raise DemoError(f"{path.name}: the uploaded file is gone; upload it again")
        size_mb = path.stat().st_size / 2**20
        if size_mb > self.max_upload_mb:
            raise DemoError(
                f"{path.name}: {size_mb:.1f} MB is over the {self.max_upload_mb:g} MB upload limit"
            )
        return path

    def predict(
        self,
        model_key: str,
        audio_path: str | Path | None,
        progress: Callable[[float, str], None] | None = None,
    ) -> tuple[Prediction, Path, float]:
        """One prediction; returns it, a 16 kHz wav of the analysed audio and the model load ms."""
        progress = progress or (lambda _f, _m: None)
        path = self.check_upload(audio_path)
        self._check_duration(path)
        choice = self.resolve(model_key, progress)
        gate = self._enter(choice.key)
        with gate.lock:  # one request per model at a time
            with self._lock:
                gate.waiting -= 1
            progress(0.0, "loading the model")
            predictor = self.predictor(choice)
            progress(0.5, "reading the audio")
            t0 = time.perf_counter()
            try:
                x = read_audio(path)
            except PredictError as exc:
                raise DemoError(str(exc).replace(str(path), path.name)) from exc
            self._check_duration(path, len(x) / SAMPLE_RATE)
            timings = {"load": round((time.perf_counter() - t0) * 1e3, 2)}
            try:  # voice activity, then windows: the same code as experiments.predict
                pred = predictor.predict_clip(
                    x, path.name, None, timings, lambda step: progress(0.6, step)
                )
            except NoSpeechError as exc:
                raise DemoError(str(exc)) from exc
            return pred, self._playback_file(x), predictor.load_ms

    def _enter(self, key: str) -> _Gate:
        """Queue a request for model `key`'s turn, or refuse it when `queue_limit` already
        wait."""
        with self._lock:
            gate = self._gates.setdefault(key, _Gate())
            busy = gate.lock.locked()
            if busy and gate.waiting >= self.queue_limit:
                raise DemoError(
                    f"the model is busy ({gate.waiting} requests already waiting for it); "
                    "try again in a moment"
                )
            gate.waiting += 1
            return gate

    def _check_duration(self, path: Path, seconds: float | None = None) -> None:
        """Refuse audio over `max_duration_s`: from the header before decoding, when it has one."""
        if seconds is None:
            try:
                seconds = sf.info(str(path)).duration
            except Exception:  # not a format soundfile reads: checked after decoding
                return
        if seconds > self.max_duration_s:
            raise DemoError(
                f"{path.name}: {seconds:.1f} s of audio is over the demo's "
                f"{self.max_duration_s:g} s limit; trim the clip"
            )

    def _playback_file(self, x: np.ndarray) -> Path:
        """A new temp wav of the analysed audio; only the newest KEEP_PLAYBACK are kept."""
        self.playback_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.playback_dir, suffix=".wav")
        os.close(fd)
        sf.write(name, x, SAMPLE_RATE)
        old = sorted(self.playback_dir.glob("*.wav"), key=lambda p: p.stat().st_mtime_ns)
        for stale in old[:-KEEP_PLAYBACK]:
            stale.unlink(missing_ok=True)
        return Path(name)
