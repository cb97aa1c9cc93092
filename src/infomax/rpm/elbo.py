"""The RPM evidence lower bound as pure functions of per-sample log densities (SPEC §6).

Recognition parameterised model (Aitchison & Ganev, "InfoNCE is variational inference in a
recognition parameterised model", 2021). Two views ``x, x′`` with latents ``z, z′``; a recognition
model ``R(z | x)`` defines the likelihood ``P(x | z) = P_true(x) R(z | x) / R(z)`` with the
recognition marginal ``R(z) = E_{P_true(x)} R(z | x)``, and a prior ``P(z, z′)``. With the
approximate posterior ``Q(z, z′ | x, x′) = R(z | x) R(z′ | x′)`` the conditionals cancel:

    ELBO = E_Q[log P(z, z′)] − E_Q[log R(z)] − E_Q[log R(z′)]  +  E[log P_true(x) + log P_true(x′)]
           └ prior term ┘     └──── marginal recognition terms ────┘   └──── constant (no model) ──┘

The first three terms are the *model-dependent ELBO* ``E_Q log [P(z, z′) / (R(z) R(z′))]``.
Batch estimators: a batch holds ``K`` pairs ``(x_i, x′_i)`` and one draw ``z_i ~ R(·|x_i)``,
``z′_i ~ R(·|x′_i)`` per pair; every expectation is a mean over rows ``i``, and ``R(z)`` is
estimated by the batch mixture ``R̂(z) = mean_j R(z | x_j)`` (:func:`log_aggregate_recognition`).

* Optimal learned prior ``P = E_true[R(z|x) R(z′|x′)]`` (the law of ``(z, z′)``): the model ELBO is
  ``I(Z; Z′)``; with a prior family it is ``I(Z; Z′) − KL(Q(z, z′) ‖ P)``.
* InfoNCE prior ``P(z′ | z) = R(z′) e^{f(z,z′)} / E_{R(z″)} e^{f(z,z″)}``, ``P(z) = R(z)``: the
  ``R`` terms cancel and the model ELBO is ``E[f(z, z′)] − E_z log E_{z″} e^{f(z,z″)}``; estimating
  the inner expectation with the batch (positive included) gives exactly InfoNCE(K)
  (``bounds.infonce``, which already adds ``log K``), so InfoNCE(K) → model ELBO as ``K → ∞``.
* Independent prior ``P(z) P′(z′)``: model ELBO ``= −KL(R(z) ‖ P) − KL(R(z′) ‖ P′) ≤ 0``.

All values are in nats. Shapes: ``z: [K, d]``, per-sample log densities ``[K]``, ``S: [K, M]``.

>>> import torch
>>> s = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
>>> from infomax.bounds import infonce
>>> bool(torch.isclose(infonce_prior_elbo(s).model, infonce(s)))
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..bounds import infonce_terms, log_mean_exp_offdiag_rows

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class ELBOTerms:
    """Batch estimate of the RPM ELBO, split into its terms (scalars, nats).

    ``prior_term = mean_i log P(z_i, z′_i)``; ``recognition_z = −mean_i log R(z_i)``;
    ``recognition_zp = −mean_i log R(z′_i)``; ``model = prior_term + recognition_z +
    recognition_zp`` (the model-dependent ELBO; for the InfoNCE prior it is computed directly, so it
    is finite even when ``R`` is unknown and the three terms are NaN); ``constant = mean_i [log
    P_true(x_i) + log P_true(x′_i)]`` (NaN when the data density is unknown).
    """

    prior_term: Tensor
    recognition_z: Tensor
    recognition_zp: Tensor
    model: Tensor
    constant: Tensor

    @property
    def total(self) -> Tensor:
        """Full ELBO ``model + constant`` (NaN when the constant is unknown)."""
        return self.model + self.constant

    def to_dict(self) -> dict[str, float]:
        """All terms and the total as Python floats."""
        return {
            "prior_term": float(self.prior_term),
            "recognition_z": float(self.recognition_z),
            "recognition_zp": float(self.recognition_zp),
            "model": float(self.model),
            "constant": float(self.constant),
            "total": float(self.total),
        }


def _rows(t: Tensor, name: str, k: int | None = None) -> Tensor:
    if t.ndim != 1 or (k is not None and t.shape[0] != k):
        want = f"[{k}]" if k is not None else "[K]"
        raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}")
    return t


def _constant(log_px: Tensor | None, log_pxp: Tensor | None, rows: Tensor) -> Tensor:
    """``mean_i [log P_true(x_i) + log P_true(x′_i)]``, or NaN when either is missing."""
    if log_px is None or log_pxp is None:
        return torch.full((), math.nan, dtype=rows.dtype, device=rows.device)
    k = rows.shape[0]
    return _rows(log_px, "log_px", k).mean() + _rows(log_pxp, "log_pxp", k).mean()


def gaussian_log_prob(z: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """Diagonal Gaussian ``log N(z_i; μ_i, diag σ²)``, summed over dimensions: ``[K]``.

    ``z, mean: [K, d]``; ``log_std: [K, d]``, ``[d]`` or scalar (broadcast).
    ``log N = −½ Σ_k [((z_k − μ_k)/σ_k)² + 2 log σ_k + log 2π]``.
    """
    log_std = torch.as_tensor(log_std, dtype=z.dtype, device=z.device)
    u = (z - mean) * torch.exp(-log_std)
    return -0.5 * (u * u + 2.0 * log_std + _LOG_2PI).expand_as(z).sum(-1)


def log_aggregate_recognition(z: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """Batch estimate of the recognition marginal ``log R(z_i)``: ``[K]``.

    ``R(z) = E_{P_true(x)} R(z | x)`` with Gaussian ``R(z | x_j) = N(μ_j, diag σ_j²)`` is
    estimated by the batch mixture ``log R̂(z_i) = logsumexp_j log N(z_i; μ_j, σ_j²) − log M``.
    ``z: [K, d]``, ``mean: [M, d]``, ``log_std: [M, d]``, ``[d]`` or scalar. Consistent as ``M → ∞``
    (a Gaussian kernel density estimate whose bandwidth is the recognition noise).
    """
    if z.ndim != 2 or mean.ndim != 2 or z.shape[1] != mean.shape[1]:
        raise ValueError(
            f"z [K, d] and mean [M, d] must agree, got {tuple(z.shape)}, {tuple(mean.shape)}"
        )
    log_std = torch.as_tensor(log_std, dtype=z.dtype, device=z.device)
    if log_std.ndim <= 1:  # one σ for every component: scaled squared distances, O(K·M) memory
        inv = torch.exp(-log_std)
        u, m = z * inv, mean * inv
        sq = (u * u).sum(1).unsqueeze(1) + (m * m).sum(1).unsqueeze(0) - 2.0 * (u @ m.T)
        log_n = -0.5 * sq.clamp_min(0.0) - log_std.expand(z.shape[1]).sum()
    else:
        log_std = log_std.expand_as(mean)
        u = (z.unsqueeze(1) - mean.unsqueeze(0)) * torch.exp(-log_std).unsqueeze(0)  # [K, M, d]
        log_n = -0.5 * (u * u).sum(-1) - log_std.sum(-1).unsqueeze(0)
    log_n = log_n - 0.5 * z.shape[1] * _LOG_2PI
    return torch.logsumexp(log_n, dim=1) - math.log(mean.shape[0])


def log_partition(scores: Tensor) -> Tensor:
    """Batch estimate of the InfoNCE prior's normaliser ``log E_{R(z″)} e^{f(z_i, z″)}``: ``[K]``.

    ``scores: [K, M]`` with ``scores[i, m] = f(z_i, z″_m)`` for ``M`` draws ``z″_m ~ R(z″)``
    independent of ``z_i``; returns ``logsumexp_m S_im − log M`` (biased low for finite ``M``).
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be [K, M], got shape {tuple(scores.shape)}")
    return torch.logsumexp(scores, dim=1) - math.log(scores.shape[1])


def infonce_prior_log_ratio(scores: Tensor, *, include_positive: bool = True) -> Tensor:
    """Per-row ``log P(z_i, z′_i) − log R(z_i) − log R(z′_i)`` under the InfoNCE prior: ``[K]``.

    ``= S_ii − log Ê_{z″} e^{f(z_i, z″)}`` with ``S: [K, K]``, ``S_ij = f(z_i, z′_j)``. The
    normaliser is estimated with the batch: ``log mean_j e^{S_ij}`` (``include_positive``; this is
    ``bounds.infonce_terms``, i.e. InfoNCE(K) per row, ``log K`` included) or
    ``log mean_{j≠i} e^{S_ij}`` (only the independent negatives).
    """
    if include_positive:
        return infonce_terms(scores)
    return scores.diagonal() - log_mean_exp_offdiag_rows(scores)


def elbo_terms(
    log_prior: Tensor,
    log_r_z: Tensor,
    log_r_zp: Tensor,
    *,
    log_px: Tensor | None = None,
    log_pxp: Tensor | None = None,
) -> ELBOTerms:
    """RPM ELBO from per-sample log densities at ``z_i ~ R(·|x_i)``, ``z′_i ~ R(·|x′_i)``.

    ``log_prior = log P(z_i, z′_i)``, ``log_r_z = log R(z_i)``, ``log_r_zp = log R(z′_i)``,
    optional ``log_px = log P_true(x_i)``, ``log_pxp = log P_true(x′_i)``; all ``[K]``.
    ``ELBO = mean_i [log P(z_i, z′_i) − log R(z_i) − log R(z′_i)] + mean_i [log P_true(x_i) +
    log P_true(x′_i)]``.
    """
    k = _rows(log_prior, "log_prior").shape[0]
    prior = log_prior.mean()
    rec_z = -_rows(log_r_z, "log_r_z", k).mean()
    rec_zp = -_rows(log_r_zp, "log_r_zp", k).mean()
    return ELBOTerms(
        prior, rec_z, rec_zp, prior + rec_z + rec_zp, _constant(log_px, log_pxp, log_prior)
    )


def infonce_prior_elbo(
    scores: Tensor,
    *,
    log_r_z: Tensor | None = None,
    log_r_zp: Tensor | None = None,
    include_positive: bool = True,
    log_px: Tensor | None = None,
    log_pxp: Tensor | None = None,
) -> ELBOTerms:
    """RPM ELBO with the InfoNCE prior built from the critic scores ``S_ij = f(z_i, z′_j)``.

    ``log P(z, z′) = log R(z) + log R(z′) + f(z, z′) − log E_{R(z″)} e^{f(z, z″)}``, so
    ``model = mean_i [S_ii − log Ê e^{f(z_i, ·)}]`` whatever ``R`` is; with the default batch
    normaliser this is ``bounds.infonce(S)`` (InfoNCE(K) with its ``+ log K``). When ``log_r_z``
    and ``log_r_zp`` (``[K]``) are given the prior and recognition terms are filled in as well
    (they cancel in ``model``); otherwise they are NaN.
    """
    ratio = infonce_prior_log_ratio(scores, include_positive=include_positive)
    model = ratio.mean()
    nan = torch.full((), math.nan, dtype=model.dtype, device=model.device)
    if log_r_z is None or log_r_zp is None:
        return ELBOTerms(nan, nan, nan, model, _constant(log_px, log_pxp, ratio))
    k = ratio.shape[0]
    log_r_z, log_r_zp = _rows(log_r_z, "log_r_z", k), _rows(log_r_zp, "log_r_zp", k)
    terms = elbo_terms(
        ratio + log_r_z + log_r_zp, log_r_z, log_r_zp, log_px=log_px, log_pxp=log_pxp
    )
    return ELBOTerms(
        terms.prior_term, terms.recognition_z, terms.recognition_zp, model, terms.constant
    )
