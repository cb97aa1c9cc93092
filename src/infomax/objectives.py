"""``MIObjective``: a critic plus the extras its bound needs (SPEC §2), trained and reported
through the one objective layer of :mod:`infomax.bounds`, dense or tiled (:mod:`infomax.kernels`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from . import bounds as _bounds
from . import dist
from .bounds import Scores
from .critics import SeparableCritic, mlp
from .kernels import AUTO_MIN_ENTRIES, TiledPairScores
from .reductions import PairScores, Reductions
from .registry import BOUNDS

#: Bounds an estimator may train through the tiled kernels (:attr:`BoundSpec.tiles`).
TILED_BOUNDS = tuple(name for name in BOUNDS.names() if BOUNDS.get(name).tiles)


class MIObjective(nn.Module):
    """A critic plus whatever extra its bound needs; ``loss`` trains, ``estimate`` reports.

    Extras (SPEC §2): FLO's ``u(x, y)`` network on the concatenated positive pair, TUBA's
    baseline ``b(y)`` network, MINE's running mean of ``mean_{i≠j} exp(S_ij)``. The bound is the
    registry's :class:`~infomax.bounds.BoundSpec`, evaluated on the batch's reductions: the
    materialised score matrix, or the tiled layout of :mod:`infomax.kernels` (same value).
    """

    score_cap: Tensor
    score_shift: Tensor
    extra_floor: Tensor
    extra_cap: Tensor

    def __init__(
        self,
        bound: str,
        critic: nn.Module,
        dim_x: int,
        dim_y: int,
        hidden: int = 256,
        layers: int = 2,
        smile_clip: float = 5.0,
        memory_efficient: bool | None = None,
    ) -> None:
        super().__init__()
        self.spec: _bounds.BoundSpec = BOUNDS.get(bound)
        self.critic = critic
        self.smile_clip = smile_clip
        self.memory_efficient = memory_efficient
        #: Evaluation (``estimate``, dense batches) scores with ``min(S, score_cap) +
        #: score_shift`` and clamps FLO's ``u`` / TUBA's ``b`` to ``[extra_floor, extra_cap]``:
        #: itself a critic, so every bound stays a bound, while a held-out outlier can no
        #: longer blow up an exponential term. Chosen on validation data by the estimator.
        self.register_buffer("score_cap", torch.tensor(math.inf))
        self.register_buffer("score_shift", torch.tensor(0.0))
        self.register_buffer("extra_floor", torch.tensor(-math.inf))
        self.register_buffer("extra_cap", torch.tensor(math.inf))
        self._has_kernel = (
            self.spec.tiles
            and isinstance(critic, SeparableCritic)
            and type(critic).kernel_form is not SeparableCritic.kernel_form
        )
        if memory_efficient and not self._has_kernel:
            raise ValueError(
                "memory_efficient needs an inner-product critic (dot, cosine, gaussian, bilinear) "
                f"and one of the bounds {sorted(TILED_BOUNDS)}; got {type(critic).__name__} / "
                f"{bound!r} (MINE's running mean needs the score matrix: use 'dv')"
            )
        self.extra_net: nn.Module | None = None
        self.mine: _bounds.MINELoss | None = None
        if self.spec.extra == "u":
            self.extra_net = mlp([dim_x + dim_y, *[hidden] * layers, 1])
        elif self.spec.extra == "baseline":
            self.extra_net = mlp([dim_y, *[hidden] * layers, 1])
        elif self.spec.extra == "ema":
            self.mine = _bounds.MINELoss()

    def _extra(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        if self.spec.extra == "u":
            assert self.extra_net is not None
            return {"u": self.extra_net(torch.cat([x, y], dim=1)).squeeze(1)}
        if self.spec.extra == "baseline":
            assert self.extra_net is not None
            return {"baseline": self.extra_net(y).squeeze(1)}
        return {}

    def _estimate(self, scores: Scores, extra: dict[str, Tensor]) -> Tensor:
        if self.spec.name == "smile":
            return _bounds.smile(scores, clip=self.smile_clip)
        return self.spec.estimate(scores, **extra)

    def tiled(self, k: int) -> bool:
        """Whether a batch of ``k`` pairs goes through :mod:`infomax.kernels` (never holding
        the ``[k, k]`` scores): asked for, or automatic from ``AUTO_MIN_ENTRIES`` scores on."""
        if not self._has_kernel or self.memory_efficient is False:
            return False
        return bool(self.memory_efficient) or k * k >= AUTO_MIN_ENTRIES

    def scores(self, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Score matrix ``[K, K]`` and extras of one batch; with several ranks each computes its
        ``K / world`` rows against all columns and the blocks are gathered (with gradient)."""
        world = dist.world_size()
        if world == 1:
            return self.critic(x, y), self._extra(x, y)
        rows = dist.row_block(x.shape[0])
        scores = dist.all_gather_with_grad(self.critic(x[rows], y))
        extra = self._extra(x[rows], y[rows])
        if "u" in extra:  # per positive pair: gathered like the rows
            extra["u"] = dist.all_gather_with_grad(extra["u"])
        if "baseline" in extra:  # b(y_j) per column: every rank needs all columns
            extra = self._extra(x, y)
        return scores, extra

    def reductions(self, x: Tensor, y: Tensor) -> tuple[Reductions, dict[str, Tensor], int]:
        """``(layout, extras, world)`` of one batch: the tiled layout of this rank's rows
        (``world`` ranks share the value) or the full materialised score matrix (``1``)."""
        if not self.tiled(x.shape[0]):
            scores, extra = self.scores(x, y)
            return PairScores(scores), extra, 1
        rows = dist.row_block(x.shape[0])
        xr, yr = x[rows], y[rows]
        a, b, sim = self.critic.kernel_form(self.critic.embed_x(xr), self.critic.embed_y(yr))  # type: ignore[operator]
        return TiledPairScores(a, b, sim), self._extra(xr, yr), dist.world_size()

    def loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(training loss, reported estimate)`` on one batch ``x: [K, dx]``, ``y: [K, dy]``.

        Tiled with several ranks, the loss is ``world ×`` this rank's share (so that averaging
        the gradients over ranks gives the global batch's) and the estimate the shares' sum."""
        layout, extra, world = self.reductions(x, y)
        if self.mine is not None:
            value = self.mine(layout)
            return -value, value.detach()
        loss = self.spec.loss(layout, **extra)
        if self.spec.reports_with_different_function:
            with torch.no_grad():
                detached = {k: v.detach() for k, v in extra.items()}
                share = self._estimate(layout.detach(), detached)
        else:
            share = -loss.detach()
        value = dist.all_reduce_sum(share) if world > 1 else share
        return world * loss, value

    def _evaluated(
        self, scores: Tensor, extra: dict[str, Tensor], cap: float, shift: float = 0.0
    ) -> Tensor:
        """The critic ``min(S − c, cap) + c + shift`` of any score tensor (``[K, K]`` or the
        positives ``[K]``), ``c`` the :meth:`_centre` of the bound's exponent."""
        if math.isinf(cap) and shift == 0.0:
            return scores
        centre = self._centre(extra, diagonal=scores.ndim == 1)
        if centre is None:
            return scores.clamp(max=cap) + shift
        return (scores - centre).clamp(max=cap) + centre + shift

    def _centre(self, extra: dict[str, Tensor], diagonal: bool = False) -> Tensor | None:
        """What the bound's exponent subtracts from ``S_ij``: TUBA's ``b(y_j)`` (``[1, K]``, or
        ``[K]`` for the positives), so its cap bounds ``S − b`` (``b(y) + min(S − b(y), cap)``
        is a critic too); ``None`` for the others, whose exponent is ``S`` itself."""
        if self.spec.extra == "baseline" and "baseline" in extra:
            b = extra["baseline"]
            return b if diagonal else b.unsqueeze(0)
        return None

    def _capped(
        self, layout: Reductions, extra: dict[str, Tensor], cap: float, shift: float = 0.0
    ) -> Reductions:
        """The layout of :meth:`_evaluated` (tiled layouts: unchanged, the kernels never hold
        the scores)."""
        if not isinstance(layout, PairScores):
            return layout
        return PairScores(self._evaluated(layout.scores, extra, cap, shift), per_row=layout.per_row)

    def _clamp_extra(
        self, extra: dict[str, Tensor], extra_range: tuple[float, float] | None = None
    ) -> dict[str, Tensor]:
        """FLO's ``u`` / TUBA's ``b(y)`` clamped to ``extra_range`` (default: the
        ``extra_floor`` / ``extra_cap`` buffers). Any ``u`` or ``b`` gives a bound, and a
        held-out outlier can then no longer make ``exp(−u)`` explode or ``−u`` dominate."""
        lo, hi = extra_range or (float(self.extra_floor), float(self.extra_cap))
        if math.isinf(lo) and math.isinf(hi):
            return extra
        return {k: v.clamp(min=lo, max=hi) for k, v in extra.items()}

    def evaluation_batch(
        self, x: Tensor, y: Tensor, extra_range: tuple[float, float] | None = None
    ) -> tuple[Reductions, dict[str, Tensor], int]:
        """``(layout, extras, world)`` of one batch as :meth:`reductions`, the extras clamped
        (:meth:`_clamp_extra`): what :meth:`estimate_capped` evaluates, computed once."""
        layout, extra, world = self.reductions(x, y)
        return layout, self._clamp_extra(extra, extra_range), world

    @torch.no_grad()
    def estimate(self, x: Tensor, y: Tensor) -> Tensor:
        """The reported bound (nats) on one batch, of the critic ``min(S, score_cap) +
        score_shift`` with the extras clamped to ``[extra_floor, extra_cap]`` (chosen on
        validation data by the estimator; no-ops by default)."""
        batch = self.evaluation_batch(x, y)
        return self.estimate_capped(batch, [float(self.score_cap)], [float(self.score_shift)])[0]

    @torch.no_grad()
    def estimate_capped(
        self,
        batch: tuple[Reductions, dict[str, Tensor], int],
        caps: list[float],
        shifts: list[float] | None = None,
    ) -> Tensor:
        """The bound of the critics ``min(S, caps[c]) + shifts[c]`` on one
        :meth:`evaluation_batch`: ``[len(caps)]``, from one critic evaluation."""
        layout, extra, world = batch
        values = []
        for cap, shift in zip(caps, shifts or [0.0] * len(caps), strict=True):
            share = self._estimate(self._capped(layout, extra, cap, shift), extra)
            values.append(dist.all_reduce_sum(share) if world > 1 else share)
        return torch.stack(values).cpu()

    @torch.no_grad()
    def log_mean_exp_negatives(
        self, batch: tuple[Reductions, dict[str, Tensor], int], caps: list[float]
    ) -> Tensor:
        """``log mean_{i≠j} exp min(S_ij, cap)`` of one :meth:`evaluation_batch` per cap:
        ``[len(caps)]``."""
        layout, extra, _ = batch
        return torch.stack([self._capped(layout, extra, c).log_mean_exp_neg() for c in caps]).cpu()

    @torch.no_grad()
    def extra_values(self, x: Tensor, y: Tensor) -> Tensor | None:
        """FLO's ``u(x_i, y_i)`` or TUBA's ``b(y_i)`` of the paired rows (``None``: no extra)."""
        extra = self._extra(x, y)
        return next(iter(extra.values())) if extra else None

    @torch.no_grad()
    def evaluated_positive_scores(self, x: Tensor, y: Tensor) -> Tensor:
        """The evaluated critic (:meth:`estimate`'s cap, centre and shift) on the paired rows:
        ``[n]``."""
        extra = self._clamp_extra(self._extra(x, y))
        s: Tensor = self.critic.pair_scores(x, y)  # type: ignore[operator]
        return self._evaluated(s, extra, float(self.score_cap), float(self.score_shift))

    @torch.no_grad()
    def positive_scores(self, x: Tensor, y: Tensor, centred: bool = False) -> Tensor:
        """``S(x_i, y_i)`` of the paired rows: ``[n]``; ``centred``: minus the exponent's
        :meth:`_centre` (TUBA: ``S_ii − b(y_i)``, the scale its cap is chosen on)."""
        scores: Tensor = self.critic.pair_scores(x, y)  # type: ignore[operator]
        centre = self._centre(self._extra(x, y)) if centred else None
        return scores if centre is None else scores - centre.squeeze(0)

    @torch.no_grad()
    def pointwise(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-pair ``log r(x_i, y_i)`` estimate on one batch (the bound's ``pointwise``): ``[K]``
        (one process; the batch's dense scores)."""
        extra = self._clamp_extra(self._extra(x, y))
        cap, shift = float(self.score_cap), float(self.score_shift)
        return self.spec.pointwise(self._evaluated(self.critic(x, y), extra, cap, shift), **extra)
