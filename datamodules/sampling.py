"""Length-aware batching: the epoch's index order, then batches of similar length.

`EpochSampler` gives the order of one epoch (as is, a seeded permutation, or a seeded
class-balanced draw with replacement); `BucketBatchSampler` cuts it into chunks of
`batch_size * chunk_batches` indices, sorts each chunk by length, cuts batches and shuffles the
batches. Both depend only on (seed, epoch), so a run is reproducible whatever `num_workers` is;
the seed may be several numbers (the datamodule passes the split's seed and the run's).

Balanced sampling and bucketing combine: the balanced draw decides *which* utterances an epoch
sees, bucketing only decides how they are grouped into batches.

Lightning calls `set_epoch` on `dataloader.batch_sampler.sampler` before every epoch, which is why
the epoch lives on the inner `EpochSampler`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

CropKey = tuple[int, int]  # (dataset index, seed of this item's random crop in this epoch)


class EpochSampler(Sampler[int]):
    """Indices of one epoch: 0..n-1, a seeded permutation, or a weighted draw of n indices."""

    def __init__(
        self,
        n: int,
        shuffle: bool,
        seed: int | Sequence[int] = 0,
        weights: Sequence[float] | None = None,
    ) -> None:
        self.n = n
        self.shuffle = shuffle
        self.seed = (int(seed),) if isinstance(seed, int | np.integer) else tuple(map(int, seed))
        self.epoch = 0
        self.weights = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            if len(w) != n or (w < 0).any() or w.sum() <= 0:
                raise ValueError("weights must be n non-negative numbers with a positive sum")
            self.weights = w / w.sum()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng(self, stream: int) -> np.random.Generator:
        return np.random.default_rng([*self.seed, self.epoch, stream])

    def __iter__(self) -> Iterator[int]:
        if self.weights is not None:
            order = self.rng(0).choice(self.n, size=self.n, replace=True, p=self.weights)
        elif self.shuffle:
            order = self.rng(0).permutation(self.n)
        else:
            order = np.arange(self.n)
        return iter(order.tolist())

    def __len__(self) -> int:
        return self.n


class BucketBatchSampler(Sampler[list]):
    """Lists of indices (or `CropKey`s with `crop_seeds`) whose lengths are close."""

    def __init__(
        self,
        sampler: EpochSampler,
        lengths: Sequence[int],
        batch_size: int,
        bucketing: bool = True,
        drop_last: bool = False,
        chunk_batches: int = 50,
        crop_seeds: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sampler = sampler
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.bucketing = bucketing
        self.drop_last = drop_last
        # a multiple of batch_size, so only the epoch's last batch can be short
        self.chunk = batch_size * max(1, chunk_batches)
        self.crop_seeds = crop_seeds
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        # DDP: every rank draws the same seeded batches and keeps every num_replicas-th one,
        # so batches stay length-bucketed (a DistributedSampler would undo the bucketing).
        self.num_replicas = num_replicas
        self.rank = rank

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def batches(self) -> list[list[int]]:
        """This epoch's batches of dataset indices."""
        order = np.fromiter(iter(self.sampler), dtype=np.int64, count=len(self.sampler))
        if self.bucketing:
            chunks = [order[i : i + self.chunk] for i in range(0, len(order), self.chunk)]
            # stable sort keeps the sampler's random order among equal lengths
            order = np.concatenate(
                [c[np.argsort(self.lengths[c], kind="stable")] for c in chunks] or [order]
            )
        batches = [
            order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)
        ]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.sampler.shuffle or self.sampler.weights is not None:
            perm = self.sampler.rng(1).permutation(len(batches))
            batches = [batches[i] for i in perm]
        return batches

    def __iter__(self) -> Iterator[list]:
        batches: list[list] = self.batches()
        if self.crop_seeds:
            seeds = self.sampler.rng(2).integers(0, 2**31 - 1, size=len(self.sampler)).tolist()
            keyed, k = [], 0
            for batch in batches:
                keyed.append([(i, seeds[k + j]) for j, i in enumerate(batch)])
                k += len(batch)
            batches = keyed
        return iter(self._shard(batches))

    def _shard(self, batches: list[list]) -> list[list]:
        """This rank's batches; the list is padded by repeating batches so all ranks step alike."""
        if self.num_replicas == 1 or not batches:
            return batches
        total = -(-len(batches) // self.num_replicas) * self.num_replicas
        padded = batches + [batches[i % len(batches)] for i in range(total - len(batches))]
        return padded[self.rank :: self.num_replicas]

    def _n_batches(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __len__(self) -> int:
        return -(-self._n_batches() // self.num_replicas)


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of padded positions when each batch is padded to its longest item."""
    arr = np.asarray(lengths)
    real = sum(int(arr[b].sum()) for b in batches)
    padded = sum(int(arr[b].max()) * len(b) for b in batches if len(b))
    return 1.0 - real / padded if padded else 0.0


def inverse_frequency(labels: Sequence[int] | np.ndarray, num_classes: int) -> np.ndarray:
    """(C,) inverse class frequency of `labels`, mean 1 over the classes present, 0 for absent."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    present = counts > 0
    w = np.zeros(num_classes)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w
