"""Identifiability toolkit: contrastive learning inverts the data-generating process (SPEC §5).

Latent spaces and conditionals (:mod:`.spaces`), invertible MLP mixing (:mod:`.mixing`),
image worlds rendered from the latents (:mod:`.worlds`: ``get_world("shapes")``), held-out
metrics (:mod:`.metrics`) and the experiment runner (:mod:`.experiment`), after
Zimmermann et al., "Contrastive Learning Inverts the Data Generating Process" (ICML 2021).
The paper's matched-vs-mismatched grid is :mod:`infomax.experiments.identify_table`.
"""

from .experiment import IdentifyConfig, IdentifyResult, make_objective, run_identify
from .metrics import identifiability_metrics, kernel_r2, linear_r2, mcc, per_latent_metrics
from .mixing import InvertibleMLP, invertibility_report
from .spaces import (
    Conditional,
    Space,
    get_space,
    sample_gnormal,
    sample_vmf,
    vmf_mean_resultant_length,
)
from .worlds import WORLDS, ShapesWorld, get_world

__all__ = [
    "Conditional",
    "IdentifyConfig",
    "IdentifyResult",
    "InvertibleMLP",
    "ShapesWorld",
    "Space",
    "WORLDS",
    "get_space",
    "get_world",
    "identifiability_metrics",
    "invertibility_report",
    "kernel_r2",
    "linear_r2",
    "make_objective",
    "mcc",
    "per_latent_metrics",
    "run_identify",
    "sample_gnormal",
    "sample_vmf",
    "vmf_mean_resultant_length",
]
