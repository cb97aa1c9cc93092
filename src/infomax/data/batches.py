"""The one mini-batch generator of the library: :class:`Batches`.

``Batches(data, batch_size, seed, epoch)`` yields ``data[idx]`` for the index batches of one
epoch; ``data`` is a tensor or a tuple of tensors indexed together (``(x, y)`` pairs). Two ways
to draw the indices:

- **shuffled epoch** (default): a permutation of the ``n`` rows from a generator seeded with
  ``seed + epoch`` (the rule of ``torch.utils.data.DistributedSampler``), the tail that does not
  fill a global batch dropped. ``batch_size`` is the **global** batch; with ``world`` ranks rank
  ``r`` takes the rows ``r, r + world, ...`` of the permutation and yields its
  ``batch_size / world`` of them per step, so the images of global step ``i`` are the same set
  for any number of ranks (one process sees them as one batch, ``world`` processes as slices);
- **with replacement** (``replacement=True``): ``steps`` batches of ``batch_size`` indices drawn
  uniformly from ``generator`` (or one seeded with ``seed + epoch``); a generator handed in keeps
  its stream across epochs.

Every epoch is a deterministic function of ``(seed, epoch)`` (or of the generator's state), which
is what exact resume of :func:`infomax.train.fit` needs.

>>> x = torch.arange(10)
>>> [b.tolist() for b in Batches(x, 4, seed=0, epoch=0)]
[[4, 1, 7, 5], [3, 9, 0, 8]]
>>> len(Batches((x, x), 3, replacement=True, steps=5))
5
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor


class Batches:
    """This rank's mini-batches of one epoch of ``data`` (see the module docstring).

    ``ValueError`` when ``batch_size`` exceeds the rows (a run's records would otherwise claim a
    batch size it never used), or when it does not split into ``>= 2`` rows per rank.
    ``noun`` names the rows in those messages.
    """

    noun = "samples"

    def __init__(
        self,
        data: Tensor | tuple[Tensor, ...],
        batch_size: int,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world: int = 1,
        *,
        replacement: bool = False,
        steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.data = data
        first = data[0] if isinstance(data, tuple) else data
        n = int(first.shape[0])
        if batch_size > n:  # never clamp silently: the run's records would claim batch_size
            raise ValueError(
                f"batch_size {batch_size} is larger than the {n} training {self.noun}; "
                f"use at most {n} (or more {self.noun})"
            )
        if batch_size % world or batch_size < 2 * world:
            raise ValueError(
                f"batch_size {batch_size} must be divisible by the {world} ranks and give "
                f">= 2 {self.noun} per rank (data set: {n} {self.noun})"
            )
        if replacement and (steps is None or world != 1):
            raise ValueError("replacement=True needs steps and one rank (every rank draws alike)")
        self.n, self.device = n, first.device
        self.local, self.rank, self.world = batch_size // world, rank, world
        self.replacement, self.steps = replacement, steps
        self.generator = generator
        self.seed, self.epoch = seed, epoch

    def __len__(self) -> int:
        if self.replacement:
            assert self.steps is not None
            return self.steps
        return (self.n // self.world) // self.local

    def _generator(self) -> torch.Generator:
        if self.generator is not None:
            return self.generator
        return torch.Generator().manual_seed(self.seed + self.epoch)

    def _take(self, idx: Tensor) -> Any:
        idx = idx.to(self.device)
        if isinstance(self.data, tuple):
            return tuple(t[idx] for t in self.data)
        return self.data[idx]

    def __iter__(self) -> Iterator[Any]:
        gen = self._generator()
        if self.replacement:
            for _ in range(len(self)):
                yield self._take(torch.randint(0, self.n, (self.local,), generator=gen))
            return
        total = (self.n // self.world) * self.world
        mine = torch.randperm(self.n, generator=gen)[:total][self.rank :: self.world]
        for i in range(len(self)):
            yield self._take(mine[i * self.local : (i + 1) * self.local])
