"""``InfoNCELoss``: InfoNCE for paired embeddings (CPC / CLIP / MoCo form), one- or two-sided."""

from __future__ import annotations

from ..critics import Similarity
from ..kernels.layouts import TileSize
from .contrastive import ContrastiveLoss


class InfoNCELoss(ContrastiveLoss):
    """InfoNCE loss of paired embeddings, ``loss_fn(z0, z1)`` with ``z0 = g(x), z1 = h(y): [B, d]``:

        L = −1/B Σ_i log [ exp(S_ii) / Σ_j exp(S_ij) ],   S_ij = s(z0_i, z1_j)/τ

    i.e. ``log B −`` :func:`infomax.bounds.infonce` of ``S``; ``symmetric=True`` averages it with
    the loss of ``Sᵀ`` (CLIP). ``loss_fn(q, k, negatives=queue)`` takes the negatives of each
    ``q_i`` from ``queue: [Q, d]`` instead of the other ``k_j`` (MoCo v2). Under ``torchrun`` the
    columns ``z1`` of every rank are gathered with gradient.

    >>> import torch
    >>> x = torch.randn(16, 4)
    >>> float(InfoNCELoss(temperature=1.0, similarity="dot")(x, x)) < float(
    ...     InfoNCELoss(temperature=1.0, similarity="dot")(x, torch.randn(16, 4)))
    True
    """

    def __init__(
        self,
        temperature: float = 0.5,
        similarity: str = "cosine",
        symmetric: bool = False,
        gather_distributed: bool = True,
        impl: str = "auto",
        *,
        tile_size: TileSize = None,
    ) -> None:
        sim = Similarity(similarity, temperature)
        options = {"gather_distributed": gather_distributed, "impl": impl, "tile_size": tile_size}
        super().__init__("infonce", sim, anchors="pairs", symmetric=symmetric, **options)  # type: ignore[arg-type]
