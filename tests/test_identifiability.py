"""Fast tests of the identifiability toolkit (SPEC §5): samplers against closed forms, mixing
invertibility, metrics on known maps, the objective registry and a tiny end-to-end run."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.integrate import cumulative_trapezoid

from infomax.experiments.identify_table import table_configs
from infomax.identifiability import (
    Conditional,
    IdentifyConfig,
    InvertibleMLP,
    get_space,
    identifiability_metrics,
    invertibility_report,
    kernel_r2,
    linear_r2,
    make_objective,
    mcc,
    run_identify,
    sample_gnormal,
    sample_vmf,
    vmf_mean_resultant_length,
)
from infomax.identifiability.mixing import condition_threshold, random_conditioned_matrix
from infomax.identifiability.spaces import sample_vmf_cosines

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------------
# Samplers


@pytest.mark.parametrize(("dim", "kappa"), [(3, 1.0), (10, 1.0), (10, 10.0), (10, 50.0), (4, 0.3)])
def test_vmf_mean_resultant_length_matches_bessel_ratio(dim: int, kappa: float) -> None:
    rng = np.random.default_rng(1)
    n = 20_000
    mu = get_space("sphere", dim).sample_marginal(n, rng).double().numpy()
    z = sample_vmf(mu, kappa, rng)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-12)
    w = np.sum(z * mu, axis=1)
    expected = vmf_mean_resultant_length(dim, kappa)
    stderr = w.std(ddof=1) / math.sqrt(n)
    assert abs(w.mean() - expected) < 4 * stderr, (w.mean(), expected, stderr)


def test_vmf_bessel_ratio_known_value() -> None:
    # dim 3: A_3(κ) = coth κ − 1/κ (Langevin function)
    kappa = 2.5
    assert vmf_mean_resultant_length(3, kappa) == pytest.approx(
        1 / math.tanh(kappa) - 1 / kappa, rel=1e-12
    )


@pytest.mark.parametrize(("dim", "kappa"), [(5, 3.0), (10, 10.0)])
def test_vmf_cosine_distribution_ks(dim: int, kappa: float) -> None:
    """Wood's sampler against the exact density of w = μᵀz̃: ∝ e^{κw} (1 − w²)^{(dim−3)/2}."""
    grid = np.linspace(-1, 1, 200_001)
    dens = np.exp(kappa * (grid - 1)) * (1 - grid**2) ** ((dim - 3) / 2)
    cdf = cumulative_trapezoid(dens, grid, initial=0.0)
    cdf /= cdf[-1]
    w = sample_vmf_cosines(5000, dim, kappa, np.random.default_rng(2))
    assert stats.kstest(w, lambda x: np.interp(x, grid, cdf)).pvalue > 1e-3


def test_vmf_tangent_direction_is_isotropic() -> None:
    """Around μ = e₁ the part of z̃ orthogonal to μ has mean 0 and equal variances."""
    rng = np.random.default_rng(3)
    mu = np.tile(np.eye(4)[0], (20_000, 1))
    z = sample_vmf(mu, 5.0, rng)
    tangent = z[:, 1:]
    assert np.abs(tangent.mean(0)).max() < 0.02
    var = tangent.var(0)
    assert var.max() / var.min() < 1.1


@pytest.mark.parametrize("p", [0.7, 1.0, 1.5, 2.0, 3.0])
def test_generalised_normal_ks(p: float) -> None:
    x = sample_gnormal((5000,), 0.3, p, np.random.default_rng(4))
    assert stats.kstest(x, stats.gennorm(beta=p, scale=0.3).cdf).pvalue > 1e-3


@pytest.mark.parametrize(
    ("kind", "reference"),
    [("laplace", stats.laplace(scale=0.2)), ("normal", stats.norm(scale=0.2))],
)
def test_rn_conditionals_ks(kind: str, reference: stats.rv_continuous) -> None:
    space = get_space("rn", 5)
    rng = np.random.default_rng(5)
    z, z_pos = space.sample_pairs(2000, Conditional(kind, scale=0.2), rng)
    assert stats.kstest((z_pos - z).double().numpy().ravel(), reference.cdf).pvalue > 1e-3


def test_box_conditional_is_exactly_truncated_laplace() -> None:
    lo, hi, b, z0 = 0.0, 1.0, 0.1, 0.05  # z near the lower face: heavy truncation
    space = get_space("box", 3)
    z = torch.full((4000, 3), z0)
    z_pos = space.sample_conditional(z, Conditional("laplace", scale=b), np.random.default_rng(6))
    x = z_pos.double().numpy().ravel()
    assert x.min() >= lo and x.max() <= hi
    ref = stats.laplace(loc=z0, scale=b)
    mass = ref.cdf(hi) - ref.cdf(lo)
    assert stats.kstest(x, lambda t: (ref.cdf(t) - ref.cdf(lo)) / mass).pvalue > 1e-3


def test_marginals_and_projection() -> None:
    rng = np.random.default_rng(7)
    sphere, box = get_space("sphere", 6), get_space("box", 6)
    for cond in (Conditional("laplace", scale=0.1), Conditional("gnormal", scale=0.1, p=3.0)):
        z, z_pos = sphere.sample_pairs(500, cond, rng)
        torch.testing.assert_close(z_pos.norm(dim=1), torch.ones(500))
    z = box.sample_marginal(5000, rng)
    assert 0.0 <= float(z.min()) and float(z.max()) <= 1.0
    assert abs(float(z.mean()) - 0.5) < 0.01
    u = sphere.sample_marginal(20_000, rng)
    assert float(u.mean(0).abs().max()) < 0.02  # uniform on the sphere has mean 0


def test_space_and_conditional_errors() -> None:
    with pytest.raises(ValueError, match="unknown space"):
        get_space("torus", 3)
    with pytest.raises(ValueError, match="unknown conditional"):
        Conditional("cauchy")
    with pytest.raises(ValueError, match="> 0"):
        Conditional("vmf", kappa=-1.0)
    with pytest.raises(ValueError, match="sphere"):
        get_space("box", 3).sample_conditional(torch.zeros(2, 3), Conditional("vmf"), None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        get_space("box", 3).sample_conditional(torch.zeros(2, 4), Conditional("laplace"), None)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# Mixing


def test_mixing_is_invertible_and_seeded() -> None:
    g = InvertibleMLP.random(10, layers=3, seed=0, max_condition=8.0)
    z = get_space("sphere", 10).sample_marginal(1000, np.random.default_rng(8))
    report = invertibility_report(g, z)
    assert report["max_reconstruction_error"] < 1e-4
    assert report["max_layer_condition"] <= 8.0
    # s_min(J) >= prod_l s_min(W_l) * slope^(L-1): the Jacobian is never singular
    bound = math.prod(float(torch.linalg.svdvals(w.double()).min()) for w in g.weights)
    assert report["min_singular_value"] >= bound * 0.2**2 * (1 - 1e-6) > 0
    torch.testing.assert_close(
        InvertibleMLP.random(10, 3, seed=0, max_condition=8.0).weights, g.weights
    )
    assert not torch.equal(
        InvertibleMLP.random(10, 3, seed=1, max_condition=8.0).weights, g.weights
    )
    assert g(z).abs().max() > 0 and not torch.allclose(g(z), z)


def test_mixing_default_threshold_and_errors() -> None:
    rng = np.random.default_rng(0)
    thresh = condition_threshold(4, 0.01, rng, pool=2000)
    conds = [np.linalg.cond(random_conditioned_matrix(4, 1e9, rng)) for _ in range(500)]
    assert 0.002 < np.mean(np.array(conds) <= thresh) < 0.05  # ~1% of draws fall below it
    g = InvertibleMLP.random(4, layers=2, seed=3, quantile=0.01, pool=2000)
    assert max(g.condition_numbers()) <= condition_threshold(
        4, 0.01, np.random.default_rng(3), pool=2000
    ) * (1 + 1e-6)
    with pytest.raises(ValueError, match="condition number"):
        random_conditioned_matrix(5, 1.0 + 1e-9, rng, max_tries=50)
    with pytest.raises(ValueError, match="layers"):
        InvertibleMLP.random(5, layers=0)


# ------------------------------------------------------------------------------------------------
# Metrics


def _split(h: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
    n = len(z) // 2
    return h[:n], z[:n], h[n:], z[n:]


def test_metrics_identity_and_signed_permutation() -> None:
    rng = np.random.default_rng(9)
    z = rng.uniform(size=(2000, 5))
    m = identifiability_metrics(*_split(z, z))
    assert m["r2_linear"] == pytest.approx(1.0, abs=1e-9)
    assert m["mcc"] == pytest.approx(1.0, abs=1e-12)
    assert m["r2_kernel"] > 0.99
    h = z[:, [3, 1, 4, 0, 2]] * np.array([-1.0, 2.0, -0.5, 3.0, 1.0]) + 7.0
    m = identifiability_metrics(*_split(h, z))
    assert m["r2_linear"] == pytest.approx(1.0, abs=1e-9)
    assert m["mcc"] == pytest.approx(1.0, abs=1e-12)


def test_metrics_invertible_linear_map() -> None:
    rng = np.random.default_rng(10)
    z = rng.normal(size=(2000, 6))
    a = rng.normal(size=(6, 6)) + 3 * np.eye(6)
    m = identifiability_metrics(*_split(z @ a, z), kernel=False)
    assert m["r2_linear"] > 0.999999
    assert m["mcc"] < 0.99  # mixing the dimensions is not a permutation


def test_metrics_independent_noise() -> None:
    rng = np.random.default_rng(11)
    z, h = rng.normal(size=(2000, 5)), rng.normal(size=(2000, 5))
    m = identifiability_metrics(*_split(h, z))
    assert abs(m["r2_linear"]) < 0.02
    assert -0.05 < m["r2_kernel"] < 0.02
    assert m["mcc"] < 0.1


def test_kernel_r2_sees_nonlinear_invertible_maps() -> None:
    rng = np.random.default_rng(12)
    z = rng.uniform(-1, 1, size=(2000, 3))
    h = np.column_stack(
        [np.tanh(3 * z[:, 0]), z[:, 1] + 2 * z[:, 0] ** 2, z[:, 2] + np.sin(3 * z[:, 1])]
    )
    args = _split(h, z)
    kr2, lr2 = kernel_r2(*args), linear_r2(*args)
    assert kr2 > 0.9 and lr2 < kr2 - 0.1


def test_mcc_matches_brute_force() -> None:
    rng = np.random.default_rng(13)
    z = rng.normal(size=(300, 4))
    h = z @ rng.normal(size=(4, 4)) + 0.5 * rng.normal(size=(300, 4))
    corr = np.corrcoef(z.T, h.T)[:4, 4:]
    brute = max(
        np.mean([abs(corr[i, p[i]]) for i in range(4)]) for p in itertools.permutations(range(4))
    )
    assert mcc(h, z) == pytest.approx(brute, abs=1e-12)


def test_metrics_bad_input() -> None:
    with pytest.raises(ValueError, match="same number"):
        mcc(np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        linear_r2(np.full((5, 2), np.nan), np.zeros((5, 2)), np.zeros((5, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="at least as many"):
        mcc(np.random.default_rng(0).normal(size=(10, 1)), np.zeros((10, 2)))


# ------------------------------------------------------------------------------------------------
# Objective, config, runner


def test_make_objective() -> None:
    from infomax.bounds import flo, flo_optimal_u, infonce
    from infomax.divergences import fmicl

    s = torch.randn(6, 6, dtype=torch.float64)
    torch.testing.assert_close(make_objective("infonce")(s), -infonce(s))
    torch.testing.assert_close(make_objective("fmicl:js")(s), -fmicl(s, "js"))
    torch.testing.assert_close(make_objective("flo")(s), -flo(s, flo_optimal_u(s)))
    assert torch.isfinite(make_objective("mine")(s))
    with pytest.raises(ValueError, match="baseline"):
        make_objective("tuba")
    with pytest.raises(ValueError, match="unknown"):
        make_objective("nce2")


def test_symmetric_mine_updates_ema_once_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Symmetric MINE: after each training step of :func:`run_identify` the EMA is one update
    ``(1 − r)·ema + r·m_t`` (``m_t = mean_{i≠j} exp(S_ij)`` of step ``t``, ``m(Sᵀ) = m(S)``), not
    two (which would be ``(1 − r)²·ema + (1 − (1 − r)²)·m_t``)."""
    import infomax.bounds as bounds
    from infomax.identifiability import experiment

    instances: list[bounds.MINELoss] = []
    scores: list[torch.Tensor] = []

    class SpyMINE(bounds.MINELoss):
        def __init__(self, rate: float = 0.01) -> None:
            super().__init__(rate)
            instances.append(self)

    real_scores = experiment.model_scores

    def spy_scores(*args: object) -> torch.Tensor:
        s = real_scores(*args)  # type: ignore[arg-type]
        scores.append(s.detach().clone())
        return s

    monkeypatch.setattr(bounds, "MINELoss", SpyMINE)
    monkeypatch.setattr(experiment, "model_scores", spy_scores)
    cfg = IdentifyConfig(
        space="box",
        conditional="laplace",
        objective="mine",
        symmetric=True,
        dim=3,
        hidden=(16,),
        steps=3,
        batch=32,
        eval_every=3,
        eval_samples=50,
        final_samples=50,
        mixing_condition=10.0,
        seed=1,
    )
    instances.clear()  # the config's own make_objective check built one
    run_identify(cfg, progress=False)
    assert len(instances) == 1 and len(scores) == 3
    rate = instances[0].rate
    m = [torch.exp(bounds.log_mean_exp_offdiag(s)) for s in scores]
    expected = m[0]  # initialised to the first batch mean
    for m_t in m[1:]:
        expected = (1 - rate) * expected + rate * m_t
    torch.testing.assert_close(instances[0].ema, expected, rtol=1e-6, atol=0.0)


def test_symmetric_objective_averages_both_directions() -> None:
    from infomax.bounds import MINELoss, infonce, mine

    s = torch.randn(6, 6, dtype=torch.float64)
    sym = make_objective("infonce", symmetric=True)
    torch.testing.assert_close(sym(s), -0.5 * (infonce(s) + infonce(s.T)))
    obj = make_objective("mine", symmetric=True)
    ref = MINELoss()
    for step in range(3):
        st = s + 0.3 * step
        value, ref_value = obj(st), ref(st)  # one EMA update each
        torch.testing.assert_close(obj.ema, ref.ema)  # type: ignore[attr-defined]
        torch.testing.assert_close(value, -0.5 * (ref_value + mine(st.T, ref.ema)))


def test_config_matching_and_validation() -> None:
    cfg = IdentifyConfig()
    assert cfg.model_space == "sphere" and cfg.tau == pytest.approx(0.1)
    box = IdentifyConfig(space="box", conditional="laplace", scale=0.05)
    assert box.critic_p == 1.0 and box.tau == pytest.approx(0.05)
    normal = IdentifyConfig(space="rn", conditional="normal", scale=0.1)
    assert normal.critic_p == 2.0 and normal.tau == pytest.approx(2 * 0.1**2)
    with pytest.raises(ValueError, match="sphere"):
        IdentifyConfig(space="box", conditional="vmf")
    with pytest.raises(ValueError, match="unknown bound"):
        IdentifyConfig(objective="nope")
    with pytest.raises(ValueError, match="steps"):
        IdentifyConfig(steps=0)
    labels = table_configs()
    assert len(labels) >= 6 and {m for m, _ in labels} >= {"matched", "wrong space"}


def test_config_from_results_written_before_the_objective_rename() -> None:
    """``IdentifyConfig.loss`` became ``objective``: saved results with either key load."""
    cfg = IdentifyConfig(space="box", conditional="laplace", objective="nwj", hidden=(8, 8))
    saved = json.loads(json.dumps(asdict(cfg)))  # as in a results.json: hidden is a list
    assert IdentifyConfig.from_dict(saved) == cfg
    saved["loss"] = saved.pop("objective")
    assert IdentifyConfig.from_dict({**saved, "label": "ignored"}) == cfg
    both = {**saved, "objective": "nwj", "loss": "js"}  # the current name wins
    assert IdentifyConfig.from_dict(both).objective == "nwj"


def test_tiny_run_writes_outputs(tmp_path: object) -> None:
    cfg = IdentifyConfig(
        space="box",
        conditional="laplace",
        dim=3,
        hidden=(32, 32),
        steps=30,
        batch=64,
        eval_every=10,
        eval_samples=200,
        final_samples=300,
        mixing_condition=10.0,
        seed=5,
    )
    res = run_identify(cfg, out=tmp_path, progress=False)  # type: ignore[arg-type]
    assert [h["step"] for h in res.history] == [10.0, 20.0, 30.0]
    assert set(res.metrics) == {"r2_linear", "r2_kernel", "mcc"}
    assert res.invertibility["max_reconstruction_error"] < 1e-4
    payload = json.loads((tmp_path / "results.json").read_text())  # type: ignore[operator]
    assert payload["seed"] == 5 and payload["config"]["space"] == "box"
    assert IdentifyConfig.from_dict(payload["config"]) == cfg  # a saved run's settings
    assert (tmp_path / "history.csv").exists() and (tmp_path / "r2_curve.png").exists()  # type: ignore[operator]
    again = run_identify(cfg, progress=False)
    assert again.metrics == res.metrics  # seeded


def test_short_training_recovers_latents() -> None:
    """Matched low-dimensional box (Laplace, L1): a short run must beat both the untrained
    encoder and the raw observations ``x = g(z)`` on held-out linear R² and MCC."""
    cfg = IdentifyConfig(
        space="box",
        conditional="laplace",
        scale=0.1,
        dim=3,
        hidden=(32, 32),
        mixing_layers=2,
        steps=300,
        batch=128,
        lr=3e-3,
        eval_every=300,
        eval_samples=500,
        final_samples=1000,
        mixing_condition=10.0,
        seed=0,
    )
    res = run_identify(cfg, progress=False)
    for key in ("r2_linear", "mcc"):
        assert res.metrics[key] > res.untrained[key] + 0.05, (key, res.metrics, res.untrained)
        assert res.metrics[key] > res.mixing_only[key], (key, res.metrics, res.mixing_only)


def test_cli_identify_bad_input_is_one_line_error() -> None:
    from typer.testing import CliRunner

    from infomax.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["identify", "--space", "box", "--conditional", "vmf"])
    assert res.exit_code == 2 and "sphere" in res.output
    res = runner.invoke(app, ["identify", "--hidden", "64,x"])
    assert res.exit_code == 2 and "--hidden" in res.output
    res = runner.invoke(app, ["identify", "--objective", "nope"])
    assert res.exit_code == 2 and "unknown bound" in res.output
    res = runner.invoke(app, ["identify", "--loss", "nope"])  # the option's earlier name
    assert res.exit_code == 2 and "unknown bound" in res.output


def test_non_finite_loss_is_one_error_naming_the_step(monkeypatch: pytest.MonkeyPatch) -> None:
    from infomax.identifiability import experiment

    real = experiment.model_scores
    calls: list[int] = []

    def nan_from_step_3(*args: object) -> torch.Tensor:
        calls.append(1)
        s = real(*args)  # type: ignore[arg-type]
        return s * float("nan") if len(calls) == 3 else s

    monkeypatch.setattr(experiment, "model_scores", nan_from_step_3)
    cfg = IdentifyConfig(
        space="box",
        conditional="laplace",
        dim=3,
        hidden=(16,),
        steps=5,
        batch=32,
        eval_every=5,
        eval_samples=50,
        final_samples=50,
        mixing_condition=10.0,
    )
    with pytest.raises(
        ValueError, match=r"^objective 'infonce' became non-finite at step 3; lower"
    ):
        run_identify(cfg, progress=False)
