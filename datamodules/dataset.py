"""One utterance's model input (`Item`), the dataset over a split part, and collation.

Batch conventions the models rely on:
- acoustic (B, T, F) zero-padded, `acoustic_mask` True on real frames; T >= 1.
- words (B, W, D), `word_mask`; W >= 1: when no item of a batch has words (empty
  transcripts) W is 1 and that column is masked out. A row may have an all-False word mask, so
  attention pooling over words must guard against a softmax over nothing.
- word_spans (B, W, 2) long, [first, last + 1) frames with 0 <= first < last <= length of that
  item's real frames (zeros on padded words, and when the item has no frames).
- `max_frames` crops longer utterances (random window in training, centre in evaluation);
  the spans move with the window and words that fall wholly outside it are dropped (their [CLS]
  vector, from the whole transcript, is kept).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.batch import Batch
from datamodules.normalization import Normalizer
from datamodules.utterance_stats import clip_stats, standardised


@dataclass
class Item:
    """One utterance's model input; arrays are None for modalities not loaded."""

    utterance_id: str
    label: int
    acoustic: np.ndarray | None = None  # (T, F) normalised
    words: np.ndarray | None = None  # (W, D)
    cls: np.ndarray | None = None  # (D,)
    spans: np.ndarray | None = None  # (W, 2) int64
    stats: np.ndarray | None = None  # (S,) standardised utterance statistics (`utterance_stats`)


class UtteranceDataset(Dataset):
    """Items of a list of utterances; accepts an index or a (index, crop seed) key."""

    def __init__(
        self,
        ids: Sequence[str],
        labels: Sequence[int],
        speakers: Sequence[str],
        features: Any,
        modalities: Sequence[str],
        normalizer: Normalizer | None,
        max_frames: int | None = None,
        random_crop: bool = False,
    ) -> None:
        self.ids = list(ids)
        self.labels = list(labels)
        self.speakers = list(speakers)
        self.features = features
        self.acoustic = "acoustic" in modalities
        self.lexical = "lexical" in modalities
        self.normalizer = normalizer
        self.max_frames = max_frames
        self.random_crop = random_crop
        # utterance id -> (S,) standardised statistics of the whole clip (set by the datamodule)
        self.stats: Mapping[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def length(self, i: int) -> int:
        """Frames (or words, without acoustic) of item i, for bucketing."""
        uid = self.ids[i]
        if self.acoustic:
            n = len(self.features.acoustic[uid])
            return min(n, self.max_frames) if self.max_frames else n
        return len(self.features.words[uid])

    def __getitem__(self, key: int | tuple[int, int]) -> Item:
        i, crop_seed = key if isinstance(key, tuple) else (key, None)
        uid = self.ids[i]
        item = Item(uid, self.labels[i])
        f = self.features
        if self.lexical:
            item.words = np.asarray(f.words[uid], dtype=np.float32)
            item.cls = np.asarray(f.cls[uid], dtype=np.float32)
            item.spans = np.asarray(f.spans[uid], dtype=np.int64).reshape(-1, 2)
        if self.acoustic:
            x = f.acoustic[uid]
            offset = 0
            if self.max_frames and len(x) > self.max_frames:
                room = len(x) - self.max_frames
                if self.random_crop and crop_seed is not None:
                    offset = int(np.random.default_rng(crop_seed).integers(room + 1))
                else:
                    offset = room // 2
                x = x[offset : offset + self.max_frames]
                if item.spans is not None:
                    assert item.words is not None  # loaded together with the spans
                    keep = (item.spans[:, 1] > offset) & (item.spans[:, 0] < offset + len(x))
                    item.words, item.spans = item.words[keep], item.spans[keep] - offset
            speaker = self.speakers[i]
            item.acoustic = (
                self.normalizer.normalize(x, speaker)
                if self.normalizer
                else np.asarray(x, np.float32)
            )
            if self.stats is not None:
                item.stats = self.stats[uid]
        return item


def collate(items: Sequence[Item]) -> Batch:
    """Pad a list of items into a `Batch` (see the module docstring for the conventions)."""
    b = len(items)
    batch = Batch(
        labels=torch.tensor([it.label for it in items], dtype=torch.long),
        utterance_ids=[it.utterance_id for it in items],
    )
    # Padding is done in numpy: cached arrays are read-only memory maps, which torch
    # cannot wrap without a copy (and a warning); this way each array is copied once.
    # every item of a batch carries the same modalities, so items[0] tells which are present
    frame_lengths: list[int] | None = None
    if items[0].acoustic is not None:
        frames = [cast(np.ndarray, it.acoustic) for it in items]
        frame_lengths = [len(x) for x in frames]
        t, f = max(max(frame_lengths), 1), frames[0].shape[1]
        acoustic = np.zeros((b, t, f), dtype=np.float32)  # (B, T, F)
        for k, x in enumerate(frames):
            acoustic[k, : len(x)] = x
        batch.acoustic = torch.from_numpy(acoustic)
        batch.acoustic_mask = torch.arange(t)[None, :] < torch.tensor(frame_lengths)[:, None]
    if items[0].stats is not None:
        stats = np.stack([cast(np.ndarray, it.stats) for it in items]).astype(np.float32)
        batch.utterance_stats = torch.from_numpy(stats)  # (B, S)
    if items[0].words is not None:
        item_words = [cast(np.ndarray, it.words) for it in items]
        item_spans = [cast(np.ndarray, it.spans) for it in items]
        item_cls = [cast(np.ndarray, it.cls) for it in items]
        word_lengths = [len(x) for x in item_words]
        w, d = max(max(word_lengths), 1), item_cls[0].shape[-1]
        words = np.zeros((b, w, d), dtype=np.float32)  # (B, W, D)
        spans = np.zeros((b, w, 2), dtype=np.int64)  # (B, W, 2)
        for k in range(b):
            n = word_lengths[k]
            if n:
                words[k, :n] = item_words[k]
                spans[k, :n] = (
                    item_spans[k][:n]
                    if frame_lengths is None
                    else _clip_spans(item_spans[k][:n], frame_lengths[k])
                )
        batch.words = torch.from_numpy(words)
        batch.word_mask = torch.arange(w)[None, :] < torch.tensor(word_lengths)[:, None]
        batch.word_spans = torch.from_numpy(spans)
        batch.cls = torch.from_numpy(np.stack(item_cls).astype(np.float32))
    return batch


def _clip_spans(spans: np.ndarray, n_frames: int) -> np.ndarray:
    """(W, 2) spans forced into [0, n_frames) with at least one frame each (zeros if no frames)."""
    if n_frames <= 0:
        return np.zeros((len(spans), 2), dtype=np.int64)
    first = np.clip(spans[:, 0], 0, n_frames - 1)
    last = np.clip(np.maximum(spans[:, 1], first + 1), 1, n_frames)
    return np.stack([first, last], axis=1)


def inference_batch(
    features: Mapping[str, np.ndarray],
    modalities: Sequence[str],
    normalizer: Normalizer | None,
    utterance_id: str = "input",
    speaker: str | None = None,
    stats_normalizer: Normalizer | None = None,
    stats_which: str = "frames",
    functionals: np.ndarray | None = None,
) -> Batch:
    """A one-item `Batch` from raw features (acoustic (T, F), words, cls, spans), as in training;
    with `stats_normalizer` (a model trained with `utterance_stats`) the clip's statistics too,
    of the set `stats_which` ("frames" or "speech"), followed by its `functionals` (6373,)
    where the model was trained with `utterance_functionals`."""
    item = Item(utterance_id, -1)
    if "lexical" in modalities and features.get("words") is not None:
        item.words = np.asarray(features["words"], dtype=np.float32)
        item.cls = np.asarray(features["cls"], dtype=np.float32)
        item.spans = np.asarray(features["spans"], dtype=np.int64).reshape(-1, 2)
    if "acoustic" in modalities and features.get("acoustic") is not None:
        x = np.asarray(features["acoustic"], dtype=np.float32)
        item.acoustic = normalizer.normalize(x, speaker) if normalizer else x
        if stats_normalizer is not None:
            stats = clip_stats(x, item.acoustic, stats_which)
            if functionals is not None:
                stats = np.concatenate([stats, np.asarray(functionals, np.float32)])
            item.stats = standardised(stats, stats_normalizer, speaker)
    return collate([item])
