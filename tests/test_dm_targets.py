"""Target laws by name (Gaussian, uniform, inverse-CDF laws), the rank / radial normalisations
of noise-injected DIM, the held-out MI estimate's critic scale, and the configuration errors.

Ground truth: true samples of each law pass its tests at the nominal rate and wrong laws fail;
the inverse-CDF map sends ``U[0, 1]`` onto the law (KS against scipy's CDF); the soft ranks
reduce to exact ranks as the temperature goes to 0; gradients agree with finite differences;
a true ``N(0, I)`` input is left (almost) unchanged by the fitted radial normalisation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from dm_helpers import one_torch_thread, tiny_dm_config  # noqa: F401 (autouse fixture)
from infomax.dm import DMConfig, NoiseInjection, dm_metrics, train_dm
from infomax.dm.noise import RadialRankNormalization, RankNormalization
from infomax.dm.targets import get_target, target_names

# ---------------------------------------------------------------------------------------------
# Target laws


SCIPY = {
    "laplace": stats.laplace(0, 1),
    "exponential": stats.expon(scale=1.0),
    "gumbel": stats.gumbel_r(0, 1),
    "laplace:1,2": stats.laplace(1, 2),
    "exponential:0.5": stats.expon(scale=2.0),
}


@pytest.mark.parametrize("spec", sorted(SCIPY))
def test_inverse_cdf_map_sends_uniform_onto_the_law(spec):
    law = get_target(spec)
    assert law.base == "uniform" and not law.is_base
    u = torch.rand(4000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z = law.from_base(u)
    ref = SCIPY[spec]
    for k in range(2):  # scipy's CDF, an independent implementation
        assert stats.kstest(z[:, k].numpy(), ref.cdf).pvalue > 1e-3
    assert np.allclose(law.cdf(z).numpy(), u.numpy(), atol=1e-9)  # F(F⁻¹(u)) = u
    grid = torch.linspace(0.01, 0.99, 7, dtype=torch.float64)[:, None]
    assert np.allclose(law.from_base(grid).numpy().ravel(), ref.ppf(grid.numpy().ravel()))


@pytest.mark.parametrize("target", ["laplace", "exponential", "gumbel"])
def test_true_samples_of_inverse_cdf_laws_pass_and_gaussian_ones_fail(target):
    g = torch.Generator().manual_seed(3)
    law = get_target(target)
    rates = {"ks_pass": 0, "shapiro_pass": 0, "energy_pass": 0}
    repeats = 40
    for r in range(repeats):
        m = dm_metrics(law.sample(200, 3, g), target, n=None, permutations=100, seed=r)
        for key in rates:
            rates[key] += getattr(m, key)
    for key, count in rates.items():
        assert count / repeats >= 0.85, (key, count)
    # a standardised Gaussian with the law's mean and variance is not the law
    mean, std = float(law.marginal.mean), float(law.marginal.variance) ** 0.5
    wrong = mean + std * torch.randn(1000, 3, generator=g, dtype=torch.float64)
    m = dm_metrics(wrong, target, n=None, permutations=100)
    assert not (m.ks_pass and m.shapiro_pass)


def test_target_names_and_errors():
    assert target_names()[:3] == ["gaussian", "uniform", "laplace"]
    assert get_target("Laplace").name == "laplace"
    assert get_target("gaussian").is_base and get_target("uniform").base == "uniform"
    with pytest.raises(ValueError, match="unknown target 'cauchy'; valid: gaussian, uniform"):
        get_target("cauchy")
    with pytest.raises(ValueError, match="'beta' has no inverse CDF"):
        get_target("beta")
    with pytest.raises(ValueError, match="'gamma' has no inverse CDF"):
        get_target("gamma:2,1")
    with pytest.raises(
        ValueError, match=r"invalid parameters \(0.0, -1.0\).*Laplace\(loc, scale\)"
    ):
        get_target("laplace:0,-1")
    with pytest.raises(ValueError, match="comma-separated numbers"):
        get_target("laplace:a")
    with pytest.raises(ValueError, match="takes no parameters"):
        get_target("gaussian:1")


# ---------------------------------------------------------------------------------------------
# Rank and radial normalisations


def test_soft_ranks_become_exact_ranks_and_are_uniform_over_the_batch():
    torch.manual_seed(0)
    norm = RankNormalization(3, temperature=1e-9).double()
    h = torch.randn(64, 3, dtype=torch.float64) ** 3 @ torch.randn(3, 3, dtype=torch.float64)
    u = norm(h)
    y = (h - h.mean(0)) @ norm._whitening(h)[1]
    ranks = y.argsort(0).argsort(0).double() + 1  # 1..B
    assert torch.allclose(u, ranks / (64 + 1), atol=1e-6)
    # whitening: the batch's whitened values are uncorrelated with unit variance
    assert torch.allclose(torch.cov(y.T), torch.eye(3, dtype=torch.float64), atol=1e-3)


def test_rank_normalisation_gradients_match_finite_differences():
    torch.manual_seed(1)
    for cls in (RankNormalization, RadialRankNormalization):
        norm = cls(3, temperature=0.3).double()
        h = torch.randn(12, 3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x, n=norm: n(x), (h,), eps=1e-6, atol=1e-5)


def test_fitted_radial_normalisation_leaves_a_gaussian_unchanged():
    g = torch.Generator().manual_seed(2)
    layer = NoiseInjection(6, "gaussian", 1.0, normalization="radial")
    layer.norm.fit(torch.randn(20000, 6, generator=g))
    layer.eval()
    x = torch.randn(2000, 6, generator=g)
    c = layer.normalize(x)
    assert (c - x).abs().median() < 0.02
    radius = c.norm(dim=1).numpy()
    assert stats.kstest(radius, stats.chi(6).cdf).pvalue > 1e-3
    # training mode: the batch's radii are exactly χ_6 quantiles of its ranks (t -> 0)
    layer.train()
    layer.norm.temperature = 1e-5
    batch = 3.0 * torch.randn(500, 6, generator=g) + 1.0
    r = layer.normalize(batch).norm(dim=1).sort().values
    expect = stats.chi(6).ppf(np.arange(1, 501) / 501)
    assert np.allclose(r.numpy(), expect, atol=2e-3)


def test_rank_normalisation_makes_uniform_marginals_of_a_skewed_input():
    g = torch.Generator().manual_seed(4)
    layer = NoiseInjection(4, "uniform", 0.3, normalization="rank")
    mix = torch.randn(4, 4, generator=g)
    layer.norm.fit(torch.randn(20000, 4, generator=g).exp() @ mix)
    layer.eval()
    u = layer.normalize(torch.randn(2000, 4, generator=g).exp() @ mix)
    assert ((u > 0) & (u < 1)).all()
    for k in range(4):
        assert stats.kstest(u[:, k].numpy(), "uniform").pvalue > 1e-3


def test_normalisation_errors():
    with pytest.raises(ValueError, match="unknown normalization 'zca'; valid: batch, rank, radial"):
        NoiseInjection(4, "gaussian", 0.5, normalization="zca")
    with pytest.raises(ValueError, match="gaussian target only"):
        NoiseInjection(4, "uniform", 0.5, normalization="radial")
    with pytest.raises(ValueError, match="batch of >= 2"):
        RankNormalization(3)(torch.randn(1, 3))


# ---------------------------------------------------------------------------------------------
# Configuration errors (one clear message each) and the held-out estimate


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"sigma": -0.1}, "sigma must be a finite number >= 0"),
        ({"target": "cauchy"}, "unknown target 'cauchy'"),
        ({"target": "beta"}, "'beta' has no inverse CDF"),
        ({"dim": 0}, "dim must be an integer >= 1"),
        ({"method": "byol"}, "unknown method 'byol'"),
        ({"normalization": "layer"}, "unknown normalization 'layer'"),
    ],
)
def test_bad_configs_give_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DMConfig(**kwargs)


def test_heldout_estimate_is_not_negative_for_a_mis_scaled_critic(monkeypatch):
    """The learned τ fits the training views; a 100× too sharp one makes the old fixed-τ
    estimate strongly negative. The critic scale chosen on the other half of the test inputs
    (the grid includes the constant critic, whose estimate is 0) keeps it at >= 0 up to noise."""
    from infomax.dm import experiment

    real = experiment.NoisyDIM.scores

    def sharp(self, z, c):
        return 100.0 * real(self, z, c)

    monkeypatch.setattr(experiment.NoisyDIM, "scores", sharp)
    m, _ = train_dm(tiny_dm_config(sigma=0.1, epochs=1))
    assert m["mi_estimate"] >= -2 * m["mi_stderr"] - 1e-6, m
    assert m["mi_tau_scale"] > 1.0  # it had to widen the critic
    assert m["mi_estimate"] <= m["capacity"]


def test_a_seed_fixes_the_run_whatever_ran_before_in_the_process():
    # the encoder is built with the data; it used to take whatever the global RNG held, so a
    # sweep's rows differed from the same runs started alone
    m1, f1 = train_dm(tiny_dm_config(sigma=0.3, epochs=1))
    torch.rand(1000)
    m2, f2 = train_dm(tiny_dm_config(sigma=0.3, epochs=1))
    assert torch.equal(f1, f2) and m1["final_loss"] == m2["final_loss"]
    m3, f3 = train_dm(tiny_dm_config(sigma=0.3, epochs=1, seed=1))
    assert not torch.equal(f1, f3)


def test_laplace_target_and_simclr_reference_run_end_to_end():
    m, feats = train_dm(tiny_dm_config(target="laplace", sigma=0.5, normalization="rank"))
    assert m["target"] == "laplace" and feats.shape == (2000, 2)
    assert math.isclose(m["capacity"], 2 * math.log1p(1 / (2 * 0.5)))  # the uniform ceiling
    assert (feats.abs() < 40).all() and feats.std() > 0.5  # Laplace(0, 1)-scale values
    ref, rfeats = train_dm(tiny_dm_config(method="simclr", sigma=0.5))
    assert ref["method"] == "simclr" and ref["sigma"] == 0.0 and math.isnan(ref["mi_estimate"])
    assert 0.0 <= ref["linear_probe_acc"] <= 1.0 and rfeats.shape == (2000, 2)
