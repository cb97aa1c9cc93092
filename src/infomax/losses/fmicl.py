"""``FMICLLoss``: the f-MICL objective of any registered f-divergence over SimCLR's anchors."""

from __future__ import annotations

from ..critics import Similarity
from ..kernels.layouts import TileSize
from .contrastive import ContrastiveLoss


class FMICLLoss(ContrastiveLoss):
    """f-MICL loss (Lu et al. 2023, SPEC §3), ``loss_fn(z0, z1)`` with two views ``[B, d]``:

        L = −mean_i [ f′(r_i⁺) − α · mean_{j ∉ {i, i±B}} f*(f′(r_ij)) ],   r = exp(S)

    over the same ``2B`` anchors as :class:`NTXentLoss` (positive = the other view, negatives
    = the other ``2B − 2`` embeddings), for every divergence of
    :data:`~infomax.registry.DIVERGENCES` (``kl, js, pearson, sqhellinger, tsallis, vlc``) and
    ``similarity`` ``cosine`` (``S = âᵀb̂/τ``) or ``gaussian`` (``S = −‖â − b̂‖²/(2τ)``, the
    f-Gaussian with ``τ = σ²``). The formula is :func:`infomax.divergences.fmicl`;
    ``anchors="pairs"`` scores ``z0_i`` against ``z1_j`` (MoCo's form) instead.

    >>> import torch
    >>> loss_fn = FMICLLoss(divergence="js", similarity="gaussian", temperature=0.5)
    >>> z0, z1 = torch.randn(8, 16), torch.randn(8, 16)
    >>> loss_fn(z0, z1).ndim
    0
    """

    def __init__(
        self,
        divergence: str = "js",
        similarity: str = "cosine",
        temperature: float = 0.5,
        alpha: float = 1.0,
        gather_distributed: bool = True,
        impl: str = "auto",
        *,
        anchors: str = "views",
        tile_size: TileSize = None,
    ) -> None:
        if divergence == "infonce":
            raise ValueError("FMICLLoss takes an f-divergence; for InfoNCE use NTXentLoss")
        sim = Similarity(similarity, temperature)
        options = {"gather_distributed": gather_distributed, "impl": impl, "tile_size": tile_size}
        super().__init__(divergence, sim, alpha, anchors=anchors, **options)  # type: ignore[arg-type]
