"""``infomax bench mi``, ``bench mi-merge`` and ``bench losses``: accuracy, speed and memory."""

from __future__ import annotations

import typer

from ..estimate import EstimateConfig
from ..experiments.loss_bench import LossBenchConfig
from ..experiments.mi_benchmark import ALL_BOUNDS, MIBenchmarkConfig
from ._common import (
    Fields,
    Opt,
    bench_app,
    config_options,
    console,
    friendly_errors,
    out_dir,
    preset_options,
)


def parse_seeds(text: str, flag: str = "--seeds") -> tuple[int, ...]:
    """``"5"`` -> seeds 0..4; ``"0,3,7"`` -> those seeds (``"0,"``: seed 0 alone)."""
    try:
        if "," in text:
            return tuple(int(s) for s in text.split(",") if s.strip())
        count = int(text)
    except ValueError:
        raise ValueError(
            f"{flag} must be a count or a comma list of integers, got {text!r}"
        ) from None
    if count < 1:
        raise ValueError(f"{flag} must be >= 1, got {count}")
    return tuple(range(count))


def show_seeds(seeds: tuple[int, ...]) -> str:
    """The ``--seeds`` text of ``seeds``: a count for ``0..n-1``, else a comma list."""
    if tuple(seeds) == tuple(range(len(seeds))):
        return str(len(seeds))
    return ",".join(str(s) for s in seeds) + ("," if len(seeds) == 1 else "")


def parse_bounds(text: str, flag: str = "--bounds") -> tuple[str, ...]:
    """``"all"`` or a comma list of bound names."""
    if text.strip() == "all":
        return ALL_BOUNDS
    names = tuple(b.strip() for b in text.split(",") if b.strip())
    if not names:
        raise ValueError(f"{flag} {text!r} names no bound: give a comma list or 'all'")
    return names


MI_OPTIONS: dict[str, str | Opt] = {
    "tasks": "Task specs separated by ';', e.g. 'staircase:dim=20' or "
    "'gaussian:dim=5,mi=2;cubic(gaussian:dim=5,mi=2)'.",
    "bounds": Opt("Comma list of bounds, or 'all'.", parse=parse_bounds, show=",".join),
    "seeds": Opt("Number of seeds, or a comma list.", parse=parse_seeds, show=show_seeds),
    "n_samples": "Samples drawn per task and seed.",
    "fresh": "Also score every fitted critic on a fresh sample (and, for tasks with a density "
    "ratio, with its exact normaliser).",
    "marginals": Opt(
        "Comma list of marginal transforms tried with every bound (standardize, "
        "normal-scores, none).",
        parse=lambda text, flag: tuple(m.strip() for m in text.split(",") if m.strip()),
        show=",".join,
    ),
}
BUDGET_OPTIONS = {
    "steps": "Training steps per run (same for every bound).",
    "batch_size": "Pairs per batch K.",
    "critic": "Critic for every bound.",
    "lr": "Adam learning rate.",
    "patience": "Early-stopping patience in evaluations.",
    "preset": "Named estimation settings (e.g. high-mi); budget options set to a non-default "
    "value override them.",
}


@bench_app.command("mi")
@friendly_errors
@config_options(EstimateConfig, BUDGET_OPTIONS, into="budget")
@config_options(MIBenchmarkConfig, MI_OPTIONS, into="settings")
def bench_mi(
    *,
    settings: Fields,
    budget: Fields,
    out: str = typer.Option("bench-mi", help="Output folder."),
) -> None:
    """Every bound on ground-truth tasks: bias/std table, CSV, JSON and a staircase plot."""
    from ..estimate import resolve_config
    from ..experiments.mi_benchmark import print_summary, run

    estimate = resolve_config(options=preset_options(budget, EstimateConfig()))
    cfg = MIBenchmarkConfig(**settings, estimate=estimate)
    out_dir(out)
    result = run(cfg, partial_dir=out)
    result.write(out)
    print_summary(result.summary)
    console.print(f"wrote {out}/results.json, results.csv, summary.csv, staircase.png")


@bench_app.command("mi-merge")
@friendly_errors
def bench_mi_merge(
    folders: list[str] = typer.Argument(..., help="Output folders of `infomax bench mi` runs."),
    out: str = typer.Option("bench-mi", help="Output folder for the combined results."),
) -> None:
    """Combine MI benchmark runs (e.g. seeds run in parallel processes) into one table and plot."""
    from ..experiments.mi_benchmark import merge_results, print_summary

    out_dir(out)
    result = merge_results(folders)
    result.write(out)
    print_summary(result.summary)
    console.print(f"wrote {out}/results.json, results.csv, summary.csv, summary.md, staircase.png")


LOSS_OPTIONS = {
    "batch_sizes": "Comma list of B (pairs; 2B embeddings).",
    "dim": "Embedding dimension d.",
    "repeats": "Timed runs per configuration (median reported).",
    "temperature": "NT-Xent temperature.",
    "impls": "Comma list of implementations ('kernels': every tiled path).",
    "threads": "Torch threads per run (0: torch default).",
    "memory_cap_gib": "Address-space cap per run (0: automatic).",
    "seed": "Seed of the random embeddings.",
}


@bench_app.command("losses")
@friendly_errors
@config_options(LossBenchConfig, LOSS_OPTIONS, into="settings")
def bench_losses(
    *,
    settings: Fields,
    out: str = typer.Option("bench-losses", help="Output folder."),
) -> None:
    """Loss kernels' forward+backward time and peak memory against the GEMM lower bound: every
    tiled path (SimCLR NT-Xent and f-MICL, pairs, across 2 ranks) vs dense, lightly and PML."""
    from ..experiments.loss_bench import TABLE_COLUMNS, run, table_rows
    from ..reports import print_table

    cfg = LossBenchConfig(**settings)
    out_dir(out)
    result = run(cfg)
    result.write(out)
    print_table(
        "Loss forward + backward (fp32)", TABLE_COLUMNS, table_rows(result.rows), console=console
    )
    console.print(f"wrote {out}/results.json, bench_losses.csv, bench_losses.png")
