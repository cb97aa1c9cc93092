"""The σ sweep of noise-injected Deep InfoMax (``infomax dm``, SPEC §7).

One :func:`infomax.dm.train_dm` per noise level ``σ`` with otherwise equal settings, next to the
DM metrics of a true target sample (:func:`infomax.dm.reference_metrics`) at every test size.

``run(DMSweepConfig(base, sigmas), run_dir=...)`` returns a :class:`DMSweepResult`; with
``run_dir`` every σ's run (``sigma_<σ>/results.json``, ``checkpoint.pt``) goes there as it
finishes, and ``dm_sweep.csv`` holds the rows done so far, so an interrupted sweep keeps them.
``result.write(out)`` puts ``results.json``, ``dm_sweep.csv``, ``dm_tradeoff.png`` and
``dm_marginals.png`` (histograms and Q-Q plots) into ``out``.

>>> from infomax.dm import DMConfig
>>> [c.sigma for c in DMSweepConfig(DMConfig(), (0.0, 0.5)).configs()]
[0.0, 0.5]
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import Tensor

from ..dm import DMConfig, reference_metrics, train_dm
from ..dm.plots import plot_marginals, plot_tradeoff
from ..reports import write_csv, write_results

#: The figures :meth:`DMSweepResult.write` saves, by name (``dm_<name>.png``).
FIGURES = ("tradeoff", "marginals")


@dataclass(frozen=True)
class DMSweepConfig:
    """Settings of :func:`run`: ``base`` for every run, with its ``sigma`` replaced by each of
    ``sigmas`` in turn (all checked here, before any training)."""

    base: DMConfig = field(default_factory=DMConfig)
    sigmas: tuple[float, ...] = (0.0, 0.1)

    def __post_init__(self) -> None:
        if not self.sigmas:
            raise ValueError("need at least one sigma")
        for s in self.sigmas:  # every sigma valid up front (DMConfig checks it)
            replace(self.base, sigma=s)
        object.__setattr__(self, "sigmas", tuple(float(s) for s in self.sigmas))

    def configs(self) -> list[DMConfig]:
        """One :class:`~infomax.dm.DMConfig` per σ."""
        return [replace(self.base, sigma=s) for s in self.sigmas]


@dataclass
class DMSweepResult:
    """One metrics row per σ (:func:`~infomax.dm.train_dm`), the true-sample ``reference`` rows
    (one per ``dm_sizes``), the clean test representations by σ and the wall seconds."""

    config: DMSweepConfig
    rows: list[dict[str, Any]]
    reference: list[dict[str, Any]]
    features: dict[float, Tensor] = field(repr=False)
    seconds: float = 0.0

    @property
    def summary(self) -> dict[str, Any]:
        """What ``results.json`` records: ``sigmas``, ``rows``, ``reference``,
        ``sweep_seconds``."""
        return {
            "sigmas": list(self.config.sigmas),
            "rows": self.rows,
            "reference": self.reference,
            "sweep_seconds": self.seconds,
        }

    def write(self, out: str | Path) -> dict[str, Path]:
        """``dm_sweep.csv`` (the rows, then the reference rows), ``dm_tradeoff.png``,
        ``dm_marginals.png`` and ``results.json`` into ``out``; returns their paths by name
        (``sweep``, ``tradeoff``, ``marginals``, ``results``)."""
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        base = self.config.base
        paths = {"sweep": write_csv(folder / "dm_sweep.csv", self.rows + self.reference)}
        paths["tradeoff"] = folder / "dm_tradeoff.png"
        plot_tradeoff(self.rows, self.reference[0], base, paths["tradeoff"])
        paths["marginals"] = folder / "dm_marginals.png"
        plot_marginals(self.features, base.target, paths["marginals"])
        paths["results"] = write_results(
            folder, config=asdict(base), results=self.summary, seed=base.seed
        )
        return paths


def run(config: DMSweepConfig, *, run_dir: str | Path | None = None) -> DMSweepResult:
    """Train one model per σ of ``config`` (:func:`~infomax.dm.train_dm`), then the reference
    metrics. ``run_dir``: where each σ's run folder (``sigma_<σ>``) and the partial
    ``dm_sweep.csv`` go while the sweep runs (``None``: nothing is written)."""
    folder = Path(run_dir) if run_dir is not None else None
    rows: list[dict[str, Any]] = []
    feats: dict[float, Tensor] = {}
    t0 = time.perf_counter()
    for s, cfg in zip(config.sigmas, config.configs(), strict=True):
        metrics, f_test = train_dm(cfg, folder / f"sigma_{s:g}" if folder else None)
        rows.append(metrics)
        feats[float(s)] = f_test
        if folder is not None:  # partial results survive an interruption
            write_csv(folder / "dm_sweep.csv", rows)
    base = config.base
    refs = []
    for n in base.dm_sizes:
        ref = reference_metrics(
            base.target, base.dim, n=n, seed=base.seed, permutations=base.permutations
        )
        refs.append({"sigma": "reference", **ref.as_dict()})
    return DMSweepResult(config, rows, refs, feats, time.perf_counter() - t0)


def run_sweep(config: DMConfig, sigmas: Sequence[float], out_dir: str | Path) -> dict[str, Any]:
    """:func:`run` over ``sigmas`` with ``run_dir=out_dir``, then
    :meth:`DMSweepResult.write` into ``out_dir``; returns :attr:`DMSweepResult.summary`."""
    result = run(DMSweepConfig(config, tuple(sigmas)), run_dir=out_dir)
    result.write(out_dir)
    return result.summary
