"""The SSL objective setting and its loss modules (SPEC §3, §4).

:class:`Objective` names what a contrastive method minimises — ``infonce`` (NT-Xent) or any
f-MICL divergence, a similarity (``cosine`` or ``gaussian``), ``τ``, the f-MICL ``α`` and the
execution (``memory_efficient``: tiled kernels or not) — and builds the drop-in loss module of
:mod:`infomax.losses` that :class:`~infomax.ssl.methods.SimCLR` / ``MoCoV2`` / ``MoCoV3`` call.
The formulas are those of :mod:`infomax.bounds` / :mod:`infomax.divergences` (written once);
:func:`contrastive_terms` gives their per-row terms from positive / negative scores.

>>> import torch
>>> pos, neg = torch.zeros(3), torch.zeros(3, 4)
>>> round(float(contrastive_terms(pos, neg, "infonce")[0]), 4)  # log(1/5)
-1.6094
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from ..bounds import infonce
from ..critics import Similarity
from ..divergences import fmicl
from ..kernels import use_tiles
from ..losses import ContrastiveLoss, contrastive_objectives
from ..reductions import SplitScores

#: Similarities of the SSL methods (unit-norm embeddings).
SIMILARITIES = ("cosine", "gaussian")


def objective_names() -> list[str]:
    """``infonce`` plus every registered divergence name."""
    return contrastive_objectives()


def contrastive_terms(
    pos: Tensor, neg: Tensor, objective: str = "infonce", alpha: float = 1.0
) -> Tensor:
    """Per-row objective (maximised, nats) from ``pos: [R]`` and ``neg: [R, M]`` -> ``[R]``:
    ``pos_i − logsumexp(pos_i, neg_i)`` (InfoNCE minus ``log(M + 1)``) or the f-MICL terms."""
    terms = SplitScores(pos, neg, per_row=True)
    if objective == "infonce":
        return infonce(terms) - math.log(terms.candidates)
    return fmicl(terms, objective, alpha)


@dataclass(frozen=True)
class Objective:
    """An objective name (``infonce`` or a divergence), a similarity, ``τ`` (for ``gaussian``
    ``τ = σ²``: ``S = −‖â − b̂‖²/(2τ)``), the f-MICL ``α``, and whether in-batch losses use the
    tiled kernels (``memory_efficient``: ``True`` / ``False``, or ``None`` for automatic: tiled
    from ``1024²`` score entries on, and under ``torchrun``)."""

    name: str = "infonce"
    similarity: str = "cosine"
    temperature: float = 0.5
    alpha: float = 1.0
    memory_efficient: bool | None = None

    def __post_init__(self) -> None:
        if self.similarity not in SIMILARITIES:
            raise ValueError(
                f"unknown similarity {self.similarity!r}; valid: {', '.join(SIMILARITIES)}"
            )
        self.criterion()  # validates name, temperature, alpha

    def scores(self, a: Tensor, b: Tensor) -> Tensor:
        """Similarity matrix ``[K, M]`` of ``a: [K, d]`` and ``b: [M, d]``."""
        return Similarity(self.similarity, self.temperature)(a, b)

    @property
    def impl(self) -> str:
        """``memory_efficient`` as an ``impl`` of :mod:`infomax.losses`."""
        return {None: "auto", True: "tiled", False: "dense"}[self.memory_efficient]

    def tiled(self, rows: int, cols: int) -> bool:
        """Whether a ``[rows, cols]`` (global) score matrix goes through the tiled kernels."""
        return use_tiles(self.impl, rows * cols)

    def criterion(self, anchors: str = "views") -> ContrastiveLoss:
        """The loss module: ``views`` (SimCLR's ``2N`` anchors) or ``pairs`` (MoCo's queries
        against keys or a queue)."""
        sim = Similarity(self.similarity, self.temperature)
        return ContrastiveLoss(self.name, sim, self.alpha, anchors=anchors, impl=self.impl)


def ntxent_loss(z1: Tensor, z2: Tensor, objective: Objective) -> Tensor:
    """SimCLR loss of the views ``z1, z2: [N, d]`` (``objective.criterion()(z1, z2)``)."""
    return objective.criterion()(z1, z2)


def queue_loss(q: Tensor, k: Tensor, queue: Tensor, objective: Objective) -> Tensor:
    """MoCo v2 loss: positive ``s(q_i, k_i)``, negatives ``s(q_i, queue_j)``;
    ``q, k: [N, d]``, ``queue: [Q, d]`` (keys carry no gradient)."""
    return objective.criterion("pairs")(q, k, queue)
