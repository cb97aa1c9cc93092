"""Target laws of distribution matching (SPEC §7), by name.

Two laws have their own noise layer (:mod:`infomax.dm.noise`): ``gaussian`` (``N(0, I)``) and
``uniform`` (``U[0, 1]^d``). Any other absolutely continuous law ``F`` with a closed-form inverse
CDF is reached through the probability integral transform: a uniform representation ``u`` is
mapped coordinate-wise to ``F⁻¹(u)``. The map is a bijection per dimension, so it changes no
mutual information (the capacity ceiling stays the uniform one) and ``F⁻¹(u) ~ F`` exactly when
``u ~ U[0, 1]``.

``get_target(name)`` accepts a registered name, optionally with the parameters of its
``torch.distributions`` class after a colon (``laplace``, ``laplace:0,2``, ``exponential:0.5``).
Laws that torch knows but cannot invert (``beta``, ``gamma``, ``student-t``) give a clear error.

>>> law = get_target("laplace")
>>> law.base, law.name
('uniform', 'laplace')
>>> import torch
>>> float(law.from_base(torch.tensor([[0.5]])))  # the median of Laplace(0, 1)
0.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch import distributions as D

from .noise import TARGETS

#: Laws with their own noise layer (normalisation + noise, SPEC §7).
BASE_TARGETS = TARGETS

#: Laws reached by the inverse CDF of the uniform representation: name -> (class, default
#: parameters). All have finite second moments (the energy and SW₂ tests need them).
INVERSE_CDF_LAWS: dict[str, tuple[type[D.Distribution], tuple[float, ...]]] = {
    "laplace": (D.Laplace, (0.0, 1.0)),
    "exponential": (D.Exponential, (1.0,)),
    "gumbel": (D.Gumbel, (0.0, 1.0)),
}

#: Laws torch.distributions knows but cannot invert (no ``icdf``): named so that asking for one
#: says why it is refused instead of "unknown".
NO_INVERSE_CDF: dict[str, tuple[type[D.Distribution], tuple[float, ...]]] = {
    "beta": (D.Beta, (2.0, 2.0)),
    "gamma": (D.Gamma, (2.0, 1.0)),
    "student-t": (D.StudentT, (5.0,)),
}


def target_names() -> list[str]:
    """Every name :func:`get_target` accepts."""
    return [*BASE_TARGETS, *INVERSE_CDF_LAWS]


@dataclass(frozen=True)
class TargetLaw:
    """A product law ``F^{⊗d}`` with standard-uniform or standard-normal base (see module).

    ``name``: the spec it was made from; ``base``: the noise layer that is trained
    (``gaussian`` or ``uniform``); ``marginal``: the 1-D law of each coordinate (float64).
    """

    name: str
    base: str
    marginal: D.Distribution

    @property
    def is_base(self) -> bool:
        """True for ``gaussian`` / ``uniform`` (no inverse-CDF map)."""
        return self.name in BASE_TARGETS

    def sample(self, n: int, dim: int, generator: torch.Generator) -> Tensor:
        """``n`` draws of the law in ``dim`` dimensions: ``float64 [n, dim]``."""
        if self.name == "gaussian":
            return torch.randn(n, dim, generator=generator, dtype=torch.float64)
        u = torch.rand(n, dim, generator=generator, dtype=torch.float64)
        return u if self.name == "uniform" else self.from_base(u)

    def cdf(self, z: Tensor) -> Tensor:
        """Marginal CDF ``F(z)`` element-wise (float64), clipped into ``[0, 1]``."""
        z = z.double()
        if self.name == "uniform":
            return z.clamp(0.0, 1.0)
        if self.name == "exponential":
            z = z.clamp_min(0.0)  # torch's Exponential.cdf rejects negative values
        return self.marginal.cdf(z).clamp(0.0, 1.0)

    def from_base(self, c: Tensor) -> Tensor:
        """Map a base representation ``c: [B, d]`` onto this law: ``F⁻¹(c)`` for a uniform base
        (identity for the base laws). Computed in float64, returned in ``c``'s dtype."""
        if self.is_base:
            return c
        u = c.double().clamp(1e-12, 1.0 - 1e-12)
        return self.marginal.icdf(u).to(c.dtype)

    def cdf_name(self) -> str:
        """How reports name the law, e.g. ``Laplace(0, 1)``."""
        if self.name == "gaussian":
            return "N(0, 1)"
        if self.name == "uniform":
            return "U[0, 1]"
        params = ", ".join(f"{float(v):g}" for v in _params(self.marginal))
        return f"{type(self.marginal).__name__}({params})"


def _params(dist: D.Distribution) -> list[float]:
    names = list(dist.arg_constraints)
    return [float(getattr(dist, k)) for k in names if k not in ("probs", "logits")]


def _parse(spec: str) -> tuple[str, tuple[float, ...] | None]:
    name, _, args = str(spec).partition(":")
    name = name.strip().lower()
    if not args.strip():
        return name, None
    try:
        values = tuple(float(v) for v in args.split(","))
    except ValueError:
        raise ValueError(
            f"target {spec!r}: parameters after ':' must be comma-separated numbers"
        ) from None
    return name, values


def _build(name: str, cls: type[D.Distribution], params: tuple[float, ...]) -> D.Distribution:
    factory: Any = cls
    try:
        return factory(*(torch.tensor(p, dtype=torch.float64) for p in params), validate_args=True)
    except (TypeError, ValueError):
        names: Any = cls.arg_constraints
        args = ", ".join(k for k in names if k not in ("probs", "logits"))
        raise ValueError(
            f"target {name!r}: invalid parameters {params} for torch.distributions."
            f"{cls.__name__}({args})"
        ) from None


def get_target(spec: str | TargetLaw) -> TargetLaw:
    """The :class:`TargetLaw` named by ``spec`` (module docstring); ``ValueError`` for an unknown
    name, bad parameters, or a law without an inverse CDF."""
    if isinstance(spec, TargetLaw):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"target must be a name, got {spec!r}")
    name, params = _parse(spec)
    if name in BASE_TARGETS:
        if params is not None:
            raise ValueError(f"target {name!r} takes no parameters, got {spec!r}")
        zero, one = torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
        law: D.Distribution = D.Normal(zero, one) if name == "gaussian" else D.Uniform(zero, one)
        return TargetLaw(name, name, law)
    if name in NO_INVERSE_CDF:
        cls, _ = NO_INVERSE_CDF[name]
        raise ValueError(
            f"target {name!r} has no inverse CDF (torch.distributions.{cls.__name__}.icdf is not "
            f"implemented), so the uniform representation cannot be mapped onto it; targets "
            f"with one: {', '.join(target_names())}"
        )
    if name not in INVERSE_CDF_LAWS:
        raise ValueError(f"unknown target {spec!r}; valid: {', '.join(target_names())}")
    cls, default = INVERSE_CDF_LAWS[name]
    marginal = _build(name, cls, default if params is None else params)
    try:
        marginal.icdf(torch.tensor(0.5, dtype=torch.float64))
    except NotImplementedError:  # pragma: no cover - every registered law has one
        raise ValueError(f"target {name!r} has no inverse CDF") from None
    var = float(marginal.variance)
    if not math.isfinite(var):
        raise ValueError(f"target {spec!r} has infinite variance; the DM tests need a finite one")
    return TargetLaw(str(spec).strip().lower(), "uniform", marginal)


def target_summary(law: TargetLaw) -> dict[str, Any]:
    """A JSON-friendly description (``name``, ``base``, ``law``)."""
    return {"name": law.name, "base": law.base, "law": law.cdf_name()}
