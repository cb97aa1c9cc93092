"""Additive uniform noise in 1-D: ``X ~ U(0, 1)``, ``Y = X + N``, ``N ~ U(-eps, eps)``.

``h(Y | X) = log(2 eps)``; ``p_Y`` is the trapezoid ``|[y - eps, y + eps] ∩ [0, 1]| / (2 eps)``,
whose entropy is ``eps`` (``eps <= 1/2``) or ``1/(4 eps) + log(2 eps)`` (``eps > 1/2``). Hence

    I(X; Y) = eps - log(2 eps)   if eps <= 1/2,
              1 / (4 eps)        if eps >  1/2.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from infomax.registry import TASKS
from infomax.tasks.base import Task, as_points, fmt
from infomax.tasks.gaussian import check_float


def additive_uniform_mi(epsilon: float) -> float:
    """``I(X; X + U(-eps, eps))`` for ``X ~ U(0, 1)``: ``eps - log(2 eps)`` or ``1/(4 eps)``.

    >>> additive_uniform_mi(0.5), additive_uniform_mi(1.0)
    (0.5, 0.25)
    """
    if epsilon <= 0.5:
        return epsilon - math.log(2.0 * epsilon)
    return 1.0 / (4.0 * epsilon)


@TASKS.register("additive-uniform")
class AdditiveUniformNoise(Task):
    """``x ~ U(0, 1)``, ``y = x + U(-epsilon, epsilon)``, both ``[n, 1]``.

    >>> task = AdditiveUniformNoise(0.1)
    >>> task.id, round(task.mutual_information, 4)
    ('additive-uniform-eps0.1', 1.7094)
    """

    name = "additive-uniform"

    def __init__(self, epsilon: float) -> None:
        self.epsilon = check_float(epsilon, "epsilon")
        if self.epsilon <= 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon}")
        self.dim_x = self.dim_y = 1

    @property
    def mutual_information(self) -> float:
        """``eps - log(2 eps)`` for ``eps <= 1/2``, else ``1 / (4 eps)`` nats."""
        return additive_uniform_mi(self.epsilon)

    @property
    def id(self) -> str:
        """``additive-uniform-eps{epsilon}``."""
        return f"additive-uniform-eps{fmt(self.epsilon)}"

    def params(self) -> dict[str, Any]:
        """``{"epsilon"}``."""
        return {"epsilon": self.epsilon}

    def _sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        x = rng.uniform(0.0, 1.0, size=(n, 1))
        return x, x + rng.uniform(-self.epsilon, self.epsilon, size=(n, 1))

    def marginal_density_y(self, y: np.ndarray) -> np.ndarray:
        """Trapezoid ``p_Y(y) = |[y - eps, y + eps] ∩ [0, 1]| / (2 eps)``, same shape as ``y``."""
        eps = self.epsilon
        overlap = np.clip(np.minimum(1.0, y + eps) - np.maximum(0.0, y - eps), 0.0, None)
        return np.asarray(overlap / (2.0 * eps))

    def log_density_ratio(self, x: Any, y: Any) -> np.ndarray:
        """Pairwise true critic ``[n, m]``: ``-log(2 eps) - log p_Y(y_j)`` where
        ``|y_j - x_i| <= eps`` and ``-inf`` elsewhere (pairs outside the joint support)."""
        x = as_points(x, 1, "x")[:, 0]
        y = as_points(y, 1, "y")[:, 0]
        inside = np.abs(y[None, :] - x[:, None]) <= self.epsilon
        with np.errstate(divide="ignore"):
            log_py = np.log(self.marginal_density_y(y))
        values = -math.log(2.0 * self.epsilon) - log_py[None, :]
        return np.where(inside, values, -np.inf)
