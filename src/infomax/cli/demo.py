"""``infomax list`` and ``infomax demo``: what is registered, and a quick tour."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

from ..experiments.demo import CAPABILITIES, DemoConfig
from ..reports import cell, print_table
from ._common import SEED, Fields, app, config_options, console, friendly_errors, out_dir


@app.command("list")
def list_names() -> None:
    """List the registered bounds, critics, divergences, tasks, methods, marginal transforms,
    MI and SSL presets and image worlds."""
    from ..estimate import PRESETS
    from ..marginals import MARGINALS
    from ..registry import BOUNDS, CRITICS, DIVERGENCES, METHODS, SUITES, TASKS, TRANSFORMS

    registries = (BOUNDS, CRITICS, DIVERGENCES, TASKS, SUITES, TRANSFORMS, METHODS)
    from ..identifiability import WORLDS
    from ..ssl import SSL_PRESETS

    for reg in (*registries, MARGINALS, PRESETS, SSL_PRESETS, WORLDS):
        try:
            names = ", ".join(reg.names())
        except ImportError:
            names = "(not available)"
        console.print(f"[bold]{reg.kind}s[/]: {names}")


@app.command()
@friendly_errors
@config_options(
    DemoConfig,
    {
        "seed": SEED,
        "parts": "Parts of the tour: a comma list of " + ", ".join(CAPABILITIES) + ".",
    },
    into="settings",
)
def demo(
    out: str = typer.Option("infomax-demo", help="Output folder."),
    *,
    settings: Fields,
) -> None:
    """A tour of the five capabilities on embedded data (about 2 minutes on 2 CPU cores): MI
    estimation, contrastive learning, identifiability, InfoNCE as inference (RPM),
    distribution matching. Writes results.json, report.md and every part's plots into OUT."""
    from ..experiments.demo import DemoSection, run

    cfg = DemoConfig(**settings)
    out_dir(out)

    def show(section: DemoSection) -> None:
        if section.part == "mi":
            _print_mi(section)
        console.print(
            f"[bold green]✓[/] [bold]{section.title}[/] ({section.seconds:.0f} s): "
            f"{escape(section.measure)} [bold]{cell(section.value)}[/]; "
            f"{escape(section.reference)}",
            soft_wrap=True,
        )

    result = run(cfg, out, on_section=show)
    print_table(
        f"infomax demo: {len(result.sections)} capabilities in {result.seconds:.0f} s "
        f"(seed {cfg.seed})",
        ["capability", "measured", "value", "reference", "plot"],
        result.summary_rows(),
        console=console,
    )
    console.print(f"[bold green]demo done[/]; report: {out}/report.md, numbers: {out}/results.json")


def _print_mi(section: Any) -> None:
    """The staircase as one row per true MI, one column per bound, and the ``log K`` cap."""
    bounds = section.results["bounds"]
    rows = [
        [r["true_mi"], *(r[b] for b in bounds), section.results["log_k"]]
        for r in section.results["table"]
    ]
    print_table(
        f"MI estimates (nats, test split) on a 10-D Gaussian staircase, "
        f"K = {section.results['batch_size']}",
        ["true MI", *bounds, "log K"],
        rows,
        console=console,
    )
