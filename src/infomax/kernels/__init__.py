"""Memory-efficient tiled kernels (SPEC §8): an execution strategy for the objectives of
:mod:`infomax.bounds` and :mod:`infomax.divergences`, never holding the ``[K, K]`` score matrix,
with values and gradients equal to the dense functions.

- :func:`tiled_reduce`: the three tiled reductions (``rowlse``, ``lse``, ``sum``) as one
  ``torch.autograd.Function`` that forms its gradient in the forward pass.
- :mod:`~infomax.kernels.layouts`: the reductions of :mod:`infomax.reductions` in tiles —
  :class:`TiledPairScores` (estimation, MoCo v3) and :class:`TiledSimCLRScores` (SimCLR's ``2N``
  anchors; in one process the symmetric kernel :func:`symmetric_rowlse` needs ~2 GEMM units
  instead of 3) — and :func:`pair_scores` / :func:`simclr_scores`, which pick dense or tiled.
- :func:`tiled_objective` / :func:`dense_objective` / :func:`objective_from_embeddings`: any
  bound or f-MICL divergence by name from embeddings (``impl="auto"|"dense"|"tiled"``);
  :func:`simclr_infonce` / :func:`ntxent_loss` / :func:`simclr_fmicl`: the SimCLR form.
"""

from __future__ import annotations

from .layouts import (
    AUTO_MIN_ENTRIES,
    TiledPairScores,
    TiledSimCLRScores,
    pair_scores,
    simclr_scores,
    use_tiles,
)
from .objectives import (
    OBJECTIVES,
    dense_objective,
    objective_from_embeddings,
    objective_value,
    similarity_of,
    tiled_objective,
)
from .simclr import ntxent_loss, simclr_fmicl, simclr_infonce
from .symmetric import symmetric_rowlse
from .tiled import TiledReduce, tiled_reduce

__all__ = [
    "AUTO_MIN_ENTRIES",
    "OBJECTIVES",
    "TiledPairScores",
    "TiledReduce",
    "TiledSimCLRScores",
    "dense_objective",
    "ntxent_loss",
    "objective_from_embeddings",
    "objective_value",
    "pair_scores",
    "simclr_fmicl",
    "simclr_infonce",
    "simclr_scores",
    "similarity_of",
    "symmetric_rowlse",
    "tiled_objective",
    "tiled_reduce",
    "use_tiles",
]
