"""Sequence encoders: a BLSTM over acoustic frames or word vectors that never reads padding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def out_dim(part: nn.Module) -> int:
    """The output size a model part (encoder, pooling, fusion) declares in `out_dim`."""
    size = getattr(part, "out_dim", None)
    if not isinstance(size, int):
        raise TypeError(f"{type(part).__name__} declares no integer out_dim")
    return size


class BLSTMEncoder(nn.Module):
    """(B, T, F) sequence, (B, T) bool mask (real steps first) -> (B, T, 2H), zeros on padding.

    Packed sequences keep padded steps out of both directions on a GPU. On a CPU the backward
    pass of a packed LSTM costs O(T^2) (each step's slice of the packed data gets a full-size
    zero gradient: 10x slower than the whole step at T = 450 frames), so there each direction
    runs on the padded batch instead, the backward one over every item reversed within its own
    length: real steps never read padding either way, and the weights are the same `nn.LSTM`'s.
    Items of length 0 (an utterance without words) are run and then zeroed, so they never NaN.
    """

    def __init__(
        self, input_dim: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.out_dim = 2 * hidden_size
        self.lstm = nn.LSTM(
            input_dim,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        total = x.shape[1]
        # Zero padding first: a length-0 item is run over its (padded) step 0.
        x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
        if x.is_cuda:
            lengths = mask.sum(1).clamp(min=1).cpu()  # pack needs CPU int64 lengths >= 1
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.lstm(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=total)  # (B, T, 2H)
        else:
            out = self._padded(x, mask.sum(1))
        out = out.masked_fill(~mask.unsqueeze(-1), 0.0)
        return self.dropout(out)

    def _padded(self, x: Tensor, lengths: Tensor) -> Tensor:
        """(B, T, F) zero-padded, (B,) lengths -> (B, T, 2H); padded steps hold garbage."""
        b, t = x.shape[:2]
        steps = torch.arange(t, device=x.device).expand(b, t)
        # Index t -> length - 1 - t on real steps, t on padding: reverses each item in place.
        rev = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)
        out = x
        for layer in range(self.lstm.num_layers):
            if layer > 0 and self.training and self.lstm.dropout > 0:
                out = F.dropout(out, self.lstm.dropout, training=True)
            fwd = self._direction(out, layer, "")
            bwd = _flip(self._direction(_flip(out, rev), layer, "_reverse"), rev)
            out = torch.cat([fwd, bwd], dim=-1)  # (B, T, 2H)
        return out

    def _direction(self, x: Tensor, layer: int, suffix: str) -> Tensor:
        """One direction of one layer of `self.lstm` over (B, T, D) -> (B, T, H)."""
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        params = [getattr(self.lstm, f"{n}_l{layer}{suffix}") for n in names]
        h0 = x.new_zeros(1, x.shape[0], self.hidden_size)
        out, _, _ = torch.lstm(x, (h0, h0), params, True, 1, 0.0, self.training, False, True)
        return out


def _flip(x: Tensor, rev: Tensor) -> Tensor:
    """(B, T, D) with each item's steps permuted by the (B, T) index `rev`."""
    return x.gather(1, rev.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class LayerWeightedSum(nn.Module):
    """(B, T, L * D) frames of L stacked hidden states -> (B, T, D): a softmax-weighted sum of
    the layers with one learned weight each (the SUPERB convention; starts as the mean)."""

    def __init__(self, layers: int) -> None:
        super().__init__()
        if layers < 2:
            raise ValueError(f"LayerWeightedSum needs at least 2 layers, got {layers}")
        self.layers = layers
        self.weights = nn.Parameter(torch.zeros(layers))

    def forward(self, x: Tensor) -> Tensor:
        b, t, f = x.shape
        if f % self.layers:
            raise ValueError(f"{f} features do not split into {self.layers} layers")
        stacked = x.reshape(b, t, self.layers, f // self.layers)
        w = torch.softmax(self.weights, dim=0).to(x.dtype)
        return torch.einsum("btld,l->btd", stacked, w)
