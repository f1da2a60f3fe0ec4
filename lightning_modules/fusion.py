"""Fusions of an acoustic and a lexical vector, all `(x_a, x_l) -> (h, gate | None)`.

They work on any leading shape ((B, D) per utterance or (B, W, D) per word).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ConcatFusion(nn.Module):
    """(..., Da), (..., Dl) -> (..., Da + Dl), gate None (MM-B)."""

    def __init__(self, acoustic_dim: int, lexical_dim: int, out_dim: int | None = None) -> None:
        super().__init__()
        self.out_dim = acoustic_dim + lexical_dim  # `out_dim` is ignored: concatenation sets it

    def forward(self, x_a: Tensor, x_l: Tensor) -> tuple[Tensor, None]:
        return torch.cat([x_a, x_l], dim=-1), None


class GMU(nn.Module):
    """Gated Multimodal Unit: (..., Da), (..., Dl) -> h (..., H), gate z (..., H) in (0, 1).

    h_a = tanh(W_a x_a + b_a), h_l = tanh(W_l x_l + b_l), z = sigmoid(W_z [x_a, x_l] + b_z),
    h = z * h_a + (1 - z) * h_l: z near 1 means the acoustic side is trusted.
    """

    def __init__(self, acoustic_dim: int, lexical_dim: int, out_dim: int) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.acoustic = nn.Linear(acoustic_dim, out_dim)
        self.lexical = nn.Linear(lexical_dim, out_dim)
        self.gate = nn.Linear(acoustic_dim + lexical_dim, out_dim)

    def forward(self, x_a: Tensor, x_l: Tensor) -> tuple[Tensor, Tensor]:
        h_a = torch.tanh(self.acoustic(x_a))
        h_l = torch.tanh(self.lexical(x_l))
        z = torch.sigmoid(self.gate(torch.cat([x_a, x_l], dim=-1)))
        return z * h_a + (1 - z) * h_l, z


# Config name -> class, each built as cls(acoustic_dim, lexical_dim, hidden_size).
FUSIONS: dict[str, type[nn.Module]] = {"concat": ConcatFusion, "gmu": GMU}
