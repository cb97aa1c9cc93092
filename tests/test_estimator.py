"""MIEstimator and the three-way protocol: which split each number comes from, CI coverage,
save / load, pointwise scores, presets, marginal transforms and bad input."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch

from infomax import MIEstimator, estimate_mi
from infomax.estimate import PRESETS, EstimateConfig, split_sizes
from infomax.tasks import CorrelatedGaussian, task_from_string

TASK = CorrelatedGaussian(dim=2, mi=1.0)
X, Y = TASK.sample(4000, seed=0)
FAST = dict(steps=300, hidden=64, eval_every=50)


def _parts(n: int, cfg: EstimateConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The train / validation / test indices ``fit`` uses for ``n`` samples (seeded)."""
    n_train, n_val, _ = split_sizes(n, cfg)
    perm = np.random.default_rng(cfg.seed).permutation(n)
    return perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :]


@pytest.fixture(scope="module")
def fitted() -> tuple[MIEstimator, object]:
    torch.manual_seed(0)
    est = MIEstimator(bound="nwj", **FAST)
    return est, est.fit(X, Y, progress=False)


def test_reported_numbers_come_from_the_test_split_and_selection_from_validation(fitted) -> None:
    est, result = fitted
    train, val, test = _parts(len(X), est.config)
    assert (result.n_train, result.n_val, result.n_test) == (len(train), len(val), len(test))
    assert len(set(train) | set(val) | set(test)) == len(X)  # disjoint, covering
    on_test = est.estimate(X[test], Y[test])
    assert result.mi == pytest.approx(on_test.mi, abs=1e-6)
    assert result.stderr == pytest.approx(on_test.stderr, abs=1e-6)
    assert result.ci == pytest.approx(on_test.ci, abs=1e-6)
    on_val = est.estimate(X[val], Y[val])
    assert result.val_mi == pytest.approx(on_val.mi, abs=1e-5)  # the selected state's value
    best = max(result.history, key=lambda h: h["val"])
    assert result.best_step == best["step"] and result.val_mi == pytest.approx(best["val"])
    assert result.splits["mi"] == "test" and result.splits["val_mi"] == "validation"


def test_ci_from_the_test_split_covers_the_critics_large_sample_value() -> None:
    """Deliverable: for a fixed fitted critic (2-D Gaussian, 1 nat), the 95% CI of a test split
    covers the critic's value on a 200 000-pair fresh sample in >= 90 of 100 test draws."""
    est = MIEstimator(bound="nwj", **FAST)
    result = est.fit(X, Y, progress=False)
    truth = est.estimate(*TASK.sample(200_000, seed=1)).mi
    covered = 0
    for draw in range(100):
        ci = est.estimate(*TASK.sample(result.n_test, seed=100 + draw)).ci
        covered += ci[0] <= truth <= ci[1]
    assert covered >= 90, covered
    assert covered < 100 or result.n_test > 0  # the interval is not trivially wide:
    assert result.ci[1] - result.ci[0] < 0.5


def test_estimate_on_fresh_data_agrees_with_the_test_split(fitted) -> None:
    est, result = fitted
    fresh = est.estimate(*TASK.sample(20000, seed=7))
    assert abs(fresh.mi - result.mi) < 3 * math.hypot(fresh.stderr, result.stderr) + 0.02
    assert abs(fresh.mi - TASK.mutual_information) < 0.2


def test_save_and_load_give_the_same_estimator(fitted, tmp_path) -> None:
    est, _ = fitted
    path = est.save(tmp_path / "est.pt")
    again = MIEstimator.load(path)
    xs, ys = TASK.sample(1000, seed=3)
    assert again.estimate(xs, ys).mi == est.estimate(xs, ys).mi
    np.testing.assert_array_equal(again.pointwise(xs, ys), est.pointwise(xs, ys))
    assert again.config == dataclasses.replace(est.config, device="cpu")
    torch.load(path, weights_only=True)  # loads without unpickling code


def test_load_refuses_foreign_files(tmp_path) -> None:
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a file written by MIEstimator.save"):
        MIEstimator.load(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no saved estimator"):
        MIEstimator.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00junk")
    with pytest.raises(ValueError, match="cannot read estimator"):
        MIEstimator.load(tmp_path / "junk.pt")


def test_unfitted_estimator_says_so() -> None:
    with pytest.raises(ValueError, match="not fitted"):
        MIEstimator().estimate(X, Y)


@pytest.mark.parametrize("bound", ["js", "nwj", "flo", "dv", "infonce", "tuba"])
def test_pointwise_tracks_the_true_log_density_ratio(bound: str) -> None:
    """The per-pair estimate correlates with the exact ``log r(x_i, y_i)`` and its mean is
    close to the MI (2-D Gaussian, 1 nat)."""
    est = MIEstimator(bound=bound, steps=400, hidden=64, eval_every=100)
    est.fit(X, Y, progress=False)
    xs, ys = TASK.sample(1024, seed=5)
    pmi = est.pointwise(xs, ys)
    true = np.diag(TASK.log_density_ratio(xs, ys))
    assert pmi.shape == (1024,) and np.all(np.isfinite(pmi))
    assert np.corrcoef(pmi, true)[0, 1] > 0.9, bound
    assert abs(pmi.mean() - TASK.mutual_information) < 0.3, (bound, pmi.mean())


def test_normal_scores_make_the_estimate_invariant_to_monotone_maps() -> None:
    """MI is invariant under per-dimension monotone maps; with rank-based normal scores the
    critic trains on the same numbers (the training split's ranks), so the curve is the same
    and the test estimate differs only by the interpolation of held-out points."""
    kw = dict(bound="infonce", marginals="normal-scores", steps=100, hidden=32, progress=False)
    a = estimate_mi(X, Y, **kw)
    b = estimate_mi(X**3, np.sinh(Y), **kw)
    assert [h["train"] for h in a.history] == pytest.approx(
        [h["train"] for h in b.history], abs=1e-4
    )
    assert a.mi == pytest.approx(b.mi, abs=0.03)
    c = estimate_mi(X**3, np.sinh(Y), **{**kw, "marginals": "standardize"})
    assert abs(c.mi - a.mi) > abs(b.mi - a.mi)  # standardising alone does not undo the maps


def test_heavy_tails_every_bound_is_finite_with_normal_scores() -> None:
    """2-D Student-t with one degree of freedom (Cauchy tails; MI 0.43 nats): every bound
    gives a finite, plausible estimate on the rank-transformed marginals."""
    task = task_from_string("student-t:dim_x=2,dim_y=2,dof=1")
    x, y = task.sample(4000, seed=0)
    for bound in ("nwj", "dv", "js", "flo", "smile", "tuba"):
        est = estimate_mi(
            x, y, bound=bound, marginals="normal-scores", steps=300, hidden=64, progress=False
        )
        assert math.isfinite(est.mi) and -0.1 < est.mi < 0.8, (bound, est.mi)


# --- presets and options -------------------------------------------------------------------------


def test_preset_values_apply_and_options_override_them() -> None:
    name = PRESETS.names()[0]
    preset = PRESETS.get(name)
    cfg = MIEstimator(preset=name).config
    assert cfg.preset == name and all(getattr(cfg, k) == v for k, v in preset.items())
    cfg = MIEstimator(preset=name, steps=17).config
    assert cfg.steps == 17 and cfg.preset == name
    with pytest.raises(ValueError, match="valid names: high-mi"):
        MIEstimator(preset="fast-and-wrong")


def test_config_with_conflicting_options_is_one_clear_error() -> None:
    cfg = EstimateConfig(bound="nwj", steps=50)
    with pytest.raises(ValueError, match=r"conflicts with keyword option\(s\) bound='js' vs 'nwj'"):
        estimate_mi(X, Y, bound="js", config=cfg, progress=False)
    with pytest.raises(ValueError, match="conflicts with config="):
        MIEstimator(cfg, preset="high-mi")
    assert MIEstimator(cfg, bound="nwj").config == cfg  # agreeing options are fine


# --- bad input ----------------------------------------------------------------------------------


def test_too_few_samples_for_three_splits() -> None:
    with pytest.raises(ValueError, match=r"too few .* one batch each for validation and test"):
        estimate_mi(X[:500], Y[:500], batch_size=128, progress=False)


def test_constant_column_is_one_error_naming_the_side() -> None:
    x = np.c_[X[:, :1], np.ones(len(X))]
    with pytest.raises(ValueError, match=r"x: dimensions \[1\] are constant"):
        estimate_mi(x, Y, marginals="normal-scores", progress=False)


def test_discrete_columns_give_a_warning() -> None:
    x = np.c_[X[:, :1], np.round(X[:, 1:])]  # a column with a handful of values
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = estimate_mi(x, Y, bound="infonce", steps=20, hidden=16, progress=False)
    assert any("x: dimensions [1]" in n and "discrete" in n for n in est.warnings)
    assert any("discrete" in str(w.message) for w in caught)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"marginals": "rank"}, "valid names: none, normal-scores, standardize"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "must leave a training split"),
        ({"ema": 1.0}, "ema must be a decay"),
        ({"patience": 0}, "patience"),
        ({"weight_decay": -1.0}, "weight_decay"),
    ],
)
def test_bad_options(options, match) -> None:
    with pytest.raises(ValueError, match=match):
        MIEstimator(**options)


# --- evaluation choices made on validation -------------------------------------------------------


def test_select_evaluation_picks_the_best_capped_and_calibrated_critic() -> None:
    """By hand on one fitted critic: the scores are clamped at the cap, the argmax over the
    candidate quantiles of the validation bound of ``min(S, cap) + shift``, with ``shift`` the
    constant that self-normalises ``exp`` over the validation negatives; the calibrated JS
    estimate then equals the pooled DV value."""
    from infomax import bounds
    from infomax.estimate import CAP_QUANTILES, select_evaluation

    est = MIEstimator(bound="js", steps=100, hidden=32)
    est.fit(X, Y, progress=False)
    obj = est.objective
    xv, yv = (torch.as_tensor(a[:1024], dtype=torch.float32) for a in TASK.sample(1024, seed=9))
    k = 256
    choice = select_evaluation(obj, xv, yv, k, calibrate=True)
    with torch.no_grad():
        pos = obj.positive_scores(xv, yv).double()
        caps = torch.quantile(pos, torch.tensor(CAP_QUANTILES).double()).tolist()
        scores = [obj.critic(xv[i : i + k], yv[i : i + k]).double() for i in range(0, 1024, k)]
    assert math.isinf(choice.extra_floor)  # JS has no extra network
    low = scores[0].min()  # the low negative scores are left alone
    assert float(obj._evaluated(scores[0], {}, choice.cap).min()) == pytest.approx(float(low))
    best = -math.inf
    for c in caps:
        capped = [s.clamp(max=c) for s in scores]
        lme = torch.stack([bounds.log_mean_exp_offdiag(s) for s in capped])
        c_shift = float(math.log(len(lme)) - torch.logsumexp(lme, 0))
        v = float(torch.stack([bounds.js_estimate(s + c_shift) for s in capped]).mean())
        dv = float(torch.stack([s.diagonal().mean() for s in capped]).mean()) + c_shift
        assert v == pytest.approx(dv, abs=1e-4)  # calibrated JS estimate == pooled DV value
        if v > best:
            best, best_cap, best_shift = v, c, c_shift
    assert choice.value == pytest.approx(best, abs=1e-4)
    assert choice.cap == pytest.approx(best_cap)
    assert choice.shift == pytest.approx(best_shift, abs=1e-4)


def test_flo_and_tuba_extras_are_clamped_to_their_validation_range() -> None:
    for bound in ("flo", "tuba"):
        est = MIEstimator(bound=bound, steps=60, hidden=32)
        est.fit(X, Y, progress=False)
        obj = est.objective
        lo, hi = float(obj.extra_floor), float(obj.extra_cap)
        assert math.isfinite(lo) and math.isfinite(hi) and lo < hi
        if bound == "flo":  # no score floor: the lowest scores are evaluated as they are
            xb, yb = (torch.as_tensor(a[:64], dtype=torch.float32) for a in (X, Y))
            with torch.no_grad():
                s = obj.critic(xb, yb)
                ev = obj._evaluated(s, {}, float(obj.score_cap), 0.0)
            assert float(ev.min()) == float(s.min())


def test_exact_normalizer_bound_is_the_truth_for_the_exact_critic_and_below_otherwise(
    fitted,
) -> None:
    """``E_p[T] − log E_p[exp(T − log r)]``: a lower bound on the MI for any critic, and the
    MI itself (up to Monte Carlo error) for ``T = log r``."""
    est, _ = fitted
    value = est.exact_normalizer_bound(TASK, n=50_000, seed=11)
    assert value <= TASK.mutual_information + 0.02
    assert value > TASK.mutual_information - 0.3  # a trained critic is close
    x, y = TASK.sample(50_000, seed=12)
    t = np.diag(TASK.log_density_ratio(x[:2000], y[:2000]))  # exact critic: w = 0
    assert t.mean() - np.log(np.mean(np.exp(t - t))) == pytest.approx(1.0, abs=0.1)


def test_bench_fresh_scores_each_fitted_critic_on_new_data(tmp_path) -> None:
    from infomax.experiments.mi_benchmark import MIBenchmarkConfig, run

    cfg = MIBenchmarkConfig(
        tasks="gaussian:dim=2,mi=1",
        bounds=("nwj",),
        seeds=(0,),
        n_samples=3000,
        fresh=True,
        estimate=EstimateConfig(steps=100, hidden=32),
        progress=False,
    )
    result = run(cfg)
    (row,) = result.rows
    assert abs(row["fresh"] - row["estimate"]) < 0.2
    assert 0.3 < row["exact_normalizer"] <= 1.02  # a lower bound on the truth (1 nat)
    (summary,) = result.summary
    assert summary["fresh_minus_test"] == pytest.approx(row["fresh"] - row["estimate"])


def test_rank_settings_puts_never_failing_settings_first_by_mean_absolute_error() -> None:
    from infomax.experiments.mi_benchmark import rank_settings

    def row(bound: str, est: float, marginals: str = "normal-scores") -> dict:
        return {
            "task": "t",
            "true_mi": 1.0,
            "bound": bound,
            "marginals": marginals,
            "seed": 0,
            "estimate": est,
        }

    rows = [
        row("a", 0.9),
        row("a", 1.5),
        row("b", 1.0),
        row("b", math.nan),
        row("c", 0.8),
        row("c", 0.9),
        row("a", 5.0, "standardize"),
    ]
    ranked = rank_settings(rows)
    assert [(r["bound"], r["marginals"]) for r in ranked] == [
        ("c", "normal-scores"),
        ("a", "normal-scores"),
        ("a", "standardize"),
        ("b", "normal-scores"),
    ]
    assert ranked[0]["mae"] == pytest.approx(0.15) and ranked[1]["mae"] == pytest.approx(0.3)
    assert ranked[-1]["failed"] == 1


def test_tuba_cap_bounds_the_exponent_s_minus_b() -> None:
    """TUBA's exponent is ``S_ij − b(y_j)``: its cap is applied there, i.e. the evaluated
    critic is ``b(y) + min(S − b(y), cap)`` — checked entry by entry."""
    est = MIEstimator(bound="tuba", steps=40, hidden=16)
    est.fit(X, Y, progress=False)
    obj = est.objective
    xb, yb = (torch.as_tensor(a[:64], dtype=torch.float32) for a in (X, Y))
    with torch.no_grad():
        s, b = obj.critic(xb, yb), obj._extra(xb, yb)["baseline"]
        cap = float((s.diagonal() - b).median())
        from infomax.reductions import PairScores

        got = obj._capped(PairScores(s), {"baseline": b}, cap).scores
    torch.testing.assert_close(got, b[None, :] + (s - b[None, :]).clamp(max=cap))
