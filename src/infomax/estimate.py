"""``MIEstimator`` / ``estimate_mi``: fit a critic with a variational bound and report an MI
estimate on data that made no choice.

SPEC §2 "Estimation protocol", three-way. The samples are split at random (seeded) into
**train / validation / test** (default 70 / 15 / 15). Each dimension of ``x`` and of ``y`` is
preprocessed by an MI-preserving marginal transform fitted on the training split
(:mod:`infomax.marginals`: ``standardize`` or rank-based ``normal-scores``). The critic (and FLO's
u-network, TUBA's baseline, MINE's running mean) is trained on mini-batches of ``K`` training pairs
(AdamW, gradient norm clipped per module). Every ``eval_every`` steps the bound is evaluated on
the **validation** split cut into batches; early stopping, the best state and the optional
weight average (``ema``) are chosen on validation only. The reported value, its standard error
and its confidence interval (Student-t over test batches) come from the untouched **test**
split. :class:`MIEstimate` records the three sizes and, in ``splits``, which split each number
comes from.

The loop is :func:`infomax.train.fit` (step-based; one "epoch" per ``eval_every`` steps) with the
callbacks :class:`~infomax.train.GradClip` (per module), :class:`~infomax.train.EMA`,
:class:`~infomax.train.Evaluate`, :class:`~infomax.train.BestState`,
:class:`~infomax.train.EarlyStopping` and :class:`~infomax.train.Progress`; the training batches
are :class:`~infomax.data.Batches` drawn with replacement.

Distributed (under ``torchrun``, after :func:`infomax.dist.init_from_env`): every rank draws the
same global batch of ``K`` pairs (``K`` divisible by the number of ranks), scores its own
``K / world`` rows against all ``K`` columns, and the row blocks are gathered with gradient; the
parameter gradients are averaged over ranks, which gives exactly the single-process gradient.
Evaluations run on every rank.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(2000, 1)); y = x + rng.normal(size=(2000, 1))
>>> est = estimate_mi(x, y, bound="infonce", steps=200, progress=False)
>>> 0.1 < est.mi < 0.6  # true MI is 0.5 log 2 ≈ 0.35 nats
True
>>> est.splits["mi"], (est.n_train, est.n_val, est.n_test)
('test', (1400, 300, 300))
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import dist
from ._checks import as_2d_tensor, check_paired, check_positive_int
from .critics import build_critic
from .data.batches import Batches
from .marginals import MARGINALS, MarginalTransform, marginal_transform
from .objectives import MIObjective
from .registry import BOUNDS, CRITICS, Registry
from .reports import atomic_torch_save, to_jsonable, versions
from .train import (
    EMA,
    BestState,
    DivergedError,
    EarlyStopping,
    Evaluate,
    GradClip,
    Progress,
    TrainConfig,
    TrainState,
    check_device_name,
    fit,
    resolve_device,
)

logger = logging.getLogger(__name__)

#: Named settings for :class:`MIEstimator` / :func:`estimate_mi` (``preset=``, ``--preset``):
#: a preset is a dict of :class:`EstimateConfig` fields; keyword options override it.
PRESETS: Registry = Registry("MI estimation preset")


@dataclass(frozen=True)
class EstimateConfig:
    """Settings of :class:`MIEstimator` / :func:`estimate_mi` (validated; written into every
    result). ``patience=None`` disables early stopping; ``ema`` (a decay such as 0.99) evaluates
    and keeps an exponential moving average of the weights; ``eval_batch_size`` (default
    ``batch_size``) is the batch the validation / test estimates are averaged over;
    ``cap_scores`` evaluates the critic as ``min(S, cap)`` with the cap chosen on validation
    among quantiles of the positive scores (:func:`select_evaluation`): a valid critic, so the
    bound stays a bound, which keeps exponential bounds finite on held-out outliers;
    ``calibrate`` adds the constant that self-normalises the critic on validation; ``schedule``
    (``constant`` / ``cosine``) and ``warmup_steps`` shape the learning rate."""

    # the defaults with the lowest mean absolute error on ``mi-suite`` among the settings that
    # never failed (``infomax bench mi --tasks mi-suite``; docs/estimate.md)
    bound: str = "smile"
    critic: str = "dot"
    batch_size: int = 128
    steps: int = 1500
    lr: float = 5e-4
    weight_decay: float = 0.0
    hidden: int = 256
    layers: int = 2
    embed_dim: int = 32
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    marginals: str = "normal-scores"
    eval_every: int = 100
    eval_batch_size: int | None = None
    patience: int | None = 5
    ema: float | None = None
    smile_clip: float = 5.0
    grad_clip: float | None = 1.0
    confidence: float = 0.95
    seed: int = 0
    device: str = "auto"
    memory_efficient: bool | None = None
    cap_scores: bool = True
    calibrate: bool = False
    schedule: str = "constant"
    warmup_steps: int = 0
    preset: str | None = None

    def __post_init__(self) -> None:
        BOUNDS.get(self.bound)  # ValueError listing valid names
        CRITICS.get(self.critic)
        MARGINALS.get(self.marginals)
        if self.preset is not None:
            PRESETS.get(self.preset)
        for name in ("batch_size", "steps", "hidden", "layers", "embed_dim", "eval_every"):
            check_positive_int(getattr(self, name), name, minimum=2 if name == "batch_size" else 1)
        if self.eval_batch_size is not None:
            check_positive_int(self.eval_batch_size, "eval_batch_size", minimum=2)
        if self.patience is not None:
            check_positive_int(self.patience, "patience", minimum=1)
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if not (isinstance(self.warmup_steps, int) and self.warmup_steps >= 0):
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps}")
        for name in ("val_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction must leave a training split, got "
                f"{self.val_fraction} + {self.test_fraction}"
            )
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise ValueError(f"ema must be a decay in (0, 1) or None, got {self.ema}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.smile_clip <= 0:
            raise ValueError(f"smile_clip must be > 0, got {self.smile_clip}")
        # only the spelling here: a config saved on a GPU run must load on a CPU machine;
        # whether the device exists is checked when a run starts (resolve_device)
        check_device_name(self.device)

    @property
    def eval_k(self) -> int:
        """The evaluation batch size (``eval_batch_size`` or ``batch_size``)."""
        return self.eval_batch_size or self.batch_size

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EstimateConfig:
        """The config of a saved result or estimator (``to_dict`` output); keys of older
        versions load (``standardize: bool`` -> ``marginals``), unknown keys are ignored."""
        values = dict(values)
        if "standardize" in values and "marginals" not in values:
            values["marginals"] = "standardize" if values.pop("standardize") else "none"
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass(frozen=True)
class SampleEstimate:
    """The bound of a fitted critic on one paired sample: the mean over consecutive batches of
    ``batch_size`` pairs, its standard error and Student-t confidence interval."""

    mi: float
    stderr: float
    ci: tuple[float, float]
    n: int
    batches: int
    batch_size: int
    bound: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return to_jsonable(self)  # type: ignore[no-any-return]


#: Which split each number of an :class:`MIEstimate` comes from.
SPLITS = {
    "mi": "test",
    "stderr": "test",
    "ci": "test",
    "val_mi": "validation",
    "best_step": "validation",
    "history.val": "validation",
    "train_mi": "train",
    "history.train": "train",
}


@dataclass(frozen=True)
class MIEstimate:
    """Result of :meth:`MIEstimator.fit` / :func:`estimate_mi`; ``mi`` is in nats.

    ``mi``, ``stderr`` (standard error of the mean over test batches) and ``ci`` (Student-t
    confidence interval) come from the **test** split, which made no choice; ``val_mi`` is the
    validation estimate of the selected state (``best_step``), ``train_mi`` the estimate on
    training batches; ``history`` holds ``{"step", "train", "val"}`` records. ``splits`` says
    which split each number comes from."""

    mi: float
    stderr: float
    ci: tuple[float, float]
    val_mi: float
    train_mi: float
    bound: str
    batch_size: int
    eval_batch_size: int
    steps: int
    best_step: int
    history: list[dict[str, float]]
    seconds: float
    n_train: int
    n_val: int
    n_test: int
    config: EstimateConfig
    seed: int
    splits: dict[str, str] = field(default_factory=lambda: dict(SPLITS))
    versions: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return to_jsonable(self)  # type: ignore[no-any-return]

    def to_json(self) -> str:
        """The result as an indented JSON string."""
        return json.dumps(self.to_dict(), indent=2)


class EstimationFailed(ValueError):
    """The bound diverged or its estimate is not a usable number (a result of the data and the
    bound, not of a usage error: a benchmark records it as a failed run)."""


#: Bounds whose training and evaluated values stay finite on heavy-tailed data: no exponential
#: of the score averaged over pairs (InfoNCE's log-mean-exp is self-normalised, SMILE clips).
STABLE_BOUNDS = ("infonce", "smile")

#: A validation evaluation below this (nats) means the critic's exponential terms exploded on
#: held-out points (a mean overshoot of about 7 nats inside ``exp``): every bound here is 0 for
#: a constant critic and MI >= 0. Healthy runs stay far above it.
UNSTABLE_BELOW = -1000.0

#: The reported estimate may be slightly negative by sampling noise, never below this (nats).
ABSURD_BELOW = -1.0


def _remedy(cfg: EstimateConfig) -> str:
    """The remedy an error suggests; ``tests/test_estimate.py`` checks that it works on the
    input that failed (heavy tails: the rank transform, which every bound survives)."""
    if cfg.marginals != "normal-scores":
        return "try marginals='normal-scores' (--marginals normal-scores), which tames heavy tails"
    others = [b for b in STABLE_BOUNDS if b != cfg.bound]
    return f"try bound {' or '.join(repr(b) for b in others)}, more samples, or a lower lr"


def _diverged(cfg: EstimateConfig, step: int, what: str) -> EstimationFailed:
    return EstimationFailed(
        f"bound {cfg.bound!r} diverged at step {step} ({what} is not finite); {_remedy(cfg)}"
    )


def split_sizes(n: int, cfg: EstimateConfig) -> tuple[int, int, int]:
    """``(n_train, n_val, n_test)`` for ``n`` samples; ``ValueError`` unless the training split
    holds 2 batches of ``batch_size`` pairs and validation and test one evaluation batch each."""
    n_val = int(round(n * cfg.val_fraction))
    n_test = int(round(n * cfg.test_fraction))
    n_train = n - n_val - n_test
    k, ke = cfg.batch_size, cfg.eval_k
    if n_train < 2 * k or n_val < ke or n_test < ke:
        train_share = 1.0 - cfg.val_fraction - cfg.test_fraction
        need = math.ceil(max(2 * k / train_share, ke / cfg.val_fraction, ke / cfg.test_fraction))
        raise ValueError(
            f"{n} samples are too few for batch_size={k} (evaluation batch {ke}) with "
            f"val_fraction={cfg.val_fraction}, test_fraction={cfg.test_fraction}: need 2 "
            f"training batches and one batch each for validation and test (n >= {need}); "
            "lower batch_size or give more samples"
        )
    return n_train, n_val, n_test


def _check_plausible(cfg: EstimateConfig, mi: float, history: list[dict[str, float]]) -> None:
    """``EstimationFailed`` for a number that must not be reported: an estimate far below 0,
    or a run whose validation evaluations collapsed (the selected state is then unreliable)."""
    vals = [h["val"] for h in history]
    worst = min(vals) if vals else mi
    if mi < ABSURD_BELOW:
        raise EstimationFailed(
            f"bound {cfg.bound!r}: test estimate {mi:.4g} nats is not a usable MI estimate "
            f"(below {ABSURD_BELOW:g}; validation evaluations down to {worst:.3g}): the critic "
            f"fails on held-out points (heavy tails or too few samples); {_remedy(cfg)}"
        )
    if not all(math.isfinite(v) for v in vals) or worst < UNSTABLE_BELOW:
        raise EstimationFailed(
            f"bound {cfg.bound!r} is unstable on this data: validation evaluations fell to "
            f"{worst:.3g} nats during training, so the selected estimate ({mi:.3f}) cannot be "
            f"trusted (its exponential terms blow up on held-out points); {_remedy(cfg)}"
        )


def resolve_config(
    config: EstimateConfig | None = None,
    preset: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> EstimateConfig:
    """The settings of a run: ``config`` alone, or the defaults updated by the ``preset``'s
    values and then by ``options`` (keyword options override a preset). ``ValueError`` for
    unknown option names, for a ``preset`` together with ``config``, and for options that
    disagree with ``config`` (set them in the config instead)."""
    options = {k: v for k, v in (options or {}).items() if v is not None}
    fields = {f.name for f in dataclasses.fields(EstimateConfig)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; valid: {sorted(fields - {'preset'})}")
    if "preset" in options:
        preset = preset or options.pop("preset")
    if config is not None:
        if not isinstance(config, EstimateConfig):
            raise ValueError(f"config must be an EstimateConfig, got {type(config).__name__}")
        if preset is not None and preset != config.preset:
            raise ValueError(
                f"preset={preset!r} conflicts with config= (config.preset={config.preset!r}): "
                "give one of them"
            )
        clash = sorted(k for k, v in options.items() if getattr(config, k) != v)
        if clash:
            shown = ", ".join(f"{k}={options[k]!r} vs {getattr(config, k)!r}" for k in clash)
            raise ValueError(
                f"config= conflicts with keyword option(s) {shown}: use "
                "dataclasses.replace(config, ...) or pass the options without config"
            )
        return config
    values: dict[str, Any] = {}
    if preset is not None:
        values.update(PRESETS.get(preset), preset=str(preset).lower())
    values.update(options)
    return EstimateConfig(**values)


@dataclass
class _Split:
    """The three splits (preprocessed, on the device) and notes for the result."""

    x_tr: Tensor
    y_tr: Tensor
    x_val: Tensor
    y_val: Tensor
    x_te: Tensor
    y_te: Tensor
    notes: list[str]

    @property
    def sizes(self) -> tuple[int, int, int]:
        return self.x_tr.shape[0], self.x_val.shape[0], self.x_te.shape[0]


def _as_pair(x: Any, y: Any) -> tuple[Tensor, Tensor]:
    xt, yt = as_2d_tensor(x, "x"), as_2d_tensor(y, "y")
    check_paired(xt, yt)
    return xt, yt


def _batch_values(objective: MIObjective, x: Tensor, y: Tensor, k: int) -> np.ndarray:
    """The bound on consecutive batches of ``k`` pairs (the last partial batch dropped)."""
    values = [
        float(objective.estimate(x[i : i + k], y[i : i + k]))
        for i in range(0, x.shape[0] - k + 1, k)
    ]
    return np.asarray(values)


#: Quantiles of the validation positive scores tried as the evaluation cap.
CAP_QUANTILES = (0.5, 0.9, 0.99, 1.0)


@dataclass(frozen=True)
class EvaluationChoice:
    """How the fitted critic is evaluated, chosen on validation (:func:`select_evaluation`):
    scores ``min(S, cap) + shift``, FLO's ``u`` / TUBA's ``b`` clamped to ``[extra_floor,
    extra_cap]``; ``value`` is the validation bound of that critic."""

    cap: float
    shift: float
    extra_floor: float
    extra_cap: float
    value: float

    def apply(self, objective: MIObjective) -> None:
        """Store the choice in the objective's evaluation buffers."""
        objective.score_cap.fill_(self.cap)
        objective.score_shift.fill_(self.shift)
        objective.extra_floor.fill_(self.extra_floor)
        objective.extra_cap.fill_(self.extra_cap)


def select_evaluation(
    objective: MIObjective,
    x: Tensor,
    y: Tensor,
    k: int,
    *,
    cap: bool = True,
    calibrate: bool = False,
) -> EvaluationChoice:
    """The evaluation of the critic chosen on ``x, y`` (validation data, batches of ``k``).

    With ``cap``: the scores are clamped to ``min(S, cap)`` with ``cap`` the best (highest
    batch-mean bound) of the :data:`CAP_QUANTILES` of the validation positive scores, never
    above the largest, and FLO's ``u`` / TUBA's ``b`` are clamped to their validation range,
    so that a held-out outlier can no longer blow up ``exp`` (a tiled evaluation,
    ``objective.tiled(k)``, is not capped: the kernels never hold the scores). The low scores
    are left alone: raising the many low negatives would cost every bound. With
    ``calibrate``: ``shift = −log mean_{i≠j} exp min(S_ij, cap)`` over all validation
    negatives (it self-normalises NWJ / JS reports). Each choice is itself a critic, so the
    test estimate stays a bound. Each validation batch is scored once."""
    caps, extra_range = [math.inf], (-math.inf, math.inf)
    if cap and not objective.tiled(k):
        pos = objective.positive_scores(x, y, centred=True).double()
        q = torch.tensor(CAP_QUANTILES, dtype=pos.dtype, device=pos.device)
        caps = torch.quantile(pos, q).tolist()
    if cap:
        extra = objective.extra_values(x, y)
        if extra is not None:
            extra_range = float(extra.min()), float(extra.max())
    batches = [
        objective.evaluation_batch(x[i : i + k], y[i : i + k], extra_range)
        for i in range(0, x.shape[0] - k + 1, k)
    ]
    shifts = [0.0] * len(caps)
    if calibrate:
        lme = torch.stack([objective.log_mean_exp_negatives(b, caps) for b in batches]).double()
        shifts = (math.log(lme.shape[0]) - torch.logsumexp(lme, dim=0)).tolist()
    per_batch = [objective.estimate_capped(b, caps, shifts) for b in batches]
    means = torch.stack(per_batch).double().mean(dim=0)
    means = torch.where(torch.isfinite(means), means, torch.full_like(means, -math.inf))
    best = int(torch.argmax(means))
    return EvaluationChoice(caps[best], shifts[best], *extra_range, float(means[best]))


def t_interval(values: np.ndarray, confidence: float) -> tuple[float, float, tuple[float, float]]:
    """``(mean, stderr, (lo, hi))`` of the mean of ``values`` with a Student-t interval
    (``nan`` stderr and interval for one value)."""
    from scipy import stats

    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, (math.nan, math.nan)
    stderr = float(values.std(ddof=1) / math.sqrt(len(values)))
    half = float(stats.t.ppf((1 + confidence) / 2, df=len(values) - 1)) * stderr
    return mean, stderr, (mean - half, mean + half)


class MIEstimator:
    """Estimate ``I(X; Y)`` in nats with a variational bound, scikit-learn style.

    ``MIEstimator(config=None, *, preset=None, **options)`` takes the options of
    :class:`EstimateConfig` (``bound``: infonce, nwj, dv, mine, tuba, js, smile, flo;
    ``critic``; ``batch_size`` ``K``; ``steps``; ``marginals``; ...) or a named ``preset``
    (``PRESETS``: ``high-mi``). :meth:`fit` trains on ``x, y: [n, d]`` with the three-way
    protocol and returns the test-split :class:`MIEstimate`; :meth:`estimate` gives the fitted
    critic's bound on any new paired sample, :meth:`pointwise` a per-pair log density-ratio
    estimate; :meth:`save` / :meth:`load` round-trip the fitted estimator (``weights_only``).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(3000, 2)); y = x + rng.normal(size=(3000, 2))
    >>> estimator = MIEstimator(bound="nwj", steps=300, hidden=64)
    >>> result = estimator.fit(x, y, progress=False)  # true MI: log 2 ≈ 0.69 nats
    >>> x2 = rng.normal(size=(3000, 2)); y2 = x2 + rng.normal(size=(3000, 2))
    >>> fresh = estimator.estimate(x2, y2)  # the same critic on a new sample
    >>> abs(fresh.mi - result.mi) < 0.1, estimator.pointwise(x2, y2).shape
    (True, (3000,))
    """

    def __init__(
        self, config: EstimateConfig | None = None, *, preset: str | None = None, **options: Any
    ) -> None:
        self.config = resolve_config(config, preset, options)
        self.objective: MIObjective | None = None
        self.marginals: tuple[MarginalTransform, MarginalTransform] | None = None
        self.result: MIEstimate | None = None

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        x: Any,
        y: Any,
        *,
        progress: bool | Callable[[int, float | None], None] = True,
    ) -> MIEstimate:
        """Split, preprocess, train, select on validation and report on test (module docs).
        ``progress``: a rich bar, ``False``, or ``fn(step, validation_value)``. Raises
        ``ValueError`` for bad input and :class:`EstimationFailed` (a ``ValueError``) when the
        bound diverged or its estimate must not be reported as a number."""
        cfg = self.config
        data = self._split(x, y)
        objective = self._build(data)
        start = time.perf_counter()
        best, history, steps_done = self._train(objective, data, progress)
        self.objective = objective
        test = self._evaluate(data.x_te, data.y_te)
        if not math.isfinite(test.mi):
            raise _diverged(cfg, best.step, "the test estimate")
        _check_plausible(cfg, test.mi, history)
        m = min(data.x_tr.shape[0], 20 * cfg.eval_k)
        train_values = _batch_values(objective, data.x_tr[:m], data.y_tr[:m], cfg.eval_k)
        notes = data.notes + self._notes(test)
        for note in notes:
            warnings.warn(note, stacklevel=2)
        n_train, n_val, n_test = data.sizes
        self.result = MIEstimate(
            mi=test.mi,
            stderr=test.stderr,
            ci=test.ci,
            val_mi=float(best.value) if best.value is not None else math.nan,
            train_mi=float(train_values.mean()),
            bound=cfg.bound,
            batch_size=cfg.batch_size,
            eval_batch_size=cfg.eval_k,
            steps=steps_done,
            best_step=best.step,
            history=history,
            seconds=time.perf_counter() - start,
            n_train=n_train,
            n_val=n_val,
            n_test=n_test,
            config=cfg,
            seed=cfg.seed,
            versions=versions(),
            warnings=notes,
        )
        return self.result

    def _split(self, x: Any, y: Any) -> _Split:
        """Check the inputs, split them at random (seeded) into train / validation / test, fit
        the marginal transforms on the training split and move everything to the device."""
        cfg = self.config
        xt, yt = _as_pair(x, y)
        k = cfg.batch_size
        if k % dist.world_size():
            raise ValueError(
                f"batch_size={k} must be divisible by the number of ranks ({dist.world_size()})"
            )
        n_train, n_val, _ = split_sizes(xt.shape[0], cfg)
        notes: list[str] = []
        if xt.shape == yt.shape and torch.equal(xt, yt):
            notes.append(
                "x and y are identical: for continuous data I(X;Y) is infinite, so the estimate "
                "only says how far this bound and batch size can go"
            )
        perm = torch.from_numpy(np.random.default_rng(cfg.seed).permutation(xt.shape[0]))
        parts = perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :]
        tx, ty = marginal_transform(cfg.marginals), marginal_transform(cfg.marginals)
        for t, data, name in ((tx, xt, "x"), (ty, yt, "y")):
            try:
                t.fit(data[parts[0]])
            except ValueError as err:
                raise ValueError(f"{name}: {err}") from None
            notes += [f"{name}: {w}" for w in t.warnings]
        self.marginals = (tx, ty)
        device = resolve_device(cfg.device)
        xs = [tx.transform(xt[p]).to(device) for p in parts]
        ys = [ty.transform(yt[p]).to(device) for p in parts]
        return _Split(xs[0], ys[0], xs[1], ys[1], xs[2], ys[2], notes)

    def _build(self, data: _Split) -> MIObjective:
        """The critic and its bound's extras, initialised from the seed, on the data's device."""
        cfg = self.config
        torch.manual_seed(cfg.seed)
        dx, dy = data.x_tr.shape[1], data.y_tr.shape[1]
        return _objective(cfg, dx, dy).to(data.x_tr.device)

    def _train(
        self,
        objective: MIObjective,
        data: _Split,
        progress: bool | Callable[[int, float | None], None],
    ) -> tuple[BestState, list[dict[str, float]], int]:
        """:func:`infomax.train.fit` on training batches drawn with replacement; the validation
        estimate every ``eval_every`` steps and at the last step (of the EMA weights when
        ``ema`` is set); early stopping and the best state on validation. The selected state is
        loaded (in eval mode). Returns that :class:`~infomax.train.BestState`, the curve and the
        number of steps done."""
        cfg = self.config
        k, every = cfg.batch_size, cfg.eval_every
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)  # one stream across epochs

        def batches(epoch: int) -> Batches:
            steps = min(every, cfg.steps - epoch * every)
            return Batches((data.x_tr, data.y_tr), k, replacement=True, steps=steps, generator=gen)

        def loss_fn(model: MIObjective, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict]:
            loss, value = model.loss(*batch)
            return loss, {"train": value}

        ema = EMA(cfg.ema, restore=False) if cfg.ema is not None else None
        averaged = copy.deepcopy(objective) if ema is not None else None

        def evaluated(state: TrainState) -> MIObjective:
            if ema is None or averaged is None:
                return state.model  # type: ignore[return-value]
            averaged.load_state_dict(state.model.state_dict())  # buffers (MINE's mean)
            ema.copy_to(averaged)
            return averaged

        def validation(state: TrainState) -> dict[str, float]:
            model = evaluated(state)
            model.eval()
            if cfg.cap_scores or cfg.calibrate:  # chosen on validation, kept with the state
                choice = select_evaluation(
                    model,
                    data.x_val,
                    data.y_val,
                    cfg.eval_k,
                    cap=cfg.cap_scores,
                    calibrate=cfg.calibrate,
                )
                choice.apply(model)
                value = choice.value
            else:
                value = float(_batch_values(model, data.x_val, data.y_val, cfg.eval_k).mean())
            model.train()
            return {"val": value}

        best = BestState(
            "val", source=None if averaged is None else lambda s: averaged.state_dict()
        )
        callbacks = [
            *([GradClip(cfg.grad_clip, per_module=True)] if cfg.grad_clip is not None else []),
            *([ema] if ema is not None else []),
            Evaluate(validation, all_ranks=True),
            best,
            *([EarlyStopping("val", cfg.patience)] if cfg.patience is not None else []),
            Progress(
                f"estimate_mi[{cfg.bound}]",
                enabled=progress is True,
                fn=progress if callable(progress) else None,
                metric="val",
                show={"val": "validation"},
                transient=True,
            ),
        ]
        train_config = TrainConfig(
            epochs=math.ceil(cfg.steps / every),
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,  # AdamW; 0: Adam's update
            schedule=cfg.schedule,
            warmup_epochs=min(cfg.warmup_steps, cfg.steps) / every,  # at most all steps
            amp=False,
            device=cfg.device,
            seed=cfg.seed,
            progress=False,
        )
        try:
            result = fit(
                objective,
                batches,
                loss_fn,  # type: ignore[arg-type]
                train_config,
                callbacks=callbacks,
                total_steps=cfg.steps,
                grad_sync="average",
            )
        except DivergedError as err:
            raise _diverged(cfg, err.global_step, "the training loss") from None
        if best.state is None:
            raise _diverged(cfg, result.steps, "the validation estimate")
        objective.eval()
        history = [
            {"step": r["global_step"], "train": r["train"], "val": r["val"]} for r in result.history
        ]
        return best, history, result.steps

    def _notes(self, test: SampleEstimate) -> list[str]:
        """The warnings a test-split estimate calls for (one batch, CI below 0, InfoNCE's cap)."""
        cfg, notes = self.config, []
        if test.batches == 1:
            notes.append(
                f"only 1 test batch of {cfg.eval_k} pairs: no standard error or confidence "
                "interval; give more samples or a smaller batch_size"
            )
        elif test.ci[0] < 0:
            notes.append(
                f"the {100 * cfg.confidence:.0f}% CI [{test.ci[0]:.3f}, {test.ci[1]:.3f}] "
                "reaches below 0 nats: MI is never negative, so at this confidence the data do "
                "not show dependence (or the critic is too weak to find it)"
            )
        if cfg.bound == "infonce" and test.mi > math.log(cfg.eval_k) - 0.1:
            notes.append(
                f"InfoNCE estimate {test.mi:.3f} is within 0.1 nats of its cap log K = "
                f"{math.log(cfg.eval_k):.3f}; the true MI may be higher: raise batch_size or use "
                "another bound"
            )
        return notes

    # ------------------------------------------------------------------ fitted critic
    def _fitted(self) -> tuple[MIObjective, MarginalTransform, MarginalTransform]:
        if self.objective is None or self.marginals is None:
            raise ValueError("this MIEstimator is not fitted: call fit(x, y) or load(path)")
        return self.objective, *self.marginals

    def _prepare(self, x: Any, y: Any) -> tuple[Tensor, Tensor]:
        objective, tx, ty = self._fitted()
        xt, yt = _as_pair(x, y)
        device = next(objective.parameters()).device
        try:
            return tx.transform(xt).to(device), ty.transform(yt).to(device)
        except ValueError as err:
            raise ValueError(f"{err} (the estimator was fitted on other dimensions)") from None

    def _evaluate(self, x: Tensor, y: Tensor) -> SampleEstimate:
        cfg, objective = self.config, self._fitted()[0]
        k = cfg.eval_k
        values = _batch_values(objective, x, y, k)
        mi, stderr, ci = t_interval(values, cfg.confidence)
        return SampleEstimate(mi, stderr, ci, x.shape[0], len(values), k, cfg.bound)

    def estimate(self, x: Any, y: Any) -> SampleEstimate:
        """The fitted critic's bound on a new paired sample ``x: [n, dx]``, ``y: [n, dy]``
        (preprocessed with the training split's transforms): the mean over consecutive
        batches of ``eval_batch_size`` pairs, its standard error and confidence interval."""
        xp, yp = self._prepare(x, y)
        if xp.shape[0] < self.config.eval_k:
            raise ValueError(
                f"{xp.shape[0]} pairs are fewer than one evaluation batch of "
                f"{self.config.eval_k}; give more pairs"
            )
        return self._evaluate(xp, yp)

    def pointwise(self, x: Any, y: Any) -> np.ndarray:
        """Per-pair estimate of ``log p(x_i, y_i) / (p(x_i) p(y_i))``: ``[n]`` (its mean
        estimates the MI). How the bound's optimum defines it: ``nwj`` ``S_ii − 1``; ``js``
        and ``smile`` ``S_ii``; ``tuba`` ``S_ii − b(y_i)``; ``flo`` ``−u_i``; ``dv`` / ``mine``
        ``S_ii − log mean_{j≠i} exp S_ij`` over the batch; ``infonce`` ``S_ii − log mean_{j≠i}
        exp S_ij`` over row ``i``. Batches of ``eval_batch_size`` pairs (a shorter last one)."""
        xp, yp = self._prepare(x, y)
        objective, k, n = self._fitted()[0], self.config.eval_k, xp.shape[0]
        if n < 2:
            raise ValueError(f"pointwise needs at least 2 pairs, got {n}")
        starts = list(range(0, n, k))
        if len(starts) > 1 and n - starts[-1] < 2:
            starts.pop()  # a last batch of one pair has no negatives: join it to the previous
        ends = starts[1:] + [n]
        with torch.no_grad():
            parts = [
                objective.pointwise(xp[a:b], yp[a:b]) for a, b in zip(starts, ends, strict=True)
            ]
        return torch.cat(parts).double().cpu().numpy()

    def exact_normalizer_bound(self, task: Any, n: int = 100_000, seed: int = 10**6) -> float:
        """Diagnostic on a ground-truth task (needs its ``log_density_ratio``, so never an
        estimate): the DV bound of the fitted (capped, shifted) critic ``T`` with its exact
        normaliser, ``E_p[T] − log E_p[exp(T − log r)]`` by importance sampling on ``n`` fresh
        pairs. It is ``<=`` the true MI for any critic, and equals it only for ``T = log r + c``;
        unlike a per-batch optimum (``flo_optimal_u``, biased upwards) it certifies a critic."""
        x, y = task.sample(n, seed=seed)
        objective = self._fitted()[0]
        xp, yp = self._prepare(x, y)
        with torch.no_grad():
            t = objective.evaluated_positive_scores(xp, yp).double()
        log_r = np.concatenate(
            [
                np.diag(task.log_density_ratio(x[i : i + 512], y[i : i + 512]))
                for i in range(0, n, 512)
            ]
        )
        w = t - torch.from_numpy(log_r).to(t)
        return float(t.mean() - (torch.logsumexp(w, dim=0) - math.log(n)))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the fitted estimator (config, critic weights, marginal transforms, result)
        atomically; :meth:`load` reads it with ``torch.load(weights_only=True)``."""
        objective, tx, ty = self._fitted()
        payload = {
            "format": "infomax.MIEstimator/1",
            "config": to_jsonable(self.config),
            "dims": [tx.dim, ty.dim],
            "state": {k: v.detach().cpu() for k, v in objective.state_dict().items()},
            "marginals": [tx.state(), ty.state()],
            "result": None if self.result is None else json.dumps(self.result.to_dict()),
        }
        return atomic_torch_save(payload, path)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> MIEstimator:
        """An estimator written by :meth:`save` (``weights_only=True``), on ``device``."""
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"no saved estimator at {str(p)!r}")
        try:
            payload = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(f"cannot read estimator {str(p)!r}: {err}") from None
        if not isinstance(payload, dict) or payload.get("format") != "infomax.MIEstimator/1":
            raise ValueError(f"{str(p)!r} is not a file written by MIEstimator.save")
        cfg = EstimateConfig.from_dict(payload["config"])
        est = cls(dataclasses.replace(cfg, device=device))
        dx, dy = payload["dims"]
        objective = _objective(cfg, dx, dy)  # weights come from the file: no reseeding
        objective.load_state_dict(payload["state"])
        est.objective = objective.to(resolve_device(device)).eval()
        est.marginals = (
            MarginalTransform.from_state(payload["marginals"][0]),
            MarginalTransform.from_state(payload["marginals"][1]),
        )
        return est


PRESETS.add(
    "high-mi",
    {  # docs/estimate.md "High MI": 10 nats, 20-D Gaussian, K = 128, 3 000 steps
        "bound": "js",  # JS loss: bounded gradients; reports 1 + E_p[S] − E_q[exp S]
        "critic": "dot-additive",  # g(x)·h(y) + a(x) + b(y)
        "embed_dim": 64,
        "lr": 1e-3,
        "weight_decay": 1.0,  # decoupled (AdamW): keeps the critic's tails tame
        "schedule": "cosine",
        "warmup_steps": 100,
        "ema": 0.99,  # evaluate and keep the weight average
        "steps": 3000,
        "patience": None,  # all 3 000 steps; the best EMA state on validation is kept
        "calibrate": True,  # the constant of S chosen on validation (self-normalised NWJ)
        "eval_batch_size": 1000,  # 10^6 pairs per evaluation batch: the e^S tail is seen
        "marginals": "standardize",  # as measured (Gaussian data: the same as normal scores)
    },
)


def _objective(cfg: EstimateConfig, dx: int, dy: int) -> MIObjective:
    net = build_critic(
        cfg.critic, dx, dy, hidden=cfg.hidden, layers=cfg.layers, embed_dim=cfg.embed_dim
    )
    return MIObjective(
        cfg.bound,
        net,
        dx,
        dy,
        hidden=cfg.hidden,
        layers=cfg.layers,
        smile_clip=cfg.smile_clip,
        memory_efficient=cfg.memory_efficient,
    )


def estimate_mi(
    x: Any,
    y: Any,
    bound: str | None = None,
    critic: str | None = None,
    batch_size: int | None = None,
    steps: int | None = None,
    *,
    progress: bool | Callable[[int, float | None], None] = True,
    config: EstimateConfig | None = None,
    preset: str | None = None,
    **options: Any,
) -> MIEstimate:
    """Estimate ``I(X; Y)`` in nats from paired samples ``x, y: [n, d]``:
    ``MIEstimator(config, preset=preset, bound=..., **options).fit(x, y)``.

    ``bound`` (``BOUNDS``), ``critic`` (``CRITICS``), ``batch_size`` (``K`` pairs), ``steps``
    and the other :class:`EstimateConfig` fields as keyword options, or a whole ``config``
    (options that disagree with it are an error), or a ``preset`` (``PRESETS``). Returns the
    test-split :class:`MIEstimate`. Raises ``ValueError`` for bad input (shapes, NaN/Inf, too
    few samples, unknown names) and :class:`EstimationFailed` (a ``ValueError``) when the bound
    diverged or its estimate must not be reported as a number.
    """
    given = {"bound": bound, "critic": critic, "batch_size": batch_size, "steps": steps}
    estimator = MIEstimator(config, preset=preset, **given, **options)
    return estimator.fit(x, y, progress=progress)
