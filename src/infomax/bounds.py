"""Variational lower bounds on mutual information as pure functions of the score matrix.

SPEC §0 and §2. ``scores: [K, K]`` with ``scores[i, j] = f(x_i, y_j)``: the diagonal holds samples
of the joint ``p(x, y)``, the ``K(K−1)`` off-diagonal entries samples of ``p(x)p(y)``. Every
function returns the bound in **nats** (a scalar); the training loss is its negative unless the
registry entry says otherwise (JS and SMILE train with the JS loss). ``mean_{i≠j}`` is the mean
over off-diagonal entries. Each bound is written from per-row terms (``*_terms`` functions) so
it can be computed in tiles (SPEC §8), across ranks, and bootstrapped.

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
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import BOUNDS


def _check_square(scores: Tensor) -> int:
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"scores must be a square [K, K] matrix, got shape {tuple(scores.shape)}")
    if scores.shape[0] < 2:
        raise ValueError("scores need K >= 2 samples (one positive and at least one negative)")
    return scores.shape[0]


def _offdiag(scores: Tensor, fill: float) -> Tensor:
    """``scores`` with the diagonal replaced by ``fill`` (``-inf`` to drop it from a logsumexp)."""
    eye = torch.eye(scores.shape[0], dtype=torch.bool, device=scores.device)
    return scores.masked_fill(eye, fill)


def log_mean_exp_offdiag(scores: Tensor) -> Tensor:
    """``log mean_{i≠j} exp(S_ij)`` computed with one ``logsumexp`` (no overflow)."""
    k = _check_square(scores)
    return torch.logsumexp(_offdiag(scores, -math.inf).reshape(-1), 0) - math.log(k * (k - 1))


def log_mean_exp_offdiag_rows(scores: Tensor) -> Tensor:
    """Per row ``log mean_{j≠i} exp(S_ij)``: ``[K]``."""
    k = _check_square(scores)
    return torch.logsumexp(_offdiag(scores, -math.inf), dim=1) - math.log(k - 1)


# ---------------------------------------------------------------------------------------------
# InfoNCE


def infonce_terms(scores: Tensor) -> Tensor:
    """Per-row InfoNCE terms ``S_ii − logsumexp_j S_ij + log K``: ``[K]``."""
    k = _check_square(scores)
    return scores.diagonal() - torch.logsumexp(scores, dim=1) + math.log(k)


def infonce(scores: Tensor) -> Tensor:
    """InfoNCE (CPC) bound ``mean_i [S_ii − logsumexp_j S_ij] + log K`` (van den Oord et al. 2018).

    Low variance but never above ``log K``: the positive sits in its own denominator.
    """
    return infonce_terms(scores).mean()


# ---------------------------------------------------------------------------------------------
# NWJ / TUBA / JS


def nwj(scores: Tensor) -> Tensor:
    """NWJ (f-GAN KL) bound ``mean_i S_ii − e^{−1} mean_{i≠j} exp(S_ij)`` (Nguyen et al. 2010).

    Unbiased; its variance grows like ``e^I``. Optimal critic ``S = 1 + log p(x,y)/p(x)p(y)``.
    """
    _check_square(scores)
    return scores.diagonal().mean() - torch.exp(log_mean_exp_offdiag(scores) - 1.0)


def tuba(scores: Tensor, baseline: Tensor) -> Tensor:
    """TUBA bound ``1 + mean_i S_ii − mean_{i≠j} exp(S_ij − b(y_j)) − mean_j b(y_j)``.

    ``baseline: [K]`` holds ``b(y_j)`` (Poole et al. 2019); NWJ is TUBA with ``b ≡ 1``.
    """
    k = _check_square(scores)
    if baseline.shape != (k,):
        raise ValueError(f"baseline must have shape [{k}], got {tuple(baseline.shape)}")
    shifted = scores - baseline.unsqueeze(0)
    return (
        1.0 + scores.diagonal().mean() - torch.exp(log_mean_exp_offdiag(shifted)) - baseline.mean()
    )


def js_estimate(scores: Tensor) -> Tensor:
    """MI reported by a JS-trained critic: ``1 + mean_i S_ii − mean_{i≠j} exp(S_ij)``.

    A JS-trained critic approximates ``log p(x,y)/p(x)p(y)``, so this is NWJ applied to ``S + 1``.
    """
    _check_square(scores)
    return 1.0 + scores.diagonal().mean() - torch.exp(log_mean_exp_offdiag(scores))


def js_loss(scores: Tensor) -> Tensor:
    """JS training loss (minimised): ``mean_i softplus(−S_ii) + mean_{i≠j} softplus(S_ij)``."""
    k = _check_square(scores)
    neg = F.softplus(_offdiag(scores, -math.inf)).sum() / (k * (k - 1))
    return F.softplus(-scores.diagonal()).mean() + neg


# ---------------------------------------------------------------------------------------------
# DV / MINE / SMILE


def dv(scores: Tensor) -> Tensor:
    """Donsker–Varadhan bound ``mean_i S_ii − log mean_{i≠j} exp(S_ij)`` (biased in the batch)."""
    _check_square(scores)
    return scores.diagonal().mean() - log_mean_exp_offdiag(scores)


def mine(scores: Tensor, ema: Tensor) -> Tensor:
    """DV value whose gradient uses a running mean in the log-term (Belghazi et al. 2018).

    Forward equals :func:`dv`. Backward replaces ``∇ log m`` with ``∇m / ema`` where
    ``m = mean_{i≠j} exp(S_ij)`` and ``ema`` (detached) is its exponential moving average, which
    removes the mini-batch bias of the DV gradient. :class:`MINELoss` keeps ``ema``.
    """
    _check_square(scores)
    log_m = log_mean_exp_offdiag(scores)
    m = torch.exp(log_m)
    correction = (m - m.detach()) / ema.detach()
    return scores.diagonal().mean() - (log_m.detach() + correction)


def smile(scores: Tensor, clip: float = 5.0) -> Tensor:
    """SMILE estimate ``mean_i S_ii − log mean_{i≠j} clip(exp(S_ij), e^{−τ}, e^{τ})`` (Song & Ermon
    2020), ``τ = clip``; the bias grows as ``τ`` shrinks. Trained with :func:`js_loss`."""
    if clip <= 0:
        raise ValueError(f"SMILE clip must be > 0, got {clip}")
    _check_square(scores)
    return scores.diagonal().mean() - log_mean_exp_offdiag(scores.clamp(-clip, clip))


# ---------------------------------------------------------------------------------------------
# FLO


def flo_terms(scores: Tensor, u: Tensor) -> Tensor:
    """Per-row FLO terms ``1 − u_i − exp(−u_i) · mean_{j≠i} exp(S_ij − S_ii)``: ``[K]``."""
    k = _check_square(scores)
    if u.shape != (k,):
        raise ValueError(f"u must have shape [{k}], got {tuple(u.shape)}")
    log_neg = log_mean_exp_offdiag_rows(scores - scores.diagonal().unsqueeze(1))
    return 1.0 - u - torch.exp(log_neg - u)


def flo(scores: Tensor, u: Tensor) -> Tensor:
    """FLO bound ``1 + mean_i [−u_i − exp(−u_i) mean_{j≠i} exp(S_ij − S_ii)]`` (Guo et al. 2022).

    From ``−log t = max_u (1 − u − e^{−u} t)`` applied to InfoNCE's log-partition; ``u_i`` comes
    from a second network ``u(x_i, y_i)``; tight at ``u_i = log mean_{j≠i} exp(S_ij − S_ii)``
    (:func:`flo_optimal_u`), and linear in the negative average so its gradient is unbiased.
    """
    return flo_terms(scores, u).mean()


def flo_optimal_u(scores: Tensor) -> Tensor:
    """The maximiser ``u*_i = log mean_{j≠i} exp(S_ij − S_ii)`` of FLO for fixed scores: ``[K]``."""
    _check_square(scores)
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

    def forward(self, scores: Tensor) -> Tensor:
        if self.training:
            with torch.no_grad():
                m = torch.exp(log_mean_exp_offdiag(scores)).to(self.ema.dtype)
                if torch.isnan(self.ema):
                    self.ema.copy_(m)
                else:
                    self.ema.mul_(1.0 - self.rate).add_(self.rate * m)
        ema = self.ema if not torch.isnan(self.ema) else torch.exp(log_mean_exp_offdiag(scores))
        return mine(scores, ema.to(scores.dtype))


# ---------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class BoundSpec:
    """How a bound trains and reports.

    ``estimate(scores, **extra)`` is the reported MI (nats); ``loss(scores, **extra)`` is what
    training minimises. ``extra`` names the extra input: ``"u"`` (FLO's u-network),
    ``"baseline"`` (TUBA's ``b(y)``), ``"ema"`` (MINE's running mean) or ``None``.
    """

    name: str
    estimate: Callable[..., Tensor]
    loss: Callable[..., Tensor]
    extra: str | None = None
    reports_with_different_function: bool = False
    description: str = ""


def _neg(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    def loss(scores: Tensor, **extra: Tensor) -> Tensor:
        return -fn(scores, **extra)

    loss.__name__ = f"neg_{fn.__name__}"
    return loss


for _spec in (
    BoundSpec("infonce", infonce, _neg(infonce), description="InfoNCE / CPC; capped at log K"),
    BoundSpec("nwj", nwj, _neg(nwj), description="NWJ (f-GAN KL); unbiased, high variance"),
    BoundSpec("dv", dv, _neg(dv), description="Donsker-Varadhan; biased in the batch"),
    BoundSpec(
        "mine",
        dv,
        lambda scores, ema: -mine(scores, ema),
        extra="ema",
        description="DV value with EMA bias-corrected gradient",
    ),
    BoundSpec(
        "tuba",
        tuba,
        _neg(tuba),
        extra="baseline",
        description="TUBA with a learned baseline b(y)",
    ),
    BoundSpec(
        "js",
        js_estimate,
        js_loss,
        reports_with_different_function=True,
        description="trains with the JS loss, reports 1 + E_p[S] - E_q[exp S]",
    ),
    BoundSpec(
        "smile",
        smile,
        js_loss,
        reports_with_different_function=True,
        description="trains with the JS loss, reports the clipped DV (tau = 5)",
    ),
    BoundSpec("flo", flo, _neg(flo), extra="u", description="FLO; tight, unbiased gradient"),
):
    BOUNDS.add(_spec.name, _spec)
