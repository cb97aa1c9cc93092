"""The ``Task`` interface: a sampler of paired data ``(x, y)`` with exactly known MI (nats).

Modelled on bmi's ``ISampler``: ``sample(n, seed) -> (x [n, dim_x], y [n, dim_y])`` plus the
closed-form ``mutual_information``. ``id`` encodes the parameters (``gaussian-d20-mi10``);
``spec`` is a string that :func:`infomax.tasks.task_from_string` turns back into the task.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from infomax._checks import check_positive_int


def fmt(value: float) -> str:
    """Short number for ids: ``10.0 -> '10'``, ``0.25 -> '0.25'``."""
    return f"{float(value):g}"


def as_points(data: Any, dim: int, name: str) -> np.ndarray:
    """``data`` as a float64 array ``[n, dim]`` (``[n]`` accepted when ``dim == 1``)."""
    arr = np.asarray(data, dtype=np.float64)
    if arr.ndim == 1 and dim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{name} must have shape [n, {dim}], got {arr.shape}")
    return arr


class Task(ABC):
    """A joint distribution of ``(X, Y)`` with known mutual information.

    Subclasses set ``name`` (the ``TASKS`` registry name), ``dim_x``, ``dim_y`` and implement
    ``mutual_information``, ``id``, ``params`` and ``_sample``.
    """

    name: ClassVar[str] = "task"
    dim_x: int
    dim_y: int

    @property
    @abstractmethod
    def mutual_information(self) -> float:
        """Exact ``I(X; Y)`` in nats."""

    @property
    @abstractmethod
    def id(self) -> str:
        """Identifier that encodes the parameters, e.g. ``gaussian-d20-mi10``."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """JSON-able constructor arguments; ``make_task(task.name, **task.params())`` rebuilds."""

    @abstractmethod
    def _sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` pairs with ``rng``; returns ``x [n, dim_x]``, ``y [n, dim_y]``."""

    def sample(self, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``n`` i.i.d. pairs, same for a ``seed``: float64 ``x [n, dim_x]``, ``y [n, dim_y]``."""
        n = check_positive_int(n, "n")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        x, y = self._sample(n, np.random.default_rng(int(seed)))
        return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)

    def log_density_ratio(self, x: Any, y: Any) -> np.ndarray:
        """Pairwise ``log p(x_i, y_j) / (p(x_i) p(y_j))``, shape ``[n, m]`` (the true critic)."""
        raise NotImplementedError(f"task {self.id!r} has no closed-form density ratio")

    @property
    def spec(self) -> str:
        """String that ``task_from_string`` parses back into this task."""
        args = ",".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{self.name}:{args}" if args else self.name

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary for ``results.json``: name, id, spec, dims, true MI and params."""
        return {
            "name": self.name,
            "id": self.id,
            "spec": self.spec,
            "dim_x": self.dim_x,
            "dim_y": self.dim_y,
            "mutual_information": self.mutual_information,
            "params": self.params(),
        }

    def __repr__(self) -> str:
        mi = self.mutual_information
        return f"<Task {self.id}: dim_x={self.dim_x}, dim_y={self.dim_y}, MI={mi:.4g} nats>"
