"""The matched-vs-mismatched identifiability grid (``infomax identify --table``).

After Zimmermann et al., "Contrastive Learning Inverts the Data Generating Process" (ICML 2021):
:func:`infomax.identifiability.run_identify` on every row of :func:`table_configs` — the model
(space, critic exponent, conditional) matched to the generative process, or wrong in one
respect — with one shared budget.

``run(IdentifyTableConfig(base))`` returns an :class:`IdentifyTableResult`; its ``write(out)``
puts ``table.md``, ``table.csv``, ``results.json`` and ``r2_curves.png`` (every row's held-out
R² / MCC vs step) into ``out``.

>>> [match for match, _ in table_configs()][:2]
['matched', 'wrong conditional']
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..identifiability.experiment import (
    IdentifyConfig,
    IdentifyResult,
    curve_figure,
    run_identify,
)
from ..reports import atomic_write_text, markdown_table, save_figure, write_csv, write_results

logger = logging.getLogger(__name__)

TABLE_COLUMNS = (
    "generative",
    "model",
    "match",
    "r2_linear",
    "r2_kernel",
    "mcc",
    "untrained_r2_linear",
    "untrained_mcc",
    "seconds",
)


def table_configs(base: IdentifyConfig | None = None) -> list[tuple[str, IdentifyConfig]]:
    """The grid of ``identify --table``: ``(match, config)`` pairs with ``base``'s budget.
    ``match`` says what agrees between generative process and model (``matched``, ``wrong
    conditional``, ``wrong space``, ``wrong p``)."""
    b = base or IdentifyConfig()
    if b.world is not None:
        return world_table_configs(b)
    rows = [
        ("matched", dict(space="sphere", conditional="vmf", kappa=10.0)),
        ("wrong conditional", dict(space="sphere", conditional="laplace", scale=0.1, kappa=10.0)),
        ("matched", dict(space="box", conditional="laplace", scale=0.1)),
        ("wrong p", dict(space="box", conditional="laplace", scale=0.1, model_p=2.0)),
        ("wrong space", dict(space="box", conditional="laplace", scale=0.1, model="sphere")),
        ("wrong space", dict(space="sphere", conditional="vmf", kappa=10.0, model="box")),
        ("matched", dict(space="rn", conditional="laplace", scale=0.1)),
        ("matched (Gaussian)", dict(space="rn", conditional="normal", scale=0.1)),
    ]
    return _grid(b, rows)


def _grid(
    base: IdentifyConfig, rows: list[tuple[str, dict[str, Any]]]
) -> list[tuple[str, IdentifyConfig]]:
    """``(match, config)`` per row: ``base`` with the row's generative / model settings (the
    model, its exponent and temperature matched again unless the row sets them)."""
    defaults = dict(model=None, model_p=None, temperature=None)
    return [(m, replace(base, **{**defaults, **kw})) for m, kw in rows]


def world_table_configs(base: IdentifyConfig) -> list[tuple[str, IdentifyConfig]]:
    """The grid on pixels (``base.world``): the box latents with a Laplace conditional, the
    model matched or wrong in its critic exponent, its space or the conditional it assumes,
    a Gaussian conditional matched, and the sphere (``u = (z + 1) / 2``) with vMF."""
    rows = [
        ("matched", dict(space="box", conditional="laplace", scale=0.1)),
        ("wrong p", dict(space="box", conditional="laplace", scale=0.1, model_p=2.0)),
        ("wrong space", dict(space="box", conditional="laplace", scale=0.1, model="sphere")),
        ("wrong conditional", dict(space="box", conditional="normal", scale=0.1, model_p=1.0)),
        ("matched (Gaussian)", dict(space="box", conditional="normal", scale=0.1)),
        ("matched", dict(space="sphere", conditional="vmf", kappa=10.0)),
    ]
    return _grid(base, rows)


@dataclass(frozen=True)
class IdentifyTableConfig:
    """Settings of :func:`run`: ``base`` gives every row's budget (steps, batch, encoder,
    objective, seed, ...; its space / conditional / model settings are replaced by the grid's);
    ``progress`` shows each run's progress bar."""

    base: IdentifyConfig = field(default_factory=IdentifyConfig)
    progress: bool = True


@dataclass
class IdentifyTableResult:
    """One row per grid entry (:data:`TABLE_COLUMNS` and the metrics) and every run."""

    config: IdentifyTableConfig
    rows: list[dict[str, Any]]
    runs: list[IdentifyResult]

    @property
    def columns(self) -> list[str]:
        """:data:`TABLE_COLUMNS`, with the worst latent's R² and MCC for an image world."""
        cols = list(TABLE_COLUMNS)
        if self.rows and "min_latent_mcc" in self.rows[0]:
            cols[-1:-1] = ["min_latent_r2_linear", "min_latent_mcc"]
        return cols

    def write(self, out: str | Path) -> Path:
        """``table.csv``, ``table.md``, ``results.json`` and ``r2_curves.png`` into ``out``."""
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        write_csv(folder / "table.csv", self.rows)
        cols = self.columns
        atomic_write_text(
            folder / "table.md", markdown_table(cols, [[r[c] for c in cols] for r in self.rows])
        )
        base = self.config.base
        results = {"rows": self.rows, "runs": [r.to_dict() for r in self.runs]}
        write_results(folder, config=asdict(base), results=results, seed=base.seed)
        curves = {r.config.label(): r.history for r in self.runs}
        save_figure(curve_figure(curves), folder / "r2_curves.png")
        return folder


def table_row(match: str, result: IdentifyResult) -> dict[str, Any]:
    """The table row of one run: what was generated, what was modelled, the held-out metrics
    and the untrained encoder's."""
    cfg = result.config
    critic = "cosine" if cfg.model_space == "sphere" else f"L{cfg.critic_p:g}"
    pixels = f"{cfg.world} {cfg.image_size}px, " if cfg.world else ""
    per_latent = result.per_latent
    worst = {}
    if per_latent:
        worst = {
            "min_latent_r2_linear": min(per_latent["r2_linear"]),
            "min_latent_mcc": min(per_latent["mcc"]),
        }
    return {
        "generative": f"{pixels}{cfg.space}, {cfg.cond.describe()}",
        "model": f"{cfg.model_space}, {critic} (τ={cfg.tau:.3g})",
        "match": match,
        **result.metrics,
        "untrained_r2_linear": result.untrained["r2_linear"],
        "untrained_mcc": result.untrained["mcc"],
        **worst,
        "seconds": result.seconds,
    }


def run(config: IdentifyTableConfig) -> IdentifyTableResult:
    """:func:`~infomax.identifiability.run_identify` on every row of :func:`table_configs`."""
    rows, runs = [], []
    for match, cfg in table_configs(config.base):
        res = run_identify(cfg, progress=config.progress)
        rows.append(table_row(match, res))
        runs.append(res)
        logger.info("%s: %s", cfg.label(), res.metrics)
    return IdentifyTableResult(config, rows, runs)


def run_table(
    base: IdentifyConfig, out: str | Path | None = None, progress: bool = True
) -> list[dict[str, Any]]:
    """:func:`run` with ``base``'s budget; with ``out``, :meth:`IdentifyTableResult.write` there.
    Returns the rows."""
    result = run(IdentifyTableConfig(base, progress))
    if out is not None:
        result.write(out)
    return result.rows
