"""Drop-in loss modules (lightly style): ``loss_fn = NTXentLoss(); loss = loss_fn(z0, z1)``.

Each takes ``z0, z1: [B, d]`` (two views, or paired ``x`` / ``y`` embeddings) and returns a
scalar loss; each evaluates the one definition of its objective in :mod:`infomax.bounds` /
:mod:`infomax.divergences`, dense or tiled (``impl``), and under ``torchrun`` gathers the other
ranks' embeddings with gradient so that loss and gradients equal one process on the global batch.

- :class:`NTXentLoss` — SimCLR's ``2B``-anchor NT-Xent;
- :class:`FMICLLoss` — f-MICL over the same anchors, every divergence, cosine or f-Gaussian;
- :class:`InfoNCELoss` — paired embeddings, one- or two-sided, or against a queue;
- :class:`BoundLoss` — any MI bound of a separable critic, with FLO's / TUBA's head, MINE's EMA;
- :class:`ContrastiveLoss` — the common module behind the first three.
"""

from __future__ import annotations

from .bound import BoundLoss
from .contrastive import (
    ContrastiveLoss,
    check_embeddings,
    contrastive_objectives,
)
from .fmicl import FMICLLoss
from .infonce import InfoNCELoss
from .ntxent import NTXentLoss

__all__ = [
    "BoundLoss",
    "ContrastiveLoss",
    "FMICLLoss",
    "InfoNCELoss",
    "NTXentLoss",
    "check_embeddings",
    "contrastive_objectives",
]
