"""Multivariate Student-t task: ``[x; y] ~ t_nu(0, scale)`` in two blocks (bmi ``SplitStudentT``).

Sampling: ``[x; y] = z / sqrt(w / nu)`` with ``z ~ N(0, scale)``, ``w ~ chi2(nu)``. Marginals are
``t_nu(0, scale_xx)`` and ``t_nu(0, scale_yy)``; with the entropy of a ``k``-dimensional t
(Arellano-Valle, Contreras-Reyes and Genton, 2013)

    I = 1/2 log(det S_xx det S_yy / det S) + c(nu, dx, dy),
    c = G(nu/2) + G((nu+dx+dy)/2) - G((nu+dx)/2) - G((nu+dy)/2),   G(a) = log Gamma(a) - a psi(a),

so ``c >= 0``: even ``scale = I`` gives dependent ``x``, ``y`` (they share ``w``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from infomax._checks import check_positive_int
from infomax.registry import TASKS
from infomax.tasks.base import Task, as_points, fmt
from infomax.tasks.gaussian import (
    GaussianWithCovariance,
    check_float,
    pairwise_joint_quadratic,
    quadratic_form,
    sparse_covariance,
)


def _digamma(a: float) -> float:
    return float(torch.special.digamma(torch.tensor(a, dtype=torch.float64)))


def student_t_mi_correction(dof: float, dim_x: int, dim_y: int) -> float:
    """``c(nu, dx, dy) = G(nu/2) + G((nu+dx+dy)/2) - G((nu+dx)/2) - G((nu+dy)/2)`` nats,
    ``G(a) = log Gamma(a) - a psi(a)``: the Student-t MI minus the Gaussian MI of its scale.

    >>> round(student_t_mi_correction(1.0, 1, 1), 4)
    0.2242
    """

    def g(a: float) -> float:
        return math.lgamma(a) - a * _digamma(a)

    half = 0.5 * dof
    return g(half) + g(half + 0.5 * (dim_x + dim_y)) - g(half + 0.5 * dim_x) - g(half + 0.5 * dim_y)


@TASKS.register("student-t")
class MultivariateStudentT(Task):
    """``[x; y] ~ t_dof(0, scale)``; ``x`` the first ``dim_x`` coordinates.

    Without ``scale`` the scale matrix is the identity with ``S[k, dim_x + k] = rho`` for
    ``k < min(dim_x, dim_y)`` (pairs ``(x_k, y_k)`` with correlation parameter ``rho``).

    >>> task = MultivariateStudentT(dim_x=2, dim_y=2, dof=3, rho=0.5)
    >>> task.id
    'student-t-dx2-dy2-dof3-rho0.5'
    """

    name = "student-t"

    def __init__(
        self,
        dim_x: int,
        dim_y: int,
        dof: float,
        rho: float = 0.0,
        scale: Any | None = None,
    ) -> None:
        dx, dy = check_positive_int(dim_x, "dim_x"), check_positive_int(dim_y, "dim_y")
        self.dof = check_float(dof, "dof")
        if self.dof <= 0:
            raise ValueError(f"dof must be > 0, got {dof}")
        self.rho = check_float(rho, "rho")
        self._custom_scale = scale is not None
        if scale is None:
            if not -1.0 < self.rho < 1.0:
                raise ValueError(f"rho must lie in (-1, 1), got {rho}")
            scale = sparse_covariance(dx, dy, min(dx, dy), signal=self.rho, noise=0.0)
        elif self.rho != 0.0:
            raise ValueError("give either rho or scale, not both")
        self._gauss = GaussianWithCovariance(scale, dx)
        if self._gauss.dim_y != dy:
            raise ValueError(f"scale must be [{dx + dy}, {dx + dy}], got {self._gauss.cov.shape}")
        self.dim_x, self.dim_y = dx, dy
        self.scale = self._gauss.cov
        self._correction = student_t_mi_correction(self.dof, dx, dy)

    @property
    def mutual_information(self) -> float:
        """Gaussian MI of ``scale`` plus ``student_t_mi_correction(dof, dim_x, dim_y)`` nats."""
        return self._gauss.mutual_information + self._correction

    @property
    def id(self) -> str:
        """``student-t-dx{dx}-dy{dy}-dof{dof}-rho{rho}`` (or a hash of ``scale``)."""
        head = f"student-t-dx{self.dim_x}-dy{self.dim_y}-dof{fmt(self.dof)}"
        if self._custom_scale:
            return head + "-" + self._gauss.id.rsplit("-", 1)[-1]
        return f"{head}-rho{fmt(self.rho)}"

    def params(self) -> dict[str, Any]:
        """``{"dim_x", "dim_y", "dof", "rho"}`` or ``{..., "scale": nested list}``."""
        out: dict[str, Any] = {"dim_x": self.dim_x, "dim_y": self.dim_y, "dof": self.dof}
        if self._custom_scale:
            out["scale"] = self.scale.tolist()
        else:
            out["rho"] = self.rho
        return out

    def _sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``z / sqrt(w / dof)``: ``z ~ N(0, scale) [n, D]``, ``w ~ chi2(dof) [n, 1]``."""
        z = rng.standard_normal((n, self.dim_x + self.dim_y)) @ self._gauss._chol.T
        w = rng.chisquare(self.dof, size=(n, 1))
        xy = z / np.sqrt(w / self.dof)
        return xy[:, : self.dim_x], xy[:, self.dim_x :]

    def log_density_ratio(self, x: Any, y: Any) -> np.ndarray:
        """Pairwise true critic ``[n, m]``: with ``Q`` the Mahalanobis forms under ``scale^-1``,

        ``log r_ij = const - (nu+D)/2 log(1 + Q_ij/nu) + (nu+dx)/2 log(1 + q_x,i/nu)
        + (nu+dy)/2 log(1 + q_y,j/nu)``, ``const = log G((nu+D)/2) + log G(nu/2)
        - log G((nu+dx)/2) - log G((nu+dy)/2) + I_gauss`` (``G`` = Gamma).
        """
        x = as_points(x, self.dim_x, "x")
        y = as_points(y, self.dim_y, "y")
        nu, dx, dy = self.dof, self.dim_x, self.dim_y
        g = self._gauss
        const = (
            math.lgamma(0.5 * (nu + dx + dy))
            + math.lgamma(0.5 * nu)
            - math.lgamma(0.5 * (nu + dx))
            - math.lgamma(0.5 * (nu + dy))
            + g.mutual_information
        )
        joint = np.log1p(pairwise_joint_quadratic(x, y, g._precision) / nu)
        qx = np.log1p(quadratic_form(x, g._precision_x) / nu)[:, None]
        qy = np.log1p(quadratic_form(y, g._precision_y) / nu)[None, :]
        return const - 0.5 * (nu + dx + dy) * joint + 0.5 * (nu + dx) * qx + 0.5 * (nu + dy) * qy
