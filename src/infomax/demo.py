"""``infomax demo``: a quick tour on embedded data that finishes in a few minutes on 2 CPU cores.

1. MI estimation: InfoNCE, NWJ, JS, SMILE and FLO on a correlated-Gaussian staircase
   (dim 10, true MI 1, 2, 4, 6 nats, K = 64) — shows InfoNCE's ``log K`` cap.
2. Contrastive learning: a short SimCLR run on scikit-learn's bundled digits, scored by a
   linear probe and kNN.
Everything goes into ``out`` (``results.json``, CSVs, PNGs).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .estimate import EstimateConfig
from .mi_benchmark import print_summary, run_mi_benchmark
from .reports import write_results

DEMO_BOUNDS = ("infonce", "nwj", "js", "smile", "flo")


def run_demo(
    out: Path, seed: int = 0, console: Any = None, progress: bool = True
) -> dict[str, Any]:
    """Run the demo into ``out``; returns the combined summary (also in ``out/results.json``)."""
    from .tasks import staircase

    start = time.perf_counter()
    out = Path(out)
    tasks = staircase(dim=10, mis=(1.0, 2.0, 4.0, 6.0))
    cfg = EstimateConfig(batch_size=64, steps=600, eval_every=50, hidden=128, seed=seed)
    mi = run_mi_benchmark(
        tasks,
        DEMO_BOUNDS,
        [seed],
        n_samples=8000,
        config=cfg,
        out_dir=out / "mi",
        progress=progress,
    )
    print_summary(mi["summary"], title="MI estimates on a Gaussian staircase (K = 64, 1 seed)")
    ssl: dict[str, Any] | None = None
    try:
        from .ssl import demo_simclr_digits as simclr_demo
    except ImportError:  # the SSL layer is optional for the demo
        simclr_demo = None  # type: ignore[assignment]
    if simclr_demo is not None:
        ssl = simclr_demo(out / "simclr-digits", seed=seed, progress=progress)
        if console is not None:
            console.print(f"SimCLR on digits: {ssl}")
    summary = {
        "mi_summary": mi["summary"],
        "simclr_digits": ssl,
        "seconds": time.perf_counter() - start,
    }
    write_results(out, config={"mi": cfg, "bounds": DEMO_BOUNDS}, results=summary, seed=seed)
    return summary
