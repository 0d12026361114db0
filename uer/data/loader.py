"""A resumable batch source: shuffled epochs, a position that is saved in checkpoints.

The order of epoch ``e`` depends only on ``(seed, e)``, so restoring ``(epoch, position)`` resumes
the exact stream. Under ``torch.distributed`` every rank takes its own contiguous slice of each
global batch (rank r of w gets rows ``[r*b/w, (r+1)*b/w)``), so w processes see exactly the
samples one process would see with the same global batch.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import torch


class EpochLoader:
    def __init__(
        self,
        size: int,
        batch_size: int,
        collate: Callable[[torch.Tensor, torch.Generator], dict[str, torch.Tensor]],
        shuffle: bool = True,
        seed: int = 7,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        """``collate(indices, generator)`` turns sample indices into a batch; the generator is
        seeded per batch (dynamic masking stays reproducible on resume)."""
        if size <= 0:
            raise ValueError("the dataset is empty")
        if batch_size % world_size:
            raise ValueError(f"global batch_size {batch_size} is not divisible by world size {world_size}")
        self.size, self.batch_size, self.collate = size, batch_size, collate
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch, self.position = 0, 0  # position = batches already taken in this epoch

    def batches_per_epoch(self) -> int:
        full, rest = divmod(self.size, self.batch_size)
        return full if (self.drop_last or rest == 0) else full + 1

    def _order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.size)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.size, generator=g)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "size": self.size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["size"] != self.size or state["seed"] != self.seed:
            raise ValueError(
                f"the checkpoint's data position is for {state['size']} samples with seed {state['seed']}, "
                f"but this dataset has {self.size} samples and seed {self.seed}"
            )
        self.epoch, self.position = state["epoch"], state["position"]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        """Endless: epochs follow each other; the caller decides when to stop."""
        while True:
            order = self._order(self.epoch)
            while self.position < self.batches_per_epoch():
                start = self.position * self.batch_size
                index = order[start:start + self.batch_size]
                if self.world_size > 1:
                    per = len(index) // self.world_size
                    index = index[self.rank * per:(self.rank + 1) * per] if per else index[:0]
                g = torch.Generator().manual_seed(self.seed * 7_919 + self.epoch * 1_000_003 + self.position)
                self.position += 1
                if len(index):
                    yield self.collate(index, g)
            self.epoch, self.position = self.epoch + 1, 0


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int, seq_length: int | None = None) -> torch.Tensor:
    """Right-pad id lists to the longest row (or ``seq_length``) -> (B, T) long."""
    t = seq_length or max(len(r) for r in rows)
    out = torch.full((len(rows), t), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.as_tensor(row[:t], dtype=torch.long)
    return out


def length_buckets(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Training batches of similar length (less padding, same samples): rows sorted by length with
    seeded random tie-breaks, cut into ``batch_size`` chunks. The loader then shuffles the chunks."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(len(lengths), generator=g).tolist()
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], noise[i]))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding at inference); order restored by the caller."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
