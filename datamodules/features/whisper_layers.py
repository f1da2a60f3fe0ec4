"""Every hidden state of a CTranslate2 Whisper encoder, from a PyTorch port of its weights.

CTranslate2's `encode()` returns only the encoder's output (after its final layer norm);
for emotion the middle layers of Whisper are often stronger than the last. This module reads
the encoder's weights straight out of the CTranslate2 `model.bin` (`read_ct2_variables`, no
pickle) and runs the same computation in PyTorch (`WhisperLayers`), returning the L + 1
hidden states in Hugging Face's convention: state 0 = convolutions + positions, state i = the
output of block i, and the last state with the final layer norm applied (so state L equals
what `encode()` gives, to float rounding; `tests/test_whisper_layers.py` checks it).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from datamodules.features.config import FeatureError

# CTranslate2's DataType enum order (include/ctranslate2/types.h); model.bin stores the index
CT2_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16)
CT2_BINARY_VERSIONS = (5, 6)


def read_ct2_variables(path: str | Path, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 `model.bin` whose names start with `prefix`."""
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    try:
        with open(path, "rb") as f:

            def unpack(fmt: str) -> tuple:
                size = struct.calcsize(fmt)
                data = f.read(size)
                if len(data) != size:
                    raise FeatureError(f"{path}: truncated CTranslate2 model file")
                return struct.unpack(fmt, data)

            def string() -> str:
                (n,) = unpack("H")
                return f.read(n)[:-1].decode("utf-8")  # stored with a trailing NUL

            (version,) = unpack("I")
            if version not in CT2_BINARY_VERSIONS:
                raise FeatureError(
                    f"{path}: CTranslate2 binary version {version} is not one of "
                    f"{CT2_BINARY_VERSIONS}"
                )
            string()  # the spec name
            unpack("I")  # its revision
            (count,) = unpack("I")
            for _ in range(count):
                name = string()
                (ndim,) = unpack("B")
                shape = unpack(f"{ndim}I")
                (dtype_id, nbytes) = unpack("B") + unpack("I")
                if name.startswith(prefix):
                    if dtype_id >= len(CT2_DTYPES):
                        raise FeatureError(f"{path}: {name} has unknown dtype id {dtype_id}")
                    data = f.read(nbytes)
                    if len(data) != nbytes:
                        raise FeatureError(f"{path}: truncated CTranslate2 model file")
                    out[name[len(prefix) :]] = np.frombuffer(data, CT2_DTYPES[dtype_id]).reshape(
                        shape
                    )
                else:
                    f.seek(nbytes, 1)
    except OSError as exc:
        raise FeatureError(f"cannot read CTranslate2 model {path}: {exc}") from exc
    if not out:
        raise FeatureError(f"{path}: no variables named {prefix}*")
    return out


def _attr(name: str) -> str:
    """A CTranslate2 variable name ("layer_0/ffn/linear_0/weight") as a buffer name."""
    return name.replace("/", "__")


class WhisperLayers(nn.Module):
    """A Whisper encoder: (B, n_mels, M) log-mel -> L + 1 hidden states (B, ceil(M / 2), D)."""

    def __init__(self, variables: dict[str, np.ndarray]) -> None:
        super().__init__()
        try:
            self.heads = int(variables["num_heads"])
            for name, value in variables.items():
                if name != "num_heads":  # buffers: moved by .to(), never trained
                    self.register_buffer(_attr(name), torch.from_numpy(value.astype(np.float32)))
            self.depth = 0
            while hasattr(self, _attr(f"layer_{self.depth}/ffn/linear_0/weight")):
                self.depth += 1
            self.dim, self.n_mels = (int(n) for n in self._p("conv1/weight").shape[:2])
            self.max_positions = int(self._p("position_encodings/encodings").shape[0])
        except (KeyError, AttributeError) as exc:
            raise FeatureError(f"Whisper encoder weights lack {exc}") from exc
        if not self.depth:
            raise FeatureError("Whisper encoder weights hold no layer_0")

    @classmethod
    def from_ct2(cls, model_dir: str | Path) -> WhisperLayers:
        """The encoder of the CTranslate2 Whisper folder `model_dir`."""
        return cls(read_ct2_variables(Path(model_dir) / "model.bin")).eval()

    def _p(self, name: str) -> torch.Tensor:
        try:
            return getattr(self, _attr(name))
        except AttributeError:
            raise KeyError(name) from None

    def _norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, (self.dim,), self._p(f"{name}/gamma"), self._p(f"{name}/beta"))

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self._p(f"{name}/weight"), self._p(f"{name}/bias"))

    def _block(self, x: torch.Tensor, i: int) -> torch.Tensor:
        p = f"layer_{i}"
        b, t, d = x.shape
        qkv = self._linear(
            self._norm(x, f"{p}/self_attention/layer_norm"), f"{p}/self_attention/linear_0"
        )
        q, k, v = (
            y.view(b, t, self.heads, d // self.heads).transpose(1, 2) for y in qkv.chunk(3, -1)
        )
        att = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
        x = x + self._linear(att, f"{p}/self_attention/linear_1")
        h = F.gelu(self._linear(self._norm(x, f"{p}/ffn/layer_norm"), f"{p}/ffn/linear_0"))
        return x + self._linear(h, f"{p}/ffn/linear_1")

    def forward(self, mel: torch.Tensor) -> list[torch.Tensor]:
        """(B, n_mels, M) -> depth + 1 tensors (B, ceil(M / 2), D)."""
        w = self._p
        x = F.gelu(F.conv1d(mel, w("conv1/weight"), w("conv1/bias"), padding=1))
        x = F.gelu(F.conv1d(x, w("conv2/weight"), w("conv2/bias"), stride=2, padding=1))
        x = x.transpose(1, 2)  # (B, T, D)
        if x.shape[1] > self.max_positions:
            raise FeatureError(f"{x.shape[1]} frames exceed the encoder's {self.max_positions}")
        x = x + w("position_encodings/encodings")[: x.shape[1]]
        states = [x]
        for i in range(self.depth):
            x = self._block(x, i)
            states.append(x)
        states[-1] = self._norm(x, "layer_norm")
        return states
