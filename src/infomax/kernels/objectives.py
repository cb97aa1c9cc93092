"""Every bound and divergence from embeddings, dense or tiled (SPEC §8), with one definition.

The objectives are the functions of :mod:`infomax.bounds` / :mod:`infomax.divergences`; this
module only chooses how their reductions are computed (``impl``):

- ``dense``: materialise ``S = similarity(a, b)`` and pass it (:func:`dense_objective`);
- ``tiled``: pass :class:`~infomax.kernels.layouts.TiledPairScores`, which never holds ``S``
  and gathers the columns from all ranks (:func:`tiled_objective`);
- ``auto``: tiled when distributed or from :data:`AUTO_MIN_ENTRIES` score entries on
  (:func:`objective_from_embeddings`).

Objective names: every bound of :data:`~infomax.registry.BOUNDS` (its reported value; ``mine``
is the DV value with the EMA-corrected gradient of :func:`infomax.bounds.mine`), ``js_loss``
(the JS training loss, minimised) and ``fmicl`` (the f-MICL objective of ``divergence``).
Distributed, each rank returns its **share** of the global value (:mod:`infomax.reductions`).

>>> import torch
>>> a, b = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
>>> t = tiled_objective(a, b, "infonce", critic="cosine", temperature=0.5, tile_size=4)
>>> d = dense_objective(a, b, "infonce", critic="cosine", temperature=0.5)
>>> bool(torch.allclose(t, d))
True
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .. import bounds, dist
from ..bounds import Scores
from ..critics import INNER_PRODUCTS, Similarity
from ..divergences import Divergence, fmicl
from ..registry import BOUNDS
from .layouts import TiledPairScores, use_tiles

OBJECTIVES = (*BOUNDS.names(), "js_loss", "fmicl")


def similarity_of(
    critic: str | Similarity, temperature: float | Tensor = 1.0, sigma: float = 1.0
) -> Similarity:
    """The :class:`~infomax.critics.Similarity` named by the kernels' keyword arguments:
    ``dot``, ``cosine`` (``temperature``) or ``gaussian`` (``sigma``, i.e. ``τ = σ²``)."""
    if isinstance(critic, Similarity):
        if not critic.inner_product:
            raise ValueError(f"the kernels need an inner-product similarity, got {critic.kind!r}")
        return critic
    if critic not in INNER_PRODUCTS:
        raise ValueError(f"the kernels need a separable critic {INNER_PRODUCTS}, got {critic!r}")
    if critic == "gaussian":
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        return Similarity("gaussian", sigma**2)
    if critic == "cosine" and not isinstance(temperature, Tensor) and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return Similarity(critic, temperature if critic == "cosine" else 1.0)


def objective_value(
    objective: str,
    scores: Scores,
    *,
    u: Tensor | None = None,
    baseline: Tensor | None = None,
    ema: Tensor | None = None,
    divergence: str | Divergence = "kl",
    alpha: float = 1.0,
    clip: float = 5.0,
) -> Tensor:
    """``objective`` (module doc) of ``scores``: a score matrix or any reductions layout."""
    if objective == "fmicl":
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        return fmicl(scores, divergence, alpha)
    if objective == "js_loss":
        return bounds.js_loss(scores)
    if objective == "smile":
        return bounds.smile(scores, clip)
    spec = BOUNDS.get(objective)
    if spec.extra is None:
        return spec.estimate(scores)
    value = {"u": u, "baseline": baseline, "ema": ema}[spec.extra]
    if value is None:
        raise ValueError(f"{objective} needs {spec.extra}: see infomax.bounds.{objective}")
    if objective == "mine":
        return bounds.mine(scores, value)
    return spec.estimate(scores, **{spec.extra: value})


def _check(a: Tensor, b: Tensor, objective: str, symmetric: bool) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"a and b must both be [K, d], got {tuple(a.shape)} and {tuple(b.shape)}")
    if symmetric and objective == "tuba":
        raise ValueError("symmetric TUBA is undefined: its baseline b(y_j) belongs to the columns")


def objective_from_embeddings(
    a: Tensor,
    b: Tensor,
    objective: str,
    *,
    impl: str = "auto",
    critic: str | Similarity = "dot",
    temperature: float | Tensor = 1.0,
    sigma: float = 1.0,
    symmetric: bool = False,
    tile_size: int | tuple[int, int] | None = None,
    **options: Any,
) -> Tensor:
    """``objective`` (module doc) of ``S = critic(a, b)``, dense or tiled, same value.

    Args:
        a: ``[K, d]`` embeddings ``g(x_i)`` (this rank's rows when distributed).
        b: ``[K, d]`` embeddings ``h(y_i)``; row ``i`` is the positive of ``a_i``.
        objective: one of :data:`OBJECTIVES`.
        impl: ``dense`` (materialise ``S``; single process), ``tiled`` (never), ``auto``
            (:func:`use_tiles`; also tiled under ``torchrun``).
        critic: a :class:`~infomax.critics.Similarity`, or ``dot``, ``cosine``
            (``temperature``) or ``gaussian`` (``sigma``).
        symmetric: average the objective of ``S`` and ``Sᵀ`` (two-sided InfoNCE).
        tile_size: see :func:`~infomax.kernels.tiled.tiled_reduce`.
        options: ``u`` (FLO's ``[K]``), ``baseline`` (TUBA's ``[K]``), ``ema`` (MINE's running
            mean), ``divergence`` and ``alpha`` (f-MICL), ``clip`` (SMILE's ``τ``).

    Returns:
        A 0-d tensor (this rank's share of the global value when distributed).
    """
    _check(a, b, objective, symmetric)
    sim = similarity_of(critic, temperature, sigma)
    world = dist.world_size()
    tiled = use_tiles(impl, a.shape[0] * a.shape[0] * world) or (impl == "auto" and world > 1)
    if not tiled and world > 1:
        raise ValueError("the dense objective is single-process; use impl='tiled' across ranks")

    def one(rows: Tensor, cols: Tensor) -> Tensor:
        layout = TiledPairScores(rows, cols, sim, tile_size) if tiled else sim(rows, cols)
        return objective_value(objective, layout, **options)

    value = one(a, b)
    return 0.5 * (value + one(b, a)) if symmetric else value


def tiled_objective(a: Tensor, b: Tensor, objective: str, **kwargs: Any) -> Tensor:
    """:func:`objective_from_embeddings` with ``impl="tiled"``: never materialises ``S``."""
    return objective_from_embeddings(a, b, objective, impl="tiled", **kwargs)


def dense_objective(a: Tensor, b: Tensor, objective: str, **kwargs: Any) -> Tensor:
    """:func:`objective_from_embeddings` with ``impl="dense"``: the materialised reference
    (single process, ``O(K²)`` memory)."""
    return objective_from_embeddings(a, b, objective, impl="dense", **kwargs)
