"""The hierarchical model (after Aguilar et al. 2019): frames pooled per word, fused per word,
a word-level BLSTM and attention over words."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_modules.encoders import BLSTMEncoder, out_dim
from lightning_modules.fusion import FUSIONS
from lightning_modules.pooling import (
    ATTENTION_POOLINGS,
    VAR_FLOOR,
    AttentionPool,
    masked_softmax,
)


def span_mask(spans: Tensor, frame_mask: Tensor, word_mask: Tensor) -> Tensor:
    """(B, W, 2) [start, end) frame spans, (B, T) frame mask, (B, W) word mask -> (B, W, T) bool."""
    t = torch.arange(frame_mask.shape[1], device=spans.device)  # (T,)
    inside = (t >= spans[..., :1]) & (t < spans[..., 1:])  # (B, W, T)
    return inside & frame_mask.unsqueeze(1) & word_mask.unsqueeze(-1)


class WordSpanPool(nn.Module):
    """(B, T, D) frame states, (B, W, T) span mask -> (B, W, out_dim) one vector per word,
    weights (B, W, T).

    mode "attention": e_t = v^T tanh(W h_t + b) scored once per frame, softmax within each span;
    "mean": the mean of the span's frames; "stats" / "attentive_stats": the (weighted) mean ⊕
    standard deviation of the span's frames (out_dim 2D). A word with an empty span gets a zero
    vector.
    """

    MODES = ("attention", "mean", "stats", "attentive_stats")

    def __init__(self, dim: int, mode: str = "attention") -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"word pooling must be one of {self.MODES}, got {mode!r}")
        self.mode = mode
        self.attention = AttentionPool(dim) if mode in ATTENTION_POOLINGS else None
        self.with_std = mode in ("stats", "attentive_stats")
        self.out_dim = 2 * dim if self.with_std else dim

    def forward(self, x: Tensor, inside: Tensor) -> tuple[Tensor, Tensor]:
        x = x.masked_fill(~inside.any(1).unsqueeze(-1), 0.0)  # frames outside every word
        if self.attention is not None:
            scores = self.attention.scores(x).unsqueeze(1).expand_as(inside)  # (B, W, T)
            weights = masked_softmax(scores, inside)
        else:
            counts = inside.sum(-1, keepdim=True).clamp(min=1)
            weights = inside.to(x.dtype) / counts
        mean = torch.bmm(weights, x)  # (B, W, D)
        if not self.with_std:
            return mean, weights
        var = torch.bmm(weights, x**2) - mean**2  # E[x^2] - E[x]^2 within each span
        std = var.clamp(min=VAR_FLOOR).sqrt()
        out = torch.cat([mean, std], dim=-1).masked_fill(~inside.any(-1, keepdim=True), 0.0)
        return out, weights  # (B, W, 2D)


class HierarchicalEncoder(nn.Module):
    """Frames (B, T, F) + words (B, W, Dw) + spans (B, W, 2) -> (B, 2H) utterance vector.

    Returns (vector, attention {"acoustic": (B, T), "lexical": (B, W), "word_frames": (B, W, T)},
    gate (B, H) averaged over real words, or None for concatenation). Items without words take the
    acoustic path (acoustic BLSTM + attention over frames), chosen per item with torch.where.
    """

    WORD_POOLINGS = WordSpanPool.MODES

    def __init__(
        self,
        acoustic_dim: int,
        lexical_dim: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        word_pooling: str = "attention",
        fusion: str = "gmu",
    ) -> None:
        super().__init__()
        self.frames = BLSTMEncoder(acoustic_dim, hidden_size, num_layers, dropout)
        self.word_pool = WordSpanPool(self.frames.out_dim, word_pooling)
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {sorted(FUSIONS)}, got {fusion!r}")
        self.fusion = FUSIONS[fusion](self.word_pool.out_dim, lexical_dim, hidden_size)
        self.words = BLSTMEncoder(out_dim(self.fusion), hidden_size, num_layers, dropout)
        self.word_attention = AttentionPool(self.words.out_dim)
        self.frame_attention = AttentionPool(self.frames.out_dim)  # the no-words fallback
        self.out_dim = self.words.out_dim

    def forward(
        self,
        frames: Tensor,
        frame_mask: Tensor,
        words: Tensor,
        word_mask: Tensor,
        spans: Tensor,
    ) -> tuple[Tensor, dict[str, Tensor], Tensor | None]:
        states = self.frames(frames, frame_mask)  # (B, T, 2H)
        inside = span_mask(spans, frame_mask, word_mask)  # (B, W, T)
        per_word, frame_weights = self.word_pool(states, inside)  # (B, W, 2H)
        fused, gate = self.fusion(per_word, words)  # (B, W, H')
        word_states = self.words(fused, word_mask)  # (B, W, 2H)
        by_words, word_weights = self.word_attention(word_states, word_mask)
        by_frames, acoustic_weights = self.frame_attention(states, frame_mask)
        has_words = word_mask.any(1, keepdim=True)  # (B, 1)
        vector = torch.where(has_words, by_words, by_frames)
        attention = {
            "acoustic": acoustic_weights * ~has_words,  # only where the fallback was used
            "lexical": word_weights,
            "word_frames": frame_weights,
        }
        if gate is not None:
            gate = gate.masked_fill(~word_mask.unsqueeze(-1), 0.0).sum(1)
            gate = gate / word_mask.sum(1, keepdim=True).clamp(min=1)  # (B, H) mean over words
        return vector, attention, gate
