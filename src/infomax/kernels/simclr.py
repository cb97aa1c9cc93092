"""The SimCLR ``2N`` form of InfoNCE (NT-Xent) and f-MICL, tiled or dense (SPEC §4, §8).

Two views ``z1, z2: [N, d]`` give ``2N`` embeddings ``z = [z1; z2]`` and ``S = critic(z, z)``
(``[2N, 2N]``). Anchor ``i`` has its positive at ``i ± N`` and the ``2N − 2`` other embeddings as
negatives; its own self-similarity is masked:

    I_SimCLR = mean_i [S_{i, i±N} − logsumexp_{j≠i} S_ij] + log(2N − 1)   (nats)

— :func:`infomax.bounds.infonce` of the SimCLR layout
(:func:`~infomax.kernels.layouts.simclr_scores`) — and the NT-Xent loss that SimCLR minimises
(lightly's and pytorch-metric-learning's ``NTXentLoss``) is ``log(2N − 1) − I_SimCLR``. Across ranks
each rank returns its share (the shares sum to the single-process value on the concatenated batch).

>>> import torch
>>> z1, z2 = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
>>> t = ntxent_loss(z1, z2, temperature=0.5, tile_size=3)
>>> bool(torch.allclose(t, ntxent_loss(z1, z2, temperature=0.5, impl="dense")))
True
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from .. import bounds, dist
from ..divergences import Divergence, fmicl
from .layouts import simclr_scores
from .objectives import similarity_of


def simclr_infonce(
    z1: Tensor,
    z2: Tensor,
    *,
    temperature: float | Tensor = 0.5,
    critic: str = "cosine",
    sigma: float = 1.0,
    impl: str = "tiled",
    tile_size: int | tuple[int, int] | None = None,
    symmetric: bool | None = None,
) -> Tensor:
    """InfoNCE bound of the ``2N`` SimCLR batch (module formula), in nats.

    Args:
        z1, z2: ``[N, d]`` embeddings of the two views; ``z1[i]`` and ``z2[i]`` are positives.
        temperature / sigma: of the ``cosine`` / ``gaussian`` critic (``dot`` uses neither).
        impl: ``"tiled"`` (never holds ``[2N, 2N]``), ``"dense"`` (materialised) or ``"auto"``.
        tile_size: see :func:`~infomax.kernels.tiled.tiled_reduce` (an ``int`` for the symmetric
            kernel's square tile).
        symmetric: use :func:`~infomax.kernels.symmetric.symmetric_rowlse` (2 GEMM units instead
            of 3; single process, fixed temperature). ``None``: whenever it applies.
    """
    sim = similarity_of(critic, temperature, sigma)
    layout = simclr_scores(z1, z2, sim, impl=impl, tile_size=tile_size, symmetric=symmetric)
    return bounds.infonce(layout)


def ntxent_loss(z1: Tensor, z2: Tensor, **kwargs: Any) -> Tensor:
    """NT-Xent loss ``log(2N − 1) − I_SimCLR`` (minimised; this rank's share): mean
    cross-entropy of each anchor's positive against its ``2N − 1`` non-self columns. Keyword
    arguments as :func:`simclr_infonce`; :class:`infomax.losses.NTXentLoss` is the module form."""
    bound = simclr_infonce(z1, z2, **kwargs)
    return math.log(2 * z1.shape[0] * dist.world_size() - 1) / dist.world_size() - bound


def simclr_fmicl(
    z1: Tensor,
    z2: Tensor,
    *,
    divergence: str | Divergence = "kl",
    alpha: float = 1.0,
    temperature: float | Tensor = 0.5,
    critic: str = "cosine",
    sigma: float = 1.0,
    tile_size: int | tuple[int, int] | None = None,
    impl: str = "tiled",
) -> Tensor:
    """f-MICL objective (maximised; this rank's share) of the ``2N`` SimCLR batch:

        mean_i [ D.positive(S_{i, i±N}) − α · mean_{j ∉ {i, i±N}} D.negative(S_ij) ]

    :func:`infomax.divergences.fmicl` of the SimCLR layout; :class:`infomax.losses.FMICLLoss`
    is the module form (loss = −this).
    """
    if z1.ndim != 2 or z1.shape != z2.shape or z1.shape[0] < 2:
        raise ValueError(
            f"z1 and z2 must both be [N >= 2, d], got {tuple(z1.shape)}, {tuple(z2.shape)}"
        )
    sim = similarity_of(critic, temperature, sigma)
    return fmicl(simclr_scores(z1, z2, sim, impl=impl, tile_size=tile_size), divergence, alpha)
