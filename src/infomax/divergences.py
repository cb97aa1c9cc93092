"""f-divergences and the f-MICL objective as pure functions of the score matrix.

SPEC §3 (Lu et al., "f-MICL", 2023). For convex ``f`` with ``f(1) = 0``,
``D_f(p_XY ‖ p_X p_Y) ≥ E_p[T] − E_q[f*(T)]``. f-MICL models the density ratio as
``r = exp(S)`` and uses ``T = f′(r)``; the Legendre identity ``f*(f′(r)) = r f′(r) − f(r)``
gives the objective (maximised)

    L_f = mean_i f′(r_ii) − α · mean_{i≠j} [r_ij f′(r_ij) − f(r_ij)],   r = exp(S).

Each :class:`Divergence` carries ``f`` and ``f′`` on ``u`` (for tests) and the two terms as
functions of ``s = log r`` in a closed form that does not overflow where avoidable:

| name | ``f′(eˢ)`` | ``r f′(r) − f(r)`` at ``r = eˢ`` |
|---|---|---|
| kl | ``1 + s`` | ``eˢ`` |
| js | ``log 2 + s − softplus(s)`` | ``softplus(s) − log 2`` |
| pearson | ``2(eˢ − 1)`` | ``e^{2s} − 1`` |
| sqhellinger | ``1 − e^{−s/2}`` | ``e^{s/2} − 1`` |
| tsallis (a) | ``(a e^{(a−1)s} − 1)/(a − 1)`` | ``e^{a s}`` |
| vlc | ``1 − 4 σ(−s)²`` | ``(1 + 2σ(s))(2σ(s) − 1)`` |

For KL with ``α = 1``, ``L_f = 1 + mean_i S_ii − mean_{i≠j} exp(S_ij)``: the JS-estimate formula
of SPEC §2. It differs from NT-Xent / InfoNCE in its negative term: a plain mean of
``exp(S_ij)`` over the negatives, instead of a log-sum-exp over a row that also holds the
positive.

>>> import torch
>>> s = torch.zeros(3, 3)
>>> float(fmicl(s, "kl"))  # 1 + 0 - 1
0.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .bounds import Scores
from .reductions import ElementwisePhi, PairScores, Phi, apply_phi, as_reductions, softplus
from .registry import DIVERGENCES

_LOG2 = math.log(2.0)


@dataclass(frozen=True)
class Divergence:
    """A convex generator ``f`` (``f(1) = 0``) with the two f-MICL terms in log-space.

    ``f(u)``, ``f_prime(u)``: the generator and its derivative on ``u > 0``.
    ``positive(s) = f′(eˢ)``: the joint (diagonal) term.
    ``negative(s) = r f′(r) − f(r)`` at ``r = eˢ``, i.e. ``f*(f′(r))``: the marginal term, stored
    as ``φ(s) + offset`` with ``φ = negative_phi``: for every divergence here an
    :class:`~infomax.reductions.ElementwisePhi` ``w·g(βs)``, which the tiled kernels evaluate
    from one ``exp2`` per score (:mod:`infomax.kernels.tiled`).
    """

    name: str
    f: Callable[[Tensor], Tensor]
    f_prime: Callable[[Tensor], Tensor]
    positive: Callable[[Tensor], Tensor]
    negative_phi: Phi
    negative_offset: float = 0.0

    def negative(self, s: Tensor) -> Tensor:
        """``f*(f′(eˢ)) = φ(s) + offset``."""
        return apply_phi(self.negative_phi, s) + self.negative_offset


def tsallis(a: float = 2.0) -> Divergence:
    """Tsallis-``a`` generator ``f(u) = (u^a − u)/(a − 1)`` for ``a > 0, a ≠ 1``."""
    if a <= 0 or a == 1:
        raise ValueError(f"Tsallis alpha must be > 0 and != 1, got {a}")
    return Divergence(
        f"tsallis{a:g}",
        f=lambda u: (u.pow(a) - u) / (a - 1),
        f_prime=lambda u: (a * u.pow(a - 1) - 1) / (a - 1),
        positive=lambda s: (a * torch.exp((a - 1) * s) - 1) / (a - 1),
        negative_phi=ElementwisePhi("exp", rate=a),
    )


KL = Divergence(
    "kl",
    f=lambda u: u * torch.log(u),
    f_prime=lambda u: 1 + torch.log(u),
    positive=lambda s: 1 + s,
    negative_phi="exp",
)
JS = Divergence(
    "js",
    f=lambda u: u * torch.log(u) - (u + 1) * torch.log((u + 1) / 2),
    f_prime=lambda u: torch.log(2 * u / (u + 1)),
    positive=lambda s: _LOG2 + s - softplus(s),
    negative_phi="softplus",
    negative_offset=-_LOG2,
)
PEARSON = Divergence(
    "pearson",
    f=lambda u: (u - 1) ** 2,
    f_prime=lambda u: 2 * (u - 1),
    positive=lambda s: 2 * torch.expm1(s),
    negative_phi=ElementwisePhi("exp", rate=2.0),
    negative_offset=-1.0,
)
SQUARED_HELLINGER = Divergence(
    "sqhellinger",
    f=lambda u: (torch.sqrt(u) - 1) ** 2,
    f_prime=lambda u: 1 - u.rsqrt(),
    positive=lambda s: -torch.expm1(-s / 2),
    negative_phi=ElementwisePhi("exp", rate=0.5),
    negative_offset=-1.0,
)
VLC = Divergence(
    "vlc",
    f=lambda u: (u - 1) ** 2 / (u + 1),
    f_prime=lambda u: 1 - 4 / (u + 1) ** 2,
    positive=lambda s: 1 - 4 * torch.sigmoid(-s) ** 2,
    negative_phi=ElementwisePhi("sigmoid_sq", weight=4.0),  # (1 + 2σ)(2σ − 1) = 4σ² − 1
    negative_offset=-1.0,
)

for _div in (KL, JS, PEARSON, SQUARED_HELLINGER, VLC):
    DIVERGENCES.add(_div.name, _div)
DIVERGENCES.add("tsallis", tsallis(2.0))


def get_divergence(divergence: str | Divergence) -> Divergence:
    """A :class:`Divergence` from its registry name (``tsallis`` is ``a = 2``) or as given."""
    return divergence if isinstance(divergence, Divergence) else DIVERGENCES.get(divergence)


def fmicl(scores: Scores, divergence: str | Divergence = "kl", alpha: float = 1.0) -> Tensor:
    """f-MICL objective ``L_f = mean_i f′(r_i⁺) − α mean_{negatives} f*(f′(r⁻))`` (maximised; a
    lower bound on ``I_f`` when ``α = 1``), ``r = exp(S)``.

    ``scores``: ``[K, K]`` with ``S = log r`` (diagonal = positives), or any layout of
    :mod:`infomax.reductions` (SimCLR's ``2N`` anchors, tiled, across ranks); ``alpha`` weights
    the negative term.
    """
    r = as_reductions(scores)
    div = get_divergence(divergence)
    neg = r.neg_sum(div.negative_phi, div.negative_offset)
    return r.mean(div.positive(r.positive)) - alpha * r.mean(neg) / r.negatives


def fmicl_terms(scores: Tensor, divergence: str | Divergence, alpha: float = 1.0) -> Tensor:
    """Per-row f-MICL terms ``f′(r_ii) − α mean_{j≠i} [r_ij f′(r_ij) − f(r_ij)]``: ``[K]``."""
    return fmicl(PairScores(scores, per_row=True), divergence, alpha)
