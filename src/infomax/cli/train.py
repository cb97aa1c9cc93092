"""``infomax train`` and ``infomax eval``: contrastive SSL (SimCLR, MoCo v2/v3, f-MICL)."""

from __future__ import annotations

import typer

from ..ssl import SSL_PRESETS, SSLConfig
from ..ssl.trainer import preset_text
from ._common import (
    DEVICE,
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


def _parse_preset(text: str, flag: str) -> str | None:
    name = text.strip().lower()
    if name == "none":
        return None
    if name != "auto":
        try:
            SSL_PRESETS.get(name)
        except ValueError as err:
            raise ValueError(f"{flag}: {err} (or auto, none)") from None
    return name


PRESET = Opt(
    "Named settings: auto (the preset named like --data), none (the plain defaults below), or "
    + "; ".join(preset_text(n) for n in SSL_PRESETS.names())
    + ". Options given on the command line override the preset.",
    parse=_parse_preset,
    show=lambda value: "auto" if value is None else str(value),
)

TRAIN_OPTIONS: dict[str, str | Opt] = {
    "data": "digits, mnist, fashion-mnist or cifar10.",
    "preset": PRESET,
    "data_dir": "Folder with the dataset's original files.",
    "objective": Opt(
        "infonce (NT-Xent) or an f-MICL divergence: kl, js, pearson, sqhellinger, tsallis, vlc.",
        aliases=("--divergence",),
    ),
    "similarity": "cosine or gaussian.",
    "temperature": "Similarity temperature τ (gaussian: σ² = τ).",
    "epochs": "Training epochs.",
    "batch_size": "Images per batch (2 views each).",
    "lr": "Peak learning rate (cosine schedule).",
    "optimizer": "adamw, sgd or lars.",
    "warmup_epochs": "Linear warm-up epochs.",
    "encoder": "auto, cnn, resnet18 or mlp.",
    "width": "Encoder width (CNN base channels, ResNet width).",
    "train_subset": "Use only the first N training images.",
    "eval_every": "kNN accuracy every N epochs (0: only at the end).",
    "seed": SEED,
    "device": DEVICE,
    "threads": "torch CPU threads (default: torch's choice).",
    "sync_batchnorm": Opt("Under torchrun: batch-norm statistics over all ranks.", ("--sync-bn",)),
    "memory_efficient": Opt(
        "Tiled loss kernels that never hold the score matrix (default: automatic from "
        "1024² scores on).",
        MEMORY_EFFICIENT,
    ),
}


@app.command()
@friendly_errors
@config_options(SSLConfig, TRAIN_OPTIONS, into="settings")
def train(
    method: str = typer.Argument(..., help="simclr, mocov2 or mocov3."),
    *,
    settings: Fields,
    resume: bool = typer.Option(
        False,
        help="Continue from OUT/checkpoint.pt with the saved settings (only --epochs (more), "
        "--eval-every, --device, --threads, --data-dir and --memory-efficient/--dense may "
        "change).",
    ),
    overwrite: bool = typer.Option(
        False, help="Replace the training run already in OUT (its checkpoint and results)."
    ),
    out: str = typer.Option("infomax-train", help="Output folder."),
) -> None:
    """Train a contrastive encoder (SimCLR, MoCo v2, MoCo v3); report probe and kNN accuracy.

    Multi-process: `torchrun --nproc-per-node N -m infomax train ...` (one process per GPU, or
    gloo on CPU); --batch-size is the global batch, split over the ranks.
    """
    from .. import dist
    from ..reports import print_table
    from ..ssl import train_ssl

    threads = settings["threads"]
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    if not resume:  # a resumed run's folder must exist already (train_ssl says so if not)
        out_dir(out)
    with dist.process_group(device=settings["device"]):
        given = preset_options(settings, SSLConfig())
        options = {k: v for k, v in given.items() if k != "preset"}
        config = SSLConfig.from_preset(
            settings["preset"], method=method, **options, progress=dist.rank() == 0
        )
        if dist.rank() == 0 and config.preset:
            console.print(f"preset {preset_text(config.preset)}", soft_wrap=True)
        metrics = train_ssl(config, out, resume=resume, overwrite=overwrite)
        if dist.rank() == 0:
            columns = ["linear_probe_acc", "knn_acc", "alignment", "uniformity", "epochs"]
            print_table(
                f"{config.method} / {config.objective} / {config.similarity} on {config.data}",
                ["linear probe", "kNN", "alignment", "uniformity", "epochs", "train s"],
                [[*(metrics[c] for c in columns), metrics["train_seconds"]]],
                console=console,
            )
            console.print(
                f"outputs in {out}/ (results.json, history.csv, curves.png, checkpoint.pt)"
            )


@app.command("eval")
@friendly_errors
def eval_cmd(
    checkpoint: str = typer.Argument(
        ..., help="checkpoint.pt of an `infomax train` run (or its folder)."
    ),
    data_dir: str | None = typer.Option(
        None, help="Override the dataset folder saved with the run."
    ),
    device: str = typer.Option("auto", help=DEVICE),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Linear probe, weighted kNN (k=200, T=0.1), alignment and uniformity of a trained encoder."""
    import json

    from ..reports import print_table, to_jsonable
    from ..ssl import evaluate_checkpoint

    metrics = evaluate_checkpoint(checkpoint, data_dir=data_dir, device=device)
    if as_json:
        typer.echo(json.dumps(to_jsonable(metrics), indent=2))
        return
    print_table(
        f"evaluation of {checkpoint}",
        ["linear probe", "kNN", "alignment", "uniformity", "epochs"],
        [
            [
                metrics["linear_probe_acc"],
                metrics["knn_acc"],
                metrics["alignment"],
                metrics["uniformity"],
                metrics["epochs"],
            ]
        ],
        console=console,
    )
