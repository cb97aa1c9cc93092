"""Bounds vs plain double-loop references, gradchecks, invariants and identities (SPEC §2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from infomax import bounds
from infomax.registry import BOUNDS

K = 7


def _scores(k: int = K, seed: int = 0, scale: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(k, k, generator=g, dtype=torch.float64)


# ---- plain-Python references: loops over i, j with math.exp / math.log -----------------------


def ref_infonce(s: list[list[float]]) -> float:
    k = len(s)
    return sum(
        s[i][i] - math.log(sum(math.exp(s[i][j]) for j in range(k))) for i in range(k)
    ) / k + math.log(k)


def ref_offdiag_mean_exp(s: list[list[float]], shift: list[float] | None = None) -> float:
    k = len(s)
    total = 0.0
    for i in range(k):
        for j in range(k):
            if i != j:
                total += math.exp(s[i][j] - (shift[j] if shift else 0.0))
    return total / (k * (k - 1))


def ref_diag_mean(s: list[list[float]]) -> float:
    return sum(s[i][i] for i in range(len(s))) / len(s)


def ref_nwj(s):
    return ref_diag_mean(s) - math.exp(-1) * ref_offdiag_mean_exp(s)


def ref_dv(s):
    return ref_diag_mean(s) - math.log(ref_offdiag_mean_exp(s))


def ref_js_estimate(s):
    return 1 + ref_diag_mean(s) - ref_offdiag_mean_exp(s)


def ref_js_loss(s):
    k = len(s)
    sp = lambda t: math.log1p(math.exp(t))  # noqa: E731
    pos = sum(sp(-s[i][i]) for i in range(k)) / k
    neg = sum(sp(s[i][j]) for i in range(k) for j in range(k) if i != j) / (k * (k - 1))
    return pos + neg


def ref_smile(s, tau):
    k = len(s)
    clipped = [
        min(max(math.exp(s[i][j]), math.exp(-tau)), math.exp(tau))
        for i in range(k)
        for j in range(k)
        if i != j
    ]
    return ref_diag_mean(s) - math.log(sum(clipped) / len(clipped))


def ref_tuba(s, b):
    return 1 + ref_diag_mean(s) - ref_offdiag_mean_exp(s, b) - sum(b) / len(b)


def ref_flo(s, u):
    k = len(s)
    total = 0.0
    for i in range(k):
        m = sum(math.exp(s[i][j] - s[i][i]) for j in range(k) if j != i) / (k - 1)
        total += -u[i] - math.exp(-u[i]) * m
    return 1 + total / k


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bounds_match_double_loop_references(seed: int) -> None:
    s = _scores(seed=seed)
    sl = s.tolist()
    u = torch.randn(K, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 10))
    b = torch.randn(K, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 20))
    cases = {
        "infonce": (bounds.infonce(s), ref_infonce(sl)),
        "nwj": (bounds.nwj(s), ref_nwj(sl)),
        "dv": (bounds.dv(s), ref_dv(sl)),
        "js_estimate": (bounds.js_estimate(s), ref_js_estimate(sl)),
        "js_loss": (bounds.js_loss(s), ref_js_loss(sl)),
        "smile5": (bounds.smile(s, 5.0), ref_smile(sl, 5.0)),
        "smile1": (bounds.smile(s, 1.0), ref_smile(sl, 1.0)),
        "tuba": (bounds.tuba(s, b), ref_tuba(sl, b.tolist())),
        "flo": (bounds.flo(s, u), ref_flo(sl, u.tolist())),
        "mine_value": (bounds.mine(s, torch.tensor(0.7, dtype=torch.float64)), ref_dv(sl)),
    }
    for name, (got, want) in cases.items():
        assert float(got) == pytest.approx(want, rel=1e-10, abs=1e-10), name


def test_registry_estimates_match_functions() -> None:
    s = _scores()
    assert float(BOUNDS.get("infonce").estimate(s)) == pytest.approx(ref_infonce(s.tolist()))
    assert float(BOUNDS.get("infonce").loss(s)) == pytest.approx(-ref_infonce(s.tolist()))
    assert float(BOUNDS.get("js").loss(s)) == pytest.approx(ref_js_loss(s.tolist()))
    assert BOUNDS.get("js").reports_with_different_function
    assert BOUNDS.get("smile").reports_with_different_function
    assert not BOUNDS.get("flo").reports_with_different_function


def test_nwj_is_tuba_with_unit_baseline() -> None:
    s = _scores()
    ones = torch.ones(K, dtype=torch.float64)
    assert torch.allclose(bounds.tuba(s, ones), bounds.nwj(s))


def test_gradcheck_every_bound() -> None:
    s = _scores(k=5, scale=1.0).requires_grad_(True)
    u = torch.randn(5, dtype=torch.float64).requires_grad_(True)
    b = torch.randn(5, dtype=torch.float64).requires_grad_(True)
    fns = [
        lambda s: bounds.infonce(s),
        lambda s: bounds.nwj(s),
        lambda s: bounds.dv(s),
        lambda s: bounds.js_estimate(s),
        lambda s: bounds.js_loss(s),
        lambda s: bounds.smile(s, 0.8),  # clip active for some entries
    ]
    for fn in fns:
        assert torch.autograd.gradcheck(fn, (s,))
    assert torch.autograd.gradcheck(lambda s, u: bounds.flo(s, u), (s, u))
    assert torch.autograd.gradcheck(lambda s, b: bounds.tuba(s, b), (s, b))
    # MINE's gradient is, by design, not the derivative of its value (DV): it is checked
    # against the surrogate  mean S_ii - m / ema  in test_mine_gradient_uses_the_running_mean.


def test_mine_gradient_uses_the_running_mean() -> None:
    s = _scores(k=6).requires_grad_(True)
    ema = torch.tensor(2.5, dtype=torch.float64)
    (g_mine,) = torch.autograd.grad(bounds.mine(s, ema), s)
    m = torch.exp(bounds.log_mean_exp_offdiag(s))
    surrogate = s.diagonal().mean() - m / ema
    (g_ref,) = torch.autograd.grad(surrogate, s)
    assert torch.allclose(g_mine, g_ref)
    # with ema equal to the batch mean the gradient is exactly DV's
    (g_dv,) = torch.autograd.grad(bounds.dv(s), s)
    (g_same,) = torch.autograd.grad(bounds.mine(s, m.detach()), s)
    assert torch.allclose(g_dv, g_same)


def test_mine_loss_ema_update() -> None:
    loss = bounds.MINELoss(rate=0.1)
    s1, s2 = _scores(seed=1), _scores(seed=2)
    loss(s1)
    m1 = math.exp(float(bounds.log_mean_exp_offdiag(s1)))
    assert float(loss.ema) == pytest.approx(m1)
    loss(s2)
    m2 = math.exp(float(bounds.log_mean_exp_offdiag(s2)))
    assert float(loss.ema) == pytest.approx(0.9 * m1 + 0.1 * m2)
    loss.eval()
    loss(s1)
    assert float(loss.ema) == pytest.approx(0.9 * m1 + 0.1 * m2)  # no update in eval
    with pytest.raises(ValueError):
        bounds.MINELoss(rate=0.0)


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(min_value=2, max_value=40),
    scale=st.floats(min_value=0.0, max_value=50.0),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_infonce_never_exceeds_log_k(k: int, scale: float, seed: int) -> None:
    s = scale * torch.randn(
        k, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    # put a huge positive on the diagonal too: the cap must still hold
    s = s + torch.eye(k, dtype=torch.float64) * scale * 10
    assert float(bounds.infonce(s)) <= math.log(k) + 1e-12


def test_flo_at_optimal_u_equals_infonce_without_positive() -> None:
    s = _scores(k=9, seed=3)
    sl = s.tolist()
    u_star = bounds.flo_optimal_u(s)
    # closed form (SPEC §2): mean_i [S_ii - log mean_{j≠i} exp(S_ij)]
    k = len(sl)
    closed = (
        sum(
            sl[i][i] - math.log(sum(math.exp(sl[i][j]) for j in range(k) if j != i) / (k - 1))
            for i in range(k)
        )
        / k
    )
    assert float(bounds.flo(s, u_star)) == pytest.approx(closed, rel=1e-12)
    # and u* is the maximiser: any perturbation lowers the bound
    for delta in (-0.3, 0.1, 0.5):
        assert float(bounds.flo(s, u_star + delta)) < float(bounds.flo(s, u_star))


def test_fenchel_legendre_identity() -> None:
    t = torch.tensor([0.01, 0.5, 1.0, 7.0, 300.0], dtype=torch.float64)
    u = torch.linspace(-10, 10, 200001, dtype=torch.float64).unsqueeze(1)
    best = (1 - u - torch.exp(-u) * t).max(dim=0).values
    assert torch.allclose(best, -torch.log(t), atol=1e-6)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="square"):
        bounds.infonce(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="K >= 2"):
        bounds.nwj(torch.zeros(1, 1))
    with pytest.raises(ValueError, match="u must have shape"):
        bounds.flo(torch.zeros(3, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="clip"):
        bounds.smile(torch.zeros(3, 3), clip=0.0)
    with pytest.raises(ValueError, match="valid names: dv, flo, infonce"):
        BOUNDS.get("nce")


# ---- ground truth: the true log density ratio of a Gaussian task as critic -------------------


def _true_log_ratio(x: np.ndarray, y: np.ndarray, rho: float) -> np.ndarray:
    """Pairwise log p(x_i, y_j)/(p(x_i)p(y_j)) for unit-variance pairs with correlation rho."""
    c = 1 - rho**2
    xx = (x**2).sum(1)[:, None]
    yy = (y**2).sum(1)[None, :]
    xy = x @ y.T
    d = x.shape[1]
    return -0.5 * d * np.log(c) - (rho**2 * (xx + yy) - 2 * rho * xy) / (2 * c)


@pytest.mark.parametrize("name", ["nwj", "dv", "infonce"])
def test_true_critic_recovers_gaussian_mi(name: str) -> None:
    dim, mi, k, batches = 2, 1.0, 256, 200
    rho = math.sqrt(1 - math.exp(-2 * mi / dim))
    rng = np.random.default_rng(7)
    values = []
    for _ in range(batches):
        x = rng.normal(size=(k, dim))
        y = rho * x + math.sqrt(1 - rho**2) * rng.normal(size=(k, dim))
        s = torch.from_numpy(_true_log_ratio(x, y, rho))
        if name == "nwj":
            s = s + 1.0  # NWJ's optimal critic is 1 + log ratio
        values.append(float(BOUNDS.get(name).estimate(s)))
    values_arr = np.asarray(values)
    mean, se = values_arr.mean(), values_arr.std(ddof=1) / math.sqrt(batches)
    target = min(mi, math.log(k))
    assert abs(mean - target) < 3 * se + (0.01 if name == "infonce" else 0.0), (mean, se)
