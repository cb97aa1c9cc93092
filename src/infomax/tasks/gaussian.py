"""Gaussian tasks: correlated pairs (the staircase), and a joint Gaussian with any covariance.

* ``CorrelatedGaussian(dim, rho | mi)``: ``dim`` independent pairs ``(x_k, y_k)`` with correlation
  ``rho``; ``I = -dim/2 * log(1 - rho^2)``.
* ``GaussianWithCovariance(cov, dim_x)``: ``[x; y] ~ N(0, cov)``;
  ``I = 1/2 * log(det cov_xx * det cov_yy / det cov)``; bmi-style ``dense`` / ``sparse`` patterns.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from infomax._checks import check_positive_int
from infomax.registry import TASKS
from infomax.tasks.base import Task, as_points, fmt


def check_float(value: Any, name: str) -> float:
    """``value`` as a finite float; ``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return out


def rho_from_mi(mi: float, dim: int) -> float:
    """Per-pair correlation giving MI ``mi`` over ``dim`` pairs: ``sqrt(1 - exp(-2 mi / dim))``."""
    return math.sqrt(-math.expm1(-2.0 * mi / dim))


def mi_from_rho(rho: float, dim: int) -> float:
    """MI of ``dim`` independent pairs with correlation ``rho``: ``-dim/2 * log(1 - rho^2)``."""
    return -0.5 * dim * math.log1p(-rho * rho)


def quadratic_form(x: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Row-wise ``x_i^T P x_i``; ``x [n, d]``, ``P [d, d]`` -> ``[n]``."""
    return np.asarray(np.einsum("ij,jk,ik->i", x, precision, x))


def pairwise_joint_quadratic(x: np.ndarray, y: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """``Q_ij = [x_i; y_j]^T P [x_i; y_j]``; ``x [n, dx]``, ``y [m, dy]`` -> ``[n, m]``."""
    dx = x.shape[1]
    pxx, pxy, pyy = precision[:dx, :dx], precision[:dx, dx:], precision[dx:, dx:]
    cross = 2.0 * (x @ pxy) @ y.T
    return np.asarray(quadratic_form(x, pxx)[:, None] + cross + quadratic_form(y, pyy)[None, :])


@TASKS.register("gaussian")
class CorrelatedGaussian(Task):
    """``dim`` independent pairs ``(x_k, y_k)``, standard normal marginals, correlation ``rho``.

    Give exactly one of ``rho`` (in ``(-1, 1)``) or ``mi`` (> 0 nats; then
    ``rho = sqrt(1 - exp(-2 mi / dim))``). ``I = -dim/2 * log(1 - rho^2)``.

    >>> task = CorrelatedGaussian(dim=5, mi=2.0)
    >>> task.id, round(task.mutual_information, 6)
    ('gaussian-d5-mi2', 2.0)
    >>> x, y = task.sample(4, seed=0)
    >>> x.shape, y.shape
    ((4, 5), (4, 5))
    """

    name = "gaussian"

    def __init__(self, dim: int, rho: float | None = None, mi: float | None = None) -> None:
        self.dim = check_positive_int(dim, "dim")
        self.dim_x = self.dim_y = self.dim
        if (rho is None) == (mi is None):
            raise ValueError("CorrelatedGaussian needs exactly one of rho and mi")
        self._mi: float | None = None
        if mi is not None:
            mi = check_float(mi, "mi")
            if mi <= 0:
                raise ValueError(f"mi must be > 0 nats, got {mi}")
            self._mi = mi
            self.rho = rho_from_mi(mi, self.dim)
            self._one_minus_rho2 = math.exp(-2.0 * mi / self.dim)  # exact even when rho ~ 1
        else:
            rho = check_float(rho, "rho")
            if not -1.0 < rho < 1.0:
                raise ValueError(f"rho must lie in (-1, 1), got {rho}")
            self.rho = rho
            self._one_minus_rho2 = 1.0 - rho * rho

    @property
    def mutual_information(self) -> float:
        """``-dim/2 * log(1 - rho^2)`` nats (``mi`` itself when given)."""
        if self._mi is not None:
            return self._mi
        return mi_from_rho(self.rho, self.dim)

    @property
    def id(self) -> str:
        """``gaussian-d{dim}-mi{mi}`` or ``gaussian-d{dim}-rho{rho}``."""
        if self._mi is not None:
            return f"gaussian-d{self.dim}-mi{fmt(self._mi)}"
        return f"gaussian-d{self.dim}-rho{fmt(self.rho)}"

    def params(self) -> dict[str, Any]:
        """``{"dim", "mi"}`` or ``{"dim", "rho"}`` (the arguments given)."""
        if self._mi is not None:
            return {"dim": self.dim, "mi": self._mi}
        return {"dim": self.dim, "rho": self.rho}

    def _sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``x = z1``, ``y = rho z1 + sqrt(1 - rho^2) z2`` with ``z1, z2 ~ N(0, I) [n, dim]``."""
        x = rng.standard_normal((n, self.dim))
        y = self.rho * x + math.sqrt(self._one_minus_rho2) * rng.standard_normal((n, self.dim))
        return x, y

    def log_density_ratio(self, x: Any, y: Any) -> np.ndarray:
        """Pairwise true critic ``[n, m]``:

        ``log r_ij = -dim/2 log(1-rho^2) - rho^2/(2(1-rho^2)) (|x_i|^2 + |y_j|^2)
        + rho/(1-rho^2) x_i . y_j``.
        """
        x = as_points(x, self.dim, "x")
        y = as_points(y, self.dim, "y")
        c = self._one_minus_rho2
        sq = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :]
        const = -0.5 * self.dim * math.log(c)
        return np.asarray(const - self.rho**2 / (2 * c) * sq + (self.rho / c) * (x @ y.T))


def staircase(dim: int = 20, mis: Sequence[float] = (2, 4, 6, 8, 10)) -> list[CorrelatedGaussian]:
    """The MI staircase: one ``CorrelatedGaussian(dim, mi=m)`` per ``m`` in ``mis`` (nats).

    >>> [t.id for t in staircase(dim=20, mis=(2, 10))]
    ['gaussian-d20-mi2', 'gaussian-d20-mi10']
    """
    if isinstance(mis, (str, bytes)) or not isinstance(mis, Sequence) or len(mis) == 0:
        raise ValueError(f"mis must be a non-empty sequence of MI values, got {mis!r}")
    return [CorrelatedGaussian(dim=dim, mi=m) for m in mis]


def _logdet(matrix: np.ndarray) -> float:
    return float(np.linalg.slogdet(matrix)[1])


@TASKS.register("gaussian-cov")
class GaussianWithCovariance(Task):
    """``[x; y] ~ N(0, cov)`` with ``x`` the first ``dim_x`` coordinates.

    ``I = 1/2 log(det cov_xx det cov_yy / det cov)``; ``cov`` must be symmetric positive definite.

    >>> task = GaussianWithCovariance([[1.0, 0.6], [0.6, 1.0]], dim_x=1)
    >>> round(task.mutual_information, 6) == round(-0.5 * math.log(1 - 0.36), 6)
    True
    """

    name = "gaussian-cov"

    def __init__(self, cov: Any, dim_x: int) -> None:
        try:
            cov = np.array(cov, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError("cov must be a numeric [D, D] matrix") from None
        if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or cov.shape[0] < 2:
            raise ValueError(f"cov must be a square [D, D] matrix with D >= 2, got {cov.shape}")
        if not np.all(np.isfinite(cov)):
            raise ValueError("cov contains NaN/Inf")
        total = cov.shape[0]
        self.dim_x = check_positive_int(dim_x, "dim_x")
        if self.dim_x >= total:
            raise ValueError(f"dim_x must be < D = {total} so that y is not empty, got {dim_x}")
        self.dim_y = total - self.dim_x
        if not np.allclose(cov, cov.T, rtol=0, atol=1e-10 * float(np.abs(cov).max())):
            raise ValueError("cov must be symmetric")
        try:
            self._chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise ValueError("cov must be positive definite") from None
        self.cov = cov
        dx = self.dim_x
        self._mi = 0.5 * (_logdet(cov[:dx, :dx]) + _logdet(cov[dx:, dx:]) - _logdet(cov))
        self._precision = np.linalg.inv(cov)
        self._precision_x = np.linalg.inv(cov[:dx, :dx])
        self._precision_y = np.linalg.inv(cov[dx:, dx:])

    @property
    def mutual_information(self) -> float:
        """``1/2 log(det cov_xx det cov_yy / det cov)`` nats."""
        return self._mi

    @property
    def id(self) -> str:
        """``gaussian-cov-dx{dx}-dy{dy}-mi{mi:.4g}-{hash of cov}``."""
        digest = hashlib.sha1(self.cov.tobytes()).hexdigest()[:8]
        return f"gaussian-cov-dx{self.dim_x}-dy{self.dim_y}-mi{self._mi:.4g}-{digest}"

    def params(self) -> dict[str, Any]:
        """``{"cov": nested list, "dim_x"}``."""
        return {"cov": self.cov.tolist(), "dim_x": self.dim_x}

    def _sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``[x, y] = z L^T`` with ``z ~ N(0, I) [n, D]`` and ``cov = L L^T``."""
        xy = rng.standard_normal((n, self.cov.shape[0])) @ self._chol.T
        return xy[:, : self.dim_x], xy[:, self.dim_x :]

    def log_density_ratio(self, x: Any, y: Any) -> np.ndarray:
        """Pairwise true critic ``[n, m]``: ``log r_ij = I - 1/2 (Q_ij - x_i^T cov_xx^-1 x_i -
        y_j^T cov_yy^-1 y_j)`` with ``Q_ij = [x_i; y_j]^T cov^-1 [x_i; y_j]``."""
        x = as_points(x, self.dim_x, "x")
        y = as_points(y, self.dim_y, "y")
        joint = pairwise_joint_quadratic(x, y, self._precision)
        qx = quadratic_form(x, self._precision_x)[:, None]
        qy = quadratic_form(y, self._precision_y)[None, :]
        return np.asarray(self._mi - 0.5 * (joint - qx - qy))


def dense_covariance(dim_x: int, dim_y: int, off_diag: float = 0.5) -> np.ndarray:
    """bmi's dense pattern: unit variances, every off-diagonal entry ``off_diag``; ``[D, D]``."""
    total = check_positive_int(dim_x, "dim_x") + check_positive_int(dim_y, "dim_y")
    c = check_float(off_diag, "off_diag")
    if not -1.0 / (total - 1) < c < 1.0:
        raise ValueError(
            f"off_diag must lie in (-1/(D-1), 1) = ({-1 / (total - 1):.4g}, 1), got {c}"
        )
    return (1.0 - c) * np.eye(total) + c


def sparse_covariance(
    dim_x: int, dim_y: int, n_interacting: int = 2, signal: float = 0.8, noise: float = 0.1
) -> np.ndarray:
    """bmi's sparse pattern: unit variances, ``noise`` within the x block and within the y block,
    ``signal`` between ``x_k`` and ``y_k`` for ``k < n_interacting``, 0 elsewhere; ``[D, D]``."""
    dx, dy = check_positive_int(dim_x, "dim_x"), check_positive_int(dim_y, "dim_y")
    k = check_positive_int(n_interacting, "n_interacting")
    if k > min(dx, dy):
        raise ValueError(f"n_interacting must be <= min(dim_x, dim_y) = {min(dx, dy)}, got {k}")
    s, e = check_float(signal, "signal"), check_float(noise, "noise")
    cov = np.zeros((dx + dy, dx + dy))
    cov[:dx, :dx] = e
    cov[dx:, dx:] = e
    np.fill_diagonal(cov, 1.0)
    idx = np.arange(k)
    cov[idx, dx + idx] = cov[dx + idx, idx] = s
    return cov


@TASKS.register("gaussian-dense")
class DenseGaussian(GaussianWithCovariance):
    """Joint Gaussian with all correlations equal to ``off_diag`` (bmi ``multinormal-dense``)."""

    name = "gaussian-dense"

    def __init__(self, dim_x: int, dim_y: int, off_diag: float = 0.5) -> None:
        super().__init__(dense_covariance(dim_x, dim_y, off_diag), dim_x)
        self.off_diag = float(off_diag)

    @property
    def id(self) -> str:
        """``gaussian-dense-dx{dx}-dy{dy}-c{off_diag}``."""
        return f"gaussian-dense-dx{self.dim_x}-dy{self.dim_y}-c{fmt(self.off_diag)}"

    def params(self) -> dict[str, Any]:
        """``{"dim_x", "dim_y", "off_diag"}``."""
        return {"dim_x": self.dim_x, "dim_y": self.dim_y, "off_diag": self.off_diag}


@TASKS.register("gaussian-sparse")
class SparseGaussian(GaussianWithCovariance):
    """Joint Gaussian with ``n_interacting`` correlated pairs plus within-block noise correlation
    (bmi ``multinormal-sparse``); see :func:`sparse_covariance`."""

    name = "gaussian-sparse"

    def __init__(
        self,
        dim_x: int,
        dim_y: int,
        n_interacting: int = 2,
        signal: float = 0.8,
        noise: float = 0.1,
    ) -> None:
        super().__init__(sparse_covariance(dim_x, dim_y, n_interacting, signal, noise), dim_x)
        self.n_interacting = int(n_interacting)
        self.signal, self.noise = float(signal), float(noise)

    @property
    def id(self) -> str:
        """``gaussian-sparse-dx{dx}-dy{dy}-k{n}-s{signal}-e{noise}``."""
        return (
            f"gaussian-sparse-dx{self.dim_x}-dy{self.dim_y}-k{self.n_interacting}"
            f"-s{fmt(self.signal)}-e{fmt(self.noise)}"
        )

    def params(self) -> dict[str, Any]:
        """``{"dim_x", "dim_y", "n_interacting", "signal", "noise"}``."""
        return {
            "dim_x": self.dim_x,
            "dim_y": self.dim_y,
            "n_interacting": self.n_interacting,
            "signal": self.signal,
            "noise": self.noise,
        }
