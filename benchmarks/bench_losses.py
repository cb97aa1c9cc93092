"""Loss forward + backward benchmark: every tiled kernel path vs the GEMM bound, dense and peers.

Usage (also ``infomax bench losses``)::

    python benchmarks/bench_losses.py --out runs/bench_losses
    python benchmarks/bench_losses.py --batch-sizes 512 2048 --repeats 5 --out /tmp/bl
    python benchmarks/bench_losses.py --batch-sizes 8192 16384 --impls kernels --out /tmp/bk

Each (B, implementation) runs in its own process (timing: median of ``--repeats`` runs after a
warm-up; peak memory: ``ru_maxrss`` above that process's baseline); the GEMM rate is measured in
the same process, and every time is compared with the 3-GEMM lower bound. Writes
``bench_losses.csv``, ``bench_losses.png`` and ``results.json`` into ``--out``; prints a table.
See ``docs/benchmarks-losses.md`` and :mod:`infomax.experiments.loss_bench`.
"""

from __future__ import annotations

import argparse

from infomax.experiments.loss_bench import (
    DEFAULT_BATCHES,
    IMPLS,
    TABLE_COLUMNS,
    LossBenchConfig,
    run_loss_bench,
    table_rows,
)
from infomax.reports import print_table


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run :func:`~infomax.experiments.loss_bench.run_loss_bench` and print
    the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=list(DEFAULT_BATCHES))
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument(
        "--impls", nargs="+", default=list(IMPLS), choices=[*IMPLS, "kernels"],
        help="'kernels': every tiled path (no dense or peers)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=1, help="0: torch default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--memory-cap-gib", type=float, default=0.0)
    p.add_argument("--max-run-s", type=float, default=30.0, help="slower warm-up: fewer runs")
    p.add_argument("--slow-repeats", type=int, default=2)
    a = p.parse_args(argv)
    config = LossBenchConfig(
        batch_sizes=tuple(a.batch_sizes),
        dim=a.dim,
        repeats=a.repeats,
        temperature=a.temperature,
        impls=tuple(a.impls),
        threads=a.threads,
        seed=a.seed,
        memory_cap_gib=a.memory_cap_gib,
        max_run_s=a.max_run_s,
        slow_repeats=a.slow_repeats,
    )
    rows = run_loss_bench(
        config, a.out, progress=lambda r: print({k: r.get(k) for k in TABLE_COLUMNS}, flush=True)
    )
    print_table("Loss forward + backward (fp32)", TABLE_COLUMNS, table_rows(rows))


if __name__ == "__main__":
    main()
