"""The one training loop of the library: :func:`fit` and its small callbacks.

``fit(model, batches, loss_fn, config)`` runs ``config.epochs`` epochs of
``loss = loss_fn(model, batch)`` over ``batches(epoch)``, with AdamW / SGD / LARS, a per-step
learning rate ``lr · warmup · cosine`` (linear warm-up over ``warmup_epochs``, then
``½(1 + cos(π t))`` over the remaining fraction ``t`` of training; ``constant`` drops the cosine),
optional gradient clipping, mixed precision on CUDA, a progress bar (loss, images/s) and a
checkpoint every ``checkpoint_every`` epochs written atomically to ``out_dir/checkpoint.pt``.
``loss_fn`` may also return ``(loss, metrics)``: the metrics (floats or scalar tensors) are
averaged over the epoch's steps into its history record. Every trainer of the library runs on
it: SSL, :func:`infomax.estimate_mi`, identifiability, RPM and distribution matching.

Step-based training: with ``total_steps`` the learning-rate schedule follows the fraction of
``total_steps`` done and training ends after that many optimiser steps; an epoch is then one
evaluation period (``estimate_mi``: ``eval_every`` steps).

Callbacks (:class:`Callback`) run in the order given, then the built-in ones:

- :class:`Evaluate`: metrics of the model added to an epoch's record (every ``n`` epochs; on
  rank 0, or on every rank for an evaluation with collectives);
- :class:`EarlyStopping`: stop after ``patience`` evaluations of a metric without improvement;
- :class:`BestState`: keep the weights of the best evaluation of a metric, restore them at the
  end; :class:`EMA`: an exponential moving average of the weights, restored at the end;
- :class:`GradClip`: gradient-norm clipping over all parameters or per child module
  (``config.grad_clip`` adds the first);
- :class:`Progress`: the progress bar (:class:`infomax.progress.ProgressBar`) and / or a
  per-step callback ``fn(step, metric_or_None)`` (``config.progress`` adds a bar);
- :class:`History` (always): one record per epoch; :class:`Checkpoint` (with ``out_dir``).

Resume is exact: the checkpoint holds model, optimizer (and AMP scaler) state, the torch / numpy /
Python RNG states, the epoch, the history and the state of every callback that keeps one, so
``fit(..., resume=True)`` after an interruption gives bitwise the same weights on CPU as an
uninterrupted run, provided ``batches(epoch)`` is a deterministic function of ``(seed, epoch)``
(e.g. :class:`infomax.data.Batches`) and any randomness inside ``loss_fn`` (augmentations) draws
from torch's global generator. A non-finite loss raises :class:`DivergedError` before the step is
applied; the last good checkpoint is left untouched.

Distributed (``torchrun``, after :func:`infomax.dist.init_from_env`): the model is wrapped in
``DistributedDataParallel`` (parameter gradients averaged over ranks), batch norm is made
global with ``sync_batchnorm=True``, rank ``r`` seeds its random stream with ``seed + r`` (its
augmentations differ from the other ranks'), the non-finite check is agreed by all ranks (they
stop together), and only rank 0 shows progress, runs rank-0 evaluations and writes the
checkpoint, which holds every rank's generator state so that resume stays exact. With
``grad_sync="average"`` the model is not wrapped: every rank computes the same global objective
from row blocks gathered with gradient, and :func:`infomax.dist.average_gradients` averages the
gradients (``estimate_mi``).

>>> import torch
>>> from torch import nn
>>> net = nn.Linear(2, 1)
>>> data = [(torch.randn(8, 2), torch.randn(8, 1))]
>>> cfg = TrainConfig(epochs=2, lr=0.1, progress=False)
>>> res = fit(net, lambda e: data, lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(), cfg)
>>> res.epochs_done
2
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from . import dist as _dist
from .progress import ProgressBar
from .reports import atomic_torch_save

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
OPTIMIZERS = ("adamw", "sgd", "lars")
SCHEDULES = ("cosine", "constant")
GRAD_SYNC = ("ddp", "average")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of :func:`fit` (validated; serialised into checkpoints)."""

    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 1e-6
    optimizer: str = "adamw"
    momentum: float = 0.9
    warmup_epochs: float = 0.0
    schedule: str = "cosine"
    grad_clip: float | None = None
    amp: bool = True
    device: str = "auto"
    seed: int = 0
    progress: bool = True
    checkpoint_every: int = 1
    sync_batchnorm: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive finite number, got {self.lr}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}"
            )
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs], got {self.warmup_epochs}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        check_device_name(self.device)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if (
            isinstance(self.checkpoint_every, bool)
            or not isinstance(self.checkpoint_every, int)
            or self.checkpoint_every < 1
        ):
            raise ValueError(f"checkpoint_every must be >= 1, got {self.checkpoint_every!r}")


@dataclass
class TrainResult:
    """``history``: one dict per epoch (``epoch``, ``global_step``, ``loss``, ``lr``, ``steps``,
    ``seconds``, ``images_per_s``, ``total_seconds``, the epoch means of ``loss_fn``'s metrics
    and whatever the evaluations added); ``checkpoint``: last written file; ``steps``: optimiser
    steps done in all."""

    history: list[dict]
    seconds: float
    epochs_done: int
    checkpoint: Path | None
    steps: int = 0


class DivergedError(ValueError):
    """The loss became NaN/Inf; the last good checkpoint (if any) is kept. ``epoch`` and
    ``step`` (1-based, within the epoch) and ``global_step`` (1-based) locate the step."""

    def __init__(self, message: str, epoch: int = 0, step: int = 0, global_step: int = 0) -> None:
        super().__init__(message)
        self.epoch, self.step, self.global_step = epoch, step, global_step


# ----------------------------------------------------------------------------------------------
# Optimisers and schedule


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratio ``η‖w‖ / (‖g‖ + wd‖w‖)`` (You et al. 2017).

    Biases and normalisation parameters (``ndim <= 1``) get neither weight decay nor adaptation.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
    ) -> None:
        super().__init__(
            params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta}
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One LARS update of every parameter with a gradient."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if p.ndim > 1:
                    g = g.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.norm(p), torch.norm(g)
                    trust = torch.where(
                        (w_norm > 0) & (g_norm > 0),
                        group["eta"] * w_norm / g_norm,
                        torch.ones_like(w_norm),
                    )
                    g = g.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(g)
                p.add_(buf, alpha=-group["lr"])
        return loss


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, SGD (Nesterov-free, momentum) or :class:`LARS` over trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return LARS(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def lr_factor(progress: float, config: TrainConfig) -> float:
    """Multiplier of ``config.lr`` at ``progress`` epochs (fractional): linear warm-up from 0
    over ``warmup_epochs``, then cosine ``½(1 + cos(π t))`` (or constant) over the rest."""
    if config.warmup_epochs > 0 and progress < config.warmup_epochs:
        return (progress + 1e-8) / config.warmup_epochs
    if config.schedule == "constant":
        return 1.0
    span = max(config.epochs - config.warmup_epochs, 1e-8)
    t = min(max((progress - config.warmup_epochs) / span, 0.0), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * t))


def check_device_name(device: str | torch.device) -> None:
    """``ValueError`` unless ``device`` is ``"auto"`` or a name torch parses (``cpu``,
    ``cuda:1`` ...). Does not ask whether the device exists: see :func:`resolve_device`."""
    if str(device) == "auto":
        return
    try:
        torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {device!r}: {err}") from None


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; other names are validated (``ValueError``).

    Under ``torchrun`` a CUDA device without an index becomes ``cuda:LOCAL_RANK``."""
    if str(device) == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        check_device_name(device)
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is None and _dist.is_distributed():
        dev = torch.device("cuda", _dist.local_rank())
    return dev


# ----------------------------------------------------------------------------------------------
# RNG state as plain types / tensors (loadable with weights_only=True)


def rng_state() -> dict[str, Any]:
    """Torch (CPU and CUDA), numpy and Python RNG states as tensors and plain types."""
    np_state: Any = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, npy["pos"], npy["has_gauss"], npy["gauss"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# ----------------------------------------------------------------------------------------------
# Checkpoints


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`fit` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint at {str(path)!r}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"cannot read checkpoint {str(path)!r}: {err}") from None


#: Entries every checkpoint written by :func:`fit` holds.
CHECKPOINT_KEYS = ("model", "optimizer", "epoch", "global_step", "history", "rng")


def check_checkpoint(state: Any, path: str | Path) -> None:
    """``ValueError`` unless ``state`` (from :func:`load_checkpoint`) looks like a :func:`fit`
    checkpoint (a dict with :data:`CHECKPOINT_KEYS`)."""
    missing = [k for k in CHECKPOINT_KEYS if k not in state] if isinstance(state, dict) else ["all"]
    if missing:
        raise ValueError(
            f"{str(path)!r} is not a training checkpoint written by infomax "
            f"(missing entries: {', '.join(missing)})"
        )


def state_dict_mismatch(model: nn.Module, state_dict: Any, limit: int = 3) -> str:
    """One line describing how ``state_dict`` differs from ``model.state_dict()``:
    ``"N missing, M unexpected, K shape mismatches (missing: a, b; ...)"``; ``""`` if the keys
    and shapes agree."""
    if not isinstance(state_dict, dict):
        return f"the saved model state is a {type(state_dict).__name__}, not a state dict"
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k} saved {list(state_dict[k].shape)} vs model {list(v.shape)}"
        for k, v in own.items()
        if k in state_dict
        and isinstance(state_dict[k], Tensor)
        and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or shapes):
        return ""
    parts = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if names:
            more = f", ... (+{len(names) - limit})" if len(names) > limit else ""
            parts.append(f"{label}: {', '.join(names[:limit])}{more}")
    return (
        f"{len(missing)} missing, {len(unexpected)} unexpected, {len(shapes)} shape "
        f"mismatches ({'; '.join(parts)})"
    )


def _first_line(err: BaseException) -> str:
    """The first line of ``err``'s message (torch's state-dict errors span many lines)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_model_state(
    model: nn.Module,
    state_dict: Any,
    what: str = "the checkpoint",
    target: str = "the model",
) -> None:
    """``model.load_state_dict(state_dict)``, turning torch's ``RuntimeError`` (missing /
    unexpected keys, size mismatches) into a one-line ``ValueError``:
    ``"<what> does not match <target>: N missing, M unexpected, K shape mismatches (...)"``."""
    detail = state_dict_mismatch(model, state_dict)
    if detail:
        raise ValueError(f"{what} does not match {target}: {detail}")
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, TypeError, KeyError) as err:
        raise ValueError(f"{what} does not match {target}: {_first_line(err)}") from None


def _batch_size(batch: Any) -> int:
    """Number of samples in ``batch`` (a tensor or the first tensor of a tuple / list / dict)."""
    if isinstance(batch, Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    if isinstance(batch, (tuple, list)) and batch:
        return _batch_size(batch[0])
    if isinstance(batch, dict) and batch:
        return _batch_size(next(iter(batch.values())))
    return 1


# ----------------------------------------------------------------------------------------------
# What the loop shares with its callbacks


@dataclass
class TrainState:
    """The running state of :func:`fit`, handed to every callback hook.

    ``model`` is the model being trained (never its DDP wrapper); ``epoch``: epochs completed;
    ``global_step``: optimiser steps completed; ``epoch_steps``: steps of the running epoch when
    its batches have a ``len``; ``loss`` / ``batch_size``: the last step's loss and global batch
    size; ``stop``: set by a callback to end training after the running epoch.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    config: TrainConfig
    device: torch.device
    rank: int = 0
    world: int = 1
    total_steps: int | None = None
    epoch: int = 0
    global_step: int = 0
    epoch_steps: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    stop: bool = False
    loss: float = math.nan
    batch_size: int = 0
    last_checkpoint: Path | None = None
    checkpoint_epoch: int = 0

    @property
    def distributed(self) -> bool:
        """More than one rank trains together."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 (shows progress, writes files)."""
        return self.rank == 0

    @property
    def use_amp(self) -> bool:
        """Mixed precision: asked for and on CUDA."""
        return bool(self.config.amp and self.device.type == "cuda")

    @property
    def finished(self) -> bool:
        """``total_steps`` steps are done."""
        return self.total_steps is not None and self.global_step >= self.total_steps


class Callback:
    """Hooks of :func:`fit` (each optional), called in list order with the :class:`TrainState`.

    ``state_key``: the name under which :meth:`state_dict` is stored in every checkpoint and
    handed back to :meth:`load_state_dict` on resume (``None``: nothing is kept).
    """

    state_key: str | None = None

    def on_fit_start(self, state: TrainState) -> None:
        """Before the first epoch (after a resume has restored the state)."""

    def on_epoch_start(self, state: TrainState) -> None:
        """The epoch's batches exist (``state.epoch_steps``); no step has run."""

    def on_after_backward(self, state: TrainState) -> None:
        """Gradients are ready (unscaled, synchronised over ranks); the optimiser has not
        stepped."""

    def on_step_end(self, state: TrainState) -> None:
        """After an optimiser step (``state.global_step`` counts it)."""

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        """``record``: the epoch's history entry (``state.epoch`` counts the epoch); add metrics
        to it or set ``state.stop``."""

    def on_fit_end(self, state: TrainState) -> None:
        """After the last epoch (not after an error)."""

    def close(self, state: TrainState) -> None:
        """Always last, also after an error."""

    def state_dict(self) -> dict[str, Any]:
        """Plain types and tensors to checkpoint (used when ``state_key`` is set)."""
        return {}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def _emit(callbacks: Sequence[Callback], hook: str, state: TrainState, *args: Any) -> None:
    for cb in callbacks:
        getattr(cb, hook)(state, *args)


class Evaluate(Callback):
    """Add ``fn(state)``'s metrics to the record of every ``every``-th epoch (``0``: never), with
    the model in eval mode (the next epoch puts it back in train mode). Runs on rank 0 only,
    unless ``all_ranks`` (an evaluation with collectives, which every rank must run)."""

    def __init__(
        self,
        fn: Callable[[TrainState], Mapping[str, Any]],
        every: int = 1,
        *,
        all_ranks: bool = False,
    ) -> None:
        self.fn, self.every, self.all_ranks = fn, every, all_ranks

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        if self.every <= 0 or state.epoch % self.every or not (self.all_ranks or state.is_main):
            return
        state.model.eval()
        record.update(self.fn(state))


class AfterStep(Callback):
    """``fn(model, global_step)`` after every optimiser step (momentum encoders, schedules)."""

    def __init__(self, fn: Callable[[nn.Module, int], None]) -> None:
        self.fn = fn

    def on_step_end(self, state: TrainState) -> None:
        self.fn(state.model, state.global_step)


class GradClip(Callback):
    """Clip the gradient norm to ``max_norm``: over all parameters, or with ``per_module`` over
    each child module of the model on its own (one module's heavy-tailed gradients, e.g. a
    critic's exponential terms, then cannot shrink another module's step)."""

    def __init__(self, max_norm: float, *, per_module: bool = False) -> None:
        if not max_norm > 0:
            raise ValueError(f"max_norm must be > 0, got {max_norm}")
        self.max_norm, self.per_module = max_norm, per_module

    def on_after_backward(self, state: TrainState) -> None:
        groups = list(state.model.children()) if self.per_module else [state.model]
        for module in groups:
            params = [p for p in module.parameters() if p.grad is not None]
            if params:
                nn.utils.clip_grad_norm_(params, self.max_norm)


class _Monitor:
    """The best value so far of a metric: ``improved(v)`` is true (and records ``v``) when ``v``
    is finite and better than every earlier value (strictly)."""

    def __init__(self, mode: str) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.mode = mode
        self.best: float | None = None

    def improved(self, value: float) -> bool:
        value = float(value)
        if not math.isfinite(value):
            return False
        if self.best is not None and not (
            value > self.best if self.mode == "max" else value < self.best
        ):
            return False
        self.best = value
        return True


class EarlyStopping(Callback):
    """Stop training after ``patience`` evaluations of ``metric`` (the records that hold it) in a
    row without improvement (``mode``: ``max`` or ``min``; a non-finite value never improves)."""

    state_key = "early_stopping"

    def __init__(self, metric: str, patience: int, mode: str = "max") -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.metric, self.patience = metric, patience
        self.monitor, self.bad = _Monitor(mode), 0

    def on_fit_start(self, state: TrainState) -> None:
        if self.bad >= self.patience:  # resumed from the checkpoint of a stopped run
            state.stop = True

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        if self.metric not in record:
            return
        self.bad = 0 if self.monitor.improved(record[self.metric]) else self.bad + 1
        if self.bad >= self.patience:
            state.stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.monitor.best, "bad": self.bad}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.monitor.best, self.bad = saved["best"], int(saved["bad"])


class BestState(Callback):
    """Keep a copy of the model's state at the best evaluation of ``metric`` (as
    :class:`EarlyStopping` judges it) and load it into the model when training ends;
    ``source(state)`` gives the state dict to keep instead (e.g. the EMA weights evaluated).

    ``value``, ``step`` (global step) and ``record`` describe that evaluation; ``state`` is
    ``None`` while no evaluation was finite."""

    state_key = "best_state"

    def __init__(
        self,
        metric: str,
        mode: str = "max",
        *,
        source: Callable[[TrainState], dict[str, Tensor]] | None = None,
    ) -> None:
        self.metric, self.monitor = metric, _Monitor(mode)
        self.source = source  # the state to keep (default: the model's), e.g. EMA weights
        self.state: dict[str, Tensor] | None = None
        self.step = 0
        self.record: dict[str, Any] = {}

    @property
    def value(self) -> float | None:
        """The best value of the metric (``None``: none was finite)."""
        return self.monitor.best

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        if self.metric in record and self.monitor.improved(record[self.metric]):
            source = state.model.state_dict() if self.source is None else self.source(state)
            self.state = copy.deepcopy(source)
            self.step, self.record = state.global_step, dict(record)

    def on_fit_end(self, state: TrainState) -> None:
        if self.state is not None:
            state.model.load_state_dict(self.state)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.monitor.best, "step": self.step, "state": self.state}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.monitor.best, self.step, self.state = saved["best"], saved["step"], saved["state"]


class EMA(Callback):
    """Exponential moving average of the floating-point parameters, updated after every step,
    ``w̄ ← decay · w̄ + (1 − decay) · w`` (starting from the weights training starts with);
    buffers stay as trained. With ``restore`` the model takes ``w̄`` when training ends;
    :meth:`copy_to` puts it into any model of the same architecture."""

    state_key = "ema"

    def __init__(self, decay: float = 0.999, *, restore: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay, self.restore = decay, restore
        self.shadow: dict[str, Tensor] = {}

    def on_fit_start(self, state: TrainState) -> None:
        if not self.shadow:
            self.shadow = {
                name: p.detach().clone()
                for name, p in state.model.named_parameters()
                if p.dtype.is_floating_point
            }

    @torch.no_grad()
    def on_step_end(self, state: TrainState) -> None:
        for name, p in state.model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(p.detach(), 1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model``'s parameters."""
        for name, p in model.named_parameters():
            if name in self.shadow:
                p.copy_(self.shadow[name])

    def on_fit_end(self, state: TrainState) -> None:
        if self.restore:
            self.copy_to(state.model)

    def state_dict(self) -> dict[str, Any]:
        return {"shadow": self.shadow}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.shadow = dict(saved["shadow"])


class History(Callback):
    """Appends each epoch's record to ``state.history`` with ``total_seconds`` (training time
    over every run of a resumed training) and logs it; always the first built-in callback."""

    def on_fit_start(self, state: TrainState) -> None:
        self.prior = float(state.history[-1]["total_seconds"]) if state.history else 0.0
        self.t0 = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Training seconds so far, earlier runs of a resumed training included."""
        return self.prior + time.perf_counter() - self.t0

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        record["total_seconds"] = self.seconds
        state.history.append(record)
        log.info("epoch %d: %s", state.epoch, record)


class Checkpoint(Callback):
    """``out_dir/checkpoint.pt`` after every ``every``-th epoch, the last one and an early stop,
    written atomically by rank 0: model, optimizer (and AMP scaler), epoch, global step, history,
    the RNG states (every rank's torch stream under ``torchrun``), ``train_config``,
    ``extra_state`` (never replacing those entries) and the states of ``callbacks`` that keep
    one. :meth:`restore` resumes from it."""

    def __init__(
        self,
        out_dir: str | Path,
        every: int = 1,
        extra_state: dict[str, Any] | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.path = Path(out_dir) / CHECKPOINT_NAME
        self.every, self.extra_state = every, extra_state
        self.callbacks = [cb for cb in callbacks if cb.state_key is not None]

    def restore(self, state: TrainState, saved: dict[str, Any] | None = None) -> None:
        """Load ``saved`` (default: the file, read with :func:`load_checkpoint`) into
        ``state``: ``ValueError`` (one line) for a checkpoint that does not fit."""
        if saved is None:
            saved = load_checkpoint(self.path, map_location=state.device)
        check_checkpoint(saved, self.path)
        load_model_state(state.model, saved["model"], f"checkpoint {str(self.path)!r}")
        try:
            state.optimizer.load_state_dict(saved["optimizer"])
        except (ValueError, RuntimeError, KeyError, TypeError) as err:
            raise ValueError(
                f"the optimizer state in {str(self.path)!r} does not match the "
                f"{state.config.optimizer!r} optimizer of this model: {_first_line(err)}"
            ) from None
        if "scaler" in saved and state.use_amp:
            state.scaler.load_state_dict(saved["scaler"])
        state.epoch, state.global_step = int(saved["epoch"]), int(saved["global_step"])
        state.history = list(saved["history"])
        kept = saved.get("callbacks", {})
        for cb in self.callbacks:
            if cb.state_key in kept:
                cb.load_state_dict(kept[cb.state_key])
        self._restore_rng(state, saved)
        state.last_checkpoint, state.checkpoint_epoch = self.path, state.epoch

    @staticmethod
    def _restore_rng(state: TrainState, saved: dict[str, Any]) -> None:
        set_rng_state(saved["rng"])
        ranks_rng = saved.get("rng_ranks")
        if ranks_rng is not None and len(ranks_rng) == state.world:
            torch.set_rng_state(ranks_rng[state.rank])
        elif state.world > 1 or (ranks_rng is not None and len(ranks_rng) != 1):
            log.warning(
                "checkpoint was written by %d rank(s), resuming on %d: the random streams "
                "restart from seed + rank + 1000·epoch, so the result will differ from an "
                "uninterrupted run",
                len(ranks_rng) if ranks_rng is not None else 1,
                state.world,
            )
            seed_everything(state.config.seed + state.rank + 1000 * state.epoch)

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        done = state.epoch
        due = done % self.every == 0 or done == state.config.epochs
        if not (due or state.stop or state.finished):
            return
        payload = self._payload(state)
        if state.is_main:
            atomic_torch_save(payload, self.path)
        if state.distributed:
            _dist.barrier()  # nobody resumes from a half-written epoch
        state.last_checkpoint, state.checkpoint_epoch = self.path, done

    def _payload(self, state: TrainState) -> dict[str, Any]:
        ranks_rng = _dist.gather_rng_states() if state.distributed else None
        payload: dict[str, Any] = {
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "epoch": state.epoch,
            "global_step": state.global_step,
            "history": state.history,
            "rng": rng_state(),
            "train_config": asdict(state.config),
        }
        if self.callbacks:
            payload["callbacks"] = {cb.state_key: cb.state_dict() for cb in self.callbacks}
        if self.extra_state:
            payload = {**self.extra_state, **payload}  # never replaces the training state
        if state.use_amp:
            payload["scaler"] = state.scaler.state_dict()
        if ranks_rng is not None:
            payload["rng_ranks"] = ranks_rng
            payload["world_size"] = state.world
        return payload


class Progress(Callback):
    """The progress bar on rank 0 (``enabled``) over the run's steps (``state.total_steps``, or
    epochs × the first epoch's length): epoch, mean loss, images/s and the latest values of the
    metrics in ``show`` (``{name: label}``).

    ``fn(step, value)`` (rank 0) is called once per optimiser step, with ``value`` the epoch
    record's ``metric`` for the last step of an epoch whose record holds it, ``None`` otherwise.
    """

    def __init__(
        self,
        description: str = "train",
        *,
        enabled: bool = True,
        fn: Callable[[int, float | None], None] | None = None,
        metric: str | None = None,
        show: Mapping[str, str] | None = None,
        transient: bool = False,
    ) -> None:
        self.description, self.enabled, self.fn = description, enabled, fn
        self.metric, self.show, self.transient = metric, dict(show or {}), transient
        self.bar = ProgressBar(description, enabled=False)
        self._pending: int | None = None
        self._shown = ""

    def on_fit_start(self, state: TrainState) -> None:
        if not state.is_main:
            self.fn = None
        self.bar = ProgressBar(
            self.description,
            state.total_steps,
            enabled=self.enabled and state.is_main,
            transient=self.transient,
        )
        self.bar.update(state.global_step)

    def on_epoch_start(self, state: TrainState) -> None:
        self.t0, self.images, self.loss_sum, self.seen = time.perf_counter(), 0, 0.0, 0
        if state.total_steps is None and state.epoch_steps:
            self.bar.update(total=state.config.epochs * state.epoch_steps)

    def on_step_end(self, state: TrainState) -> None:
        self._flush(None)
        self._pending = state.global_step
        self.images += state.batch_size
        self.loss_sum, self.seen = self.loss_sum + state.loss, self.seen + 1
        ips = self.images / max(time.perf_counter() - self.t0, 1e-9)
        info = (
            f"epoch {state.epoch + 1}/{state.config.epochs}  loss {self.loss_sum / self.seen:.4f}"
            f"  {ips:.0f} img/s{self._shown}"
        )
        self.bar.update(state.global_step, info=info)

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        value = record.get(self.metric) if self.metric is not None else None
        self._flush(None if value is None else float(value))
        shown = [f"{label} {record[k]:.4g}" for k, label in self.show.items() if k in record]
        if shown:
            self._shown = "  " + "  ".join(shown)

    def _flush(self, value: float | None) -> None:
        if self._pending is not None and self.fn is not None:
            self.fn(self._pending, value)
        self._pending = None

    def close(self, state: TrainState) -> None:
        self._flush(None)
        self.bar.close()


# ----------------------------------------------------------------------------------------------
# The loop


def fit(
    model: nn.Module,
    batches: Callable[[int], Iterable[Any]],
    loss_fn: Callable[[nn.Module, Any], Tensor | tuple[Tensor, Mapping[str, Any]]],
    config: TrainConfig,
    *,
    out_dir: Path | None = None,
    resume: bool = False,
    after_step: Callable[[nn.Module, int], None] | None = None,
    on_epoch_end: Callable[[int, nn.Module], dict[str, float]] | None = None,
    resume_state: dict[str, Any] | None = None,
    extra_state: dict[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
    total_steps: int | None = None,
    grad_sync: str = "ddp",
) -> TrainResult:
    """Train ``model`` in place for ``config.epochs`` epochs; see the module docstring.

    ``batches(epoch)`` yields the batches of epoch ``epoch`` (0-based; given a ``len`` the
    learning rate is updated per step, otherwise per epoch); ``loss_fn(model, batch)`` returns a
    scalar loss, or ``(loss, metrics)`` (moved to the device by the caller: ``model`` is already
    on ``resolve_device(config.device)``); ``after_step(model, global_step)`` runs after each
    optimiser step (:class:`AfterStep`); ``on_epoch_end(epoch, model)`` returns metrics added to
    that epoch's history record (rank 0, :class:`Evaluate`). ``callbacks`` run in order before
    the built-in :class:`History` and :class:`Checkpoint`. With ``resume=True`` training
    continues from ``out_dir/checkpoint.pt``, or from ``resume_state`` when given (that
    checkpoint already read with :func:`load_checkpoint`, e.g. to validate it before anything is
    written). A checkpoint whose model or optimizer state does not fit ``model`` / ``config``
    raises ``ValueError`` (one line: missing / unexpected keys, shape mismatches).
    ``extra_state``: plain-typed entries stored in every checkpoint besides the training state
    (e.g. the caller's config). ``total_steps``: step-based training (module docstring);
    ``grad_sync``: ``ddp`` or ``average`` (distributed gradients, module docstring).
    """
    state = _start(model, config, total_steps, grad_sync)
    cbs = _user_callbacks(config, after_step, on_epoch_end, callbacks)
    history = History()
    ckpt = (
        Checkpoint(out_dir, config.checkpoint_every, extra_state, cbs)
        if out_dir is not None
        else None
    )
    if resume:
        if ckpt is None:
            raise ValueError("resume=True needs out_dir holding a checkpoint")
        ckpt.restore(state, resume_state)
    else:
        seed_everything(config.seed + state.rank)
    train_model: nn.Module = model
    if state.distributed and grad_sync == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [state.device.index] if state.device.type == "cuda" else None
        train_model = DistributedDataParallel(model, device_ids=ids)
    every = [*cbs, history, *([ckpt] if ckpt else [])]
    if config.progress and not any(isinstance(cb, Progress) for cb in cbs):
        every.append(Progress())
    try:
        _emit(every, "on_fit_start", state)
        for epoch in range(state.epoch, config.epochs):
            if state.finished or state.stop:
                break
            model.train()
            _run_epoch(state, train_model, batches(epoch), loss_fn, every, grad_sync)
            if state.stop or state.finished:
                break
        _emit(every, "on_fit_end", state)
    finally:
        _emit(every, "close", state)
    return TrainResult(
        history=state.history,
        seconds=history.seconds,
        epochs_done=len(state.history),
        checkpoint=state.last_checkpoint,
        steps=state.global_step,
    )


def _start(
    model: nn.Module, config: TrainConfig, total_steps: int | None, grad_sync: str
) -> TrainState:
    """Device, batch-norm conversion, optimizer and scaler of a run (before any seeding)."""
    if grad_sync not in GRAD_SYNC:
        raise ValueError(f"unknown grad_sync {grad_sync!r}; valid: {', '.join(GRAD_SYNC)}")
    if total_steps is not None and total_steps < 1:
        raise ValueError(f"total_steps must be >= 1 or None, got {total_steps}")
    device = resolve_device(config.device)
    rank, world = _dist.rank(), _dist.world_size()
    distributed = _dist.is_distributed() and world > 1
    model.to(device)
    if distributed and config.sync_batchnorm:
        _dist.convert_sync_batchnorm(model, device)
    optimizer = build_optimizer(model, config)
    scaler = torch.amp.GradScaler("cuda", enabled=bool(config.amp and device.type == "cuda"))
    return TrainState(
        model, optimizer, scaler, config, device, rank, world if distributed else 1, total_steps
    )


def _user_callbacks(
    config: TrainConfig,
    after_step: Callable[[nn.Module, int], None] | None,
    on_epoch_end: Callable[[int, nn.Module], dict[str, float]] | None,
    callbacks: Sequence[Callback],
) -> list[Callback]:
    """``config.grad_clip``, ``after_step`` and ``on_epoch_end`` as callbacks, then the
    caller's."""
    out: list[Callback] = []
    if config.grad_clip is not None:
        out.append(GradClip(config.grad_clip))
    if after_step is not None:
        out.append(AfterStep(after_step))
    if on_epoch_end is not None:
        fn = on_epoch_end
        out.append(Evaluate(lambda s: fn(s.epoch - 1, s.model)))
    return [*out, *callbacks]


def _lr(state: TrainState, epoch: int, i: int, n_steps: int | None) -> float:
    """Learning rate of step ``i`` of ``epoch`` (``n_steps`` steps, when known)."""
    config = state.config
    if state.total_steps is not None:
        progress = config.epochs * state.global_step / state.total_steps
    elif n_steps:
        progress = epoch + i / n_steps
    else:
        progress = float(epoch)
    return config.lr * lr_factor(progress, config)


def _run_epoch(
    state: TrainState,
    train_model: nn.Module,
    epoch_batches: Iterable[Any],
    loss_fn: Callable[[nn.Module, Any], Any],
    callbacks: Sequence[Callback],
    grad_sync: str,
) -> None:
    """One epoch of steps, then its history record through the callbacks' ``on_epoch_end``."""
    epoch = state.epoch
    n_steps = len(epoch_batches) if hasattr(epoch_batches, "__len__") else None  # type: ignore[arg-type]
    state.epoch_steps = n_steps
    _emit(callbacks, "on_epoch_start", state)
    t0, n_images, n_seen = time.perf_counter(), 0, 0
    sums: dict[str, float] = {"loss": 0.0}
    lr = _lr(state, epoch, 0, None)
    for i, batch in enumerate(epoch_batches):
        lr = _lr(state, epoch, i, n_steps)
        for group in state.optimizer.param_groups:
            group["lr"] = lr
        metrics = _train_step(state, train_model, loss_fn, batch, i, callbacks, grad_sync)
        for name, value in metrics.items():
            sums[name] = sums.get(name, 0.0) + value
        n_images += state.batch_size
        n_seen += 1
        _emit(callbacks, "on_step_end", state)
        if state.finished:
            break
    seconds = time.perf_counter() - t0
    means = {k: v / max(n_seen, 1) for k, v in sums.items()}
    if state.distributed:
        means = {k: _dist.all_reduce_mean(v, state.device) for k, v in means.items()}
    record: dict[str, Any] = {
        "epoch": epoch + 1,
        "global_step": state.global_step,
        "loss": means.pop("loss"),
        "lr": lr,
        "steps": n_seen,
        "seconds": seconds,
        "images_per_s": n_images / max(seconds, 1e-9),
        **means,
    }
    state.epoch = epoch + 1
    _emit(callbacks, "on_epoch_end", state, record)


def _train_step(
    state: TrainState,
    train_model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], Any],
    batch: Any,
    i: int,
    callbacks: Sequence[Callback],
    grad_sync: str,
) -> dict[str, float]:
    """Forward, finiteness check, backward, gradient hooks, optimiser step; returns the step's
    loss and metrics as floats."""
    with torch.autocast(state.device.type, dtype=torch.float16, enabled=state.use_amp):
        out = loss_fn(train_model, batch)
    loss, metrics = out if isinstance(out, tuple) else (out, {})
    _check_finite(state, loss, i)
    optimizer, scaler = state.optimizer, state.scaler
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_sync == "average":
        _dist.average_gradients(state.model.parameters())
    scaler.unscale_(optimizer)  # no-op without AMP; hooks see the true gradients
    _emit(callbacks, "on_after_backward", state)
    scaler.step(optimizer)
    scaler.update()
    state.global_step += 1
    state.loss = float(loss.detach())
    state.batch_size = _batch_size(batch) * state.world
    return {"loss": state.loss, **{k: float(v) for k, v in metrics.items()}}


def _check_finite(state: TrainState, loss: Tensor, i: int) -> None:
    """:class:`DivergedError` on every rank when the loss is not finite on any rank."""
    bad = not bool(torch.isfinite(loss.detach()).all())
    if not (_dist.any_rank(bad, state.device) if state.distributed else bad):
        return
    kept = (
        f"the last good checkpoint {str(state.last_checkpoint)!r} (epoch "
        f"{state.checkpoint_epoch}) is kept"
        if state.last_checkpoint is not None
        else "no checkpoint had been written yet"
    )
    where = f" on rank {state.rank}" if state.distributed else ""
    raise DivergedError(
        f"loss became {float(loss.detach())}{where} at epoch {state.epoch + 1}, step {i + 1}; "
        f"{kept}. Try a lower learning rate, a larger temperature or grad_clip.",
        epoch=state.epoch + 1,
        step=i + 1,
        global_step=state.global_step + 1,
    )
