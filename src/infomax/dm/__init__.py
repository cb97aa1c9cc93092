"""Distribution matching with noise-injected Deep InfoMax (SPEC §7).

- :mod:`.targets`: target laws by name: ``gaussian``, ``uniform``, and laws reached through the
  inverse CDF of the uniform representation (``laplace``, ``exponential``, ``gumbel``).
- :mod:`.noise`: :class:`NoiseInjection` (normalisation + independent noise; batch-norm, rank or
  radial normalisation), capacity ceilings, the optional ``σ`` schedule.
- :mod:`.metrics`: per-dimension KS / Shapiro–Wilk p-values, the energy two-sample permutation
  test, sliced Wasserstein; :func:`dm_metrics` returns them all;
  :func:`energy_distance_penalty` and :func:`mmd2_imq`, differentiable training penalties
  (:data:`MATCH_PENALTIES`).
- :mod:`.experiment`: :class:`DMConfig` and :func:`train_dm` (one run) on synthetic data,
  digits, MNIST or Fashion-MNIST.
- :mod:`.plots`: the σ sweep's figures (the sweep itself: :mod:`infomax.experiments.dm_sweep`).

>>> from infomax.dm import gaussian_capacity
>>> round(gaussian_capacity(16, 0.2), 3)
26.065
"""

from __future__ import annotations

from .experiment import DMConfig, NoisyDIM, synthetic_data, train_dm
from .metrics import (
    MATCH_PENALTIES,
    DMMetrics,
    dm_metrics,
    energy_distance,
    energy_distance_penalty,
    energy_test,
    ks_pvalues,
    mmd2_imq,
    reference_metrics,
    sample_target,
    shapiro_pvalues,
    sliced_wasserstein,
)
from .noise import (
    NORMALIZATIONS,
    TARGETS,
    NoiseInjection,
    RadialRankNormalization,
    RankNormalization,
    binding_sigma,
    capacity,
    gaussian_capacity,
    sigma_schedule,
    uniform_capacity,
)
from .targets import TargetLaw, get_target, target_names

__all__ = [
    "MATCH_PENALTIES",
    "NORMALIZATIONS",
    "TARGETS",
    "TargetLaw",
    "RadialRankNormalization",
    "RankNormalization",
    "get_target",
    "mmd2_imq",
    "target_names",
    "DMConfig",
    "DMMetrics",
    "NoiseInjection",
    "NoisyDIM",
    "binding_sigma",
    "capacity",
    "dm_metrics",
    "energy_distance",
    "energy_distance_penalty",
    "energy_test",
    "gaussian_capacity",
    "ks_pvalues",
    "reference_metrics",
    "sample_target",
    "shapiro_pvalues",
    "sigma_schedule",
    "sliced_wasserstein",
    "synthetic_data",
    "train_dm",
    "uniform_capacity",
]
