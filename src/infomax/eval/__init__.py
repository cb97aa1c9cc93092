"""Evaluation of frozen representations (SPEC §4).

- :func:`linear_probe`: multinomial logistic regression (full-batch L-BFGS) on standardised frozen
  features; returns test accuracy.
- :func:`few_label_probe`: the same probe fitted on only ``k`` labelled examples per class,
  mean and std over random draws (the label-efficiency of a representation).
- :func:`knn_accuracy`: weighted kNN (Wu et al. 2018): the ``k`` nearest training features by
  cosine similarity vote for their labels with weight ``exp(sim / T)`` (``k = 200``, ``T = 0.1``).
- :func:`alignment`: ``E‖f(x) − f(x⁺)‖₂^α`` over positive pairs on unit vectors (α = 2).
- :func:`uniformity`: ``log E exp(−t‖f(x) − f(y)‖²)`` over distinct pairs (t = 2)
  (Wang & Isola 2020). Lower is better for both.
- :func:`extract_features`: encoder outputs for a tensor of images, in batches, no grad.

>>> import torch
>>> z = torch.nn.functional.normalize(torch.randn(100, 3), dim=1)
>>> float(alignment(z, z))
0.0
"""

from __future__ import annotations

from .metrics import (
    alignment,
    extract_features,
    few_label_probe,
    knn_accuracy,
    linear_probe,
    uniformity,
)

__all__ = [
    "alignment",
    "extract_features",
    "few_label_probe",
    "knn_accuracy",
    "linear_probe",
    "uniformity",
]
