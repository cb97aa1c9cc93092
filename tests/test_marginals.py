"""Per-dimension marginal transforms (infomax.marginals): normal scores, standardize, none."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

from infomax.marginals import (
    MARGINALS,
    Identity,
    MarginalTransform,
    NormalScores,
    Standardize,
    marginal_transform,
)

F64 = torch.float64


def _randn(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _increasing_maps(x: torch.Tensor) -> torch.Tensor:
    """Strictly increasing per-column maps: cubic, exp, arcsinh."""
    return torch.stack([x[:, 0] ** 3, torch.exp(x[:, 1]), torch.asinh(5 * x[:, 2])], dim=1)


def _cauchy(n: int, d: int, seed: int) -> torch.Tensor:
    u = torch.rand(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return torch.tan(math.pi * (u - 0.5))


def test_registry_names_and_builder() -> None:
    assert MARGINALS.names() == ["none", "normal-scores", "standardize"]
    assert isinstance(marginal_transform("normal-scores"), NormalScores)
    assert isinstance(marginal_transform("Standardize"), Standardize)
    assert isinstance(marginal_transform("none"), Identity)
    with pytest.raises(ValueError, match="normal-scores"):
        marginal_transform("rank-gauss")


def test_normal_scores_are_standard_normal_on_training_data() -> None:
    raw = torch.exp(_randn(2000, 1, seed=0) * 2 + 3)[:, 0]  # lognormal: far from normal
    assert scipy.stats.kstest(((raw - raw.mean()) / raw.std()).numpy(), "norm").pvalue < 0.01
    z = NormalScores().fit_transform(raw[:, None])[:, 0]
    assert abs(float(z.mean())) < 1e-3
    assert abs(float(z.std()) - 1) < 0.02
    assert scipy.stats.kstest(z.numpy(), "norm").pvalue > 0.01


def test_invariance_under_increasing_maps() -> None:
    x = _randn(5000, 3, seed=1)
    a, b = NormalScores().fit(x), NormalScores().fit(_increasing_maps(x))
    torch.testing.assert_close(a.transform(x), b.transform(_increasing_maps(x)), rtol=0, atol=1e-12)
    new = _randn(4000, 3, seed=2)
    new = new[((new > x.min(0).values) & (new < x.max(0).values)).all(dim=1)]
    diff = (a.transform(new) - b.transform(_increasing_maps(new))).abs()
    assert float(diff.max()) < 0.05  # only the interpolation between knots differs
    assert float(diff.mean()) < 1e-3
    # standardize is not invariant, so the comparison can fail
    sa, sb = Standardize().fit(x), Standardize().fit(_increasing_maps(x))
    assert float((sa.transform(x) - sb.transform(_increasing_maps(x))).abs().max()) > 0.5


def test_monotone_and_finite_far_outside_the_training_range() -> None:
    x = _randn(500, 2, seed=3)
    ns = NormalScores().fit(x)
    far = torch.tensor([-1e300, -1e30, -1e6, -50.0, -5.0, 5.0, 50.0, 1e6, 1e30], dtype=F64)
    new = torch.cat([_randn(300, 1, seed=4)[:, 0] * 2, far, x[:, 0], x[:, 1]]).unique()  # sorted
    z = ns.transform(torch.stack([new, new], dim=1))
    assert torch.isfinite(z).all()
    assert (z[1:] > z[:-1]).all()
    z32 = ns.transform(torch.stack([far[1:], far[1:]], dim=1).float())  # 1e30 fits float32
    assert z32.dtype == torch.float32 and torch.isfinite(z32).all()


def test_tails_are_continuous_with_the_robust_edge_slope() -> None:
    x = _randn(1000, 1, seed=5)
    ns = NormalScores().fit(x)
    knots, scores = ns.knots[0], ns.scores[0]
    m = math.ceil(0.05 * knots.numel())
    slope_hi = (scores[-1] - scores[-m]) / (knots[-1] - knots[-m])
    slope_lo = (scores[m - 1] - scores[0]) / (knots[m - 1] - knots[0])
    eps = 1e-6
    probe = torch.stack([knots[0], knots[0] - eps, knots[-1], knots[-1] + eps])[:, None]
    z = ns.transform(probe)[:, 0]
    assert z[0] == scores[0] and z[2] == scores[-1]
    torch.testing.assert_close((z[0] - z[1]) / eps, slope_lo, rtol=1e-4, atol=0)
    torch.testing.assert_close((z[3] - z[2]) / eps, slope_hi, rtol=1e-4, atol=0)


def test_mid_rank_scores_by_hand_and_ties_share_a_score() -> None:
    ns = NormalScores().fit(torch.tensor([[1.0], [2.0], [2.0], [3.0]], dtype=F64))
    expected = torch.special.ndtri(torch.tensor([1 / 8, 1 / 2, 7 / 8], dtype=F64))
    torch.testing.assert_close(ns.knots[0], torch.tensor([1.0, 2.0, 3.0], dtype=F64))
    torch.testing.assert_close(ns.scores[0], expected, rtol=0, atol=1e-15)
    new = torch.tensor([[2.0], [3.0], [2.0], [1.0], [2.5]], dtype=F64)
    z = ns.transform(new)[:, 0]
    assert z[0] == z[2] == expected[1] and z[1] == expected[2] and z[3] == expected[0]
    torch.testing.assert_close(z[4], (expected[1] + expected[2]) / 2)  # linear between knots
    # repeated values in a larger training set get one identical score
    x = torch.cat([_randn(200, 1, seed=6), torch.full((30, 1), 0.25, dtype=F64)])
    ns = NormalScores().fit(x)
    zt = ns.transform(x)[:, 0]
    assert (zt[200:] == zt[200]).all()
    # every training value maps bitwise to its own knot's score
    assert torch.equal(zt, ns.scores[0][torch.searchsorted(ns.knots[0], x[:, 0])])


def test_discrete_columns_warn_and_continuous_ones_do_not() -> None:
    n = 1000
    cont = _randn(n, 3, seed=7)
    for cls in (NormalScores, Standardize):
        assert cls().fit(cont).warnings == []
        discrete = cont.clone()
        discrete[:, 1] = torch.arange(n, dtype=F64) % 3  # values in {0, 1, 2}
        t = cls().fit(discrete)
        assert len(t.warnings) == 1 and "dimensions [1]" in t.warnings[0]
        # continuous values but one value in 20% of rows
        spiked = cont.clone()
        spiked[: n // 5, 2] = 0.0
        t.fit(spiked)  # refitting resets the warnings
        assert len(t.warnings) == 1 and "dimensions [2]" in t.warnings[0]


@pytest.mark.parametrize("name", ["standardize", "normal-scores"])
def test_constant_column_is_an_error(name: str) -> None:
    x = _randn(100, 3, seed=8)
    x[:, 2] = 4.0
    with pytest.raises(ValueError, match=r"dimensions \[2\] are constant"):
        marginal_transform(name).fit(x)


@pytest.mark.parametrize("name", ["standardize", "normal-scores", "none"])
def test_input_checks(name: str) -> None:
    t = marginal_transform(name)
    with pytest.raises(ValueError, match="not fitted"):
        t.transform(_randn(5, 2, seed=9))
    bad = _randn(50, 2, seed=9)
    bad[3, 1] = math.nan
    with pytest.raises(ValueError, match="non-finite"):
        t.fit(bad)
    bad[3, 1] = math.inf
    with pytest.raises(ValueError, match="non-finite"):
        t.fit(bad)
    t.fit(_randn(50, 2, seed=9))
    with pytest.raises(ValueError, match="2 columns"):
        t.transform(_randn(5, 3, seed=10))
    with pytest.raises(ValueError, match="2 columns"):
        t.transform(_randn(5, 2, seed=10)[:, 0])
    out = t.transform(_randn(5, 2, seed=10).float())
    assert out.dtype == torch.float32 and out.shape == (5, 2)


@pytest.mark.parametrize("name", ["standardize", "normal-scores", "none"])
def test_state_round_trip(name: str, tmp_path) -> None:
    x = torch.cat([_randn(300, 2, seed=11), torch.arange(300, dtype=F64)[:, None] % 4], dim=1)
    t = marginal_transform(name).fit(x)
    torch.save(t.state(), tmp_path / "marginal.pt")
    back = MarginalTransform.from_state(torch.load(tmp_path / "marginal.pt", weights_only=True))
    assert type(back) is type(t) and back.dim == 3 and back.warnings == t.warnings
    new = torch.cat([_randn(100, 3, seed=12) * 10, torch.tensor([[1e30, -1e30, 2.0]])])
    assert torch.equal(back.transform(new), t.transform(new))
    with pytest.raises(ValueError, match="not a"):
        (Identity if name != "none" else Standardize).from_state(t.state())


def test_standardize_matches_by_hand() -> None:
    x = _randn(400, 3, seed=13) * torch.tensor([1.0, 5.0, 0.1], dtype=F64) + 3
    new = _randn(50, 3, seed=14)
    s = Standardize().fit(x)
    mean, std = x.mean(dim=0), x.std(dim=0)
    torch.testing.assert_close(s.transform(new), (new - mean) / std, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(s.transform(x).std(dim=0), torch.ones(3, dtype=F64))


def test_identity_returns_input() -> None:
    x = _randn(20, 2, seed=15)
    assert Identity().fit(x).transform(x) is x


def test_cauchy_data_get_bounded_scores() -> None:
    x = _cauchy(2000, 2, seed=16)
    assert float(x.abs().max()) > 100  # the check is about real outliers
    ns = NormalScores().fit(x)
    assert float(ns.transform(x).abs().max()) < 6
    new = torch.cat([_cauchy(5000, 2, seed=17), torch.tensor([[1e30, -1e30]], dtype=F64)])
    z = ns.transform(new)
    assert torch.isfinite(z).all()
    # the log-linear tail keeps even fresh Cauchy outliers moderate (a linear tail gives ~1e3)
    assert float(z[:-1].abs().max()) < 30
    lo, hi = ns.transform(torch.tensor([[-1e6, 1e6], [1e6, -1e6]], dtype=F64)).aminmax()
    assert -30 < float(lo) and float(hi) < 30
