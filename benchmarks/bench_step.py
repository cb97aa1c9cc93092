"""End-to-end training steps (SimCLR, MI estimation): infomax vs lightly, torch-mist, plain torch.

Usage (in a venv holding infomax, kornia and, for the peer rows, lightly and torch-mist)::

    python benchmarks/bench_step.py --out runs/bench_step
    python benchmarks/bench_step.py --out /tmp/bs --batch-sizes 256 1024 --mi-batch-sizes 128 4096
    python benchmarks/bench_step.py --out /tmp/bs --quick          # tiny sizes: a smoke run

(1) **SimCLR step**, for each batch of ``B`` images (``--batch-sizes``) and each NT-Xent
    implementation (``--impls``): ``infomax`` (:class:`infomax.losses.NTXentLoss`, ``impl="auto"``),
    ``infomax-tiled`` (the same, ``impl="tiled"``), ``lightly`` (``lightly.loss.NTXentLoss``) and
    ``dense`` (:func:`dense_ntxent`, the textbook plain-torch NT-Xent). One step: ``B`` digits
    images (:func:`infomax.data.load_dataset`, drawn with replacement), two views through the
    library's kornia pipeline (:func:`infomax.augment.build_augment`, then ``Normalize``), the
    library's SimCLR encoder + projection head (:func:`infomax.ssl.build_model`, a small CNN) on
    both views, the loss, backward and the library's optimiser (AdamW of
    :func:`infomax.train.build_optimizer`). Only the loss module differs between rows: the same
    initial weights, images and augmentation draws (all seeded), so every row's first-step loss
    is the same NT-Xent of the same embeddings.
(2) **MI estimator step**, for each batch of ``K`` pairs (``--mi-batch-sizes``) of the 20-D
    correlated Gaussian (``make_task("gaussian", dim=20, mi=4)``, standardised) and each InfoNCE
    implementation (``--mi-impls``): ``infomax`` (``MIObjective("infonce", dot critic).loss``,
    automatic tiling), ``infomax-tiled`` (``memory_efficient=True``), ``dense``
    (:func:`dense_infonce` of the same critic's embeddings) and ``torch-mist`` (its ``infonce``
    estimator with a separable critic, given the same initial weights). Critic: MLPs ``20 -> 256
    -> 256 -> 32`` per side, dot product (as ``benchmarks/mi_speed.py``); Adam (lr 5e-4).

Each (size, implementation) runs in a **fresh process**: ``--warmup`` untimed steps (the first
step's loss is reported), then ``--repeats`` timed steps (median); then the loss alone —
forward + backward of the same implementation on detached leaf embeddings of the last step's
shape — is timed the same way, giving the loss's share of the step. Peak memory is the child's
``ru_maxrss`` at the end of the timed steps minus its value after the imports, the data and one
untimed step of batch 8 on the same code path (so that code pages and one-off buffers are not
counted; the approach of :mod:`infomax.experiments.loss_bench`). Each child runs under an
address-space cap (``--memory-cap-gib`` above its size at the baseline): a run that needs more
— torch-mist's separable critic broadcasts ``[K, K, 32]`` embeddings, 2 GiB per tensor at
``K = 4096`` — is an "OOM" row instead of pushing a shared host into swap or the OOM killer. A
peer that is not installed gives a "not installed" row. Writes ``results.json`` (config,
versions, load averages, every run's times) and ``table.md`` into ``--out``, both atomically,
and prints both tables (step time ratios to lightly / torch-mist at the same size).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from infomax.experiments.loss_bench import _mem_available, _vm_bytes, run_json_child

SSL_IMPLS = ("infomax", "infomax-tiled", "lightly", "dense")
MI_IMPLS = ("infomax", "infomax-tiled", "dense", "torch-mist")
SSL_BATCHES = (256, 1024)
MI_BATCHES = (128, 4096)
QUICK = {"batch_sizes": [16], "mi_batch_sizes": [32], "repeats": 2, "warmup": 1, "samples": 2000}
HIDDEN, LAYERS, EMBED = 256, 2, 32  # the MI critic: MLPs 20 -> 256 -> 256 -> 32 per side
MI_LR = 5e-4
RESULT_PREFIX = "@bench_step "  # marks the child's result line on its stdout


# ------------------------------------------------------------------------ plain-torch references
def dense_ntxent(z0: Tensor, z1: Tensor, temperature: float) -> Tensor:
    """Textbook NT-Xent of two views ``z0, z1: [B, d]``: the ``[2B, 2B]`` cosine / τ matrix with
    the self-similarities masked, cross-entropy of each row against its other view."""
    z = F.normalize(torch.cat([z0, z1]), dim=1)
    scores = z @ z.T / temperature
    n = z0.shape[0]
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    scores = scores.masked_fill(self_mask, -math.inf)
    target = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
    return F.cross_entropy(scores, target)


def dense_infonce(gx: Tensor, hy: Tensor) -> Tensor:
    """Textbook InfoNCE loss (cross-entropy) of paired embeddings ``gx, hy: [K, d]``: ``S = gx
    hyᵀ``, mean over rows of ``logsumexp_j S_ij − S_ii``; the MI estimate is ``log K −`` it."""
    scores = gx @ hy.T
    return (torch.logsumexp(scores, dim=1) - scores.diagonal()).mean()


# ------------------------------------------------------------------------------------ builders
def ntxent_fn(impl: str, temperature: float) -> Callable[[Tensor, Tensor], Tensor]:
    """The NT-Xent loss ``fn(z0, z1)`` of ``impl`` (``ImportError`` for a missing peer)."""
    if impl in ("infomax", "infomax-tiled"):
        from infomax.losses import NTXentLoss

        mode = "tiled" if impl == "infomax-tiled" else "auto"
        return NTXentLoss(temperature=temperature, impl=mode)
    if impl == "lightly":
        import importlib.util

        from infomax.experiments.loss_bench import _install_torchvision_stub

        if importlib.util.find_spec("lightly") is None:  # no stub where lightly is missing
            raise ImportError("No module named 'lightly'", name="lightly")
        _install_torchvision_stub()  # lightly.loss imports torchvision.ops, unused by NT-Xent
        from lightly.loss import NTXentLoss as LightlyNTXent

        return LightlyNTXent(temperature=temperature)  # type: ignore[no-any-return]
    if impl == "dense":
        return lambda z0, z1: dense_ntxent(z0, z1, temperature)
    raise ValueError(f"unknown SimCLR implementation {impl!r}; valid: {SSL_IMPLS}")


class MIStep:
    """One InfoNCE implementation of the MI step: its trainable ``params``, ``loss(x, y)`` on a
    batch, ``nats(loss)`` (the MI estimate of that loss), ``loss_only(gx, hy)`` on embeddings
    and ``path`` (``dense`` / ``tiled``); ``tiled`` forces ours to one path or the other."""

    def __init__(
        self, impl: str, dim_x: int, dim_y: int, k: int, seed: int, tiled: bool | None = None
    ) -> None:
        from infomax.critics import DotCritic, build_critic
        from infomax.objectives import MIObjective

        torch.manual_seed(seed)
        critic = build_critic("dot", dim_x, dim_y, hidden=HIDDEN, layers=LAYERS, embed_dim=EMBED)
        self.path = "dense"
        log_k = math.log(k)
        if impl in ("infomax", "infomax-tiled"):
            if tiled is None:  # else: forced (the priming step takes the real one's path)
                tiled = None if impl == "infomax" else True
            obj = MIObjective("infonce", critic, dim_x, dim_y, memory_efficient=tiled)
            head = MIObjective("infonce", DotCritic(), EMBED, EMBED, memory_efficient=tiled)
            self.path = "tiled" if obj.tiled(k) else "dense"
            self.params = list(obj.parameters())
            self.loss = lambda x, y: obj.loss(x, y)[0]
            self.loss_only = lambda gx, hy: head.loss(gx, hy)[0]
            self.nats: Callable[[float], float] = lambda v: -v  # loss = −InfoNCE bound
        elif impl == "dense":
            self.params = list(critic.parameters())
            self.loss = lambda x, y: dense_infonce(critic.embed_x(x), critic.embed_y(y))
            self.loss_only = dense_infonce
            self.nats = lambda v: log_k - v
        elif impl == "torch-mist":
            from torch_mist import estimators as te
            from torch_mist.critic import SeparableCritic

            est = te.infonce(
                x_dim=dim_x,
                y_dim=dim_y,
                hidden_dims=[HIDDEN] * LAYERS,
                k_dim=EMBED,
                critic_type="separable",
                neg_samples=0,
            )
            copy_linear_weights(critic, est)
            head_est = te.InfoNCE(SeparableCritic(nn.Identity(), nn.Identity()), neg_samples=0)
            self.params = list(est.parameters())
            self.loss = est.loss
            self.loss_only = head_est.loss
            self.nats = lambda v: -v
        else:
            raise ValueError(f"unknown MI implementation {impl!r}; valid: {MI_IMPLS}")


def copy_linear_weights(critic: nn.Module, est: nn.Module) -> None:
    """Give torch-mist's separable critic (``f_x``, ``f_y``: the same MLP shapes) our initial
    weights, Linear by Linear, so that its first-step loss is comparable with ours."""
    with torch.no_grad():
        for ours_name, theirs_name in (("encoder_x", "f_x"), ("encoder_y", "f_y")):
            ours = [m for m in getattr(critic, ours_name).modules() if isinstance(m, nn.Linear)]
            theirs = [
                m
                for name, m in est.named_modules()
                if isinstance(m, nn.Linear) and f".{theirs_name}." in f".{name}."
            ]
            if len(ours) != len(theirs):
                raise RuntimeError(f"torch-mist critic {theirs_name} is not {ours_name}'s shape")
            for a, b in zip(ours, theirs, strict=True):
                b.weight.copy_(a.weight)
                b.bias.copy_(a.bias)


# --------------------------------------------------------------------------------- child runs
_BASE: dict[str, int] = {}  # the child's memory baseline (ru_maxrss, KiB), once taken


def _baseline(args: dict[str, Any]) -> int:
    """Cap the address space at ``args["cap_bytes"]`` above its current size (0: no cap), as
    :mod:`infomax.experiments.loss_bench` does, so that a peer needing ``O(K²·width)`` memory
    fails cleanly on a shared host; returns (and keeps) ``ru_maxrss`` now."""
    cap = int(args.get("cap_bytes") or 0)
    if cap > 0:
        resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + cap, resource.RLIM_INFINITY))
    _BASE["kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return _BASE["kb"]


def _rss_mb_above(base_kb: int) -> float:
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_kb) / 1024


def _time(fn: Callable[[], Any], warmup: int, repeats: int) -> tuple[list[float], list[Any]]:
    """``(seconds of the timed calls, results of the warm-up calls)``."""
    first = [fn() for _ in range(warmup)]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times, first


def _loss_only_times(
    fn: Callable[[Tensor, Tensor], Tensor], z0: Tensor, z1: Tensor, repeats: int, seed: int
) -> list[float]:
    """Forward + backward of ``fn`` alone (one warm-up, ``repeats`` timed) on detached leaf
    copies of ``z0, z1``, each call's slightly perturbed (``1e-3`` relative noise, drawn before
    the timing) so that no call repeats an earlier input: torch-mist caches its scores by value
    and would hand back a graph that was already backpropagated."""
    gen = torch.Generator().manual_seed(seed)
    scale = 1e-3 * float(torch.cat([z0, z1]).detach().std())

    def leaf(z: Tensor) -> Tensor:
        noise = torch.randn(z.shape, generator=gen, dtype=z.dtype)
        return (z.detach() + scale * noise).requires_grad_(True)

    pairs = iter([(leaf(z0), leaf(z1)) for _ in range(1 + repeats)])

    def run() -> None:
        a, b = next(pairs)
        fn(a, b).backward()

    return _time(run, 1, repeats)[0]


def _stats(out: dict[str, Any], times: list[float], loss_times: list[float]) -> dict[str, Any]:
    step, loss = statistics.median(times), statistics.median(loss_times)
    out.update(step_s=step, step_min_s=min(times), step_times=times)
    out.update(loss_s=loss, loss_times=loss_times, loss_share=loss / step)
    return out


PRIME = 8  # batch of the untimed priming step before the memory baseline


def _simclr_data(seed: int) -> tuple[str, Tensor, tuple[float, ...], tuple[float, ...]]:
    """``(data name, uint8 images [N, C, H, W], mean, std)``: the digits of
    :func:`infomax.data.load_dataset`, or random 28×28 images without scikit-learn."""
    try:
        from infomax.data import load_dataset

        ds = load_dataset("digits")
        return "digits", ds.train_x, ds.mean, ds.std
    except ImportError:
        gen = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (2048, 1, 28, 28), dtype=torch.uint8, generator=gen)
        return "mnist", images, (0.5,), (0.25,)


def _simclr_step(
    args: dict[str, Any],
    data: tuple[str, Tensor, tuple[float, ...], tuple[float, ...]],
    b: int,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
) -> tuple[Callable[[], float], list[Tensor]]:
    """A seeded model, optimiser and augmentation, and ``step()`` (one SimCLR step on ``b``
    images, returning its loss); the list receives the step's embeddings ``[z0, z1]``."""
    from infomax.augment import Normalize, build_augment, to_float
    from infomax.ssl import SSLConfig, build_model
    from infomax.train import build_optimizer

    name, images, mean, std = data
    cfg = SSLConfig(
        data=name,
        encoder="cnn",
        width=args["width"],
        temperature=args["temperature"],
        seed=args["seed"],
        device="cpu",
        amp=False,
        progress=False,
    )
    torch.manual_seed(args["seed"])  # initial weights
    model = build_model(cfg)
    model.train()
    embed: Callable[[Tensor], Tensor] = model.embed  # type: ignore[assignment]
    opt = build_optimizer(model, cfg.train_config())
    aug, norm = build_augment(name), Normalize(mean, std)
    batches = torch.Generator().manual_seed(args["seed"])  # the same batches for every impl
    torch.manual_seed(args["seed"] + 1)  # the same augmentation draws for every impl
    last: list[Tensor] = []

    def step() -> float:
        x = to_float(images[torch.randint(images.shape[0], (b,), generator=batches)])
        z0, z1 = embed(norm(aug(x))), embed(norm(aug(x)))
        loss = loss_fn(z0, z1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        last[:] = [z0, z1]
        return float(loss.detach())

    return step, last


def simclr_child(args: dict[str, Any]) -> dict[str, Any]:
    """One (B, implementation) SimCLR measurement, meant for a fresh process."""
    from infomax.kernels import use_tiles

    b, impl = int(args["batch"]), str(args["impl"])
    data = _simclr_data(args["seed"])
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "data": data[0]}
    out["image_shape"] = list(data[1].shape[1:])
    try:
        loss_fn = ntxent_fn(impl, args["temperature"])
    except ImportError as err:
        return {**out, "status": f"not installed ({err.name})"}
    out["path"] = "dense"  # lightly and the reference materialise the [2B, 2B] scores
    prime_fn = loss_fn
    if impl.startswith("infomax"):
        tiled = use_tiles("tiled" if impl == "infomax-tiled" else "auto", (2 * b) ** 2)
        out["path"] = "tiled" if tiled else "dense"
        from infomax.losses import NTXentLoss

        prime_fn = NTXentLoss(temperature=args["temperature"], impl=out["path"])
    # one tiny step first (the same code path), so that the baseline holds the code and the
    # one-off buffers every step needs, and the peak is what this batch adds
    _simclr_step(args, data, PRIME, prime_fn)[0]()
    base_kb = _baseline(args)
    step, last = _simclr_step(args, data, b, loss_fn)
    times, first = _time(step, args["warmup"], args["repeats"])
    out["peak_mb"] = _rss_mb_above(base_kb)
    out["first_loss"], out["warmup_losses"] = first[0], first
    out["embedding"] = list(last[0].shape)
    loss_times = _loss_only_times(loss_fn, last[0], last[1], args["repeats"], args["seed"])
    _stats(out, times, loss_times)
    out["status"] = "ok"
    return out


def _mi_step(
    model: MIStep, x: Tensor, y: Tensor, k: int, seed: int
) -> tuple[Callable[[], float], list[Tensor]]:
    """``step()``: one Adam step of ``model`` on ``k`` pairs drawn with replacement."""
    opt = torch.optim.Adam(model.params, lr=MI_LR)
    batches = torch.Generator().manual_seed(seed)  # the same batches for every impl
    last: list[Tensor] = []

    def step() -> float:
        idx = torch.randint(x.shape[0], (k,), generator=batches)
        loss = model.loss(x[idx], y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        last[:] = [x[idx], y[idx]]
        return float(loss.detach())

    return step, last


def mi_child(args: dict[str, Any]) -> dict[str, Any]:
    """One (K, implementation) MI-estimator measurement, meant for a fresh process."""
    import numpy as np

    from infomax.kernels import use_tiles
    from infomax.tasks import make_task

    out: dict[str, Any] = {"threads": torch.get_num_threads()}
    k, impl, seed = int(args["batch"]), str(args["impl"]), int(args["seed"])
    task = make_task("gaussian", dim=20, mi=4)
    xs, ys = task.sample(int(args["samples"]), seed=seed)
    x = torch.as_tensor(np.asarray(xs), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(ys), dtype=torch.float32)
    x, y = (x - x.mean(0)) / x.std(0), (y - y.mean(0)) / y.std(0)
    out["true_mi"] = float(task.mutual_information)
    # torch-mist's cache registers a full backward hook on its estimators; torch warns once
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
    if impl == "torch-mist":
        try:
            import torch_mist.estimators  # noqa: F401  (imported before the baseline)
        except ImportError as err:
            return {**out, "status": f"not installed ({err.name})"}
    tiled = None
    if impl.startswith("infomax"):  # the tiny priming step takes the path of the real one
        tiled = use_tiles("tiled" if impl == "infomax-tiled" else "auto", k * k)
    _mi_step(MIStep(impl, x.shape[1], y.shape[1], PRIME, seed, tiled), x, y, PRIME, seed)[0]()
    base_kb = _baseline(args)
    model = MIStep(impl, x.shape[1], y.shape[1], k, seed)
    step, _ = _mi_step(model, x, y, k, seed)
    times, first = _time(step, args["warmup"], args["repeats"])
    out["peak_mb"] = _rss_mb_above(base_kb)
    out["first_loss"], out["warmup_losses"] = first[0], first
    out["first_nats"] = model.nats(first[0])
    out["path"] = model.path  # torch-mist: dense (it materialises the [K, K] scores)
    gen = torch.Generator().manual_seed(seed)
    gx, hy = torch.randn(k, EMBED, generator=gen), torch.randn(k, EMBED, generator=gen)
    loss_times = _loss_only_times(model.loss_only, gx, hy, args["repeats"], seed)
    _stats(out, times, loss_times)
    out["status"] = "ok"
    return out


def child(args: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement (``args["part"]``: ``simclr`` or ``mi``) in this process."""
    if args["threads"]:
        torch.set_num_threads(int(args["threads"]))
    _BASE.clear()
    cap = int(args.get("cap_bytes") or 0)
    try:
        return simclr_child(args) if args["part"] == "simclr" else mi_child(args)
    except (RuntimeError, MemoryError) as err:
        msg = (str(err).splitlines() or [type(err).__name__])[0][:200]
        oom = isinstance(err, MemoryError) or "alloc" in msg.lower() or "memory" in msg.lower()
        out: dict[str, Any] = {"status": "failed", "error": msg}
        if cap and oom:
            out["status"] = f"OOM (cap {cap / 2**30:g} GiB)"
        if "kb" in _BASE:
            out["peak_mb_at_failure"] = _rss_mb_above(_BASE["kb"])
        return out
    finally:
        if cap:
            resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def run_child(args: dict[str, Any], timeout: float, in_process: bool = False) -> dict[str, Any]:
    """:func:`child` in a fresh ``python`` process (its result line on stdout), or in this one."""
    if in_process:
        res = child({**args, "cap_bytes": 0})  # never cap the calling process
        res["peak_mb"] = math.nan  # this process's high-water mark, not the run's
        return res
    env = dict(os.environ)
    if args["threads"]:
        env["OMP_NUM_THREADS"] = str(args["threads"])
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(args)]
    return run_json_child(cmd, timeout, prefix=RESULT_PREFIX, env=env)


# ------------------------------------------------------------------------------------ summary
def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, Any]:
    """Versions of Python, the platform, torch, kornia, the peers and infomax."""
    out: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("infomax", "torch", "kornia", "lightly", "torch-mist", "numpy"):
        out[dist] = _version(dist)
    out["cpu_count"] = os.cpu_count()
    out["cpu"] = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        out["cpu"] = names[0] if names else out["cpu"]
    except OSError:
        pass
    return out


def summarise(
    runs: list[dict[str, Any]], peer: str, value: str, relative: bool = True
) -> list[dict[str, Any]]:
    """One row per run: times in ms, the ratio to ``peer``'s step time at the same size, and the
    first-step ``value`` with its difference from the ``dense`` reference's (``relative``, or
    absolute: the MI estimate of an untrained critic is near 0)."""
    rows = []
    for r in runs:
        res = r["result"]
        ok = res.get("status") == "ok"
        row: dict[str, Any] = {"size": r["size"], "impl": r["impl"], "status": res["status"]}
        row["path"] = res.get("path", "—")
        row["step_ms"] = 1e3 * res["step_s"] if ok else math.nan
        row["loss_ms"] = 1e3 * res["loss_s"] if ok else math.nan
        row["loss_share"] = res["loss_share"] if ok else math.nan
        row["peak_mb"] = res.get("peak_mb", math.nan) if ok else math.nan
        row["value"] = res.get(value, math.nan) if ok else math.nan
        rows.append(row)
    for row in rows:
        same = {r["impl"]: r for r in rows if r["size"] == row["size"] and r["status"] == "ok"}
        ref, dense = same.get(peer), same.get("dense")
        ok = row["status"] == "ok"
        row["vs_peer"] = row["step_ms"] / ref["step_ms"] if ok and ref else math.nan
        diff = math.nan
        if ok and dense:
            diff = abs(row["value"] - dense["value"])
            if relative:
                diff = diff / abs(dense["value"]) if dense["value"] else math.nan
        row["diff"] = diff
    return rows


def _sig(v: float, fmt: str) -> str:
    return "—" if not math.isfinite(v) else format(v, fmt)


def table_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Cells of :data:`SSL_COLUMNS` / :data:`MI_COLUMNS` (values to 7 digits, ratios to 3)."""
    return [
        [
            r["size"],
            r["impl"],
            r["path"],
            r["status"],
            r["step_ms"],
            r["loss_ms"],
            _sig(100 * r["loss_share"], ".1f"),
            r["peak_mb"],
            _sig(r["value"], ".7g"),
            _sig(r["diff"], ".1e"),
            _sig(r["vs_peer"], ".2f"),
        ]
        for r in rows
    ]


_COMMON = ("impl", "path", "status", "step ms", "loss ms", "loss %", "peak MB")
SSL_COLUMNS = ("B", *_COMMON, "first-step loss", "rel. diff vs dense", "step / lightly")
MI_COLUMNS = ("K", *_COMMON, "first-step InfoNCE (nats)", "abs. diff vs dense", "step / mist")


# --------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run every (size, implementation) in its own process, print the tables
    and write ``results.json`` and ``table.md``; returns the ``results.json`` payload."""
    from rich.console import Console

    from infomax.reports import (
        atomic_write_text,
        markdown_table,
        print_table,
        to_jsonable,
        write_json,
    )

    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=list(SSL_BATCHES))
    p.add_argument("--mi-batch-sizes", type=int, nargs="+", default=list(MI_BATCHES))
    p.add_argument("--impls", nargs="*", default=list(SSL_IMPLS), choices=SSL_IMPLS)
    p.add_argument("--mi-impls", nargs="*", default=list(MI_IMPLS), choices=MI_IMPLS)
    p.add_argument("--repeats", type=int, default=5, help="timed steps per run (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (>= 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=0.2, help="NT-Xent τ")
    p.add_argument("--width", type=int, default=32, help="CNN width w: channels w, 2w, 4w, 8w")
    p.add_argument("--samples", type=int, default=20_000, help="Gaussian pairs for the MI step")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per child process")
    p.add_argument(
        "--memory-cap-gib",
        type=float,
        default=4.0,
        help="address-space cap per child above its size after imports (0: min(14 GiB, "
        "available - 4 GiB)); a run that needs more is an OOM row",
    )
    p.add_argument("--quick", action="store_true", help=f"smoke run: defaults {QUICK}")
    p.add_argument(
        "--in-process",
        action="store_true",
        help="no fresh process per run (fast, for tests; peak memory not measured)",
    )
    if p.parse_known_args(argv)[0].quick:  # tiny defaults; options given still win
        p.set_defaults(**QUICK)
    a = p.parse_args(argv)
    if a.repeats < 1 or a.warmup < 1 or min(a.batch_sizes + a.mi_batch_sizes) < 2:
        p.error("--repeats and --warmup must be >= 1, batch sizes >= 2")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    cap = a.memory_cap_gib * 2**30
    if cap <= 0:
        cap = max(2 * 2**30, min(14 * 2**30, _mem_available() - 4 * 2**30))
    common = {"threads": a.threads, "seed": a.seed, "repeats": a.repeats, "warmup": a.warmup}
    common["cap_bytes"] = int(cap)
    config: dict[str, Any] = {
        **common,
        "batch_sizes": a.batch_sizes,
        "mi_batch_sizes": a.mi_batch_sizes,
        "impls": a.impls,
        "mi_impls": a.mi_impls,
        "temperature": a.temperature,
        "width": a.width,
        "samples": a.samples,
        "quick": a.quick,
        "isolation": "in-process" if a.in_process else "fresh process per run",
        "simclr_step": "B digits images (with replacement) -> 2 kornia views (build_augment) -> "
        f"SimCLR CNN (width {a.width}) + projection head on both -> NT-Xent (τ = "
        f"{a.temperature}) -> backward -> AdamW step (build_optimizer)",
        "mi_step": f"K pairs (with replacement) of gaussian dim=20 mi=4 -> separable dot critic "
        f"(MLP 20->{HIDDEN}x{LAYERS}->{EMBED} per side) -> InfoNCE -> backward -> Adam "
        f"(lr {MI_LR})",
        "loss_only": "forward + backward of the loss alone on detached leaf embeddings "
        "(SimCLR: the last step's [B, 128] pair; MI: random [K, 32] pairs)",
        "peak_mb": "child ru_maxrss after the timed steps minus its value after imports, data "
        "and one untimed step of batch 8 on the same code path (code and one-off buffers)",
        "memory_cap_gib": cap / 2**30,
    }
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_before = list(os.getloadavg())
    env = versions()
    runs: dict[str, list[dict[str, Any]]] = {"simclr": [], "mi": []}
    summary: dict[str, list[dict[str, Any]]] = {"simclr": [], "mi": []}

    def save(final: bool) -> dict[str, Any]:
        summary["simclr"] = summarise(runs["simclr"], "lightly", "first_loss")
        summary["mi"] = summarise(runs["mi"], "torch-mist", "first_nats", relative=False)
        payload = {
            "benchmark": "bench_step",
            "started": started,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z") if final else None,
            "config": config,
            "versions": env,
            "load_average": {"before": load_before, "after": list(os.getloadavg())},
            "summary": summary,
            "runs": runs,
        }
        write_json(out / "results.json", payload)  # temporary file + os.replace
        return payload

    parts = [("simclr", a.batch_sizes, a.impls), ("mi", a.mi_batch_sizes, a.mi_impls)]
    for part, sizes, impls in parts:
        extra = {"temperature": a.temperature, "width": a.width, "samples": a.samples}
        for size in sizes:
            for impl in impls:
                args = {**common, **extra, "part": part, "impl": impl, "batch": size}
                res = run_child(args, a.timeout, a.in_process)
                res["load_after"] = list(os.getloadavg())
                runs[part].append({"size": size, "impl": impl, "result": res})
                shown = {
                    key: round(v, 5) if isinstance(v, float) else v
                    for key, v in res.items()
                    if not key.endswith(("times", "losses"))
                }
                print(f"{part:6s} {size:5d} {impl:13s} {shown}", flush=True)
                save(final=False)
    payload = save(final=True)

    threads = a.threads or torch.get_num_threads()
    med = f"median of {a.repeats} steps after {a.warmup} warm-up"
    titles = {
        "simclr": f"SimCLR step (digits, CNN w={a.width}, τ = {a.temperature}), {threads} "
        f"thread(s), {med}",
        "mi": f"MI estimator step (InfoNCE, gaussian d=20, critic 20->{HIDDEN}x{LAYERS}->"
        f"{EMBED}), {threads} thread(s), {med}",
    }
    columns = {"simclr": SSL_COLUMNS, "mi": MI_COLUMNS}
    load_after = payload["load_average"]["after"]
    loads = (
        f"load average (1, 5, 15 min): before {', '.join(f'{v:.2f}' for v in load_before)}; "
        f"after {', '.join(f'{v:.2f}' for v in load_after)}"
    )
    md = [f"# bench_step ({started})\n", loads + "\n"]
    console = Console(width=200)
    for part in ("simclr", "mi"):
        if summary[part]:
            cells = table_rows(summary[part])
            print_table(titles[part], columns[part], cells, console=console)
            md += [f"## {titles[part]}\n", markdown_table(columns[part], cells)]
    print(loads)
    atomic_write_text(out / "table.md", "\n".join(md))
    print(f"wrote {out / 'results.json'} and {out / 'table.md'}")
    return to_jsonable(payload)  # type: ignore[no-any-return]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":  # one measurement: a fresh process
        print(RESULT_PREFIX + json.dumps(child(json.loads(sys.argv[2]))), flush=True)
    else:
        main()
