"""Tiled kernels (SPEC §8) against the materialised references of bounds.py / divergences.py."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from infomax.divergences import DIVERGENCES
from infomax.kernels import (
    OBJECTIVES,
    dense_objective,
    ntxent_loss,
    objective_from_embeddings,
    simclr_fmicl,
    simclr_infonce,
    tiled_objective,
    tiled_reduce,
)

F64 = torch.float64
CRITICS = ("dot", "cosine", "gaussian")


def _inputs(k: int, d: int, dtype: torch.dtype, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    raw = {
        "a": torch.randn(k, d, generator=g, dtype=F64),
        "b": torch.randn(k, d, generator=g, dtype=F64),
        "u": torch.randn(k, generator=g, dtype=F64),
        "baseline": torch.randn(k, generator=g, dtype=F64),
    }
    return {n: t.to(dtype).requires_grad_(True) for n, t in raw.items()}


def _value_and_grads(fn, inputs, obj, **kw):  # type: ignore[no-untyped-def]
    ema = torch.tensor(0.9, dtype=inputs["a"].dtype)
    v = fn(inputs["a"], inputs["b"], obj, u=inputs["u"], baseline=inputs["baseline"], ema=ema, **kw)
    grads = torch.autograd.grad(v, list(inputs.values()), allow_unused=True)
    pairs = zip(grads, inputs.values(), strict=True)
    return v, [torch.zeros_like(t) if g is None else g for g, t in pairs]


def _assert_match(inputs, obj, tile_size, rtol=1e-9, atol=1e-10, ref_inputs=None, **kw):  # type: ignore[no-untyped-def]
    v, g = _value_and_grads(tiled_objective, inputs, obj, tile_size=tile_size, **kw)
    rv, rg = _value_and_grads(dense_objective, ref_inputs or inputs, obj, **kw)
    torch.testing.assert_close(v.to(F64), rv.to(F64), rtol=rtol, atol=atol, msg=f"{obj} value")
    for name, x, y in zip(inputs, g, rg, strict=True):
        torch.testing.assert_close(x.to(F64), y.to(F64), rtol=rtol, atol=atol, msg=f"{obj} d{name}")


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(2, 19),
    d=st.integers(1, 6),
    rows=st.integers(1, 23),
    cols=st.integers(1, 23),
    obj=st.sampled_from(OBJECTIVES),
    critic=st.sampled_from(CRITICS),
    symmetric=st.booleans(),
    divergence=st.sampled_from(sorted(DIVERGENCES.names())),
    seed=st.integers(0, 10_000),
)
def test_tiled_equals_dense_fp64(
    k: int,
    d: int,
    rows: int,
    cols: int,
    obj: str,
    critic: str,
    symmetric: bool,
    divergence: str,
    seed: int,
) -> None:
    """Random tile shapes (mostly not dividing K), every objective, critic and divergence."""
    if obj == "tuba":
        symmetric = False
    inputs = _inputs(k, d, F64, seed)
    kw = {"critic": critic, "temperature": 0.7, "sigma": 0.9, "clip": 1.5, "alpha": 0.8}
    _assert_match(inputs, obj, (rows, cols), symmetric=symmetric, divergence=divergence, **kw)


@pytest.mark.parametrize("obj", OBJECTIVES)
def test_tiled_fp32_matches_fp64_reference(obj: str) -> None:
    """fp32 tiled vs the fp64 dense reference: rtol 1e-4, atol 1e-5 (K = 300, tile 64 × 100)."""
    inputs32 = _inputs(300, 16, torch.float32, 1)
    inputs64 = {n: t.detach().to(F64).requires_grad_(True) for n, t in inputs32.items()}
    kw = {"critic": "cosine", "temperature": 0.2, "divergence": "pearson", "clip": 2.0}
    _assert_match(inputs32, obj, (64, 100), rtol=1e-4, atol=1e-5, ref_inputs=inputs64, **kw)


@pytest.mark.parametrize("divergence", sorted(DIVERGENCES.names()))
def test_fmicl_fp32_every_divergence(divergence: str) -> None:
    """fp32 tiled f-MICL vs the fp64 dense reference for every registered divergence."""
    inputs32 = _inputs(200, 16, torch.float32, 6)
    inputs64 = {n: t.detach().to(F64).requires_grad_(True) for n, t in inputs32.items()}
    kw = {"critic": "gaussian", "sigma": 0.8, "divergence": divergence, "alpha": 0.5}
    _assert_match(inputs32, "fmicl", (48, 70), rtol=1e-4, atol=1e-5, ref_inputs=inputs64, **kw)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("critic", CRITICS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_simclr_2n_form(critic: str, dtype: torch.dtype, symmetric: bool) -> None:
    """NT-Xent equals cross-entropy over the masked [2N, 2N] matrix; both tiled kernels (the
    symmetric 2-GEMM one and the general 3-GEMM one) equal the dense reference."""
    x = _inputs(9, 5, dtype, 3)
    z1, z2 = x["a"], x["b"]
    tiles = 4 if symmetric else (4, 7)
    kw = {"temperature": 0.3, "critic": critic, "sigma": 0.7}
    tiled = ntxent_loss(z1, z2, tile_size=tiles, symmetric=symmetric, **kw)
    dense = ntxent_loss(z1, z2, impl="dense", **kw)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {}
    torch.testing.assert_close(tiled, dense, **tol)
    expected = torch.autograd.grad(dense, [z1, z2])
    for gt, gd in zip(torch.autograd.grad(tiled, [z1, z2]), expected, strict=True):
        torch.testing.assert_close(gt, gd, **tol)
    if critic == "cosine":  # hand reference: cross-entropy with self masked, target i ± N
        z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1).detach()
        s = (z @ z.T / 0.3).fill_diagonal_(-math.inf)
        target = torch.cat([torch.arange(9, 18), torch.arange(9)])
        ce = torch.nn.functional.cross_entropy(s, target)
        torch.testing.assert_close(dense.detach(), ce, **tol)
        bound = simclr_infonce(z1, z2, temperature=0.3)
        torch.testing.assert_close(bound.detach(), math.log(17) - ce, **tol)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 11),
    rows=st.integers(1, 25),
    cols=st.integers(1, 25),
    critic=st.sampled_from(("cosine", "gaussian")),
    divergence=st.sampled_from(sorted(DIVERGENCES.names())),
    seed=st.integers(0, 10_000),
)
def test_simclr_fmicl_equals_the_ssl_loss(
    n: int, rows: int, cols: int, critic: str, divergence: str, seed: int
) -> None:
    """Tiled SimCLR f-MICL (random tiles over 2N embeddings) = −(the dense per-row SSL loss of
    ``infomax.ssl.losses.ntxent_loss``): value and gradients, fp64."""
    from infomax.ssl.losses import Objective
    from infomax.ssl.losses import ntxent_loss as ssl_ntxent_loss

    x = _inputs(n, 4, F64, seed)
    z1, z2 = x["a"], x["b"]
    objective = Objective(divergence, critic, 0.6, 0.7)
    ref = -ssl_ntxent_loss(z1, z2, objective)
    kw = {"temperature": 0.6} if critic == "cosine" else {"sigma": 0.6**0.5}
    got = simclr_fmicl(
        z1, z2, divergence=divergence, alpha=0.7, critic=critic, tile_size=(rows, cols), **kw
    )
    torch.testing.assert_close(got, ref)
    expected = torch.autograd.grad(ref, [z1, z2])
    for g, e in zip(torch.autograd.grad(got, [z1, z2]), expected, strict=True):
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize("temperature", [0.005, 0.05])
def test_symmetric_kernel_low_temperature_fallback(temperature: float) -> None:
    """At τ = 0.005 the fixed stabiliser underflows in fp32 and the kernel falls back to running
    maxima; either way value and gradient match the dense reference."""
    x = _inputs(40, 64, torch.float32, 9)
    z1, z2 = x["a"], x["b"]
    tiled = ntxent_loss(z1, z2, temperature=temperature, tile_size=16, symmetric=True)
    dense = ntxent_loss(z1, z2, temperature=temperature, impl="dense")
    torch.testing.assert_close(tiled, dense, rtol=1e-5, atol=1e-4)
    for gt, gd in zip(
        torch.autograd.grad(tiled, [z1]), torch.autograd.grad(dense, [z1]), strict=True
    ):
        torch.testing.assert_close(gt, gd, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("kind", ["rowlse", "lse", "sum"])
def test_reduce_rectangular_with_offset_and_shifts(kind: str) -> None:
    """The primitive on ``[K, M]`` with an off-centre excluded diagonal, row/column shifts."""
    g = torch.Generator().manual_seed(5)
    a, b = (torch.randn(n, 3, generator=g, dtype=F64).requires_grad_() for n in (7, 16))
    c, d = (torch.randn(n, generator=g, dtype=F64).requires_grad_() for n in (7, 16))
    x = a @ b.T + 0.25 - c[:, None] - d[None, :]
    mask = torch.zeros(7, 16, dtype=torch.bool)
    mask[torch.arange(7), torch.arange(7) + 9] = True
    if kind == "rowlse":
        ref = torch.logsumexp(x.masked_fill(mask, -math.inf), 1).sum()
        kw = {}
    elif kind == "lse":
        ref = torch.logsumexp(x.clamp(-1, 1).masked_fill(mask, -math.inf).reshape(-1), 0)
        kw = {"clip": 1.0}
    else:
        ref = torch.nn.functional.softplus(x).masked_fill(mask, 0).sum()
        kw = {"phi": "softplus"}
    got = tiled_reduce(
        a, b, kind, row_shift=c, col_shift=d, shift=0.25, exclude_diagonal=True, diag_offset=9,
        tile_size=(3, 5), **kw,
    )  # fmt: skip
    torch.testing.assert_close(got, ref)
    expected = torch.autograd.grad(ref, [a, b, c, d])
    for x1, x2 in zip(torch.autograd.grad(got, [a, b, c, d]), expected, strict=True):
        torch.testing.assert_close(x1, x2)


def test_large_scores_stay_finite() -> None:
    """Scores in the hundreds: running maxima keep every logsumexp finite, as the dense one."""
    x = _inputs(40, 8, torch.float32, 7)
    a, b = (x["a"] * 12).detach().requires_grad_(), (x["b"] * 12).detach().requires_grad_()
    for obj in ("infonce", "dv", "smile"):
        t = tiled_objective(a, b, obj, tile_size=(7, 9))
        ref = dense_objective(a, b, obj)
        assert torch.isfinite(t)
        torch.testing.assert_close(t, ref, rtol=1e-5, atol=1e-3)


def test_no_k_by_k_tensor_is_saved_for_backward() -> None:
    """Memory: autograd keeps only O(K·d) tensors for the tiled path (the dense one keeps K²)."""
    k, d = 512, 8
    x = _inputs(k, d, torch.float32, 2)
    biggest: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        biggest.append(t.numel())
        return t

    for obj in ("infonce", "dv", "flo", "fmicl"):
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            _value_and_grads(tiled_objective, x, obj, critic="cosine", tile_size=64)
        assert max(biggest) <= k * d, obj
        biggest.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _value_and_grads(dense_objective, x, "infonce", critic="cosine")
    assert max(biggest) >= k * k  # the check above can fail


def test_forward_only_under_no_grad() -> None:
    x = _inputs(30, 4, F64, 4)
    with torch.no_grad():
        v = tiled_objective(x["a"], x["b"], "infonce", tile_size=7)
    assert not v.requires_grad
    torch.testing.assert_close(v, dense_objective(x["a"], x["b"], "infonce").detach())


def test_objective_from_embeddings_impls_agree() -> None:
    x = _inputs(20, 4, F64, 8)
    kw = {"critic": "cosine", "temperature": 0.5, "u": x["u"]}
    vals = [
        objective_from_embeddings(x["a"], x["b"], "flo", impl=i, **kw)
        for i in ("auto", "dense", "tiled")
    ]
    torch.testing.assert_close(vals[0], vals[1])
    torch.testing.assert_close(vals[1], vals[2])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda a, b: tiled_objective(a, b, "nope"), "unknown objective"),
        (lambda a, b: tiled_objective(a, b, "flo"), "needs u"),
        (lambda a, b: tiled_objective(a, b, "infonce", critic="bilinear"), "separable critic"),
        (lambda a, b: tiled_objective(a, b[:3], "infonce"), r"\[K, d\]"),
        (
            lambda a, b: tiled_objective(a, b, "infonce", critic="cosine", temperature=0),
            "temperature",
        ),
        (lambda a, b: tiled_objective(a, b, "tuba", baseline=a[:, 0], symmetric=True), "TUBA"),
        (lambda a, b: tiled_reduce(a, b, "max"), "kind"),
        (lambda a, b: tiled_reduce(a, b, "sum", tile_size=0), "tile_size"),
        (lambda a, b: objective_from_embeddings(a, b, "dv", impl="gpu"), "impl"),
        (lambda a, b: ntxent_loss(a, b[:2]), r"\[N, d\]"),
    ],
)
def test_bad_input_is_one_value_error(call, match) -> None:  # type: ignore[no-untyped-def]
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    with pytest.raises(ValueError, match=match):
        call(a, b)
