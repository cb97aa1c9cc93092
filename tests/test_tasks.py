"""Ground-truth MI tasks: closed forms vs scipy densities / Monte Carlo / quadrature."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from infomax.registry import TASKS, TRANSFORMS
from infomax.tasks import (
    AdditiveUniformNoise,
    CorrelatedGaussian,
    DenseGaussian,
    GaussianWithCovariance,
    MultivariateStudentT,
    SparseGaussian,
    Task,
    additive_uniform_mi,
    make_task,
    mi_from_rho,
    rho_from_mi,
    spiral,
    staircase,
    task_from_string,
    tasks_from_string,
    transformed,
)


def diag_log_ratio(task: Task, x: np.ndarray, y: np.ndarray, block: int = 500) -> np.ndarray:
    """Diagonal of ``task.log_density_ratio`` computed block by block, ``[n]``."""
    out = [
        np.diag(task.log_density_ratio(x[i : i + block], y[i : i + block]))
        for i in range(0, len(x), block)
    ]
    return np.concatenate(out)


def assert_mc_close(values: np.ndarray, truth: float, k: float = 4.0) -> None:
    mean, se = values.mean(), values.std(ddof=1) / math.sqrt(len(values))
    assert abs(mean - truth) < k * se + 1e-12, f"MC {mean:.4f} ± {se:.4f} vs true {truth:.4f}"


def gaussian_joint_cov(task: CorrelatedGaussian) -> np.ndarray:
    d = task.dim
    cov = np.eye(2 * d)
    cov[np.arange(d), d + np.arange(d)] = cov[d + np.arange(d), np.arange(d)] = task.rho
    return cov


def scipy_gaussian_log_ratio(cov: np.ndarray, dx: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Reference pairwise log ratio with scipy densities (explicit pairs), ``[n, m]``."""
    n, m = len(x), len(y)
    pairs = np.concatenate([np.repeat(x, m, 0), np.tile(y, (n, 1))], axis=1)
    joint = stats.multivariate_normal(np.zeros(len(cov)), cov).logpdf(pairs).reshape(n, m)
    px = stats.multivariate_normal(np.zeros(dx), cov[:dx, :dx]).logpdf(x).reshape(n, 1)
    py = stats.multivariate_normal(np.zeros(len(cov) - dx), cov[dx:, dx:]).logpdf(y).reshape(1, m)
    return joint - px - py


# --- correlated Gaussian ------------------------------------------------------------------------


@pytest.mark.parametrize("dim, mi", [(1, 0.5), (5, 2.0), (20, 10.0)])
def test_mi_rho_round_trip(dim: int, mi: float) -> None:
    rho = rho_from_mi(mi, dim)
    assert mi_from_rho(rho, dim) == pytest.approx(mi, rel=1e-12)
    task = CorrelatedGaussian(dim, mi=mi)
    assert task.rho == pytest.approx(rho)
    assert CorrelatedGaussian(dim, rho=task.rho).mutual_information == pytest.approx(mi, rel=1e-10)
    assert CorrelatedGaussian(dim, rho=-task.rho).mutual_information == pytest.approx(mi, rel=1e-10)


def test_gaussian_log_ratio_matches_scipy() -> None:
    task = CorrelatedGaussian(3, rho=0.7)
    x, y = task.sample(7, seed=1)
    got = task.log_density_ratio(x, y[:5])
    assert got.shape == (7, 5)
    ref = scipy_gaussian_log_ratio(gaussian_joint_cov(task), 3, x, y[:5])
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)
    # the general-covariance task gives the same critic
    general = GaussianWithCovariance(gaussian_joint_cov(task), dim_x=3)
    assert general.mutual_information == pytest.approx(task.mutual_information, rel=1e-12)
    np.testing.assert_allclose(general.log_density_ratio(x, y[:5]), got, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dim, mi", [(2, 1.0), (20, 10.0)])
def test_gaussian_mi_monte_carlo(dim: int, mi: float) -> None:
    task = CorrelatedGaussian(dim, mi=mi)
    x, y = task.sample(4000, seed=3)
    assert_mc_close(diag_log_ratio(task, x, y), mi)


def test_gaussian_sample_correlation_and_determinism() -> None:
    task = CorrelatedGaussian(4, rho=0.6)
    x, y = task.sample(20000, seed=0)
    assert x.shape == y.shape == (20000, 4) and x.dtype == y.dtype == np.float64
    corr = np.array([np.corrcoef(x[:, k], y[:, k])[0, 1] for k in range(4)])
    np.testing.assert_allclose(corr, 0.6, atol=4 * (1 - 0.36) / math.sqrt(20000))
    np.testing.assert_allclose(x.std(0), 1.0, atol=0.03)
    np.testing.assert_allclose(y.std(0), 1.0, atol=0.03)
    cross = np.corrcoef(x[:, 0], y[:, 1])[0, 1]
    assert abs(cross) < 4 / math.sqrt(20000)
    x2, y2 = task.sample(20000, seed=0)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(task.sample(10, seed=1)[0], x[:10])


def test_staircase() -> None:
    steps = staircase()
    assert [t.id for t in steps] == [f"gaussian-d20-mi{m}" for m in (2, 4, 6, 8, 10)]
    assert [t.mutual_information for t in steps] == [2, 4, 6, 8, 10]
    assert all(t.dim_x == t.dim_y == 20 for t in steps)
    rhos = [t.rho for t in steps]
    assert rhos == sorted(rhos)


# --- Gaussian with a covariance -----------------------------------------------------------------


def test_gaussian_cov_closed_form_and_scipy() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 5))
    cov = a @ a.T + 0.5 * np.eye(5)
    task = GaussianWithCovariance(cov, dim_x=2)
    assert (task.dim_x, task.dim_y) == (2, 3)
    # I = h(X) + h(Y) - h(X, Y) with scipy's entropies
    ent = [stats.multivariate_normal(cov=c).entropy() for c in (cov[:2, :2], cov[2:, 2:], cov)]
    assert task.mutual_information == pytest.approx(ent[0] + ent[1] - ent[2], rel=1e-10)
    x, y = task.sample(6, seed=2)
    np.testing.assert_allclose(
        task.log_density_ratio(x, y), scipy_gaussian_log_ratio(cov, 2, x, y), atol=1e-9
    )
    xs, ys = task.sample(40000, seed=5)
    np.testing.assert_allclose(np.cov(np.hstack([xs, ys]).T), cov, atol=0.1 * np.abs(cov).max())


@pytest.mark.parametrize(
    "task",
    [DenseGaussian(3, 2, off_diag=0.5), SparseGaussian(4, 4, n_interacting=2, signal=0.8)],
    ids=lambda t: t.id,
)
def test_dense_sparse_gaussian_monte_carlo(task: GaussianWithCovariance) -> None:
    x, y = task.sample(4000, seed=4)
    assert_mc_close(diag_log_ratio(task, x, y), task.mutual_information)


def test_sparse_pattern() -> None:
    task = SparseGaussian(3, 4, n_interacting=2, signal=0.8, noise=0.1)
    cov = task.cov
    assert cov[0, 3] == cov[1, 4] == 0.8 and cov[2, 5] == 0.0 and cov[0, 1] == 0.1
    no_noise = SparseGaussian(3, 3, n_interacting=2, signal=0.8, noise=0.0)
    assert no_noise.mutual_information == pytest.approx(mi_from_rho(0.8, 2), rel=1e-12)


# --- Student-t ----------------------------------------------------------------------------------


def scipy_student_log_ratio(task: MultivariateStudentT, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Diagonal log ratio ``[n]`` from scipy's multivariate t densities."""
    dx, s, nu = task.dim_x, task.scale, task.dof
    joint = stats.multivariate_t(shape=s, df=nu).logpdf(np.hstack([x, y]))
    px = stats.multivariate_t(shape=s[:dx, :dx], df=nu).logpdf(x)
    py = stats.multivariate_t(shape=s[dx:, dx:], df=nu).logpdf(y)
    return np.atleast_1d(joint - px - py)


@pytest.mark.parametrize(
    "dim_x, dim_y, dof, rho", [(1, 1, 1.0, 0.0), (2, 2, 3.0, 0.5), (1, 3, 5.0, 0.8)]
)
def test_student_t_mi_monte_carlo(dim_x: int, dim_y: int, dof: float, rho: float) -> None:
    task = MultivariateStudentT(dim_x, dim_y, dof=dof, rho=rho)
    x, y = task.sample(20000, seed=7)
    assert_mc_close(scipy_student_log_ratio(task, x, y), task.mutual_information)


def test_student_t_log_ratio_matches_scipy_and_limits() -> None:
    task = MultivariateStudentT(2, 3, dof=4.0, rho=0.6)
    x, y = task.sample(6, seed=0)
    got = task.log_density_ratio(x, y[:4])
    assert got.shape == (6, 4)
    for i in range(6):
        for j in range(4):
            ref = scipy_student_log_ratio(task, x[i : i + 1], y[j : j + 1])[0]
            assert got[i, j] == pytest.approx(ref, abs=1e-9)
    # the correction vanishes as dof -> inf: the Gaussian limit
    gauss = mi_from_rho(0.6, 2)
    assert MultivariateStudentT(2, 3, dof=1e7, rho=0.6).mutual_information == pytest.approx(gauss)
    assert task.mutual_information > gauss
    # rho = 0 still has positive MI: x and y share the chi-square scale
    assert MultivariateStudentT(1, 1, dof=1.0).mutual_information > 0.2


# --- additive uniform noise ---------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.05, 0.3, 0.5, 0.75, 2.0])
def test_additive_uniform_mi_quadrature(eps: float) -> None:
    """I = h(Y) - log(2 eps) with p_Y from a numerical convolution (independent of the code)."""
    xs = (np.arange(4000) + 0.5) / 4000  # midpoint rule over X ~ U(0, 1)
    ys = np.linspace(-eps, 1 + eps, 4001)
    p = np.array([np.mean(np.abs(y - xs) <= eps) / (2 * eps) for y in ys])
    integrand = np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    h_y = np.trapezoid(integrand, ys)
    assert additive_uniform_mi(eps) == pytest.approx(h_y - math.log(2 * eps), abs=2e-3)
    assert AdditiveUniformNoise(eps).mutual_information == additive_uniform_mi(eps)


@pytest.mark.parametrize("eps", [0.1, 1.0])
def test_additive_uniform_monte_carlo(eps: float) -> None:
    task = AdditiveUniformNoise(eps)
    x, y = task.sample(5000, seed=0)
    assert x.shape == y.shape == (5000, 1)
    assert x.min() >= 0 and x.max() <= 1 and np.abs(y - x).max() <= eps
    ratio = diag_log_ratio(task, x, y)
    assert np.all(np.isfinite(ratio))
    assert_mc_close(ratio, task.mutual_information)
    full = task.log_density_ratio(x[:50], y[:50])
    inside = np.abs(y[:50].T - x[:50]) <= eps
    assert np.all(np.isneginf(full[~inside])) and np.all(np.isfinite(full[inside]))


def test_mi_continuity_at_half() -> None:
    assert additive_uniform_mi(0.5) == pytest.approx(additive_uniform_mi(0.5 + 1e-12))


# --- transforms ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cubic", "asinh", "half_cube", "normal_cdf"])
def test_elementwise_transforms_are_monotone_bijections(name: str) -> None:
    f = TRANSFORMS.get(name)
    t = np.random.default_rng(0).standard_normal((500, 3)) * 1.5
    out = f(t)
    assert out.shape == t.shape
    np.testing.assert_allclose(f.inverse(out), t, rtol=1e-9, atol=1e-9)
    order = np.argsort(t[:, 0])
    assert np.all(np.diff(out[order, 0]) > 0)  # strictly increasing


def test_spiral_is_norm_preserving_bijection() -> None:
    f = TRANSFORMS.get("spiral")
    t = np.random.default_rng(1).standard_normal((300, 4))
    out = f(t)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), np.linalg.norm(t, axis=1))
    np.testing.assert_allclose(f.inverse(out), t, atol=1e-12)
    np.testing.assert_array_equal(out[:, 2:], t[:, 2:])
    assert not np.allclose(out, t)
    assert spiral(0.0)(t) == pytest.approx(t)


@pytest.mark.parametrize("name", ["cubic", "asinh", "half_cube", "normal_cdf", "spiral"])
@pytest.mark.parametrize("on", ["both", "x", "y"])
def test_transformed_task(name: str, on: str) -> None:
    base = CorrelatedGaussian(3, mi=2.0)
    task = transformed(base, name, on=on)
    assert task.mutual_information == base.mutual_information
    head = name if on == "both" else f"{name}[{on}]"
    assert task.id == f"{head}(gaussian-d3-mi2)"
    x, y = task.sample(64, seed=9)
    bx, by = base.sample(64, seed=9)
    f = TRANSFORMS.get(name)
    np.testing.assert_allclose(x, f(bx) if on != "y" else bx)
    np.testing.assert_allclose(y, f(by) if on != "x" else by)
    # the true critic is invariant under the maps
    np.testing.assert_allclose(
        task.log_density_ratio(x, y), base.log_density_ratio(bx, by), rtol=1e-6, atol=1e-6
    )
    assert task_from_string(task.spec).id == task.id


def test_nested_transform_and_min_dim() -> None:
    task = transformed(transformed(CorrelatedGaussian(2, rho=0.5), "asinh"), "cubic", on="x")
    assert task.id == "cubic[x](asinh(gaussian-d2-rho0.5))"
    with pytest.raises(ValueError, match="needs dim >= 2"):
        transformed(CorrelatedGaussian(1, rho=0.5), "spiral")
    with pytest.raises(ValueError, match="on must be one of"):
        transformed(CorrelatedGaussian(1, rho=0.5), "cubic", on="z")
    with pytest.raises(ValueError, match="unknown transform"):
        transformed(CorrelatedGaussian(1, rho=0.5), "quartic")


# --- registry, specs, serialisation --------------------------------------------------------------


def test_registry_and_make_task() -> None:
    assert {"gaussian", "gaussian-cov", "student-t", "additive-uniform"} <= set(TASKS.names())
    assert set(TRANSFORMS.names()) == {"cubic", "asinh", "half_cube", "normal_cdf", "spiral"}
    assert make_task("gaussian", dim=5, mi=2).id == "gaussian-d5-mi2"
    assert make_task("additive-uniform", epsilon=0.25).id == "additive-uniform-eps0.25"


ALL_TASKS = [
    CorrelatedGaussian(5, mi=2.0),
    CorrelatedGaussian(2, rho=-0.3),
    GaussianWithCovariance([[1.0, 0.4, 0.2], [0.4, 1.0, 0.1], [0.2, 0.1, 1.0]], dim_x=1),
    DenseGaussian(2, 3),
    SparseGaussian(3, 3),
    MultivariateStudentT(2, 2, dof=3, rho=0.5),
    MultivariateStudentT(1, 1, dof=2, scale=[[2.0, 0.5], [0.5, 1.0]]),
    AdditiveUniformNoise(0.3),
    transformed(CorrelatedGaussian(2, mi=1.0), "spiral", on="y"),
]


@pytest.mark.parametrize("task", ALL_TASKS, ids=lambda t: t.id)
def test_spec_round_trip_and_json(task: Task) -> None:
    again = task_from_string(task.spec)
    assert again.id == task.id
    assert again.mutual_information == pytest.approx(task.mutual_information, rel=1e-12)
    np.testing.assert_array_equal(again.sample(5, seed=2)[1], task.sample(5, seed=2)[1])
    if task.name in TASKS:
        assert make_task(task.name, **task.params()).id == task.id
    info = json.loads(json.dumps(task.to_dict()))
    assert info["id"] == task.id and info["mutual_information"] == task.mutual_information
    x, y = task.sample(3, seed=0)
    assert x.shape == (3, task.dim_x) and y.shape == (3, task.dim_y)


def test_tasks_from_string() -> None:
    tasks = tasks_from_string("staircase:dim=10,mis=[1,2]; cubic[y](gaussian:dim=5,mi=2)")
    assert [t.id for t in tasks] == [
        "gaussian-d10-mi1",
        "gaussian-d10-mi2",
        "cubic[y](gaussian-d5-mi2)",
    ]
    assert len(tasks_from_string("staircase")) == 5
    assert [t.id for t in tasks_from_string("asinh(staircase:mis=[3])")] == [
        "asinh(gaussian-d20-mi3)"
    ]
    with pytest.raises(ValueError, match="holds 5 tasks"):
        task_from_string("staircase")


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: CorrelatedGaussian(3, rho=1.0), "rho must lie"),
        (lambda: CorrelatedGaussian(3, rho=-1.5), "rho must lie"),
        (lambda: CorrelatedGaussian(3, mi=0.0), "mi must be > 0"),
        (lambda: CorrelatedGaussian(3, mi=-1.0), "mi must be > 0"),
        (lambda: CorrelatedGaussian(3), "exactly one"),
        (lambda: CorrelatedGaussian(3, rho=0.5, mi=1.0), "exactly one"),
        (lambda: CorrelatedGaussian(0, mi=1.0), "dim must be"),
        (lambda: CorrelatedGaussian(3, mi=float("nan")), "finite"),
        (lambda: MultivariateStudentT(2, 2, dof=0.0), "dof must be > 0"),
        (lambda: MultivariateStudentT(2, 2, dof=3, rho=1.2), "rho must lie"),
        (lambda: AdditiveUniformNoise(0.0), "epsilon must be > 0"),
        (lambda: AdditiveUniformNoise(-1.0), "epsilon must be > 0"),
        (lambda: GaussianWithCovariance([[1.0, 2.0], [2.0, 1.0]], 1), "positive definite"),
        (lambda: GaussianWithCovariance([[1.0, 0.2], [0.1, 1.0]], 1), "symmetric"),
        (lambda: GaussianWithCovariance(np.eye(3), 3), "dim_x must be < D"),
        (lambda: DenseGaussian(2, 2, off_diag=-0.5), "off_diag must lie"),
        (lambda: SparseGaussian(2, 2, n_interacting=3), "n_interacting must be"),
        (lambda: make_task("gaussain", dim=2, mi=1), "unknown task 'gaussain'"),
        (lambda: make_task("gaussian", dim=2, nats=1), "bad parameters for 'gaussian'"),
        (lambda: task_from_string("gaussian:dim=2,mi=1)"), "unbalanced"),
        (lambda: task_from_string("gaussian:dim"), "key=value"),
        (lambda: task_from_string("cubic(gaussian:dim=2,mi=1"), "unbalanced"),
        (lambda: CorrelatedGaussian(2, mi=1.0).sample(0), "n must be"),
        (lambda: CorrelatedGaussian(2, mi=1.0).sample(5, seed=-1), "seed must be"),
        (
            lambda: CorrelatedGaussian(2, mi=1.0).log_density_ratio(
                np.zeros((3, 3)), np.zeros((3, 2))
            ),
            r"shape \[n, 2\]",
        ),
    ],
)
def test_errors(build, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        build()
