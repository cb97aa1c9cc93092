"""Identifiability metrics on held-out samples (SPEC §5).

Given features ``h = f(g(z)): [n, d_h]`` and true latents ``z: [n, d_z]``:

- ``r2_linear``: R² (uniform average over the ``d_z`` outputs) of an ordinary least-squares map
  ``h → z`` fitted on the training split, evaluated on the held-out split ("linear identifiable":
  ``h = A z + b`` for an invertible ``A`` gives 1).
- ``r2_kernel``: the same with RBF kernel ridge regression on standardised ``h`` (``γ = 1/d_h``,
  ``α`` chosen by 3-fold cross-validation on the training split from ``{1e-3, …, 1e2}``,
  at most ``kernel_train`` training points; grid up to ``100``): "nonlinear identifiable".
- ``mcc``: mean absolute Pearson correlation ``|corr(z_k, h_{π(k)})|`` after the best one-to-one
  matching ``π`` of dimensions (Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``),
  on the held-out split: 1 when ``h`` is ``z`` up to permutation, sign flips and scaling.

>>> import numpy as np
>>> z = np.random.default_rng(0).normal(size=(400, 3))
>>> round(mcc(-z[:, ::-1] * 2.0, z), 6)
1.0
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import as_2d_tensor

_KERNEL_ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def _as_array(data: Any, name: str) -> np.ndarray:
    return as_2d_tensor(data, name, dtype=torch.float64).numpy()


def _pair(h: Any, z: Any, tag: str) -> tuple[np.ndarray, np.ndarray]:
    hh, zz = _as_array(h, f"features{tag}"), _as_array(z, f"latents{tag}")
    if hh.shape[0] != zz.shape[0]:
        raise ValueError(
            f"features{tag} and latents{tag} must have the same number of samples, "
            f"got {hh.shape[0]} and {zz.shape[0]}"
        )
    if hh.shape[0] < 3:
        raise ValueError(f"need at least 3 samples, got {hh.shape[0]}")
    return hh, zz


def linear_prediction(h_train: Any, z_train: Any, h_test: Any, z_test: Any) -> np.ndarray:
    """``ẑ = h_test W + b`` with ``W, b`` the least-squares fit ``z ≈ h W + b`` on the training
    split: ``[n_test, d_z]``."""
    from sklearn.linear_model import LinearRegression

    ht, zt = _pair(h_train, z_train, "_train")
    hv, _ = _pair(h_test, z_test, "_test")
    return np.asarray(LinearRegression().fit(ht, zt).predict(hv))


def linear_r2(h_train: Any, z_train: Any, h_test: Any, z_test: Any) -> float:
    """Held-out R² of least squares ``z ≈ h W + b`` fitted on the training split."""
    from sklearn.metrics import r2_score

    pred = linear_prediction(h_train, z_train, h_test, z_test)
    return float(r2_score(_as_array(z_test, "latents_test"), pred))


def kernel_r2(
    h_train: Any,
    z_train: Any,
    h_test: Any,
    z_test: Any,
    *,
    kernel_train: int = 2000,
    seed: int = 0,
) -> float:
    """Held-out R² of RBF kernel ridge regression ``h → z`` (``α`` by 3-fold CV)."""
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GridSearchCV

    ht, zt = _pair(h_train, z_train, "_train")
    hv, zv = _pair(h_test, z_test, "_test")
    if ht.shape[0] > kernel_train:
        keep = np.random.default_rng(seed).choice(ht.shape[0], kernel_train, replace=False)
        ht, zt = ht[keep], zt[keep]
    mean, std = ht.mean(0), ht.std(0) + 1e-12
    ht, hv = (ht - mean) / std, (hv - mean) / std
    search = GridSearchCV(
        KernelRidge(kernel="rbf", gamma=1.0 / ht.shape[1]),
        {"alpha": list(_KERNEL_ALPHAS)},
        cv=3,
        scoring="r2",
    )
    search.fit(ht, zt)
    return float(r2_score(zv, search.predict(hv)))


def mcc(h: Any, z: Any) -> float:
    """Mean ``|Pearson corr|`` over the best one-to-one matching of ``z``'s dimensions to ``h``'s
    (Hungarian); needs ``d_h ≥ d_z``. Constant columns count as correlation 0."""
    return float(matched_correlations(h, z).mean())


def matched_correlations(h: Any, z: Any) -> np.ndarray:
    """``|corr(z_k, h_{π(k)})|`` for every latent ``k`` under the matching ``π`` of :func:`mcc`:
    ``[d_z]`` (their mean is the MCC)."""
    from scipy.optimize import linear_sum_assignment

    hh, zz = _pair(h, z, "")
    if hh.shape[1] < zz.shape[1]:
        raise ValueError(
            f"MCC needs at least as many features ({hh.shape[1]}) as latents ({zz.shape[1]})"
        )
    hc, zc = hh - hh.mean(0), zz - zz.mean(0)
    hn, zn = np.linalg.norm(hc, axis=0), np.linalg.norm(zc, axis=0)
    corr = (zc.T @ hc) / np.maximum(np.outer(zn, hn), 1e-300)
    corr[:, hn == 0] = 0.0
    corr[zn == 0, :] = 0.0
    rows, cols = linear_sum_assignment(-np.abs(corr))
    return np.abs(corr[rows, cols])


def per_latent_metrics(
    h_train: Any, z_train: Any, h_test: Any, z_test: Any
) -> dict[str, list[float]]:
    """Held-out ``r2_linear`` (least squares fitted on the training split) and matched
    ``mcc`` correlation of every latent dimension: two lists of ``d_z`` numbers."""
    from sklearn.metrics import r2_score

    pred = linear_prediction(h_train, z_train, h_test, z_test)
    zz = _as_array(z_test, "latents_test")
    r2 = r2_score(zz, pred, multioutput="raw_values")
    return {
        "r2_linear": [float(v) for v in r2],
        "mcc": [float(v) for v in matched_correlations(h_test, z_test)],
    }


def identifiability_metrics(
    h_train: Tensor | np.ndarray,
    z_train: Tensor | np.ndarray,
    h_test: Tensor | np.ndarray,
    z_test: Tensor | np.ndarray,
    *,
    kernel: bool = True,
    kernel_train: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """All metrics in one dict: ``r2_linear``, ``r2_kernel`` (when ``kernel``) and ``mcc``;
    regressions are fitted on ``(h_train, z_train)`` and every number is measured on the
    held-out ``(h_test, z_test)``."""
    out = {"r2_linear": linear_r2(h_train, z_train, h_test, z_test)}
    if kernel:
        out["r2_kernel"] = kernel_r2(
            h_train, z_train, h_test, z_test, kernel_train=kernel_train, seed=seed
        )
    out["mcc"] = mcc(h_test, z_test)
    return out
