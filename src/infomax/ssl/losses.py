"""Contrastive objectives as pure functions of positive / negative scores (SPEC §3, §4).

Every method reduces to, per anchor row ``i``: one positive score ``pos_i`` and ``M`` negative
scores ``neg_i: [M]`` from a similarity (``cosine``: ``ĝᵀĥ/τ``; ``gaussian``: ``(ĝᵀĥ − 1)/τ``,
i.e. the f-Gaussian ``−‖ĝ − ĥ‖²/(2σ²)`` with ``σ² = τ``). The objective (maximised) is

- ``infonce`` (NT-Xent): ``pos_i − log(e^{pos_i} + Σ_j e^{neg_ij})``, a log-softmax; the loss
  ``−mean_i`` of it is the usual cross-entropy (InfoNCE bound minus ``log(M + 1)``);
- any f-divergence ``D`` of :mod:`infomax.divergences` (f-MICL):
  ``D.positive(pos_i) − α · mean_j D.negative(neg_ij)``, i.e. ``f′(r⁺) − α mean f*(f′(r⁻))``.

For KL the f-MICL objective is ``1 + pos − α mean_j e^{neg}``: unlike NT-Xent its negative
term is a plain (not log-) mean of ``e^{s}`` and the positive is not in its own denominator.

Keys / negatives arrive as tensors, so columns gathered from other ranks
(:func:`infomax.dist.all_gather_with_grad`) plug in unchanged: rows are local, columns global.

>>> import torch
>>> pos, neg = torch.zeros(3), torch.zeros(3, 4)
>>> round(float(contrastive_terms(pos, neg, "infonce")[0]), 4)  # log(1/5)
-1.6094
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import dist, kernels
from ..critics import cosine_scores, gaussian_scores
from ..divergences import get_divergence
from ..registry import DIVERGENCES

SIMILARITIES = ("cosine", "gaussian")


def objective_names() -> list[str]:
    """``infonce`` plus every registered divergence name."""
    return ["infonce", *DIVERGENCES.names()]


def similarity_scores(a: Tensor, b: Tensor, similarity: str, temperature: float) -> Tensor:
    """``[K, d] × [M, d] -> [K, M]``: ``cosine`` ``âᵀb̂/τ`` or ``gaussian`` ``(âᵀb̂ − 1)/τ``."""
    if similarity == "cosine":
        return cosine_scores(a, b, temperature)
    if similarity == "gaussian":
        return gaussian_scores(a, b, temperature**0.5)
    raise ValueError(f"unknown similarity {similarity!r}; valid: {', '.join(SIMILARITIES)}")


def contrastive_terms(
    pos: Tensor, neg: Tensor, objective: str = "infonce", alpha: float = 1.0
) -> Tensor:
    """Per-row objective (maximised) from ``pos: [R]`` and ``neg: [R, M]`` -> ``[R]`` (nats)."""
    if pos.ndim != 1 or neg.ndim != 2 or neg.shape[0] != pos.shape[0] or neg.shape[1] < 1:
        raise ValueError(
            f"need pos [R] and neg [R, M >= 1], got {tuple(pos.shape)} and {tuple(neg.shape)}"
        )
    if objective == "infonce":
        return pos - torch.logsumexp(torch.cat([pos.unsqueeze(1), neg], dim=1), dim=1)
    div = get_divergence(objective)
    return div.positive(pos) - alpha * div.negative(neg).mean(dim=1)


def split_scores(
    scores: Tensor, pos_index: Tensor, exclude_index: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Positive ``S[i, pos_index[i]]: [R]`` and negatives ``[R, C − 1]`` (``C − 2`` when
    ``exclude_index`` also drops e.g. the self-similarity) from ``scores: [R, C]``."""
    rows = torch.arange(scores.shape[0], device=scores.device)
    keep = torch.ones_like(scores, dtype=torch.bool)
    keep[rows, pos_index] = False
    if exclude_index is not None:
        keep[rows, exclude_index] = False
    m = int(keep[0].sum())
    return scores[rows, pos_index], scores[keep].view(scores.shape[0], m)


@dataclass(frozen=True)
class Objective:
    """An objective name (``infonce`` or a divergence), a similarity, ``τ``, the f-MICL ``α``,
    and whether in-batch losses use the tiled kernels of :mod:`infomax.kernels`
    (``memory_efficient``: ``True`` / ``False``, or ``None`` for automatic: tiled from
    :data:`infomax.kernels.AUTO_MIN_ENTRIES` score entries on)."""

    name: str = "infonce"
    similarity: str = "cosine"
    temperature: float = 0.5
    alpha: float = 1.0
    memory_efficient: bool | None = None

    def __post_init__(self) -> None:
        if self.name not in objective_names():
            raise ValueError(
                f"unknown objective {self.name!r}; valid: {', '.join(objective_names())}"
            )
        if self.similarity not in SIMILARITIES:
            raise ValueError(
                f"unknown similarity {self.similarity!r}; valid: {', '.join(SIMILARITIES)}"
            )
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")

    def scores(self, a: Tensor, b: Tensor) -> Tensor:
        """Similarity matrix ``[K, M]`` of ``a: [K, d]`` and ``b: [M, d]`` (fp16/bf16 -> fp32)."""
        if a.dtype in (torch.float16, torch.bfloat16):  # mixed precision: scores in fp32
            a, b = a.float(), b.float()
        return similarity_scores(a, b.to(a.dtype), self.similarity, self.temperature)

    def loss(self, pos: Tensor, neg: Tensor) -> Tensor:
        """``−mean_i`` of :func:`contrastive_terms`."""
        return -contrastive_terms(pos, neg, self.name, self.alpha).mean()

    def tiled(self, rows: int, cols: int) -> bool:
        """Whether a ``[rows, cols]`` (global) score matrix goes through the tiled kernels."""
        if self.memory_efficient is None:
            return rows * cols >= kernels.AUTO_MIN_ENTRIES
        return self.memory_efficient

    def kernel_critic(self) -> dict[str, object]:
        """This similarity as keyword arguments of the :mod:`infomax.kernels` functions."""
        if self.similarity == "cosine":
            return {"critic": "cosine", "temperature": self.temperature}
        return {"critic": "gaussian", "sigma": self.temperature**0.5}


def _fp32(t: Tensor) -> Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def simclr_loss(z1: Tensor, z2: Tensor, objective: Objective) -> Tensor:
    """SimCLR loss of this rank's views ``z1, z2: [N, d]`` against the ``2N·world`` views of all
    ranks: :func:`ntxent_loss` on gathered columns, or — when ``objective.tiled`` — the tiled
    kernels (:func:`infomax.kernels.ntxent_loss`, :func:`infomax.kernels.simclr_fmicl`), equal in
    value and gradient without the ``[2N, 2N·world]`` matrix. Either way the value is this rank's
    mean over its rows (DDP's gradient averaging then gives the global batch's gradient)."""
    n, world = z1.shape[0], dist.world_size()
    rows = 2 * n * world
    if not objective.tiled(rows, rows):
        cols = dist.all_gather_with_grad(torch.cat([z1, z2]))
        return ntxent_loss(z1, z2, objective, cols, offset=dist.rank() * 2 * n)
    z1, z2, kw = _fp32(z1), _fp32(z2), objective.kernel_critic()
    if objective.name == "infonce":  # the kernels return this rank's share of the global mean
        return world * kernels.ntxent_loss(z1, z2, **kw)  # type: ignore[arg-type]
    share = kernels.simclr_fmicl(z1, z2, divergence=objective.name, alpha=objective.alpha, **kw)  # type: ignore[arg-type]
    return -world * share


def momentum_key_loss(q: Tensor, k: Tensor, objective: Objective) -> Tensor:
    """MoCo v3 loss of this rank's queries ``q: [N, d]`` against the momentum keys of all ranks
    (``k: [N, d]`` local, gathered here): :func:`in_batch_loss`, or the tiled kernels when
    ``objective.tiled``; this rank's mean over its rows either way."""
    n, world = q.shape[0], dist.world_size()
    if not objective.tiled(n * world, n * world):
        keys = dist.all_gather_with_grad(k)
        return in_batch_loss(q, keys, objective, dist.rank() * n)
    q, kw = _fp32(q), objective.kernel_critic()
    k = _fp32(k).to(q.dtype)
    if objective.name == "infonce":  # share = (Σ_local (pos − lse)) / C + log(C) / world
        share = kernels.tiled_objective(q, k, "infonce", **kw)  # type: ignore[arg-type]
        return math.log(n * world) - world * share
    share = kernels.tiled_objective(
        q,
        k,
        "fmicl",
        divergence=objective.name,
        alpha=objective.alpha,
        **kw,  # type: ignore[arg-type]
    )
    return -world * share


def ntxent_loss(
    z1: Tensor, z2: Tensor, objective: Objective, columns: Tensor | None = None, offset: int = 0
) -> Tensor:
    """SimCLR loss over ``2N`` views: ``z = [z1; z2]: [2N, d]``; the positive of row ``i`` is
    ``i ± N``, the self-similarity is dropped, the other ``2N − 2`` (or all gathered) columns are
    negatives. ``columns``: gathered ``[C, d]`` holding this rank's ``z`` at rows
    ``offset .. offset + 2N`` (default ``z`` itself, ``offset = 0``)."""
    if z1.shape != z2.shape or z1.ndim != 2 or z1.shape[0] < 2:
        raise ValueError(
            f"z1, z2 must both be [N >= 2, d], got {tuple(z1.shape)}, {tuple(z2.shape)}"
        )
    z = torch.cat([z1, z2])
    cols = z if columns is None else columns
    n2 = z.shape[0]
    idx = torch.arange(n2, device=z.device)
    scores = objective.scores(z, cols)
    pos, neg = split_scores(scores, offset + (idx + n2 // 2) % n2, offset + idx)
    return objective.loss(pos, neg)


def queue_loss(q: Tensor, k: Tensor, queue: Tensor, objective: Objective) -> Tensor:
    """MoCo v2 loss: positive ``s(q_i, k_i)``, negatives ``s(q_i, queue_j)``;
    ``q, k: [N, d]``, ``queue: [Q, d]`` (keys carry no gradient)."""
    if q.shape != k.shape or q.ndim != 2 or queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(
            "need q, k [N, d] and queue [Q, d], got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(queue.shape)}"
        )
    pos = objective.scores(q, k).diagonal()
    return objective.loss(pos, objective.scores(q, queue))


def in_batch_loss(q: Tensor, keys: Tensor, objective: Objective, offset: int = 0) -> Tensor:
    """MoCo v3 loss: ``S = s(q, keys): [N, C]``, positive ``S[i, offset + i]``, the other
    ``C − 1`` columns negatives (``keys`` may be gathered from all ranks)."""
    if q.ndim != 2 or keys.ndim != 2 or q.shape[1] != keys.shape[1] or keys.shape[0] < 2:
        raise ValueError(
            f"need q [N, d] and keys [C >= 2, d], got {tuple(q.shape)}, {tuple(keys.shape)}"
        )
    scores = objective.scores(q, keys)
    idx = torch.arange(q.shape[0], device=q.device)
    pos, neg = split_scores(scores, offset + idx)
    return objective.loss(pos, neg)
