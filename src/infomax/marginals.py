"""MI-preserving per-dimension marginal transforms, fitted on a training split.

Mutual information is invariant under invertible maps of each dimension of ``x`` and of ``y``
(SPEC §2 "Estimation protocol"), so a critic may see preprocessed data without changing the
target. Each transform is fitted on the training split ``[n, d]`` and then applied to the
validation / test split and to new data ``[m, d]``:

| name | map of dimension ``j`` |
|---|---|
| ``standardize`` | ``(x - mean_j) / std_j`` (training mean, unbiased std) |
| ``normal-scores`` | ``Φ⁻¹(F̂_j(x))``: empirical mid-rank CDF ``F̂_j`` mapped to normal scores, \
interpolated between the training values, log-linear beyond them (tames Cauchy-like tails) |
| ``none`` | ``x`` unchanged |

Statistics are computed in float64; outputs have the input's dtype and device. ``warnings``
holds human-readable notes from ``fit`` (heavily tied / discrete dimensions), and
``state()`` / :meth:`MarginalTransform.from_state` round-trip a fitted transform through
``torch.save`` / ``torch.load(weights_only=True)``.

>>> import torch
>>> train = torch.tensor([[1.0], [2.0], [2.0], [3.0]], dtype=torch.float64)
>>> ns = marginal_transform("normal-scores").fit(train)
>>> ns.transform(train).flatten()  # Φ⁻¹ of the mid-rank CDF 1/8, 1/2, 1/2, 7/8
tensor([-1.1503,  0.0000,  0.0000,  1.1503], dtype=torch.float64)
>>> far = ns.transform(torch.tensor([[-1e30], [1e30]], dtype=torch.float64))
>>> bool(torch.isfinite(far).all()) and bool(far[0, 0] < -1.1503 < 1.1503 < far[1, 0])
True
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor

from infomax.registry import Registry

__all__ = [
    "MARGINALS",
    "Identity",
    "MarginalTransform",
    "NormalScores",
    "Standardize",
    "marginal_transform",
]

M = TypeVar("M", bound="MarginalTransform")

#: name -> transform class (``standardize``, ``normal-scores``, ``none``).
MARGINALS: Registry[type[MarginalTransform]] = Registry("marginal transform")

#: A dimension is "heavily tied" if it has fewer unique training values than
#: ``max(TIE_MIN_UNIQUE, TIE_UNIQUE_FRACTION * n)`` or one value holds more than
#: ``TIE_MODE_FRACTION`` of the rows.
TIE_MIN_UNIQUE = 20
TIE_UNIQUE_FRACTION = 0.01
TIE_MODE_FRACTION = 0.1


def _check_train(train: Tensor) -> Tensor:
    """The training split as float64 ``[n, d]``; ``ValueError`` on a bad shape or non-finite."""
    if not isinstance(train, Tensor):
        raise TypeError(f"marginal transforms expect a torch.Tensor, got {type(train).__name__}")
    if train.dim() != 2:
        raise ValueError(f"the training split must be 2-D [n, d], got shape {tuple(train.shape)}")
    if train.shape[0] < 2:
        raise ValueError(
            f"a marginal transform needs at least 2 training rows, got {train.shape[0]}"
        )
    if train.is_complex() or train.dtype == torch.bool:
        raise ValueError(f"the training split must be real-valued, got dtype {train.dtype}")
    train = train.detach().to(torch.float64)
    if not torch.isfinite(train).all():
        raise ValueError("non-finite values in the training split given to the marginal transform")
    return train


def _constant_error(dims: list[int]) -> ValueError:
    return ValueError(f"dimensions {dims} are constant in the training split; drop them")


def _column_runs(train: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Per column of float64 ``[n, d]``: sorted unique values ``[K_j]`` and counts ``[K_j]``."""
    sorted_cols = torch.sort(train, dim=0).values
    return [
        torch.unique_consecutive(sorted_cols[:, j], return_counts=True)
        for j in range(train.shape[1])
    ]


def _tie_warning(runs: list[tuple[Tensor, Tensor]], n: int) -> str | None:
    """One-line note naming the heavily tied / discrete dimensions, or ``None``.

    Dimension ``j`` is flagged if ``K_j < max(20, ceil(0.01 n))`` unique values or its most
    frequent value holds more than ``0.1 n`` rows."""
    min_unique = max(TIE_MIN_UNIQUE, math.ceil(TIE_UNIQUE_FRACTION * n))
    dims = [
        j
        for j, (_, counts) in enumerate(runs)
        if counts.numel() < min_unique or int(counts.max()) > TIE_MODE_FRACTION * n
    ]
    if not dims:
        return None
    return (
        f"dimensions {dims} are heavily tied or discrete in the training split (fewer than "
        f"{min_unique} unique values, or one value in more than {TIE_MODE_FRACTION:.0%} of the "
        "rows): tied values share one transformed value, and MI estimates of discrete data need "
        "care (a continuous estimator targets a differential MI)"
    )


def _output_dtype(x: Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.get_default_dtype()


class MarginalTransform:
    """Base class: a per-dimension map fitted on a training split ``[n, d]``.

    Subclasses set ``name`` and implement ``_fit`` (float64 ``[n, d]``, finite, ``n >= 2``),
    ``_transform`` (checked ``[m, d]``), ``_state`` and ``_load_state``."""

    name: ClassVar[str]

    def __init__(self) -> None:
        self.dim: int | None = None
        self.warnings: list[str] = []

    @property
    def fitted(self) -> bool:
        return self.dim is not None

    def fit(self: M, train: Tensor) -> M:
        """Fit on the training split ``[n, d]`` (finite, ``n >= 2``); returns ``self``."""
        self.dim = None
        self.warnings = []
        data = _check_train(train)
        self._fit(data)
        self.dim = data.shape[1]
        return self

    def transform(self, x: Tensor) -> Tensor:
        """Apply the fitted map to ``x [m, d]``; same shape, dtype and device as ``x``."""
        if self.dim is None:
            raise ValueError(f"the {self.name!r} marginal transform is not fitted; call fit first")
        if not isinstance(x, Tensor):
            raise TypeError(f"marginal transforms expect a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(
                f"the {self.name!r} marginal transform was fitted on {self.dim} columns; "
                f"got shape {tuple(x.shape)} (expected [m, {self.dim}])"
            )
        if x.is_floating_point() and not torch.isfinite(x).all():
            raise ValueError(f"non-finite values in the data given to the {self.name!r} transform")
        return self._transform(x)

    def fit_transform(self, train: Tensor) -> Tensor:
        """``fit(train).transform(train)``."""
        return self.fit(train).transform(train)

    def state(self) -> dict[str, Any]:
        """Plain state (CPU tensors, str, int, float, lists / dicts of those): safe for
        ``torch.save`` and ``torch.load(weights_only=True)``."""
        if self.dim is None:
            raise ValueError(f"the {self.name!r} marginal transform is not fitted; call fit first")
        return {"name": self.name, "dim": self.dim, "warnings": list(self.warnings)} | self._state()

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MarginalTransform:
        """Rebuild a fitted transform from :meth:`state`, dispatching on ``state["name"]``."""
        obj = MARGINALS.get(state["name"])()
        if not isinstance(obj, cls):
            raise ValueError(f"state of a {state['name']!r} transform is not a {cls.__name__}")
        obj._load_state(state)
        obj.dim = int(state["dim"])
        obj.warnings = [str(w) for w in state["warnings"]]
        return obj

    def __repr__(self) -> str:
        fitted = f"dim={self.dim}" if self.dim is not None else "not fitted"
        return f"{type(self).__name__}({fitted})"

    # -- subclass hooks ---------------------------------------------------------------------
    def _fit(self, train: Tensor) -> None:
        raise NotImplementedError

    def _transform(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        return {}

    def _load_state(self, state: dict[str, Any]) -> None:
        pass


@MARGINALS.register("standardize")
class Standardize(MarginalTransform):
    """``z = (x - mean) / std`` per dimension, with the training split's mean and unbiased std
    (``[d]`` each, float64). A constant dimension is an error; heavily tied ones get a warning."""

    name = "standardize"

    def __init__(self) -> None:
        super().__init__()
        self.mean = torch.empty(0, dtype=torch.float64)
        self.std = torch.empty(0, dtype=torch.float64)

    def _fit(self, train: Tensor) -> None:
        std = train.std(dim=0)
        if (std == 0).any():
            raise _constant_error((std == 0).nonzero().flatten().tolist())
        warning = _tie_warning(_column_runs(train), train.shape[0])
        if warning is not None:
            self.warnings.append(warning)
        self.mean, self.std = train.mean(dim=0), std

    def _transform(self, x: Tensor) -> Tensor:
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return ((x.to(torch.float64) - mean) / std).to(_output_dtype(x))

    def _state(self) -> dict[str, Any]:
        return {"mean": self.mean.detach().cpu().clone(), "std": self.std.detach().cpu().clone()}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.mean = state["mean"].to(torch.float64)
        self.std = state["std"].to(torch.float64)


@MARGINALS.register("normal-scores")
class NormalScores(MarginalTransform):
    """Empirical CDF -> standard normal scores, per dimension.

    Fit (column ``j``, ``n`` rows): knots ``k_1 < ... < k_K`` are the sorted unique training
    values; a knot with ``c`` tied copies starting at sorted position ``r`` (0-based) gets the
    mid-rank CDF ``(r + c/2) / n`` and the score ``s = Φ⁻¹((r + c/2) / n)`` (float64,
    ``torch.special.ndtri``), so scores lie strictly inside ``±Φ⁻¹(1 - 1/(2n))``.

    Transform: linear interpolation of ``s`` between neighbouring knots (a value equal to a knot
    gets exactly that knot's score). Beyond the extreme knots the map is log-linear, e.g. above
    ``k_K``: ``s_K + w * log1p((x - k_K) / h)``, where ``h`` and ``w`` are the x- and score-ranges
    of the outermost ``m = max(2, ceil(0.05 K))`` knots (likewise below ``k_1``). It starts with
    the robust edge slope ``w / h`` (continuous, strictly increasing), but grows only
    logarithmically, so a Cauchy outlier or ``1e30`` gets a finite, moderate score instead of a
    linear blow-up. Ranks, hence these scores on the training data, do not change under a
    strictly increasing map of the column.
    """

    name = "normal-scores"
    #: fraction of the knots at each end used for the tail slope ``w / h``
    tail_fraction: ClassVar[float] = 0.05

    def __init__(self) -> None:
        super().__init__()
        self.knots: list[Tensor] = []  # [K_j] float64 per column
        self.scores: list[Tensor] = []  # [K_j] float64 per column
        self._pad: tuple[Tensor, Tensor, Tensor, Tensor] | None = None

    def _fit(self, train: Tensor) -> None:
        n = train.shape[0]
        runs = _column_runs(train)
        constant = [j for j, (values, _) in enumerate(runs) if values.numel() < 2]
        if constant:
            raise _constant_error(constant)
        warning = _tie_warning(runs, n)
        if warning is not None:
            self.warnings.append(warning)
        knots, scores = [], []
        for values, counts in runs:
            c = counts.to(torch.float64)
            start = torch.cumsum(c, 0) - c
            knots.append(values)
            scores.append(torch.special.ndtri((start + c / 2) / n))
        self._set(knots, scores)

    def _set(self, knots: list[Tensor], scores: list[Tensor]) -> None:
        """Store the per-column knots, the padded ``[d, K_max]`` tables and the tail widths."""
        self.knots, self.scores = knots, scores
        device = knots[0].device
        k_max = max(k.numel() for k in knots)
        knot_pad = torch.full((len(knots), k_max), math.inf, dtype=torch.float64, device=device)
        score_pad = torch.zeros((len(knots), k_max), dtype=torch.float64, device=device)
        for j, (k, s) in enumerate(zip(knots, scores, strict=True)):
            knot_pad[j, : k.numel()] = k
            score_pad[j, : s.numel()] = s
        lengths = torch.tensor([k.numel() for k in knots], device=device)
        # [4, d]: lower x-width h, lower score range w, upper h, upper w of the outermost m knots
        tails = []
        for k, s in zip(knots, scores, strict=True):
            m = max(2, math.ceil(self.tail_fraction * k.numel()))
            tails.append(
                torch.stack([k[m - 1] - k[0], s[m - 1] - s[0], k[-1] - k[-m], s[-1] - s[-m]])
            )
        self._pad = (knot_pad, score_pad, lengths, torch.stack(tails, dim=1))

    def _transform(self, x: Tensor) -> Tensor:
        assert self._pad is not None
        knot_pad, score_pad, lengths, tails = (t.to(x.device) for t in self._pad)
        xt = x.detach().to(torch.float64).T.contiguous()  # [d, m]
        last = (lengths - 1)[:, None]  # [d, 1], >= 1
        idx = torch.searchsorted(knot_pad, xt)  # first knot >= x, in [0, K_j]
        hi = torch.minimum(idx.clamp(min=1), last.expand_as(idx))
        lo = hi - 1
        k_lo, k_hi = knot_pad.gather(1, lo), knot_pad.gather(1, hi)
        s_lo, s_hi = score_pad.gather(1, lo), score_pad.gather(1, hi)
        t = ((xt - k_lo) / (k_hi - k_lo)).clamp(0.0, 1.0)
        inner = torch.minimum(torch.maximum(s_lo + t * (s_hi - s_lo), s_lo), s_hi)
        inner = torch.where(xt == k_hi, s_hi, inner)
        # log-linear tails beyond the extreme knots
        h_lo, w_lo, h_hi, w_hi = (v[:, None] for v in tails)
        k_first, s_first = knot_pad[:, :1], score_pad[:, :1]
        k_last, s_last = knot_pad.gather(1, last), score_pad.gather(1, last)
        big = torch.finfo(torch.float64).max
        below = s_first - w_lo * torch.log1p(((k_first - xt) / h_lo).clamp(0.0, big))
        above = s_last + w_hi * torch.log1p(((xt - k_last) / h_hi).clamp(0.0, big))
        z = torch.where(xt < k_first, below, torch.where(xt > k_last, above, inner))
        return z.T.to(_output_dtype(x))

    def _state(self) -> dict[str, Any]:
        return {
            "knots": [k.detach().cpu().clone() for k in self.knots],
            "scores": [s.detach().cpu().clone() for s in self.scores],
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self._set(
            [k.to(torch.float64) for k in state["knots"]],
            [s.to(torch.float64) for s in state["scores"]],
        )


@MARGINALS.register("none")
class Identity(MarginalTransform):
    """``z = x``: fit records ``d``; transform checks the column count and returns ``x``."""

    name = "none"

    def _fit(self, train: Tensor) -> None:
        pass

    def _transform(self, x: Tensor) -> Tensor:
        return x


def marginal_transform(name: str) -> MarginalTransform:
    """A new, unfitted transform registered as ``name``; ``ValueError`` listing valid names."""
    return MARGINALS.get(name)()
