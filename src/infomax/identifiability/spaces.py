"""Latent spaces of the identifiability experiments: marginals and conditionals.

SPEC §5 (Zimmermann et al., "Contrastive learning inverts the data-generating process", 2021).
A space samples ``z ~ p(z)`` and the positive ``z̃ ~ p(z̃ | z)``:

| space | marginal ``p(z)`` | conditionals ``p(z̃ | z)`` |
|---|---|---|
| ``sphere`` ``S^{n−1}`` | uniform | ``vmf`` (exact, Wood 1994); others projected, ``z̃/‖z̃‖`` |
| ``box`` ``[0, 1]ⁿ`` | uniform | ``laplace``, ``gnormal``, ``normal``, truncated (rejection) |
| ``rn`` ℝⁿ | standard normal | ``laplace``, ``gnormal``, ``normal`` |

On the sphere the L_p conditionals are drawn in ℝⁿ around ``z`` and projected back.
Box truncation: the conditionals factorise over coordinates, so re-drawing every coordinate that
falls outside ``[lo, hi]`` until it falls inside draws *exactly* from the truncated density
``p(z̃ | z) ∝ Π_k p(z̃_k | z_k) 1[lo ≤ z̃_k ≤ hi]`` (no clipping, no mass on the faces).

The generalised normal with shape ``p`` and scale ``α`` has density
``p(x) = p / (2 α Γ(1/p)) · exp(−|x/α|^p)``; ``laplace`` is ``p = 1`` with ``α = scale`` and
``normal`` is ``p = 2`` with ``α = √2 σ``. Samplers use a NumPy ``Generator`` (seeded, exact
Beta and Gamma draws) and return ``float32`` tensors ``[n, dim]``.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> space = get_space("sphere", 3)
>>> z = space.sample_marginal(4, rng)
>>> z_pos = space.sample_conditional(z, Conditional("vmf", kappa=10.0), rng)
>>> tuple(z_pos.shape), bool(torch.allclose(z_pos.norm(dim=1), torch.ones(4)))
((4, 3), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

CONDITIONALS = ("vmf", "laplace", "gnormal", "normal")
SPACES = ("sphere", "box", "rn")


@dataclass(frozen=True)
class Conditional:
    """The positive-pair conditional ``p(z̃ | z)``.

    ``kind``: ``vmf`` (concentration ``kappa``), ``laplace`` (scale ``scale``: density
    ``∝ exp(−‖z̃ − z‖₁ / scale)``), ``normal`` (std ``scale``) or ``gnormal`` (scale ``scale``,
    shape ``p``: density ``∝ exp(−‖(z̃ − z)/scale‖_p^p)``).
    """

    kind: str
    kappa: float = 10.0
    scale: float = 0.05
    p: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in CONDITIONALS:
            raise ValueError(
                f"unknown conditional {self.kind!r}; valid names: {', '.join(CONDITIONALS)}"
            )
        if not self.kappa > 0 or not self.scale > 0 or not self.p > 0:
            raise ValueError(
                f"kappa, scale and p must be > 0, got kappa={self.kappa}, scale={self.scale}, "
                f"p={self.p}"
            )

    @property
    def shape_p(self) -> float:
        """Exponent of the L_p density: 1 (laplace), 2 (normal), ``p`` (gnormal); vMF: 2."""
        return {"laplace": 1.0, "normal": 2.0, "gnormal": self.p, "vmf": 2.0}[self.kind]

    @property
    def gn_scale(self) -> float:
        """Generalised-normal scale ``α``: ``scale`` (laplace/gnormal), ``√2·scale`` (normal)."""
        return math.sqrt(2.0) * self.scale if self.kind == "normal" else self.scale

    def describe(self) -> str:
        """Short label, e.g. ``vMF(κ=10)`` or ``GN(p=3, α=0.05)``."""
        if self.kind == "vmf":
            return f"vMF(κ={self.kappa:g})"
        if self.kind == "gnormal":
            return f"GN(p={self.p:g}, α={self.scale:g})"
        return f"{self.kind.capitalize()}({'b' if self.kind == 'laplace' else 'σ'}={self.scale:g})"


# ----------------------------------------------------------------------------------------------
# Pure samplers (NumPy generator in, float64 arrays out)


def uniform_sphere(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniform on ``S^{dim−1}``: normalised standard normals, ``[n, dim]``."""
    x = rng.standard_normal((n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def sample_gnormal(
    shape: tuple[int, ...], scale: float, p: float, rng: np.random.Generator
) -> np.ndarray:
    """Generalised normal ``p(x) ∝ exp(−|x/α|^p)``, ``α = scale``: ``x = ±α G^{1/p}``,
    ``G ~ Gamma(1/p, 1)`` (exact for every ``p > 0``)."""
    g = rng.gamma(1.0 / p, 1.0, size=shape)
    sign = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    return sign * scale * g ** (1.0 / p)


def sample_vmf_cosines(n: int, dim: int, kappa: float, rng: np.random.Generator) -> np.ndarray:
    """Wood's (1994) exact rejection sampler of ``w = μᵀz̃`` for ``z̃ ~ vMF(μ, κ)`` on
    ``S^{dim−1}``: ``[n]``. The density of ``w`` is ``∝ e^{κw} (1 − w²)^{(dim−3)/2}``.

    With ``m = dim − 1``: ``b = m / (2κ + √(4κ² + m²))``, ``x₀ = (1 − b)/(1 + b)``,
    ``c = κx₀ + m log(1 − x₀²)``; draw ``Z ~ Beta(m/2, m/2)``, ``U ~ U(0,1)``,
    ``w = (1 − (1 + b)Z) / (1 − (1 − b)Z)``, accept if ``κw + m log(1 − x₀w) − c ≥ log U``.
    """
    m = dim - 1
    b = m / (2.0 * kappa + math.sqrt(4.0 * kappa**2 + m**2))
    x0 = (1.0 - b) / (1.0 + b)
    c = kappa * x0 + m * math.log(1.0 - x0**2)
    out = np.empty(n)
    todo = np.arange(n)
    while todo.size:
        k = todo.size
        z = rng.beta(m / 2.0, m / 2.0, size=k)
        w = (1.0 - (1.0 + b) * z) / (1.0 - (1.0 - b) * z)
        u = rng.random(k)
        ok = kappa * w + m * np.log(1.0 - x0 * w) - c >= np.log(u)
        out[todo[ok]] = w[ok]
        todo = todo[~ok]
    return out


def sample_vmf(mu: np.ndarray, kappa: float, rng: np.random.Generator) -> np.ndarray:
    """One exact draw from ``vMF(μᵢ, κ)`` per row of ``mu: [n, dim]`` (normalised): ``[n, dim]``.

    ``z̃ = w μ + √(1 − w²) v`` with ``w`` from :func:`sample_vmf_cosines` and ``v`` uniform on the
    unit sphere of the tangent space ``μ^⊥`` (a normal vector with its ``μ`` part removed).
    """
    n, dim = mu.shape
    if dim < 2:
        raise ValueError(f"vMF needs dim >= 2, got {dim}")
    mu = mu / np.linalg.norm(mu, axis=1, keepdims=True)
    w = sample_vmf_cosines(n, dim, kappa, rng)
    v = rng.standard_normal((n, dim))
    v -= np.sum(v * mu, axis=1, keepdims=True) * mu
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return w[:, None] * mu + np.sqrt(np.clip(1.0 - w**2, 0.0, None))[:, None] * v


def vmf_mean_resultant_length(dim: int, kappa: float) -> float:
    """Closed form ``E[μᵀz̃] = A_dim(κ) = I_{dim/2}(κ) / I_{dim/2−1}(κ)`` (scaled Bessel ratio)."""
    from scipy.special import ive

    return float(ive(dim / 2.0, kappa) / ive(dim / 2.0 - 1.0, kappa))


def _noise(z: np.ndarray, cond: Conditional, rng: np.random.Generator) -> np.ndarray:
    """Additive L_p noise for the conditional (not vMF), same shape as ``z``."""
    return sample_gnormal(z.shape, cond.gn_scale, cond.shape_p, rng)


def truncated_noise(
    z: np.ndarray, cond: Conditional, lo: float, hi: float, rng: np.random.Generator
) -> np.ndarray:
    """``z + ε`` with every coordinate re-drawn until it lies in ``[lo, hi]`` (exact truncation of
    a factorised conditional). Raises ``ValueError`` if acceptance is hopeless (scale ≫ box)."""
    out = z + _noise(z, cond, rng)
    bad = (out < lo) | (out > hi)
    for _ in range(10_000):
        if not bad.any():
            return out
        idx = np.nonzero(bad)
        out[idx] = z[idx] + sample_gnormal((len(idx[0]),), cond.gn_scale, cond.shape_p, rng)
        bad = (out < lo) | (out > hi)
    raise ValueError(f"box truncation of {cond.describe()} did not converge; use a smaller scale")


# ----------------------------------------------------------------------------------------------
# Spaces


@dataclass(frozen=True)
class Space:
    """A latent space: ``name`` in ``sphere | box | rn``, dimension ``dim``; the box is
    ``[lo, hi]^dim``. ``sample_marginal`` / ``sample_conditional`` return ``float32 [n, dim]``."""

    name: str
    dim: int
    lo: float = 0.0
    hi: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in SPACES:
            raise ValueError(f"unknown space {self.name!r}; valid names: {', '.join(SPACES)}")
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or self.dim < 2:
            raise ValueError(f"dim must be an integer >= 2, got {self.dim!r}")
        if not self.lo < self.hi:
            raise ValueError(f"box needs lo < hi, got [{self.lo}, {self.hi}]")

    def sample_marginal(self, n: int, rng: np.random.Generator) -> Tensor:
        """``z ~ p(z)``: uniform on the sphere / box, standard normal on ℝⁿ. ``[n, dim]``."""
        if self.name == "sphere":
            z = uniform_sphere(n, self.dim, rng)
        elif self.name == "box":
            z = rng.uniform(self.lo, self.hi, size=(n, self.dim))
        else:
            z = rng.standard_normal((n, self.dim))
        return torch.from_numpy(z).float()

    def sample_conditional(self, z: Tensor, cond: Conditional, rng: np.random.Generator) -> Tensor:
        """``z̃ ~ p(z̃ | z)`` row by row, ``z: [n, dim]`` -> ``[n, dim]`` (see module table)."""
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"z must have shape [n, {self.dim}], got {tuple(z.shape)}")
        zz = z.detach().double().cpu().numpy()
        if cond.kind == "vmf":
            if self.name != "sphere":
                raise ValueError(f"the vmf conditional lives on the sphere, not on {self.name!r}")
            out = sample_vmf(zz, cond.kappa, rng)
        elif self.name == "box":
            out = truncated_noise(zz, cond, self.lo, self.hi, rng)
        else:
            out = zz + _noise(zz, cond, rng)
            if self.name == "sphere":
                out /= np.linalg.norm(out, axis=1, keepdims=True)
        return torch.from_numpy(out).float()

    def sample_pairs(
        self, n: int, cond: Conditional, rng: np.random.Generator
    ) -> tuple[Tensor, Tensor]:
        """``(z, z̃)`` with ``z ~ p(z)``, ``z̃ ~ p(z̃ | z)``: two ``[n, dim]`` tensors."""
        z = self.sample_marginal(n, rng)
        return z, self.sample_conditional(z, cond, rng)


def get_space(name: str, dim: int, lo: float = 0.0, hi: float = 1.0) -> Space:
    """The :class:`Space` called ``name`` (``sphere``, ``box`` or ``rn``) of dimension ``dim``."""
    return Space(str(name).lower(), dim, lo, hi)
