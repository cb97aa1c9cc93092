"""Noise-injected DIM (SPEC §7): noise layer, capacity ceilings vs closed forms, DM metrics vs
brute-force references and their calibration (true target samples pass, wrong ones fail),
a short training run whose held-out MI estimate stays below the ceiling, the CLI."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from dm_helpers import one_torch_thread, tiny_dm_config  # noqa: F401 (autouse fixture)
from infomax.dm import (
    MATCH_PENALTIES,
    DMConfig,
    NoiseInjection,
    binding_sigma,
    capacity,
    dm_metrics,
    energy_distance,
    energy_distance_penalty,
    energy_test,
    gaussian_capacity,
    mmd2_imq,
    reference_metrics,
    sample_target,
    sigma_schedule,
    sliced_wasserstein,
    train_dm,
    uniform_capacity,
)
from infomax.dm.experiment import RECIPE_MATCH_WEIGHT, RECIPE_STROKE, population_sample
from infomax.dm.noise import RankNormalization
from infomax.tasks import additive_uniform_mi, mi_from_rho

# ---------------------------------------------------------------------------------------------
# NoiseInjection and ceilings


def test_gaussian_noise_layer_standardises_and_adds_noise():
    torch.manual_seed(0)
    layer = NoiseInjection(3, "gaussian", sigma=0.5)
    h = 5.0 + 3.0 * torch.randn(20000, 3)
    clean = layer.normalize(h)
    assert torch.allclose(clean.mean(0), torch.zeros(3), atol=1e-4)
    assert torch.allclose(clean.var(0, unbiased=False), torch.ones(3), atol=1e-3)
    z = layer(h)  # training mode: noise on
    assert torch.allclose((z - clean).std(0), torch.full((3,), 0.5), atol=0.02)
    assert torch.allclose(z.var(0), torch.full((3,), 1.25), atol=0.05)
    layer.eval()  # documented choice: clean representation at evaluation
    assert torch.equal(layer(h), layer(h))
    assert not torch.equal(layer(h, noisy=True), layer(h, noisy=True))
    layer.noise_at_eval = True
    assert not torch.equal(layer(h), layer(h))


def test_uniform_noise_layer_maps_into_box_and_noise_is_bounded():
    torch.manual_seed(0)
    layer = NoiseInjection(4, "uniform", sigma=0.2)
    h = torch.randn(5000, 4) * 7 - 2
    clean = layer.normalize(h)
    assert bool(((clean > 0) & (clean < 1)).all())
    # Φ(standardised Gaussian) is U[0, 1]: mean 1/2, variance 1/12
    assert torch.allclose(clean.mean(0), torch.full((4,), 0.5), atol=0.02)
    assert torch.allclose(clean.var(0), torch.full((4,), 1 / 12), atol=0.01)
    noise = layer(h) - clean
    assert float(noise.abs().max()) <= 0.2 + 1e-6
    assert float(noise.abs().max()) > 0.19
    assert abs(float(noise.var()) - 0.2**2 / 3) < 2e-3


def test_zero_sigma_is_identity_and_bad_inputs_raise():
    layer = NoiseInjection(2, "gaussian", sigma=0.0)
    h = torch.randn(10, 2)
    assert torch.equal(layer(h), layer.normalize(h))
    with pytest.raises(ValueError, match="target"):
        NoiseInjection(2, "laplace")
    with pytest.raises(ValueError, match="sigma"):
        NoiseInjection(2, "gaussian", sigma=-1.0)
    with pytest.raises(ValueError, match="shape"):
        layer(torch.randn(10, 3))
    with pytest.raises(ValueError, match="warmup"):
        sigma_schedule(0.5, 0.1, 2.0)


@pytest.mark.parametrize("dim,sigma", [(1, 0.1), (4, 0.5), (16, 0.2), (16, 2.0)])
def test_gaussian_capacity_is_mi_of_gaussian_channel(dim, sigma):
    # C ~ N(0, I), Z = C + σε: correlation per pair ρ = 1/sqrt(1 + σ²), MI = −d/2 log(1 − ρ²)
    rho = 1.0 / math.sqrt(1.0 + sigma**2)
    assert math.isclose(gaussian_capacity(dim, sigma), mi_from_rho(rho, dim), rel_tol=1e-12)
    assert capacity("gaussian", dim, 0.0) == math.inf


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.25, 0.5, 1.0])
def test_uniform_capacity_bounds_uniform_input_and_is_attained_on_lattice(eps):
    # a uniform input is not the maximiser (trapezoid output): strictly below the ceiling
    assert additive_uniform_mi(eps) < uniform_capacity(1, eps)
    assert math.isclose(uniform_capacity(3, eps), 3 * math.log1p(1 / (2 * eps)))
    # C on the lattice {0, 2ε, ..., 1} makes C + U[−ε, ε] uniform on [−ε, 1 + ε]: equality
    if (1 / (2 * eps)).is_integer():
        atoms = 1 / (2 * eps) + 1
        mi = math.log(1 + 2 * eps) - math.log(2 * eps)  # h(Y) − h(N)
        assert math.isclose(mi, uniform_capacity(1, eps), rel_tol=1e-12)
        assert math.isclose(mi, math.log(atoms), rel_tol=1e-12)


@pytest.mark.parametrize("target", ["gaussian", "uniform"])
def test_binding_sigma_puts_ceiling_at_log_k(target):
    for dim, k in [(2, 128), (16, 256)]:
        s = binding_sigma(target, dim, k)
        assert math.isclose(capacity(target, dim, s), math.log(k), rel_tol=1e-12)
    assert math.isclose(binding_sigma("gaussian", 16, 256), 1.0)


def test_sigma_schedule_ramps_linearly():
    assert sigma_schedule(0.0, 0.4, 0.5) == 0.0
    assert math.isclose(sigma_schedule(0.25, 0.4, 0.5), 0.2)
    assert sigma_schedule(0.6, 0.4, 0.5) == 0.4
    assert sigma_schedule(0.1, 0.4) == 0.4
    # start above sigma: the noise anneals down to sigma
    assert sigma_schedule(0.0, 1.0, 0.5, start=3.0) == 3.0
    assert math.isclose(sigma_schedule(0.25, 1.0, 0.5, start=3.0), 2.0)
    assert sigma_schedule(0.75, 1.0, 0.5, start=3.0) == 1.0
    with pytest.raises(ValueError, match="sigma_start"):
        DMConfig(sigma_start=-1.0)


def test_population_statistics_come_from_a_random_sample_not_the_first_inputs():
    idx = population_sample(1000, seed=0, size=250)
    assert idx.shape == (250,) and idx.unique().numel() == 250
    assert torch.equal(idx, population_sample(1000, seed=0, size=250))
    assert not torch.equal(idx, population_sample(1000, seed=1, size=250))
    assert torch.equal(population_sample(40, seed=0).sort().values, torch.arange(40))
    # a file whose inputs drift with their position (as MNIST's writer blocks do)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(4000, 3, generator=g) + torch.linspace(-2, 2, 4000)[:, None]
    layer = RankNormalization(3).eval()  # u in (0, 1), uniform for the population it was fit on
    layer.fit(h[:1000])
    first = (layer(h).mean(0) - 0.5).abs().max()
    layer.fit(h[population_sample(4000, seed=0, size=1000)])
    sampled = (layer(h).mean(0) - 0.5).abs().max()
    assert first > 0.2 and sampled < 0.03


# ---------------------------------------------------------------------------------------------
# Metrics vs brute force


def _energy_brute(x, y):
    d = lambda a, b: float(np.linalg.norm(a - b))  # noqa: E731
    n, m = len(x), len(y)
    xy = sum(d(a, b) for a in x for b in y) / (n * m)
    xx = sum(d(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(d(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    return 2 * xy - xx - yy


def test_energy_distance_and_permutation_pvalue_match_brute_force():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(9, 2, generator=g, dtype=torch.float64)
    y = torch.randn(7, 2, generator=g, dtype=torch.float64) + 0.3
    assert math.isclose(
        float(energy_distance(x, y)), _energy_brute(x.numpy(), y.numpy()), rel_tol=1e-10
    )
    stat, p = energy_test(x, y, permutations=50, generator=torch.Generator().manual_seed(5))
    # replay the same permutations one at a time
    keys = torch.rand(50, 16, generator=torch.Generator().manual_seed(5))
    pooled = torch.cat([x, y]).numpy()
    count = 0
    for row in keys:
        order = row.argsort().numpy()
        count += _energy_brute(pooled[order[:9]], pooled[order[9:]]) >= stat - 1e-12
    assert math.isclose(stat, _energy_brute(x.numpy(), y.numpy()), rel_tol=1e-10)
    assert p == (1 + count) / 51


def _imq_brute(x, y, scales):
    d = x.shape[1]
    k = lambda a, b, c: c / (c + float(np.sum((a - b) ** 2)))  # noqa: E731
    n, m, total = len(x), len(y), 0.0
    for s in scales:
        c = 2.0 * d * s
        total += sum(k(x[i], x[j], c) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        total += sum(k(y[i], y[j], c) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        total -= 2 * sum(k(a, b, c) for a in x for b in y) / (n * m)
    return total


def test_match_penalties_match_brute_force_and_have_exact_gradients():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(8, 3, generator=g, dtype=torch.float64)
    y = torch.randn(6, 3, generator=g, dtype=torch.float64) * 1.5
    ref = _energy_brute(x.numpy(), y.numpy())
    assert math.isclose(float(energy_distance_penalty(x, y)), ref, rel_tol=1e-12)
    assert math.isclose(float(energy_distance(x, y)), ref, rel_tol=1e-10)  # the test's statistic
    scales = (0.5, 2.0)
    assert math.isclose(
        float(mmd2_imq(x, y, scales)), _imq_brute(x.numpy(), y.numpy(), scales), rel_tol=1e-10
    )
    for penalty in MATCH_PENALTIES.values():  # finite differences, zero distances included
        xg = x.clone().requires_grad_()
        assert torch.autograd.gradcheck(lambda a, f=penalty: f(a, y), (xg,))
        xd = torch.cat([x[:3], x[:3]]).requires_grad_()  # repeated rows: ‖x_i − x_j‖ = 0
        penalty(xd, y).backward()
        assert torch.isfinite(xd.grad).all()
    with pytest.raises(ValueError, match=r"need x \[n>=2, d\]"):
        energy_distance_penalty(x[:1], y)
    with pytest.raises(ValueError, match=r"need x \[n>=2, d\]"):
        mmd2_imq(x, y[:, :2])


@pytest.mark.parametrize("name", sorted(MATCH_PENALTIES))
def test_match_penalties_are_unbiased_and_see_a_wrong_law(name):
    """Same law: the U-statistic averages to 0 (within 4 standard errors over 300 pairs of
    batches); a heavier-tailed batch (Student t, 3 dof, scaled to unit variance) gives a
    clearly positive value; gradient descent on it moves a batch towards the target."""
    penalty = MATCH_PENALTIES[name]
    g = torch.Generator().manual_seed(0)
    same = torch.tensor(
        [
            float(penalty(torch.randn(64, 4, generator=g), torch.randn(64, 4, generator=g)))
            for _ in range(300)
        ]
    )
    assert abs(float(same.mean())) < 4 * float(same.std()) / math.sqrt(300)
    t = torch.distributions.StudentT(3.0).sample((300, 64, 4)) / math.sqrt(3.0)
    wrong = torch.tensor(
        [float(penalty(t[i], torch.randn(64, 4, generator=g))) for i in range(300)]
    )
    assert float(wrong.mean()) > float(same.mean()) + 8 * float(same.std()) / math.sqrt(300)
    z = (2.0 + 0.5 * torch.randn(256, 4, generator=g)).requires_grad_()
    opt = torch.optim.SGD([z], lr=50.0)
    first = float(energy_distance(z, torch.randn(2000, 4, generator=g)))
    for _ in range(100):
        opt.zero_grad()
        penalty(z, torch.randn(256, 4, generator=g)).backward()
        opt.step()
    assert float(energy_distance(z, torch.randn(2000, 4, generator=g))) < 0.02 * first


def test_sliced_wasserstein_closed_forms():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 1, generator=g, dtype=torch.float64)
    y = 2.0 * torch.randn(300, 1, generator=g, dtype=torch.float64)
    w2 = float(((x.sort(0).values - y.sort(0).values) ** 2).mean().sqrt())
    assert math.isclose(sliced_wasserstein(x, y, projections=3), w2, rel_tol=1e-12)
    # a pure shift v: SW₂² = mean_θ (θᵀv)² → ‖v‖²/d
    x = torch.randn(200, 5, generator=g, dtype=torch.float64)
    v = torch.tensor([1.0, -2.0, 0.5, 0.0, 1.0], dtype=torch.float64)
    sw = sliced_wasserstein(x, x + v, projections=4000)
    assert abs(sw - float(v.norm()) / math.sqrt(5)) < 0.05
    assert sliced_wasserstein(x, x) == 0.0
    # unequal sizes: quantiles on a common grid; equal samples repeated give 0
    assert sliced_wasserstein(x, torch.cat([x, x])) < 1e-12


def _pass_rate(samples, target, key):
    hits = [
        getattr(dm_metrics(z, target, n=None, permutations=100, seed=i), key)
        for i, z in enumerate(samples)
    ]
    return float(np.mean(hits))


@pytest.mark.parametrize("target", ["gaussian", "uniform"])
def test_true_target_sample_passes_in_at_least_90_percent_of_repeats(target):
    g = torch.Generator().manual_seed(1)
    samples = [sample_target(target, 100, 4, g) for _ in range(100)]
    for key in ("energy_pass", "ks_pass", "shapiro_pass"):
        assert _pass_rate(samples, target, key) >= 0.9, key


def test_shifted_and_heavy_tailed_samples_fail_gaussian():
    g = torch.Generator().manual_seed(2)
    shifted = [sample_target("gaussian", 200, 4, g) + 0.5 for _ in range(10)]
    t3 = torch.distributions.StudentT(torch.tensor(2.5, dtype=torch.float64))
    torch.manual_seed(2)
    heavy = [t3.sample((200, 4)) / math.sqrt(5.0) for _ in range(10)]  # unit variance
    assert _pass_rate(shifted, "gaussian", "energy_pass") <= 0.1
    assert _pass_rate(shifted, "gaussian", "ks_pass") <= 0.1
    assert _pass_rate(heavy, "gaussian", "shapiro_pass") <= 0.1
    assert _pass_rate(heavy, "gaussian", "energy_pass") <= 0.5  # weaker against tails only


def test_shifted_and_edge_heavy_samples_fail_uniform():
    g = torch.Generator().manual_seed(4)
    shifted = [sample_target("uniform", 200, 4, g) * 0.8 + 0.2 for _ in range(10)]
    beta = torch.distributions.Beta(torch.tensor(0.4, dtype=torch.float64), torch.tensor(0.4))
    torch.manual_seed(4)
    edges = [beta.sample((200, 4)) for _ in range(10)]
    for key in ("energy_pass", "ks_pass"):
        assert _pass_rate(shifted, "uniform", key) <= 0.1, key
    # Shapiro-Wilk on Φ⁻¹(z) is weak against edge-heavy laws (it passes 19/20 here): KS and
    # the energy test are the ones that must catch them
    assert _pass_rate(edges, "uniform", "ks_pass") <= 0.1
    assert _pass_rate(edges, "uniform", "energy_pass") <= 0.1


def test_reference_row_equals_dm_metrics_of_true_sample_and_bad_input():
    ref = reference_metrics("gaussian", 3, n=50, permutations=20)
    g = torch.Generator().manual_seed(10_007)
    again = dm_metrics(sample_target("gaussian", 50, 3, g), "gaussian", n=None, permutations=20)
    assert ref == again
    with pytest.raises(ValueError, match="NaN"):
        dm_metrics(torch.full((10, 2), float("nan")), "gaussian")
    with pytest.raises(ValueError, match="n must be"):
        dm_metrics(torch.randn(10, 2), "gaussian", n=20)
    with pytest.raises(ValueError, match="target"):
        dm_metrics(torch.randn(10, 2), "student")


# ---------------------------------------------------------------------------------------------
# Training: the held-out MI estimate stays below the ceiling; the pipeline; the CLI


@pytest.mark.parametrize("target,sigma", [("gaussian", 1.0), ("uniform", 0.5)])
def test_heldout_estimate_below_capacity(target, sigma):
    cfg = tiny_dm_config(target=target, sigma=sigma, epochs=3, views="identity")
    m, feats = train_dm(cfg)
    assert m["capacity"] == capacity(target, 2, sigma) < m["log_k"]
    assert 0.2 < m["mi_estimate"] <= m["capacity"] + 2 * m["mi_stderr"] + 0.02
    assert feats.shape == (2000, 2)
    assert 0 <= m["energy_p"] <= 1 and m["n"] == 200


def test_shift_energy_sees_test_inputs_that_come_from_another_law(monkeypatch):
    """Same law for training and test inputs: the shift test does not reject; test inputs moved
    by 3 along every axis: it rejects at its smallest p-value, whatever the representation's
    match to the target."""
    import infomax.dm.experiment as experiment

    cfg = tiny_dm_config(sigma=1.0, epochs=1, permutations=50)
    same, _ = train_dm(cfg)
    original = experiment.synthetic_data

    def moved(**kw):
        trx, tr_y, tex, te_y = original(**kw)
        return trx, tr_y, tex + 3.0, te_y

    monkeypatch.setattr(experiment, "synthetic_data", moved)
    other, _ = train_dm(cfg)
    assert same["shift_energy_p"] > 0.05
    assert other["shift_energy_p"] == 1 / 51 and other["shift_energy"] > 0


def test_resampled_pass_rates_over_fresh_subsets():
    from infomax.dm.experiment import resampled_pass_rates

    cfg = DMConfig(data="synthetic", dim=3, dm_sizes=(200,), permutations=50, dm_resamples=12)
    g = torch.Generator().manual_seed(2)
    true = torch.randn(5000, 3, generator=g, dtype=torch.float64)
    rates = resampled_pass_rates(true, cfg)
    assert rates["energy_pass_rate"] >= 0.75 and rates["ks_pass_rate"] >= 0.75
    assert abs(rates["energy_median"]) < 0.05
    # the subsets differ from one another and from the headline one (seed 0)
    headline = dm_metrics(true, "gaussian", n=200, permutations=50, seed=0)
    first = dm_metrics(true, "gaussian", n=200, permutations=50, seed=100_000)
    assert headline.energy != first.energy
    moved = resampled_pass_rates(true + 0.4, cfg)
    assert moved["energy_pass_rate"] == 0.0 and moved["energy_median"] > 0.1
    none = resampled_pass_rates(true, replace(cfg, dm_resamples=0))
    assert all(math.isnan(v) for v in none.values())
    with pytest.raises(ValueError, match="dm_resamples"):
        DMConfig(dm_resamples=-1)


def test_digit_images_train_with_the_stroke_view_and_the_penalty(monkeypatch):
    import infomax.augment as augment

    built = []
    original = augment.build_augment

    def spy(*args, **kw):
        built.append(kw)
        return original(*args, **kw)

    monkeypatch.setattr(augment, "build_augment", spy)
    cfg = DMConfig(
        data="digits",
        epochs=1,
        dim=4,
        stroke=0.8,
        match_weight=10.0,
        dm_sizes=(100,),
        permutations=20,
        dm_resamples=2,
        train_subset=512,
        progress=False,
        device="cpu",
    )
    m, feats = train_dm(cfg)
    assert built == [{"stroke": 0.8, "crop_scale": (0.6, 1.0)}]
    assert torch.isfinite(feats).all() and 0.0 <= m["energy_pass_rate"] <= 1.0


def test_match_penalty_trains_and_is_recorded():
    for kernel in MATCH_PENALTIES:
        cfg = tiny_dm_config(sigma=1.0, epochs=1, match_weight=5.0, match_kernel=kernel)
        m, feats = train_dm(cfg)
        assert torch.isfinite(feats).all() and math.isfinite(m["final_loss"])


def test_config_validation():
    with pytest.raises(ValueError, match="extra network"):
        DMConfig(bound="flo")
    with pytest.raises(ValueError, match="unknown data"):
        DMConfig(data="imagenet")
    with pytest.raises(ValueError, match="sigma"):
        DMConfig(sigma=-0.1)
    with pytest.raises(ValueError, match="unknown match_kernel 'mmd'; valid: energy, imq"):
        DMConfig(match_kernel="mmd")
    with pytest.raises(ValueError, match="match_weight must be a finite number >= 0"):
        DMConfig(match_weight=-1.0)
    for (data, base), weight in RECIPE_MATCH_WEIGHT.items():  # None: the data set's recipe
        assert DMConfig(data=data, target=base).match_weight == weight
    assert (
        DMConfig(data="mnist", target="laplace").match_weight
        == RECIPE_MATCH_WEIGHT[("mnist", "uniform")]
    )  # through the uniform representation
    assert DMConfig(data="synthetic").match_weight == 0.0
    assert DMConfig(data="mnist").stroke == RECIPE_STROKE["mnist"]
    assert DMConfig(data="fashion-mnist").stroke == 0.0
    with pytest.raises(ValueError, match="stroke must be a probability"):
        DMConfig(stroke=2.0)
    assert DMConfig(data="mnist", match_weight=0.0).match_weight == 0.0


def test_cli_dm_sweep_writes_outputs(tmp_path):
    from typer.testing import CliRunner

    from infomax.cli import app

    out, docs = tmp_path / "dm", tmp_path / "docs"
    args = (
        "dm --data synthetic --target uniform --sweep 0,0.3 --epochs 1 --dim 4 --dm-sizes 100 "
        "--permutations 20 --test-subset 300 --probe-subset 500 --train-subset 1000 --no-progress"
    )
    res = CliRunner().invoke(app, [*args.split(), "--out", str(out), "--docs-dir", str(docs)])
    assert res.exit_code == 0, res.output
    for name in ("results.json", "dm_sweep.csv", "dm_tradeoff.png", "dm_marginals.png"):
        assert (out / name).is_file(), name
    for name in ("tradeoff", "marginals"):  # the CLI, not the library, copies into --docs-dir
        copy = docs / f"dm_synthetic_uniform_{name}.png"
        assert copy.read_bytes() == (out / f"dm_{name}.png").read_bytes()
    for s in ("0", "0.3"):  # every sigma's run folder
        assert (out / f"sigma_{s}" / "results.json").is_file()
    import pandas as pd

    table = pd.read_csv(out / "dm_sweep.csv")
    assert list(table["sigma"].astype(str))[:2] == ["0.0", "0.3"]
    assert "reference" in set(table["sigma"].astype(str))
    bad = CliRunner().invoke(app, ["dm", "--target", "cauchy", "--out", str(out)])
    assert bad.exit_code == 2 and "target" in bad.output


def _no_training(*args, **kwargs):
    raise AssertionError("training started: the size check must come before any expensive work")


def test_dm_sizes_larger_than_test_set_fail_before_training(tmp_path, monkeypatch):
    """``--dm-sizes 100000`` used to train, drop the size silently, then attempt an O(n²)
    energy test of the 100000-point reference sample (~80 GB); now one clear error first."""
    from infomax.dm import experiment
    from infomax.experiments import dm_sweep

    monkeypatch.setattr(experiment, "fit", _no_training)
    monkeypatch.setattr(dm_sweep, "reference_metrics", _no_training)
    cfg = DMConfig(data="synthetic", dm_sizes=(500, 100_000), progress=False, device="cpu")
    msg = "--dm-sizes 100000 is larger than the 2000 test inputs; use at most 2000"
    with pytest.raises(ValueError, match=msg):
        train_dm(cfg)
    with pytest.raises(ValueError, match=msg):
        dm_sweep.run(dm_sweep.DMSweepConfig(cfg, (0.1, 0.2)), run_dir=tmp_path / "sweep")
    with pytest.raises(ValueError, match="-dm-sizes 400 is larger than the 300 test inputs"):
        DMConfig(data="synthetic", test_subset=300, dm_sizes=(400,), batch_size=64)
    with pytest.raises(ValueError, match="larger than the 100 probe inputs"):
        DMConfig(data="synthetic", probe_subset=100, dm_sizes=(200,), batch_size=64)
    with pytest.raises(ValueError, match="fewer than one batch of --batch-size 256"):
        DMConfig(data="synthetic", test_subset=100, dm_sizes=(50,))
    with pytest.raises(ValueError, match="sigma must be"):  # every sigma of a sweep, up front
        dm_sweep.run_sweep(replace(cfg, dm_sizes=(500,)), [0.1, -1.0], tmp_path / "bad")


def test_sweep_runs_seeds_at_one_sigma_and_simclr_rows():
    from infomax.experiments.dm_sweep import DMSweepConfig

    cfg = DMSweepConfig(
        DMConfig(data="synthetic"), (0.5, 1.0), seeds=(0, 1, 2), simclr_reference=True, seeds_at=1.0
    )
    names = [name for name, _ in cfg.runs()]
    assert names == [
        "sigma_0.5_seed0",
        "sigma_1_seed0",
        "sigma_1_seed1",
        "sigma_1_seed2",
        "simclr_seed0",
        "simclr_seed1",
        "simclr_seed2",
    ]
    simclr = cfg.configs()[-1]
    assert simclr.method == "simclr" and simclr.seed == 2 and simclr.sigma == 0.0
    with pytest.raises(ValueError, match="seeds_at 2.0 is not one of the sigmas"):
        DMSweepConfig(DMConfig(data="synthetic"), (0.5,), seeds=(0, 1), seeds_at=2.0)
    with pytest.raises(ValueError, match="distinct"):
        DMSweepConfig(DMConfig(data="synthetic"), (0.5,), seeds=(1, 1))


def test_summary_counts_passes_and_averages_over_seeds():
    from infomax.experiments.dm_sweep import summarise

    def row(seed, probe, p, sw, passes, method="noisy-dim"):
        return {
            "method": method,
            "sigma": 1.0 if method == "noisy-dim" else 0.0,
            "seed": seed,
            "linear_probe_acc": probe,
            "energy_p": p,
            "sliced_w2": sw,
            "energy": 0.01,
            "mi_estimate": 1.0,
            "energy_pass": passes,
            "ks_pass": True,
            "shapiro_pass": not passes,
            "capacity": 2.0,
            "energy_pass_rate": 0.5 if passes else 0.1,
            "ks_pass_rate": 1.0,
        }

    rows = [
        row(0, 0.9, 0.2, 0.1, True),
        row(1, 0.8, 0.01, 0.3, False),
        row(0, 0.99, 0.0, 0.5, False, "simclr"),
    ]
    out = summarise(rows, {"sliced_w2": 0.1})
    dim, ref = out
    assert (dim["seeds"], dim["energy_pass"], dim["ks_pass"], dim["shapiro_pass"]) == (
        2,
        "1/2",
        "2/2",
        "1/2",
    )
    assert math.isclose(dim["linear_probe_acc_mean"], 0.85)
    assert math.isclose(dim["linear_probe_acc_std"], float(np.std([0.9, 0.8], ddof=1)))
    assert math.isclose(dim["sw2_ratio_mean"], 2.0)
    assert math.isclose(dim["energy_pass_rate_mean"], 0.3) and dim["ks_pass_rate_mean"] == 1.0
    assert ref["method"] == "simclr" and ref["seeds"] == 1 and ref["linear_probe_acc_std"] == 0.0


def test_a_diverged_run_does_not_end_the_sweep(monkeypatch):
    from infomax.experiments import dm_sweep
    from infomax.train import DivergedError

    calls = []

    def fake_train(cfg, out_dir=None):
        calls.append(cfg.sigma)
        if cfg.sigma == 0.5:
            raise DivergedError("loss became nan at epoch 1")
        return {"sigma": cfg.sigma, "method": "noisy-dim"}, torch.zeros(4, 2)

    monkeypatch.setattr(dm_sweep, "train_dm", fake_train)
    monkeypatch.setattr(
        dm_sweep,
        "reference_metrics",
        lambda *a, **k: dm_metrics(torch.randn(50, 2), "gaussian", n=None, permutations=5),
    )
    cfg = dm_sweep.DMSweepConfig(DMConfig(data="synthetic", dim=2, dm_sizes=(50,)), (0.5, 1.0))
    with pytest.warns(UserWarning, match="sigma_0.5: loss became nan"):
        res = dm_sweep.run(cfg)
    assert calls == [0.5, 1.0] and [r["sigma"] for r in res.rows] == [1.0]
    assert res.diverged == [{"run": "sigma_0.5", "error": "loss became nan at epoch 1"}]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--sigma", "-0.5"], "sigma must be a finite number >= 0"),
        (["--target", "cauchy"], "unknown target 'cauchy'"),
        (["--dim", "0"], "dim must be an integer >= 1"),
        (["--target", "beta"], "'beta' has no inverse CDF"),
    ],
)
def test_cli_bad_input_gives_one_clear_error(tmp_path, args, message):
    from typer.testing import CliRunner

    from infomax.cli import app

    res = CliRunner().invoke(app, ["dm", "--data", "synthetic", *args, "--out", str(tmp_path)])
    assert res.exit_code == 2, res.output
    flat = " ".join(res.output.split())
    assert message in flat and "Traceback" not in res.output


def test_cli_exposes_every_recipe_setting():
    from typer.testing import CliRunner

    from infomax.cli import app

    res = CliRunner().invoke(app, ["dm", "--help"], terminal_width=200)
    flat = " ".join(res.output.split())
    for option in (
        "--normalization",
        "--denominator",
        "--crop",
        "--match-weight",
        "--match-kernel",
        "--views",
    ):
        assert option in flat, option
    assert "--seeds-at" in flat and "--simclr-reference" in flat
