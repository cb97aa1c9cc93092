"""``infomax rpm``: InfoNCE as variational inference in a recognition parameterised model."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import typer

from ..experiments.rpm_demo import QUICK, DemoConfig
from ..rpm.train import DigitsConfig, IdentConfig
from ._common import SEED, Fields, app, config_options, console, friendly_errors, out_dir

#: ``--digits`` settings (``--epochs`` and ``--seed`` on the command line; ``--quick``: 2 epochs)
DIGITS = DigitsConfig(epochs=100, batch_size=128, lr=3e-3)
#: ``--identify --quick`` settings
IDENTIFY_QUICK = {"steps": 100}

DEMO_OPTIONS = {
    "dim": "Latent pairs of the Gaussian demo.",
    "rho": "Correlation per pair of the data views.",
    "sigma": "Recognition noise σ of R(z|x) = N(x, σ²).",
    "seed": SEED,
}


@app.command()
@friendly_errors
@config_options(DIGITS, {"epochs": "Training epochs for --digits."}, into="digits_settings")
@config_options(DemoConfig, DEMO_OPTIONS, into="demo_settings")
def rpm(
    demo: bool = typer.Option(
        False, "--demo", help="Numerical demonstrations on Gaussian latents."
    ),
    digits: bool = typer.Option(
        False, "--digits", help="Train InfoNCE vs learned-prior ELBO on digits."
    ),
    identify: bool = typer.Option(
        False, "--identify", help="Linear R² of InfoNCE vs learned-prior ELBO encoders."
    ),
    out: str = typer.Option("runs/rpm", help="Folder for results.json, CSV and PNG."),
    quick: bool = typer.Option(False, "--quick", help="Small, fast settings (smoke test)."),
    *,
    demo_settings: Fields,
    digits_settings: Fields,
    docs_dir: str | None = typer.Option(None, help="Also copy the convergence plot here."),
) -> None:
    """InfoNCE as variational inference in a recognition parameterised model (SPEC §6)."""
    if not (demo or digits or identify):
        raise ValueError("choose at least one of --demo, --digits, --identify")
    out_dir(out)
    out_dir(docs_dir, "--docs-dir")
    seed = demo_settings["seed"]
    if demo:
        cfg = DemoConfig(**demo_settings, **(QUICK if quick else {}))
        _demo(cfg, out, docs_dir)
    if digits:
        dcfg = dataclasses.replace(DIGITS, **digits_settings, seed=seed)
        _digits(dataclasses.replace(dcfg, epochs=2) if quick else dcfg, out)
    if identify:
        _identify(IdentConfig(seed=seed, **(IDENTIFY_QUICK if quick else {})), out)
    console.print(f"wrote results.json under {out}")


def _demo(cfg: DemoConfig, out: str, docs_dir: str | None) -> None:
    from ..experiments.rpm_demo import run
    from ..reports import atomic_write_bytes, print_table

    res = run(cfg)
    paths = res.write(out)
    if docs_dir is not None:
        atomic_write_bytes(Path(docs_dir) / paths["plot"].name, paths["plot"].read_bytes())
    curves = (res.infonce_true_critic, res.infonce_dot_critic, res.learned_prior)
    rows = [
        [a["K"], a["infonce"], a["gap"], b["infonce"], b["gap"], c["learned_prior_elbo"]]
        for a, b, c in zip(*curves, strict=True)
    ]
    cols = ["K", "InfoNCE true f", "gap", "InfoNCE dot f", "gap", "learned-prior ELBO"]
    print_table(f"RPM ELBOs (true MI {res.mutual_information:.4f} nats)", cols, rows, console)
    keys = ("transform", "mutual_information", "fixed_critic_elbo_mc", "dot_critic_elbo_mc")
    print_table(
        "MI is invariant, InfoNCE-prior ELBO is not",
        ["transform", "MI", "ELBO fixed f", "ELBO best dot f"],
        [[r[k] for k in keys] for r in res.invariance],
        console,
    )


def _digits(cfg: DigitsConfig, out: str) -> None:
    from ..reports import print_table
    from ..rpm.train import compare_digits, write_digits

    res: dict[str, Any] = compare_digits(cfg)
    write_digits(res, cfg, f"{out}/digits")
    base = res["baselines"]
    rows = [
        [k, v["probe_backbone"], v["probe_latent"], v["final_elbo_model"]]
        for k, v in res["runs"].items()
    ]
    rows.append(["untrained encoder", base["random_backbone"], base["random_latent"], "-"])
    rows.append(["raw pixels", base["raw_pixels"], "-", "-"])
    cols = ["objective", "backbone acc", "latent acc", "ELBO"]
    print_table("digits linear probe", cols, rows, console)


def _identify(cfg: IdentConfig, out: str) -> None:
    from ..reports import print_table
    from ..rpm.train import compare_identifiability, write_identify

    res = compare_identifiability(cfg)
    write_identify(res, cfg, f"{out}/identify")
    rows = [[k, res[f"{k}_r2_linear"]] for k in ("infonce", "learned", "untrained")]
    print_table("linear R² of h(x) -> z", ["encoder", "R²"], rows, console)
