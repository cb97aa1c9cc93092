"""MI-preserving transforms: invertible maps of ``x`` and/or ``y`` keep ``I(X; Y)`` unchanged.

Elementwise: ``cubic`` (``t^3``), ``asinh``, ``half_cube`` (``sign(t) |t|^{3/2}``), ``normal_cdf``
(``Phi(t)``). Vector-wise: ``spiral`` (bmi's spiral diffeomorphism): rotate the first two
coordinates by the angle ``speed * |t|^2``; the rotation keeps ``|t|``, so the inverse rotates
back by the same angle. The density ratio is invariant too:
``r'(f(x), g(y)) = r(x, y)``, which ``TransformedTask.log_density_ratio`` uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from infomax.registry import TRANSFORMS
from infomax.tasks.base import Task, as_points, fmt

Array = np.ndarray
SIDES = ("both", "x", "y")


@dataclass(frozen=True)
class Transform:
    """An invertible map of ``[n, d]`` arrays; calling it applies ``forward``."""

    name: str
    forward: Callable[[Array], Array]
    inverse: Callable[[Array], Array]
    min_dim: int = 1

    def __call__(self, t: Array) -> Array:
        """``forward(t)`` for ``t [n, d]`` (float64)."""
        return self.forward(np.asarray(t, dtype=np.float64))


def _ndtr(t: Array) -> Array:
    out: Array = torch.special.ndtr(torch.from_numpy(np.ascontiguousarray(t, np.float64))).numpy()
    return out


def _ndtri(p: Array) -> Array:
    out: Array = torch.special.ndtri(torch.from_numpy(np.ascontiguousarray(p, np.float64))).numpy()
    return out


def _signed_power(power: float) -> Callable[[Array], Array]:
    def apply(t: Array) -> Array:
        return np.asarray(np.sign(t) * np.abs(t) ** power)

    return apply


def _rotate(t: Array, speed: float) -> Array:
    theta = speed * (t * t).sum(axis=1)
    c, s = np.cos(theta), np.sin(theta)
    out = np.array(t, dtype=np.float64, copy=True)
    out[:, 0] = c * t[:, 0] - s * t[:, 1]
    out[:, 1] = s * t[:, 0] + c * t[:, 1]
    return out


def spiral(speed: float = 0.5) -> Transform:
    """Spiral map ``t -> R(speed * |t|^2) t`` rotating coordinates 0 and 1 (needs ``d >= 2``).

    >>> t = np.array([[1.0, 0.0, 2.0]])
    >>> bool(np.allclose(spiral().inverse(spiral()(t)), t))
    True
    """
    speed = float(speed)
    name = "spiral" if speed == 0.5 else f"spiral{fmt(speed)}"
    return Transform(
        name,
        forward=lambda t: _rotate(t, speed),
        inverse=lambda t: _rotate(t, -speed),
        min_dim=2,
    )


CUBIC = TRANSFORMS.add("cubic", Transform("cubic", lambda t: t**3, np.cbrt))
ASINH = TRANSFORMS.add("asinh", Transform("asinh", np.arcsinh, np.sinh))
HALF_CUBE = TRANSFORMS.add(
    "half_cube", Transform("half_cube", _signed_power(1.5), _signed_power(2.0 / 3.0))
)
NORMAL_CDF = TRANSFORMS.add("normal_cdf", Transform("normal_cdf", _ndtr, _ndtri))
SPIRAL = TRANSFORMS.add("spiral", spiral())


class TransformedTask(Task):
    """``base`` with ``transform`` applied to ``x``, ``y`` or both; same MI as ``base``.

    >>> from infomax.tasks.gaussian import CorrelatedGaussian
    >>> task = transformed(CorrelatedGaussian(dim=5, mi=2.0), "cubic")
    >>> task.id, task.mutual_information
    ('cubic(gaussian-d5-mi2)', 2.0)
    """

    name = "transformed"

    def __init__(self, base: Task, transform: Transform, on: str = "both") -> None:
        if on not in SIDES:
            raise ValueError(f"on must be one of {SIDES}, got {on!r}")
        for side, dim in (("x", base.dim_x), ("y", base.dim_y)):
            if on in (side, "both") and dim < transform.min_dim:
                raise ValueError(
                    f"transform {transform.name!r} needs dim >= {transform.min_dim}, "
                    f"but {side} of {base.id!r} has dim {dim}"
                )
        self.base, self.transform, self.on = base, transform, on
        self.dim_x, self.dim_y = base.dim_x, base.dim_y

    @property
    def _head(self) -> str:
        return self.transform.name if self.on == "both" else f"{self.transform.name}[{self.on}]"

    @property
    def mutual_information(self) -> float:
        """The base task's MI (invertible maps preserve it)."""
        return self.base.mutual_information

    @property
    def id(self) -> str:
        """``{transform}({base id})``, or ``{transform}[x](...)`` when only one side is mapped."""
        return f"{self._head}({self.base.id})"

    @property
    def spec(self) -> str:
        """``{transform}({base spec})``: parsed back by ``task_from_string``."""
        return f"{self._head}({self.base.spec})"

    def params(self) -> dict[str, Any]:
        """``{"transform", "on", "base": base.to_dict()}``."""
        return {"transform": self.transform.name, "on": self.on, "base": self.base.to_dict()}

    def _maps(self, inverse: bool) -> tuple[Callable[[Array], Array], Callable[[Array], Array]]:
        f = self.transform.inverse if inverse else self.transform.forward

        def identity(t: Array) -> Array:
            return t

        return (f if self.on != "y" else identity), (f if self.on != "x" else identity)

    def _sample(self, n: int, rng: np.random.Generator) -> tuple[Array, Array]:
        x, y = self.base._sample(n, rng)
        fx, fy = self._maps(inverse=False)
        return fx(x), fy(y)

    def log_density_ratio(self, x: Any, y: Any) -> Array:
        """``base.log_density_ratio(f^-1(x), g^-1(y))`` ``[n, m]`` (the ratio is invariant)."""
        gx, gy = self._maps(inverse=True)
        x = gx(as_points(x, self.dim_x, "x"))
        y = gy(as_points(y, self.dim_y, "y"))
        return self.base.log_density_ratio(x, y)


def transformed(task: Task, transform: str | Transform, on: str = "both") -> TransformedTask:
    """``task`` with an MI-preserving ``transform`` (a ``TRANSFORMS`` name or a ``Transform``)
    applied to ``x``, ``y`` or ``both``; ``mutual_information`` is unchanged."""
    if isinstance(transform, str):
        transform = TRANSFORMS.get(transform)
    if not isinstance(transform, Transform):
        raise ValueError(f"transform must be a name or a Transform, got {transform!r}")
    return TransformedTask(task, transform, on)
