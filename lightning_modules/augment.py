"""Training-time regularisers for small corpora: SpecAugment-style masking of frame features,
frame dropout, modality dropout, mixup of pooled vectors and an exponential moving average of
the weights.

Masked values are set to 0, which is the training mean of z-normalised features: a masked
frame or band carries no information rather than a spike. Padding stays untouched (it is
masked out downstream anyway) and nothing happens outside training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from datamodules.batch import Batch


class FrameMasking(nn.Module):
    """SpecAugment on (B, T, F) features: `time_masks` spans of up to `time_width` of each
    item's real frames (a fraction of its length), `feature_masks` bands of up to
    `feature_width` features, and each real frame zeroed with probability `frame_dropout`."""

    def __init__(
        self,
        time_masks: int = 0,
        time_width: float = 0.1,
        feature_masks: int = 0,
        feature_width: int = 8,
        frame_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if time_masks < 0 or feature_masks < 0 or not 0.0 <= frame_dropout < 1.0:
            raise ValueError(
                "time_masks and feature_masks must be >= 0 and frame_dropout in [0, 1); got "
                f"{time_masks}, {feature_masks}, {frame_dropout}"
            )
        if not 0.0 < time_width <= 1.0 or feature_width < 1:
            raise ValueError(
                f"time_width must be in (0, 1] and feature_width >= 1; got {time_width}, "
                f"{feature_width}"
            )
        self.time_masks, self.time_width = time_masks, time_width
        self.feature_masks, self.feature_width = feature_masks, feature_width
        self.frame_dropout = frame_dropout

    @property
    def active(self) -> bool:
        return bool(self.time_masks or self.feature_masks or self.frame_dropout)

    def keep_mask(self, mask: Tensor, n_features: int) -> Tensor:
        """(B, T, F) bool: False where a value is masked (only ever on real frames)."""
        b, t = mask.shape
        device = mask.device
        keep = torch.ones(b, t, n_features, dtype=torch.bool, device=device)
        lengths = mask.sum(1)
        steps = torch.arange(t, device=device)
        for _ in range(self.time_masks):
            width = (torch.rand(b, device=device) * self.time_width * lengths).long()
            start = (torch.rand(b, device=device) * (lengths - width + 1).clamp(min=1)).long()
            span = (steps >= start[:, None]) & (steps < (start + width)[:, None])
            keep &= ~span[:, :, None]
        bands = torch.arange(n_features, device=device)
        for _ in range(self.feature_masks):
            width = torch.randint(0, min(self.feature_width, n_features) + 1, (b,), device=device)
            start = (torch.rand(b, device=device) * (n_features - width + 1)).long()
            band = (bands >= start[:, None]) & (bands < (start + width)[:, None])
            keep &= ~band[:, None, :]
        if self.frame_dropout:
            keep &= (torch.rand(b, t, device=device) >= self.frame_dropout)[:, :, None]
        return keep | ~mask[:, :, None]  # padding is never "masked": it stays as it was

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if not self.training or not self.active:
            return x
        return x * self.keep_mask(mask, x.shape[-1]).to(x.dtype)


def drop_modality(batch: Batch, p: float, generator: torch.Generator | None = None) -> Batch:
    """With probability `p` per item, zero one of its two modalities (chosen evenly): the
    fused model must learn from each branch alone too, so neither dominates (training only)."""
    if p <= 0 or batch.acoustic is None or batch.words is None:
        return batch
    n = len(batch)
    device = batch.acoustic.device
    drop = torch.rand(n, device=device) < p
    which = torch.rand(n, device=device) < 0.5  # True: drop acoustic, False: drop words
    acoustic_off = (drop & which)[:, None, None].to(batch.acoustic.dtype)
    words_off = (drop & ~which)[:, None, None].to(batch.words.dtype)
    changes: dict[str, Any] = {
        "acoustic": batch.acoustic * (1 - acoustic_off),
        "words": batch.words * (1 - words_off),
    }
    if batch.cls is not None:
        changes["cls"] = batch.cls * (1 - words_off[:, 0])
    return replace(batch, **changes)


@dataclass(frozen=True)
class Mix:
    """Mixup of a batch (Zhang et al. 2018, here on the pooled vectors the classifier reads, as
    in manifold mixup): item i becomes `lam` · item i + (1 − lam) · item `partner[i]`, and so
    does its target."""

    partner: Tensor  # (B,) long: a permutation of the batch
    lam: float  # in [0.5, 1]: each item keeps the larger share of its own mix

    def vectors(self, x: Tensor) -> Tensor:
        return self.lam * x + (1 - self.lam) * x[self.partner]

    def loss(self, logits: Tensor, labels: Tensor, **kwargs: Any) -> Tensor:
        """The mixed targets' cross-entropy: lam · CE(own label) + (1 − lam) · CE(partner's)."""
        own = F.cross_entropy(logits, labels, **kwargs)
        other = F.cross_entropy(logits, labels[self.partner], **kwargs)
        return self.lam * own + (1 - self.lam) * other


def draw_mix(n: int, alpha: float, device: torch.device | str = "cpu") -> Mix:
    """A random partner for each of `n` items and lam ~ Beta(alpha, alpha), folded into
    [0.5, 1] (so that the item's own label stays the dominant one)."""
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be > 0, got {alpha}")
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    return Mix(torch.randperm(n, device=device), max(lam, 1.0 - lam))


class WeightAverage:
    """Exponential moving average of a module's floating-point state (`decay` per step).

    `swap()` exchanges the averaged and the live weights in place (call it twice to undo);
    validation, testing and the saved checkpoint use the average.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.module, self.decay = module, decay
        self.shadow = {
            k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()
        }
        self.steps = 0

    @torch.no_grad()
    def update(self) -> None:
        self.steps += 1
        # warm-up as in timm/TF: early averages do not drag the random initialisation along
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for k, v in self.module.state_dict().items():
            if k in self.shadow:
                self.shadow[k].mul_(decay).add_(v.detach(), alpha=1 - decay)

    @torch.no_grad()
    def swap(self) -> None:
        state = self.module.state_dict()
        for k, avg in self.shadow.items():
            live = state[k].detach().clone()
            state[k].copy_(avg)
            self.shadow[k] = live
