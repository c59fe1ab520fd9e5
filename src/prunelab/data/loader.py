"""In-memory batching by index: no per-sample Python work in the training hot path.

A :class:`IndexBatchSampler` yields one index tensor per batch (a fresh permutation each epoch, seeded by
``seed`` and the epoch Lightning sets through ``set_epoch``), and :class:`TensorBatches` gathers the whole batch
with one indexing operation. They plug into a plain ``DataLoader(batch_size=None)``, so Lightning treats them as
any other loader. The permutation depends only on (seed, epoch): a run resumed at an epoch boundary sees exactly
the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler


class IndexBatchSampler(Sampler[Tensor]):
    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False):
        self.n, self.batch_size, self.shuffle, self.seed, self.drop_last = (
            n,
            batch_size,
            shuffle,
            seed,
            drop_last,
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _shard(self) -> tuple[int, int]:
        """(rank, world size) for training batches under DDP: each rank takes every world-th example of the
        epoch's permutation (the same permutation on every rank), cut to equal length; evaluation is not sharded."""
        import torch.distributed as dist

        if self.shuffle and dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def __iter__(self) -> Iterator[Tensor]:
        if self.shuffle:
            gen = torch.Generator().manual_seed((1_000_003 * self.seed + self.epoch) % 2**64)
            order = torch.randperm(self.n, generator=gen)
        else:
            order = torch.arange(self.n)
        rank, world = self._shard()
        if world > 1:
            order = order[: self.n - self.n % world][rank::world]
        n = len(order)
        stop = n - (n % self.batch_size if self.drop_last else 0)
        for start in range(0, stop, self.batch_size):
            yield order[start : start + self.batch_size]

    def __len__(self) -> int:
        world = self._shard()[1]
        full, rest = divmod(self.n // world, self.batch_size)
        return full if (self.drop_last or rest == 0) else full + 1


class TensorBatches(Dataset):
    """``dataset[index_tensor] -> (x[index], y[index])``, with an optional batched transform."""

    def __init__(self, x: Tensor, y: Tensor, transform: Callable[[Tensor, Tensor], Tensor] | None = None):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: Tensor) -> tuple[Tensor, Tensor]:
        x = self.x[index]
        if self.transform is not None:
            x = self.transform(x, index)
        return x, self.y[index]


def make_loader(
    x: Tensor,
    y: Tensor,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    transform=None,
    drop_last: bool = False,
) -> DataLoader:
    sampler = IndexBatchSampler(len(y), batch_size, shuffle, seed, drop_last)
    return DataLoader(TensorBatches(x, y, transform), sampler=sampler, batch_size=None, num_workers=0)
