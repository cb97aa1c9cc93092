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
- :class:`SplitScores`: materialised ``pos: [R]`` and ``neg: [R, M]`` (MoCo's queue), possibly
  with columns gathered from other ranks;
- :class:`MaskedScores`: a materialised ``[R, M]`` with each row's positive (and excluded)
  column given by index (SimCLR's ``2N`` anchors, gathered in-batch keys);
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
from dataclasses import dataclass

import torch
from torch import Tensor

from . import dist


def softplus(s: Tensor) -> Tensor:
    """``log(1 + e^s)`` exactly, with gradient ``σ(s)`` (``torch.logaddexp(s, 0)``).

    ``F.softplus`` returns ``s`` itself above its threshold 20, an error of up to ``e^−20``
    per element in value and gradient; the tiled kernels compute the exact value, so the dense
    and tiled paths agree only with this one.
    """
    return torch.logaddexp(s, s.new_zeros(()))


def _sigmoid_sq(s: Tensor) -> Tensor:
    return torch.sigmoid(s).square()


_PHIS: dict[str, Callable[[Tensor], Tensor]] = {
    "exp": torch.exp,
    "softplus": softplus,
    "sigmoid_sq": _sigmoid_sq,
}


@dataclass(frozen=True)
class ElementwisePhi:
    """``φ(s) = weight · g(rate · s)`` with ``g`` one of ``exp``, ``softplus``, ``sigmoid_sq``
    (``σ(s)²``): the forms every f-MICL divergence's negative term takes. The tiled kernels fold
    ``rate`` into the score GEMM and ``weight`` into the gradient, and evaluate ``g`` from one
    ``exp2`` per score (:mod:`infomax.kernels.tiled`)."""

    kind: str
    rate: float = 1.0
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in _PHIS:
            raise ValueError(f"unknown phi {self.kind!r}; valid: {', '.join(_PHIS)}")
        if not self.rate > 0:
            raise ValueError(f"phi rate must be > 0, got {self.rate}")

    def __call__(self, s: Tensor) -> Tensor:
        g = _PHIS[self.kind](s if self.rate == 1.0 else self.rate * s)
        return g if self.weight == 1.0 else self.weight * g


#: An elementwise function of the scores: ``"exp"``, ``"softplus"``, ``"sigmoid_sq"``, an
#: :class:`ElementwisePhi` (the tiled kernels have fast in-place versions of these) or any
#: callable.
Phi = str | ElementwisePhi | Callable[[Tensor], Tensor]


def as_elementwise(phi: Phi) -> ElementwisePhi | None:
    """``phi`` as an :class:`ElementwisePhi` (a name is ``rate = weight = 1``); ``None`` for any
    other callable. Raises ``ValueError`` for an unknown name."""
    if isinstance(phi, ElementwisePhi):
        return phi
    if isinstance(phi, str):
        if phi not in _PHIS:
            raise ValueError(f"unknown phi {phi!r}; valid: {', '.join(_PHIS)} or a callable")
        return ElementwisePhi(phi)
    return None


def apply_phi(phi: Phi, s: Tensor) -> Tensor:
    """``φ(s)`` for a :data:`Phi`."""
    named = as_elementwise(phi)
    return named(s) if named is not None else phi(s)  # type: ignore[operator]


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


def _row_sums(phi: Phi, s: Tensor, drop: Tensor | None) -> Tensor:
    """``Σ_j φ(s_ij)`` per row over the entries not in the boolean mask ``drop`` (``None``: all);
    ``exp`` is summed in log space (no single term overflows unless the sum does)."""
    named = as_elementwise(phi)
    if named is not None and named.kind == "exp":
        x = s if named.rate == 1.0 else named.rate * s
        sums = torch.exp(torch.logsumexp(x if drop is None else x.masked_fill(drop, -math.inf), 1))
        return sums if named.weight == 1.0 else named.weight * sums
    values = apply_phi(phi, s)
    return (values if drop is None else values.masked_fill(drop, 0.0)).sum(dim=1)


def _eye(k: int, device: torch.device) -> Tensor:
    return torch.eye(k, dtype=torch.bool, device=device)


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
        drop = _eye(s.shape[0], s.device)
        return self._total(_row_sums(phi, s, drop) + offset * self.negatives)

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
        return self._total(_row_sums(phi, s, None) + offset * self.negatives)

    def detach(self) -> SplitScores:
        return SplitScores(self.positive.detach(), self.neg.detach(), self.world, self.per_row)


class MaskedScores(Reductions):
    """A materialised ``scores: [R_local, M]`` whose row ``i`` has its positive at column
    ``pos_index[i]`` and, optionally, a column ``exclude_index[i]`` that is no candidate
    (SimCLR's self-similarity); the other columns are its negatives (``C = M`` or ``M − 1``).

    The layout of SimCLR's ``2N`` anchors and of gathered in-batch keys. The negatives are masked
    in place (``masked_fill``) instead of gathered into a ``[R, M − 2]`` copy, whose boolean
    indexing and scatter backward made the dense NT-Xent 3× slower than a textbook one.
    """

    def __init__(
        self,
        scores: Tensor,
        pos_index: Tensor,
        exclude_index: Tensor | None = None,
        world: int = 1,
        per_row: bool = False,
    ) -> None:
        if scores.ndim != 2 or pos_index.shape != (scores.shape[0],):
            raise ValueError(
                f"need scores [R, M] and pos_index [R], got {tuple(scores.shape)} and "
                f"{tuple(pos_index.shape)}"
            )
        if per_row and world > 1:
            raise ValueError("per-row terms are a single-process view")
        rows = torch.arange(scores.shape[0], device=scores.device)
        self.scores, self.world, self.per_row = scores, world, per_row
        self.positive = scores[rows, pos_index]
        self.rows = scores.shape[0] * world
        self.candidates = scores.shape[1] - (exclude_index is not None)
        if self.candidates < 2:
            raise ValueError("need at least one negative per row")
        self._excluded: Tensor | None = None
        self._not_negative = torch.zeros_like(scores, dtype=torch.bool)
        self._not_negative[rows, pos_index] = True
        if exclude_index is not None:
            self._excluded = torch.zeros_like(self._not_negative)
            self._excluded[rows, exclude_index] = True
            self._not_negative |= self._excluded
        self._index = (pos_index, exclude_index)

    def row_lse(self) -> Tensor:
        s = self.scores
        if self._excluded is not None:
            s = s.masked_fill(self._excluded, -math.inf)
        return self._total(torch.logsumexp(s, dim=1))

    def neg_lse(self, clip: float | None = None, col_shift: Tensor | None = None) -> Tensor:
        if col_shift is not None:
            raise ValueError("a column shift needs the square layout (PairScores)")
        s = self.scores if clip is None else self.scores.clamp(-clip, clip)
        s = s.masked_fill(self._not_negative, -math.inf)
        return global_lse(torch.logsumexp(s.reshape(-1), 0), self.world)

    def neg_sum(self, phi: Phi, offset: float = 0.0, row_shift: Tensor | None = None) -> Tensor:
        s = self.scores
        if row_shift is not None:
            s = s - _check_rows("row_shift", row_shift, s.shape[0]).unsqueeze(1)
        sums = _row_sums(phi, s, self._not_negative)
        return self._total(sums + offset * self.negatives)

    def detach(self) -> MaskedScores:
        pos, excl = self._index
        return MaskedScores(self.scores.detach(), pos, excl, self.world, self.per_row)


def as_reductions(scores: Tensor | Reductions) -> Reductions:
    """A :class:`Reductions` as given, or a square score matrix as :class:`PairScores`."""
    return scores if isinstance(scores, Reductions) else PairScores(scores)
