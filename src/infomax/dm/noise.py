"""Normalisation + independent noise for noise-injected Deep InfoMax (SPEC §7).

``z = n(h) + σ ε`` for encoder outputs ``h: [B, d]``:

- ``gaussian``: ``n`` standardises each dimension over the batch (``BatchNorm1d`` without affine;
  running statistics in eval mode), ``ε ~ N(0, I)``. Capacity ``I ≤ (d/2) log(1 + 1/σ²)``, with
  equality iff ``n(h) ~ N(0, I)``.
- ``uniform``: ``n(h) = Φ(BN(h)) ∈ (0, 1)^d`` (per-dimension standardisation, then the standard
  normal CDF: a per-dimension normalisation onto the unit box), ``ε ~ U[−1, 1]^d`` so that the
  noise is ``U[−σ, σ]^d`` (``σ`` is the half-width ``ε`` of SPEC §7). Capacity
  ``I ≤ d log(1 + 1/(2σ))``.

Evaluation choice: in ``eval()`` mode the module returns the clean ``n(h)`` (SPEC §7: DM quality
and downstream accuracy are measured without noise); ``noise_at_eval=True`` keeps the noise, and
``forward(h, noisy=True)`` forces it (used for held-out MI estimates, which must see the channel).

>>> import torch
>>> layer = NoiseInjection(4, "gaussian", sigma=0.5)
>>> layer(torch.randn(8, 4)).shape
torch.Size([8, 4])
>>> round(gaussian_capacity(1, 1.0), 4)  # ½ log 2
0.3466
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

TARGETS = ("gaussian", "uniform")


def check_target(target: str) -> str:
    """Return ``target`` if it is ``gaussian`` or ``uniform``, else ``ValueError``."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; valid: {', '.join(TARGETS)}")
    return target


def gaussian_capacity(dim: int, sigma: float) -> float:
    """``(d/2) log(1 + 1/σ²)`` nats: max ``I(C; C + σε)`` over unit-variance ``C`` (∞ at 0)."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    return math.inf if sigma == 0 else 0.5 * dim * math.log1p(1.0 / sigma**2)


def uniform_capacity(dim: int, half_width: float) -> float:
    """``d log(1 + 1/(2ε))`` nats: max ``I(C; C + ε)`` for ``C ∈ [0,1]^d``, ``ε ~ U[−ε, ε]^d``."""
    if half_width < 0:
        raise ValueError(f"half_width must be >= 0, got {half_width}")
    return math.inf if half_width == 0 else dim * math.log1p(1.0 / (2.0 * half_width))


def capacity(target: str, dim: int, sigma: float) -> float:
    """The SPEC §7 ceiling of ``target`` (Gaussian or uniform) in nats."""
    if check_target(target) == "gaussian":
        return gaussian_capacity(dim, sigma)
    return uniform_capacity(dim, sigma)


def binding_sigma(target: str, dim: int, batch_size: int) -> float:
    """The ``σ`` at which the ceiling equals ``log K`` (InfoNCE's own cap with ``K`` pairs).

    Below it the noise does not limit what a ``K``-sample InfoNCE can measure, so the pressure
    towards the target law is weak: Gaussian ``σ* = (K^{2/d} − 1)^{−1/2}``, uniform
    ``ε* = 1 / (2 (K^{1/d} − 1))``.
    """
    if dim < 1 or batch_size < 2:
        raise ValueError(f"need dim >= 1 and batch_size >= 2, got {dim}, {batch_size}")
    if check_target(target) == "gaussian":
        return 1.0 / math.sqrt(math.expm1(2.0 * math.log(batch_size) / dim))
    return 1.0 / (2.0 * math.expm1(math.log(batch_size) / dim))


def sigma_schedule(progress: float, sigma: float, warmup: float = 0.0) -> float:
    """Noise scale at training ``progress ∈ [0, 1]``: linear ramp ``σ · progress / warmup`` over
    the first ``warmup`` fraction of training, then ``σ`` (``warmup = 0``: constant ``σ``)."""
    if not 0.0 <= warmup <= 1.0:
        raise ValueError(f"warmup must be in [0, 1], got {warmup}")
    if warmup == 0.0 or progress >= warmup:
        return sigma
    return sigma * max(progress, 0.0) / warmup


class NoiseInjection(nn.Module):
    """``h: [B, d] -> n(h) + σ ε`` for the ``gaussian`` or ``uniform`` target (module docstring).

    ``sigma`` is a plain attribute so a schedule (:func:`sigma_schedule`) can change it during
    training. ``normalize(h)`` gives the clean representation ``n(h)``.
    """

    def __init__(
        self,
        dim: int,
        target: str = "gaussian",
        sigma: float = 0.1,
        *,
        noise_at_eval: bool = False,
        momentum: float = 0.1,
    ) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if not (sigma >= 0 and math.isfinite(sigma)):
            raise ValueError(f"sigma must be a finite number >= 0, got {sigma}")
        self.target = check_target(target)
        self.dim = dim
        self.sigma = float(sigma)
        self.noise_at_eval = bool(noise_at_eval)
        self.norm = nn.BatchNorm1d(dim, affine=False, momentum=momentum)

    def normalize(self, h: Tensor) -> Tensor:
        """Clean ``n(h)``: ``BN(h)`` (gaussian) or ``Φ(BN(h))`` (uniform); ``[B, d]``."""
        if h.ndim != 2 or h.shape[1] != self.dim:
            raise ValueError(f"expected h of shape [batch, {self.dim}], got {tuple(h.shape)}")
        c = self.norm(h)
        if self.target == "uniform":
            c = 0.5 * (1.0 + torch.erf(c / math.sqrt(2.0)))
        return c

    def sample_noise(self, like: Tensor) -> Tensor:
        """Unit noise of ``like``'s shape: ``N(0, I)`` or ``U[−1, 1]`` (torch's global RNG)."""
        if self.target == "gaussian":
            return torch.randn_like(like)
        return torch.rand_like(like).mul_(2.0).sub_(1.0)

    def add_noise(self, c: Tensor) -> Tensor:
        """``c + σ ε`` (no-op at ``σ = 0``)."""
        return c if self.sigma == 0 else c + self.sigma * self.sample_noise(c)

    def forward(self, h: Tensor, *, noisy: bool | None = None) -> Tensor:
        """``n(h) + σ ε`` in training (or when ``noisy`` / ``noise_at_eval``), else ``n(h)``."""
        use_noise = (self.training or self.noise_at_eval) if noisy is None else noisy
        c = self.normalize(h)
        return self.add_noise(c) if use_noise else c

    def capacity(self) -> float:
        """Current ceiling on ``I(X; Z)`` in nats (SPEC §7)."""
        return capacity(self.target, self.dim, self.sigma)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, target={self.target}, sigma={self.sigma}"
