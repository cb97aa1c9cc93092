"""Step time of distributed SimCLR training for 1 vs N processes (a command, not a test).

Each configuration runs under ``torchrun --standalone --nproc-per-node N`` with the same
**global** batch (split over the ranks), the small CNN on 28×28 inputs, kornia augmentation on,
negatives gathered across ranks and (with ``--sync-bn``) global batch norm; it reports the median
seconds per optimiser step and images/s. On a CPU machine with few cores N processes share the
same cores, so expect no speed-up there: the point of the CPU run is that it works and what the
communication costs; on N GPUs the step time should fall.

    python benchmarks/bench_dist.py --nprocs 1,2 --batch-size 256 --threads-per-proc 1
    python benchmarks/bench_dist.py --nprocs 1,2,4,8 --device cuda --batch-size 4096

Writes ``results.json`` and ``bench_dist.csv`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch


def worker(args: argparse.Namespace) -> None:
    """Runs on every rank: time ``--steps`` SimCLR steps after ``--warmup`` untimed ones."""
    from infomax import dist
    from infomax.augment import build_augment
    from infomax.ssl import SSLConfig, build_model
    from infomax.train import TrainConfig, build_optimizer, resolve_device

    torch.set_num_threads(args.threads_per_proc)
    with dist.process_group(device=args.device):
        device = resolve_device(args.device)
        world, rank = dist.world_size(), dist.rank()
        torch.manual_seed(0)
        cfg = SSLConfig(data="mnist", encoder="cnn", width=args.width, progress=False)
        model = build_model(cfg).to(device)
        if args.sync_bn and world > 1:
            dist.convert_sync_batchnorm(model, device)
        opt = build_optimizer(model, TrainConfig(lr=1e-3))
        net: torch.nn.Module = model
        if world > 1:
            ids = [device.index] if device.type == "cuda" else None
            net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        aug = build_augment("mnist").to(device)
        local = args.batch_size // world
        x = torch.rand(local, 1, 28, 28, device=device)
        times = []
        for i in range(args.warmup + args.steps):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            loss = net(aug(x), aug(x))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
        if rank == 0:
            med = statistics.median(times)
            print(
                "RESULT "
                + json.dumps(
                    {
                        "nprocs": world,
                        "device": str(device),
                        "global_batch": args.batch_size,
                        "local_batch": local,
                        "threads_per_proc": args.threads_per_proc,
                        "sync_bn": args.sync_bn,
                        "median_step_s": med,
                        "min_step_s": min(times),
                        "images_per_s": args.batch_size / med,
                        "steps": len(times),
                    }
                ),
                flush=True,
            )


def driver(args: argparse.Namespace) -> None:
    """Launch one torchrun per process count and collect the rank-0 results."""
    from infomax import reports

    rows = []
    for n in [int(v) for v in args.nprocs.split(",")]:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += ["--nproc-per-node", str(n), __file__, "--worker"]
        cmd += [a for a in sys.argv[1:] if a != "--worker"]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads_per_proc)}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"nprocs={n} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        row = json.loads(lines[-1][len("RESULT ") :])
        row["load_average_1min"] = os.getloadavg()[0]
        rows.append(row)
        print(row, flush=True)
    base = rows[0]["median_step_s"]
    for row in rows:
        row["step_time_vs_first"] = row["median_step_s"] / base
    cols = ["nprocs", "local_batch", "median_step_s", "images_per_s", "step_time_vs_first"]
    reports.print_table(
        f"SimCLR step, global batch {args.batch_size} ({rows[0]['device']})",
        cols,
        [[r[c] for c in cols] for r in rows],
    )
    out = Path(args.out)
    reports.write_csv(out / "bench_dist.csv", rows)
    reports.write_results(out, config=vars(args), results=rows, seed=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nprocs", default="1,2")
    p.add_argument("--batch-size", type=int, default=256, help="global batch (images)")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads-per-proc", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--sync-bn", action="store_true")
    p.add_argument("--out", default="runs/bench-dist")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    worker(args) if args.worker else driver(args)


if __name__ == "__main__":
    main()
