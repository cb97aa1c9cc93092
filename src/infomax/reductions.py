"""What an objective needs from a batch's scores, whichever way they are computed (SPEC §0, §8).

Every bound of :mod:`infomax.bounds` and every f-MICL objective of :mod:`infomax.divergences`
is written **once**, as a function of a :class:`Reductions`: the positive score of each anchor
row and three reductions over its candidates (the positive and its negatives):

============================== ================================================================
``positive``                   ``S_{i, p(i)}``: ``[R_local]``
``row_lse()``                  ``logsumexp_{j ∈ C(i)} S_ij`` over the ``C`` candidates of row i
``neg_lse(clip, col_shift)``   ``logsumexp`` over **all** ``R·(C − 1)`` negatives (one number)
``neg_sum(φ, offset, shift)``  ``Σ_{j ∈ C(i), j ≠ p(i)} [φ(S_ij − c_i) + offset]`` per row
============================== ================================================================

and two ways to average: ``mean(x)`` over rows and ``share(c)`` of a batch-level constant. How
they are computed is the layout's business, never the formula's:

- :class:`PairScores`: a materialised square ``S: [K, K]`` whose diagonal holds the positives
  (the estimation setting); ``per_row=True`` turns every formula into its per-row terms ``[K]``
  (``mean`` and ``share`` then return their argument), which the per-row terms and tests use;
- :class:`SplitScores`: materialised ``pos: [R]`` and ``neg: [R, M]`` (SimCLR's ``2N`` anchors,
  MoCo's queue or in-batch keys), possibly with columns gathered from other ranks;
- :class:`infomax.kernels.layouts.TiledPairScores` / ``TiledSimCLRScores``: the same reductions
  computed in tiles from embeddings, never holding the score matrix, across ranks.

A layout used by ``world`` ranks returns this rank's **share**: ``mean(x) = Σ_local x / R`` with
the global row count ``R``, ``share(c) = c / world``; the shares sum over ranks to the value on
the global batch, and ``world ×`` the share is this rank's local-mean loss (DDP's gradient
averaging then gives the global batch's gradient).

>>> import torch
>>> r = PairScores(torch.zeros(4, 4))
>>> float(r.mean(r.positive) - r.mean(r.row_lse()) + r.share(math.log(r.candidates)))  # InfoNCE
0.0
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from . import dist

#: An elementwise function of the scores: ``"exp"``, ``"softplus"`` (the tiled kernels have fast
#: in-place versions of these two) or any callable.
Phi = str | Callable[[Tensor], Tensor]
_PHIS: dict[str, Callable[[Tensor], Tensor]] = {"exp": torch.exp, "softplus": F.softplus}


def apply_phi(phi: Phi, s: Tensor) -> Tensor:
    """``φ(s)`` for a :data:`Phi`."""
    if isinstance(phi, str):
        if phi not in _PHIS:
            raise ValueError(f"unknown phi {phi!r}; valid: {', '.join(_PHIS)} or a callable")
        return _PHIS[phi](s)
    return phi(s)


def check_square(scores: Tensor) -> int:
    """``K`` of a square score matrix ``[K, K]`` with ``K >= 2``, else ``ValueError``."""
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"scores must be a square [K, K] matrix, got shape {tuple(scores.shape)}")
    if scores.shape[0] < 2:
        raise ValueError("scores need K >= 2 samples (one positive and at least one negative)")
    return scores.shape[0]


def offdiag(scores: Tensor, fill: float) -> Tensor:
    """``scores`` with the diagonal replaced by ``fill`` (``-inf`` to drop it from a logsumexp)."""
    eye = torch.eye(scores.shape[0], dtype=torch.bool, device=scores.device)
    return scores.masked_fill(eye, fill)


def global_lse(local: Tensor, world: int) -> Tensor:
    """``logsumexp`` of the ranks' partial log-sum-exps (with gradient); ``local`` when alone."""
    if world == 1:
        return local
    return torch.logsumexp(dist.all_gather_scalars_with_grad(local), 0)


class Reductions:
    """The reductions of one batch's scores (module table). Subclasses set ``positive``,
    ``rows`` (global ``R``), ``candidates`` (``C`` per row, the positive included), ``world``
    and ``per_row``, and implement the three reductions."""

    positive: Tensor
    rows: int
    candidates: int
    world: int = 1
    per_row: bool = False

    @property
    def negatives(self) -> int:
        """Negatives per row, ``C − 1``."""
        return self.candidates - 1

    def mean(self, x: Tensor) -> Tensor:
        """Mean over rows of a per-row quantity (``[R_local]``, or its local sum as 0-d)."""
        return x if self.per_row else x.sum() / self.rows

    def share(self, c: Tensor | float) -> Tensor | float:
        """This rank's share of a batch-level quantity ``c``."""
        return c if self.per_row else c / self.world

    def _total(self, rows: Tensor) -> Tensor:
        """Per-row values ``[R_local]`` as given (``per_row``) or summed."""
        return rows if self.per_row else rows.sum()

    def log_mean_exp_neg(
        self, clip: float | None = None, col_shift: Tensor | None = None
    ) -> Tensor:
        """``log mean exp`` over all ``R·(C − 1)`` negatives (see :meth:`neg_lse`)."""
        return self.neg_lse(clip, col_shift) - math.log(self.rows * self.negatives)

    def row_lse(self) -> Tensor:  # pragma: no cover - interface
        """``logsumexp_{j ∈ C(i)} S_ij`` over each row's ``C`` candidates: ``[R_local]`` per row,
        else their 0-d sum."""
        raise NotImplementedError

    def neg_lse(
        self, clip: float | None = None, col_shift: Tensor | None = None
    ) -> Tensor:  # pragma: no cover
        """``logsumexp`` over all ``R·(C − 1)`` negatives of ``clamp(S_ij − d_j, −clip, clip)``
        (``d = col_shift: [R_local]``, gathered): 0-d, the same on every rank."""
        raise NotImplementedError

    def neg_sum(  # pragma: no cover - interface
        self, phi: Phi, offset: float = 0.0, row_shift: Tensor | None = None
    ) -> Tensor:
        """``Σ_{negatives j} [φ(S_ij − c_i) + offset]`` (``c = row_shift: [R_local]``) per row
        ``[R_local]``, else their 0-d sum."""
        raise NotImplementedError

    def detach(self) -> Reductions:  # pragma: no cover - interface
        """The same layout on detached inputs (for a reported value next to a training loss)."""
        raise NotImplementedError


def _row_sums(phi: Phi, s: Tensor, drop_diagonal: bool) -> Tensor:
    """``Σ_j φ(s_ij)`` per row, without the diagonal when ``drop_diagonal``; ``exp`` is summed in
    log space (no single term overflows unless the sum does)."""
    if isinstance(phi, str) and phi == "exp":
        return torch.exp(torch.logsumexp(offdiag(s, -math.inf) if drop_diagonal else s, dim=1))
    values = apply_phi(phi, s)
    return (offdiag(values, 0.0) if drop_diagonal else values).sum(dim=1)


def _check_rows(name: str, t: Tensor, k: int) -> Tensor:
    if t.shape != (k,):
        raise ValueError(f"{name} must have shape [{k}], got {tuple(t.shape)}")
    return t


class PairScores(Reductions):
    """A materialised square ``S: [K, K]``: positives on the diagonal, every other entry of a row
    a negative (``C = K``); one process (a gathered full matrix counts as one)."""

    def __init__(self, scores: Tensor, per_row: bool = False) -> None:
        k = check_square(scores)
        self.scores, self.per_row = scores, per_row
        self.positive, self.rows, self.candidates, self.world = scores.diagonal(), k, k, 1

    def row_lse(self) -> Tensor:
        return self._total(torch.logsumexp(self.scores, dim=1))

    def neg_lse(self, clip: float | None = None, col_shift: Tensor | None = None) -> Tensor:
        s = self.scores
        if col_shift is not None:
            s = s - _check_rows("col_shift", col_shift, self.rows).unsqueeze(0)
        if clip is not None:
            s = s.clamp(-clip, clip)
        return torch.logsumexp(offdiag(s, -math.inf).reshape(-1), 0)

    def neg_sum(self, phi: Phi, offset: float = 0.0, row_shift: Tensor | None = None) -> Tensor:
        s = self.scores
        if row_shift is not None:
            s = s - _check_rows("row_shift", row_shift, self.rows).unsqueeze(1)
        return self._total(_row_sums(phi, s, drop_diagonal=True) + offset * self.negatives)

    def detach(self) -> PairScores:
        return PairScores(self.scores.detach(), self.per_row)


class SplitScores(Reductions):
    """Materialised positives ``pos: [R_local]`` and negatives ``neg: [R_local, M]``
    (``C = M + 1``); ``world`` ranks each hold their rows (columns gathered with gradient)."""

    def __init__(self, pos: Tensor, neg: Tensor, world: int = 1, per_row: bool = False) -> None:
        if pos.ndim != 1 or neg.ndim != 2 or neg.shape[0] != pos.shape[0] or neg.shape[1] < 1:
            raise ValueError(
                f"need pos [R] and neg [R, M >= 1], got {tuple(pos.shape)} and {tuple(neg.shape)}"
            )
        if per_row and world > 1:
            raise ValueError("per-row terms are a single-process view")
        self.positive, self.neg, self.world, self.per_row = pos, neg, world, per_row
        self.rows, self.candidates = pos.shape[0] * world, neg.shape[1] + 1

    @classmethod
    def from_matrix(
        cls,
        scores: Tensor,
        pos_index: Tensor,
        exclude_index: Tensor | None = None,
        world: int = 1,
    ) -> SplitScores:
        """Row ``i`` of ``scores: [R, C]``: positive at column ``pos_index[i]``, negatives the
        other columns except ``exclude_index[i]`` (e.g. SimCLR's self-similarity)."""
        rows = torch.arange(scores.shape[0], device=scores.device)
        keep = torch.ones_like(scores, dtype=torch.bool)
        keep[rows, pos_index] = False
        if exclude_index is not None:
            keep[rows, exclude_index] = False
        m = int(keep[0].sum())
        return cls(scores[rows, pos_index], scores[keep].view(scores.shape[0], m), world)

    def row_lse(self) -> Tensor:
        both = torch.cat([self.positive.unsqueeze(1), self.neg], dim=1)
        return self._total(torch.logsumexp(both, dim=1))

    def neg_lse(self, clip: float | None = None, col_shift: Tensor | None = None) -> Tensor:
        if col_shift is not None:
            raise ValueError("a column shift needs the square layout (PairScores)")
        s = self.neg if clip is None else self.neg.clamp(-clip, clip)
        return global_lse(torch.logsumexp(s.reshape(-1), 0), self.world)

    def neg_sum(self, phi: Phi, offset: float = 0.0, row_shift: Tensor | None = None) -> Tensor:
        s = self.neg
        if row_shift is not None:
            s = s - _check_rows("row_shift", row_shift, s.shape[0]).unsqueeze(1)
        return self._total(_row_sums(phi, s, drop_diagonal=False) + offset * self.negatives)

    def detach(self) -> SplitScores:
        return SplitScores(self.positive.detach(), self.neg.detach(), self.world, self.per_row)


def as_reductions(scores: Tensor | Reductions) -> Reductions:
    """A :class:`Reductions` as given, or a square score matrix as :class:`PairScores`."""
    return scores if isinstance(scores, Reductions) else PairScores(scores)
