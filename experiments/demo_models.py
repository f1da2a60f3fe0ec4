"""The demo's models and examples: the checkpoints under runs/ (the menu), the built-in
corpus's models trained at start-up, and the bundled example clips."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from datamodules.audio import SAMPLE_RATE
from datamodules.paths import REPO_ROOT, atomic_write_bytes, cache_root
from experiments.inference import (
    DEFAULT_RUNS_DIR,
    PredictError,
    checkpoint_record,
    demo_checkpoint,
    read_audio,
)
from experiments.late_fusion import DEFAULT_TEXT_WEIGHT, LateFusionError, check_weight
from lightning_modules.architectures import ARCHITECTURES
from lightning_modules.stacking import StackingError, load_fusion

log = logging.getLogger("experiments.demo")

BUILTIN = "builtin"
DEMO_EPOCHS = 3
STARTUP_MODELS = ("acoustic", "mmmla")  # acoustic: also the fallback of word-based models


class DemoError(Exception):
    """A demo request that cannot be served (bad upload, no model); shown to the user as is."""


# ---------------------------------------------------------------------------------------
# Models: the checkpoints under runs/, and the built-in ones trained on first use


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model menu: a checkpoint that exists; with `text`, a late fusion of
    that acoustic checkpoint with the lexical checkpoint `text` (text weight `text_weight`),
    or their stacked fusion by the posterior GMU file `fusion`."""

    key: str
    label: str
    architecture: str
    checkpoint: Path
    text: Path | None = None
    text_weight: float | None = None
    fusion: Path | None = None


@dataclass(frozen=True)
class LateText:
    """The text model the operator pairs with every acoustic model of the same classes
    (`experiments.demo --late-text CKPT [--text-weight W] [--fusion FILE]`); with `fusion`,
    a posterior GMU (`experiments.stacked_fusion --save`) that fuses each pair too."""

    checkpoint: Path
    weight: float
    class_names: tuple[str, ...]
    fusion: Path | None = None

    @classmethod
    def check(
        cls, checkpoint: Path, weight: float = DEFAULT_TEXT_WEIGHT, fusion: Path | None = None
    ) -> LateText:
        """Refuse, naming the file, a checkpoint that is missing or not a text-only model,
        a weight outside [0, 1], and a fusion file that cannot be read or fuses other
        classes than the text model predicts."""
        try:
            check_weight(weight)
        except LateFusionError as exc:
            raise DemoError(f"--text-weight: {exc}") from None
        if not Path(checkpoint).is_file():
            raise DemoError(f"--late-text: no checkpoint at {checkpoint}")
        try:
            record = checkpoint_record(checkpoint)
        except PredictError as exc:
            raise DemoError(f"--late-text: {exc}") from None
        arch = record["architecture"]
        if arch != "lexical":
            raise DemoError(
                f"--late-text: {checkpoint} holds a model of architecture {arch!r}; late "
                "fusion needs a lexical (text-only) one"
            )
        names = tuple(record["class_names"])
        if fusion is not None:
            try:
                fused = tuple(load_fusion(Path(fusion))[1])
            except StackingError as exc:
                raise DemoError(f"--fusion: {exc}") from None
            if fused != names:
                raise DemoError(
                    f"--fusion: {fusion} fuses {list(fused)}, but the text model {checkpoint} "
                    f"predicts {list(names)}"
                )
        return cls(Path(checkpoint), weight, names, Path(fusion) if fusion is not None else None)


def available_models(runs_dir: Path, late_text: LateText | None = None) -> list[ModelChoice]:
    """Every best checkpoint under `runs_dir` (MMMLA's first), by architecture; with
    `late_text`, then each acoustic one with the same classes late-fused with that text
    model, and with its fusion file, each stacked-fused with it."""
    found: list[ModelChoice] = []
    classes: dict[Path, tuple[str, ...]] = {}
    for path in sorted(Path(runs_dir).rglob("checkpoints/best.ckpt")):
        try:
            record = checkpoint_record(path)
        except PredictError as exc:
            log.warning("skipping %s: %s", path, exc)
            continue
        arch, corpus = record["architecture"], record["data"].get("corpus") or "?"
        rel = _display_path(path.parent.parent, runs_dir)
        found.append(ModelChoice(str(path), f"{arch} · {rel} ({corpus})", arch, path))
        classes[path] = tuple(record["class_names"])
    order = {a: i for i, a in enumerate(ARCHITECTURES)}
    found.sort(key=lambda c: (order.get(c.architecture, 99), c.label))
    if late_text is None:
        return found
    text_rel = _display_path(late_text.checkpoint.parent.parent, runs_dir)
    pairs = [
        c
        for c in found
        if c.architecture == "acoustic" and classes[c.checkpoint] == late_text.class_names
    ]
    late = [
        ModelChoice(
            f"late:{c.checkpoint}",
            f"late fusion · {c.label.removeprefix('acoustic · ')} + text {text_rel} "
            f"(w {late_text.weight:.2f})",
            c.architecture,
            c.checkpoint,
            late_text.checkpoint,
            late_text.weight,
        )
        for c in pairs
    ]
    fusion = late_text.fusion
    if fusion is None:
        return found + late
    stacked = [
        ModelChoice(
            f"stacked:{c.checkpoint}",
            f"stacked fusion · {c.label.removeprefix('acoustic · ')} + text {text_rel} "
            f"(GMU {fusion.name})",
            c.architecture,
            c.checkpoint,
            late_text.checkpoint,
            fusion=fusion,
        )
        for c in pairs
    ]
    return found + late + stacked


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
