"""The contrastive loss behind the drop-in modules: InfoNCE or an f-MICL divergence (SPEC §3, §4).

``ContrastiveLoss(objective, similarity, temperature, alpha, anchors, ...)`` is called as
``loss_fn(z0, z1)`` with ``z0, z1: [B, d]`` and returns a scalar loss. The objective is the one
definition of :func:`infomax.bounds.infonce` or :func:`infomax.divergences.fmicl`, evaluated on
the batch's layout (:mod:`infomax.reductions`, dense or tiled by ``impl``):

- ``anchors="views"`` (SimCLR): the ``2B`` anchors ``[z0; z1]``, positive = the other view,
  negatives = the other ``2B − 2`` embeddings (``C = 2B − 1`` candidates);
- ``anchors="pairs"``: ``B`` anchors ``z0_i`` with positive ``z1_i`` and negatives the other
  ``z1_j`` (``C = B``), or the rows of ``negatives: [Q, d]`` (a MoCo queue) instead;
  ``symmetric`` averages the loss of ``(z0, z1)`` and ``(z1, z0)``.

The loss is ``log C − InfoNCE`` (the cross-entropy that SimCLR / MoCo minimise) or ``−L_f``.
Under ``torchrun`` (``gather_distributed=True``) the columns come from every rank with gradient
and each rank returns the mean over its own anchors: DDP's gradient averaging then gives exactly
the gradient of one process on the global batch, and the ranks' mean loss equals its loss.
Without an initialised process group the loss runs as one process.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .. import dist
from .._checks import check_positive
from ..bounds import infonce
from ..critics import Similarity
from ..divergences import fmicl
from ..kernels.layouts import TileSize, check_impl, pair_scores, simclr_scores
from ..reductions import Reductions, SplitScores
from ..registry import DIVERGENCES

ANCHORS = ("views", "pairs")


def contrastive_objectives() -> list[str]:
    """``infonce`` plus every registered f-MICL divergence."""
    return ["infonce", *DIVERGENCES.names()]


def check_embeddings(z0: Tensor, z1: Tensor, negatives: Tensor | None = None) -> None:
    """``ValueError`` unless ``z0, z1`` are finite floating ``[B >= 2, d]`` of one shape (and
    ``negatives`` a finite ``[Q >= 1, d]``)."""
    for name, z in (("z0", z0), ("z1", z1)):
        if not isinstance(z, Tensor):
            raise ValueError(f"{name} must be a tensor [B, d], got {type(z).__name__}")
    if z0.ndim != 2 or z0.shape != z1.shape:
        raise ValueError(
            f"z0 and z1 must both be [B, d] of one shape, got {tuple(z0.shape)} and "
            f"{tuple(z1.shape)}"
        )
    if z0.shape[0] < 2:
        raise ValueError(
            f"a contrastive loss needs B >= 2 pairs (negatives), got B = {z0.shape[0]}"
        )
    if negatives is not None and (
        negatives.ndim != 2 or negatives.shape[1] != z0.shape[1] or negatives.shape[0] < 1
    ):
        raise ValueError(f"negatives must be [Q >= 1, {z0.shape[1]}], got {tuple(negatives.shape)}")
    given = {"z0": z0, "z1": z1, "negatives": negatives}
    for name, t in given.items():
        if t is None:
            continue
        if not t.is_floating_point():
            raise ValueError(f"{name} must be floating point, got {t.dtype}")
        if not bool(torch.isfinite(t.detach()).all()):
            raise ValueError(f"{name} holds NaN or Inf (the encoder diverged, or the input did)")


class ContrastiveLoss(nn.Module):
    """``loss_fn(z0, z1, negatives=None) -> scalar`` (module doc).

    Args:
        objective: ``infonce`` or a divergence of :data:`~infomax.registry.DIVERGENCES`.
        similarity: the score, a :class:`~infomax.critics.Similarity` value (``cosine``,
            ``gaussian`` with ``τ = σ²``, ``dot``; ``lp`` with ``impl="dense"`` only).
        alpha: f-MICL's weight of the negative term (``> 0``).
        anchors: ``views`` or ``pairs``; symmetric: ``pairs`` only.
        gather_distributed: under ``torchrun``, negatives from every rank (with gradient).
        impl: ``dense`` (materialise the scores), ``tiled`` (never), ``auto`` (tiled from
            ``1024²`` entries on); tile_size: the tiled kernels' tile.
    """

    def __init__(
        self,
        objective: str,
        similarity: Similarity,
        alpha: float = 1.0,
        *,
        anchors: str = "views",
        symmetric: bool = False,
        gather_distributed: bool = True,
        impl: str = "auto",
        tile_size: TileSize = None,
    ) -> None:
        super().__init__()
        if objective not in contrastive_objectives():
            raise ValueError(
                f"unknown objective {objective!r}; valid: {', '.join(contrastive_objectives())}"
            )
        check_positive("alpha", alpha)
        if anchors not in ANCHORS:
            raise ValueError(f"anchors must be one of {ANCHORS}, got {anchors!r}")
        if symmetric and anchors != "pairs":
            raise ValueError("symmetric applies to anchors='pairs' (the views form already is)")
        check_impl(impl)
        self.objective, self.similarity, self.alpha = objective, similarity, alpha
        self.anchors, self.symmetric = anchors, symmetric
        self.gather_distributed, self.impl, self.tile_size = gather_distributed, impl, tile_size

    def extra_repr(self) -> str:
        sim = self.similarity
        return (
            f"objective={self.objective!r}, similarity={sim.kind!r}, "
            f"temperature={sim.temperature}, alpha={self.alpha}, anchors={self.anchors!r}, "
            f"impl={self.impl!r}"
        )

    def value(self, layout: Reductions) -> Tensor:
        """The objective (maximised, nats): this rank's share of the global value."""
        if self.objective == "infonce":
            return infonce(layout)
        return fmicl(layout, self.objective, self.alpha)

    def loss_of(self, layout: Reductions) -> Tensor:
        """This rank's mean loss over its anchors: ``log C − InfoNCE`` or ``−L_f``."""
        world = layout.world
        if self.objective == "infonce":
            return math.log(layout.candidates) - world * self.value(layout)
        return -world * self.value(layout)

    def _pairs(self, z0: Tensor, z1: Tensor, negatives: Tensor | None) -> Tensor:
        if negatives is not None:  # MoCo v2: the queue holds every rank's keys already
            pos = self.similarity(z0.unsqueeze(1), z1.unsqueeze(1)).reshape(-1)
            return self.loss_of(SplitScores(pos, self.similarity(z0, negatives)))
        kw = {"impl": self.impl, "tile_size": self.tile_size}
        return self.loss_of(pair_scores(z0, z1, self.similarity, **kw))  # type: ignore[arg-type]

    def forward(self, z0: Tensor, z1: Tensor, negatives: Tensor | None = None) -> Tensor:
        check_embeddings(z0, z1, negatives)
        if negatives is not None and self.anchors != "pairs":
            raise ValueError("negatives (a queue) need anchors='pairs'")
        with dist.local_only(not self.gather_distributed):
            if self.anchors == "views":
                layout = simclr_scores(
                    z0, z1, self.similarity, impl=self.impl, tile_size=self.tile_size
                )
                return self.loss_of(layout)
            loss = self._pairs(z0, z1, negatives)
            if self.symmetric:
                loss = 0.5 * (loss + self._pairs(z1, z0, negatives))
            return loss
