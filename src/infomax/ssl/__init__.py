"""Contrastive self-supervised learning: SimCLR, MoCo v2, MoCo v3 with any objective.

- :mod:`.losses`: pure objectives (``infonce`` / NT-Xent or any f-MICL divergence) from
  positive and negative scores, with ``cosine`` or ``gaussian`` similarity.
- :mod:`.methods`: the modules (:class:`SimCLR`, :class:`MoCoV2`, :class:`MoCoV3`,
  :class:`MemoryQueue`), registered in :data:`infomax.registry.METHODS`.
- :mod:`.trainer`: :class:`SSLConfig`, :func:`train_ssl` (data, augmentation,
  :func:`infomax.train.fit`, evaluation, ``results.json``), :func:`evaluate_checkpoint` and
  :func:`demo_simclr_digits`.
"""

from __future__ import annotations

from .losses import (
    SIMILARITIES,
    Objective,
    contrastive_terms,
    in_batch_loss,
    ntxent_loss,
    objective_names,
    queue_loss,
    similarity_scores,
    split_scores,
)
from .methods import MemoryQueue, MoCoV2, MoCoV3, SimCLR
from .trainer import SSLConfig, build_model, demo_simclr_digits, evaluate_checkpoint, train_ssl

__all__ = [
    "SIMILARITIES",
    "MemoryQueue",
    "MoCoV2",
    "MoCoV3",
    "Objective",
    "SSLConfig",
    "SimCLR",
    "build_model",
    "contrastive_terms",
    "demo_simclr_digits",
    "evaluate_checkpoint",
    "in_batch_loss",
    "ntxent_loss",
    "objective_names",
    "queue_loss",
    "similarity_scores",
    "split_scores",
    "train_ssl",
]
