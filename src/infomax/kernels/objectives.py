"""Every bound and divergence from embeddings, tiled (SPEC §8), with the dense functions' values.

For a separable critic the scores are ``S = s·â b̂ᵀ + shift``: ``dot`` (``s = 1``, raw
embeddings), ``cosine`` (unit vectors, ``s = 1/τ``) and ``gaussian`` (unit vectors, ``s = 1/σ²``,
``shift = −1/σ²``). Normalisation and the scale stay outside the kernels (autograd handles them);
:func:`~infomax.kernels.tiled.tiled_reduce` only sees dot products. Each objective is assembled
from a diagonal term (``O(K·d)``, plain autograd) and one tiled reduction:

============== ============================================================ ==========
objective      value (``n = K(K−1)``)                                       reduction
============== ============================================================ ==========
``infonce``    ``mean_i [S_ii − lse_j S_ij] + log K``                       ``rowlse``
``nwj``        ``mean_i S_ii − exp(G − log n − 1)``                          ``lse`` → G
``dv``         ``mean_i S_ii − (G − log n)``                                 ``lse``
``mine``       DV value, EMA-corrected gradient (:func:`infomax.bounds.mine`) ``lse``
``tuba``       ``1 + mean_i S_ii − exp(G_b − log n) − mean_j b_j``            ``lse``, col shift
``js``         ``1 + mean_i S_ii − exp(G − log n)``                          ``lse``
``smile``      ``mean_i S_ii − (G_clip − log n)``                            ``lse``, clip
``js_loss``    ``mean_i softplus(−S_ii) + Σ_{i≠j} softplus(S_ij) / n``       ``sum``
``flo``        ``1 − mean u − Σ_{i≠j} exp(S_ij − S_ii − u_i) / n``           ``sum``, row shift
``fmicl``      ``mean_i f′(e^{S_ii}) − α Σ_{i≠j} f*(f′(e^{S_ij})) / n``       ``sum``
============== ============================================================ ==========

with ``G = logsumexp_{i≠j} S_ij``. **Distributed** (SPEC §4): rows are this rank's ``K_r``
embeddings, columns are gathered from all ranks with :func:`infomax.dist.all_gather_with_grad`
(positives at column ``rank·K_r + i``); every count above uses the global ``K``, global ``G`` is
the ``logsumexp`` of the ranks' gathered partial ``G_r``, and each rank returns its *share*: the
shares sum over ranks to the single-process value, and the gradient reaching each rank's inputs
is that of the global objective. The dense references are the functions of
:mod:`infomax.bounds` / :mod:`infomax.divergences` on the materialised ``S``
(:func:`dense_objective`).

>>> import torch
>>> a, b = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
>>> t = tiled_objective(a, b, "infonce", critic="cosine", temperature=0.5, tile_size=4)
>>> d = dense_objective(a, b, "infonce", critic="cosine", temperature=0.5)
>>> bool(torch.allclose(t, d))
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import bounds, dist
from ..critics import cosine_scores, dot_scores, gaussian_scores
from ..divergences import JS, KL, Divergence, fmicl, get_divergence
from ..registry import BOUNDS
from .tiled import tiled_reduce

OBJECTIVES = ("infonce", "nwj", "dv", "mine", "tuba", "js", "js_loss", "smile", "flo", "fmicl")
SEPARABLE_CRITICS = ("dot", "cosine", "gaussian")
#: ``impl="auto"`` tiles from this many score entries on (``4096²``: 64 MiB in fp32).
AUTO_MIN_ENTRIES = 4096 * 4096
_LOG2 = math.log(2.0)


@dataclass(frozen=True)
class _Critic:
    """Normalised embeddings with the critic's scale and shift: ``S = scale·a bᵀ + shift``."""

    a: Tensor
    b: Tensor
    scale: float | Tensor
    shift: float


def _critic(
    a: Tensor, b: Tensor, critic: str, temperature: float | Tensor, sigma: float
) -> _Critic:
    if critic == "dot":
        return _Critic(a, b, 1.0, 0.0)
    if critic == "cosine":
        if float(temperature) <= 0:
            raise ValueError(f"temperature must be > 0, got {float(temperature)}")
        return _Critic(F.normalize(a, dim=-1), F.normalize(b, dim=-1), 1.0 / temperature, 0.0)
    if critic == "gaussian":
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        inv = 1.0 / float(sigma) ** 2
        return _Critic(F.normalize(a, dim=-1), F.normalize(b, dim=-1), inv, -inv)
    raise ValueError(f"tiled kernels need a separable critic {SEPARABLE_CRITICS}, got {critic!r}")


def _check_inputs(a: Tensor, b: Tensor, objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"a and b must both be [K, d], got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] * dist.world_size() < 2:
        raise ValueError("need K >= 2 samples (one positive and at least one negative)")


def _per_row(name: str, t: Tensor | None, k: int) -> Tensor:
    if t is None:
        raise ValueError(f"this objective needs {name}: a [{k}] tensor")
    if t.shape != (k,):
        raise ValueError(f"{name} must have shape [{k}], got {tuple(t.shape)}")
    return t


def _one_side(
    rows: Tensor,
    cols_local: Tensor,
    c: _Critic,
    objective: str,
    *,
    u: Tensor | None,
    baseline: Tensor | None,
    ema: Tensor | None,
    divergence: Divergence,
    alpha: float,
    clip: float,
    tile_size: int | tuple[int, int] | None,
) -> Tensor:
    """This rank's share of ``objective(S)`` for ``S = rows · gathered(cols)ᵀ`` (see module doc)."""
    k = rows.shape[0]
    cols = dist.all_gather_with_grad(cols_local)
    m, world, offset = cols.shape[0], dist.world_size(), dist.diagonal_offset(k)
    n = m * (m - 1)
    a = rows * c.scale
    pos = (a * cols_local).sum(dim=1) + c.shift  # S_ii for the local rows: [k]
    common = {"shift": c.shift, "diag_offset": offset, "tile_size": tile_size}

    def global_lse(**kw: object) -> Tensor:
        g = tiled_reduce(a, cols, "lse", exclude_diagonal=True, **common, **kw)  # type: ignore[arg-type]
        return torch.logsumexp(dist.all_gather_scalars_with_grad(g), 0) if world > 1 else g

    if objective == "infonce":
        lse = tiled_reduce(a, cols, "rowlse", **common)  # type: ignore[arg-type]
        return (pos.sum() - lse) / m + math.log(m) / world
    if objective in ("nwj", "dv", "js", "smile", "mine"):
        g = global_lse(clip=clip if objective == "smile" else None)
        log_mean = g - math.log(n)
        if objective == "nwj":
            return pos.sum() / m - torch.exp(log_mean - 1.0) / world
        if objective == "js":
            return (1.0 - torch.exp(log_mean)) / world + pos.sum() / m
        if objective == "mine":
            if ema is None:
                raise ValueError("mine needs ema: the running mean of mean_{i≠j} exp(S_ij)")
            mean = torch.exp(log_mean)
            log_term = log_mean.detach() + (mean - mean.detach()) / ema.detach()
            return pos.sum() / m - log_term / world
        return pos.sum() / m - log_mean / world  # dv, smile
    if objective == "tuba":
        base = _per_row("baseline", baseline, k)
        g = global_lse(col_shift=dist.all_gather_with_grad(base))
        return (1.0 - torch.exp(g - math.log(n))) / world + (pos.sum() - base.sum()) / m
    if objective == "js_loss":
        neg = tiled_reduce(a, cols, "sum", exclude_diagonal=True, phi="softplus", **common)  # type: ignore[arg-type]
        return F.softplus(-pos).sum() / m + neg / n
    if objective == "flo":
        uu = _per_row("u", u, k)
        neg = tiled_reduce(a, cols, "sum", row_shift=pos + uu, exclude_diagonal=True, **common)  # type: ignore[arg-type]
        return 1.0 / world - uu.sum() / m - neg / n
    # fmicl
    phi, per_entry = negative_phi(divergence)
    neg = tiled_reduce(a, cols, "sum", exclude_diagonal=True, phi=phi, **common)  # type: ignore[arg-type]
    neg = neg + per_entry * k * (m - 1)
    return divergence.positive(pos).sum() / m - alpha * neg / n


def negative_phi(divergence: Divergence) -> tuple[str | Callable[[Tensor], Tensor], float]:
    """``(φ, c)`` with ``divergence.negative(s) = φ(s) + c``: the fast in-place tile functions
    for KL (``exp``, ``c = 0``) and JS (``softplus``, ``c = −log 2``), else the divergence's own
    ``negative`` (differentiated per tile)."""
    if divergence is KL:
        return "exp", 0.0
    if divergence is JS:
        return "softplus", -_LOG2
    return divergence.negative, 0.0


def tiled_objective(
    a: Tensor,
    b: Tensor,
    objective: str,
    *,
    critic: str = "dot",
    temperature: float | Tensor = 1.0,
    sigma: float = 1.0,
    u: Tensor | None = None,
    baseline: Tensor | None = None,
    ema: Tensor | None = None,
    divergence: str | Divergence = "kl",
    alpha: float = 1.0,
    clip: float = 5.0,
    symmetric: bool = False,
    tile_size: int | tuple[int, int] | None = None,
) -> Tensor:
    """``objective`` of ``S = critic(a, b)`` without materialising ``S`` (module table).

    Args:
        a: ``[K, d]`` embeddings ``g(x_i)`` (this rank's rows when distributed).
        b: ``[K, d]`` embeddings ``h(y_i)``; row ``i`` is the positive of ``a_i``.
        objective: one of :data:`OBJECTIVES`; ``js`` is the JS-trained critic's MI estimate,
            ``js_loss`` the JS training loss (minimised); every other value is a bound in nats.
        critic: ``dot``, ``cosine`` (``temperature``) or ``gaussian`` (``sigma``).
        u: FLO's ``[K]`` ``u(x_i, y_i)``; baseline: TUBA's ``[K]`` ``b(y_j)``; ema: MINE's
            running mean (0-d); divergence, alpha: f-MICL; clip: SMILE's ``τ``.
        symmetric: average the objective of ``S`` and ``Sᵀ`` (two-sided InfoNCE).
        tile_size: see :func:`~infomax.kernels.tiled.tiled_reduce`.

    Returns:
        A 0-d tensor equal to the dense function's value (its share of it when distributed).
    """
    _check_inputs(a, b, objective)
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if objective == "smile" and clip <= 0:
        raise ValueError(f"SMILE clip must be > 0, got {clip}")
    if symmetric and objective == "tuba":
        raise ValueError("symmetric TUBA is undefined: its baseline b(y_j) belongs to the columns")
    c = _critic(a, b, critic, temperature, sigma)
    kw = {
        "u": u,
        "baseline": baseline,
        "ema": ema,
        "divergence": get_divergence(divergence),
        "alpha": alpha,
        "clip": clip,
        "tile_size": tile_size,
    }
    value = _one_side(c.a, c.b, c, objective, **kw)  # type: ignore[arg-type]
    if symmetric:
        value = 0.5 * (value + _one_side(c.b, c.a, c, objective, **kw))  # type: ignore[arg-type]
    return value


def dense_objective(
    a: Tensor,
    b: Tensor,
    objective: str,
    *,
    critic: str = "dot",
    temperature: float | Tensor = 1.0,
    sigma: float = 1.0,
    u: Tensor | None = None,
    baseline: Tensor | None = None,
    ema: Tensor | None = None,
    divergence: str | Divergence = "kl",
    alpha: float = 1.0,
    clip: float = 5.0,
    symmetric: bool = False,
) -> Tensor:
    """The materialised reference: the :mod:`infomax.bounds` function on ``S = critic(a, b)``.

    Single process only (``O(K²)`` memory); same arguments and value as :func:`tiled_objective`.
    """
    _check_inputs(a, b, objective)
    if dist.world_size() > 1:
        raise ValueError("dense_objective is single-process; use tiled_objective across ranks")
    if critic == "dot":
        scores = dot_scores(a, b)
    elif critic == "cosine":
        scores = cosine_scores(a, b, temperature)
    elif critic == "gaussian":
        scores = gaussian_scores(a, b, sigma)
    else:
        raise ValueError(f"critic must be one of {SEPARABLE_CRITICS}, got {critic!r}")

    def value(s: Tensor) -> Tensor:
        if objective == "fmicl":
            return fmicl(s, divergence, alpha)
        if objective == "js_loss":
            return bounds.js_loss(s)
        if objective == "smile":
            return bounds.smile(s, clip)
        extra = {"flo": {"u": u}, "tuba": {"baseline": baseline}, "mine": {"ema": ema}}
        kwargs = extra.get(objective, {})
        for key, v in kwargs.items():
            if v is None:
                raise ValueError(f"{objective} needs {key}")
        fn = bounds.mine if objective == "mine" else BOUNDS.get(objective).estimate
        return fn(s, **kwargs)  # type: ignore[no-any-return,arg-type]

    out = value(scores)
    return 0.5 * (out + value(scores.T)) if symmetric else out


def objective_from_embeddings(
    a: Tensor, b: Tensor, objective: str, *, impl: str = "auto", **kwargs: object
) -> Tensor:
    """Front door for estimators and SSL losses: dense or tiled, same value.

    ``impl="dense"`` materialises ``S`` (:func:`dense_objective`), ``"tiled"`` never does
    (:func:`tiled_objective`), ``"auto"`` tiles when distributed or when ``K² ≥``
    :data:`AUTO_MIN_ENTRIES`. ``kwargs`` are those of :func:`tiled_objective`.
    """
    if impl not in ("auto", "dense", "tiled"):
        raise ValueError(f"impl must be 'auto', 'dense' or 'tiled', got {impl!r}")
    if impl == "auto":
        big = a.shape[0] * a.shape[0] * dist.world_size() >= AUTO_MIN_ENTRIES
        impl = "tiled" if big or dist.world_size() > 1 else "dense"
    if impl == "dense":
        kwargs.pop("tile_size", None)
        return dense_objective(a, b, objective, **kwargs)  # type: ignore[arg-type]
    return tiled_objective(a, b, objective, **kwargs)  # type: ignore[arg-type]
