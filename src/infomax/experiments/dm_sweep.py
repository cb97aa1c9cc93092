"""The σ sweep of noise-injected Deep InfoMax (``infomax dm``, SPEC §7).

One :func:`infomax.dm.train_dm` per noise level ``σ`` and seed with otherwise equal settings,
optionally plain SimCLR on the same encoder, views and budget as a reference row (one per seed),
next to the DM metrics of a true target sample (:func:`infomax.dm.reference_metrics`) at every
test size.

``run(DMSweepConfig(base, sigmas, seeds, simclr_reference), run_dir=...)`` returns a
:class:`DMSweepResult`; with ``run_dir`` every run (``sigma_<σ>[_seed<k>]``, ``simclr_seed<k>``:
``results.json``, ``checkpoint.pt``) goes there as it finishes, and ``dm_sweep.csv`` holds the
rows done so far, so an interrupted sweep keeps them. ``result.write(out)`` puts
``results.json``, ``dm_sweep.csv`` (one row per run), ``dm_summary.csv`` (mean and spread over
seeds, pass counts, SW₂ relative to the true sample), ``dm_tradeoff.png`` and
``dm_marginals.png`` (histograms and Q-Q plots) into ``out``.

>>> from infomax.dm import DMConfig
>>> [c.sigma for c in DMSweepConfig(DMConfig(), (0.0, 0.5)).configs()]
[0.0, 0.5]
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import Tensor

from ..dm import DMConfig, reference_metrics, train_dm
from ..dm.plots import plot_marginals, plot_tradeoff
from ..reports import write_csv, write_results
from ..train import DivergedError

#: The figures :meth:`DMSweepResult.write` saves, by name (``dm_<name>.png``).
FIGURES = ("tradeoff", "marginals")


@dataclass(frozen=True)
class DMSweepConfig:
    """Settings of :func:`run`: ``base`` for every run, with its ``sigma`` replaced by each of
    ``sigmas`` in turn and its ``seed`` by each of ``seeds`` (``None``: ``base.seed``; with
    ``seeds_at``, only that σ runs every seed, the others the first), plus one plain-SimCLR run
    per seed if ``simclr_reference`` (all checked here, before any training)."""

    base: DMConfig = field(default_factory=DMConfig)
    sigmas: tuple[float, ...] = (0.0, 0.1)
    seeds: tuple[int, ...] | None = None
    simclr_reference: bool = False
    seeds_at: float | None = None

    def __post_init__(self) -> None:
        if not self.sigmas:
            raise ValueError("need at least one sigma")
        seeds = (self.base.seed,) if self.seeds is None else tuple(self.seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {self.seeds!r}")
        for s in self.sigmas:  # every sigma and seed valid up front (DMConfig checks it)
            for k in seeds:
                replace(self.base, sigma=s, seed=k)
        object.__setattr__(self, "sigmas", tuple(float(s) for s in self.sigmas))
        object.__setattr__(self, "seeds", seeds)
        if self.seeds_at is not None and float(self.seeds_at) not in self.sigmas:
            raise ValueError(f"seeds_at {self.seeds_at} is not one of the sigmas {self.sigmas}")

    def runs(self) -> list[tuple[str, DMConfig]]:
        """``(run folder name, config)`` for every σ and seed, then the SimCLR rows."""
        seeds = self.seeds or (self.base.seed,)
        tag = (lambda k: "") if len(seeds) == 1 else (lambda k: f"_seed{k}")

        def seeds_of(s: float) -> tuple[int, ...]:
            return seeds if self.seeds_at is None or s == float(self.seeds_at) else seeds[:1]

        out = [
            (f"sigma_{s:g}{tag(k)}", replace(self.base, sigma=s, seed=k))
            for s in self.sigmas
            for k in seeds_of(s)
        ]
        if self.simclr_reference:
            out += [
                (f"simclr_seed{k}", replace(self.base, method="simclr", sigma=0.0, seed=k))
                for k in seeds
            ]
        return out

    def configs(self) -> list[DMConfig]:
        """One :class:`~infomax.dm.DMConfig` per run (σ × seed, then SimCLR)."""
        return [cfg for _, cfg in self.runs()]


@dataclass
class DMSweepResult:
    """One metrics row per run (:func:`~infomax.dm.train_dm`), the true-sample ``reference``
    rows (one per ``dm_sizes``), the clean test representations (first seed of each σ, and
    ``"SimCLR"``) and the wall seconds."""

    config: DMSweepConfig
    rows: list[dict[str, Any]]
    reference: list[dict[str, Any]]
    features: dict[Any, Tensor] = field(repr=False)
    seconds: float = 0.0
    diverged: list[dict[str, Any]] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, Any]:
        """What ``results.json`` records: ``sigmas``, ``seeds``, ``rows``, ``summary`` (per σ
        over seeds), ``reference``, ``sweep_seconds``."""
        return {
            "sigmas": list(self.config.sigmas),
            "seeds": list(self.config.seeds or ()),
            "rows": self.rows,
            "summary": summarise(self.rows, self.reference[0]),
            "reference": self.reference,
            "diverged": self.diverged,
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
        paths["summary"] = write_csv(
            folder / "dm_summary.csv", summarise(self.rows, self.reference[0])
        )
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
    feats: dict[Any, Tensor] = {}
    t0 = time.perf_counter()
    diverged: list[dict[str, Any]] = []
    for name, cfg in config.runs():
        try:
            metrics, f_test = train_dm(cfg, folder / name if folder else None)
        except DivergedError as err:  # one diverged run does not lose the others
            diverged.append({"run": name, "error": str(err)})
            warnings.warn(f"{name}: {err}; the sweep goes on without it", stacklevel=2)
            continue
        rows.append(metrics)
        key: Any = "SimCLR" if cfg.method == "simclr" else cfg.noise_level
        feats.setdefault(key, f_test)
        if folder is not None:  # partial results survive an interruption
            write_csv(folder / "dm_sweep.csv", rows)
    base = config.base
    refs = []
    for n in base.dm_sizes:
        ref = reference_metrics(
            base.target, base.dim, n=n, seed=base.seed, permutations=base.permutations
        )
        refs.append({"sigma": "reference", **ref.as_dict()})
    if not rows:
        raise DivergedError(f"every run of the sweep diverged: {diverged}")
    return DMSweepResult(config, rows, refs, feats, time.perf_counter() - t0, diverged)


def summarise(rows: Sequence[dict[str, Any]], reference: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per ``(method, σ)``: the number of seeds, mean and standard deviation over seeds
    of probe accuracy, energy p, SW₂, the resampled pass rates and SW₂ relative to the
    true-sample ``reference``, and how many seeds pass each test (energy, KS and Shapiro–Wilk
    with Bonferroni) on their headline subset."""
    import numpy as np

    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((str(r.get("method", "noisy-dim")), float(r["sigma"])), []).append(r)
    out = []
    for (method, sigma), rs in groups.items():
        row: dict[str, Any] = {"method": method, "sigma": sigma, "seeds": len(rs)}
        for key in (
            "linear_probe_acc",
            "energy_p",
            "sliced_w2",
            "energy",
            "mi_estimate",
            "energy_pass_rate",
            "ks_pass_rate",
        ):
            vals = np.array([float(r[key]) for r in rs])
            row[f"{key}_mean"] = float(vals.mean())
            row[f"{key}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        row["sw2_ratio_mean"] = row["sliced_w2_mean"] / float(reference["sliced_w2"])
        for key in ("energy_pass", "ks_pass", "shapiro_pass"):
            row[key] = f"{sum(bool(r[key]) for r in rs)}/{len(rs)}"
        row["capacity"] = float(rs[0]["capacity"])
        out.append(row)
    return out


def run_sweep(config: DMConfig, sigmas: Sequence[float], out_dir: str | Path) -> dict[str, Any]:
    """:func:`run` over ``sigmas`` with ``run_dir=out_dir``, then
    :meth:`DMSweepResult.write` into ``out_dir``; returns :attr:`DMSweepResult.summary`."""
    result = run(DMSweepConfig(config, tuple(sigmas)), run_dir=out_dir)
    result.write(out_dir)
    return result.summary
