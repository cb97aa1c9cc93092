"""``infomax dm``: noise-injected Deep InfoMax, distribution matching over σ (SPEC §7)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from ..dm import DMConfig
from ._common import (
    DEVICE,
    SEED,
    Fields,
    app,
    comma_list,
    config_options,
    console,
    friendly_errors,
    out_dir,
)

DM_OPTIONS = {
    "target": "Target law: gaussian, uniform, or laplace / exponential / gumbel (inverse CDF of "
    "the uniform one), optionally with parameters, e.g. laplace:0,2.",
    "sigma": "Noise std (gaussian) or half-width (uniform and inverse-CDF targets).",
    "method": "noisy-dim, or simclr (the plain-SimCLR reference row, no noise).",
    "normalization": "rank (whitening + soft ranks), batch (per-dimension moments, SPEC 7) or "
    "radial (gaussian only).",
    "denominator": "balanced (InfoNCE with and without the positive, averaged) or "
    "with-positive (InfoNCE as it is).",
    "match_weight": "Weight of a penalty between the clean batch and target draws (0: none; "
    "default: the data set's recipe).",
    "match_kernel": "That penalty: energy (energy distance) or imq (multi-scale IMQ MMD).",
    "crop": "Smallest random-crop scale of the image views.",
    "stroke": "Probability of a random stroke width (dilate / erode) in the image view "
    "(default: the data set's recipe).",
    "data": "synthetic, digits, mnist or fashion-mnist.",
    "data_dir": "Folder with the dataset's original files.",
    "dim": "Representation dimension d.",
    "bound": "InfoMax bound (infonce, js, nwj, dv, smile).",
    "views": "augment (two random views) or identity.",
    "epochs": "Training epochs per sigma.",
    "batch_size": "Batch size K.",
    "lr": "AdamW learning rate.",
    "encoder": "auto (mlp: vectors, digits; cnn: 28x28), cnn, mlp.",
    "width": "Encoder width (CNN base / MLP hidden).",
    "sigma_warmup": "Fraction of training over which sigma moves from --sigma-start.",
    "sigma_start": "Noise at the start of the --sigma-warmup schedule (above --sigma: anneal).",
    "train_subset": "Use the first N training inputs.",
    "probe_subset": "First N training inputs for the probe.",
    "test_subset": "First N test inputs.",
    "dm_sizes": "Sample sizes of the DM tests.",
    "permutations": "Permutations of the energy test.",
    "dm_resamples": "Further random test subsets for the pass rates (0: none).",
    "seed": SEED,
    "device": DEVICE,
    "progress": "Show training progress.",
}

SWEEP_COLUMNS = [
    "sigma",
    "seed",
    "probe acc",
    "KS p min",
    "Shapiro p min",
    "energy",
    "energy p",
    "energy pass rate",
    "SW2",
]
SWEEP_COLUMNS += ["MI est", "ceiling"]


@app.command()
@friendly_errors
@config_options(DMConfig, DM_OPTIONS, into="settings")
def dm(
    *,
    settings: Fields,
    sweep: str | None = typer.Option(None, help="Comma list of sigmas, e.g. 0,0.05,0.1,0.2,0.4."),
    seeds: str | None = typer.Option(
        None, help="Comma list of seeds for every sigma (default: --seed)."
    ),
    seeds_at: float | None = typer.Option(
        None, help="Run every seed only at this sigma (the others: the first seed)."
    ),
    simclr_reference: bool = typer.Option(
        False, help="Add plain SimCLR rows (same encoder, views, budget; one per seed)."
    ),
    out: str = typer.Option("runs/dm", help="Folder for results.json, CSV and PNGs."),
    docs_dir: str | None = typer.Option(
        None, help="Also copy the PNGs here, as dm_<data>_<target>_<figure>.png."
    ),
) -> None:
    """Noise-injected Deep InfoMax: DM metrics and linear-probe accuracy over sigma."""
    from ..experiments.dm_sweep import DMSweepConfig, run
    from ..reports import atomic_write_bytes, print_table

    base = DMConfig(**settings)  # resolves the recipe's defaults (sigma, epochs)
    sigmas = comma_list(float, "sigma", "0,0.1")(sweep, "--sweep") if sweep else [base.noise_level]
    seed_list = comma_list(int, "seed", "0,1,2")(seeds, "--seeds") if seeds else None
    sweep_cfg = DMSweepConfig(
        replace(base, sigma=sigmas[0]),
        tuple(sigmas),
        None if seed_list is None else tuple(seed_list),
        simclr_reference,
        seeds_at,
    )
    cfg = sweep_cfg.base
    out_dir(out)
    out_dir(docs_dir, "--docs-dir")
    res = run(sweep_cfg, run_dir=out)
    paths = res.write(out)
    if docs_dir is not None:
        for name in ("tradeoff", "marginals"):
            target = Path(docs_dir) / f"dm_{cfg.data}_{cfg.target}_{name}.png"
            atomic_write_bytes(target, paths[name].read_bytes())
    keys = ["sigma", "seed", "linear_probe_acc", "ks_p_min", "shapiro_p_min", "energy"]
    keys += ["energy_p", "energy_pass_rate", "sliced_w2", "mi_estimate", "capacity"]
    rows = [
        [("simclr" if r.get("method") == "simclr" else r["sigma"]), *[r[k] for k in keys[1:]]]
        for r in res.rows
    ]
    ref = res.reference[0]
    rows.append(
        ["true sample", "-", "-"]
        + [ref[k] for k in ("ks_p_min", "shapiro_p_min", "energy", "energy_p")]
        + ["-", ref["sliced_w2"], "-", "-"]
    )
    title = f"noise-injected DIM on {cfg.data}, {cfg.target} target, d={cfg.dim}, n={ref['n']}"
    print_table(title, SWEEP_COLUMNS, rows, console)
    for r in res.rows:
        if r.get("mi_note"):
            console.print(f"sigma {r['sigma']:g}, seed {r['seed']}: held-out MI {r['mi_note']}")
    summary = res.summary["summary"]
    if len(res.config.seeds or ()) > 1 or res.config.simclr_reference:
        cols = ["method", "sigma", "seeds", "probe acc", "energy p", "SW2 / true", "energy pass"]
        cols += ["KS pass", "Shapiro pass", "energy pass rate"]
        srows = [
            [
                s["method"],
                s["sigma"],
                s["seeds"],
                f"{s['linear_probe_acc_mean']:.3f} ± {s['linear_probe_acc_std']:.3f}",
                f"{s['energy_p_mean']:.3f}",
                f"{s['sw2_ratio_mean']:.2f}",
                s["energy_pass"],
                s["ks_pass"],
                s["shapiro_pass"],
                f"{s['energy_pass_rate_mean']:.2f}",
            ]
            for s in summary
        ]
        print_table("over seeds", cols, srows, console)
    console.print(
        f"wrote results.json, dm_sweep.csv, dm_summary.csv, dm_tradeoff.png, dm_marginals.png "
        f"to {out}"
    )
