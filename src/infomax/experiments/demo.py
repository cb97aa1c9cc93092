"""``infomax demo``: a quick tour on embedded data that finishes in a few minutes on 2 CPU cores.

1. MI estimation: the default estimator (its bound and marginal transform) beside InfoNCE,
   NWJ, JS and FLO on a correlated-Gaussian staircase (dim 10, true MI 1, 2, 4, 6 nats,
   K = 64) — shows InfoNCE's ``log K`` cap.
2. Contrastive learning: a short SimCLR run on scikit-learn's bundled digits, scored by a
   linear probe and kNN (:mod:`infomax.experiments.ssl_digits`).

``run(DemoConfig())`` returns a :class:`DemoResult`; its ``write(out)`` puts ``results.json``,
the MI benchmark's tables and plot (``out/mi``) and the SimCLR run (``out/simclr-digits``) into
``out``.

>>> DemoConfig().estimate.batch_size
64
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._checks import check_int
from ..estimate import EstimateConfig
from ..reports import write_results
from .mi_benchmark import MIBenchmarkResult, run_mi_benchmark

if TYPE_CHECKING:
    from .ssl_digits import SSLDigitsResult

#: The default estimator's bound first (``EstimateConfig``: chosen by ``bench mi`` on
#: ``mi-suite``, docs/estimate.md), then peers; InfoNCE shows the ``log K`` cap.
DEMO_BOUNDS = tuple(dict.fromkeys((EstimateConfig().bound, "infonce", "nwj", "js", "flo")))


def _demo_budget() -> EstimateConfig:
    return EstimateConfig(batch_size=64, steps=600, eval_every=50, hidden=128)


@dataclass(frozen=True)
class DemoConfig:
    """Settings of :func:`run`: ``bounds`` on a ``dim``-dimensional Gaussian staircase at true
    MI ``mis`` (nats), ``n_samples`` per task, one shared ``estimate`` budget; ``simclr``: also
    the SimCLR run (skipped when the SSL layer cannot be imported)."""

    seed: int = 0
    bounds: tuple[str, ...] = DEMO_BOUNDS
    dim: int = 10
    mis: tuple[float, ...] = (1.0, 2.0, 4.0, 6.0)
    n_samples: int = 8000
    estimate: EstimateConfig = field(default_factory=_demo_budget)
    simclr: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        check_int("seed", self.seed, 0)
        check_int("dim", self.dim, 1)
        if not self.bounds:
            raise ValueError("no bounds given")
        if not self.mis:
            raise ValueError("mis must name at least one true MI value")


@dataclass
class DemoResult:
    """What :func:`run` measured: the MI benchmark, the SimCLR metrics (``None`` if skipped)
    and the wall seconds. The SimCLR run (its files wait in a temporary folder for
    :meth:`write`) is ``simclr_run``."""

    config: DemoConfig
    mi: MIBenchmarkResult
    simclr: dict[str, Any] | None
    seconds: float
    simclr_run: SSLDigitsResult | None = field(default=None, repr=False, compare=False)

    def write(self, out: str | Path) -> Path:
        """``results.json`` into ``out``, the MI tables into ``out/mi`` and the SimCLR run
        (checkpoint, history, curves) into ``out/simclr-digits`` (replacing an earlier demo's)."""
        folder = Path(out)
        self.mi.write(folder / "mi")
        if self.simclr_run is not None:
            self.simclr_run.write(folder / "simclr-digits")
        summary = {
            "mi_summary": self.mi.summary,
            "simclr_digits": self.simclr,
            "seconds": self.seconds,
        }
        cfg = self.config
        config = {"mi": replace(cfg.estimate, seed=cfg.seed), "bounds": cfg.bounds}
        write_results(folder, config=config, results=summary, seed=cfg.seed)
        return folder


def run(config: DemoConfig) -> DemoResult:
    """The MI staircase, then (if ``config.simclr``) the short SimCLR run on digits."""
    from ..tasks import staircase

    start = time.perf_counter()
    tasks = staircase(dim=config.dim, mis=config.mis)
    estimate = replace(config.estimate, seed=config.seed)
    mi = run_mi_benchmark(
        tasks,
        config.bounds,
        [config.seed],
        n_samples=config.n_samples,
        config=estimate,
        progress=config.progress,
    )
    ssl = None
    if config.simclr:
        try:
            from . import ssl_digits
        except ImportError:  # the SSL layer is optional for the demo
            pass
        else:
            ssl = ssl_digits.run(ssl_digits.SSLDigitsConfig(config.seed, config.progress))
    metrics = ssl.metrics if ssl is not None else None
    return DemoResult(config, mi, metrics, time.perf_counter() - start, ssl)
