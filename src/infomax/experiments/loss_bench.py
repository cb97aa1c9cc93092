"""Loss-kernel benchmark (SPEC §8): every tiled path against the GEMM lower bound and two peers.

For each batch of ``B`` pairs (``d = 128``, fp32) and each implementation (:data:`IMPLS`) — the
SimCLR ``2B``-anchor form: ``tiled`` (:func:`infomax.kernels.ntxent_loss`, symmetric 2-GEMM
kernel), ``tiled-3gemm`` (NT-Xent on the general kernel), ``fmicl-<divergence>`` (every f-MICL
divergence, :class:`infomax.losses.FMICLLoss`), ``dense`` (the materialised reference), and when
installed lightly's and pytorch-metric-learning's ``NTXentLoss``; paired ``[B, d]`` embeddings
(estimation, MoCo v3): ``pair-infonce`` and ``pair-infonce-2sided``
(:class:`infomax.losses.InfoNCELoss`); across 2 gloo ranks with gathered columns:
``cross-rank`` (NT-Xent) and ``cross-rank-pair`` (InfoNCE) — a **fresh subprocess** times
forward + backward (median of ``repeats`` runs after one warm-up) and reports its peak resident
memory above its own baseline (``ru_maxrss`` after imports, before the inputs exist, to the end
of the warm-up run). The same process measures the machine's GEMM rate on the kernel's shapes
(best of several) right before every timed run, so each run is set against the lower bound of 3
GEMM units (:func:`workload`: ``2·R·C·d`` FLOP for ``R`` anchor rows and ``C`` columns; 6 for the
two-sided loss) at the rate of that moment; the rate swings with host load, so only ratios mean
anything, and the reported ratio is the median of the per-run ratios. The symmetric kernel also
gets its ratio to its own 2 units. Across ranks every rank is timed against its own share of the
work at its own GEMM rate and the slowest rank counts. Each child runs under an address-space cap
so a peer that needs ``O(B²)`` or ``O(B³)`` memory fails cleanly (reported as a result) instead
of pushing the shared host into swap or the OOM killer.

lightly's ``lightly.loss`` imports ``torchvision.ops`` at import time although NT-Xent does not use
it: the benchmark child (never the library) installs an import hook that serves an empty stand-in
``torchvision`` before importing it.

``run(LossBenchConfig(...))`` returns a :class:`LossBenchResult`; its ``write(out)`` puts
``results.json``, ``bench_losses.csv`` and ``bench_losses.png`` into ``out``.

>>> LossBenchConfig(batch_sizes=(512,), impls=("tiled", "dense")).impls
('tiled', 'dense')
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: f-MICL divergences benchmarked on the general kernel (``fmicl-<name>``).
FMICL_DIVERGENCES = ("kl", "js", "pearson", "sqhellinger", "tsallis", "vlc")
#: Every benchmarked path. SimCLR ``2B``-anchor form: ``tiled`` (NT-Xent, symmetric 2-GEMM
#: kernel), ``tiled-3gemm`` (NT-Xent, general kernel), ``fmicl-*`` (general kernel), ``dense``,
#: ``lightly``, ``pml``; paired ``[B, d]`` embeddings (estimation, MoCo v3): ``pair-infonce``,
#: ``pair-infonce-2sided``; across 2 gloo ranks (each rank ``B/2`` pairs, columns gathered):
#: ``cross-rank`` (NT-Xent) and ``cross-rank-pair`` (InfoNCE).
IMPLS = (
    "tiled",
    "tiled-3gemm",
    *(f"fmicl-{name}" for name in FMICL_DIVERGENCES),
    "pair-infonce",
    "pair-infonce-2sided",
    "cross-rank",
    "cross-rank-pair",
    "dense",
    "lightly",
    "pml",
)
#: The paths the README / docs table reports at B = 8192 and 16384.
KERNEL_IMPLS = IMPLS[:-3]
DEFAULT_BATCHES = (512, 2048, 8192, 16384, 32768)
CROSS_RANK_WORLD = 2


def workload(impl: str, batch: int, dim: int) -> tuple[float, int]:
    """``(FLOP of one GEMM unit, units in the lower bound)`` of one (rank's) forward + backward:
    a unit is ``2·R·C·d`` for ``R`` anchor rows against ``C`` columns, and the bound is 3 units
    (the score GEMM and two gradient GEMMs; 6 for the two-sided loss, which has two matrices)."""
    pair = impl in ("pair-infonce", "pair-infonce-2sided", "cross-rank-pair")
    cols = batch if pair else 2 * batch
    rows = cols // CROSS_RANK_WORLD if impl.startswith("cross-rank") else cols
    return 2.0 * rows * cols * dim, 6 if impl == "pair-infonce-2sided" else 3


@dataclass(frozen=True)
class LossBenchConfig:
    """Settings of :func:`run` (written into ``results.json``)."""

    batch_sizes: tuple[int, ...] = DEFAULT_BATCHES
    dim: int = 128
    repeats: int = 5
    temperature: float = 0.2
    impls: tuple[str, ...] = IMPLS  # "kernels": every tiled path (KERNEL_IMPLS)
    threads: int = 1  # 0: torch's default; 1 is steadiest on a shared host
    seed: int = 0
    memory_cap_gib: float = 0.0  # 0: min(14 GiB, MemAvailable − 4 GiB)
    timeout_s: float = 3600.0
    max_run_s: float = 30.0  # a warm-up slower than this gets only ``slow_repeats`` timed runs
    slow_repeats: int = 2
    tile_size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 2:
            raise ValueError(f"batch sizes must be >= 2, got {self.batch_sizes}")
        if self.dim < 1 or self.repeats < 1:
            raise ValueError("dim and repeats must be >= 1")
        if "kernels" in self.impls:  # shorthand: every tiled path
            expanded = (i for n in self.impls for i in (KERNEL_IMPLS if n == "kernels" else (n,)))
            object.__setattr__(self, "impls", tuple(dict.fromkeys(expanded)))
        unknown = set(self.impls) - set(IMPLS)
        if unknown:
            raise ValueError(f"unknown implementations {sorted(unknown)}; valid: {IMPLS}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


# ------------------------------------------------------------------------------------------------
# Child process


def _install_torchvision_stub() -> None:
    """Serve an empty stand-in for ``torchvision`` (benchmark child only; see module doc)."""
    import importlib.abc
    import importlib.machinery
    import types

    class _Stub(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            if name.startswith("__"):
                raise AttributeError(name)
            return type(name, (), {})

    class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
            if fullname == "torchvision" or fullname.startswith("torchvision."):
                return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
            return None

        def create_module(self, spec: Any) -> types.ModuleType:
            module = _Stub(spec.name)
            module.__path__ = []
            return module

        def exec_module(self, module: types.ModuleType) -> None:
            return None

    sys.meta_path.insert(0, _Finder())


def _loss_fn(impl: str, temperature: float, tile_size: Any) -> Callable[..., Any]:
    import torch

    ts = tuple(tile_size) if isinstance(tile_size, list) else tile_size
    if impl == "cross-rank":  # the drop-in module, as a torchrun user runs it
        from infomax.losses import NTXentLoss as OurNTXent

        return OurNTXent(temperature, impl="tiled", tile_size=ts)
    if impl in ("tiled", "tiled-3gemm", "dense"):
        from infomax.kernels import ntxent_loss

        mode = "dense" if impl == "dense" else "tiled"
        sym = {"tiled": True, "tiled-3gemm": False}.get(impl)
        return lambda z1, z2: ntxent_loss(
            z1, z2, temperature=temperature, impl=mode, tile_size=ts, symmetric=sym
        )
    if impl.startswith("fmicl-"):
        from infomax.losses import FMICLLoss

        return FMICLLoss(impl[6:], temperature=temperature, impl="tiled", tile_size=ts)
    if impl in ("pair-infonce", "pair-infonce-2sided", "cross-rank-pair"):
        from infomax.losses import InfoNCELoss

        two = impl == "pair-infonce-2sided"
        return InfoNCELoss(temperature, symmetric=two, impl="tiled", tile_size=ts)
    if impl == "lightly":
        _install_torchvision_stub()
        from lightly.loss import NTXentLoss

        return NTXentLoss(temperature=temperature)  # type: ignore[no-any-return]
    from pytorch_metric_learning.losses import NTXentLoss as PMLNTXent

    pml = PMLNTXent(temperature=temperature)

    def pml_loss(z1: Any, z2: Any) -> Any:
        labels = torch.arange(z1.shape[0]).repeat(2)
        return pml(torch.cat([z1, z2]), labels)

    return pml_loss


def _vm_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _mem_available() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def gemm_rate(dim: int = 128, seconds: float = 0.25) -> float:
    """Best measured fp32 GEMM rate (FLOP/s) over the kernel's tile shapes and a square one."""
    import torch

    shapes = [(256, dim, 4096), (256, 4096, dim), (4096, 256, dim), (1024, dim, 1024)]
    shapes += [(1024, 1024, dim), (2048, dim, 2048)]
    best = 0.0
    for m, k, n in shapes:
        x, y, out = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)
        torch.mm(x, y, out=out)
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            torch.mm(x, y, out=out)
            reps += 1
        best = max(best, 2.0 * m * k * n * reps / (time.perf_counter() - start))
    return best


def _child(args: dict[str, Any]) -> dict[str, Any]:
    """Time and measure one (implementation, batch) in this fresh process."""
    import torch

    if args["threads"]:
        torch.set_num_threads(args["threads"])
    out: dict[str, Any] = {"threads": torch.get_num_threads()}
    try:
        fn = _loss_fn(args["impl"], args["temperature"], args["tile_size"])
    except ImportError as err:
        return {**out, "status": f"not installed ({err.name})"}
    cap = int(args["cap_bytes"])
    resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + cap, resource.RLIM_INFINITY))
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times: list[float] = []
    ratios: list[float] = []
    rates: list[float] = []
    unit, units = workload(args["impl"], args["batch"], args["dim"])
    rank, world = args.get("rank", 0), args.get("world", 1)
    try:
        g = torch.Generator().manual_seed(args["seed"])
        b, d = args["batch"], args["dim"]
        rows = slice(rank * b // world, (rank + 1) * b // world)  # this rank's pairs
        z1 = torch.randn(b, d, generator=g)[rows].clone().requires_grad_(True)
        z2 = torch.randn(b, d, generator=g)[rows].clone().requires_grad_(True)
        barrier = torch.distributed.barrier if world > 1 else (lambda: None)
        runs = args["repeats"]
        rep = 0
        while rep <= runs:
            z1.grad = z2.grad = None
            if rep:  # GEMM rate right before each timed run (its buffers are small)
                rates.append(gemm_rate(args["dim"], seconds=0.1))
            barrier()
            start = time.perf_counter()
            loss = fn(z1, z2)
            loss.backward()
            elapsed = time.perf_counter() - start
            if rep == 0:  # the warm-up run sets the peak memory (before any GEMM probe)
                out["peak_mb"] = (
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_kb
                ) / 1024
                if elapsed > args["max_run_s"]:  # slow configuration: fewer timed runs
                    runs = min(runs, args["slow_repeats"])
            else:
                times.append(elapsed)
                ratios.append(elapsed / (units * unit / rates[-1]))
            rep += 1
        out["loss"] = float(loss)
        out["status"] = "ok"
    except (RuntimeError, MemoryError) as err:
        out["status"] = f"OOM (cap {cap / 2**30:.0f} GiB)"
        out["error"] = str(err).splitlines()[0][:200]
        out["peak_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_kb) / 1024
    if times:
        out.update(
            median_s=statistics.median(times), min_s=min(times), times=times, runs=len(times)
        )
        out.update(median_ratio=statistics.median(ratios), gemm_flops=statistics.median(rates))
        out["ratios"] = ratios
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    if not rates:
        out["gemm_flops"] = gemm_rate(args["dim"])
    return out


def _rank_child(rank: int, args: dict[str, Any], init_file: str, queue: Any) -> None:
    """One gloo rank of a ``cross-rank*`` measurement (one thread; see :func:`_cross_rank`)."""
    import torch

    from .. import dist

    torch.set_num_threads(max(1, args["threads"]))
    world = args["world"]
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    try:
        # every rank must time the same number of runs (they meet at barriers)
        queue.put((rank, _child({**args, "rank": rank, "threads": 0, "max_run_s": math.inf})))
    finally:
        dist.shutdown()


def _cross_rank(args: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`_child` on :data:`CROSS_RANK_WORLD` gloo ranks (spawned) and combine them: each
    timed run's time is the slowest rank's, its ratio the largest rank ratio (each rank against
    its own share of the work at its own GEMM rate); peak memory is the largest rank's."""
    import multiprocessing as mp
    import tempfile

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    world = CROSS_RANK_WORLD
    with tempfile.TemporaryDirectory() as tmp:
        init = os.path.join(tmp, "rendezvous")
        procs = [
            ctx.Process(target=_rank_child, args=(r, {**args, "world": world}, init, queue))
            for r in range(world)
        ]
        for proc in procs:
            proc.start()
        results = dict(queue.get(timeout=args.get("timeout_s", 3600.0)) for _ in procs)
        for proc in procs:
            proc.join()
    per_rank = [results[r] for r in range(world)]
    out: dict[str, Any] = {"threads": per_rank[0].get("threads"), "world": world}
    bad = [r for r in per_rank if r.get("status") != "ok"]
    if bad:
        return {**out, **bad[0]}
    times = [max(t) for t in zip(*(r["times"] for r in per_rank), strict=True)]
    ratios = [max(x) for x in zip(*(r["ratios"] for r in per_rank), strict=True)]
    out.update(
        status="ok",
        times=times,
        runs=len(times),
        median_s=statistics.median(times),
        min_s=min(times),
        median_ratio=statistics.median(ratios),
        gemm_flops=statistics.median([r["gemm_flops"] for r in per_rank]),
        peak_mb=max(r["peak_mb"] for r in per_rank),
        # each rank's module loss is its local-mean loss (world × share): their mean is global
        loss=statistics.mean(r["loss"] for r in per_rank),
    )
    return out


# ------------------------------------------------------------------------------------------------
# Parent


def run_json_child(
    cmd: list[str], timeout: float, prefix: str = "", env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run a benchmark child process and return the JSON object on its last stdout line that
    starts with ``prefix + "{"``; a timeout, a non-zero exit or no such line becomes
    ``{"status": "failed: ..."}`` (with the last line of stderr). Shared by the benchmarks."""
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
    except subprocess.TimeoutExpired:
        return {"status": f"failed: timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(prefix + "{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:160]
        return {"status": f"failed: exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1][len(prefix) :])  # type: ignore[no-any-return]


def _run_child(args: dict[str, Any], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "infomax.experiments.loss_bench", "--child", json.dumps(args)]
    return run_json_child(cmd, timeout)


@dataclass
class LossBenchResult:
    """One row per (batch, implementation) with ``status``, ``median_s``, ``peak_mb``,
    ``gemm_gflops``, ``bound_s`` (3 GEMM units at that rate), ``ratio_to_bound`` and
    ``speedup_vs_lightly``."""

    config: LossBenchConfig
    rows: list[dict[str, Any]]

    def write(self, out: str | os.PathLike[str]) -> Path:
        """``bench_losses.csv``, ``bench_losses.png`` and ``results.json`` into ``out``."""
        from ..reports import write_csv, write_results

        folder = Path(out)
        write_csv(folder / "bench_losses.csv", self.rows)
        plot_loss_bench(self.rows, folder / "bench_losses.png")
        cfg = self.config
        write_results(folder, config=asdict(cfg), results={"rows": self.rows}, seed=cfg.seed)
        return folder


def run(
    config: LossBenchConfig, progress: Callable[[dict[str, Any]], None] | None = None
) -> LossBenchResult:
    """Run every (batch, implementation) in its own process; ``progress(row)`` after each."""
    cap = config.memory_cap_gib * 2**30
    if cap <= 0:
        cap = max(2 * 2**30, min(14 * 2**30, _mem_available() - 4 * 2**30))
    rows: list[dict[str, Any]] = []
    for batch in config.batch_sizes:
        for impl in config.impls:
            args = {
                "impl": impl,
                "batch": batch,
                "dim": config.dim,
                "repeats": config.repeats,
                "temperature": config.temperature,
                "threads": config.threads,
                "seed": config.seed,
                "cap_bytes": cap,
                "tile_size": config.tile_size,
                "max_run_s": config.max_run_s,
                "slow_repeats": config.slow_repeats,
            }
            res = _run_child(args, config.timeout_s)
            unit, units = workload(impl, batch, config.dim)
            k = batch if "pair" in impl else 2 * batch
            row: dict[str, Any] = {"B": batch, "embeddings": k, "impl": impl}
            row["status"] = res.get("status", "failed")
            row["error"] = res.get("error", "")
            row["median_s"] = res.get("median_s", float("nan"))
            row["min_s"] = res.get("min_s", float("nan"))
            row["runs"] = res.get("runs", 0)
            row["peak_mb"] = res.get("peak_mb", float("nan"))
            rate = res.get("gemm_flops", float("nan"))
            row["gemm_gflops"] = rate / 1e9
            row["bound_s"] = units * unit / rate if rate == rate else float("nan")
            row["ratio_to_bound"] = res.get("median_ratio", float("nan"))
            # the symmetric kernel needs 2 units: its ratio to that
            two = impl == "tiled" and row["ratio_to_bound"] == row["ratio_to_bound"]
            row["ratio_to_2gemm"] = 1.5 * row["ratio_to_bound"] if two else float("nan")
            row["ranks"] = res.get("world", 1)
            row["loss"] = res.get("loss", float("nan"))
            row["threads"] = res.get("threads", 0)
            row["load_1min"] = os.getloadavg()[0]
            rows.append(row)
            if progress is not None:
                progress(row)
    for row in rows:
        ref = [r for r in rows if r["B"] == row["B"] and r["impl"] == "lightly"]
        ok = ref and ref[0]["status"] == "ok" and row["status"] == "ok"
        row["speedup_vs_lightly"] = ref[0]["median_s"] / row["median_s"] if ok else float("nan")
    return LossBenchResult(config, rows)


def run_loss_bench(
    config: LossBenchConfig,
    out_dir: str | os.PathLike[str],
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """:func:`run`, then ``write(out_dir)``; returns the rows (``benchmarks/bench_losses.py``)."""
    result = run(config, progress)
    result.write(out_dir)
    return result.rows


def plot_loss_bench(rows: list[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """Log-log time and peak memory against ``B`` for each implementation (failures omitted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..reports import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for impl in dict.fromkeys(r["impl"] for r in rows):
        ok = [r for r in rows if r["impl"] == impl and r["status"] == "ok"]
        if not ok:
            continue
        bs = [r["B"] for r in ok]
        axes[0].plot(bs, [r["median_s"] for r in ok], "o-", label=impl)
        axes[1].plot(bs, [max(r["peak_mb"], 1e-1) for r in ok], "o-", label=impl)
    bounds = [r for r in rows if r["impl"] == rows[0]["impl"] and r["bound_s"] == r["bound_s"]]
    if bounds:
        axes[0].plot(
            [r["B"] for r in bounds], [r["bound_s"] for r in bounds], "k--", label="3 GEMM"
        )
    for ax, label in zip(axes, ("forward + backward time (s)", "peak memory (MB)"), strict=True):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("B (pairs; 2B embeddings, d = 128, fp32)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    axes[0].set_title("NT-Xent forward + backward")
    axes[1].set_title("peak RSS above baseline")
    save_figure(fig, path)


TABLE_COLUMNS = (
    "B",
    "impl",
    "status",
    "runs",
    "median_s",
    "peak_mb",
    "gemm_gflops",
    "bound_s",
    "ratio_to_bound",
    "ratio_to_2gemm",
    "speedup_vs_lightly",
)


def table_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Rows for :func:`infomax.reports.print_table` / ``markdown_table`` (``TABLE_COLUMNS``)."""
    return [[r[c] for c in TABLE_COLUMNS] for r in rows]


if __name__ == "__main__":  # child entry point: python -m infomax.experiments.loss_bench --child
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child_args = json.loads(sys.argv[2])
        runner = _cross_rank if child_args["impl"].startswith("cross-rank") else _child
        print(json.dumps(runner(child_args)), flush=True)
    else:
        sys.exit("usage: python -m infomax.experiments.loss_bench --child JSON (see benchmarks/)")
