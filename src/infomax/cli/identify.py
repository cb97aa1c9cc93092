"""``infomax identify``: does contrastive learning invert the mixing? (SPEC §5)."""

from __future__ import annotations

import typer

from ..identifiability.experiment import IdentifyConfig
from ._common import SEED, Fields, Opt, app, config_options, console, friendly_errors, out_dir


def _names(text: str, flag: str) -> tuple[str, ...]:
    return tuple(n.strip().lower() for n in text.split(",") if n.strip())


IDENTIFY_OPTIONS: dict[str, str | Opt] = {
    "world": "Image world (shapes): observations are rendered images, not an MLP mixing.",
    "latents": Opt(
        "The world's latents that vary, comma-separated (default: all: x, y, scale, angle, "
        "hue, bg_hue).",
        parse=_names,
        show=lambda names: ",".join(names),
    ),
    "image_size": "Image size of the world in pixels (32 or 64).",
    "width": "Width of the world's CNN encoder (channels of its first convolution).",
    "space": "Latent space: sphere | box | rn.",
    "conditional": "p(z~|z): vmf | laplace | gnormal | normal.",
    "kappa": "vMF concentration (also sets the cosine τ = 1/κ).",
    "scale": "Scale of laplace / gnormal, std of normal.",
    "p": "Shape p of the gnormal conditional.",
    "model": "Model space (default: --space).",
    "model_p": "Exponent of the lp critic (default matched)",
    "temperature": "Critic τ (default: matched).",
    "objective": Opt("A bound name (infomax list) or fmicl:<divergence>.", aliases=("--loss",)),
    "dim": "Latent dimension n.",
    "mixing_layers": "Layers of the invertible MLP mixing.",
    "hidden": "Encoder widths, comma-separated.",
    "steps": "Training steps (fresh samples each step).",
    "batch": "Batch size K.",
    "lr": "Adam learning rate (cosine decay).",
    "eval_every": "Evaluate held-out R²/MCC every N steps.",
    "seed": SEED,
    "threads": "torch CPU threads.",
}


@app.command()
@friendly_errors
@config_options(IdentifyConfig, IDENTIFY_OPTIONS, into="settings")
def identify(
    *,
    settings: Fields,
    table: bool = typer.Option(False, "--table", help="Run the matched/mismatched grid."),
    out: str = typer.Option("runs/identify", help="Folder for results.json, CSV and PNG."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Does contrastive learning invert the mixing? (Zimmermann et al. 2021, SPEC §5)."""
    from ..identifiability.experiment import run_identify
    from ..reports import print_table

    model = settings["model"]
    cfg = IdentifyConfig(
        **{
            **settings,
            "space": settings["space"].lower(),
            "conditional": settings["conditional"].lower(),
            "model": model.lower() if model else None,
            "eval_every": min(settings["eval_every"], settings["steps"]),
        }
    )
    out_dir(out)
    if table:
        from ..experiments import identify_table

        result = identify_table.run(identify_table.IdentifyTableConfig(cfg, progress))
        result.write(out)
        cols = result.columns
        rows = [[r[c] for c in cols] for r in result.rows]
        print_table("identifiability grid", cols, rows, console)
        console.print(f"table in {out}/table.md")
        return
    res = run_identify(cfg, out=out, progress=progress)
    baseline = "raw pixels" if cfg.world else "none: h = g(z)"
    print_table(
        cfg.label(),
        ["encoder", "R² linear", "R² kernel", "MCC"],
        [
            [name, m["r2_linear"], m["r2_kernel"], m["mcc"]]
            for name, m in (
                ("trained", res.metrics),
                ("untrained", res.untrained),
                (baseline, res.mixing_only),
            )
        ],
        console=console,
    )
    if res.per_latent:
        names = res.per_latent["names"]
        print_table(
            "held-out, per latent",
            ["", *names],
            [
                ["R² linear", *res.per_latent["r2_linear"]],
                ["MCC (matched |corr|)", *res.per_latent["mcc"]],
            ],
            console=console,
        )
    console.print(f"{res.seconds:.0f} s wall, {res.cpu_seconds:.0f} s CPU; results in {out}/")
