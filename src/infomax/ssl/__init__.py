"""Contrastive self-supervised learning: SimCLR, MoCo v2, MoCo v3 with any objective.

- :mod:`.losses`: the :class:`Objective` setting (``infonce`` / NT-Xent or any f-MICL divergence,
  ``cosine`` or ``gaussian`` similarity) and the loss modules of :mod:`infomax.losses` it builds.
- :mod:`.methods`: the modules (:class:`SimCLR`, :class:`MoCoV2`, :class:`MoCoV3`,
  :class:`MemoryQueue`), registered in :data:`infomax.registry.METHODS`.
- :mod:`.trainer`: :class:`SSLConfig`, :func:`train_ssl` (data, augmentation,
  :func:`infomax.train.fit`, evaluation, ``results.json``) and :func:`evaluate_checkpoint`.

The short SimCLR run on digits of ``infomax demo`` is part of :mod:`infomax.experiments.demo`;
:data:`SSL_PRESETS` holds the per-data-set settings of ``infomax train`` (``--preset``).
"""

from __future__ import annotations

from .losses import (
    SIMILARITIES,
    Objective,
    contrastive_terms,
    ntxent_loss,
    objective_names,
    queue_loss,
)
from .methods import MemoryQueue, MoCoV2, MoCoV3, SimCLR
from .trainer import SSL_PRESETS, SSLConfig, build_model, evaluate_checkpoint, train_ssl

__all__ = [
    "SIMILARITIES",
    "SSL_PRESETS",
    "MemoryQueue",
    "MoCoV2",
    "MoCoV3",
    "Objective",
    "SSLConfig",
    "SimCLR",
    "build_model",
    "contrastive_terms",
    "evaluate_checkpoint",
    "ntxent_loss",
    "objective_names",
    "queue_loss",
    "train_ssl",
]
