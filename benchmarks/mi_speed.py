"""Speed of MI estimation: seconds per 1 000 steps at K = 128, infomax vs torch-mist 0.2.17.

Usage (in a venv holding infomax *and* torch-mist; see ``docs/benchmarks-mi-speed.md``)::

    python benchmarks/mi_speed.py --out /tmp/mi_speed
    python benchmarks/mi_speed.py --steps 1000 --repeats 3 --threads 1 --bounds infonce flo

For every bound both libraries have, on the 20-D correlated Gaussian (``make_task("gaussian",
dim=20, mi=4)``, 20 000 samples), with the same separable critic on both sides (MLPs
``20 -> 256 -> 256 -> 32`` per side, dot product) and Adam (lr 5e-4), in one process:

(a) **raw step** — seconds per ``--steps`` optimisation steps (batch drawn with replacement,
    loss, backward, Adam step; the same batches for both libraries): ours through
    ``MIObjective(bound, critic, dx, dy).loss(x, y)``, torch-mist through its estimator's
    ``loss(x, y)``;
(b) **front door** — seconds of one call to ``infomax.estimate_mi(x, y, bound=..., steps=...,
    batch_size=128, patience=10**6, progress=False)`` against ``torch_mist.estimate_mi(...,
    max_iterations=steps, batch_size=128, early_stopping=False)``, each with its own default
    evaluation (see ``docs/benchmarks-mi-speed.md`` for what each includes).

After one untimed warm-up per (bound, library), ``--repeats`` timed runs interleave the two
libraries (the order alternates between repeats) so that load on a shared machine hits both
alike; the table shows medians and the ratio ours / torch-mist. Writes ``results.json`` (config,
versions, load averages, every run) atomically after each measurement, and ``table.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

BOUNDS = ("infonce", "nwj", "dv", "mine", "tuba", "js", "smile", "flo")
K = 128
HIDDEN = 256
LAYERS = 2
EMBED = 32

#: What torch-mist offers for each of our bounds (``None``: not there).
MIST_COUNTERPART = {
    "infonce": "infonce(neg_samples=0)",
    "nwj": "nwj(neg_samples=-1)",
    "dv": "composed: BaselineDiscriminativeMIEstimator(BatchLogMeanExp('all'), neg_samples=-1)",
    "mine": "mine(neg_samples=-1, gamma=0.99)",
    "tuba": "TUBA(separable_critic, baseline_nn(x), neg_samples=-1)",
    "js": "js(neg_samples=-1)",
    "smile": "smile(neg_samples=-1, tau=5)",
    "flo": "flo(neg_samples=-1), u = 2nd separable head on a shared trunk",
}


# ------------------------------------------------------------------------------------ builders
def build_ours(bound: str, dim_x: int, dim_y: int, seed: int) -> torch.nn.Module:
    """``MIObjective`` with the dot critic (``g, h: dim -> 256 -> 256 -> 32``)."""
    from infomax.critics import build_critic
    from infomax.objectives import MIObjective

    torch.manual_seed(seed)
    critic = build_critic("dot", dim_x, dim_y, hidden=HIDDEN, layers=LAYERS, embed_dim=EMBED)
    return MIObjective(bound, critic, dim_x, dim_y, hidden=HIDDEN, layers=LAYERS)


def build_mist(bound: str, dim_x: int, dim_y: int, seed: int) -> torch.nn.Module:
    """torch-mist's estimator for ``bound`` with its separable critic (``f_x, f_y: dim -> 256 ->
    256 -> 32``, dot product) and the same negatives as ours: every other pair of the batch
    (``neg_samples=-1``; InfoNCE, like ours, all ``K`` columns: ``neg_samples=0``)."""
    from torch_mist import estimators as te
    from torch_mist.baseline import BatchLogMeanExp
    from torch_mist.baseline.factories import baseline_nn
    from torch_mist.critic.factories import separable_critic
    from torch_mist.estimators.discriminative.base import BaselineDiscriminativeMIEstimator

    torch.manual_seed(seed)
    common: dict[str, Any] = dict(
        x_dim=dim_x, y_dim=dim_y, hidden_dims=[HIDDEN] * LAYERS, k_dim=EMBED
    )
    sep = dict(critic_type="separable")
    if bound == "infonce":
        return te.infonce(**common, **sep, neg_samples=0)
    if bound == "nwj":
        return te.nwj(**common, **sep, neg_samples=-1)
    if bound == "mine":  # our MINELoss EMA rate is 0.01, i.e. gamma = 0.99
        return te.mine(**common, **sep, neg_samples=-1, gamma=0.99)
    if bound == "js":
        return te.js(**common, **sep, neg_samples=-1)
    if bound == "smile":
        return te.smile(**common, **sep, neg_samples=-1, tau=5.0)
    if bound == "flo":
        return te.flo(**common, **sep, neg_samples=-1)
    critic = separable_critic(dim_x, dim_y, hidden_dims=[HIDDEN] * LAYERS, k_dim=EMBED)
    if bound == "tuba":  # te.tuba(...) cannot take critic options (it iterates `for k, v in
        # kwargs`), so build it from the same parts as the factory does
        baseline = baseline_nn(x_dim=dim_x, hidden_dims=[HIDDEN] * LAYERS)
        return te.TUBA(critic=critic, baseline=baseline, neg_samples=-1)
    if bound == "dv":  # no factory: DV is MINE's evaluation form, log Z = log mean exp(f_)
        return BaselineDiscriminativeMIEstimator(
            critic=critic, baseline=BatchLogMeanExp("all"), neg_samples=-1
        )
    raise ValueError(f"no torch-mist counterpart for {bound!r}")


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# ------------------------------------------------------------------------------------- timing
def raw_steps(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    params: list[torch.nn.Parameter],
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    lr: float,
    batch_seed: int,
) -> tuple[float, float]:
    """``(seconds, last loss)`` of ``steps`` Adam steps on batches of ``K`` pairs drawn with
    replacement (the generator is seeded: both libraries see the same batches)."""
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(batch_seed)
    n = x.shape[0]
    loss = torch.zeros(())
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(n, (K,), generator=gen)
        loss = loss_fn(x[idx], y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    return seconds, float(loss.detach())


def raw_ours(bound: str, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float, seed: int):
    obj = build_ours(bound, x.shape[1], y.shape[1], seed)
    obj.train()
    return raw_steps(lambda a, b: obj.loss(a, b)[0], list(obj.parameters()), x, y, steps, lr, seed)


def raw_mist(bound: str, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float, seed: int):
    est = build_mist(bound, x.shape[1], y.shape[1], seed)
    est.train()
    return raw_steps(est.loss, list(est.parameters()), x, y, steps, lr, seed)


def front_ours(bound: str, data: dict[str, torch.Tensor], steps: int, seed: int) -> dict:
    import infomax

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            est = infomax.estimate_mi(
                data["x"],
                data["y"],
                bound=bound,
                steps=steps,
                batch_size=K,
                patience=10**6,
                progress=False,
            )
        except Exception as err:  # a failed estimate still took its time
            return {"seconds": time.perf_counter() - start, "error": repr(err)}
    seconds = time.perf_counter() - start
    info = {"seconds": seconds, "mi": float(est.mi), "steps": int(est.steps)}
    for name in ("n_train", "n_val", "n_test", "seconds"):
        if hasattr(est, name):
            info["reported_" + name if name == "seconds" else name] = getattr(est, name)
    info["evaluations"] = len(getattr(est, "history", []))
    return info


def front_mist(bound: str, data: dict[str, torch.Tensor], steps: int, seed: int) -> dict:
    from torch_mist import estimate_mi as mist_estimate_mi

    start = time.perf_counter()
    est = build_mist(bound, data["x"].shape[1], data["y"].shape[1], seed)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            mi, log = mist_estimate_mi(
                data=(data["x_train"], data["y_train"]),
                estimator=est,
                test_data=(data["x_test"], data["y_test"]),
                max_iterations=steps,
                batch_size=K,
                optimizer_params={"lr": data["lr"]},
                early_stopping=False,
                verbose=False,
            )
        except Exception as err:
            return {"seconds": time.perf_counter() - start, "error": repr(err)}
    seconds = time.perf_counter() - start
    info: dict[str, Any] = {"seconds": seconds, "mi": float(mi)}
    try:
        train_rows = log[(log["split"] == "train") & (log["name"] == "loss")]
        info["steps"] = int(train_rows["iteration"].max())
        info["valid_evaluations"] = int((log["split"] == "valid").sum())
    except Exception:  # the log's layout is torch-mist's business
        pass
    return info


# ------------------------------------------------------------------------------------ output
def atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def git_state() -> dict[str, Any]:
    """Commit of the infomax checkout and whether its ``src/`` has uncommitted changes."""
    import subprocess

    import infomax

    root = Path(infomax.__file__).resolve().parents[2]

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD"), "src_dirty": bool(git("status", "--short", "src"))}


def versions() -> dict[str, Any]:
    import torch_mist

    import infomax

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_mist": torch_mist.__version__,
        "infomax": getattr(infomax, "__version__", "unknown"),
        "infomax_git": git_state(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
    }


def med(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def summarise(runs: dict[str, dict[str, list[dict]]], bounds: list[str]) -> list[dict]:
    rows = []
    for b in bounds:
        row: dict[str, Any] = {"bound": b, "torch_mist": MIST_COUNTERPART[b]}
        for part in ("raw", "front"):
            ours = [r["seconds"] for r in runs[b][f"{part}_ours"]]
            mist = [r["seconds"] for r in runs[b][f"{part}_mist"]]
            row[f"{part}_ours_s"] = med(ours)
            row[f"{part}_mist_s"] = med(mist)
            row[f"{part}_ratio"] = med(ours) / med(mist) if ours and mist else math.nan
            paired = [o / m for o, m in zip(ours, mist, strict=False)]
            row[f"{part}_paired_ratio_median"] = med(paired)
        rows.append(row)
    return rows


COLUMNS = (
    "bound",
    "(a) ours s/1k",
    "(a) torch-mist s/1k",
    "(a) ours/mist",
    "(b) ours s",
    "(b) torch-mist s",
    "(b) ours/mist",
)


def table_cells(row: dict, per: float) -> list[str]:
    def f(v: float, fmt: str = "{:.2f}") -> str:
        return "—" if v is None or not math.isfinite(v) else fmt.format(v)

    return [
        row["bound"],
        f(row["raw_ours_s"] * per),
        f(row["raw_mist_s"] * per),
        f(row["raw_ratio"]),
        f(row["front_ours_s"]),
        f(row["front_mist_s"]),
        f(row["front_ratio"]),
    ]


def markdown(rows: list[dict], per: float) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(table_cells(r, per)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def print_rich(rows: list[dict], per: float, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in COLUMNS:
        table.add_column(c, no_wrap=True)
    for r in rows:
        table.add_row(*table_cells(r, per))
    Console(width=max(120, Console().width)).print(table)


# --------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run the interleaved measurements, print and write the results."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/mi_speed", help="output directory")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup-steps", type=int, default=100, help="untimed raw steps per pair")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch default)")
    p.add_argument("--bounds", nargs="+", default=list(BOUNDS), choices=BOUNDS)
    p.add_argument("--samples", type=int, default=20_000)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-front-door", action="store_true", help="only (a) raw steps")
    a = p.parse_args(argv)

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    # torch-mist's cache registers a full backward hook on its estimators; torch warns once
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    from infomax.tasks import make_task

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    task = make_task("gaussian", dim=20, mi=4)
    xs, ys = task.sample(a.samples, seed=a.seed)
    x = torch.as_tensor(np.asarray(xs), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(ys), dtype=torch.float32)
    # raw steps: standardised once (our front door does it itself, torch-mist's does not)
    xz = (x - x.mean(0)) / x.std(0)
    yz = (y - y.mean(0)) / y.std(0)
    perm = torch.from_numpy(np.random.default_rng(a.seed).permutation(a.samples))
    n_test = a.samples // 5
    tr, te = perm[n_test:], perm[:n_test]
    data = {
        "x": x,
        "y": y,
        "x_train": xz[tr],
        "y_train": yz[tr],
        "x_test": xz[te],
        "y_test": yz[te],
        "lr": a.lr,
    }
    dx, dy = x.shape[1], y.shape[1]
    params = {
        b: {"ours": n_params(build_ours(b, dx, dy, 0)), "mist": n_params(build_mist(b, dx, dy, 0))}
        for b in a.bounds
    }
    config = {
        "task": task.id if hasattr(task, "id") else "gaussian-d20-mi4",
        "true_mi": float(task.mutual_information),
        "samples": a.samples,
        "K": K,
        "steps": a.steps,
        "repeats": a.repeats,
        "warmup_steps": a.warmup_steps,
        "threads": torch.get_num_threads(),
        "lr": a.lr,
        "seed": a.seed,
        "critic": f"separable dot, MLP {dx}->{HIDDEN}x{LAYERS}->{EMBED} per side",
        "torch_mist_estimators": {b: MIST_COUNTERPART[b] for b in a.bounds},
        "trainable_parameters": params,
        "raw_step": "batch (randint with replacement) + loss + backward + Adam step; "
        "plain torch.optim.Adam(params, lr) on both sides; no gradient clipping",
        "front_door_ours": "infomax.estimate_mi(x, y, bound, steps, batch_size=128, "
        "patience=10**6, progress=False) on all samples (its own split, standardisation, "
        "gradient clipping, periodic held-out evaluation, final test evaluation)",
        "front_door_mist": "torch_mist.estimate_mi(data=80% train, test_data=20%, "
        "max_iterations=steps, batch_size=128, early_stopping=False, verbose=False): "
        "DataLoader batches, 10% of train held out for validation after every epoch, "
        "mutual_information logged on every training batch, final evaluation on test_data",
    }
    runs: dict[str, dict[str, list[dict]]] = {
        b: {k: [] for k in ("raw_ours", "raw_mist", "front_ours", "front_mist")} for b in a.bounds
    }
    loads: list[dict] = []
    env = versions()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    def save(final: bool = False) -> list[dict]:
        rows = summarise(runs, a.bounds)
        payload = {
            "benchmark": "mi_speed",
            "started": started,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z") if final else None,
            "config": config,
            "versions": env,
            "load_average": {
                "samples": loads,
                "min_1min": min((s["load"][0] for s in loads), default=None),
                "max_1min": max((s["load"][0] for s in loads), default=None),
            },
            "summary": rows,
            "runs": runs,
        }
        atomic_write(out / "results.json", json.dumps(payload, indent=2, default=str) + "\n")
        return rows

    def record(bound: str, kind: str, info: dict) -> None:
        info["load_after"] = list(os.getloadavg())
        runs[bound][kind].append(info)
        loads.append({"bound": bound, "kind": kind, "load": info["load_after"]})
        shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in info.items()}
        print(f"{bound:8s} {kind:10s} {shown}", flush=True)
        save()

    # warm-up: every code path once, untimed (allocator, kernels, imports)
    for b in a.bounds:
        raw_ours(b, xz, yz, a.warmup_steps, a.lr, a.seed)
        raw_mist(b, xz, yz, a.warmup_steps, a.lr, a.seed)
    if not a.skip_front_door:
        front_ours(a.bounds[0], data, min(a.steps, 100), a.seed)
        front_mist(a.bounds[0], data, min(a.steps, 100), a.seed)

    Run = Callable[[str, int], dict]

    def raw(fn: Callable[..., tuple[float, float]]) -> Run:  # (seconds, last loss) -> record
        def run(b: str, seed: int) -> dict:
            seconds, last = fn(b, xz, yz, a.steps, a.lr, seed)
            return {"seconds": seconds, "last_loss": last}

        return run

    def front(fn: Callable[..., dict]) -> Run:
        return lambda b, seed: fn(b, data, a.steps, seed)

    parts: list[tuple[str, Run, Run]] = [("raw", raw(raw_ours), raw(raw_mist))]
    if not a.skip_front_door:
        parts.append(("front", front(front_ours), front(front_mist)))
    for part, ours, mist in parts:  # ours / torch-mist interleaved, order alternating per repeat
        for rep in range(a.repeats):
            order = (("ours", ours), ("mist", mist))
            for b in a.bounds:
                for name, fn in order[:: -1 if rep % 2 else 1]:
                    record(b, f"{part}_{name}", {"repeat": rep, **fn(b, a.seed + rep)})

    rows = save(final=True)
    per = 1000.0 / a.steps
    title = (
        f"Seconds per 1 000 steps (a) / per estimate_mi call of {a.steps} steps (b), K = {K}, "
        f"{torch.get_num_threads()} thread(s), median of {a.repeats}"
    )
    print_rich(rows, per, title)
    md = markdown(rows, per)
    atomic_write(out / "table.md", md)
    print(md)
    print(f"wrote {out / 'results.json'} and {out / 'table.md'}")


if __name__ == "__main__":
    main()
