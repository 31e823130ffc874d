"""Global batches split across ranks: what each process of a W-process run trains on.

The config's batch size B is the **global** batch. Every rank draws the same permutation of
epoch e (``epoch_generator(seed, e)``, as :class:`~noisyfit.data.loader.DeviceLoader` does),
cuts it into the same global batches as the 1-process run, and takes its contiguous share of
each: rank r gets rows ``[o_r, o_r + b_r)`` with b_r = ⌊n/W⌋ + (r < n mod W) for a global
batch of n. So concatenating the shards in rank order gives the 1-process batch in its order,
every rank runs the same number of steps (the last, partial global batch is split too — a rank
may get 0 rows when n < W), and no sample is duplicated or dropped.

Augmentation draws from the same generator for the whole global batch and each rank keeps its
rows, so augmented inputs equal the 1-process ones too (the crop/flip of the other ranks' rows
is computed and thrown away: cheap next to the forward pass).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .loader import Batch, DeviceLoader, epoch_generator


@dataclass
class ShardBatch(Batch):
    """A rank's share of a global batch (a :class:`Batch` plus where it sits in the global one).

    Attributes:
        global_size: n, samples in the global batch.
        offset: o_r, position of this share's first row in the global batch.
        sizes: (W,) every rank's share size b_r (known on every rank: no collective).
        global_index: (n,) int64 the global batch's sample indices (per-sample state is
            replicated, so a method can compute a statistic of the whole global batch).
    """

    global_size: int = 0
    offset: int = 0
    sizes: tuple[int, ...] = ()
    global_index: torch.Tensor | None = None


def shard_sizes(n: int, world: int) -> tuple[int, ...]:
    """(W,) contiguous share sizes of a global batch of ``n``: ⌊n/W⌋ + (r < n mod W)."""
    q, r = divmod(int(n), int(world))
    return tuple(q + (i < r) for i in range(world))


class ShardedLoader:
    """Rank ``rank``'s view of ``loader``: same steps, its share of every global batch.

    Every other attribute (``device``, ``labels``, ``num_samples``, ``subset`` …) is the wrapped
    loader's; ``len(self)`` is the number of global batches.
    """

    def __init__(self, loader: DeviceLoader, rank: int, world: int):
        self.loader, self.rank, self.world = loader, int(rank), int(world)

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int = 0) -> Iterator[ShardBatch]:
        ld = self.loader
        g = epoch_generator(ld.seed, epoch, ld.device)
        idx = ld.indices
        if ld.shuffle:
            idx = idx[torch.randperm(len(idx), generator=g, device=ld.device)]
        host = idx.to(ld.storage) if ld.host_gather else None
        bs = ld.batch_size
        for k in range(len(ld)):
            lo = k * bs
            gi = idx[lo : lo + bs]
            sizes = shard_sizes(len(gi), self.world)
            off = sum(sizes[: self.rank])
            part = slice(off, off + sizes[self.rank])
            if ld.augment:  # the global batch's random draws, then this rank's rows
                rows = gi if host is None else host[lo : lo + bs]
                xb = self._gather(rows, host is not None)
                x = ld.transform(xb, g)[part]
            else:
                rows = gi[part] if host is None else host[lo : lo + bs][part]
                x = ld.transform(self._gather(rows, host is not None), g)
            bi = gi[part]
            yield ShardBatch(bi, x, ld.labels[bi], len(gi), off, sizes, gi)

    def _gather(self, rows: torch.Tensor, pinned: bool) -> torch.Tensor:
        return self.loader._gather_pinned(rows) if pinned else self.loader.x[rows]

    def __iter__(self) -> Iterator[ShardBatch]:
        return self.epoch(0)


def eval_shard(loader: DeviceLoader, rank: int, world: int) -> DeviceLoader:
    """Rank ``rank``'s part of an evaluation loader: samples r, r + W, … (no padding, no
    duplicates; shard sizes may differ by one — evaluation all-reduces sums, not means)."""
    keep = torch.zeros(len(loader.x), dtype=torch.bool, device=loader.device)
    keep[loader.indices[rank::world]] = True
    return loader.subset(keep)
