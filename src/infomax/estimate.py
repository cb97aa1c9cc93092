"""``estimate_mi``: fit a critic with a variational bound and report a held-out MI estimate.

SPEC §2 "Estimation protocol". The samples are split into train / held-out (default 80/20),
each dimension is standardised with the training split's mean and std, the critic (and FLO's
u-network, TUBA's baseline, MINE's running mean) is trained with Adam on mini-batches of ``K``
pairs (gradient norm clipped per module, default 1.0: exponential bounds have heavy-tailed
gradients), and every ``eval_every`` steps the bound is evaluated on the held-out split cut into
batches of ``K``. Training stops early when the held-out estimate has not improved for
``patience`` evaluations; the weights of the best evaluation are restored and its held-out
estimate is reported, with a bootstrap confidence interval over the held-out batches. The loop is
:func:`infomax.train.fit` (step-based, ``total_steps = steps``; one "epoch" per ``eval_every``
steps) with the callbacks :class:`~infomax.train.GradClip` (per module),
:class:`~infomax.train.Evaluate`, :class:`~infomax.train.BestState`,
:class:`~infomax.train.EarlyStopping` and :class:`~infomax.train.Progress`; the training
batches are :class:`~infomax.data.Batches` drawn with replacement.

Distributed (under ``torchrun``, after :func:`infomax.dist.init_from_env`): every rank draws the
same global batch of ``K`` pairs (``K`` divisible by the number of ranks), scores its own
``K / world`` rows against all ``K`` columns (critic evaluations, FLO's ``u`` on its pairs), and
the row blocks are gathered with gradient into the full score matrix; the parameter gradients are
averaged over ranks (``fit(..., grad_sync="average")``), which gives exactly the single-process
gradient, so the ranks stay identical and the result equals a one-process run up to
floating-point summation order. The held-out evaluations run on every rank.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(2000, 1)); y = x + rng.normal(size=(2000, 1))
>>> est = estimate_mi(x, y, bound="infonce", steps=200, progress=False)
>>> 0.1 < est.mi < 0.6  # true MI is 0.5 log 2 ≈ 0.35 nats
True
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import dist
from ._checks import as_2d_tensor, check_paired, check_positive_int
from .critics import build_critic
from .data.batches import Batches
from .objectives import MIObjective
from .registry import BOUNDS, CRITICS
from .reports import to_jsonable, versions
from .train import (
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


@dataclass(frozen=True)
class EstimateConfig:
    """Settings of :func:`estimate_mi` (validated; written into every result)."""

    bound: str = "flo"
    critic: str = "dot"
    batch_size: int = 128
    steps: int = 3000
    lr: float = 5e-4
    hidden: int = 256
    layers: int = 2
    embed_dim: int = 32
    test_fraction: float = 0.2
    standardize: bool = True
    eval_every: int = 100
    patience: int = 5
    smile_clip: float = 5.0
    grad_clip: float | None = 1.0
    n_bootstrap: int = 1000
    confidence: float = 0.95
    seed: int = 0
    device: str = "auto"
    memory_efficient: bool | None = None

    def __post_init__(self) -> None:
        BOUNDS.get(self.bound)  # ValueError listing valid names
        CRITICS.get(self.critic)
        for name in ("batch_size", "steps", "hidden", "layers", "embed_dim", "eval_every"):
            check_positive_int(getattr(self, name), name, minimum=2 if name == "batch_size" else 1)
        check_positive_int(self.patience, "patience", minimum=1)
        check_positive_int(self.n_bootstrap, "n_bootstrap", minimum=1)
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.smile_clip <= 0:
            raise ValueError(f"smile_clip must be > 0, got {self.smile_clip}")
        # only the spelling here: a config saved on a GPU run must load on a CPU machine;
        # whether the device exists is checked when a run starts (resolve_device)
        check_device_name(self.device)


@dataclass(frozen=True)
class MIEstimate:
    """Result of :func:`estimate_mi`. ``mi`` is the held-out estimate in nats.

    ``ci`` is a bootstrap confidence interval over held-out batches, ``stderr`` the standard
    error of the mean over those batches; ``history`` holds ``{"step", "train", "test"}`` records.
    """

    mi: float
    stderr: float
    ci: tuple[float, float]
    train_mi: float
    bound: str
    batch_size: int
    steps: int
    best_step: int
    history: list[dict[str, float]]
    seconds: float
    n_train: int
    n_test: int
    config: EstimateConfig
    seed: int
    versions: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return to_jsonable(self)  # type: ignore[no-any-return]

    def to_json(self) -> str:
        """The result as an indented JSON string."""
        return json.dumps(self.to_dict(), indent=2)


def _standardize(train: Tensor, *others: Tensor) -> tuple[Tensor, ...]:
    mean = train.mean(dim=0, keepdim=True)
    std = train.std(dim=0, keepdim=True)
    if (std == 0).any():
        dims = (std[0] == 0).nonzero().flatten().tolist()
        raise ValueError(f"dimensions {dims} are constant in the training split; drop them")
    return tuple((t - mean) / std for t in (train, *others))


def _batch_values(objective: MIObjective, x: Tensor, y: Tensor, k: int) -> np.ndarray:
    """Estimate on consecutive held-out batches of ``k`` pairs (the last partial batch dropped)."""
    values = [
        float(objective.estimate(x[i : i + k], y[i : i + k]))
        for i in range(0, x.shape[0] - k + 1, k)
    ]
    return np.asarray(values)


def bootstrap_ci(
    values: np.ndarray, n_bootstrap: int, confidence: float, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values``."""
    if len(values) == 1:
        return float(values[0]), float(values[0])
    idx = rng.integers(0, len(values), size=(n_bootstrap, len(values)))
    means = values[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


class EstimationFailed(ValueError):
    """The bound diverged or its held-out estimate is not a usable number (a result of the
    data and the bound, not of a usage error: a benchmark records it as a failed run)."""


#: Bounds whose training and held-out values stay finite on heavy-tailed data: no exponential
#: of the score averaged over pairs (InfoNCE's log-mean-exp is self-normalised, SMILE clips).
STABLE_BOUNDS = ("infonce", "smile")

#: A held-out evaluation below this (nats) means the critic's exponential terms exploded on
#: held-out points (a mean overshoot of about 7 nats inside ``exp``): every bound here is 0 for
#: a constant critic and MI >= 0. Healthy runs stay far above it (the 20-D staircase at
#: 10 nats, K = 128: NWJ / FLO / DV never below 0.5, JS −12, TUBA −226 on one evaluation);
#: the heavy-tailed cubic task with 2 000 samples reaches −4e4 (NWJ) and −3e10 (FLO).
UNSTABLE_BELOW = -1000.0

#: The reported estimate may be slightly negative by sampling noise, never below this (nats).
ABSURD_BELOW = -1.0


def _remedy(bound: str) -> str:
    others = [b for b in STABLE_BOUNDS if b != bound]
    return f"try bound {' or '.join(repr(b) for b in others)}, more samples, or a lower lr"


def _diverged(bound: str, step: int, what: str) -> EstimationFailed:
    return EstimationFailed(
        f"bound {bound!r} diverged at step {step} ({what} is not finite); {_remedy(bound)}"
    )


def check_sample_size(n: int, batch_size: int, test_fraction: float) -> tuple[int, int]:
    """``(n_train, n_test)`` for ``n`` samples; ``ValueError`` unless the split holds at least
    2 training batches and 1 held-out batch of ``batch_size`` pairs."""
    n_test = int(round(n * test_fraction))
    n_train = n - n_test
    if n_test < batch_size or n_train < 2 * batch_size:
        need = math.ceil(max(2 * batch_size / (1 - test_fraction), batch_size / test_fraction))
        raise ValueError(
            f"{n} samples are too few for batch_size={batch_size} with "
            f"test_fraction={test_fraction}: need at least 2 training batches and 1 held-out "
            f"batch (n >= {need}); lower batch_size or give more samples"
        )
    return n_train, n_test


def _check_plausible(bound: str, mi: float, history: list[dict[str, float]]) -> None:
    """``EstimationFailed`` for a number that must not be reported: an estimate far below 0,
    or a run whose held-out evaluations collapsed (the selected state is then unreliable)."""
    tests = [h["test"] for h in history]
    worst = min(tests) if tests else mi
    if mi < ABSURD_BELOW:
        raise EstimationFailed(
            f"bound {bound!r}: held-out estimate {mi:.4g} nats is not a usable MI estimate "
            f"(below {ABSURD_BELOW:g}; held-out evaluations down to {worst:.3g}): the critic "
            f"fails on held-out points (heavy tails or too few samples); {_remedy(bound)}"
        )
    if not all(math.isfinite(t) for t in tests) or worst < UNSTABLE_BELOW:
        raise EstimationFailed(
            f"bound {bound!r} is unstable on this data: held-out evaluations fell to "
            f"{worst:.3g} nats during training, so the selected estimate ({mi:.3f}) cannot be "
            f"trusted (its exponential terms blow up on held-out points); {_remedy(bound)}"
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
    **options: Any,
) -> MIEstimate:
    """Estimate ``I(X; Y)`` in nats from paired samples ``x, y: [n, d]`` with a variational bound.

    ``bound`` (``BOUNDS``: infonce, nwj, dv, mine, tuba, js, smile, flo), ``critic``
    (``CRITICS``), ``batch_size`` (``K`` pairs) and ``steps`` (Adam steps) left at ``None`` come
    from ``config`` (an :class:`EstimateConfig`, default flo / dot / 128 / 3000); ``options``
    override its other fields. ``progress``: a rich bar, ``False``, or ``fn(step, held_out)``.
    Returns an :class:`MIEstimate` (held-out estimate, CI, curve). Raises ``ValueError`` for bad
    input (shapes, NaN/Inf, too few samples, unknown names) and :class:`EstimationFailed` (a
    ``ValueError``) when the bound diverged or its estimate must not be reported as a number.
    """
    given = {"bound": bound, "critic": critic, "batch_size": batch_size, "steps": steps}
    cfg = _resolve_config(config, given, options)
    data = _split(x, y, cfg)
    objective = _build_objective(cfg, data)
    start = time.perf_counter()
    best, history, steps_done = _fit_critic(objective, data, cfg, progress)
    values = _batch_values(objective, data.x_te, data.y_te, cfg.batch_size)
    if not np.all(np.isfinite(values)):
        raise _diverged(cfg.bound, best.step, "the held-out estimate")
    _check_plausible(cfg.bound, float(values.mean()), history)
    m = min(data.n_train, 20 * cfg.batch_size)
    train_values = _batch_values(objective, data.x_tr[:m], data.y_tr[:m], cfg.batch_size)
    stderr, ci = _uncertainty(values, cfg, data.notes)
    for note in data.notes:
        warnings.warn(note, stacklevel=2)
    return MIEstimate(
        mi=float(values.mean()),
        stderr=stderr,
        ci=ci,
        train_mi=float(train_values.mean()),
        bound=cfg.bound,
        batch_size=cfg.batch_size,
        steps=steps_done,
        best_step=best.step,
        history=history,
        seconds=time.perf_counter() - start,
        n_train=data.n_train,
        n_test=data.n_test,
        config=cfg,
        seed=cfg.seed,
        versions=versions(),
        warnings=data.notes,
    )


def _resolve_config(
    config: EstimateConfig | None, given: dict[str, Any], options: dict[str, Any]
) -> EstimateConfig:
    """``config`` (or the defaults) with the arguments ``given`` (unless ``None``) and the
    keyword ``options``; ``ValueError`` naming unknown options."""
    base = config or EstimateConfig()
    fields = {f.name for f in dataclasses.fields(EstimateConfig)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; valid: {sorted(fields)}")
    overrides = {k: v for k, v in given.items() if v is not None}
    return dataclasses.replace(base, **overrides, **options)


@dataclass
class _Split:
    """Training and held-out pairs (preprocessed, on the device) and notes for the result."""

    x_tr: Tensor
    y_tr: Tensor
    x_te: Tensor
    y_te: Tensor
    n_train: int
    n_test: int
    notes: list[str]


def _split(x: Any, y: Any, cfg: EstimateConfig) -> _Split:
    """Check the inputs, split them at random into train / held-out (seeded), standardise each
    dimension with the training split's statistics and move both to the device."""
    xt, yt = as_2d_tensor(x, "x"), as_2d_tensor(y, "y")
    check_paired(xt, yt)
    k = cfg.batch_size
    if k % dist.world_size():
        raise ValueError(
            f"batch_size={k} must be divisible by the number of ranks ({dist.world_size()})"
        )
    n_train, n_test = check_sample_size(xt.shape[0], k, cfg.test_fraction)
    notes: list[str] = []
    if xt.shape == yt.shape and torch.equal(xt, yt):
        notes.append(
            "x and y are identical: for continuous data I(X;Y) is infinite, so the estimate "
            "only says how far this bound and batch size can go"
        )
    device = resolve_device(cfg.device)
    perm = torch.from_numpy(np.random.default_rng(cfg.seed).permutation(xt.shape[0]))
    train_idx, test_idx = perm[:n_train], perm[n_train:]
    x_tr, x_te, y_tr, y_te = xt[train_idx], xt[test_idx], yt[train_idx], yt[test_idx]
    if cfg.standardize:
        x_tr, x_te = _standardize(x_tr, x_te)
        y_tr, y_te = _standardize(y_tr, y_te)
    x_tr, x_te, y_tr, y_te = (t.to(device) for t in (x_tr, x_te, y_tr, y_te))
    return _Split(x_tr, y_tr, x_te, y_te, n_train, n_test, notes)


def _build_objective(cfg: EstimateConfig, data: _Split) -> MIObjective:
    """The critic and its bound's extras, initialised from ``cfg.seed``, on the data's device."""
    torch.manual_seed(cfg.seed)
    dx, dy = data.x_tr.shape[1], data.y_tr.shape[1]
    net = build_critic(
        cfg.critic, dx, dy, hidden=cfg.hidden, layers=cfg.layers, embed_dim=cfg.embed_dim
    )
    objective = MIObjective(
        cfg.bound,
        net,
        dx,
        dy,
        hidden=cfg.hidden,
        layers=cfg.layers,
        smile_clip=cfg.smile_clip,
        memory_efficient=cfg.memory_efficient,
    )
    return objective.to(data.x_tr.device)


def _fit_critic(
    objective: MIObjective,
    data: _Split,
    cfg: EstimateConfig,
    progress: bool | Callable[[int, float | None], None],
) -> tuple[BestState, list[dict[str, float]], int]:
    """Train with :func:`infomax.train.fit`: Adam (constant ``lr``) on batches of ``K``
    training pairs drawn with replacement, gradients averaged over ranks and clipped per
    module, the held-out estimate every ``eval_every`` steps and at the last step (on every
    rank: the evaluation gathers score rows), early stopping, the best state restored (in eval
    mode). Returns that :class:`~infomax.train.BestState`, the curve ``{"step", "train",
    "test"}`` and the number of steps done."""
    k, every = cfg.batch_size, cfg.eval_every
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)  # one stream across epochs

    def batches(epoch: int) -> Batches:
        steps = min(every, cfg.steps - epoch * every)
        return Batches((data.x_tr, data.y_tr), k, replacement=True, steps=steps, generator=gen)

    def loss_fn(model: MIObjective, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict]:
        loss, value = model.loss(*batch)
        return loss, {"train": value}

    def held_out(state: TrainState) -> dict[str, float]:
        model: MIObjective = state.model  # type: ignore[assignment]
        return {"test": float(_batch_values(model, data.x_te, data.y_te, k).mean())}

    best = BestState("test")
    callbacks = [
        *([GradClip(cfg.grad_clip, per_module=True)] if cfg.grad_clip is not None else []),
        Evaluate(held_out, all_ranks=True),
        best,
        EarlyStopping("test", cfg.patience),
        Progress(
            f"estimate_mi[{cfg.bound}]",
            enabled=progress is True,
            fn=progress if callable(progress) else None,
            metric="test",
            show={"test": "held-out"},
            transient=True,
        ),
    ]
    train_config = TrainConfig(
        epochs=math.ceil(cfg.steps / every),
        lr=cfg.lr,
        weight_decay=0.0,  # AdamW without decay: Adam's update
        schedule="constant",
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
        raise _diverged(cfg.bound, err.global_step, "the training loss") from None
    if best.state is None:
        raise _diverged(cfg.bound, result.steps, "the held-out estimate")
    objective.eval()
    history = [
        {"step": r["global_step"], "train": r["train"], "test": r["test"]} for r in result.history
    ]
    return best, history, result.steps


def _uncertainty(
    values: np.ndarray, cfg: EstimateConfig, notes: list[str]
) -> tuple[float, tuple[float, float]]:
    """Standard error and bootstrap CI of the mean of the held-out batch ``values`` (NaN for a
    single batch); the notes they call for (and InfoNCE's cap) are appended to ``notes``."""
    if len(values) == 1:
        notes.append(
            f"only 1 held-out batch of {cfg.batch_size} pairs: no standard error or confidence "
            "interval; give more samples or a smaller batch_size"
        )
        return math.nan, (math.nan, math.nan)
    stderr = float(values.std(ddof=1) / math.sqrt(len(values)))
    ci = bootstrap_ci(values, cfg.n_bootstrap, cfg.confidence, np.random.default_rng(cfg.seed))
    if ci[0] < 0:
        notes.append(
            f"the {100 * cfg.confidence:.0f}% CI [{ci[0]:.3f}, {ci[1]:.3f}] reaches below "
            "0 nats: MI is never negative, so at this confidence the data do not show "
            "dependence (or the critic is too weak to find it)"
        )
    mi, k = float(values.mean()), cfg.batch_size
    if cfg.bound == "infonce" and mi > math.log(k) - 0.1:
        notes.append(
            f"InfoNCE estimate {mi:.3f} is within 0.1 nats of its cap log K = {math.log(k):.3f}; "
            "the true MI may be higher: raise batch_size or use 'flo'"
        )
    return stderr, ci
