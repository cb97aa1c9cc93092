"""``infomax list`` and ``infomax demo``: what is registered, and a quick tour."""

from __future__ import annotations

import typer

from ..experiments.demo import DemoConfig
from ._common import SEED, Fields, app, config_options, console, friendly_errors, out_dir


@app.command("list")
def list_names() -> None:
    """List the registered bounds, critics, divergences, tasks, methods, marginal transforms
    and MI presets."""
    from ..estimate import PRESETS
    from ..marginals import MARGINALS
    from ..registry import BOUNDS, CRITICS, DIVERGENCES, METHODS, SUITES, TASKS, TRANSFORMS

    registries = (BOUNDS, CRITICS, DIVERGENCES, TASKS, SUITES, TRANSFORMS, METHODS)
    for reg in (*registries, MARGINALS, PRESETS):
        try:
            names = ", ".join(reg.names())
        except ImportError:
            names = "(not available)"
        console.print(f"[bold]{reg.kind}s[/]: {names}")


@app.command()
@friendly_errors
@config_options(DemoConfig, {"seed": SEED}, into="settings")
def demo(
    out: str = typer.Option("infomax-demo", help="Output folder."),
    *,
    settings: Fields,
) -> None:
    """A quick tour on embedded data: MI bounds on a Gaussian staircase + SimCLR on digits."""
    from ..experiments.demo import run
    from ..experiments.mi_benchmark import print_summary

    cfg = DemoConfig(**settings)
    out_dir(out)
    result = run(cfg)
    result.write(out)
    k = cfg.estimate.batch_size
    print_summary(
        result.mi.summary, title=f"MI estimates on a Gaussian staircase (K = {k}, 1 seed)"
    )
    if result.simclr is not None:
        ssl = result.simclr  # its own table was printed as it finished
        console.print(
            f"SimCLR on digits: linear probe {ssl['linear_probe_acc']:.3f} (raw pixels "
            f"{ssl['raw_pixel_probe_acc']:.3f}), kNN {ssl['knn_acc']:.3f}"
        )
    console.print(f"[bold green]demo done[/] in {result.seconds:.0f} s; outputs in {out}/")
