"""A tiny synthetic stand-in for EmotionDataModule (same constructor and attributes) for model tests."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from datamodules.batch import Batch


def synthetic_items(n: int, num_classes: int, acoustic_dim: int, lexical_dim: int, seed: int):
    """n utterances whose frames and words carry a class-dependent offset; some have no words."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        label = i % num_classes
        t = int(torch.randint(5, 15, (1,), generator=g))
        w = 0 if i % 7 == 3 else int(torch.randint(1, 5, (1,), generator=g))
        shift = torch.zeros(acoustic_dim)
        shift[label] = 2.0
        frames = torch.randn(t, acoustic_dim, generator=g) + shift
        wshift = torch.zeros(lexical_dim)
        wshift[label] = 2.0
        words = torch.randn(w, lexical_dim, generator=g) + wshift
        edges = torch.linspace(0, t, w + 1).long()
        spans = (
            torch.stack([edges[:-1], edges[1:]], 1) if w else torch.zeros(0, 2, dtype=torch.long)
        )
        cls = torch.randn(lexical_dim, generator=g) + wshift
        items.append((f"u{i}", label, frames, words, cls, spans))
    return items


def collate(items: list) -> Batch:
    b = len(items)
    t = max(x[2].shape[0] for x in items)
    w = max(max(x[3].shape[0] for x in items), 1)
    fa, fl = items[0][2].shape[1], items[0][3].shape[1]
    acoustic, amask = torch.zeros(b, t, fa), torch.zeros(b, t, dtype=torch.bool)
    words, wmask = torch.zeros(b, w, fl), torch.zeros(b, w, dtype=torch.bool)
    spans = torch.zeros(b, w, 2, dtype=torch.long)
    for i, (_, _, fr, wo, _, sp) in enumerate(items):
        acoustic[i, : len(fr)], amask[i, : len(fr)] = fr, True
        words[i, : len(wo)], wmask[i, : len(wo)], spans[i, : len(sp)] = wo, True, sp
    return Batch(
        labels=torch.tensor([x[1] for x in items]),
        utterance_ids=[x[0] for x in items],
        acoustic=acoustic,
        acoustic_mask=amask,
        words=words,
        word_mask=wmask,
        cls=torch.stack([x[4] for x in items]),
        word_spans=spans,
    )


class FakeDataModule(pl.LightningDataModule):
    """EmotionDataModule's constructor and after-setup attributes over synthetic utterances."""

    def __init__(
        self,
        corpus: str = "fake",
        protocol: str = "sd8020",
        fold: int = 0,
        test_speakers: list[str] | None = None,
        val_speakers: list[str] | None = None,
        modalities: list[str] | None = None,
        encoder: str = "minilm",
        layers: str = "last",
        word_pooling: str = "mean",
        normalization: str = "speaker",
        batch_size: int = 8,
        bucketing: bool = False,
        balanced_sampling: bool = False,
        num_workers: int = 0,
        seed: int = 0,
        max_frames: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.batch_size = batch_size
        self.modalities = list(modalities or ["acoustic", "lexical"])
        self.setup_calls = 0

    def setup(self, stage: str) -> None:
        self.setup_calls += 1
        if hasattr(self, "class_names"):
            return
        self.class_names = ["ang", "hap", "sad"]
        self.num_classes, self.acoustic_dim, self.lexical_dim = 3, 6, 5
        self.acoustic_layers = 1
        self.utterance_stats_dim = 0
        self.feature_key = "fake-key"
        items = synthetic_items(60, 3, self.acoustic_dim, self.lexical_dim, self.hparams.seed)
        self.parts = {"train": items[:36], "val": items[36:48], "test": items[48:]}

    def class_weights(self) -> torch.Tensor:
        return torch.tensor([1.0, 2.0, 0.5])

    def _loader(self, part: str, shuffle: bool = False) -> DataLoader:
        return DataLoader(
            self.parts[part], self.batch_size, shuffle=shuffle, collate_fn=self._collate
        )

    def _collate(self, items: list) -> Batch:
        batch = collate(items)
        if "acoustic" not in self.modalities:
            batch.acoustic = batch.acoustic_mask = batch.word_spans = None
        if "lexical" not in self.modalities:
            batch.words = batch.word_mask = batch.cls = batch.word_spans = None
        return batch

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def part_dataloader(self, part: str) -> DataLoader:
        return self._loader(part)

    def state_dict(self) -> dict[str, Any]:
        return {"class_names": self.class_names, "feature_key": self.feature_key, "mean": [0.0] * 6}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loaded_state = state
