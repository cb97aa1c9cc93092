"""InfoNCE as variational inference: the recognition parameterised model (RPM) and its ELBO.

SPEC §6 (Aitchison & Ganev 2021). :mod:`~infomax.rpm.elbo` holds the ELBO terms and their batch
estimators as pure functions, :mod:`~infomax.rpm.models` the learned priors and recognition
models, :mod:`~infomax.rpm.gaussian` the closed forms on Gaussian latents, and
the numerical demonstrations behind ``infomax rpm --demo`` are in
:mod:`infomax.experiments.rpm_demo`.
"""

from __future__ import annotations

from .elbo import (
    ELBOTerms,
    elbo_terms,
    gaussian_log_prob,
    infonce_prior_elbo,
    infonce_prior_log_ratio,
    log_aggregate_recognition,
    log_partition,
)
from .gaussian import GaussianRPMTask, QuadraticCritic
from .models import (
    PRIORS,
    RPM,
    GaussianMixture,
    GaussianRecognition,
    IndependentPrior,
    JointPrior,
    rpm_loss,
)

__all__ = [
    "ELBOTerms",
    "GaussianMixture",
    "GaussianRPMTask",
    "GaussianRecognition",
    "IndependentPrior",
    "JointPrior",
    "PRIORS",
    "QuadraticCritic",
    "RPM",
    "elbo_terms",
    "gaussian_log_prob",
    "infonce_prior_elbo",
    "infonce_prior_log_ratio",
    "log_aggregate_recognition",
    "log_partition",
    "rpm_loss",
]
