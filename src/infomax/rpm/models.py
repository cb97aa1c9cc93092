"""RPM modules: learned priors, Gaussian recognition model and the two-view RPM (SPEC §6).

State only; the maths is in :mod:`infomax.rpm.elbo`.

* :class:`GaussianMixture` — a density ``Σ_c π_c N(v; m_c, L_c L_cᵀ)`` on ``ℝ^D`` (one component: a
  full-covariance Gaussian); ``fit_moments`` sets a one-component mixture to the maximum-likelihood
  Gaussian (the optimum of the ELBO's prior term over Gaussians).
* :class:`JointPrior` — learned ``P(z, z′)`` = a mixture on the concatenation ``[z, z′]``.
* :class:`IndependentPrior` — ``P(z) P′(z′)`` (no dependence: model ELBO ≤ 0).
* :class:`GaussianRecognition` — ``R(z | x) = N(g(x), diag σ²)`` with a learned (or fixed) ``σ``;
  ``σ = 0`` (``std=None``) is the deterministic recognition model ``z = g(x)``.
* :class:`RPM` — encoder(s) + prior (``infonce`` with a critic, ``learned`` or ``independent``);
  ``elbo(x, x′)`` returns :class:`~infomax.rpm.elbo.ELBOTerms`; :func:`rpm_loss` is ``−model``.

>>> import torch
>>> prior = JointPrior(dim_z=1, dim_zp=1)
>>> prior.log_prob(torch.zeros(3, 1), torch.zeros(3, 1)).shape
torch.Size([3])
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .._checks import check_positive_int
from .elbo import ELBOTerms, elbo_terms, infonce_prior_elbo, log_aggregate_recognition

PRIORS = ("infonce", "learned", "independent")


class GaussianMixture(nn.Module):
    """Mixture of ``n_components`` full-covariance Gaussians on ``ℝ^dim``.

    ``log p(v) = logsumexp_c [log π_c + log N(v; m_c, L_c L_cᵀ)]`` with ``L_c`` lower triangular,
    positive diagonal ``exp(raw)``. ``v: [K, dim] -> [K]``.
    """

    def __init__(self, dim: int, n_components: int = 1, init_std: float = 1.0) -> None:
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        self.n_components = check_positive_int(n_components, "n_components")
        if not init_std > 0:
            raise ValueError(f"init_std must be > 0, got {init_std}")
        c = self.n_components
        self.logits = nn.Parameter(torch.zeros(c))
        self.means = nn.Parameter(0.5 * torch.randn(c, dim) if c > 1 else torch.zeros(c, dim))
        self.log_diag = nn.Parameter(torch.full((c, dim), math.log(init_std)))
        self.lower = nn.Parameter(torch.zeros(c, dim, dim))

    def scale_tril(self) -> Tensor:
        """``L: [C, dim, dim]`` (strictly lower part free, diagonal ``exp(log_diag)``)."""
        strict = torch.tril(self.lower, diagonal=-1)
        return strict + torch.diag_embed(torch.exp(self.log_diag))

    def log_prob(self, v: Tensor) -> Tensor:
        """``log p(v_i)``: ``[K]`` for ``v: [K, dim]``."""
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise ValueError(f"expected points of shape [K, {self.dim}], got {tuple(v.shape)}")
        tril = self.scale_tril().to(v.dtype)
        diff = (v.unsqueeze(0) - self.means.to(v.dtype).unsqueeze(1)).transpose(1, 2)  # [C, dim, K]
        u = torch.linalg.solve_triangular(tril, diff, upper=False)  # [C, dim, K]
        log_det = self.log_diag.to(v.dtype).sum(-1)  # [C]
        log_n = (
            -0.5 * (u * u).sum(1) - log_det.unsqueeze(1) - 0.5 * self.dim * math.log(2 * math.pi)
        )
        log_w = torch.log_softmax(self.logits.to(v.dtype), 0).unsqueeze(1)
        return torch.logsumexp(log_w + log_n, dim=0)

    @torch.no_grad()
    def fit_moments(self, v: Tensor) -> GaussianMixture:
        """Set a one-component mixture to the ML Gaussian of ``v: [n, dim]`` (mean, biased cov)."""
        if self.n_components != 1:
            raise ValueError("fit_moments needs n_components=1; train mixtures by gradient")
        mean = v.mean(0)
        cov = torch.cov(v.T, correction=0).reshape(self.dim, self.dim)
        tril = torch.linalg.cholesky(cov.to(torch.float64))
        self.means.copy_(mean.unsqueeze(0))
        self.log_diag.copy_(torch.log(tril.diagonal()).unsqueeze(0))
        self.lower.copy_(torch.tril(tril, -1).unsqueeze(0))
        self.logits.zero_()
        return self


class JointPrior(nn.Module):
    """Learned prior ``P(z, z′)``: a :class:`GaussianMixture` on ``[z, z′]``."""

    def __init__(self, dim_z: int, dim_zp: int, n_components: int = 1) -> None:
        super().__init__()
        self.dim_z = check_positive_int(dim_z, "dim_z")
        self.density = GaussianMixture(dim_z + check_positive_int(dim_zp, "dim_zp"), n_components)

    def log_prob(self, z: Tensor, zp: Tensor) -> Tensor:
        """``log P(z_i, z′_i)``: ``[K]``."""
        return self.density.log_prob(torch.cat([z, zp], dim=1))

    def fit_moments(self, z: Tensor, zp: Tensor) -> JointPrior:
        """ML Gaussian fit of ``[z, z′]`` (one component)."""
        self.density.fit_moments(torch.cat([z, zp], dim=1))
        return self


class IndependentPrior(nn.Module):
    """Independent prior ``P(z) P′(z′)`` with learned mixtures ``P`` and ``P′``."""

    def __init__(self, dim_z: int, dim_zp: int, n_components: int = 1) -> None:
        super().__init__()
        self.p_z = GaussianMixture(dim_z, n_components)
        self.p_zp = GaussianMixture(dim_zp, n_components)

    def log_prob(self, z: Tensor, zp: Tensor) -> Tensor:
        """``log P(z_i) + log P′(z′_i)``: ``[K]``."""
        return self.p_z.log_prob(z) + self.p_zp.log_prob(zp)

    def fit_moments(self, z: Tensor, zp: Tensor) -> IndependentPrior:
        """ML Gaussian fit of each marginal (one component)."""
        self.p_z.fit_moments(z)
        self.p_zp.fit_moments(zp)
        return self


class GaussianRecognition(nn.Module):
    """``R(z | x) = N(g(x), diag σ²)``; ``σ`` per dimension, learned unless ``learn_std=False``.

    ``std=None`` makes the model deterministic (``z = g(x)``, ``log_std`` is ``None``); then
    ``log R(z)`` is unknown and only the InfoNCE prior (where it cancels) has a finite ELBO.
    """

    def __init__(
        self,
        encoder: nn.Module,
        dim: int,
        std: float | None = 0.1,
        learn_std: bool = True,
        min_std: float = 1e-3,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.dim = check_positive_int(dim, "dim")
        self.min_std = float(min_std)
        self.log_std: Tensor | None
        if std is None:
            self.log_std = None
        else:
            if not std > min_std:
                raise ValueError(f"std must be > min_std = {min_std}, got {std}")
            init = torch.full((dim,), math.log(std - min_std))
            if learn_std:
                self.log_std = nn.Parameter(init)
            else:
                self.register_buffer("log_std", init)

    def std_log(self) -> Tensor | None:
        """``log σ: [dim]`` with ``σ = min_std + exp(param)``; ``None`` when deterministic."""
        if self.log_std is None:
            return None
        return torch.log(self.min_std + torch.exp(self.log_std))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(mean [K, dim], log σ [dim] or None)``."""
        mean = self.encoder(x)
        if mean.ndim != 2 or mean.shape[1] != self.dim:
            raise ValueError(f"encoder must return [K, {self.dim}], got {tuple(mean.shape)}")
        return mean, self.std_log()

    def sample(
        self, x: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Reparameterised ``z = μ + σ ε``: returns ``(z, mean, log σ)``."""
        mean, log_std = self(x)
        if log_std is None:
            return mean, mean, None
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + torch.exp(log_std) * eps, mean, log_std


class RPM(nn.Module):
    """Two-view recognition parameterised model.

    ``recognition`` encodes both views (or pass ``recognition_p`` for ``x′``); ``prior`` is
    ``"infonce"`` (needs ``critic(z, z′) -> S [K, K]``), ``"learned"`` (:class:`JointPrior`) or
    ``"independent"`` (:class:`IndependentPrior`). ``elbo(x, x′)`` is the batch estimate of
    :mod:`infomax.rpm.elbo`, with ``R(z)`` estimated by the batch mixture.
    """

    def __init__(
        self,
        recognition: GaussianRecognition,
        prior: str = "learned",
        *,
        critic: Callable[[Tensor, Tensor], Tensor] | None = None,
        recognition_p: GaussianRecognition | None = None,
        n_components: int = 1,
    ) -> None:
        super().__init__()
        if prior not in PRIORS:
            raise ValueError(f"unknown prior {prior!r}; valid names: {', '.join(PRIORS)}")
        if prior == "infonce" and critic is None:
            raise ValueError("the infonce prior needs a critic f(z, z') -> scores [K, K]")
        self.prior_name = prior
        self.recognition = recognition
        self.recognition_p = recognition_p if recognition_p is not None else recognition
        self.critic = critic
        dz, dzp = recognition.dim, self.recognition_p.dim
        self.prior: JointPrior | IndependentPrior | None = None
        if prior == "learned":
            self.prior = JointPrior(dz, dzp, n_components)
        elif prior == "independent":
            self.prior = IndependentPrior(dz, dzp, n_components)
        if prior != "infonce" and (
            recognition.log_std is None or self.recognition_p.log_std is None
        ):
            raise ValueError(
                f"the {prior} prior needs log R(z): use a Gaussian recognition model (std > 0)"
            )

    def elbo(self, x: Tensor, xp: Tensor, generator: torch.Generator | None = None) -> ELBOTerms:
        """Batch ELBO for ``K`` pairs ``x: [K, ...]``, ``x′: [K, ...]``."""
        z, mean, log_std = self.recognition.sample(x, generator)
        zp, mean_p, log_std_p = self.recognition_p.sample(xp, generator)
        log_r = log_rp = None
        if log_std is not None and log_std_p is not None:
            log_r = log_aggregate_recognition(z, mean, log_std)
            log_rp = log_aggregate_recognition(zp, mean_p, log_std_p)
        if self.prior_name == "infonce":
            assert self.critic is not None
            return infonce_prior_elbo(self.critic(z, zp), log_r_z=log_r, log_r_zp=log_rp)
        assert self.prior is not None and log_r is not None and log_rp is not None
        return elbo_terms(self.prior.log_prob(z, zp), log_r, log_rp)

    def encode(self, x: Tensor) -> Tensor:
        """Recognition mean ``g(x)`` (the representation used downstream)."""
        return self.recognition(x)[0]


def rpm_loss(model: RPM, batch: tuple[Tensor, Tensor]) -> Tensor:
    """Training loss ``−model ELBO`` for a batch ``(x, x′)`` (for ``infomax.train.fit``)."""
    x, xp = batch[0], batch[1]
    return -model.elbo(x, xp).model
