"""Figures of the σ sweep: trade-off curve and per-dimension histograms / Q-Q plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from .. import reports
from .metrics import gaussian_qq, uniform_qq


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_tradeoff(
    rows: Sequence[Mapping[str, Any]], reference: Mapping[str, Any], config: Any, path: Path
) -> None:
    """σ vs energy distance (log), its permutation p-value, sliced W₂ and linear-probe accuracy;
    dashed lines: the same metric for a true target sample."""
    plt = _pyplot()
    sig = [float(r["sigma"]) for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.3))
    panels = (
        ("energy", "energy distance", True),
        ("energy_p", f"energy-test p-value (n={rows[0]['n']})", False),
        ("sliced_w2", "sliced W2 to target", False),
        ("linear_probe_acc", "linear-probe accuracy", False),
    )
    for ax, (key, label, log) in zip(axes, panels, strict=True):
        vals = [float(r[key]) for r in rows]
        if log:
            vals = [max(v, 1e-6) for v in vals]
        ax.plot(sig, vals, marker="o")
        if key in reference:
            ax.axhline(
                max(float(reference[key]), 1e-6) if log else float(reference[key]),
                ls="--",
                c="grey",
                label="true target sample",
            )
        if key == "energy_p":
            ax.axhline(0.05, ls=":", c="red", label="α = 0.05")
            if "train_energy_p" in rows[0]:
                train_p = [float(r["train_energy_p"]) for r in rows]
                ax.plot(sig, train_p, marker="s", ls="--", label="in-sample (train inputs)")
        if log:
            ax.set_yscale("log")
        ax.set(xlabel="σ", title=label)
        if key in ("energy", "energy_p"):
            ax.legend(fontsize=7)
    fig.suptitle(
        f"noise-injected DIM on {config.data}: {config.target} target, d = {config.dim}", y=1.04
    )
    reports.save_figure(fig, path)


def plot_marginals(feats: Mapping[float, Tensor], target: str, path: Path, dims: int = 3) -> None:
    """For each σ (rows): histograms of the first ``dims`` dimensions with the target density,
    and a Q-Q plot of those dimensions against the target quantiles."""
    from scipy import stats

    plt = _pyplot()
    sigmas = list(feats)
    dims = min(dims, *(int(f.shape[1]) for f in feats.values()))  # no empty panels
    fig, axes = plt.subplots(
        len(sigmas), dims + 1, figsize=(3 * (dims + 1), 2.3 * len(sigmas)), squeeze=False
    )
    grid = np.linspace(-4, 4, 200) if target == "gaussian" else np.linspace(0, 1, 200)
    dens = stats.norm.pdf(grid) if target == "gaussian" else np.ones_like(grid)
    for row, s in zip(axes, sigmas, strict=True):
        z = feats[s].numpy()
        for k in range(dims):
            row[k].hist(z[:, k], bins=40, density=True, alpha=0.7)
            row[k].plot(grid, dens, c="k", lw=1)
            row[k].set_title(f"σ={s:g}, dim {k}", fontsize=8)
            theo, emp = (gaussian_qq if target == "gaussian" else uniform_qq)(z[:, k])
            row[-1].plot(theo, emp, lw=1, label=f"dim {k}")
        lo, hi = (grid[0], grid[-1])
        row[-1].plot([lo, hi], [lo, hi], c="k", ls="--", lw=1)
        row[-1].set_title(f"Q-Q vs {target}, σ={s:g}", fontsize=8)
        row[-1].legend(fontsize=6)
    fig.tight_layout()
    reports.save_figure(fig, path)
