"""The batch every model takes: padded acoustic frames and word vectors with masks and spans."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor


@dataclass
class Batch:
    """A padded mini-batch. Modalities a model does not use are None.

    acoustic:       (B, T, F) float, z-normalised LLD frames (F = 65 for ComParE_2016)
    acoustic_mask:  (B, T) bool, True on real frames
    words:          (B, W, D) float word vectors
    word_mask:      (B, W) bool, True on real words
    cls:            (B, D) float [CLS] vectors
    word_spans:     (B, W, 2) long, [first_frame, last_frame + 1) of each word in `acoustic`
    labels:         (B,) long class indices (-1 where unknown, e.g. at prediction)
    utterance_stats: (B, S) float, each clip's standardised frame statistics
                    (`datamodules.utterance_stats`; only with data.utterance_stats)
    """

    labels: Tensor
    utterance_ids: list[str] = field(default_factory=list)
    acoustic: Tensor | None = None
    acoustic_mask: Tensor | None = None
    words: Tensor | None = None
    word_mask: Tensor | None = None
    cls: Tensor | None = None
    word_spans: Tensor | None = None
    utterance_stats: Tensor | None = None

    @property
    def acoustic_lengths(self) -> Tensor | None:
        return None if self.acoustic_mask is None else self.acoustic_mask.sum(1)

    @property
    def word_lengths(self) -> Tensor | None:
        return None if self.word_mask is None else self.word_mask.sum(1)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        moved: dict[str, Any] = {
            k: v.to(device) if isinstance(v, Tensor) else v for k, v in self.__dict__.items()
        }
        return replace(self, **moved)
