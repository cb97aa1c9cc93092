"""``infomax estimate``: I(X;Y) of two sample files with a variational bound."""

from __future__ import annotations

import math
import warnings
from typing import Any

import typer

from ..estimate import EstimateConfig
from ._common import (
    MEMORY_EFFICIENT,
    SEED,
    Fields,
    Opt,
    app,
    config_options,
    console,
    friendly_errors,
    out_dir,
    preset_options,
)
from ._common import warn as warn_line


@app.command()
@friendly_errors
@config_options(
    EstimateConfig,
    {
        "bound": "Bound name (see `infomax list`).",
        "critic": "Critic name.",
        "steps": "Maximum training steps.",
        "batch_size": "Pairs per batch K.",
        "lr": "Adam learning rate.",
        "marginals": "Per-dimension transform fitted on the training split: standardize, "
        "normal-scores (rank-based; heavy tails) or none.",
        "preset": "Named settings (e.g. high-mi); options set to a non-default value "
        "override them.",
        "eval_batch_size": "Pairs per validation / test batch (default: --batch-size).",
        "val_fraction": "Share of the samples for validation (early stopping, selection).",
        "test_fraction": "Share of the samples for the reported test estimate.",
        "seed": SEED,
        "device": "auto, cpu, cuda, cuda:1 ...",
        "memory_efficient": Opt(
            "Tiled kernels that never hold the K×K scores (default: automatic from K = 4096).",
            MEMORY_EFFICIENT,
        ),
    },
    into="settings",
)
def estimate(
    x: str = typer.Argument(..., help="X samples: .npy or .csv [n, dx], or one .npz with x and y"),
    y: str | None = typer.Argument(None, help="Y samples: .npy or .csv [n, dy]"),
    *,
    settings: Fields,
    as_json: bool = typer.Option(False, "--json", help="Print the full result as JSON."),
    out: str | None = typer.Option(None, help="Folder for results.json, curve CSV and plot."),
) -> None:
    """Estimate I(X;Y) in nats with a variational bound: trained on a train split, selected on
    a validation split, reported (with standard error and CI) on an untouched test split.

    Data-parallel: `torchrun --nproc-per-node N -m infomax estimate ...` splits each batch's
    critic rows over the ranks (--batch-size divisible by N); rank 0 prints and writes.
    """
    from .. import dist
    from ..arrays import load_pair
    from ..estimate import estimate_mi

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        xs, ys = load_pair(x, y)
    for w in caught:
        warn_line(str(w.message))
    out_dir(out)
    with dist.process_group(device=settings["device"]):
        main_rank = dist.rank() == 0
        with warnings.catch_warnings(record=True) as caught:  # shown below as one line each
            warnings.simplefilter("always")
            result = estimate_mi(
                xs, ys, **preset_options(settings, EstimateConfig()), progress=not as_json
            )
    if not main_rank:
        return
    if out:
        write_estimate(result, out)
    notes = list(result.warnings)
    notes += [str(w.message) for w in caught if str(w.message) not in notes]
    if as_json:
        typer.echo(result.to_json())
        for note in notes:
            warn_line(note)
        return
    from ..reports import print_table

    ci_ok = all(math.isfinite(c) for c in result.ci)
    cfg = result.config
    print_table(
        f"I(X;Y) with {cfg.bound} / {cfg.critic} / {cfg.marginals}"
        + (f" (preset {cfg.preset})" if cfg.preset else ""),
        [
            "test estimate (nats)",
            "stderr",
            f"{100 * cfg.confidence:.0f}% CI",
            "validation",
            "train",
            "steps (best)",
            "n train/val/test",
            "seconds",
        ],
        [
            (
                result.mi,
                result.stderr if math.isfinite(result.stderr) else "—",
                f"[{result.ci[0]:.3f}, {result.ci[1]:.3f}]" if ci_ok else "—",
                result.val_mi,
                result.train_mi,
                f"{result.steps} ({result.best_step})",
                f"{result.n_train}/{result.n_val}/{result.n_test}",
                result.seconds,
            )
        ],
        console=console,
    )
    for note in notes:
        warn_line(note)


def write_estimate(result: Any, out: str) -> None:
    """``results.json``, ``curve.csv`` and ``curve.png`` of an :class:`MIEstimate` into ``out``."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..reports import save_figure, write_csv, write_json

    folder = Path(out)
    write_json(folder / "results.json", result.to_dict())
    history = result.history
    write_csv(folder / "curve.csv", history)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([h["step"] for h in history], [h["train"] for h in history], label="train")
    ax.plot([h["step"] for h in history], [h["val"] for h in history], label="validation")
    ax.axhline(result.mi, color="k", ls=":", label=f"test estimate {result.mi:.3f}")
    ax.set_xlabel("step")
    ax.set_ylabel("estimate (nats)")
    ax.legend()
    save_figure(fig, folder / "curve.png")
