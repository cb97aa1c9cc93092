"""Distribution-matching metrics: how close is a sample ``z: [n, d]`` to ``N(0, I)``,
``U[0, 1]^d`` or another target law of :mod:`infomax.dm.targets` (SPEC §7)?

- Per dimension: Kolmogorov–Smirnov p-values against the target marginal ``F``
  (``scipy.stats.kstest``) and Shapiro–Wilk p-values (``scipy.stats.shapiro``; for a
  non-Gaussian target on the normal scores ``Φ⁻¹(F(z))``, which are ``N(0, 1)`` iff ``z ~ F``).
  A dimension family *passes* when the smallest p-value times ``d`` (Bonferroni) exceeds ``α``.
- Multivariate: energy distance
  ``E = 2 E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖`` (U-statistics) between ``z`` and an independent
  target sample of the same size, with a permutation p-value ``(1 + #{E_π ≥ E}) / (1 + P)``;
  all ``P`` permutations are evaluated at once from the pooled distance matrix.
- Sliced Wasserstein-2 distance: ``SW₂ = (mean_θ W₂²(θᵀz, θᵀy))^{1/2}`` over random unit
  directions ``θ``, each 1-D ``W₂`` from sorted projections (equal sizes: matching quantiles).

:func:`dm_metrics` returns all of them; :func:`reference_metrics` runs the same function on a
true target sample (the reference row every report prints next to the representation's row).

>>> import torch
>>> z = torch.randn(200, 3, generator=torch.Generator().manual_seed(1))
>>> m = dm_metrics(z, "gaussian", n=None)
>>> m.energy_pass and m.ks_pass
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import as_2d_tensor
from .targets import TargetLaw, get_target


def sample_target(target: str | TargetLaw, n: int, dim: int, generator: torch.Generator) -> Tensor:
    """``n`` draws of the target law in ``dim`` dimensions (e.g. ``N(0, I_d)``, ``U[0, 1]^d``)
    as ``float64 [n, d]``."""
    return get_target(target).sample(n, dim, generator)


def ks_pvalues(z: Tensor, target: str | TargetLaw) -> np.ndarray:
    """Per-dimension KS p-values of ``z: [n, d]`` against the target marginal: ``[d]``."""
    from scipy import stats

    law = get_target(target)
    x = as_2d_tensor(z, "z", torch.float64).cpu()
    if law.name in ("gaussian", "uniform"):
        cdf: Any = "norm" if law.name == "gaussian" else "uniform"
        return np.array([stats.kstest(x[:, k].numpy(), cdf).pvalue for k in range(x.shape[1])])
    u = law.cdf(x).numpy()  # KS is invariant under F: test F(z) against U[0, 1]
    return np.array([stats.kstest(u[:, k], "uniform").pvalue for k in range(u.shape[1])])


def shapiro_pvalues(z: Tensor, target: str | TargetLaw) -> np.ndarray:
    """Per-dimension Shapiro–Wilk p-values: ``[d]`` (on the normal scores ``Φ⁻¹(F(z))`` for a
    non-Gaussian target).

    ``F(z)`` is clipped to ``[1e-12, 1 − 1e-12]`` first (values outside the support give extreme
    normal scores, so the test still rejects).
    """
    from scipy import stats

    law = get_target(target)
    x = as_2d_tensor(z, "z", torch.float64).cpu()
    if x.shape[0] < 3:
        raise ValueError(f"Shapiro-Wilk needs n >= 3, got {x.shape[0]}")
    scores = x.numpy()
    if law.name != "gaussian":
        scores = stats.norm.ppf(np.clip(law.cdf(x).numpy(), 1e-12, 1 - 1e-12))
    return np.array([stats.shapiro(scores[:, k]).pvalue for k in range(scores.shape[1])])


def energy_distance(x: Tensor, y: Tensor) -> Tensor:
    """Energy distance ``2 mean‖x_i − y_j‖ − mean_{i≠i'}‖x_i − x_i'‖ − mean_{j≠j'}‖y_j − y_j'‖``.

    ``x: [n, d]``, ``y: [m, d]`` (``n, m ≥ 2``); zero in expectation iff the laws are equal.
    """
    x, y = as_2d_tensor(x, "x", torch.float64), as_2d_tensor(y, "y", torch.float64)
    return _energy_u_statistic(*_check_pair(x, y))


def energy_distance_penalty(x: Tensor, y: Tensor) -> Tensor:
    """The energy distance of :func:`energy_distance` as a differentiable training penalty
    between a batch ``x: [n, d]`` and target draws ``y: [m, d]`` (``n, m ≥ 2``), in ``x``'s dtype.

    Distances are computed directly (no ``‖a‖² + ‖b‖² − 2aᵀb`` shortcut), so ``‖x_i − x_i‖`` is
    exactly 0 and its gradient too. Unbiased, zero in expectation iff the laws are equal; the
    kernel ``−‖a − b‖`` has no bandwidth, so it weighs every scale of the batch.
    """
    return _energy_u_statistic(*_check_pair(x, y), direct=True)


def _check_pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(len(x), len(y)) < 2:
        raise ValueError(
            f"need x [n>=2, d] and y [m>=2, d], got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    return x, y


def _energy_u_statistic(x: Tensor, y: Tensor, direct: bool = False) -> Tensor:
    n, m = x.shape[0], y.shape[0]
    mode = "donot_use_mm_for_euclid_dist" if direct else "use_mm_for_euclid_dist_if_necessary"
    xy = torch.cdist(x, y, compute_mode=mode).mean()
    xx = torch.cdist(x, x, compute_mode=mode).sum() / (n * (n - 1))
    yy = torch.cdist(y, y, compute_mode=mode).sum() / (m * (m - 1))
    return 2 * xy - xx - yy


def energy_test(
    x: Tensor, y: Tensor, *, permutations: int = 200, generator: torch.Generator | None = None
) -> tuple[float, float]:
    """Two-sample energy test ``(statistic, permutation p-value)``; ``x: [n, d]``, ``y: [m, d]``.

    The pooled distance matrix ``D: [n+m, n+m]`` is built once; a permutation is a 0/1 vector
    ``a`` marking the first group, and ``aᵀDa``, ``bᵀDb``, ``aᵀDb`` (``b = 1 − a``) give the three
    sums for all permutations with one ``[P, n+m] @ [n+m, n+m]`` product. Cost ``O(P (n+m)²)``.
    """
    if permutations < 1:
        raise ValueError(f"permutations must be >= 1, got {permutations}")
    stat = float(energy_distance(x, y))
    n, m = x.shape[0], y.shape[0]
    pooled = torch.cat([x.double(), y.double()])
    dist = torch.cdist(pooled, pooled)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    keys = torch.rand(permutations, n + m, generator=gen)
    a = torch.zeros(permutations, n + m, dtype=torch.float64)
    a.scatter_(1, keys.argsort(dim=1)[:, :n], 1.0)
    b = 1.0 - a
    da = a @ dist
    s_xx, s_xy = (da * a).sum(1), (da * b).sum(1)
    s_yy = ((b @ dist) * b).sum(1)
    perm_stats = 2 * s_xy / (n * m) - s_xx / (n * (n - 1)) - s_yy / (m * (m - 1))
    exceed = int((perm_stats >= stat - 1e-12).sum())
    return stat, (1 + exceed) / (1 + permutations)


#: Scales of the inverse multiquadric kernel of :func:`mmd2_imq`, in units of ``2 d`` (the
#: multi-scale choice of Wasserstein auto-encoders).
IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def mmd2_imq(x: Tensor, y: Tensor, scales: tuple[float, ...] = IMQ_SCALES) -> Tensor:
    """Unbiased squared MMD with the inverse multiquadric kernel ``k(a, b) = C / (C + ‖a − b‖²)``
    summed over ``C = 2 d · s`` for ``s`` in ``scales``:

        MMD² = mean_{i≠i'} k(x_i, x_i') + mean_{j≠j'} k(y_j, y_j') − 2 mean_{i,j} k(x_i, y_j)

    ``x: [n, d]``, ``y: [m, d]`` (``n, m ≥ 2``); differentiable (a training penalty). Zero in
    expectation iff the two laws are equal; a different statistic from the energy distance, KS,
    Shapiro–Wilk and SW₂ that the DM tests use.
    """
    x, y = _check_pair(x, y)
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    dxx, dyy, dxy = torch.cdist(x, x) ** 2, torch.cdist(y, y) ** 2, torch.cdist(x, y) ** 2
    total = x.new_zeros(())
    for s in scales:
        c = 2.0 * d * s
        kxx, kyy, kxy = c / (c + dxx), c / (c + dyy), c / (c + dxy)
        total = total + (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
        total = total + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2 * kxy.mean()
    return total


#: Differentiable penalties between a batch and target draws, by name (``DMConfig.match_kernel``).
MATCH_PENALTIES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "energy": energy_distance_penalty,
    "imq": mmd2_imq,
}


def sliced_wasserstein(
    x: Tensor, y: Tensor, *, projections: int = 128, generator: torch.Generator | None = None
) -> float:
    """``SW₂(x, y) = (mean_θ ∫₀¹ |F⁻¹_{θᵀx}(t) − F⁻¹_{θᵀy}(t)|² dt)^{1/2}`` over random unit ``θ``.

    ``x: [n, d]``, ``y: [m, d]``; for ``n ≠ m`` both quantile functions are read on a common
    grid of ``max(n, m)`` mid-points (step interpolation).
    """
    x, y = as_2d_tensor(x, "x", torch.float64), as_2d_tensor(y, "y", torch.float64)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y need the same dimension, got {x.shape[1]} and {y.shape[1]}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    theta = torch.randn(x.shape[1], projections, generator=gen, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, py = (x @ theta).sort(dim=0).values, (y @ theta).sort(dim=0).values
    k = max(x.shape[0], y.shape[0])
    t = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    qx = px[(t * x.shape[0]).long().clamp_max(x.shape[0] - 1)]
    qy = py[(t * y.shape[0]).long().clamp_max(y.shape[0] - 1)]
    return float(((qx - qy) ** 2).mean().sqrt())


@dataclass(frozen=True)
class DMMetrics:
    """All distribution-matching numbers of one sample (``n`` points, ``d`` dimensions).

    ``*_p_min``: smallest per-dimension p-value; ``*_pass``: Bonferroni ``d · p_min > α``;
    ``energy_pass``: permutation p-value ``> α``; ``sliced_w2``: distance to the target sample.
    """

    target: str
    n: int
    d: int
    ks_p_min: float
    ks_p_median: float
    ks_pass: bool
    shapiro_p_min: float
    shapiro_p_median: float
    shapiro_pass: bool
    energy: float
    energy_p: float
    energy_pass: bool
    sliced_w2: float
    permutations: int
    alpha: float

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for CSV / JSON rows)."""
        return asdict(self)


def dm_metrics(
    z: Tensor,
    target: str | TargetLaw,
    *,
    n: int | None = 500,
    permutations: int = 200,
    projections: int = 128,
    alpha: float = 0.05,
    seed: int = 0,
) -> DMMetrics:
    """Distribution-matching metrics of ``z: [N, d]`` against ``target`` (module docstring).

    ``n`` points are drawn from ``z`` without replacement (``None``: all) and compared with ``n``
    fresh target draws; everything random comes from ``seed``, so a call is reproducible.
    """
    law = get_target(target)
    z = as_2d_tensor(z, "z", torch.float64).cpu()
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    gen = torch.Generator().manual_seed(seed)
    if n is not None:
        if n < 3 or n > z.shape[0]:
            raise ValueError(f"n must be in [3, {z.shape[0]}] (rows of z), got {n}")
        z = z[torch.randperm(z.shape[0], generator=gen)[:n]]
    size, d = z.shape
    ref = law.sample(size, d, gen)
    ks, sw = ks_pvalues(z, law), shapiro_pvalues(z, law)
    e_stat, e_p = energy_test(z, ref, permutations=permutations, generator=gen)
    return DMMetrics(
        target=law.name,
        n=size,
        d=d,
        ks_p_min=float(ks.min()),
        ks_p_median=float(np.median(ks)),
        ks_pass=bool(ks.min() * d > alpha),
        shapiro_p_min=float(sw.min()),
        shapiro_p_median=float(np.median(sw)),
        shapiro_pass=bool(sw.min() * d > alpha),
        energy=e_stat,
        energy_p=e_p,
        energy_pass=bool(e_p > alpha),
        sliced_w2=sliced_wasserstein(z, ref, projections=projections, generator=gen),
        permutations=permutations,
        alpha=alpha,
    )


def reference_metrics(
    target: str | TargetLaw, dim: int, *, n: int = 500, seed: int = 0, **kw: Any
) -> DMMetrics:
    """:func:`dm_metrics` of a true ``target`` sample of size ``n`` (the reference row)."""
    if n < 3 or dim < 1:
        raise ValueError(f"need n >= 3 and dim >= 1, got n={n}, dim={dim}")
    gen = torch.Generator().manual_seed(10_007 + seed)
    return dm_metrics(sample_target(target, n, dim, gen), target, n=None, seed=seed, **kw)


def target_qq(z: np.ndarray, target: str | TargetLaw) -> tuple[np.ndarray, np.ndarray]:
    """Theoretical quantiles ``F⁻¹((i − ½)/n)`` of the target marginal and the sorted sample
    ``z: [n]`` (a Q-Q plot's two axes)."""
    law = get_target(target)
    n = len(z)
    t = torch.from_numpy((np.arange(n) + 0.5) / n)
    if law.name == "gaussian":
        theo = torch.special.ndtri(t)
    elif law.name == "uniform":
        theo = t
    else:
        theo = law.marginal.icdf(t)
    return theo.numpy(), np.sort(z)
