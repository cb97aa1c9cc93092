"""Numerical demonstrations of the RPM view of InfoNCE (``infomax rpm --demo``; SPEC §6).

``run(DemoConfig(...))`` returns a :class:`DemoResult`; its ``write(out)`` puts ``results.json``,
``curves.csv``, ``terms.csv``, ``invariance.csv`` and ``rpm_convergence.png`` into ``out``.

On Gaussian latents (:class:`~infomax.rpm.gaussian.GaussianRPMTask`), all in float64:

1. **InfoNCE(K) → InfoNCE-prior ELBO.** For a critic ``f`` the batch value ``bounds.infonce(S)``
   (``+ log K`` included) is the batch estimate of ``E f − E log E e^f``; the gap
   ``ELBO_f − E InfoNCE(K)`` is estimated per row as ``log mean_j e^{S_ij} − log Z_f(z_i)`` with the
   exact normaliser (same rows, so the positive-pair noise cancels). For the true log ratio
   ``ELBO_f = I`` and the gap shrinks monotonically (a data-processing argument: adding an
   independent negative and re-shuffling is a channel applied to the candidate set).
2. **Learned-prior ELBO → I(Z; Z′).** Gaussian prior fitted by moments on ``n_fit`` pairs,
   ``R(z)`` estimated by the batch mixture of Gaussian recognition densities (σ > 0).
3. **Term checks.** Every batch estimate of an ELBO term against its closed form.
4. **MI is invariant, InfoNCE is not.** Invertible maps ``T`` of the latents (rescaling, a linear
   mixing, ``asinh``) keep ``I``; the InfoNCE-prior ELBO with a fixed critic, and with the dot
   critic even after re-fitting its temperature, changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._checks import check_positive_int, is_real
from ..bounds import infonce_terms
from ..rpm.elbo import elbo_terms, infonce_prior_elbo, log_aggregate_recognition, log_partition
from ..rpm.gaussian import GaussianRPMTask, QuadraticCritic, dot_critic_elbo, gaussian_mi_from_cov
from ..rpm.models import JointPrior

DEFAULT_KS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


@dataclass(frozen=True)
class DemoConfig:
    """Settings of :func:`run` (Gaussian latents: ``dim`` pairs, correlation ``rho``,
    recognition noise ``sigma``; ``n_rows`` pairs per ``K``; ``n_fit`` pairs to fit the prior;
    ``n_pool`` negatives for Monte Carlo normalisers)."""

    dim: int = 2
    rho: float = 0.9
    sigma: float = 0.25
    ks: tuple[int, ...] = DEFAULT_KS
    n_rows: int = 2**15
    n_fit: int = 50_000
    n_pool: int = 2**14
    seed: int = 0
    mixing_condition: float = 4.0

    def __post_init__(self) -> None:
        check_positive_int(self.dim, "dim")
        if not is_real(self.rho) or not -1 < self.rho < 1:
            raise ValueError(f"rho must lie in (-1, 1) (|rho| < 1), got {self.rho!r}")
        if not is_real(self.sigma) or not 0 < self.sigma < math.inf:
            raise ValueError(
                "sigma must be a finite number > 0 (the learned-prior ELBO estimates R(z)), "
                f"got {self.sigma!r}"
            )
        GaussianRPMTask(self.dim, self.rho, self.sigma)
        if not isinstance(self.ks, (tuple, list)) or len(self.ks) == 0:
            raise ValueError(f"ks must be a non-empty tuple of batch sizes, got {self.ks!r}")
        for k in self.ks:
            check_positive_int(k, "every K", minimum=2)
        check_positive_int(self.n_rows, "n_rows", minimum=2)
        if max(self.ks) > self.n_rows:
            raise ValueError(f"n_rows ({self.n_rows}) must be >= the largest K ({max(self.ks)})")
        check_positive_int(self.n_fit, "n_fit", minimum=10)
        check_positive_int(self.n_pool, "n_pool", minimum=2)
        check_positive_int(self.seed, "seed", minimum=0)
        if not is_real(self.mixing_condition) or not 1 <= self.mixing_condition < math.inf:
            raise ValueError(
                f"mixing_condition must be a finite number >= 1, got {self.mixing_condition!r}"
            )


def _batches(n: int, k: int) -> list[slice]:
    return [slice(i * k, (i + 1) * k) for i in range(n // k)]


def _mean_se(rows: Tensor) -> tuple[float, float]:
    return float(rows.mean()), float(rows.std() / math.sqrt(rows.numel()))


def infonce_gap_rows(
    critic: QuadraticCritic, z: Tensor, zp: Tensor, var: float, k: int
) -> tuple[Tensor, Tensor]:
    """Per-row InfoNCE(K) terms and gap estimates for pairs cut into batches of ``K``: ``[n]`` each.

    ``gap_i = log mean_j e^{S_ij} − log Z_f(z_i)`` (exact normaliser), an unbiased estimate of
    ``ELBO_f − E InfoNCE(K)`` sharing the positive ``f(z_i, z′_i)`` with both sides.
    """
    nce, gap = [], []
    for sl in _batches(z.shape[0], k):
        scores = critic.scores(z[sl], zp[sl])
        rows = infonce_terms(scores)
        nce.append(rows)
        gap.append(scores.diagonal() - critic.log_partition(z[sl], var) - rows)
    return torch.cat(nce), torch.cat(gap)


def infonce_convergence(
    task: GaussianRPMTask, critic: QuadraticCritic, ks: tuple[int, ...], n_rows: int, seed: int
) -> list[dict[str, float]]:
    """``E InfoNCE(K)`` and the gap ``ELBO_f − E InfoNCE(K)`` (mean ± s.e. over rows) per ``K``.

    The same ``n_rows`` pairs are cut into batches of ``K`` for every ``K``.
    """
    _, _, z, zp = task.sample(n_rows, seed)
    limit = critic.elbo(task)
    out = []
    for k in ks:
        nce, gap = infonce_gap_rows(critic, z, zp, task.var, k)
        m, se = _mean_se(nce)
        g, gse = _mean_se(gap)
        out.append({"K": k, "infonce": m, "infonce_se": se, "gap": g, "gap_se": gse, "elbo": limit})
    return out


def learned_prior_convergence(
    task: GaussianRPMTask, ks: tuple[int, ...], n_rows: int, n_fit: int, seed: int
) -> list[dict[str, float]]:
    """Learned-prior model ELBO per batch size ``K`` (prior: ML Gaussian on ``n_fit`` other pairs;
    ``R(z)``: the batch mixture of ``N(x_j, σ²)``), mean ± s.e. over rows."""
    _, _, zf, zpf = task.sample(n_fit, seed + 7919)
    prior = JointPrior(task.dim, task.dim).double().fit_moments(zf, zpf)
    x, xp, z, zp = task.sample(n_rows, seed)
    log_std = torch.tensor(math.log(task.sigma), dtype=torch.float64)
    out = []
    with torch.no_grad():
        for k in ks:
            rows = []
            for sl in _batches(n_rows, k):
                lr = log_aggregate_recognition(z[sl], x[sl], log_std)
                lrp = log_aggregate_recognition(zp[sl], xp[sl], log_std)
                rows.append(prior.log_prob(z[sl], zp[sl]) - lr - lrp)
            m, se = _mean_se(torch.cat(rows))
            out.append({"K": k, "learned_prior_elbo": m, "learned_prior_se": se})
    return out


def term_checks(task: GaussianRPMTask, n: int, k: int, seed: int) -> list[dict[str, Any]]:
    """Each ELBO term: batch estimate (mean ± s.e. over batches of ``k``) vs closed form."""
    x, xp, z, zp = task.sample(n, seed)
    log_std = torch.tensor(math.log(task.sigma), dtype=torch.float64)
    critic = task.true_critic()
    acc: dict[str, list[float]] = {}
    for sl in _batches(n, k):
        lr = log_aggregate_recognition(z[sl], x[sl], log_std)
        lrp = log_aggregate_recognition(zp[sl], xp[sl], log_std)
        opt = elbo_terms(
            task.log_joint(z[sl], zp[sl]),
            lr,
            lrp,
            log_px=task.log_data(x[sl]),
            log_pxp=task.log_data(xp[sl]),
        )
        nce = infonce_prior_elbo(critic.scores(z[sl], zp[sl]), log_r_z=lr, log_r_zp=lrp)
        for name, value in (
            ("optimal prior: prior term", opt.prior_term),
            ("optimal prior: recognition term z", opt.recognition_z),
            ("optimal prior: recognition term z'", opt.recognition_zp),
            ("optimal prior: constant", opt.constant),
            ("optimal prior: model ELBO", opt.model),
            ("optimal prior: total ELBO", opt.total),
            ("infonce prior (true f): model ELBO", nce.model),
        ):
            acc.setdefault(name, []).append(float(value))
    h = task.recognition_term()
    exact = {
        "optimal prior: prior term": task.optimal_prior_term(),
        "optimal prior: recognition term z": h,
        "optimal prior: recognition term z'": h,
        "optimal prior: constant": task.constant(),
        "optimal prior: model ELBO": task.mutual_information,
        "optimal prior: total ELBO": task.mutual_information + task.constant(),
        "infonce prior (true f): model ELBO": task.mutual_information,
    }
    out = []
    for name, values in acc.items():
        t = torch.tensor(values, dtype=torch.float64)
        m, se = _mean_se(t)
        out.append({"term": name, "batch_estimate": m, "se": se, "exact": exact[name], "K": k})
    return out


def mixing_matrix(dim: int, condition: float, seed: int) -> Tensor:
    """Random ``[dim, dim]`` matrix ``U diag(s) Vᵀ``, singular values from 1 to ``condition``."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    s = torch.logspace(0, math.log10(condition), dim, dtype=torch.float64)
    return u @ torch.diag(s) @ v.T


def _mc_elbo(f: Callable[[Tensor, Tensor], Tensor], u: Tensor, up: Tensor, pool: Tensor) -> float:
    """Monte Carlo InfoNCE-prior ELBO ``mean_i [f(u_i, u′_i) − log mean_m e^{f(u_i, u″_m)}]``."""
    total, chunk = 0.0, 1024
    for start in range(0, u.shape[0], chunk):
        ui, upi = u[start : start + chunk], up[start : start + chunk]
        diag = (f(ui, upi)).diagonal()
        total += float((diag - log_partition(f(ui, pool))).sum())
    return total / u.shape[0]


def _dot(a: float) -> Callable[[Tensor, Tensor], Tensor]:
    return lambda p, q: a * (p @ q.T)


def _best_dot_temperature(u: Tensor, up: Tensor, pool: Tensor, sub: int = 1024) -> float:
    """``argmax_a`` of the Monte Carlo dot-critic ELBO, searched on the first ``sub`` rows."""
    from scipy.optimize import minimize_scalar

    us, ups, pools = u[:sub], up[:sub], pool[:sub]
    best = minimize_scalar(
        lambda a: -_mc_elbo(_dot(a), us, ups, pools),
        bounds=(1e-3, 5.0),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(best.x)


def invariance(
    task: GaussianRPMTask, n: int, n_pool: int, condition: float, seed: int
) -> list[dict[str, Any]]:
    """Invertible maps of the latents: MI (exact) vs InfoNCE-prior ELBOs (exact where Gaussian,
    Monte Carlo otherwise). Critics: the true log ratio of the *untransformed* latents (fixed) and
    the dot critic with its temperature re-fitted on the transformed latents."""
    _, _, z, zp = task.sample(n, seed)
    _, _, _, pool = task.sample(n_pool, seed + 104729)
    d, v, r = task.dim, task.var, task.rho_z
    eye = torch.eye(d, dtype=torch.float64)
    mix = mixing_matrix(d, condition, seed)
    maps: list[tuple[str, Callable[[Tensor], Tensor], Tensor | None]] = [
        ("identity", lambda t: t, eye),
        ("scale x2", lambda t: 2.0 * t, 2.0 * eye),
        ("scale x0.5", lambda t: 0.5 * t, 0.5 * eye),
        (f"linear mixing (cond {condition:g})", lambda t: t @ mix.T, mix),
        ("asinh", torch.asinh, None),
    ]
    fixed = task.true_critic()
    out = []
    for name, fn, mat in maps:
        u, up, upool = fn(z), fn(zp), fn(pool)

        a_best = _best_dot_temperature(u, up, upool)
        row: dict[str, Any] = {
            "transform": name,
            "mutual_information": task.mutual_information,
            "fixed_critic_elbo_mc": _mc_elbo(fixed.scores, u, up, upool),
            "dot_critic_best_a": a_best,
            "dot_critic_elbo_mc": _mc_elbo(_dot(a_best), u, up, upool),
        }
        if mat is not None:  # Gaussian after a linear map: exact MI and exact dot ELBO
            cov, cross = v * mat @ mat.T, r * v * mat @ mat.T
            row["mutual_information_from_cov"] = gaussian_mi_from_cov(cov, cross)
            row["dot_critic_elbo_exact"] = dot_critic_elbo(cov, cross)
            if name.startswith("scale"):
                row["fixed_critic_elbo_exact"] = fixed.elbo(task, scale=float(mat[0, 0]))
        out.append(row)
    return out


@dataclass
class DemoResult:
    """Everything :func:`run` measured (``write(out)``: :func:`write_demo`)."""

    config: DemoConfig
    mutual_information: float
    infonce_true_critic: list[dict[str, float]] = field(default_factory=list)
    infonce_dot_critic: list[dict[str, float]] = field(default_factory=list)
    learned_prior: list[dict[str, float]] = field(default_factory=list)
    terms: list[dict[str, Any]] = field(default_factory=list)
    invariance: list[dict[str, Any]] = field(default_factory=list)

    def write(self, out: str | Path) -> dict[str, Path]:
        """The files of :func:`write_demo` into ``out``; returns their paths by name."""
        return write_demo(self, out)


#: Small, fast settings (``infomax rpm --demo --quick``, the smoke test).
QUICK: dict[str, Any] = {"ks": (8, 32, 128), "n_rows": 2048, "n_fit": 5000, "n_pool": 1024}


def run(config: DemoConfig) -> DemoResult:
    """Run the four demonstrations of the module docstring (see :class:`DemoConfig`)."""
    torch.manual_seed(config.seed)
    task = GaussianRPMTask(config.dim, config.rho, config.sigma)
    c = config
    return DemoResult(
        config=c,
        mutual_information=task.mutual_information,
        infonce_true_critic=infonce_convergence(task, task.true_critic(), c.ks, c.n_rows, c.seed),
        infonce_dot_critic=infonce_convergence(
            task, task.best_dot_critic(), c.ks, c.n_rows, c.seed
        ),
        learned_prior=learned_prior_convergence(task, c.ks, c.n_rows, c.n_fit, c.seed),
        terms=term_checks(task, c.n_rows, max(c.ks), c.seed + 1),
        invariance=invariance(task, min(c.n_rows, 4096), c.n_pool, c.mixing_condition, c.seed + 2),
    )


def plot_convergence(result: DemoResult) -> Any:
    """Two panels: ELBO-side curves vs ``K`` and the ``|gap|`` on log–log axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ks = [row["K"] for row in result.infonce_true_critic]
    mi = result.mutual_information
    ax.axhline(mi, color="k", lw=1.2, label=f"true MI I(Z;Z′) = {mi:.3f}")
    dot_limit = result.infonce_dot_critic[0]["elbo"]
    ax.axhline(
        dot_limit,
        color="C1",
        ls="--",
        lw=1,
        label=f"InfoNCE-prior ELBO, dot critic = {dot_limit:.3f}",
    )
    curves = (
        (result.infonce_true_critic, "infonce", "InfoNCE(K), true-ratio critic (ELBO = MI)", "C0"),
        (result.infonce_dot_critic, "infonce", "InfoNCE(K), best dot critic", "C1"),
        (result.learned_prior, "learned_prior", "learned-prior ELBO (batch R̂)", "C2"),
    )
    for rows, key, label, color in curves:
        mean, se = (f"{key}_elbo", f"{key}_se") if key != "infonce" else ("infonce", "infonce_se")
        ax.errorbar(
            ks,
            [r[mean] for r in rows],
            yerr=[r[se] for r in rows],
            marker="s" if key != "infonce" else "o",
            ms=3,
            color=color,
            label=label,
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size K")
    ax.set_ylabel("nats")
    ax.set_ylim(bottom=min(0.0, mi * 0.3), top=mi * 1.15)
    ax.set_title("RPM ELBOs and InfoNCE(K) (InfoNCE includes + log K)")
    ax.legend(fontsize=7, loc="lower right")
    for rows, label, color in (
        (result.infonce_true_critic, "true-ratio critic", "C0"),
        (result.infonce_dot_critic, "dot critic", "C1"),
    ):
        ax2.errorbar(
            ks,
            [abs(r["gap"]) for r in rows],
            yerr=[r["gap_se"] for r in rows],
            marker="o",
            ms=3,
            color=color,
            label=f"|ELBO − E InfoNCE(K)|, {label}",
        )
    ax2.errorbar(
        ks,
        [mi - r["learned_prior_elbo"] for r in result.learned_prior],
        yerr=[r["learned_prior_se"] for r in result.learned_prior],
        marker="s",
        ms=3,
        color="C2",
        label="MI − learned-prior ELBO",
    )
    ax2.plot(
        ks,
        [result.infonce_true_critic[0]["gap"] * ks[0] / k for k in ks],
        "k:",
        lw=1,
        label="∝ 1/K",
    )
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("batch size K")
    ax2.set_title("gap to the K → ∞ limit")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig


def write_demo(result: DemoResult, out_dir: str | Path) -> dict[str, Path]:
    """``results.json``, ``curves.csv``, ``terms.csv``, ``invariance.csv`` and
    ``rpm_convergence.png`` into ``out_dir``."""
    from ..reports import save_figure, write_csv, write_results

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    curves = []
    for a, b, c in zip(
        result.infonce_true_critic, result.infonce_dot_critic, result.learned_prior, strict=True
    ):
        curves.append(
            {
                "K": a["K"],
                "mutual_information": result.mutual_information,
                "infonce_true": a["infonce"],
                "infonce_true_se": a["infonce_se"],
                "gap_true": a["gap"],
                "gap_true_se": a["gap_se"],
                "elbo_true": a["elbo"],
                "infonce_dot": b["infonce"],
                "infonce_dot_se": b["infonce_se"],
                "gap_dot": b["gap"],
                "gap_dot_se": b["gap_se"],
                "elbo_dot": b["elbo"],
                "learned_prior_elbo": c["learned_prior_elbo"],
                "learned_prior_se": c["learned_prior_se"],
            }
        )
    paths = {
        "curves": write_csv(out / "curves.csv", curves),
        "terms": write_csv(out / "terms.csv", result.terms),
        "invariance": write_csv(out / "invariance.csv", result.invariance),
    }
    summary = asdict(result)
    config = summary.pop("config")
    paths["results"] = write_results(out, config=config, results=summary, seed=result.config.seed)
    fig = plot_convergence(result)
    paths["plot"] = save_figure(fig, out / "rpm_convergence.png")
    return paths
