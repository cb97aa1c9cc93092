"""Closed forms of every RPM ELBO term on Gaussian latents: the ground truth for tests and demos.

Data ``x, x′ ~ CorrelatedGaussian(dim, rho)`` (standard normal marginals, correlation ``ρ`` per
coordinate pair; ``infomax.tasks``), recognition ``R(z | x) = N(x, σ² I)`` (``σ = 0``:
deterministic ``z = x``). Then ``(z, z′)`` is a correlated Gaussian pair with per-coordinate
variance ``v = 1 + σ²`` and correlation ``ρ_z = ρ / v``, ``R(z) = N(0, v I)`` and
``I(Z; Z′) = −dim/2 log(1 − ρ_z²)``.

Quadratic critics ``f(z, z′) = a z·z′ − b (|z|² + |z′|²)/2 + c`` contain both the dot critic
(``b = c = 0``) and the true log density ratio (``a = ρ_z / (v(1 − ρ_z²))``, ``b = ρ_z² / (v(1 −
ρ_z²))``, ``c = −dim/2 log(1 − ρ_z²)``). For ``z″ ~ N(0, v I)`` per coordinate
``E e^{a z z″ − b z″²/2} = (1 + bv)^{−1/2} exp(a² v z² / (2(1 + bv)))``, so the InfoNCE-prior
ELBO is

    ELBO_f = dim · [ a ρ_z v − b v / 2 + ½ log(1 + b v) − a² v² / (2(1 + b v)) ]      (b v > −1),

equal to ``I(Z; Z′)`` for the true ratio and ``dim ρ_z² / 2`` for the best dot critic ``a = ρ_z/v``.
An invertible rescaling ``z ↦ s z`` keeps ``I`` and maps ``v ↦ s² v`` in the formula.

>>> task = GaussianRPMTask(dim=2, rho=0.8)
>>> critic = task.true_critic()
>>> round(critic.elbo(task), 6) == round(task.mutual_information, 6)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..tasks.gaussian import CorrelatedGaussian, mi_from_rho

_LOG_2PI_E = math.log(2.0 * math.pi * math.e)


@dataclass(frozen=True)
class QuadraticCritic:
    """``f(z, z′) = a z·z′ − b (|z|² + |z′|²)/2 + c``; ``scores(z, z′) -> [K, M]``."""

    a: float
    b: float = 0.0
    c: float = 0.0

    def scores(self, z: Tensor, zp: Tensor) -> Tensor:
        """``S_ij = f(z_i, z′_j)`` for ``z: [K, d]``, ``z′: [M, d]``."""
        sq = (z * z).sum(1).unsqueeze(1) + (zp * zp).sum(1).unsqueeze(0)
        return self.a * (z @ zp.T) - 0.5 * self.b * sq + self.c

    def pairs(self, z: Tensor, zp: Tensor) -> Tensor:
        """``f(z_i, z′_i)``: ``[K]`` (the diagonal of :meth:`scores`, no ``[K, K]`` matrix)."""
        sq = (z * z).sum(1) + (zp * zp).sum(1)
        return self.a * (z * zp).sum(1) - 0.5 * self.b * sq + self.c

    def __call__(self, z: Tensor, zp: Tensor) -> Tensor:
        return self.scores(z, zp)

    def _check(self, var: float) -> None:
        if not 1.0 + self.b * var > 0:
            raise ValueError(f"E e^f diverges: need 1 + b·v > 0, got b={self.b}, v={var}")

    def log_partition(self, z: Tensor, var: float) -> Tensor:
        """Exact ``log E_{z″ ~ N(0, v I)} e^{f(z_i, z″)}``: ``[K]``."""
        self._check(var)
        d = z.shape[1]
        sq = (z * z).sum(1)
        one_bv = 1.0 + self.b * var
        return (
            self.c
            - 0.5 * self.b * sq
            - 0.5 * d * math.log(one_bv)
            + self.a**2 * var * sq / (2 * one_bv)
        )

    def elbo(self, task: GaussianRPMTask, scale: float = 1.0) -> float:
        """Closed-form InfoNCE-prior model ELBO on ``task``'s latents rescaled by ``scale``."""
        v = task.var * scale**2
        self._check(v)
        a, b, r = self.a, self.b, task.rho_z
        per_dim = (
            a * r * v - b * v / 2 + 0.5 * math.log1p(b * v) - a * a * v * v / (2 * (1 + b * v))
        )
        return task.dim * per_dim


@dataclass(frozen=True)
class GaussianRPMTask:
    """Correlated Gaussian data with Gaussian recognition noise ``σ`` (see module docstring)."""

    dim: int
    rho: float
    sigma: float = 0.0

    def __post_init__(self) -> None:
        if not -1.0 < self.rho < 1.0:
            raise ValueError(f"rho must lie in (-1, 1), got {self.rho}")
        if self.sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {self.sigma}")
        CorrelatedGaussian(self.dim, rho=self.rho)  # validates dim

    @property
    def var(self) -> float:
        """Latent variance per coordinate ``v = 1 + σ²``."""
        return 1.0 + self.sigma**2

    @property
    def rho_z(self) -> float:
        """Latent correlation ``ρ / (1 + σ²)``."""
        return self.rho / self.var

    @property
    def mutual_information(self) -> float:
        """``I(Z; Z′) = −dim/2 log(1 − ρ_z²)`` nats (``= I(X; X′)`` when ``σ = 0``)."""
        return mi_from_rho(self.rho_z, self.dim)

    @property
    def data_mutual_information(self) -> float:
        """``I(X; X′) = −dim/2 log(1 − ρ²)`` nats."""
        return mi_from_rho(self.rho, self.dim)

    def sample(self, n: int, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(x, x′, z, z′)``, float64 ``[n, dim]`` each; ``z = x + σ ε`` (recognition draw)."""
        x, xp = CorrelatedGaussian(self.dim, rho=self.rho).sample(n, seed)
        noise = np.random.default_rng([seed, 1]).standard_normal((2, n, self.dim))
        xt, xpt = torch.from_numpy(x), torch.from_numpy(xp)
        eps, eps2 = torch.from_numpy(noise[0]), torch.from_numpy(noise[1])
        return xt, xpt, xt + self.sigma * eps, xpt + self.sigma * eps2

    def true_critic(self, scale: float = 1.0) -> QuadraticCritic:
        """The exact ``log p(z, z′) / (p(z) p(z′))`` of the latents rescaled by ``scale``."""
        r, v = self.rho_z, self.var * scale**2
        one = 1.0 - r * r
        return QuadraticCritic(
            a=r / (v * one), b=r * r / (v * one), c=-0.5 * self.dim * math.log(one)
        )

    def best_dot_critic(self) -> QuadraticCritic:
        """``f = a z·z′`` with ``a = ρ_z / v``, the best dot critic: ``ELBO = dim ρ_z² / 2``."""
        return QuadraticCritic(a=self.rho_z / self.var)

    def log_marginal(self, z: Tensor) -> Tensor:
        """Exact recognition marginal ``log R(z_i) = log N(z_i; 0, v I)``: ``[K]``."""
        return -0.5 * ((z * z).sum(1) / self.var + self.dim * math.log(2 * math.pi * self.var))

    def log_data(self, x: Tensor) -> Tensor:
        """``log P_true(x_i) = log N(x_i; 0, I)``: ``[K]``."""
        return -0.5 * ((x * x).sum(1) + self.dim * math.log(2 * math.pi))

    def log_joint(self, z: Tensor, zp: Tensor) -> Tensor:
        """Exact ``log p(z_i, z′_i)`` of the latent pair (the optimal learned prior): ``[K]``."""
        return self.log_marginal(z) + self.log_marginal(zp) + self.true_critic().pairs(z, zp)

    def recognition_term(self) -> float:
        """``−E log R(z) = H(Z) = dim/2 log(2πe v)`` (same for ``z′``)."""
        return 0.5 * self.dim * (_LOG_2PI_E + math.log(self.var))

    def optimal_prior_term(self) -> float:
        """``E log p(z, z′) = −H(Z, Z′) = −dim log(2πe v) − dim/2 log(1 − ρ_z²)``."""
        return -2.0 * self.recognition_term() + self.mutual_information

    def constant(self) -> float:
        """``E log P_true(x) + E log P_true(x′) = −dim log(2πe)``."""
        return -self.dim * _LOG_2PI_E


def dot_critic_elbo(cov: Tensor, cross_cov: Tensor, a: float | None = None) -> float:
    """InfoNCE-prior model ELBO of the dot critic ``f = a u·u′`` on zero-mean Gaussian ``(u, u′)``.

    ``cov = Cov(u) = Cov(u′): [d, d]``, ``cross_cov = E[u u′ᵀ]: [d, d]``. Since
    ``log E_{u″} e^{a u·u″} = a² uᵀ Σ u / 2``, ``ELBO(a) = a tr C − a² tr(Σ²) / 2``; with ``a=None``
    the best temperature ``a* = tr C / tr Σ²`` gives ``(tr C)² / (2 tr Σ²)``.
    """
    tr_c = float(torch.trace(cross_cov))
    tr_s2 = float(torch.trace(cov @ cov))
    if a is None:
        a = tr_c / tr_s2
    return a * tr_c - 0.5 * a * a * tr_s2


def gaussian_mi_from_cov(cov: Tensor, cross_cov: Tensor) -> float:
    """``I(u; u′) = ½ log(det Σ_uu det Σ_u′u′ / det Σ)`` of a Gaussian pair with equal marginals."""
    joint = torch.cat([torch.cat([cov, cross_cov], 1), torch.cat([cross_cov.T, cov], 1)], 0)
    return float(torch.logdet(cov) - 0.5 * torch.logdet(joint))
