"""Distributed helpers: rank, world size, an autograd-aware all-gather and the offset diagonal.

SPEC §4 "Distributed" and §8. Every bound distributes the same way: **rows are local, columns
are gathered**. Rank ``r`` holds ``K_r`` local rows ``a_r: [K_r, d]``; the columns are the
gathered ``b = cat_r b_r: [Σ K_r, d]``, so the positive of local row ``i`` sits in column
``r·K + i`` (:func:`diagonal_offset`, equal per-rank batches). Each rank computes its *share* of
the objective; the shares sum over ranks to the single-process objective of the concatenated
batch, and because :func:`all_gather_with_grad` sums the column gradients of all ranks in its
backward, the gradient that reaches each rank's embeddings is exactly the gradient of the global
objective. (DDP averages parameter gradients over ranks, so a DDP loop multiplies the share by
:func:`world_size` to keep the single-process scale.)

Without an initialised process group every helper degrades to the single-process case
(rank 0, world 1, gather = identity), so callers never branch.

Launching: :func:`init_from_env` starts the process group from the variables ``torchrun`` sets
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``): ``nccl`` on CUDA, ``gloo``
on CPU. :func:`convert_sync_batchnorm` makes batch-norm statistics global (torch's
``SyncBatchNorm`` on accelerators, :class:`GlobalBatchNorm` on CPU, where torch has none).

>>> import torch
>>> world_size(), rank(), diagonal_offset(8)
(1, 0, 0)
>>> all_gather_with_grad(torch.ones(2, 3)).shape
torch.Size([2, 3])
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import logging
import os
import warnings
from collections.abc import Iterable, Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn

if dist.is_available():
    # Imported here, before any process group exists, on purpose: this torch module binds
    # ``group=group.WORLD`` as a *default argument* when it is first imported. Imported lazily
    # (by us inside a collective, or by DDP's import of torch._dynamo) after
    # ``init_process_group``, those defaults would hold the ProcessGroupGloo forever, so
    # ``destroy_process_group`` could never free it and join its worker threads; at interpreter
    # exit a worker still releasing the last collective's Python-owned tensor then takes the GIL
    # during finalisation and the rank aborts ("terminate called without an active exception",
    # exit -6). We also pass ``group=`` explicitly at every call, and shutdown() drops a group
    # that a late import bound anyway (_drop_captured_groups).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import torch.distributed.nn.functional as dist_nn

log = logging.getLogger(__name__)

#: Seconds a collective may wait for a peer before the run fails (``init_from_env``).
DEFAULT_TIMEOUT_S = 600.0


@contextlib.contextmanager
def _quiet_deprecation() -> Iterator[None]:
    """Silence torch's FutureWarning that ``torch.distributed.nn.functional`` is deprecated: its
    suggested replacement is private API, and these autograd-aware collectives still work."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*is deprecated.*")
        yield


_local_only_depth = 0


@contextlib.contextmanager
def local_only(enabled: bool = True) -> Iterator[None]:
    """Within the block this process acts alone (``world_size() == 1``, ``rank() == 0``, gathers
    are identities) even under ``torchrun``: a loss with ``gather_distributed=False``. With
    ``enabled=False`` the block runs unchanged."""
    global _local_only_depth
    _local_only_depth += int(enabled)
    try:
        yield
    finally:
        _local_only_depth -= int(enabled)


def is_distributed() -> bool:
    """``True`` when ``torch.distributed`` is available and a process group is initialised
    (and not inside :func:`local_only`)."""
    return _local_only_depth == 0 and dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of ranks (``1`` without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (``0`` without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def all_gather_with_grad(t: Tensor) -> Tensor:
    """Concatenate ``t: [K, ...]`` from all ranks along dim 0 -> ``[world·K, ...]``, differentiably.

    Uses ``torch.distributed.nn.functional.all_gather``: the backward sums the gradients that
    every rank computed for the gathered copy and returns to each rank its own slice, so the
    gradient equals that of the single-process objective on the concatenated batch (lightly
    #1528 / #1920 / #1977 were plain ``all_gather`` without this backward). Every rank must pass
    the same shape. Identity without a process group.
    """
    if not is_distributed() or world_size() == 1:
        return t
    with _quiet_deprecation():
        return torch.cat(dist_nn.all_gather(t.contiguous(), group=dist.group.WORLD), dim=0)


def all_gather_scalars_with_grad(value: Tensor) -> Tensor:
    """Gather a 0-d tensor from every rank -> ``[world]`` (differentiable; identity-like alone)."""
    return all_gather_with_grad(value.reshape(1))


def row_block(global_rows: int) -> slice:
    """This rank's contiguous block ``[rank·K/world, (rank + 1)·K/world)`` of a global batch of
    ``K = global_rows`` rows (``ValueError`` unless ``world`` divides ``K``)."""
    world = world_size()
    if global_rows % world:
        raise ValueError(f"a batch of {global_rows} rows does not split over {world} ranks")
    k = global_rows // world
    return slice(rank() * k, (rank() + 1) * k)


def diagonal_offset(local_rows: int) -> int:
    """Column of local row 0's positive in the gathered matrix: ``rank · local_rows``.

    Row ``i`` of rank ``r`` pairs with gathered column ``r·K + i`` (``K = local_rows``, equal on
    every rank).
    """
    return rank() * local_rows


def eye_rank(local_rows: int, device: torch.device | None = None) -> Tensor:
    """Boolean mask ``[K, world·K]`` that is ``True`` at each local row's positive column."""
    offset = diagonal_offset(local_rows)
    mask = torch.zeros(local_rows, local_rows * world_size(), dtype=torch.bool, device=device)
    idx = torch.arange(local_rows, device=device)
    mask[idx, idx + offset] = True
    return mask


def local_rank() -> int:
    """``LOCAL_RANK`` set by ``torchrun`` (``0`` otherwise): the GPU index of this process."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def launched_by_torchrun() -> bool:
    """``True`` when the environment describes a multi-process launch (``WORLD_SIZE > 1``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(
    backend: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S, device: str = "auto"
) -> bool:
    """Start the default process group from ``torchrun``'s environment; returns whether this
    is a multi-process run. A no-op (``False``) for a plain ``python`` launch or when a group
    already exists (then ``True``).

    ``backend`` defaults to ``nccl`` when CUDA is used (``device`` ``auto`` with a GPU, or a
    ``cuda`` device) and ``gloo`` otherwise; with CUDA the process binds ``cuda:LOCAL_RANK``.
    ``timeout_s`` bounds how long a collective waits for a peer that died or hangs.
    """
    if is_distributed():
        return world_size() > 1
    if not launched_by_torchrun():
        return False
    if not dist.is_available():
        raise ValueError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise ValueError(f"WORLD_SIZE > 1 but {var} is not set; launch with torchrun")
    use_cuda = torch.cuda.is_available() and device != "cpu" and not device.startswith("cpu")
    if backend is None:
        backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    log.info("rank %d/%d initialised (%s)", rank(), world_size(), backend)
    return True


def _drop_captured_groups() -> None:
    """Replace a process group bound as a default argument of ``torch.distributed.nn.functional``
    (imported after ``init_process_group`` by user code or torch's own lazy imports) by ``None``,
    which those functions read as the default group, so the default arguments do not keep the
    group alive past ``destroy_process_group`` (see the import of ``dist_nn``)."""
    for fn in vars(dist_nn).values():
        defaults = getattr(fn, "__defaults__", None)
        if defaults and any(isinstance(d, dist.ProcessGroup) for d in defaults):
            fn.__defaults__ = tuple(
                None if isinstance(d, dist.ProcessGroup) else d for d in defaults
            )


def shutdown() -> None:
    """Destroy the default process group if there is one (end of a run, or after an error).

    Release the DDP model and any autograd graph of a collective before calling this: they hold
    the group. ``gc.collect()`` then frees the cyclic holders, so the gloo group is destroyed
    here and its worker threads are joined while the interpreter is alive (a group that
    survives to interpreter exit can abort the process, see the import of ``dist_nn``).
    """
    if is_distributed():
        _drop_captured_groups()
        dist.destroy_process_group()
        gc.collect()


def barrier() -> None:
    """Wait for every rank (no-op alone)."""
    if is_distributed() and world_size() > 1:
        dist.barrier()


def any_rank(flag: bool, device: torch.device | None = None) -> bool:
    """``True`` on every rank when ``flag`` is ``True`` on at least one (one tiny all-reduce)."""
    if not is_distributed() or world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_reduce_mean(value: float, device: torch.device | None = None) -> float:
    """Mean of a Python float over ranks (identity alone)."""
    if not is_distributed() or world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / world_size()


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum of a (detached) tensor over ranks, as a new tensor (identity alone)."""
    if not is_distributed() or world_size() == 1:
        return t
    out = t.detach().clone()
    dist.all_reduce(out)
    return out


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Replace each ``.grad`` by its mean over ranks (data parallelism without a DDP wrapper).

    If every rank backpropagates the *same* global objective computed from gathered row blocks
    (:func:`all_gather_with_grad`), the gather's backward hands each rank ``world`` times its
    block's gradient, so the mean over ranks is exactly the single-process gradient.
    """
    if not is_distributed() or world_size() == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world_size())


def gather_rng_states() -> list[Tensor]:
    """Every rank's torch CPU generator state (``uint8 [5056]``), in rank order (collective)."""
    state = torch.get_rng_state()
    if not is_distributed() or world_size() == 1:
        return [state]
    wide = state.to(torch.int32)
    parts = [torch.empty_like(wide) for _ in range(world_size())]
    dist.all_gather(parts, wide)
    return [p.to(torch.uint8) for p in parts]


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are the mean / variance over **all ranks' batches**
    (what ``torch.nn.SyncBatchNorm`` does, for any device including CPU / gloo).

    ``mean = Σ_r Σ x / N`` and ``var = Σ_r Σ (x − mean)² / N`` (``N`` the global count), both
    with autograd-aware all-reduces, so the gradient equals single-process batch norm on the
    concatenated batch. Eval mode and single-process training use the running statistics /
    plain batch norm. Works for ``[B, C]``, ``[B, C, L]`` and ``[B, C, H, W]`` inputs.
    """

    def _check_input_dim(self, x: Tensor) -> None:
        if x.ndim < 2:
            raise ValueError(f"GlobalBatchNorm expects [B, C, ...], got {tuple(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x: [B, C, ...]`` with global batch statistics (training, many ranks)."""
        if not (self.training and is_distributed() and world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        group = dist.group.WORLD
        dims = [0, *range(2, x.ndim)]
        shape = [1, -1] + [1] * (x.ndim - 2)
        counts = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float64, device=x.device)
        dist.all_reduce(counts)
        count = float(counts.item())
        with _quiet_deprecation():
            mean = dist_nn.all_reduce(x.sum(dim=dims), group=group) / count
            centred = x - mean.reshape(shape)
            var = dist_nn.all_reduce((centred * centred).sum(dim=dims), group=group) / count
        out = centred * torch.rsqrt(var.reshape(shape) + self.eps)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                assert self.running_var is not None and self.num_batches_tracked is not None
                self.num_batches_tracked.add_(1)
                m = (
                    self.momentum
                    if self.momentum is not None
                    else 1.0 / float(self.num_batches_tracked)
                )
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                unbiased = var.detach() * (count / max(count - 1.0, 1.0))
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        return out


def convert_sync_batchnorm(module: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """Replace every ``BatchNorm1d/2d/3d`` in ``module`` by a cross-rank one, keeping weights and
    running statistics: torch's ``SyncBatchNorm`` on CUDA, :class:`GlobalBatchNorm` elsewhere."""
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, (GlobalBatchNorm, nn.SyncBatchNorm)
    ):
        ref = module.weight if module.affine else module.running_mean
        new = GlobalBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            device=ref.device if ref is not None else None,
            dtype=ref.dtype if ref is not None else None,
        )
        if module.affine:  # the same Parameter objects: requires_grad and optimiser state kept
            new.weight, new.bias = module.weight, module.bias
        new.running_mean, new.running_var = module.running_mean, module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, device))
    return module


@contextlib.contextmanager
def process_group(device: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[bool]:
    """``with process_group(): ...`` — :func:`init_from_env` on entry (yields whether the run is
    multi-process), :func:`shutdown` on exit, also after an error, so no rank is left waiting
    on a group whose owner is gone."""
    started = not is_distributed() and init_from_env(device=device, timeout_s=timeout_s)
    try:
        yield started or (is_distributed() and world_size() > 1)
    finally:
        if started:
            shutdown()
