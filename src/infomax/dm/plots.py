"""Figures of the σ sweep: trade-off curve and per-dimension histograms / Q-Q plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from .. import reports
from .metrics import target_qq
from .targets import TargetLaw, get_target


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_tradeoff(
    rows: Sequence[Mapping[str, Any]], reference: Mapping[str, Any], config: Any, path: Path
) -> None:
    """The σ trade-off: energy-test p-value, SW₂ relative to a true target sample, and
    linear-probe accuracy against σ (one dot per seed, the line through the means), and DM
    quality against accuracy; plain-SimCLR rows (``method == "simclr"``) are drawn as a grey
    reference band / marker."""
    plt = _pyplot()
    dim_rows = [r for r in rows if r.get("method", "noisy-dim") != "simclr"]
    ref_rows = [r for r in rows if r.get("method") == "simclr"]
    sw_ref = float(reference["sliced_w2"])

    def value(r: Mapping[str, Any], key: str) -> float:
        return float(r["sliced_w2"]) / sw_ref if key == "sw2_ratio" else float(r[key])

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    panels = (
        ("energy_p", f"energy-test p-value (n={rows[0]['n']})"),
        ("sw2_ratio", "sliced W2 / true-sample W2"),
        ("linear_probe_acc", "linear-probe accuracy"),
    )
    sigmas = sorted({float(r["sigma"]) for r in dim_rows})
    for ax, (key, label) in zip(axes[:3], panels, strict=True):
        pts = [(float(r["sigma"]), value(r, key)) for r in dim_rows]
        if pts:
            ax.scatter(*zip(*pts, strict=True), s=14, alpha=0.6, label="noisy DIM (one seed)")
            means = [float(np.mean([v for s, v in pts if s == sig])) for sig in sigmas]
            ax.plot(sigmas, means, marker="o", label="mean over seeds")
        if ref_rows:
            vals = [value(r, key) for r in ref_rows]
            ax.axhspan(min(vals), max(vals), color="grey", alpha=0.25)
            ax.axhline(float(np.mean(vals)), c="grey", label="plain SimCLR")
        if key == "energy_p":
            ax.axhline(0.05, ls=":", c="red", label="α = 0.05")
            ax.set_yscale("log")
        if key == "sw2_ratio":
            ax.axhline(1.0, ls="--", c="k", lw=1, label="true target sample")
            ax.axhline(1.5, ls=":", c="red", label="1.5×")
        ax.set(xlabel="σ", title=label)
        ax.legend(fontsize=6)
    ax = axes[3]
    if dim_rows:
        sc = ax.scatter(
            [value(r, "sw2_ratio") for r in dim_rows],
            [float(r["linear_probe_acc"]) for r in dim_rows],
            c=[float(r["sigma"]) for r in dim_rows],
            cmap="viridis",
            label="noisy DIM",
        )
        fig.colorbar(sc, ax=ax, label="σ")
    if ref_rows:
        ax.scatter(
            [value(r, "sw2_ratio") for r in ref_rows],
            [float(r["linear_probe_acc"]) for r in ref_rows],
            marker="x",
            c="k",
            label="plain SimCLR",
        )
    ax.axvline(1.0, ls="--", c="k", lw=1)
    ax.set(xlabel="SW2 / true-sample SW2", ylabel="probe accuracy", title="DM vs accuracy")
    ax.legend(fontsize=6)
    fig.suptitle(
        f"noise-injected DIM on {config.data}: {config.target} target, d = {config.dim}", y=1.04
    )
    reports.save_figure(fig, path)


def plot_marginals(
    feats: Mapping[Any, Tensor], target: str | TargetLaw, path: Path, dims: int = 3
) -> None:
    """For each run (rows, keyed by σ or a label): histograms of the first ``dims`` dimensions
    with the target density, and a Q-Q plot of those dimensions against the target quantiles."""
    import torch

    plt = _pyplot()
    law = get_target(target)
    sigmas = list(feats)
    dims = min(dims, *(int(f.shape[1]) for f in feats.values()))  # no empty panels
    fig, axes = plt.subplots(
        len(sigmas), dims + 1, figsize=(3 * (dims + 1), 2.3 * len(sigmas)), squeeze=False
    )
    ends = law.marginal.icdf(torch.tensor([0.001, 0.999], dtype=torch.float64))
    grid_t = torch.linspace(float(ends[0]), float(ends[1]), 200, dtype=torch.float64)
    if law.name == "uniform":
        grid_t = torch.linspace(0.0, 1.0, 200, dtype=torch.float64)
    grid = grid_t.numpy()
    dens = law.marginal.log_prob(grid_t.clamp(*ends.tolist())).exp().numpy()
    for row, s in zip(axes, sigmas, strict=True):
        z = feats[s].numpy()
        for k in range(dims):
            row[k].hist(z[:, k], bins=40, density=True, alpha=0.7)
            row[k].plot(grid, dens, c="k", lw=1)
            row[k].set_title(f"{_label(s)}, dim {k}", fontsize=8)
            theo, emp = target_qq(z[:, k], law)
            row[-1].plot(theo, emp, lw=1, label=f"dim {k}")
        lo, hi = (grid[0], grid[-1])
        row[-1].plot([lo, hi], [lo, hi], c="k", ls="--", lw=1)
        row[-1].set_title(f"Q-Q vs {law.cdf_name()}, {_label(s)}", fontsize=8)
        row[-1].legend(fontsize=6)
    fig.tight_layout()
    reports.save_figure(fig, path)


def _label(key: Any) -> str:
    return f"σ={key:g}" if isinstance(key, (int, float)) else str(key)
