"""Renderer throughput of the identifiability image world (a benchmark, not a test).

Images per second of ``get_world("shapes").render`` at 32×32 and 64×64, median of ``--repeats``
timed calls on batches of ``--batch`` latents (one warm-up call first), next to the cost of one
training step's worth of images (2 × batch 256) and the issue's target (≥ 5 000 images/s at
32×32 on 2 cores). Prints one line per size and writes ``--out`` (JSON) if given.

    python benchmarks/bench_render.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from infomax import reports
from infomax.identifiability.worlds import get_world

TARGET = 5000.0


def throughput(size: int, batch: int, repeats: int) -> dict[str, float]:
    """Median images/s of ``render`` on ``batch`` random latents at ``size`` pixels."""
    world = get_world("shapes", size=size)
    u = torch.rand(batch, world.dim, generator=torch.Generator().manual_seed(0))
    world.render(u)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        world.render(u)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {
        "size": size,
        "batch": batch,
        "images_per_s": batch / median,
        "ms_per_512": 512 / (batch / median) * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="Write the rows as JSON here.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [throughput(size, args.batch, args.repeats) for size in (32, 64)]
    for row in rows:
        ratio = row["images_per_s"] / TARGET if row["size"] == 32 else float("nan")
        target = f" ({ratio:.1f}× the {TARGET:.0f}/s target)" if row["size"] == 32 else ""
        print(
            f"shapes {row['size']}×{row['size']}: {row['images_per_s']:,.0f} images/s, "
            f"{row['ms_per_512']:.1f} ms per training step of 2 × 256 images{target} "
            f"[{torch.get_num_threads()} threads]"
        )
    if args.out:
        reports.write_json(args.out, {"rows": rows, "threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
