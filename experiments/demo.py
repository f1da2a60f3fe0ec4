"""Gradio demo: record, upload or pick a clip, and see what each model hears in it.

    python -m experiments.demo [--host 127.0.0.1] [--port 7860] [--share-on-network] [--runs-dir runs]

Models are the checkpoints found under `--runs-dir`. Nothing is trained inside a request: at
start-up, each architecture of `--train` (default acoustic,mmmla) without a checkpoint gets
the built-in corpus's model, trained into `runs/demo/<architecture>/` with its progress in the
terminal and in the page's status line, and the default model is loaded and run once on a
bundled example, so the first real prediction takes the usual time. The menu offers only
models that exist and says how to make the others. The page binds
127.0.0.1 unless `--share-on-network` (0.0.0.0) is given; Gradio share links are never made.
The endpoint `/predict` (audio file, model) -> JSON serves `gradio_client`; its model field
takes only keys of the server's menu (never a path), and at most `--max-models` models stay
loaded (least recently used goes). Clips over `--max-duration-s` (60 s) are refused; the rest
go through `Predictor.predict_clip` as in `experiments.predict`: longer than `WINDOW_S` is
predicted window by window, and a clip without speech (voice activity under `VAD_DBFS` for less
than `MIN_SPEECH_S`, all in `experiments.inference`) gets "no speech detected". Each model
serves one request at a time with at most `--queue-limit` waiting. Playback files are
temporary: the newest `KEEP_PLAYBACK` are kept, and the folder goes at exit.
"""

from __future__ import annotations

import argparse
import atexit
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from an offline demo

import matplotlib  # noqa: E402

matplotlib.use("Agg")
# Imported once here: start-up (plots) and the server's worker threads (gradio) would
# otherwise import pyplot concurrently, and Python's import lock then hands one of them a
# partially initialised module.
import matplotlib.pyplot  # noqa: E402,F401
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from datamodules.asr import BACKENDS  # noqa: E402
from datamodules.audio import SAMPLE_RATE  # noqa: E402
from datamodules.paths import REPO_ROOT, atomic_write_bytes, cache_root  # noqa: E402
from experiments.inference import (  # noqa: E402
    DEFAULT_RUNS_DIR,
    NoSpeechError,
    PredictError,
    Prediction,
    Predictor,
    checkpoint_record,
    demo_checkpoint,
    read_audio,
)
from lightning_modules.architectures import ARCHITECTURES  # noqa: E402

log = logging.getLogger("experiments.demo")

BUILTIN = "builtin"
DEFAULT_MAX_UPLOAD_MB = 20.0
DEMO_EPOCHS = 3
DEFAULT_MAX_DURATION_S = 60.0
DEFAULT_QUEUE_LIMIT = 4  # requests waiting per model
DEFAULT_MAX_MODELS = 2  # models kept loaded
KEEP_PLAYBACK = 16
STARTUP_MODELS = ("acoustic", "mmmla")  # acoustic: also the fallback of word-based models
SOURCES = ("Microphone", "Upload a file", "Bundled example")


class DemoError(Exception):
    """A demo request that cannot be served (bad upload, no model); shown to the user as is."""


@dataclass
class _Gate:
    """One model's turn: one request runs, `waiting` counts the ones queued behind it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    waiting: int = 0


# ---------------------------------------------------------------------------------------
# Models: the checkpoints under runs/, and the built-in ones trained on first use


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model menu: a checkpoint that exists."""

    key: str
    label: str
    architecture: str
    checkpoint: Path


def available_models(runs_dir: Path) -> list[ModelChoice]:
    """Every best checkpoint under `runs_dir` (MMMLA's first), by architecture."""
    found: list[ModelChoice] = []
    for path in sorted(Path(runs_dir).rglob("checkpoints/best.ckpt")):
        try:
            record = checkpoint_record(path)
        except PredictError as exc:
            log.warning("skipping %s: %s", path, exc)
            continue
        arch, corpus = record["architecture"], record["data"].get("corpus") or "?"
        rel = _display_path(path.parent.parent, runs_dir)
        found.append(ModelChoice(str(path), f"{arch} · {rel} ({corpus})", arch, path))
    order = {a: i for i, a in enumerate(ARCHITECTURES)}
    return sorted(found, key=lambda c: (order.get(c.architecture, 99), c.label))


def how_to_make(architecture: str) -> str:
    """How a user gets a model of `architecture` the demo does not have."""
    spec = ARCHITECTURES.get(architecture)
    config = f"configs/{spec.demo_config}.yaml" if spec else "configs/<variant>.yaml"
    return (
        f"restart the demo with `--train {architecture}` (trains the built-in corpus's model "
        f"at start-up) or train one: `make train CONFIG={config}` (or `make run`)"
    )


def _display_path(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path(root).resolve().parent))
    except ValueError:
        return str(path)


def train_builtin(
    architecture: str,
    runs_dir: Path = DEFAULT_RUNS_DIR,
    epochs: int = DEMO_EPOCHS,
    progress: Callable[[float, str], None] | None = None,
) -> Path:
    """Train the built-in corpus's `architecture` model (prepared first if needed); its best.ckpt."""
    progress = progress or (lambda _f, _m: None)
    ckpt = demo_checkpoint(architecture, runs_dir)
    if ckpt.is_file():
        return ckpt
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "WANDB_MODE": "offline",
    }
    if not (cache_root() / BUILTIN / "utterances.csv").is_file():
        progress(0.02, "preparing the built-in corpus")
        _run(
            [sys.executable, "-m", "experiments.prepare", BUILTIN],
            env,
            "prepare the built-in corpus",
        )
    config = REPO_ROOT / "configs" / f"{ARCHITECTURES[architecture].demo_config}.yaml"
    if not config.is_file():
        raise DemoError(f"no training config for '{architecture}': {config} does not exist")
    run_dir = ckpt.parent.parent
    cmd = [
        sys.executable, "-m", "experiments.train", "fit",
        "--config", str(config),
        "--data.corpus", BUILTIN,
        "--trainer.default_root_dir", str(run_dir),
        "--trainer.max_epochs", str(epochs),
        "--wandb", "false",
    ]  # fmt: skip
    progress(0.1, f"training the built-in {architecture} model ({epochs} epochs)")
    epoch_re = re.compile(r"Epoch (\d+)")

    def on_line(line: str) -> None:
        m = epoch_re.search(line)
        if m:
            done = min(int(m.group(1)) + 1, epochs)
            progress(0.1 + 0.85 * done / epochs, f"training {architecture}: epoch {done}/{epochs}")

    _run(cmd, env, f"train the built-in {architecture} model", on_line)
    if not ckpt.is_file():
        raise DemoError(f"training the built-in {architecture} model wrote no {ckpt}")
    return ckpt


def _run(
    cmd: list[str], env: dict[str, str], what: str, on_line: Callable[[str], None] | None = None
) -> None:
    log.info("running %s", " ".join(cmd))
    proc = subprocess.Popen(
        cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    tail: list[str] = []
    assert proc.stdout is not None
    # Lightning's progress bar rewrites lines with \r: split on it too.
    for chunk in proc.stdout:
        for line in chunk.replace("\r", "\n").splitlines():
            tail = (tail + [line])[-15:]
            if on_line:
                on_line(line)
    if proc.wait() != 0:
        raise DemoError(f"could not {what} (exit {proc.returncode}):\n" + "\n".join(tail))


# ---------------------------------------------------------------------------------------
# Bundled examples


def examples_dir() -> Path:
    return cache_root() / "demo" / "examples"


def ensure_examples(per_label: int = 1) -> list[Path]:
    """A few clips of the built-in corpus copied to cache/demo/examples (made at first start)."""
    folder = examples_dir()
    existing = sorted(folder.glob("*.wav"))
    if existing:
        return existing
    from datamodules.utterances import frame_to_utterances, read_table

    if not (cache_root() / BUILTIN / "utterances.csv").is_file():
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        _run(
            [sys.executable, "-m", "experiments.prepare", BUILTIN],
            env,
            "prepare the built-in corpus",
        )
    utterances = frame_to_utterances(read_table(BUILTIN))
    folder.mkdir(parents=True, exist_ok=True)
    taken: dict[str, int] = {}
    for u in sorted(utterances, key=lambda u: u.utterance_id):
        if not u.audio_path or taken.get(u.label, 0) >= per_label:
            continue
        x = read_audio(u.audio_path)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{u.label}_{u.utterance_id}") + ".wav"
        buf = io.BytesIO()
        sf.write(buf, x, SAMPLE_RATE, format="WAV")
        atomic_write_bytes(folder / name, buf.getvalue())  # a half-written example is never listed
        taken[u.label] = taken.get(u.label, 0) + 1
    return sorted(folder.glob("*.wav"))


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
    ) -> None:
        self.runs_dir = Path(runs_dir)
        self.max_upload_mb = max_upload_mb
        self.asr = asr
        self.epochs = epochs
        self.max_duration_s = float(max_duration_s)
        self.queue_limit = max(0, int(queue_limit))
        self.max_models = max(1, int(max_models))
        self._predictors: OrderedDict[Path, Predictor] = OrderedDict()  # least recent first
        self._gates: dict[Path, _Gate] = {}
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
        return available_models(self.runs_dir)

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
            predictor = self.predictor(choice.checkpoint)
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

    def resolve(self, key: str, progress: Callable[[float, str], None] | None = None) -> Path:
        """A menu key, a checkpoint path or an architecture name -> an existing checkpoint."""
        if not key:
            raise DemoError("choose a model first")
        if not self.ready.is_set():
            raise DemoError(f"the demo is still starting ({self.status}); try again shortly")
        if key.startswith(f"{BUILTIN}:"):
            key = key.split(":", 1)[1]
        choices = self.choices()
        if key in ARCHITECTURES:
            for choice in choices:
                if choice.architecture == key and choice.checkpoint is not None:
                    return choice.checkpoint
            raise DemoError(f"no {key} model under {self.runs_dir}: {how_to_make(key)}")
        # only the server's own menu: a request never names a file on the server
        for choice in choices:
            if choice.key == key and choice.checkpoint is not None:
                return choice.checkpoint
        shown = key if len(key) <= 80 else key[:77] + "..."
        raise DemoError(
            f"unknown model '{shown}': choose one of the server's models "
            f"({', '.join(sorted(ARCHITECTURES))} or a menu entry)"
        )

    def predictor(self, ckpt: Path) -> Predictor:
        """The loaded model of a checkpoint; its acoustic fallback is found (never trained) by
        `inference.find_fallback` in its run tree, else the demo's built-in acoustic model."""
        with self._lock:
            if ckpt in self._predictors:
                self._predictors.move_to_end(ckpt)
            else:
                while len(self._predictors) >= self.max_models:  # least recently used goes
                    self._predictors.popitem(last=False)
                self._predictors[ckpt] = Predictor(ckpt, None, self.asr, self.runs_dir)
            return self._predictors[ckpt]

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
        ckpt = self.resolve(model_key, progress)
        gate = self._enter(ckpt)
        with gate.lock:  # one request per model at a time
            with self._lock:
                gate.waiting -= 1
            progress(0.0, "loading the model")
            predictor = self.predictor(ckpt)
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

    def _enter(self, ckpt: Path) -> _Gate:
        """Queue a request for `ckpt`'s turn, or refuse it when `queue_limit` already wait."""
        with self._lock:
            gate = self._gates.setdefault(ckpt, _Gate())
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


# ---------------------------------------------------------------------------------------
# Presentation


def attention_figure(pred: Prediction, audio: np.ndarray | None = None):
    """Acoustic attention over time under the spectrogram with the words at their spans
    (`plots.draw_attention`, as in the report), and lexical attention per word."""
    from matplotlib.figure import Figure  # not pyplot: figures of a server must not pile up

    from experiments.plots import draw_attention

    acoustic = pred.attention.get("acoustic")
    lexical = pred.attention.get("lexical")
    with_words = lexical is not None and len(pred.words) > 0
    fig = Figure(figsize=(9, 2.2 * (2 + with_words)))
    axes = fig.subplots(2 + with_words, 1, squeeze=False, height_ratios=[2, 1] + [1] * with_words)
    words = [w.text for w in pred.words]
    spans = np.array([[w.first_frame, w.last_frame] for w in pred.words], dtype=np.int64)
    title = f"{pred.model_used}: {pred.label}"
    if acoustic is not None:
        weights = np.asarray(acoustic)
    else:
        n_frames = int(round(pred.duration_s / pred.frame_step_s))
        weights = np.zeros(max(n_frames, 1))
        title += " (no attention over frames: this model pools them otherwise)"
    draw_attention(
        axes[0, 0],
        axes[1, 0],
        weights,
        pred.frame_step_s,
        words,
        spans.reshape(-1, 2),
        audio,
        title,
    )
    if with_words:
        ax = axes[2, 0]
        ax.bar(range(len(lexical)), lexical, color="tab:purple")
        ax.set_xticks(range(len(lexical)))
        ax.set_xticklabels(words[: len(lexical)], rotation=30, fontsize=9)
        ax.set_ylabel("word attention")
    fig.tight_layout()
    return fig


def shapes_text(pred: Prediction, load_ms: float) -> str:
    shapes = ", ".join(f"{k} {tuple(v)}" for k, v in pred.shapes.items())
    timings = ", ".join(f"{k} {v:.0f}" for k, v in pred.timings_ms.items())
    return f"{shapes}\ntimings (ms): {timings}; model load {load_ms:.0f}"


def model_text(pred: Prediction) -> str:
    text = pred.model_used if pred.fallback else f"{pred.model_used} ({pred.checkpoint})"
    return f"{text}\n{pred.note}" if pred.note else text


# ---------------------------------------------------------------------------------------
# The page


def build_app(backend: DemoBackend, examples: list[Path]):
    """The Blocks page; `/predict` is the API endpoint (audio file, model key) -> JSON."""
    import gradio as gr

    def menu() -> list[tuple[str, str]]:
        return [(c.label, c.key) for c in backend.choices()]

    example_names = {p.name: p for p in examples}

    def default_model() -> str | None:
        choice = backend.default_choice()
        return choice.key if choice else None

    def startup_text() -> str:
        return f"**Status:** {backend.status}"

    def poll_startup():
        """Until start-up is done: the status line; then the menu as it now is, and stop."""
        if not backend.ready.is_set():
            return startup_text(), gr.update(), gr.Timer(active=True)
        return (
            startup_text(),
            gr.update(choices=menu(), value=default_model()),
            gr.Timer(active=False),
        )

    def api_status() -> dict:
        return {"ready": backend.ready.is_set(), "status": backend.status}

    def pick_source(source: str):
        return (
            gr.update(visible=source == SOURCES[0]),
            gr.update(visible=source == SOURCES[1]),
            gr.update(visible=source == SOURCES[2]),
        )

    def on_predict(model_key, source, mic, upload, example, progress=gr.Progress()):
        if source == SOURCES[0]:
            path = mic
        elif source == SOURCES[1]:
            path = upload
        else:
            path = example_names.get(example) if example else None
        try:
            pred, playback, load_ms = backend.predict(
                model_key, path, lambda f, msg: progress(f, desc=msg)
            )
        except (DemoError, PredictError) as exc:
            gr.Warning(str(exc))
            return None, "", "", None, None, "", f"error: {exc}"
        except Exception as exc:  # the server must survive anything a user sends
            log.exception("prediction failed")
            gr.Warning(f"prediction failed: {exc}")
            return None, "", "", None, None, "", f"error: prediction failed: {exc}"
        fig = attention_figure(pred, read_audio(playback))
        status = f"{pred.file}: {pred.label} ({pred.duration_s:.2f} s)"
        transcript = pred.transcript or "(no words recognised)"
        return (
            str(playback), transcript, shapes_text(pred, load_ms), pred.probabilities, fig,
            model_text(pred), status,
        )  # fmt: skip

    def api_predict(audio, model):
        try:
            pred, _, load_ms = backend.predict(model or "acoustic", audio)
        except (DemoError, PredictError) as exc:
            raise gr.Error(str(exc)) from exc
        return {**pred.to_json(), "model_load_ms": load_ms}

    def on_clear():
        return (
            None, None, None, None, "", "", None, None, "", "ready: choose a model and an input",
        )  # fmt: skip

    with gr.Blocks(title="Speech emotion recognition", analytics_enabled=False) as app:
        gr.Markdown("## Speech emotion recognition\nRecord, upload or pick a clip; the model "
                    "hears its sound and (through Whisper) its words.")  # fmt: skip
        startup = gr.Markdown(startup_text(), elem_id="startup")
        poll = gr.Timer(1.0)
        with gr.Row():
            with gr.Column(scale=1):
                model = gr.Dropdown(menu(), value=default_model(), label="Model")
                source = gr.Radio(list(SOURCES), value=SOURCES[1], label="Input")
                mic = gr.Audio(
                    sources=["microphone"],
                    type="filepath",
                    format="wav",
                    label="Record",
                    visible=False,
                )
                upload = gr.File(
                    label=f"Audio file (≤ {backend.max_upload_mb:g} MB)", elem_id="upload"
                )
                example = gr.Dropdown(
                    list(example_names), value=next(iter(example_names), None),
                    label="Bundled example", visible=False,
                )  # fmt: skip
                with gr.Row():
                    run = gr.Button("Predict", variant="primary", elem_id="predict")
                    again = gr.Button("Run again", elem_id="again")
                status = gr.Textbox(label="Status", value="ready: choose a model and an input",
                                    interactive=False, elem_id="status")  # fmt: skip
            with gr.Column(scale=2):
                playback = gr.Audio(label="Audio", interactive=False, type="filepath")
                transcript = gr.Textbox(label="Transcript", interactive=False, elem_id="transcript")
                probs = gr.Label(label="Class probabilities", elem_id="probs")
                used = gr.Textbox(
                    label="Model that answered", interactive=False, lines=2, elem_id="used"
                )
                plot = gr.Plot(label="Attention over time, with the words")
                shapes = gr.Textbox(label="Feature shapes and timings", interactive=False, lines=2)
        # Hidden components of the clean API endpoint for gradio_client.
        api_audio = gr.File(label="audio", visible=False)
        api_model = gr.Textbox(label="model", visible=False)
        api_out = gr.JSON(label="prediction", visible=False)
        api_button = gr.Button(visible=False)

        source.change(pick_source, source, [mic, upload, example], api_visibility="private")
        run.click(
            on_predict,
            [model, source, mic, upload, example],
            [playback, transcript, shapes, probs, plot, used, status],
            api_visibility="private",
        )
        again.click(
            on_clear, None,
            [mic, upload, playback, probs, transcript, shapes, plot, api_out, used, status],
            api_visibility="private",
        )  # fmt: skip
        api_button.click(api_predict, [api_audio, api_model], api_out, api_name="predict")
        poll.tick(poll_startup, None, [startup, model, poll], api_visibility="private")
        status_button = gr.Button(visible=False)
        status_out = gr.JSON(visible=False)
        status_button.click(api_status, None, status_out, api_name="status")
        app.load(
            lambda: (startup_text(), gr.update(choices=menu(), value=default_model())),
            None,
            [startup, model],
            api_visibility="private",
        )
    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m experiments.demo", description=__doc__.split("\n")[0]
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share-on-network", action="store_true", help="bind 0.0.0.0 (LAN access)")
    p.add_argument("--runs-dir", type=Path, default=DEFAULT_RUNS_DIR)
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB)
    p.add_argument("--asr", default="whisper", choices=[*BACKENDS, "none"])
    p.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help="epochs of built-in models")
    p.add_argument("--max-duration-s", type=float, default=DEFAULT_MAX_DURATION_S)
    p.add_argument("--queue-limit", type=int, default=DEFAULT_QUEUE_LIMIT,
                   help="requests waiting per model")  # fmt: skip
    p.add_argument("--max-models", type=int, default=DEFAULT_MAX_MODELS, help="models kept loaded")
    p.add_argument(
        "--train",
        default=",".join(STARTUP_MODELS),
        help="architectures to train on the built-in corpus at start-up when missing "
        "(comma-separated; '' trains none)",
    )
    p.add_argument("--no-examples", action="store_true", help="skip making the bundled examples")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    host = "0.0.0.0" if args.share_on_network else args.host
    examples: list[Path] = []
    if not args.no_examples:
        try:
            examples = ensure_examples()
        except Exception as exc:  # the demo still works with uploads and the microphone
            log.warning("no bundled examples: %s", exc)
    train = [a.strip() for a in args.train.split(",") if a.strip()]
    unknown = [a for a in train if a not in ARCHITECTURES]
    if unknown:
        print(f"error: --train: unknown architecture {', '.join(unknown)}", file=sys.stderr)
        return 2
    backend = DemoBackend(
        args.runs_dir,
        args.max_upload_mb,
        args.asr,
        args.epochs,
        args.max_duration_s,
        args.queue_limit,
        args.max_models,
    )
    backend.ready.clear()  # until start_up below has located, trained and warmed the models
    backend.status = "starting: looking for models"
    app = build_app(backend, examples)
    app.queue(default_concurrency_limit=1, max_size=max(1, args.queue_limit) * 4)
    try:
        # The page is up at once and shows the start-up's status line; the terminal too.
        app.launch(
            server_name=host,
            server_port=args.port,
            share=False,
            max_file_size=f"{args.max_upload_mb:g}mb",
            ssr_mode=False,
            show_error=True,
            inbrowser=False,
            prevent_thread_lock=True,
        )
        print(f"demo on http://{host}:{args.port} (starting up)", flush=True)
        backend.start_up(train, examples, lambda m: print(m, flush=True))
        print(f"demo on http://{host}:{args.port}: {backend.status}", flush=True)
        app.block_thread()
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
