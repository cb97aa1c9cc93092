"""Command line interface (typer). Each command is a thin wrapper over one public function.

Errors that come from bad input (``ValueError``, ``FileNotFoundError``) are printed as one red
line and exit with status 2; no traceback.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

# rich_markup_mode=None: help text is shown as written (``[n, dx]`` is a shape, not markup)
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Contrastive and InfoMax learning.",
)
bench_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Benchmarks: accuracy, speed and memory."
)
app.add_typer(bench_app, name="bench")
console = Console()
#: warnings go to stderr, so that ``--json`` output on stdout stays valid JSON
warn_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def error_line(err: BaseException) -> str:
    """One line for an input or output problem: what went wrong and, where known, on which path."""
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    if isinstance(err, MemoryError):
        return "not enough memory for this run: lower the sizes (batch, samples, test sizes)"
    return str(err) or type(err).__name__


def friendly_errors(fn: F) -> F:
    """Turn input / output errors into one red line and exit code 2 (no traceback).

    ``ValueError`` (bad input, found by the library's checks), every ``OSError`` (unreadable
    input, an output folder that cannot be written), ``MemoryError`` and torch's out-of-memory
    error. Anything else is a bug: one line saying so, exit code 1, and the traceback only
    with ``INFOMAX_TRACEBACK=1``.
    """
    import os

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except (ValueError, OSError, MemoryError) as err:
            console.print(f"[bold red]error:[/] {escape(error_line(err))}", soft_wrap=True)
            raise typer.Exit(code=2) from None
        except Exception as err:
            import torch

            if isinstance(err, torch.OutOfMemoryError):
                msg = "out of device memory: lower --batch-size (or use --memory-efficient)"
                console.print(f"[bold red]error:[/] {msg}", soft_wrap=True)
                raise typer.Exit(code=2) from None
            if os.environ.get("INFOMAX_TRACEBACK"):
                raise
            console.print(
                f"[bold red]internal error:[/] {escape(type(err).__name__)}: {escape(str(err))} "
                "(a bug: please report it; INFOMAX_TRACEBACK=1 shows the traceback)",
                soft_wrap=True,
            )
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


def out_dir(path: str | None, option: str = "--out") -> str | None:
    """Check an output folder before any work (creating nothing): fail now, not after the run,
    when it is an existing file or cannot be written (:func:`reports.prepare_out_dir`)."""
    if path is None:
        return None
    from .reports import prepare_out_dir

    prepare_out_dir(path, option)
    return path


# Commands are added below, one block per capability.

# --- MI estimation --------------------------------------------------------------------------


def _parse_seeds(seeds: str) -> list[int]:
    """``"5"`` -> seeds 0..4; ``"0,3,7"`` -> those seeds."""
    try:
        if "," in seeds:
            return [int(s) for s in seeds.split(",") if s.strip()]
        count = int(seeds)
    except ValueError:
        raise ValueError(
            f"--seeds must be a count or a comma list of integers, got {seeds!r}"
        ) from None
    if count < 1:
        raise ValueError(f"--seeds must be >= 1, got {count}")
    return list(range(count))


def _parse_bounds(bounds: str) -> list[str]:
    from .registry import BOUNDS

    names = (
        BOUNDS.names() if bounds == "all" else [b.strip() for b in bounds.split(",") if b.strip()]
    )
    if not names:
        raise ValueError(f"--bounds {bounds!r} names no bound: give a comma list or 'all'")
    for name in names:
        BOUNDS.get(name)
    return names


@app.command()
@friendly_errors
def estimate(
    x: str = typer.Argument(..., help="X samples: .npy or .csv [n, dx], or one .npz with x and y"),
    y: str | None = typer.Argument(None, help="Y samples: .npy or .csv [n, dy]"),
    bound: str = typer.Option("flo", help="Bound name (see `infomax list`)."),
    critic: str = typer.Option("dot", help="Critic name."),
    steps: int = typer.Option(3000, help="Maximum training steps."),
    batch_size: int = typer.Option(128, help="Pairs per batch K."),
    lr: float = typer.Option(5e-4, help="Adam learning rate."),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1 ..."),
    as_json: bool = typer.Option(False, "--json", help="Print the full result as JSON."),
    memory_efficient: bool | None = typer.Option(
        None,
        "--memory-efficient/--dense",
        help="Tiled kernels that never hold the K×K scores (default: automatic from K = 4096).",
    ),
    out: str | None = typer.Option(None, help="Folder for results.json, curve CSV and plot."),
) -> None:
    """Estimate I(X;Y) in nats with a variational bound (held-out estimate + bootstrap CI).

    Data-parallel: `torchrun --nproc-per-node N -m infomax estimate ...` splits each batch's
    critic rows over the ranks (--batch-size divisible by N); rank 0 prints and writes.
    """
    from . import dist
    from .arrays import load_pair
    from .estimate import estimate_mi

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        xs, ys = load_pair(x, y)
    for w in caught:
        warn_console.print(f"[yellow]warning:[/] {escape(str(w.message))}", soft_wrap=True)
    out_dir(out)
    with dist.process_group(device=device):
        main_rank = dist.rank() == 0
        with warnings.catch_warnings(record=True) as caught:  # shown below as one line each
            warnings.simplefilter("always")
            result = estimate_mi(
                xs,
                ys,
                bound=bound,
                critic=critic,
                batch_size=batch_size,
                steps=steps,
                lr=lr,
                seed=seed,
                device=device,
                memory_efficient=memory_efficient,
                progress=not as_json,
            )
    if not main_rank:
        return
    if out:
        _write_estimate(result, out)
    notes = list(result.warnings)
    notes += [str(w.message) for w in caught if str(w.message) not in notes]
    if as_json:
        typer.echo(result.to_json())
        for note in notes:
            warn_console.print(f"[yellow]warning:[/] {escape(note)}", soft_wrap=True)
        return
    from .reports import print_table

    ci_ok = all(math.isfinite(c) for c in result.ci)
    print_table(
        f"I(X;Y) with {bound} / {critic}",
        ["estimate (nats)", "stderr", "95% CI", "train", "steps (best)", "n train/test", "seconds"],
        [
            (
                result.mi,
                result.stderr if math.isfinite(result.stderr) else "n/a",
                f"[{result.ci[0]:.3f}, {result.ci[1]:.3f}]" if ci_ok else "n/a",
                result.train_mi,
                f"{result.steps} ({result.best_step})",
                f"{result.n_train}/{result.n_test}",
                result.seconds,
            )
        ],
        console=console,
    )
    for note in notes:
        warn_console.print(f"[yellow]warning:[/] {escape(note)}", soft_wrap=True)


def _write_estimate(result: object, out: str) -> None:
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .reports import save_figure, write_csv, write_json

    folder = Path(out)
    write_json(folder / "results.json", result.to_dict())  # type: ignore[attr-defined]
    history = result.history  # type: ignore[attr-defined]
    write_csv(folder / "curve.csv", history)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([h["step"] for h in history], [h["train"] for h in history], label="train")
    ax.plot([h["step"] for h in history], [h["test"] for h in history], label="held-out")
    ax.set_xlabel("step")
    ax.set_ylabel("estimate (nats)")
    ax.legend()
    save_figure(fig, folder / "curve.png")


@bench_app.command("mi")
@friendly_errors
def bench_mi(
    tasks: str = typer.Option(
        "staircase:dim=20",
        help="Task specs separated by ';', e.g. 'staircase:dim=20' or "
        "'gaussian:dim=5,mi=2;cubic(gaussian:dim=5,mi=2)'.",
    ),
    bounds: str = typer.Option("all", help="Comma list of bounds, or 'all'."),
    seeds: str = typer.Option("5", help="Number of seeds, or a comma list."),
    steps: int = typer.Option(3000, help="Training steps per run (same for every bound)."),
    batch_size: int = typer.Option(128, help="Pairs per batch K."),
    n_samples: int = typer.Option(20000, help="Samples drawn per task and seed."),
    critic: str = typer.Option("dot", help="Critic for every bound."),
    lr: float = typer.Option(5e-4, help="Adam learning rate."),
    out: str = typer.Option("bench-mi", help="Output folder."),
) -> None:
    """Every bound on ground-truth tasks: bias/std table, CSV, JSON and a staircase plot."""
    from .estimate import EstimateConfig
    from .mi_benchmark import print_summary, run_mi_benchmark
    from .tasks import tasks_from_string

    task_list = [t for spec in tasks.split(";") if spec.strip() for t in tasks_from_string(spec)]
    cfg = EstimateConfig(critic=critic, batch_size=batch_size, steps=steps, lr=lr)
    bound_list = _parse_bounds(bounds)
    out_dir(out)
    result = run_mi_benchmark(
        task_list,
        bound_list,
        _parse_seeds(seeds),
        n_samples=n_samples,
        config=cfg,
        out_dir=out,
    )
    print_summary(result["summary"])
    console.print(f"wrote {out}/results.json, results.csv, summary.csv, staircase.png")


@bench_app.command("mi-merge")
@friendly_errors
def bench_mi_merge(
    folders: list[str] = typer.Argument(..., help="Output folders of `infomax bench mi` runs."),
    out: str = typer.Option("bench-mi", help="Output folder for the combined results."),
) -> None:
    """Combine MI benchmark runs (e.g. seeds run in parallel processes) into one table and plot."""
    from .mi_benchmark import merge_results, print_summary

    out_dir(out)
    result = merge_results(folders, out)
    print_summary(result["summary"])
    console.print(f"wrote {out}/results.json, results.csv, summary.csv, summary.md, staircase.png")


@app.command("list")
def list_names() -> None:
    """List the registered bounds, critics, divergences, tasks and methods."""
    from .registry import BOUNDS, CRITICS, DIVERGENCES, METHODS, SUITES, TASKS, TRANSFORMS

    for reg in (BOUNDS, CRITICS, DIVERGENCES, TASKS, SUITES, TRANSFORMS, METHODS):
        try:
            names = ", ".join(reg.names())
        except ImportError:
            names = "(not available)"
        console.print(f"[bold]{reg.kind}s[/]: {names}")


@app.command()
@friendly_errors
def demo(
    out: str = typer.Option("infomax-demo", help="Output folder."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """A quick tour on embedded data: MI bounds on a Gaussian staircase + SimCLR on digits."""
    from pathlib import Path

    from .demo import run_demo

    out_dir(out)
    summary = run_demo(Path(out), seed=seed, console=console)
    console.print(f"[bold green]demo done[/] in {summary['seconds']:.0f} s; outputs in {out}/")


# --- Contrastive SSL (issue 4) ----------------------------------------------------------------


@app.command()
@friendly_errors
def train(
    method: str = typer.Argument(..., help="simclr, mocov2 or mocov3."),
    data: str = typer.Option("digits", help="digits, mnist, fashion-mnist or cifar10."),
    data_dir: str | None = typer.Option(None, help="Folder with the dataset's original files."),
    divergence: str = typer.Option(
        "infonce",
        help="infonce (NT-Xent) or an f-divergence: kl, js, pearson, sqhellinger, tsallis, vlc.",
    ),
    similarity: str = typer.Option("cosine", help="cosine or gaussian."),
    temperature: float = typer.Option(0.5, help="Similarity temperature τ (gaussian: σ² = τ)."),
    epochs: int = typer.Option(10, help="Training epochs."),
    batch_size: int = typer.Option(256, help="Images per batch (2 views each)."),
    lr: float = typer.Option(1e-3, help="Peak learning rate (cosine schedule)."),
    optimizer: str = typer.Option("adamw", help="adamw, sgd or lars."),
    warmup_epochs: float = typer.Option(0.0, help="Linear warm-up epochs."),
    encoder: str = typer.Option("auto", help="auto, cnn, resnet18 or mlp."),
    width: int | None = typer.Option(None, help="Encoder width (CNN base channels, ResNet width)."),
    train_subset: int | None = typer.Option(None, help="Use only the first N training images."),
    eval_every: int = typer.Option(0, help="kNN accuracy every N epochs (0: only at the end)."),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option("auto", help="auto, cpu, cuda ..."),
    threads: int | None = typer.Option(None, help="torch CPU threads (default: torch's choice)."),
    resume: bool = typer.Option(
        False,
        help="Continue from OUT/checkpoint.pt with the saved settings (only --epochs (more), "
        "--eval-every, --device, --threads, --data-dir and --memory-efficient/--dense may "
        "change).",
    ),
    overwrite: bool = typer.Option(
        False, help="Replace the training run already in OUT (its checkpoint and results)."
    ),
    sync_bn: bool = typer.Option(
        False, "--sync-bn", help="Under torchrun: batch-norm statistics over all ranks."
    ),
    memory_efficient: bool | None = typer.Option(
        None,
        "--memory-efficient/--dense",
        help="Tiled loss kernels that never hold the score matrix (default: automatic from "
        "4096² scores on).",
    ),
    out: str = typer.Option("infomax-train", help="Output folder."),
) -> None:
    """Train a contrastive encoder (SimCLR, MoCo v2, MoCo v3); report probe and kNN accuracy.

    Multi-process: `torchrun --nproc-per-node N -m infomax train ...` (one process per GPU, or
    gloo on CPU); --batch-size is the global batch, split over the ranks.
    """
    from . import dist
    from .ssl import SSLConfig, train_ssl

    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    if not resume:  # a resumed run's folder must exist already (train_ssl says so if not)
        out_dir(out)
    with dist.process_group(device=device):
        config = SSLConfig(
            method=method,
            data=data,
            data_dir=data_dir,
            divergence=divergence,
            similarity=similarity,
            temperature=temperature,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            optimizer=optimizer,
            warmup_epochs=warmup_epochs,
            encoder=encoder,
            width=width,
            train_subset=train_subset,
            eval_every=eval_every,
            seed=seed,
            device=device,
            sync_batchnorm=sync_bn,
            memory_efficient=memory_efficient,
            threads=threads,
            progress=dist.rank() == 0,
        )
        train_ssl(config, out, resume=resume, overwrite=overwrite)
        if dist.rank() == 0:
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
    device: str = typer.Option("auto", help="auto, cpu, cuda ..."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Linear probe, weighted kNN (k=200, T=0.1), alignment and uniformity of a trained encoder."""
    import json

    from .reports import print_table, to_jsonable
    from .ssl import evaluate_checkpoint

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


# --- Identifiability (issue 5) -----------------------------------------------------------------


@app.command()
@friendly_errors
def identify(
    space: str = typer.Option("sphere", help="Latent space: sphere | box | rn."),
    conditional: str = typer.Option("vmf", help="p(z~|z): vmf | laplace | gnormal | normal."),
    kappa: float = typer.Option(10.0, help="vMF concentration (also sets the cosine τ = 1/κ)."),
    scale: float = typer.Option(0.1, help="Scale of laplace / gnormal, std of normal."),
    p: float = typer.Option(1.0, help="Shape p of the gnormal conditional."),
    model: str | None = typer.Option(None, help="Model space (default: --space)."),
    model_p: float | None = typer.Option(None, help="Exponent of the lp critic (default matched)"),
    temperature: float | None = typer.Option(None, help="Critic τ (default: matched)."),
    loss: str = typer.Option("infonce", help="A bound name (infomax list) or fmicl:<divergence>."),
    dim: int = typer.Option(10, help="Latent dimension n."),
    mixing_layers: int = typer.Option(3, help="Layers of the invertible MLP mixing."),
    hidden: str = typer.Option("64,256,256,64", help="Encoder widths, comma-separated."),
    steps: int = typer.Option(16000, help="Training steps (fresh samples each step)."),
    batch: int = typer.Option(512, help="Batch size K."),
    lr: float = typer.Option(2e-3, help="Adam learning rate (cosine decay)."),
    eval_every: int = typer.Option(1000, help="Evaluate held-out R²/MCC every N steps."),
    seed: int = typer.Option(0, help="Random seed."),
    threads: int | None = typer.Option(None, help="torch CPU threads."),
    table: bool = typer.Option(False, "--table", help="Run the matched/mismatched grid."),
    out: str = typer.Option("runs/identify", help="Folder for results.json, CSV and PNG."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Does contrastive learning invert the mixing? (Zimmermann et al. 2021, SPEC §5)."""
    from .identifiability.experiment import (
        TABLE_COLUMNS,
        IdentifyConfig,
        run_identify,
        run_table,
    )
    from .reports import print_table

    try:
        widths = tuple(int(w) for w in hidden.split(","))
    except ValueError:
        raise ValueError(f"--hidden must be comma-separated integers, got {hidden!r}") from None
    cfg = IdentifyConfig(
        space=space.lower(),
        conditional=conditional.lower(),
        kappa=kappa,
        scale=scale,
        p=p,
        model=model.lower() if model else None,
        model_p=model_p,
        temperature=temperature,
        loss=loss,
        dim=dim,
        mixing_layers=mixing_layers,
        hidden=widths,
        steps=steps,
        batch=batch,
        lr=lr,
        eval_every=min(eval_every, steps),
        seed=seed,
        threads=threads,
    )
    out_dir(out)
    if table:
        rows = run_table(cfg, out=out, progress=progress)
        cols = list(TABLE_COLUMNS)
        print_table("identifiability grid", cols, [[r[c] for c in cols] for r in rows], console)
        console.print(f"table in {out}/table.md")
        return
    res = run_identify(cfg, out=out, progress=progress)
    print_table(
        cfg.label(),
        ["encoder", "R² linear", "R² kernel", "MCC"],
        [
            [name, m["r2_linear"], m["r2_kernel"], m["mcc"]]
            for name, m in (
                ("trained", res.metrics),
                ("untrained", res.untrained),
                ("none: h = g(z)", res.mixing_only),
            )
        ],
        console=console,
    )
    console.print(f"{res.seconds:.0f} s wall, {res.cpu_seconds:.0f} s CPU; results in {out}/")


@bench_app.command("losses")
@friendly_errors
def bench_losses(
    batch_sizes: str = typer.Option(
        "512,2048,8192,16384,32768", help="Comma list of B (pairs; 2B embeddings)."
    ),
    dim: int = typer.Option(128, help="Embedding dimension d."),
    repeats: int = typer.Option(5, help="Timed runs per configuration (median reported)."),
    temperature: float = typer.Option(0.2, help="NT-Xent temperature."),
    impls: str = typer.Option(
        "tiled,tiled-3gemm,dense,lightly,pml", help="Comma list of implementations."
    ),
    threads: int = typer.Option(1, help="Torch threads per run (0: torch default)."),
    memory_cap_gib: float = typer.Option(0.0, help="Address-space cap per run (0: automatic)."),
    seed: int = typer.Option(0, help="Seed of the random embeddings."),
    out: str = typer.Option("bench-losses", help="Output folder."),
) -> None:
    """NT-Xent forward+backward time and peak memory: tiled vs dense vs lightly vs PML."""
    from .kernels.bench import TABLE_COLUMNS, LossBenchConfig, run_loss_bench, table_rows
    from .reports import print_table

    cfg = LossBenchConfig(
        batch_sizes=tuple(int(b) for b in batch_sizes.split(",") if b.strip()),
        dim=dim,
        repeats=repeats,
        temperature=temperature,
        impls=tuple(i.strip() for i in impls.split(",") if i.strip()),
        threads=threads,
        memory_cap_gib=memory_cap_gib,
        seed=seed,
    )
    out_dir(out)
    rows = run_loss_bench(cfg, out)
    print_table(
        "NT-Xent forward + backward (fp32)", TABLE_COLUMNS, table_rows(rows), console=console
    )
    console.print(f"wrote {out}/results.json, bench_losses.csv, bench_losses.png")


@app.command()
@friendly_errors
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
    dim: int = typer.Option(2, help="Latent pairs of the Gaussian demo."),
    rho: float = typer.Option(0.9, help="Correlation per pair of the data views."),
    sigma: float = typer.Option(0.25, help="Recognition noise σ of R(z|x) = N(x, σ²)."),
    epochs: int = typer.Option(100, help="Training epochs for --digits."),
    docs_dir: str | None = typer.Option(None, help="Also copy the convergence plot here."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """InfoNCE as variational inference in a recognition parameterised model (SPEC §6)."""
    from .reports import print_table

    if not (demo or digits or identify):
        raise ValueError("choose at least one of --demo, --digits, --identify")
    out_dir(out)
    out_dir(docs_dir, "--docs-dir")
    if demo:
        from .rpm.demo import DemoConfig, run_demo, write_demo

        small: dict[str, Any] = {"ks": (8, 32, 128), "n_rows": 2048, "n_fit": 5000, "n_pool": 1024}
        cfg = DemoConfig(dim=dim, rho=rho, sigma=sigma, seed=seed, **(small if quick else {}))
        res = run_demo(cfg)
        write_demo(res, out, docs_dir)
        curves = (res.infonce_true_critic, res.infonce_dot_critic, res.learned_prior)
        rows = [
            [a["K"], a["infonce"], a["gap"], b["infonce"], b["gap"], c["learned_prior_elbo"]]
            for a, b, c in zip(*curves, strict=True)
        ]
        cols = ["K", "InfoNCE true f", "gap", "InfoNCE dot f", "gap", "learned-prior ELBO"]
        print_table(f"RPM ELBOs (true MI {res.mutual_information:.4f} nats)", cols, rows, console)
        inv = [
            [
                r["transform"],
                r["mutual_information"],
                r["fixed_critic_elbo_mc"],
                r["dot_critic_elbo_mc"],
            ]
            for r in res.invariance
        ]
        print_table(
            "MI is invariant, InfoNCE-prior ELBO is not",
            ["transform", "MI", "ELBO fixed f", "ELBO best dot f"],
            inv,
            console,
        )
    if digits:
        from .rpm.train import DigitsConfig, compare_digits, write_digits

        dcfg = DigitsConfig(epochs=2 if quick else epochs, seed=seed, batch_size=128, lr=3e-3)
        dres = compare_digits(dcfg)
        write_digits(dres, dcfg, f"{out}/digits")
        base = dres["baselines"]
        drows = [
            [k, v["probe_backbone"], v["probe_latent"], v["final_elbo_model"]]
            for k, v in dres["runs"].items()
        ]
        drows.append(["untrained encoder", base["random_backbone"], base["random_latent"], "-"])
        drows.append(["raw pixels", base["raw_pixels"], "-", "-"])
        print_table(
            "digits linear probe",
            ["objective", "backbone acc", "latent acc", "ELBO"],
            drows,
            console,
        )
    if identify:
        from .rpm.train import IdentConfig, compare_identifiability, write_identify

        icfg = IdentConfig(steps=100 if quick else 1500, seed=seed)
        ires = compare_identifiability(icfg)
        write_identify(ires, icfg, f"{out}/identify")
        irows = [[k, ires[f"{k}_r2_linear"]] for k in ("infonce", "learned", "untrained")]
        print_table("linear R² of h(x) -> z", ["encoder", "R²"], irows, console)
    console.print(f"wrote results.json under {out}")


# --- distribution matching (SPEC §7) ---------------------------------------------------------


@app.command()
@friendly_errors
def dm(
    target: str = typer.Option("gaussian", help="Target law: gaussian or uniform."),
    sigma: float = typer.Option(0.2, help="Noise std (gaussian) or half-width (uniform)."),
    sweep: str | None = typer.Option(None, help="Comma list of sigmas, e.g. 0,0.05,0.1,0.2,0.4."),
    data: str = typer.Option("digits", help="synthetic, digits, mnist or fashion-mnist."),
    data_dir: str | None = typer.Option(None, help="Folder with the dataset's original files."),
    dim: int = typer.Option(16, help="Representation dimension d."),
    bound: str = typer.Option("infonce", help="InfoMax bound (infonce, js, nwj, dv, smile)."),
    views: str = typer.Option("augment", help="augment (two random views) or identity."),
    epochs: int = typer.Option(20, help="Training epochs per sigma."),
    batch_size: int = typer.Option(256, help="Batch size K."),
    lr: float = typer.Option(1e-3, help="AdamW learning rate."),
    encoder: str = typer.Option("auto", help="auto (mlp: vectors, digits; cnn: 28x28), cnn, mlp."),
    width: int | None = typer.Option(None, help="Encoder width (CNN base / MLP hidden)."),
    sigma_warmup: float = typer.Option(0.0, help="Fraction of training to ramp sigma from 0."),
    train_subset: int | None = typer.Option(None, help="Use the first N training inputs."),
    probe_subset: int | None = typer.Option(None, help="First N training inputs for the probe."),
    test_subset: int | None = typer.Option(None, help="First N test inputs."),
    dm_sizes: str = typer.Option("500,1000", help="Sample sizes of the DM tests."),
    permutations: int = typer.Option(200, help="Permutations of the energy test."),
    out: str = typer.Option("runs/dm", help="Folder for results.json, CSV and PNGs."),
    docs_dir: str | None = typer.Option(None, help="Also copy the PNGs here."),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option("auto", help="auto, cpu, cuda ..."),
    progress: bool = typer.Option(True, help="Show training progress."),
) -> None:
    """Noise-injected Deep InfoMax: DM metrics and linear-probe accuracy over sigma."""
    from .dm import DMConfig, run_sweep
    from .reports import print_table

    def floats(text: str, name: str) -> list[float]:
        try:
            return [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--{name} must be a comma list of numbers, got {text!r}") from None

    sigmas = floats(sweep, "sweep") if sweep else [sigma]
    try:
        sizes = tuple(int(v) for v in dm_sizes.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--dm-sizes must be a comma list of integers, got {dm_sizes!r}") from None
    if not sizes:
        raise ValueError("--dm-sizes names no size: give a comma list such as 500,1000")
    cfg = DMConfig(
        data=data,
        data_dir=data_dir,
        target=target,
        sigma=sigmas[0],
        sigma_warmup=sigma_warmup,
        dim=dim,
        bound=bound,
        views=views,
        encoder=encoder,
        width=width,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        train_subset=train_subset,
        probe_subset=probe_subset,
        test_subset=test_subset,
        dm_sizes=sizes,
        permutations=permutations,
        seed=seed,
        device=device,
        progress=progress,
    )
    out_dir(out)
    out_dir(docs_dir, "--docs-dir")
    res = run_sweep(cfg, sigmas, out, docs_dir=docs_dir)
    cols = [
        "sigma",
        "probe acc",
        "KS p min",
        "Shapiro p min",
        "energy",
        "energy p",
        "SW2",
        "MI est",
        "ceiling",
    ]
    rows = [
        [
            r["sigma"],
            r["linear_probe_acc"],
            r["ks_p_min"],
            r["shapiro_p_min"],
            r["energy"],
            r["energy_p"],
            r["sliced_w2"],
            r["mi_estimate"],
            r["capacity"],
        ]
        for r in res["rows"]
    ]
    ref = res["reference"][0]
    rows.append(
        [
            "true sample",
            "-",
            ref["ks_p_min"],
            ref["shapiro_p_min"],
            ref["energy"],
            ref["energy_p"],
            ref["sliced_w2"],
            "-",
            "-",
        ]
    )
    print_table(
        f"noise-injected DIM on {data}, {target} target, d={dim}, n={ref['n']}", cols, rows, console
    )
    console.print(f"wrote results.json, dm_sweep.csv, dm_tradeoff.png, dm_marginals.png to {out}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
