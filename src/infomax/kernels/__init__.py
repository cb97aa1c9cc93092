"""Memory-efficient tiled kernels (SPEC §8): objectives of a separable critic's score matrix
computed in tiles, never holding the ``[K, K]`` matrix, with values and gradients equal to the
dense functions of :mod:`infomax.bounds` and :mod:`infomax.divergences`.

- :func:`tiled_reduce`: the three tiled reductions (``rowlse``, ``lse``, ``sum``) as one
  ``torch.autograd.Function`` that forms its gradient in the forward pass.
- :func:`tiled_objective` / :func:`dense_objective` / :func:`objective_from_embeddings`: every
  bound and f-MICL divergence from embeddings ``a, b: [K, d]`` (``impl="auto"|"dense"|"tiled"``).
- :func:`simclr_infonce` / :func:`ntxent_loss` / :func:`simclr_fmicl`: the SimCLR ``2N`` form;
  InfoNCE in one process uses :func:`symmetric_rowlse`, which exploits ``S = s·Z Zᵀ`` to need
  ~2 GEMM units instead of 3.
"""

from __future__ import annotations

from .objectives import (
    AUTO_MIN_ENTRIES,
    OBJECTIVES,
    dense_objective,
    objective_from_embeddings,
    tiled_objective,
)
from .simclr import ntxent_loss, simclr_fmicl, simclr_infonce
from .symmetric import symmetric_rowlse
from .tiled import TiledReduce, tiled_reduce

__all__ = [
    "AUTO_MIN_ENTRIES",
    "OBJECTIVES",
    "TiledReduce",
    "dense_objective",
    "ntxent_loss",
    "objective_from_embeddings",
    "simclr_fmicl",
    "simclr_infonce",
    "symmetric_rowlse",
    "tiled_objective",
    "tiled_reduce",
]
