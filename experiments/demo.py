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
temporary: the newest `KEEP_PLAYBACK` are kept, and the folder goes at exit. `--late-text
CKPT [--text-weight W]` adds, for each acoustic model with the text model's classes, a menu
entry fusing the two: (1 - W) · the acoustic probabilities + W · the text model's on the
transcript (the acoustic model alone when the ASR hears no words); with `--fusion FILE` (a
posterior GMU, `experiments.stacked_fusion --save`), one more entry per such model fusing the
two by that GMU.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
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

from datamodules.asr import BACKENDS  # noqa: E402
from experiments.demo_backend import (  # noqa: E402,F401 - the demo's API, re-exported
    DEFAULT_MAX_DURATION_S,
    DEFAULT_MAX_MODELS,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_QUEUE_LIMIT,
    KEEP_PLAYBACK,
    SOURCES,
    DemoBackend,
    DemoError,
)
from experiments.demo_models import (  # noqa: E402,F401 - re-exported
    BUILTIN,
    DEMO_EPOCHS,
    STARTUP_MODELS,
    LateText,
    ModelChoice,
    available_models,
    ensure_examples,
    examples_dir,
    how_to_make,
    train_builtin,
)
from experiments.inference import (  # noqa: E402
    DEFAULT_RUNS_DIR,
    PredictError,
    Prediction,
    read_audio,
)
from experiments.late_fusion import DEFAULT_TEXT_WEIGHT  # noqa: E402
from lightning_modules.architectures import ARCHITECTURES  # noqa: E402

log = logging.getLogger("experiments.demo")

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
    if with_words and lexical is not None:  # (with_words implies it; says so to mypy)
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
    p.add_argument(
        "--late-text",
        type=Path,
        default=None,
        help="a lexical (text-only) checkpoint: every acoustic model of the same classes is "
        "also offered late-fused with it (experiments/RESULTS.md, 'Late fusion')",
    )
    p.add_argument(
        "--text-weight",
        type=float,
        default=DEFAULT_TEXT_WEIGHT,
        help="the text model's weight in a late fusion (default 1/3)",
    )
    p.add_argument(
        "--fusion",
        type=Path,
        default=None,
        help="with --late-text: a posterior GMU file (experiments.stacked_fusion --save); each "
        "acoustic model paired with the text model is also offered stacked-fused by it "
        "(experiments/RESULTS.md, 'Stacked fusion')",
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
    late_text = None
    if args.fusion is not None and args.late_text is None:
        print("error: --fusion needs --late-text (the text model it fuses)", file=sys.stderr)
        return 2
    if args.late_text is not None:
        try:
            late_text = LateText.check(args.late_text, args.text_weight, args.fusion)
        except DemoError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    backend = DemoBackend(
        args.runs_dir,
        args.max_upload_mb,
        args.asr,
        args.epochs,
        args.max_duration_s,
        args.queue_limit,
        args.max_models,
        late_text,
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
