"""estimate_mi: accuracy against closed-form MI, determinism, result contents, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from infomax import MIEstimate, estimate_mi
from infomax.registry import BOUNDS
from infomax.tasks import CorrelatedGaussian

TASK = CorrelatedGaussian(dim=5, mi=2.0)
X, Y = TASK.sample(10000, seed=0)
FAST = dict(steps=1000, hidden=128, eval_every=100, progress=False)


@pytest.mark.parametrize("bound", BOUNDS.names())
def test_every_bound_recovers_2_nats_on_5d_gaussian(bound: str) -> None:
    torch.set_num_threads(1)
    est = estimate_mi(X, Y, bound=bound, **FAST)
    assert abs(est.mi - TASK.mutual_information) < 0.25, (bound, est.mi)
    assert est.ci[0] <= est.mi <= est.ci[1]
    assert est.stderr > 0


def test_result_contents_and_json_roundtrip() -> None:
    est = estimate_mi(
        X[:2000],
        Y[:2000],
        bound="infonce",
        batch_size=64,
        steps=150,
        eval_every=50,
        hidden=32,
        progress=False,
    )
    assert isinstance(est, MIEstimate)
    assert (est.n_train, est.n_val, est.n_test) == (1400, 300, 300)
    assert est.splits["mi"] == "test" and est.splits["best_step"] == "validation"
    assert [h["step"] for h in est.history] == [50, 100, 150]
    assert est.config.bound == "infonce" and est.config.batch_size == 64
    data = json.loads(est.to_json())
    assert data["mi"] == pytest.approx(est.mi)
    assert data["config"]["steps"] == 150
    assert "torch" in data["versions"]


def test_deterministic_for_a_seed() -> None:
    kw = dict(bound="flo", batch_size=32, steps=60, eval_every=20, hidden=16, progress=False)
    a = estimate_mi(X[:1000], Y[:1000], seed=3, **kw)
    b = estimate_mi(X[:1000], Y[:1000], seed=3, **kw)
    c = estimate_mi(X[:1000], Y[:1000], seed=4, **kw)
    assert a.mi == b.mi and a.history == b.history
    assert a.mi != c.mi


def test_progress_callback_and_independent_data() -> None:
    calls: list[tuple[int, float | None]] = []
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(3000, 2)), rng.normal(size=(3000, 2))
    est = estimate_mi(
        x,
        y,
        bound="infonce",
        batch_size=64,
        steps=200,
        eval_every=50,
        hidden=32,
        progress=lambda s, v: calls.append((s, v)),
    )
    assert len(calls) == 200 and calls[49][1] is not None
    assert abs(est.mi) < 0.1  # independent: MI = 0


def test_infonce_cap_warning() -> None:
    task = CorrelatedGaussian(dim=5, mi=6.0)
    x, y = task.sample(3000, seed=0)
    with pytest.warns(UserWarning, match="log K"):
        est = estimate_mi(
            x,
            y,
            bound="infonce",
            batch_size=8,
            steps=400,
            eval_every=100,
            hidden=64,
            progress=False,
        )
    assert est.mi <= math.log(8) + 1e-6
    assert est.warnings and "cap log K" in est.warnings[0]


@pytest.mark.parametrize(
    "x, y, kwargs, match",
    [
        (np.full((500, 2), np.nan), np.zeros((500, 2)), {}, "x contains 1000 NaN/Inf"),
        (
            np.zeros((500, 2)),
            np.r_[np.zeros((499, 2)), [[np.inf, 0]]],
            {},
            "y contains 1 NaN/Inf.*row 499",
        ),
        (np.zeros((500, 2)), np.zeros((400, 2)), {}, "same number of samples, got 500 and 400"),
        (np.zeros((100, 2)), np.zeros((100, 2)), {}, "too few for batch_size=128"),
        (np.zeros((500, 2, 2)), np.zeros((500, 2)), {}, r"x must have shape \[n, d\]"),
        (np.zeros((500, 2)), np.zeros((500, 2)), {"bound": "nce"}, "valid names: dv, flo"),
        (np.zeros((500, 2)), np.zeros((500, 2)), {"critic": "mlp"}, "valid names: bilinear"),
        (np.zeros((500, 2)), np.zeros((500, 2)), {"lrr": 1.0}, "unknown option"),
        (np.zeros((500, 2)), np.zeros((500, 2)), {"test_fraction": 1.5}, "test_fraction"),
        (np.array([["a", "b"]] * 500), np.zeros((500, 2)), {}, "x must be numeric"),
    ],
)
def test_bad_input_gives_one_clear_error(x, y, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        estimate_mi(x, y, progress=False, **kwargs)


def test_constant_column_is_reported() -> None:
    x = np.c_[np.random.default_rng(0).normal(size=1000), np.ones(1000)]
    with pytest.raises(ValueError, match="constant"):
        estimate_mi(x, x, batch_size=32, steps=10, progress=False)


def test_diverging_bound_is_an_error_naming_the_bound() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 1)) * 1e4
    with pytest.raises(ValueError, match="bound 'nwj' diverged"):
        estimate_mi(
            x,
            x,
            bound="nwj",
            batch_size=32,
            steps=200,
            eval_every=10,
            lr=1.0,
            marginals="none",
            hidden=16,
            progress=False,
        )


def test_early_stopping_reports_the_best_held_out_evaluation() -> None:
    """patience=1 stops at the first validation evaluation without a gain; the restored state
    is the best validation evaluation's (its value is ``val_mi``)."""
    kw = dict(bound="nwj", batch_size=32, eval_every=10, hidden=16, lr=0.05, progress=False)
    est = estimate_mi(X[:1500], Y[:1500], steps=2000, patience=1, **kw)
    vals = [h["val"] for h in est.history]
    assert est.steps < 2000 and est.steps == est.history[-1]["step"]
    assert vals[-1] <= max(vals[:-1])  # the stopping evaluation did not improve
    best = max(est.history, key=lambda h: h["val"])
    assert est.best_step == best["step"] and est.val_mi == pytest.approx(best["val"], abs=1e-6)
