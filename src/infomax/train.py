"""A plain, resumable training loop shared by every trainer (SSL, RPM, distribution matching).

``fit(model, batches, loss_fn, config)`` runs ``config.epochs`` epochs of
``loss = loss_fn(model, batch)`` over ``batches(epoch)``, with AdamW / SGD / LARS, a per-step
learning rate ``lr · warmup · cosine`` (linear warm-up over ``warmup_epochs``, then
``½(1 + cos(π t))`` over the remaining fraction ``t`` of training; ``constant`` drops the cosine),
optional gradient clipping, mixed precision on CUDA, rich progress (loss, images/s) and a
checkpoint every ``checkpoint_every`` epochs written atomically to ``out_dir/checkpoint.pt``.

Resume is exact: the checkpoint holds model, optimizer (and AMP scaler) state, the torch / numpy /
Python RNG states, the epoch and the history, so ``fit(..., resume=True)`` after an interruption
gives bitwise the same weights on CPU as an uninterrupted run, provided ``batches(epoch)`` is a
deterministic function of ``(seed, epoch)`` and any randomness inside ``loss_fn`` (augmentations)
draws from torch's global generator. A non-finite loss raises :class:`DivergedError` before the
step is applied; the last good checkpoint is left untouched.

Distributed (``torchrun``, after :func:`infomax.dist.init_from_env`): the model is wrapped in
``DistributedDataParallel`` (parameter gradients averaged over ranks), batch norm is made
global with ``sync_batchnorm=True``, rank ``r`` seeds its random stream with ``seed + r`` (its
augmentations differ from the other ranks'), the non-finite check is agreed by all ranks (they
stop together), and only rank 0 shows progress, runs ``on_epoch_end`` and writes the checkpoint,
which holds every rank's generator state so that resume stays exact.

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

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from . import dist as _dist
from .reports import atomic_torch_save

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
OPTIMIZERS = ("adamw", "sgd", "lars")
SCHEDULES = ("cosine", "constant")


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
    """``history``: one dict per epoch (``epoch``, ``loss``, ``lr``, ``seconds``,
    ``images_per_s`` and whatever ``on_epoch_end`` returned); ``checkpoint``: last written file."""

    history: list[dict]
    seconds: float
    epochs_done: int
    checkpoint: Path | None


class DivergedError(ValueError):
    """The loss became NaN/Inf; the last good checkpoint (if any) is kept."""


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
# The loop


def _batch_size(batch: Any) -> int:
    """Number of samples in ``batch`` (a tensor or the first tensor of a tuple / list / dict)."""
    if isinstance(batch, Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    if isinstance(batch, (tuple, list)) and batch:
        return _batch_size(batch[0])
    if isinstance(batch, dict) and batch:
        return _batch_size(next(iter(batch.values())))
    return 1


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


@contextlib.contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  {task.fields[ips]:.0f} img/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        yield bar


def fit(
    model: nn.Module,
    batches: Callable[[int], Iterable[Any]],
    loss_fn: Callable[[nn.Module, Any], Tensor],
    config: TrainConfig,
    *,
    out_dir: Path | None = None,
    resume: bool = False,
    after_step: Callable[[nn.Module, int], None] | None = None,
    on_epoch_end: Callable[[int, nn.Module], dict[str, float]] | None = None,
    resume_state: dict[str, Any] | None = None,
    extra_state: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` in place for ``config.epochs`` epochs; see the module docstring.

    ``batches(epoch)`` yields the batches of epoch ``epoch`` (0-based; given a ``len`` the
    learning rate is updated per step, otherwise per epoch); ``loss_fn(model, batch)`` returns a
    scalar loss (moved to the device by the caller: ``model`` is already on
    ``resolve_device(config.device)``); ``after_step(model, global_step)`` runs after each
    optimiser step (momentum encoders); ``on_epoch_end(epoch, model)`` returns metrics added to
    that epoch's history record. With ``resume=True`` training continues from
    ``out_dir/checkpoint.pt``, or from ``resume_state`` when given (that checkpoint already read
    with :func:`load_checkpoint`, e.g. to validate it before anything is written). A checkpoint
    whose model or optimizer state does not fit ``model`` / ``config`` raises ``ValueError``
    (one line: missing / unexpected keys, shape mismatches). ``extra_state``: plain-typed
    entries stored in every checkpoint besides the training state (e.g. the caller's config).
    """
    device = resolve_device(config.device)
    distributed = _dist.is_distributed() and _dist.world_size() > 1
    rank, world = _dist.rank(), _dist.world_size()
    is_main = rank == 0
    model.to(device)
    if distributed and config.sync_batchnorm:
        _dist.convert_sync_batchnorm(model, device)
    optimizer = build_optimizer(model, config)
    use_amp = bool(config.amp and device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    ckpt_path = Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None
    history: list[dict] = []
    start_epoch, global_step, last_ckpt, ckpt_epoch = 0, 0, None, 0
    if resume:
        if ckpt_path is None:
            raise ValueError("resume=True needs out_dir holding a checkpoint")
        state = (
            resume_state
            if resume_state is not None
            else load_checkpoint(ckpt_path, map_location=device)
        )
        check_checkpoint(state, ckpt_path)
        load_model_state(model, state["model"], f"checkpoint {str(ckpt_path)!r}")
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, RuntimeError, KeyError, TypeError) as err:
            raise ValueError(
                f"the optimizer state in {str(ckpt_path)!r} does not match the "
                f"{config.optimizer!r} optimizer of this model: {_first_line(err)}"
            ) from None
        if "scaler" in state and use_amp:
            scaler.load_state_dict(state["scaler"])
        start_epoch, global_step = int(state["epoch"]), int(state["global_step"])
        history = list(state["history"])
        set_rng_state(state["rng"])
        ranks_rng = state.get("rng_ranks")
        if ranks_rng is not None and len(ranks_rng) == world:
            torch.set_rng_state(ranks_rng[rank])
        elif world > 1 or (ranks_rng is not None and len(ranks_rng) != 1):
            saved = len(ranks_rng) if ranks_rng is not None else 1
            log.warning(
                "checkpoint was written by %d rank(s), resuming on %d: the random streams "
                "restart from seed + rank + 1000·epoch, so the result will differ from an "
                "uninterrupted run",
                saved,
                world,
            )
            seed_everything(config.seed + rank + 1000 * start_epoch)
        last_ckpt, ckpt_epoch = ckpt_path, start_epoch
    else:
        seed_everything(config.seed + rank)
    train_model: nn.Module = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    t_start = time.perf_counter()
    prior_seconds = float(history[-1]["total_seconds"]) if history else 0.0
    with _progress(config.progress and is_main, config.epochs) as bar:
        for epoch in range(start_epoch, config.epochs):
            model.train()
            epoch_batches = batches(epoch)
            n_steps = len(epoch_batches) if hasattr(epoch_batches, "__len__") else None  # type: ignore[arg-type]
            task = None
            if bar is not None:
                task = bar.add_task(
                    "", total=n_steps, epoch=f"{epoch + 1}/{config.epochs}", loss=math.nan, ips=0.0
                )
            t0, n_images, loss_sum, n_seen = time.perf_counter(), 0, 0.0, 0
            lr = config.lr * lr_factor(float(epoch), config)
            for i, batch in enumerate(epoch_batches):
                if n_steps:
                    lr = config.lr * lr_factor(epoch + i / n_steps, config)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                    loss = loss_fn(train_model, batch)
                bad = not bool(torch.isfinite(loss.detach()).all())
                if _dist.any_rank(bad, device) if distributed else bad:
                    kept = (
                        f"the last good checkpoint {str(last_ckpt)!r} (epoch {ckpt_epoch}) is kept"
                        if last_ckpt is not None
                        else "no checkpoint had been written yet"
                    )
                    where = f" on rank {rank}" if distributed else ""
                    raise DivergedError(
                        f"loss became {float(loss.detach())}{where} at epoch {epoch + 1}, "
                        f"step {i + 1}; "
                        f"{kept}. Try a lower learning rate, a larger temperature or grad_clip."
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if config.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                global_step += 1
                if after_step is not None:
                    after_step(model, global_step)
                n_images += _batch_size(batch) * world
                loss_sum += float(loss.detach())
                n_seen += 1
                if bar is not None and task is not None:
                    ips = n_images / max(time.perf_counter() - t0, 1e-9)
                    bar.update(task, advance=1, loss=loss_sum / n_seen, ips=ips)
            seconds = time.perf_counter() - t0
            epoch_loss = loss_sum / max(n_seen, 1)
            if distributed:
                epoch_loss = _dist.all_reduce_mean(epoch_loss, device)
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "loss": epoch_loss,
                "lr": lr,
                "steps": n_seen,
                "seconds": seconds,
                "images_per_s": n_images / max(seconds, 1e-9),
            }
            if on_epoch_end is not None and is_main:
                model.eval()
                record.update(on_epoch_end(epoch, model))
            record["total_seconds"] = prior_seconds + time.perf_counter() - t_start
            history.append(record)
            log.info("epoch %d: %s", epoch + 1, record)
            done = epoch + 1
            if ckpt_path is not None and (
                done % config.checkpoint_every == 0 or done == config.epochs
            ):
                ranks_rng = _dist.gather_rng_states() if distributed else None
                payload: dict[str, Any] = {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": done,
                    "global_step": global_step,
                    "history": history,
                    "rng": rng_state(),
                    "train_config": asdict(config),
                }
                if extra_state:
                    payload = {**extra_state, **payload}  # never replaces the training state
                if use_amp:
                    payload["scaler"] = scaler.state_dict()
                if ranks_rng is not None:
                    payload["rng_ranks"] = ranks_rng
                    payload["world_size"] = world
                if is_main:
                    atomic_torch_save(payload, ckpt_path)
                if distributed:
                    _dist.barrier()  # nobody resumes from a half-written epoch
                last_ckpt, ckpt_epoch = ckpt_path, done
    total = prior_seconds + time.perf_counter() - t_start
    return TrainResult(
        history=history, seconds=total, epochs_done=len(history), checkpoint=last_ckpt
    )
