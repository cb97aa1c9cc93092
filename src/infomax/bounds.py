"""Variational lower bounds on mutual information as pure functions of the score matrix.

SPEC §0 and §2. ``scores: [K, K]`` with ``scores[i, j] = f(x_i, y_j)``: the diagonal holds samples
of the joint ``p(x, y)``, the ``K(K−1)`` off-diagonal entries samples of ``p(x)p(y)``. Every
function returns the bound in **nats** (a scalar); the training loss is its negative unless the
registry entry says otherwise (JS and SMILE train with the JS loss). ``mean_{i≠j}`` is the mean
over off-diagonal entries.

Each bound is written **once**, as a function of the reductions of :mod:`infomax.reductions`
(positives, row log-sum-exp, log-sum-exp / sum over negatives). Given a tensor it is the dense
function of ``S``; given :class:`~infomax.reductions.PairScores` with ``per_row=True`` it is the
per-row terms (``*_terms``, one value per row); given a tiled layout of
:mod:`infomax.kernels` it is the same value computed in tiles (SPEC §8) and across ranks.

>>> import torch
>>> s = torch.zeros(4, 4)
>>> float(infonce(s)), float(nwj(s) + torch.e ** -1)
(0.0, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .reductions import PairScores, Reductions, as_reductions, check_square, offdiag, softplus
from .registry import BOUNDS

#: A square score matrix ``S: [K, K]`` (diagonal = positives) or any :class:`Reductions` layout.
Scores = Tensor | Reductions


def log_mean_exp_offdiag(scores: Tensor) -> Tensor:
    """``log mean_{i≠j} exp(S_ij)`` computed with one ``logsumexp`` (no overflow)."""
    return PairScores(scores).log_mean_exp_neg()


def log_mean_exp_offdiag_rows(scores: Tensor) -> Tensor:
    """Per row ``log mean_{j≠i} exp(S_ij)``: ``[K]``."""
    k = check_square(scores)
    return torch.logsumexp(offdiag(scores, -math.inf), dim=1) - math.log(k - 1)


def _terms(scores: Tensor) -> PairScores:
    return PairScores(scores, per_row=True)


# ---------------------------------------------------------------------------------------------
# InfoNCE


def infonce(scores: Scores) -> Tensor:
    """InfoNCE (CPC) bound ``mean_i [S_ii − logsumexp_j S_ij] + log K`` (van den Oord et al. 2018).

    Low variance but never above ``log K``: the positive sits in its own denominator. For a
    general layout the row's ``K`` candidates are its positive and its negatives (SimCLR's
    ``2N − 1`` non-self columns; NT-Xent is ``log C −`` this).
    """
    r = as_reductions(scores)
    return r.mean(r.positive) - r.mean(r.row_lse()) + r.share(math.log(r.candidates))


def infonce_terms(scores: Tensor) -> Tensor:
    """Per-row InfoNCE terms ``S_ii − logsumexp_j S_ij + log K``: ``[K]``."""
    return infonce(_terms(scores))


# ---------------------------------------------------------------------------------------------
# NWJ / TUBA / JS


def nwj(scores: Scores) -> Tensor:
    """NWJ (f-GAN KL) bound ``mean_i S_ii − e^{−1} mean_{i≠j} exp(S_ij)`` (Nguyen et al. 2010).

    Unbiased; its variance grows like ``e^I``. Optimal critic ``S = 1 + log p(x,y)/p(x)p(y)``.
    """
    r = as_reductions(scores)
    return r.mean(r.positive) - r.share(torch.exp(r.log_mean_exp_neg() - 1.0))


def tuba(scores: Scores, baseline: Tensor) -> Tensor:
    """TUBA bound ``1 + mean_i S_ii − mean_{i≠j} exp(S_ij − b(y_j)) − mean_j b(y_j)``.

    ``baseline: [K]`` holds ``b(y_j)`` (Poole et al. 2019); NWJ is TUBA with ``b ≡ 1``.
    """
    r = as_reductions(scores)
    if baseline.shape != r.positive.shape:
        raise ValueError(
            f"baseline must have shape {list(r.positive.shape)}, got {tuple(baseline.shape)}"
        )
    tail = torch.exp(r.log_mean_exp_neg(col_shift=baseline))
    return r.share(1.0) + r.mean(r.positive) - r.share(tail) - r.mean(baseline)


def js_estimate(scores: Scores) -> Tensor:
    """MI reported by a JS-trained critic: ``1 + mean_i S_ii − mean_{i≠j} exp(S_ij)``.

    A JS-trained critic approximates ``log p(x,y)/p(x)p(y)``, so this is NWJ applied to ``S + 1``.
    """
    r = as_reductions(scores)
    return r.share(1.0) + r.mean(r.positive) - r.share(torch.exp(r.log_mean_exp_neg()))


def js_loss(scores: Scores) -> Tensor:
    """JS training loss (minimised): ``mean_i softplus(−S_ii) + mean_{i≠j} softplus(S_ij)``."""
    r = as_reductions(scores)
    return r.mean(softplus(-r.positive)) + r.mean(r.neg_sum("softplus")) / r.negatives


# ---------------------------------------------------------------------------------------------
# DV / MINE / SMILE


def dv(scores: Scores) -> Tensor:
    """Donsker–Varadhan bound ``mean_i S_ii − log mean_{i≠j} exp(S_ij)`` (biased in the batch)."""
    r = as_reductions(scores)
    return r.mean(r.positive) - r.share(r.log_mean_exp_neg())


def mine(scores: Scores, ema: Tensor) -> Tensor:
    """DV value whose gradient uses a running mean in the log-term (Belghazi et al. 2018).

    Forward equals :func:`dv`. Backward replaces ``∇ log m`` with ``∇m / ema`` where
    ``m = mean_{i≠j} exp(S_ij)`` and ``ema`` (detached) is its exponential moving average, which
    removes the mini-batch bias of the DV gradient. :class:`MINELoss` keeps ``ema``.
    """
    r = as_reductions(scores)
    log_m = r.log_mean_exp_neg()
    m = torch.exp(log_m)
    correction = (m - m.detach()) / ema.detach()
    return r.mean(r.positive) - r.share(log_m.detach() + correction)


def smile(scores: Scores, clip: float = 5.0) -> Tensor:
    """SMILE estimate ``mean_i S_ii − log mean_{i≠j} clip(exp(S_ij), e^{−τ}, e^{τ})`` (Song & Ermon
    2020), ``τ = clip``; the bias grows as ``τ`` shrinks. Trained with :func:`js_loss`."""
    if clip <= 0:
        raise ValueError(f"SMILE clip must be > 0, got {clip}")
    r = as_reductions(scores)
    return r.mean(r.positive) - r.share(r.log_mean_exp_neg(clip=clip))


# ---------------------------------------------------------------------------------------------
# FLO


def flo(scores: Scores, u: Tensor) -> Tensor:
    """FLO bound ``1 + mean_i [−u_i − exp(−u_i) mean_{j≠i} exp(S_ij − S_ii)]`` (Guo et al. 2022).

    From ``−log t = max_u (1 − u − e^{−u} t)`` applied to InfoNCE's log-partition; ``u_i`` comes
    from a second network ``u(x_i, y_i)``; tight at ``u_i = log mean_{j≠i} exp(S_ij − S_ii)``
    (:func:`flo_optimal_u`), and linear in the negative average so its gradient is unbiased.
    """
    r = as_reductions(scores)
    if u.shape != r.positive.shape:
        raise ValueError(f"u must have shape {list(r.positive.shape)}, got {tuple(u.shape)}")
    neg = r.mean(r.neg_sum("exp", row_shift=r.positive + u)) / r.negatives
    return r.share(1.0) - r.mean(u) - neg


def flo_terms(scores: Tensor, u: Tensor) -> Tensor:
    """Per-row FLO terms ``1 − u_i − exp(−u_i) · mean_{j≠i} exp(S_ij − S_ii)``: ``[K]``."""
    return flo(_terms(scores), u)


def flo_optimal_u(scores: Tensor) -> Tensor:
    """The maximiser ``u*_i = log mean_{j≠i} exp(S_ij − S_ii)`` of FLO for fixed scores: ``[K]``."""
    check_square(scores)
    return log_mean_exp_offdiag_rows(scores - scores.diagonal().unsqueeze(1))


# ---------------------------------------------------------------------------------------------
# Stateful wrapper


class MINELoss(nn.Module):
    """MINE with its EMA buffer: ``forward(scores)`` returns :func:`mine` (a bound, in nats).

    In training mode the buffer is updated *before* use, ``ema ← (1 − rate)·ema + rate·m``, with
    ``m = mean_{i≠j} exp(S_ij)`` of the current batch (initialised to the first ``m``).
    """

    ema: Tensor

    def __init__(self, rate: float = 0.01) -> None:
        super().__init__()
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"EMA rate must be in (0, 1], got {rate}")
        self.rate = rate
        self.register_buffer("ema", torch.tensor(float("nan")))

    def forward(self, scores: Scores) -> Tensor:
        r = as_reductions(scores)
        if self.training:
            with torch.no_grad():
                m = torch.exp(r.log_mean_exp_neg()).to(self.ema.dtype)
                if torch.isnan(self.ema):
                    self.ema.copy_(m)
                else:
                    self.ema.mul_(1.0 - self.rate).add_(self.rate * m)
        ema = self.ema if not torch.isnan(self.ema) else torch.exp(r.log_mean_exp_neg()).detach()
        return mine(r, ema.to(r.positive.dtype))


# ---------------------------------------------------------------------------------------------
# Registry


# ---------------------------------------------------------------------------------------------
# Pointwise: the per-pair log density-ratio estimate each bound's optimum defines


def pointwise_log_ratio(scores: Tensor) -> Tensor:
    """``S_ii``: the critic is ``log r`` at the optimum (JS loss, SMILE): ``[K]``."""
    return scores.diagonal()


def pointwise_nwj(scores: Tensor) -> Tensor:
    """``S_ii − 1``: NWJ's optimal critic is ``1 + log r``: ``[K]``."""
    return scores.diagonal() - 1.0


def pointwise_tuba(scores: Tensor, baseline: Tensor) -> Tensor:
    """``S_ii − b(y_i)``: TUBA's optimum is ``S = log r + b(y)``: ``[K]``."""
    return scores.diagonal() - baseline


def pointwise_flo(scores: Tensor, u: Tensor) -> Tensor:
    """``−u_i``: FLO's optimal ``u`` is ``−log r`` of the positive pair: ``[K]``."""
    return -u


def pointwise_dv(scores: Tensor) -> Tensor:
    """``S_ii − log mean_{i≠j} exp S_ij``: DV's critic is ``log r`` up to one constant: ``[K]``."""
    return scores.diagonal() - log_mean_exp_offdiag(scores)


def pointwise_infonce(scores: Tensor) -> Tensor:
    """``S_ii − log mean_{j≠i} exp S_ij``: InfoNCE's critic is ``log r`` up to ``c(x)``: ``[K]``."""
    return scores.diagonal() - log_mean_exp_offdiag_rows(scores)


@dataclass(frozen=True)
class BoundSpec:
    """How a bound trains and reports.

    ``estimate(scores, **extra)`` is the reported MI (nats); ``loss(scores, **extra)`` is what
    training minimises; ``scores`` is a score matrix or any :class:`~infomax.reductions.Reductions`
    layout (dense, tiled, distributed: the same function). ``extra`` names the extra input:
    ``"u"`` (FLO's u-network), ``"baseline"`` (TUBA's ``b(y)``), ``"ema"`` (MINE's running mean)
    or ``None``. ``tiles``: whether estimators may train it through the tiled kernels (MINE's
    running mean is updated from the materialised batch). ``pointwise(scores, **extra)``: the
    per-pair ``log r(x_i, y_i)`` estimate of a dense ``[K, K]`` batch that the optimum defines.
    """

    name: str
    estimate: Callable[..., Tensor]
    loss: Callable[..., Tensor]
    extra: str | None = None
    reports_with_different_function: bool = False
    description: str = ""
    tiles: bool = True
    pointwise: Callable[..., Tensor] = pointwise_dv


def _neg(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    def loss(scores: Scores, **extra: Tensor) -> Tensor:
        return -fn(scores, **extra)

    loss.__name__ = f"neg_{fn.__name__}"
    return loss


for _spec in (
    BoundSpec(
        "infonce",
        infonce,
        _neg(infonce),
        description="InfoNCE / CPC; capped at log K",
        pointwise=pointwise_infonce,
    ),
    BoundSpec(
        "nwj",
        nwj,
        _neg(nwj),
        description="NWJ (f-GAN KL); unbiased, high variance",
        pointwise=pointwise_nwj,
    ),
    BoundSpec("dv", dv, _neg(dv), description="Donsker-Varadhan; biased in the batch"),
    BoundSpec(
        "mine",
        dv,
        lambda scores, ema: -mine(scores, ema),
        extra="ema",
        description="DV value with EMA bias-corrected gradient",
        tiles=False,
    ),
    BoundSpec(
        "tuba",
        tuba,
        _neg(tuba),
        extra="baseline",
        description="TUBA with a learned baseline b(y)",
        pointwise=pointwise_tuba,
    ),
    BoundSpec(
        "js",
        js_estimate,
        js_loss,
        reports_with_different_function=True,
        description="trains with the JS loss, reports 1 + E_p[S] - E_q[exp S]",
        pointwise=pointwise_log_ratio,
    ),
    BoundSpec(
        "smile",
        smile,
        js_loss,
        reports_with_different_function=True,
        description="trains with the JS loss, reports the clipped DV (tau = 5)",
        pointwise=pointwise_log_ratio,
    ),
    BoundSpec(
        "flo",
        flo,
        _neg(flo),
        extra="u",
        description="FLO; tight, unbiased gradient",
        pointwise=pointwise_flo,
    ),
):
    BOUNDS.add(_spec.name, _spec)
