"""``NTXentLoss``: SimCLR's normalised-temperature cross-entropy over ``2B`` anchors."""

from __future__ import annotations

from ..critics import Similarity
from ..kernels.layouts import TileSize
from .contrastive import ContrastiveLoss


class NTXentLoss(ContrastiveLoss):
    """SimCLR's NT-Xent loss, ``loss_fn(z0, z1)`` with two views ``z0, z1: [B, d]``:

        L = −1/(2B) Σ_i log [ exp(s(z_i, z_{i±B})/τ) / Σ_{j≠i} exp(s(z_i, z_j)/τ) ]

    over the ``2B`` embeddings ``z = [z0; z1]``, ``s`` the cosine similarity (``log(2B − 1) −``
    the InfoNCE bound of :func:`infomax.bounds.infonce` on the SimCLR layout). Equal to lightly's
    ``NTXentLoss`` and pytorch-metric-learning's. ``impl="tiled"`` never materialises the
    ``[2B, 2B]`` scores (in one process the symmetric 2-GEMM kernel); under ``torchrun`` the other
    ranks' embeddings are gathered with gradient (``gather_distributed``).

    >>> import torch
    >>> loss_fn = NTXentLoss(temperature=0.5)
    >>> z0 = torch.randn(8, 16, requires_grad=True)
    >>> loss = loss_fn(z0, z0.detach() + 0.1 * torch.randn(8, 16))
    >>> loss.backward(); loss.ndim, z0.grad.shape
    (0, torch.Size([8, 16]))
    """

    def __init__(
        self,
        temperature: float = 0.5,
        gather_distributed: bool = True,
        impl: str = "auto",
        *,
        similarity: str = "cosine",
        tile_size: TileSize = None,
    ) -> None:
        super().__init__(
            "infonce",
            Similarity(similarity, temperature),
            gather_distributed=gather_distributed,
            impl=impl,
            tile_size=tile_size,
        )
