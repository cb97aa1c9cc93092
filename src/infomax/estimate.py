"""``estimate_mi``: fit a critic with a variational bound and report a held-out MI estimate.

SPEC §2 "Estimation protocol". The samples are split into train / held-out (default 80/20),
each dimension is standardised with the training split's mean and std, the critic (and FLO's
u-network, TUBA's baseline, MINE's running mean) is trained with Adam on mini-batches of ``K``
pairs (gradient norm clipped per module, default 1.0: exponential bounds have heavy-tailed
gradients), and every ``eval_every`` steps the bound is evaluated on the held-out split cut into
batches of ``K``. Training stops early when the held-out estimate has not improved for
``patience`` evaluations; the weights of the best evaluation are restored and its held-out
estimate is reported, with a bootstrap confidence interval over the held-out batches.

Distributed (under ``torchrun``, after :func:`infomax.dist.init_from_env`): every rank draws the
same global batch of ``K`` pairs (``K`` divisible by the number of ranks), scores its own
``K / world`` rows against all ``K`` columns (critic evaluations, FLO's ``u`` on its pairs), and
the row blocks are gathered with gradient into the full score matrix; the parameter gradients are
averaged over ranks, which gives exactly the single-process gradient, so the ranks stay identical
and the result equals a one-process run up to floating-point summation order.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(2000, 1)); y = x + rng.normal(size=(2000, 1))
>>> est = estimate_mi(x, y, bound="infonce", steps=200, progress=False)
>>> 0.1 < est.mi < 0.6  # true MI is 0.5 log 2 ≈ 0.35 nats
True
"""

from __future__ import annotations

import copy
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
from .objectives import MIObjective
from .registry import BOUNDS, CRITICS
from .reports import to_jsonable, versions
from .train import check_device_name, resolve_device

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
    """Estimate ``I(X; Y)`` in nats from paired samples with a variational bound.

    Args:
        x: ``[n, dx]`` (or ``[n]``) array or tensor.
        y: ``[n, dy]`` (or ``[n]``) array or tensor, paired with ``x`` row by row.
        bound: a name from ``BOUNDS`` (``infonce, nwj, dv, mine, tuba, js, smile, flo``).
        critic: a name from ``CRITICS`` (``dot, cosine, gaussian, lp, bilinear, joint``).
        batch_size: ``K``, pairs per batch (``K − 1`` negatives per positive).
        steps: maximum number of Adam steps.
            ``bound``, ``critic``, ``batch_size`` and ``steps`` left at ``None`` come from
            ``config`` (or the :class:`EstimateConfig` defaults: flo, dot, 128, 3000).
        progress: show a rich progress bar (``True``), nothing (``False``), or a callback
            ``fn(step, held_out_estimate_or_None)``.
        config: a full :class:`EstimateConfig`; ``options`` override its fields
            (``lr, hidden, layers, embed_dim, test_fraction, standardize, eval_every, patience,
            smile_clip, n_bootstrap, confidence, seed, device, memory_efficient``;
            ``memory_efficient``: train and evaluate through the tiled kernels of
            :mod:`infomax.kernels` — ``None`` does so automatically from ``K = 4096`` on).

    Returns:
        :class:`MIEstimate` with the held-out estimate, its CI and the training curve.

    Raises:
        ValueError: bad shapes, NaN/Inf, mismatched sample counts, fewer samples than two
            batches in either split, unknown names, an unavailable device.
        EstimationFailed: (a ``ValueError``) the bound diverged, or its held-out estimate must
            not be reported as a number (below −1 nat, or held-out evaluations that collapsed
            below ``UNSTABLE_BELOW``); the message names a bound that works on such data.
    """
    base = config or EstimateConfig()
    fields = {f.name for f in dataclasses.fields(EstimateConfig)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; valid: {sorted(fields)}")
    given = {"bound": bound, "critic": critic, "batch_size": batch_size, "steps": steps}
    overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    cfg = dataclasses.replace(base, **overrides, **options)
    xt, yt = as_2d_tensor(x, "x"), as_2d_tensor(y, "y")
    check_paired(xt, yt)
    n = xt.shape[0]
    k = cfg.batch_size
    if k % dist.world_size():
        raise ValueError(
            f"batch_size={k} must be divisible by the number of ranks ({dist.world_size()})"
        )
    n_train, n_test = check_sample_size(n, k, cfg.test_fraction)
    notes: list[str] = []
    if xt.shape == yt.shape and torch.equal(xt, yt):
        notes.append(
            "x and y are identical: for continuous data I(X;Y) is infinite, so the estimate "
            "only says how far this bound and batch size can go"
        )

    device = resolve_device(cfg.device)
    rng = np.random.default_rng(cfg.seed)
    perm = torch.from_numpy(rng.permutation(n))
    train_idx, test_idx = perm[:n_train], perm[n_train:]
    x_tr, x_te, y_tr, y_te = xt[train_idx], xt[test_idx], yt[train_idx], yt[test_idx]
    if cfg.standardize:
        x_tr, x_te = _standardize(x_tr, x_te)
        y_tr, y_te = _standardize(y_tr, y_te)
    x_tr, x_te, y_tr, y_te = (t.to(device) for t in (x_tr, x_te, y_tr, y_te))

    torch.manual_seed(cfg.seed)
    dx, dy = xt.shape[1], yt.shape[1]
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
    ).to(device)
    optimizer = torch.optim.Adam(objective.parameters(), lr=cfg.lr)
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)

    history: list[dict[str, float]] = []
    best: tuple[float, int, dict[str, Tensor]] | None = None
    bad_evals = 0
    running: list[float] = []
    start = time.perf_counter()
    reporter = _Progress(progress if dist.rank() == 0 else False, cfg.steps, cfg.bound)
    step = 0
    try:
        for step in range(1, cfg.steps + 1):
            idx = torch.randint(0, n_train, (k,), generator=gen).to(device)
            objective.train()
            loss, value = objective.loss(x_tr[idx], y_tr[idx])
            if not torch.isfinite(loss):
                raise _diverged(cfg.bound, step, "the training loss")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            dist.average_gradients(objective.parameters())
            if cfg.grad_clip is not None:
                # per module: the critic's heavy-tailed exp-gradients must not starve the u-net
                for module in objective.children():
                    params = [p for p in module.parameters() if p.grad is not None]
                    if params:
                        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            running.append(float(value))
            test_value: float | None = None
            if step % cfg.eval_every == 0 or step == cfg.steps:
                objective.eval()
                test_value = float(_batch_values(objective, x_te, y_te, k).mean())
                train_value = float(np.mean(running)) if running else float("nan")
                running = []
                history.append({"step": step, "train": train_value, "test": test_value})
                if math.isfinite(test_value) and (best is None or test_value > best[0]):
                    state = copy.deepcopy(objective.state_dict())
                    best, bad_evals = (test_value, step, state), 0
                else:
                    bad_evals += 1
                if bad_evals >= cfg.patience:
                    reporter.update(step, test_value)
                    break
            reporter.update(step, test_value)
    finally:
        reporter.close()
    if best is None:
        raise _diverged(cfg.bound, step, "the held-out estimate")
    objective.load_state_dict(best[2])
    objective.eval()
    values = _batch_values(objective, x_te, y_te, k)
    if not np.all(np.isfinite(values)):
        raise _diverged(cfg.bound, best[1], "the held-out estimate")
    m = min(n_train, 20 * k)
    train_values = _batch_values(objective, x_tr[:m], y_tr[:m], k)
    mi = float(values.mean())
    _check_plausible(cfg.bound, mi, history)
    if len(values) > 1:
        stderr = float(values.std(ddof=1) / math.sqrt(len(values)))
        ci = bootstrap_ci(values, cfg.n_bootstrap, cfg.confidence, np.random.default_rng(cfg.seed))
        if ci[0] < 0:
            notes.append(
                f"the {100 * cfg.confidence:.0f}% CI [{ci[0]:.3f}, {ci[1]:.3f}] reaches below "
                "0 nats: MI is never negative, so at this confidence the data do not show "
                "dependence (or the critic is too weak to find it)"
            )
    else:
        stderr, ci = math.nan, (math.nan, math.nan)
        notes.append(
            f"only 1 held-out batch of {k} pairs: no standard error or confidence interval; "
            "give more samples or a smaller batch_size"
        )
    if cfg.bound == "infonce" and mi > math.log(k) - 0.1:
        notes.append(
            f"InfoNCE estimate {mi:.3f} is within 0.1 nats of its cap log K = {math.log(k):.3f}; "
            "the true MI may be higher: raise batch_size or use 'flo'"
        )
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return MIEstimate(
        mi=mi,
        stderr=stderr,
        ci=ci,
        train_mi=float(train_values.mean()),
        bound=cfg.bound,
        batch_size=k,
        steps=step,
        best_step=best[1],
        history=history,
        seconds=time.perf_counter() - start,
        n_train=n_train,
        n_test=n_test,
        config=cfg,
        seed=cfg.seed,
        versions=versions(),
        warnings=notes,
    )


class _Progress:
    """Rich progress bar, a user callback, or nothing."""

    def __init__(
        self, progress: bool | Callable[[int, float | None], None], total: int, bound: str
    ) -> None:
        self.callback = progress if callable(progress) else None
        self.bar: Any = None
        if progress is True:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("held-out {task.fields[mi]}"),
                TimeRemainingColumn(),
                transient=True,
            )
            self.task = self.bar.add_task(f"estimate_mi[{bound}]", total=total, mi="-")
            self.bar.start()

    def update(self, step: int, test_value: float | None) -> None:
        if self.callback is not None:
            self.callback(step, test_value)
        if self.bar is not None:
            fields = {"mi": f"{test_value:.3f}"} if test_value is not None else {}
            self.bar.update(self.task, completed=step, **fields)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
