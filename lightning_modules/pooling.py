"""Poolings from a sequence to one vector, all `(x (B, T, D), mask (B, T) bool) -> (vector, weights)`.

`weights` is (B, T) for the attention poolings and None otherwise. Rows with no real step give
a zero vector (and zero weights), never NaN. Every sequence pooling is built as `cls(dim)` and
says its output size in `out_dim` (D, or 2D for the statistics poolings); `SEQUENCE_POOLINGS`
maps the config names to the classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def masked_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax over the True positions of `mask` along `dim`; exactly 0 elsewhere, 0 on empty rows."""
    scores = scores.masked_fill(~mask, float("-inf"))
    # An all-masked row would be softmax(-inf...) = NaN: give it finite scores, then zero it.
    scores = torch.where(mask.any(dim, keepdim=True), scores, torch.zeros_like(scores))
    return torch.softmax(scores, dim=dim).masked_fill(~mask, 0.0)


class LastPool(nn.Module):
    """(B, T, 2H) BLSTM states, (B, T) mask -> (B, 2H), weights None.

    The forward direction's state at the last real step (lengths - 1) concatenated with the
    backward direction's state at step 0: each is that direction's summary of the whole sequence.
    """

    def __init__(self, dim: int = 0) -> None:
        super().__init__()
        self.out_dim = dim

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, None]:
        half = x.shape[-1] // 2
        last = (mask.sum(1) - 1).clamp(min=0)  # (B,)
        forward_last = x[torch.arange(x.shape[0], device=x.device), last, :half]  # (B, H)
        backward_first = x[:, 0, half:]  # (B, H)
        out = torch.cat([forward_last, backward_first], dim=-1)
        return out.masked_fill(~mask.any(1, keepdim=True), 0.0), None


class MeanPool(nn.Module):
    """(B, T, D) sequence, (B, T) mask -> (B, D) mean over real steps, weights None."""

    def __init__(self, dim: int = 0) -> None:
        super().__init__()
        self.out_dim = dim

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, None]:
        # masked_fill rather than x * mask: padding may hold anything, even inf.
        total = x.masked_fill(~mask.unsqueeze(-1), 0.0).sum(1)
        return total / mask.sum(1, keepdim=True).clamp(min=1).to(x.dtype), None


class AttentionPool(nn.Module):
    """(B, T, D) sequence, (B, T) mask -> (B, D) = sum_i a_i h_i, weights a (B, T).

    e_i = v^T tanh(W h_i + b); a = softmax over real steps only (padding masked with -inf).
    """

    def __init__(self, dim: int, attention_dim: int | None = None) -> None:
        super().__init__()
        attention_dim = attention_dim or dim
        self.out_dim = dim
        self.proj = nn.Linear(dim, attention_dim)
        self.v = nn.Linear(attention_dim, 1, bias=False)

    def scores(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, T) unnormalised scores e_i."""
        return self.v(torch.tanh(self.proj(x))).squeeze(-1)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
        weights = masked_softmax(self.scores(x), mask)  # (B, T)
        return torch.einsum("bt,btd->bd", weights, x), weights


class ClsPool(nn.Module):
    """(B, 1, D) [CLS] vector as a one-step sequence, (B, 1) mask -> (B, out_dim), weights None.

    The text encoder's [CLS] vector already summarises the utterance, so no BLSTM runs before
    it; a tanh projection brings it to the size the other poolings give.
    """

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, out_dim)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, None]:
        return torch.tanh(self.proj(x[:, 0])), None


def _weighted_std(x: Tensor, weights: Tensor, mean: Tensor) -> Tensor:
    """sqrt(sum_t w_t (x_t - mean)^2) of (B, T, D) under (B, T) weights summing to 1 (or 0)."""
    var = torch.einsum("bt,btd->bd", weights, (x - mean.unsqueeze(1)) ** 2)
    return var.clamp(min=VAR_FLOOR).sqrt()


VAR_FLOOR = 1e-8  # keeps the sqrt's gradient finite on constant sequences


class StatsPool(nn.Module):
    """(B, T, D) sequence, (B, T) mask -> (B, 2D) = masked mean ⊕ standard deviation (ddof 0).

    The utterance statistics a linear probe on frozen states uses (x-vector style).
    """

    def __init__(self, dim: int = 0) -> None:
        super().__init__()
        self.out_dim = 2 * dim

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, None]:
        x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
        weights = mask.to(x.dtype) / mask.sum(1, keepdim=True).clamp(min=1).to(x.dtype)  # (B, T)
        mean = torch.einsum("bt,btd->bd", weights, x)
        std = _weighted_std(x, weights, mean)
        out = torch.cat([mean, std], dim=-1)
        return out.masked_fill(~mask.any(1, keepdim=True), 0.0), None


class StatsNorm(nn.Module):
    """(B, D) -> (B, D): each dimension standardised, batch statistics in training and running
    ones in evaluation (`BatchNorm1d` without affine terms, as x-vectors use after statistics
    pooling). Pooled statistics vary little between utterances (the std of z-scored frames sits
    near 1), so a linear layer on them raw needs large weights and learns slowly. A training
    batch of one item uses the running statistics.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, affine=False)

    def set_statistics(self, mean: Tensor, var: Tensor) -> None:
        """Running statistics set outright (e.g. from a whole training part, not a batch)."""
        n = self.norm
        assert n.running_mean is not None and n.running_var is not None  # track_running_stats
        n.running_mean.copy_(mean)
        n.running_var.copy_(var)

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] < 2:
            n = self.norm
            return F.batch_norm(x, n.running_mean, n.running_var, training=False, eps=n.eps)
        return self.norm(x)


class AttentiveStatsPool(nn.Module):
    """(B, T, D), (B, T) mask -> (B, 2D) attention-weighted mean ⊕ weighted std, weights (B, T).

    The ECAPA-TDNN pooling: a = softmax(v^T tanh(W h_t + b)) over real steps, mean = sum a_t h_t,
    std = sqrt(sum a_t h_t^2 - mean^2) (computed as the weighted second central moment).
    """

    def __init__(self, dim: int, attention_dim: int | None = None) -> None:
        super().__init__()
        self.attention = AttentionPool(dim, attention_dim)
        self.out_dim = 2 * dim

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
        weights = masked_softmax(self.attention.scores(x), mask)  # (B, T)
        mean = torch.einsum("bt,btd->bd", weights, x)
        std = _weighted_std(x, weights, mean)
        out = torch.cat([mean, std], dim=-1)
        return out.masked_fill(~mask.any(1, keepdim=True), 0.0), weights


# Config name -> class, each built as cls(dim). "cls" (text only) is not a sequence pooling:
# the lexical branch projects the encoder's [CLS] vector instead (ClsPool).
SEQUENCE_POOLINGS: dict[str, type[nn.Module]] = {
    "last": LastPool,
    "mean": MeanPool,
    "attention": AttentionPool,
    "stats": StatsPool,
    "attentive_stats": AttentiveStatsPool,
}
POOLINGS = (*SEQUENCE_POOLINGS, "cls")
ATTENTION_POOLINGS = ("attention", "attentive_stats")  # the ones that return weights
STATS_POOLINGS = ("stats", "attentive_stats")  # the ones that return mean ⊕ std
