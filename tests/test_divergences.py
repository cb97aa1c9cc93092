"""f-divergences of SPEC §3: convexity, f(1) = 0, derivatives vs autograd, the f-MICL objective."""

from __future__ import annotations

import math

import pytest
import torch

from infomax.bounds import js_estimate
from infomax.divergences import DIVERGENCES, fmicl, fmicl_terms, get_divergence, tsallis

ALL = [get_divergence(n) for n in DIVERGENCES.names()] + [tsallis(0.5), tsallis(3.0)]
IDS = [d.name for d in ALL]


@pytest.mark.parametrize("div", ALL, ids=IDS)
def test_f_is_convex_and_vanishes_at_one(div):
    u = torch.linspace(0.05, 8.0, 400, dtype=torch.float64)
    f = div.f(u)
    second = f[2:] - 2 * f[1:-1] + f[:-2]
    assert (second >= -1e-12).all()
    assert abs(float(div.f(torch.tensor(1.0, dtype=torch.float64)))) < 1e-12


@pytest.mark.parametrize("div", ALL, ids=IDS)
def test_derivatives_match_autograd(div):
    s = torch.linspace(-4.0, 3.0, 57, dtype=torch.float64)
    u = s.exp().requires_grad_(True)
    div.f(u).sum().backward()
    fprime = u.grad
    torch.testing.assert_close(div.f_prime(u.detach()), fprime, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(div.positive(s), fprime, rtol=1e-9, atol=1e-9)
    r = u.detach()
    torch.testing.assert_close(div.negative(s), r * fprime - div.f(r), rtol=1e-9, atol=1e-9)


def test_kl_objective_equals_js_estimate():
    torch.manual_seed(0)
    scores = torch.randn(9, 9, dtype=torch.float64)
    torch.testing.assert_close(fmicl(scores, "kl"), js_estimate(scores))


@pytest.mark.parametrize("name", ["kl", "js", "pearson", "sqhellinger", "tsallis", "vlc"])
@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_fmicl_matches_double_loop(name, alpha):
    torch.manual_seed(1)
    k = 6
    scores = torch.randn(k, k, dtype=torch.float64)
    div = get_divergence(name)
    total = 0.0
    for i in range(k):
        pos = float(div.f_prime(scores[i, i].exp()))
        neg = 0.0
        for j in range(k):
            if j != i:
                r = scores[i, j].exp()
                neg += float(r * div.f_prime(r) - div.f(r))
        total += pos - alpha * neg / (k - 1)
    assert math.isclose(float(fmicl(scores, name, alpha)), total / k, rel_tol=1e-10)
    assert fmicl_terms(scores, name, alpha).shape == (k,)


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError):
        tsallis(1.0)
    with pytest.raises(ValueError, match="valid names"):
        get_divergence("nope")
    with pytest.raises(ValueError):
        fmicl(torch.zeros(3, 4), "kl")
