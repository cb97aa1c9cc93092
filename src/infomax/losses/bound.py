"""``BoundLoss``: any MI bound of :mod:`infomax.bounds` as a loss of a separable critic's
embeddings, with the extra state the bound needs (FLO's u head, TUBA's baseline, MINE's EMA)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import bounds, dist
from ..critics import Similarity, mlp
from ..kernels.layouts import TileSize, check_impl, pair_scores
from ..reductions import Reductions
from ..registry import BOUNDS
from .contrastive import check_embeddings


class BoundLoss(nn.Module):
    """``loss_fn(z0, z1)``: the training loss of ``bound`` (its :class:`~infomax.bounds.BoundSpec`:
    ``−bound``; JS and SMILE train with the JS loss) on ``S = similarity(z0, z1)``, ``z0 = g(x)``,
    ``z1 = h(y): [B, d]`` (diagonal = positive pairs). ``estimate(z0, z1)`` is the reported MI
    (nats) of the same batch.

    The bound's extras live here: FLO's ``u(x, y)`` is an MLP on ``[z0_i, z1_i]`` and TUBA's
    baseline ``b(y)`` an MLP on ``z1_j`` (both need ``dim = d``), MINE's running mean is a buffer
    (:class:`~infomax.bounds.MINELoss`). Train the heads with the encoders (``loss_fn``'s
    parameters). Under ``torchrun`` each rank passes its rows; the columns are gathered with
    gradient and the loss is this rank's mean (DDP averaging gives the global gradient).

    >>> import torch
    >>> loss_fn = BoundLoss("flo", dim=8)
    >>> z0 = torch.randn(32, 8)
    >>> loss_fn(z0, z0 + 0.1 * torch.randn(32, 8)).ndim
    0
    """

    def __init__(
        self,
        bound: str = "infonce",
        similarity: str = "dot",
        temperature: float = 1.0,
        *,
        dim: int | None = None,
        hidden: int = 128,
        smile_clip: float = 5.0,
        gather_distributed: bool = True,
        impl: str = "auto",
        tile_size: TileSize = None,
    ) -> None:
        super().__init__()
        self.spec: bounds.BoundSpec = BOUNDS.get(bound)
        self.similarity = Similarity(similarity, temperature)
        if check_impl(impl) == "tiled" and not self.spec.tiles:
            raise ValueError(f"bound {bound!r} has no tiled form (its running mean); use 'dv'")
        if smile_clip <= 0:
            raise ValueError(f"smile_clip must be > 0, got {smile_clip}")
        self.impl = impl if self.spec.tiles else "dense"
        self.tile_size, self.smile_clip, self.gather_distributed = (
            tile_size,
            smile_clip,
            gather_distributed,
        )
        self.head: nn.Module | None = None
        self.mine: bounds.MINELoss | None = None
        if self.spec.extra in ("u", "baseline"):
            if not (isinstance(dim, int) and dim >= 1):
                raise ValueError(f"bound {bound!r} needs dim (the embedding size) for its head")
            d_in = 2 * dim if self.spec.extra == "u" else dim
            self.head = mlp([d_in, hidden, hidden, 1])
        elif self.spec.extra == "ema":
            self.mine = bounds.MINELoss()

    def _extra(self, z0: Tensor, z1: Tensor) -> dict[str, Tensor]:
        if self.head is None:
            return {}
        inputs = torch.cat([z0, z1], dim=1) if self.spec.extra == "u" else z1
        return {str(self.spec.extra): self.head(inputs).squeeze(1)}

    def _layout(self, z0: Tensor, z1: Tensor) -> Reductions:
        check_embeddings(z0, z1)
        return pair_scores(z0, z1, self.similarity, impl=self.impl, tile_size=self.tile_size)

    def forward(self, z0: Tensor, z1: Tensor) -> Tensor:
        with dist.local_only(not self.gather_distributed):
            layout = self._layout(z0, z1)
            if self.mine is not None:
                return -layout.world * self.mine(layout)
            return layout.world * self.spec.loss(layout, **self._extra(z0, z1))

    @torch.no_grad()
    def estimate(self, z0: Tensor, z1: Tensor) -> Tensor:
        """The bound's reported value (nats) on this batch (global across ranks)."""
        with dist.local_only(not self.gather_distributed):
            layout = self._layout(z0, z1)
            extra = self._extra(z0, z1)
            if self.spec.name == "smile":
                share = bounds.smile(layout, self.smile_clip)
            else:
                share = self.spec.estimate(layout, **extra)
            return dist.all_reduce_sum(share) if layout.world > 1 else share
