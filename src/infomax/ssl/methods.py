"""SimCLR, MoCo v2 and MoCo v3 as plain modules: ``model(view1, view2) -> loss`` (SPEC §4).

State lives here (projection / predictor heads, the momentum encoder, the key queue); the loss
is a ``criterion`` module of :mod:`infomax.losses` (``criterion(z0, z1)``; MoCo v2 also passes
``negatives=queue``), built from an :class:`~infomax.ssl.losses.Objective` unless given.
``update_momentum()`` is an explicit method the training loop calls after each optimiser step,
never a side effect of ``forward``. The representation used downstream is ``model.encoder(x)``
(before the projection head).

Distributed: the criterion gathers keys / columns with gradient when a process group exists
(identity otherwise); rows stay local. SimCLR and MoCo v3 use the tiled kernels of
:mod:`infomax.kernels` when the criterion's ``impl`` asks for them (by default when distributed
or from 1024² score entries on); MoCo v2's ``[N, Q]`` query-queue matrix stays dense.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..dist import all_gather_with_grad
from ..models import predictor_head, projection_head
from ..registry import METHODS
from .losses import Objective


class MemoryQueue(nn.Module):
    """FIFO queue of ``size`` unit-norm keys ``[size, dim]`` (MoCo), initialised at random.

    ``enqueue(keys)`` overwrites the oldest entries (wrapping around); the loss of a step uses
    the queue *before* that step's keys are added (MoCo's enqueue-after-loss order).
    """

    keys: Tensor
    ptr: Tensor

    def __init__(self, dim: int, size: int = 4096) -> None:
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"queue size and dim must be >= 1, got {size}, {dim}")
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        """Number of slots."""
        return int(self.keys.shape[0])

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write ``keys: [B, dim]`` (detached) at the pointer, wrapping; keep the last ``size``."""
        keys = keys.detach().to(self.keys.dtype)
        if keys.ndim != 2 or keys.shape[1] != self.keys.shape[1]:
            raise ValueError(f"keys must be [B, {self.keys.shape[1]}], got {tuple(keys.shape)}")
        keys = keys[-self.size :]
        idx = (int(self.ptr) + torch.arange(keys.shape[0], device=keys.device)) % self.size
        self.keys[idx] = keys
        self.ptr.fill_((int(self.ptr) + keys.shape[0]) % self.size)

    def forward(self) -> Tensor:
        """The current keys ``[size, dim]`` (a detached copy)."""
        return self.keys.clone()


class _Contrastive(nn.Module):
    """Encoder + projection head + ``criterion`` (a loss module; default from ``objective``,
    itself by default NT-Xent with cosine similarity, ``τ = 0.5``)."""

    anchors = "views"

    def __init__(
        self,
        encoder: nn.Module,
        *,
        criterion: nn.Module | None = None,
        objective: Objective | None = None,
        proj_dim: int = 128,
        proj_hidden: int = 512,
    ) -> None:
        super().__init__()
        out_dim = getattr(encoder, "out_dim", None)
        if not isinstance(out_dim, int):
            raise ValueError("encoder must expose an integer `out_dim` attribute")
        self.encoder = encoder
        self.projector = projection_head(out_dim, proj_hidden, proj_dim)
        if criterion is not None and objective is not None:
            raise ValueError("give a criterion or an objective, not both")
        self.objective = objective if objective is not None or criterion else Objective()
        if criterion is None:
            assert self.objective is not None
            criterion = self.objective.criterion(self.anchors)
        used = getattr(criterion, "anchors", self.anchors)
        if used != self.anchors:
            raise ValueError(
                f"{type(self).__name__} scores {self.anchors!r}; its criterion has anchors={used!r}"
            )
        self.criterion = criterion

    def embed(self, x: Tensor) -> Tensor:
        """``projector(encoder(x))``: ``[B, ...] -> [B, proj_dim]``."""
        return self.projector(self.encoder(x))


@METHODS.register("simclr")
class SimCLR(_Contrastive):
    """SimCLR (Chen et al. 2020): ``2N`` views, each anchor's positive is its other view and the
    ``2N − 2`` other views are negatives (NT-Xent for ``infonce``)."""

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        """``x1, x2: [N, ...]`` two views -> scalar loss."""
        return self.criterion(self.embed(x1), self.embed(x2))


class _Momentum(_Contrastive):
    """Adds a momentum (EMA) copy of encoder + projector: ``θ_k ← m θ_k + (1 − m) θ_q``."""

    anchors = "pairs"

    def __init__(self, encoder: nn.Module, *, momentum: float = 0.99, **kw: Any) -> None:
        super().__init__(encoder, **kw)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.encoder_k = copy.deepcopy(self.encoder)
        self.projector_k = copy.deepcopy(self.projector)
        for p in [*self.encoder_k.parameters(), *self.projector_k.parameters()]:
            p.requires_grad_(False)

    def _pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.encoder, self.encoder_k), (self.projector, self.projector_k)]

    @torch.no_grad()
    def update_momentum(self, momentum: float | None = None) -> None:
        """EMA update of the key encoder and projector from the online ones."""
        m = self.momentum if momentum is None else momentum
        for online, target in self._pairs():
            for p_q, p_k in zip(online.parameters(), target.parameters(), strict=True):
                p_k.mul_(m).add_(p_q.detach(), alpha=1.0 - m)

    @torch.no_grad()
    def keys(self, x: Tensor) -> Tensor:
        """Momentum embeddings ``[B, proj_dim]`` (no gradient)."""
        return self.projector_k(self.encoder_k(x))


@METHODS.register("mocov2")
class MoCoV2(_Momentum):
    """MoCo v2 (Chen et al. 2020): query from the online branch, positive key from the momentum
    branch, negatives from a :class:`MemoryQueue`; keys are enqueued after the loss (only in
    training mode). ``symmetric=True`` adds the loss with the views swapped."""

    def __init__(
        self,
        encoder: nn.Module,
        *,
        queue_size: int = 4096,
        symmetric: bool = False,
        proj_dim: int = 128,
        **kw: Any,
    ) -> None:
        super().__init__(encoder, proj_dim=proj_dim, **kw)
        self.queue = MemoryQueue(proj_dim, queue_size)
        self.symmetric = symmetric

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        """``x1, x2: [N, ...]`` -> scalar loss; then enqueues the new keys."""
        queue = self.queue()
        k2 = self.keys(x2)
        loss = self.criterion(self.embed(x1), k2, negatives=queue)
        new_keys = [k2]
        if self.symmetric:
            k1 = self.keys(x1)
            loss = 0.5 * (loss + self.criterion(self.embed(x2), k1, negatives=queue))
            new_keys.append(k1)
        if self.training:
            for k in new_keys:
                self.queue.enqueue(F.normalize(all_gather_with_grad(k), dim=1))
        return loss


@METHODS.register("mocov3")
class MoCoV3(_Momentum):
    """MoCo v3 (Chen, Xie & He 2021): predictor on the online branch, symmetric loss against the
    in-batch momentum keys of the other view: ``L(q1, k2) + L(q2, k1)``."""

    def __init__(
        self,
        encoder: nn.Module,
        *,
        proj_dim: int = 128,
        pred_hidden: int = 512,
        **kw: Any,
    ) -> None:
        super().__init__(encoder, proj_dim=proj_dim, **kw)
        self.predictor = predictor_head(proj_dim, pred_hidden)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        """``x1, x2: [N, ...]`` -> scalar loss."""
        q1, q2 = self.predictor(self.embed(x1)), self.predictor(self.embed(x2))
        k1, k2 = self.keys(x1), self.keys(x2)
        return self.criterion(q1, k2) + self.criterion(q2, k1)
