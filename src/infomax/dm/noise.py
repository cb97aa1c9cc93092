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
#: ``batch``: per-dimension moments (``BatchNorm1d``, the SPEC §7 constraint). ``rank``: batch
#: whitening, then per-dimension soft ranks (:class:`RankNormalization`). ``radial`` (Gaussian
#: target only): batch whitening, then the soft rank of the radius mapped onto the χ_d law.
NORMALIZATIONS = ("batch", "rank", "radial")


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


def sigma_schedule(progress: float, sigma: float, warmup: float = 0.0, start: float = 0.0) -> float:
    """Noise scale at training ``progress ∈ [0, 1]``: linear from ``start`` to ``σ`` over the
    first ``warmup`` fraction of training, then ``σ`` (``warmup = 0``: constant ``σ``).

    ``start = 0`` is a ramp up; ``start > σ`` anneals the noise down."""
    if not 0.0 <= warmup <= 1.0:
        raise ValueError(f"warmup must be in [0, 1], got {warmup}")
    if warmup == 0.0 or progress >= warmup:
        return sigma
    return start + (sigma - start) * max(progress, 0.0) / warmup


class RankNormalization(nn.Module):
    """``h: [B, d] -> u ∈ (0, 1)^d``: whiten over the batch, then each coordinate's soft rank.

    Training: ``y = (h − μ_B) W_B`` with ``W_B = L_B^{−T}``, ``Σ_B = L_B L_Bᵀ`` (Cholesky
    whitening of the batch covariance, as in decorrelated batch norm) and
    ``u_ik = (Σ_j sigmoid((y_ik − y_jk) / t) + ½) / (B + 1)``, the batch's empirical CDF
    smoothed at scale ``t`` (differentiable) and kept inside ``[1, B] / (B + 1)``. Each
    coordinate of ``u`` is then close to uniform over the batch *whatever* the encoder does, so
    the InfoMax objective only shapes how the coordinates depend on each other. Evaluation: the
    population ``μ``, ``W`` and ``quantiles`` reference points per coordinate set by
    :meth:`fit` (the analogue of batch norm's running statistics, "precise" over many training
    inputs) replace the batch ones.
    """

    mean: Tensor
    whiten: Tensor
    reference: Tensor

    def __init__(
        self, dim: int, *, temperature: float = 0.05, quantiles: int = 2048, eps: float = 1e-4
    ) -> None:
        super().__init__()
        if not (temperature > 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
        if quantiles < 2:
            raise ValueError(f"quantiles must be >= 2, got {quantiles}")
        self.dim, self.temperature, self.eps = dim, float(temperature), float(eps)
        grid = (torch.arange(quantiles, dtype=torch.float32) + 0.5) / quantiles
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("whiten", torch.eye(dim))
        self.register_buffer("reference", torch.special.ndtri(grid)[:, None].repeat(1, dim))

    def _whitening(self, h: Tensor) -> tuple[Tensor, Tensor]:
        mu = h.mean(0)
        x = h - mu
        cov = x.T @ x / max(h.shape[0] - 1, 1)
        eye = torch.eye(self.dim, dtype=h.dtype, device=h.device)
        chol = torch.linalg.cholesky(cov + self.eps * eye)
        # W = L^{-T} (Cholesky whitening): W^T Σ W = I. Its gradient stays finite when
        # eigenvalues of Σ coincide, where that of the symmetric Σ^{-1/2} (eigh) does not.
        return mu, torch.linalg.solve_triangular(chol, eye, upper=False).T

    def soft_cdf(self, y: Tensor, reference: Tensor, *, plus: float = 0.0) -> Tensor:
        """``(Σ_j sigmoid((y_ik − r_jk) / t) + plus) / (R + 2·plus)`` for ``y: [B, d]``,
        ``reference: [R, d]``: the smoothed empirical CDF, kept ``plus / (R + 2·plus)`` away
        from 0 and 1."""
        s = torch.sigmoid((y[:, None, :] - reference[None, :, :]) / self.temperature).sum(1)
        return (s + plus) / (reference.shape[0] + 2 * plus)

    def ranked(self, y: Tensor) -> Tensor:
        """What is ranked: the whitened coordinates ``y: [B, d]`` themselves."""
        return y

    def output(self, y: Tensor, v: Tensor, u: Tensor) -> Tensor:
        """The layer's output from ``y``, ``v = ranked(y)`` and the soft ranks ``u`` of ``v``:
        ``u``."""
        return u

    def forward(self, h: Tensor) -> Tensor:
        """Module docstring; batch statistics in training, population ones in evaluation."""
        if self.training:
            if h.shape[0] < 2:
                raise ValueError(f"rank normalisation needs a batch of >= 2, got {h.shape[0]}")
            mu, w = self._whitening(h)
            y = (h - mu) @ w
            v = self.ranked(y)
            u = self.soft_cdf(v, v, plus=0.5)  # the self term adds 1/2: u in [1, B] / (B + 1)
        else:
            y = (h - self.mean) @ self.whiten
            v = self.ranked(y)
            u = torch.cat([self.soft_cdf(b, self.reference, plus=1.0) for b in v.split(1024)])
        return self.output(y, v, u.clamp(1e-7, 1.0 - 1e-7))

    @torch.no_grad()
    def fit(self, h: Tensor) -> None:
        """Population statistics from ``h: [N, d]`` (many training inputs, eval-mode encoder):
        mean, whitening matrix and the reference quantiles of :meth:`ranked`."""
        if h.ndim != 2 or h.shape[1] != self.dim or h.shape[0] < 2:
            raise ValueError(f"fit needs h of shape [N >= 2, {self.dim}], got {tuple(h.shape)}")
        mu, w = self._whitening(h.float())
        v = self.ranked((h.float() - mu) @ w)
        q = self.reference.shape[0]
        grid = (torch.arange(q, dtype=torch.float32, device=h.device) + 0.5) / q
        self.mean.copy_(mu)
        self.whiten.copy_(w)
        self.reference.copy_(torch.quantile(v, grid, dim=0))


class RadialRankNormalization(RankNormalization):
    """``h: [B, d] -> c``: whiten over the batch, keep each direction ``y/‖y‖`` and replace the
    radius by ``χ_d⁻¹(u)``, ``u`` the soft rank of ``‖y‖`` in the batch (``RankNormalization``
    applied to the radius). ``N(0, I_d)`` is exactly a ``χ_d`` radius times an independent
    uniform direction, so the radius law is fixed and the InfoMax objective shapes the
    directions, which contrastive objectives spread uniformly. Evaluation uses population
    statistics set by :meth:`fit`."""

    chi_table: Tensor

    def __init__(self, dim: int, **kwargs: float) -> None:
        from scipy import stats

        super().__init__(dim, **kwargs)  # type: ignore[arg-type]
        q = self.reference.shape[0]
        self.reference = self.reference[:, :1].clone()  # reference radii: [Q, 1]
        grid = (torch.arange(q, dtype=torch.float64) + 0.5) / q
        self.reference.copy_(torch.from_numpy(stats.chi.ppf(grid.numpy(), dim)).float()[:, None])
        u = torch.linspace(0.0, 1.0, 8193, dtype=torch.float64).clamp(1e-7, 1 - 1e-7)
        table = torch.from_numpy(stats.chi.ppf(u.numpy(), dim)).float()
        self.register_buffer("chi_table", table, persistent=False)

    def chi_quantile(self, u: Tensor) -> Tensor:
        """``χ_d⁻¹(u)`` by linear interpolation in a table of 8193 points (differentiable)."""
        pos = u * (self.chi_table.numel() - 1)
        i0 = pos.detach().floor().clamp(0, self.chi_table.numel() - 2).long()
        w = pos - i0
        return self.chi_table[i0] * (1 - w) + self.chi_table[i0 + 1] * w

    def ranked(self, y: Tensor) -> Tensor:
        """What is ranked: the radius ``‖y‖``, ``[B, 1]``."""
        return y.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def output(self, y: Tensor, v: Tensor, u: Tensor) -> Tensor:
        """``y/‖y‖ · χ_d⁻¹(u)`` (``v = ‖y‖``): ``[B, d]`` with a ``χ_d`` radius."""
        return y / v * self.chi_quantile(u)


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
        normalization: str = "batch",
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
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"unknown normalization {normalization!r}; valid: {', '.join(NORMALIZATIONS)}"
            )
        self.normalization = normalization
        if normalization == "radial" and self.target != "gaussian":
            raise ValueError("normalization 'radial' is for the gaussian target only")
        self.norm: nn.Module = {
            "batch": lambda: nn.BatchNorm1d(dim, affine=False, momentum=momentum),
            "rank": lambda: RankNormalization(dim),
            "radial": lambda: RadialRankNormalization(dim),
        }[normalization]()

    def normalize(self, h: Tensor) -> Tensor:
        """Clean ``n(h): [B, d]``. ``batch``: ``BN(h)`` (gaussian) or ``Φ(BN(h))`` (uniform);
        ``rank``: ``Φ⁻¹(u)`` (gaussian) or ``u`` (uniform), ``u`` the soft ranks of
        :class:`RankNormalization`; ``radial``: the output of :class:`RadialRankNormalization`."""
        if h.ndim != 2 or h.shape[1] != self.dim:
            raise ValueError(f"expected h of shape [batch, {self.dim}], got {tuple(h.shape)}")
        c = self.norm(h)
        if self.normalization == "radial":
            return c
        if self.normalization == "rank":
            return torch.special.ndtri(c) if self.target == "gaussian" else c
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
