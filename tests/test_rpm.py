"""Tests of the RPM ELBO (SPEC §6) against closed forms on Gaussian latents, in float64."""

from __future__ import annotations

import math

import pytest
import torch

from infomax.bounds import infonce
from infomax.experiments.rpm_demo import infonce_gap_rows, learned_prior_convergence, mixing_matrix
from infomax.rpm import (
    RPM,
    GaussianMixture,
    GaussianRecognition,
    GaussianRPMTask,
    IndependentPrior,
    JointPrior,
    QuadraticCritic,
    elbo_terms,
    infonce_prior_elbo,
    log_aggregate_recognition,
    log_partition,
    rpm_loss,
)
from infomax.rpm.gaussian import dot_critic_elbo, gaussian_mi_from_cov

torch.set_num_threads(1)
F64 = torch.float64


def within(estimate: torch.Tensor, exact: float, se: float, n_se: float = 4.0) -> bool:
    return abs(float(estimate) - exact) < n_se * se


def mean_se(rows: torch.Tensor) -> tuple[torch.Tensor, float]:
    rows = rows.detach()
    return rows.mean(), float(rows.std() / math.sqrt(rows.numel()))


# ------------------------------------------------------------------------------------------------
# identities


def test_infonce_prior_batch_elbo_is_infonce() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.randn(16, 16, generator=g, dtype=F64) * 3
    terms = infonce_prior_elbo(s)
    assert torch.allclose(terms.model, infonce(s))
    assert math.isnan(float(terms.prior_term)) and math.isnan(float(terms.constant))
    log_r, log_rp = torch.randn(16, generator=g, dtype=F64), torch.randn(16, generator=g, dtype=F64)
    full = infonce_prior_elbo(s, log_r_z=log_r, log_r_zp=log_rp)
    assert torch.allclose(full.prior_term + full.recognition_z + full.recognition_zp, full.model)
    assert torch.allclose(full.recognition_z, -log_r.mean())
    loo = infonce_prior_elbo(s, include_positive=False).model
    off = s.masked_fill(torch.eye(16, dtype=torch.bool), -math.inf)
    ref = (s.diagonal() - torch.logsumexp(off, 1) + math.log(15)).mean()
    assert torch.allclose(loo, ref)


def test_elbo_terms_sum_and_errors() -> None:
    a, b, c = torch.randn(5, dtype=F64), torch.randn(5, dtype=F64), torch.randn(5, dtype=F64)
    t = elbo_terms(a, b, c, log_px=b, log_pxp=c)
    assert torch.allclose(t.model, a.mean() - b.mean() - c.mean())
    assert torch.allclose(t.total, a.mean())
    with pytest.raises(ValueError, match="log_r_z"):
        elbo_terms(a, torch.randn(4, dtype=F64), c)
    with pytest.raises(ValueError, match="scores"):
        log_partition(torch.randn(3, dtype=F64))


def test_gaussian_mixture_matches_torch_distributions() -> None:
    torch.manual_seed(0)
    gm = GaussianMixture(3, n_components=4).double()
    with torch.no_grad():
        for p in gm.parameters():
            p.add_(0.3 * torch.randn_like(p))
    dist = torch.distributions
    ref = dist.MixtureSameFamily(
        dist.Categorical(logits=gm.logits),
        dist.MultivariateNormal(gm.means, scale_tril=gm.scale_tril()),
    )
    v = torch.randn(50, 3, dtype=F64)
    assert torch.allclose(gm.log_prob(v), ref.log_prob(v), atol=1e-10)


def test_log_aggregate_recognition_matches_brute_force() -> None:
    torch.manual_seed(1)
    z, m = torch.randn(7, 3, dtype=F64), torch.randn(5, 3, dtype=F64)
    for log_std in (
        torch.tensor(-0.4, dtype=F64),
        0.3 * torch.randn(3, dtype=F64),
        0.3 * torch.randn(5, 3, dtype=F64),
    ):
        std = torch.exp(log_std).expand(5, 3)
        comps = (
            torch.distributions.Normal(m.unsqueeze(0), std.unsqueeze(0))
            .log_prob(z.unsqueeze(1))
            .sum(-1)
        )
        ref = torch.logsumexp(comps, 1) - math.log(5)
        assert torch.allclose(log_aggregate_recognition(z, m, log_std), ref, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# every ELBO term against Monte Carlo (float64)


def test_closed_forms() -> None:
    task = GaussianRPMTask(dim=3, rho=0.7, sigma=0.5)
    assert math.isclose(task.true_critic().elbo(task), task.mutual_information, rel_tol=1e-12)
    assert math.isclose(task.best_dot_critic().elbo(task), 3 * task.rho_z**2 / 2, rel_tol=1e-12)
    assert task.best_dot_critic().elbo(task) < task.mutual_information  # loose even at K = ∞


def test_each_elbo_term_against_monte_carlo() -> None:
    task = GaussianRPMTask(dim=1, rho=0.8, sigma=0.3)
    n = 2**15
    x, xp, z, zp = task.sample(n, seed=3)
    # recognition marginal: batch mixture over many recognition densities -> exact log R(z)
    log_std = torch.tensor(math.log(task.sigma), dtype=F64)
    q = z[:2000]
    err = log_aggregate_recognition(q, x, log_std) - task.log_marginal(q)
    assert float(err.abs().mean()) < 0.01 and abs(float(err.mean())) < 0.01  # KDE tails are rough
    # per-sample terms with the exact densities: unbiased Monte Carlo means
    terms = elbo_terms(
        task.log_joint(z, zp),
        task.log_marginal(z),
        task.log_marginal(zp),
        log_px=task.log_data(x),
        log_pxp=task.log_data(xp),
    )
    checks = [
        (task.log_joint(z, zp), task.optimal_prior_term(), terms.prior_term),
        (-task.log_marginal(z), task.recognition_term(), terms.recognition_z),
        (-task.log_marginal(zp), task.recognition_term(), terms.recognition_zp),
        (task.log_data(x) + task.log_data(xp), task.constant(), terms.constant),
    ]
    for rows, exact, value in checks:
        _, se = mean_se(rows)
        assert within(value, exact, se), (float(value), exact, se)
    ratio = task.log_joint(z, zp) - task.log_marginal(z) - task.log_marginal(zp)
    _, se = mean_se(ratio)
    assert within(terms.model, task.mutual_information, se)  # optimal prior: model ELBO = I
    assert torch.allclose(terms.total, terms.model + terms.constant)
    # InfoNCE prior: Monte Carlo normaliser vs exact, and the ELBO vs its closed form
    for critic in (task.true_critic(), task.best_dot_critic()):
        pool = task.sample(2**16, seed=4)[3]
        ratio = torch.exp(
            critic.scores(z[:20], pool) - critic.log_partition(z[:20], task.var)[:, None]
        )
        se_ratio = ratio.std(1) / math.sqrt(pool.shape[0])  # E_{z''} e^{f - log Z} = 1 per row
        assert bool(((ratio.mean(1) - 1).abs() < 5 * se_ratio).all())
        assert torch.allclose(
            log_partition(critic.scores(z[:20], pool)),
            torch.log(ratio.mean(1)) + critic.log_partition(z[:20], task.var),
        )
        rows = critic.pairs(z, zp) - critic.log_partition(z, task.var)
        value, se = mean_se(rows)
        assert within(value, critic.elbo(task), se)


def test_independent_prior_elbo_is_minus_kl() -> None:
    task = GaussianRPMTask(dim=2, rho=0.8, sigma=0.5)
    _, _, z, zp = task.sample(2**14, seed=5)
    prior = IndependentPrior(2, 2).double()  # standard normal marginals
    rows = prior.log_prob(z, zp) - task.log_marginal(z) - task.log_marginal(zp)
    v = task.var
    minus_kl = -2 * 2 * 0.5 * (v - 1 - math.log(v))  # two views, two dims
    value, se = mean_se(rows)
    assert within(value, minus_kl, se) and value < 0
    prior.fit_moments(z, zp)  # optimal independent prior: ELBO -> 0, far below I
    with torch.no_grad():
        value = (prior.log_prob(z, zp) - task.log_marginal(z) - task.log_marginal(zp)).mean()
    assert abs(float(value)) < 0.01 < task.mutual_information


# ------------------------------------------------------------------------------------------------
# acceptance: InfoNCE(K) -> InfoNCE-prior ELBO; learned-prior ELBO -> I


def test_infonce_gap_shrinks_monotonically_in_k() -> None:
    task = GaussianRPMTask(dim=1, rho=0.8)
    _, _, z, zp = task.sample(2**14, seed=0)
    critic = task.true_critic()  # InfoNCE-prior ELBO = I exactly
    gaps = [infonce_gap_rows(critic, z, zp, task.var, k)[1] for k in (8, 32, 128, 512)]
    means = [float(g.mean()) for g in gaps]
    assert means[0] > 0.05 and 0 < means[-1] < 0.005
    for a, b in zip(gaps[:-1], gaps[1:], strict=True):
        diff, se = mean_se(a - b)  # paired rows: same z_i at both K
        assert float(diff) > 4 * se > 0
    nce = infonce_gap_rows(critic, z, zp, task.var, 8)[0]
    assert float(nce.max()) <= math.log(8) + 1e-12


def test_learned_prior_elbo_approaches_mi() -> None:
    task = GaussianRPMTask(dim=1, rho=0.8, sigma=0.25)
    rows = learned_prior_convergence(task, (32, 256, 2048), n_rows=2**13, n_fit=20_000, seed=0)
    values = [r["learned_prior_elbo"] for r in rows]
    assert (
        values[0]
        < values[1]
        < values[2]
        <= task.mutual_information + 3 * rows[2]["learned_prior_se"]
    )
    assert abs(values[2] - task.mutual_information) < 0.05 * task.mutual_information


# ------------------------------------------------------------------------------------------------
# acceptance: MI is invariant under invertible maps, the InfoNCE-prior ELBO is not


def test_mi_invariant_infonce_prior_elbo_not() -> None:
    task = GaussianRPMTask(dim=2, rho=0.9)
    d, v, r = 2, task.var, task.rho_z
    mix = mixing_matrix(d, condition=4.0, seed=0)
    eye = torch.eye(d, dtype=F64)
    mi = {
        name: gaussian_mi_from_cov(v * m @ m.T, r * v * m @ m.T)
        for name, m in (("id", eye), ("mix", mix))
    }
    assert math.isclose(mi["id"], task.mutual_information, rel_tol=1e-10)
    assert math.isclose(mi["mix"], task.mutual_information, rel_tol=1e-10)  # MI unchanged
    best_id = dot_critic_elbo(v * eye, r * v * eye)
    best_mix = dot_critic_elbo(v * mix @ mix.T, r * v * mix @ mix.T)
    assert math.isclose(best_id, d * r**2 / 2, rel_tol=1e-12)
    assert best_mix < best_id - 0.25  # even with the temperature re-fitted
    # Monte Carlo check of the mixed value at its best temperature
    _, _, z, zp = task.sample(2**13, seed=1)
    pool = task.sample(2**13, seed=2)[3] @ mix.T
    u, up = z @ mix.T, zp @ mix.T
    cov = v * mix @ mix.T
    a = float(torch.trace(r * cov) / torch.trace(cov @ cov))
    rows = a * (u * up).sum(1) - log_partition(a * (u @ pool.T))
    value, se = mean_se(rows)
    assert within(value, best_mix, se, 5.0)
    # fixed critic (the true ratio of the original latents) under z -> 2z: closed form and MC
    fixed = task.true_critic()
    exact2 = fixed.elbo(task, scale=2.0)
    assert exact2 < task.mutual_information - 1.0
    rows2 = fixed.scores(2 * z[:2048], 2 * zp[:2048]).diagonal() - fixed.log_partition(
        2 * z[:2048], 4 * v
    )
    value2, se2 = mean_se(rows2)
    assert within(value2, exact2, se2)


# ------------------------------------------------------------------------------------------------
# modules


def _linear_rpm(prior: str, std: float | None) -> RPM:
    torch.manual_seed(0)
    rec = GaussianRecognition(torch.nn.Linear(2, 2), dim=2, std=std).double()
    critic = QuadraticCritic(a=1.0) if prior == "infonce" else None
    return RPM(rec, prior, critic=critic).double()


def test_rpm_module_elbo_and_gradients() -> None:
    x, xp, _, _ = GaussianRPMTask(dim=2, rho=0.8).sample(64, seed=0)
    for prior in ("learned", "independent", "infonce"):
        model = _linear_rpm(prior, 0.2)
        terms = model.elbo(x, xp)
        assert torch.allclose(
            terms.prior_term + terms.recognition_z + terms.recognition_zp, terms.model
        )
        loss = rpm_loss(model, (x, xp))
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
    det = _linear_rpm("infonce", None)
    terms = det.elbo(x, xp)
    z, zp = det.encode(x), det.encode(xp)
    assert torch.allclose(terms.model, infonce(z @ zp.T)) and math.isnan(float(terms.prior_term))


def test_rpm_errors() -> None:
    rec = GaussianRecognition(torch.nn.Linear(2, 2), dim=2, std=None)
    with pytest.raises(ValueError, match="unknown prior"):
        RPM(rec, "flow")
    with pytest.raises(ValueError, match="needs log R"):
        RPM(rec, "learned")
    with pytest.raises(ValueError, match="critic"):
        RPM(rec, "infonce")
    with pytest.raises(ValueError, match="shape"):
        JointPrior(2, 2).log_prob(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="rho"):
        GaussianRPMTask(dim=1, rho=1.0)


# ------------------------------------------------------------------------------------------------
# training path and CLI


def test_train_digits_runs_through_fit() -> None:
    from infomax.rpm.train import DigitsConfig, train_digits

    for objective in ("infonce", "learned"):
        res = train_digits(DigitsConfig(objective=objective, epochs=1, batch_size=256))
        assert len(res["history"]) == 1 and math.isfinite(res["final_elbo_model"])
        assert 0.1 < res["probe_latent"] <= 1.0 and 0.1 < res["probe_backbone"] <= 1.0
    with pytest.raises(ValueError, match="objective"):
        DigitsConfig(objective="mi")


@pytest.mark.slow
def test_trained_latents_beat_untrained_on_digits() -> None:
    from infomax.rpm.train import DigitsConfig, compare_digits

    res = compare_digits(DigitsConfig(epochs=100, batch_size=128, lr=3e-3))
    for run in res["runs"].values():
        assert run["probe_latent"] > res["baselines"]["random_latent"] + 0.05


def test_cli_rpm_demo_quick(tmp_path: object) -> None:
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from infomax.cli import app

    out = Path(str(tmp_path)) / "rpm"
    runner = CliRunner()
    res = runner.invoke(app, ["rpm", "--demo", "--quick", "--out", str(out)])
    assert res.exit_code == 0, res.output
    for name in (
        "results.json",
        "curves.csv",
        "terms.csv",
        "invariance.csv",
        "rpm_convergence.png",
    ):
        assert (out / name).is_file()
    payload = json.loads((out / "results.json").read_text())
    assert payload["results"]["mutual_information"] > 0 and payload["seed"] == 0
    bad = runner.invoke(app, ["rpm", "--out", str(out)])
    assert bad.exit_code == 2 and "--demo" in bad.output and "--identify" in bad.output
    bad = runner.invoke(app, ["rpm", "--demo", "--rho", "1.5", "--out", str(out)])
    assert bad.exit_code == 2 and "rho" in bad.output
