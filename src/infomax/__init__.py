"""infomax: contrastive and InfoMax learning in PyTorch.

Variational mutual-information bounds (InfoNCE, NWJ, DV/MINE, TUBA, JS, SMILE, FLO), f-MICL
divergences, contrastive representation learning, identifiability, the RPM view of InfoNCE and
noise-injected distribution matching. See ``SPEC.md`` for the maths; units are nats.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "estimate_mi": "infomax.estimate",
    "MIEstimate": "infomax.estimate",
    "MIEstimator": "infomax.estimate",
    "EstimateConfig": "infomax.estimate",
    "EstimationFailed": "infomax.estimate",
    "build_critic": "infomax.critics",
    "Similarity": "infomax.critics",
    "NTXentLoss": "infomax.losses",
    "FMICLLoss": "infomax.losses",
    "InfoNCELoss": "infomax.losses",
    "BoundLoss": "infomax.losses",
    "BOUNDS": "infomax.registry",
    "CRITICS": "infomax.registry",
    "DIVERGENCES": "infomax.registry",
    "TASKS": "infomax.registry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'infomax' has no attribute {name!r}")


__all__ = sorted(_LAZY)
