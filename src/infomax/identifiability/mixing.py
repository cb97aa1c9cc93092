"""Invertible MLP mixing ``x = g(z)`` with condition-number control (SPEC §5).

``g = W_L ∘ σ ∘ W_{L−1} ∘ … ∘ σ ∘ W_1`` with square ``W_l: [n, n]`` (no bias) and leaky-ReLU
``σ`` (slope ``a = 0.2``) between layers, as in Hyvärinen & Morioka's PCL mixing and the code of
Zimmermann et al. (2021). Each ``W_l`` has entries ``U(−1, 1)``, columns scaled to unit L2 norm,
and is re-drawn until its condition number ``κ(W_l) = s_max / s_min`` is below a threshold, so
``g`` is invertible with an explicit inverse ``g⁻¹ = W_1⁻¹ ∘ σ⁻¹ ∘ … ∘ W_L⁻¹``,
``σ⁻¹(y) = y`` for ``y ≥ 0`` and ``y / a`` otherwise. The Jacobian
``J(z) = W_L D_{L−1} W_{L−1} ⋯ D_1 W_1`` (``D`` diagonal with entries ``1`` or ``a``) is never
singular; :func:`invertibility_report` checks both facts on a sample.

>>> import numpy as np, torch
>>> g = InvertibleMLP.random(4, layers=3, seed=0)
>>> z = torch.randn(8, 4)
>>> bool(torch.allclose(g.inverse(g(z)), z, atol=1e-4))
True
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


def random_conditioned_matrix(
    n: int, max_condition: float, rng: np.random.Generator, max_tries: int = 100_000
) -> np.ndarray:
    """``[n, n]`` matrix with ``U(−1, 1)`` entries and unit-norm columns, re-drawn until
    ``cond(W) ≤ max_condition``; ``ValueError`` after ``max_tries`` draws."""
    for _ in range(max_tries):
        w = rng.uniform(-1.0, 1.0, size=(n, n))
        w /= np.linalg.norm(w, axis=0, keepdims=True)
        if np.linalg.cond(w) <= max_condition:
            return w
    raise ValueError(
        f"no {n}x{n} matrix with condition number <= {max_condition} in {max_tries} draws; "
        "raise max_condition"
    )


def condition_threshold(
    n: int, quantile: float, rng: np.random.Generator, pool: int = 10_000
) -> float:
    """The ``quantile`` of ``cond(W)`` over ``pool`` random matrices (PCL's threshold rule)."""
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    conds = []
    for _ in range(pool):
        w = rng.uniform(-1.0, 1.0, size=(n, n))
        w /= np.linalg.norm(w, axis=0, keepdims=True)
        conds.append(np.linalg.cond(w))
    return float(np.quantile(conds, quantile))


class InvertibleMLP(nn.Module):
    """Frozen invertible mixing ``g: ℝⁿ → ℝⁿ`` (``[batch, n] -> [batch, n]``) with ``inverse``.

    Build one with :meth:`random`; ``weights`` holds the ``L`` square matrices ``[L, n, n]``.
    """

    weights: Tensor

    def __init__(self, weights: Tensor, slope: float = 0.2) -> None:
        super().__init__()
        if weights.ndim != 3 or weights.shape[1] != weights.shape[2]:
            raise ValueError(f"weights must have shape [L, n, n], got {tuple(weights.shape)}")
        if not 0.0 < slope <= 1.0:
            raise ValueError(f"leaky-ReLU slope must be in (0, 1], got {slope}")
        self.register_buffer("weights", weights.float())
        self.slope = float(slope)

    @classmethod
    def random(
        cls,
        n: int,
        layers: int = 3,
        *,
        seed: int = 0,
        max_condition: float | None = None,
        quantile: float = 0.001,
        pool: int = 10_000,
        slope: float = 0.2,
    ) -> InvertibleMLP:
        """Seeded random mixing with ``layers`` matrices, each of condition number at most
        ``max_condition``; by default the ``quantile`` of ``cond`` over ``pool`` random draws
        (Zimmermann et al.'s ``main_mlp.py`` takes the minimum of 25 000 draws; the default
        ``0.001`` of 10 000 is close to it and needs ~1 000 re-draws per layer, not ~25 000)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise ValueError(f"layers must be an integer >= 1, got {layers!r}")
        rng = np.random.default_rng(seed)
        thresh = (
            condition_threshold(n, quantile, rng, pool) if max_condition is None else max_condition
        )
        mats = [random_conditioned_matrix(n, thresh, rng) for _ in range(layers)]
        return cls(torch.from_numpy(np.stack(mats)), slope)

    def _act(self, x: Tensor) -> Tensor:
        return nn.functional.leaky_relu(x, self.slope)

    def forward(self, z: Tensor) -> Tensor:
        """``x = g(z)``: ``z @ W_1ᵀ``, leaky-ReLU, ..., ``@ W_Lᵀ``."""
        x = z
        for i, w in enumerate(self.weights):
            x = x @ w.T
            if i < len(self.weights) - 1:
                x = self._act(x)
        return x

    def inverse(self, x: Tensor) -> Tensor:
        """``z = g⁻¹(x)`` (explicit: linear solves and the inverse leaky-ReLU), ``[batch, n]``."""
        z = x.double()
        for i in range(len(self.weights) - 1, -1, -1):
            z = torch.linalg.solve(self.weights[i].double(), z.T).T
            if i > 0:
                z = torch.where(z >= 0, z, z / self.slope)
        return z.to(x.dtype)

    def condition_numbers(self) -> list[float]:
        """``cond(W_l)`` of every layer."""
        return [float(torch.linalg.cond(w.double())) for w in self.weights]


def invertibility_report(g: InvertibleMLP, z: Tensor) -> dict[str, float]:
    """Checks on a sample ``z: [n, dim]``: ``max_reconstruction_error = max ‖g⁻¹(g(z)) − z‖_∞``
    and ``min_singular_value = min_i s_min(J_g(z_i))`` (Jacobian by autograd), plus the
    layers' largest condition number."""
    with torch.no_grad():
        err = float((g.inverse(g(z)) - z).abs().max())
    jac = torch.func.vmap(torch.func.jacrev(lambda v: g(v.unsqueeze(0)).squeeze(0)))(z.float())
    s_min = float(torch.linalg.svdvals(jac.double()).min())
    return {
        "max_reconstruction_error": err,
        "min_singular_value": s_min,
        "max_layer_condition": max(g.condition_numbers()),
    }
