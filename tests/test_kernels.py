"""Tiled kernels (SPEC §8) against the materialised references of bounds.py / divergences.py."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from infomax.divergences import DIVERGENCES, get_divergence
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
from infomax.kernels import tiled as tiled_module
from infomax.reductions import ElementwisePhi, apply_phi

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
        (lambda a, b: tiled_reduce(a, b, "sum", stabiliser="fixed"), "stabiliser"),
        (lambda a, b: tiled_reduce(a, b, "sum", phi="cosh"), "unknown phi"),
        (lambda a, b: ElementwisePhi("cosh"), "unknown phi"),
        (lambda a, b: ElementwisePhi("exp", rate=0.0), "rate"),
        (lambda a, b: objective_from_embeddings(a, b, "dv", impl="gpu"), "impl"),
        (lambda a, b: ntxent_loss(a, b[:2]), r"\[N, d\]"),
    ],
)
def test_bad_input_is_one_value_error(call, match) -> None:  # type: ignore[no-untyped-def]
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    with pytest.raises(ValueError, match=match):
        call(a, b)


# --- the two stabilisers (fixed Cauchy–Schwarz bound with exp2, running maxima) -----------------

PHIS = [
    "exp",
    "softplus",
    "sigmoid_sq",
    ElementwisePhi("exp", rate=2.0, weight=1.5),
    ElementwisePhi("softplus", rate=0.5, weight=2.0),
    ElementwisePhi("sigmoid_sq", weight=4.0),
]


def _brute_force(a, b, kind, c, d, shift, exclude, offset, phi, clip):  # type: ignore[no-untyped-def]
    """The reduction from its definition (module table of infomax.kernels.tiled), element by
    element of the materialised ``[K, M]`` scores."""
    x = a @ b.T + shift
    if c is not None:
        x = x - c[:, None]
    if d is not None:
        x = x - d[None, :]
    k, m = x.shape
    mask = torch.zeros(k, m, dtype=torch.bool)
    if exclude:
        for i in range(k):
            if 0 <= i + offset < m:
                mask[i, i + offset] = True
    if kind == "rowlse":
        return torch.logsumexp(x.masked_fill(mask, -math.inf), 1).sum()
    if kind == "lse":
        x = x if clip is None else x.clamp(-clip, clip)
        return torch.logsumexp(x.masked_fill(mask, -math.inf).reshape(-1), 0)
    return apply_phi(phi, x).masked_fill(mask, 0.0).sum()


@settings(max_examples=80, deadline=None)
@given(
    k=st.integers(1, 17),
    m=st.integers(2, 19),
    d=st.integers(1, 5),
    rows=st.integers(1, 9),
    cols=st.integers(1, 9),
    kind=st.sampled_from(["rowlse", "lse", "sum"]),
    phi=st.sampled_from(range(len(PHIS))),
    clip=st.sampled_from([None, 0.7]),
    exclude=st.booleans(),
    offset=st.integers(0, 6),
    shifts=st.tuples(st.booleans(), st.booleans()),
    shift=st.sampled_from([0.0, -0.6]),
    scale=st.sampled_from([0.3, 1.0, 3.0]),
    stabiliser=st.sampled_from(["auto", "running"]),
    seed=st.integers(0, 10_000),
)
def test_reduce_equals_brute_force_fp64(  # type: ignore[no-untyped-def]
    k, m, d, rows, cols, kind, phi, clip, exclude, offset, shifts, shift, scale, stabiliser, seed
) -> None:
    """Every kind, φ, clip, excluded offset, shift and tile shape, by both stabilisers: value and
    gradients (a, b, row and column shifts) equal the brute-force reduction."""
    g = torch.Generator().manual_seed(seed)
    a = (scale * torch.randn(k, d, generator=g, dtype=F64)).requires_grad_()
    b = torch.randn(m, d, generator=g, dtype=F64).requires_grad_()
    c = torch.randn(k, generator=g, dtype=F64).requires_grad_() if shifts[0] else None
    dd = torch.randn(m, generator=g, dtype=F64).requires_grad_() if shifts[1] else None
    phi_ = PHIS[phi] if kind == "sum" else "exp"
    clip_ = clip if kind == "lse" else None
    inputs = [t for t in (a, b, c, dd) if t is not None]
    ref = _brute_force(a, b, kind, c, dd, shift, exclude, offset, phi_, clip_)
    got = tiled_reduce(
        a, b, kind, row_shift=c, col_shift=dd, shift=shift, exclude_diagonal=exclude,
        diag_offset=offset, phi=phi_, clip=clip_, tile_size=(rows, cols), stabiliser=stabiliser,
    )  # fmt: skip
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    expected = torch.autograd.grad(ref, inputs)
    for x1, x2 in zip(torch.autograd.grad(got, inputs), expected, strict=True):
        torch.testing.assert_close(x1, x2, rtol=1e-9, atol=1e-10)


def _spec(kind: str, **kw: object) -> tiled_module.ReduceSpec:
    return tiled_module.ReduceSpec(kind, exclude_diagonal=True, **kw)  # type: ignore[arg-type]


def test_plan_takes_the_fixed_stabiliser_only_where_it_is_exact() -> None:
    """Cosine scores at τ = 0.2 (|x| ≤ 5) take the fixed path for every kind; fp32 scores whose
    Cauchy–Schwarz bound sits > 80 nats above the largest score, the running maxima."""
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(64, 16, generator=g), dim=1)
    b = torch.nn.functional.normalize(torch.randn(64, 16, generator=g), dim=1)
    for kind, phi in (("rowlse", "exp"), ("lse", "exp"), ("sum", "softplus"), ("sum", "exp")):
        assert tiled_module._plan(a / 0.2, b, None, None, _spec(kind, phi=phi))[0] == "fixed"
    # orthogonal halves: every score 0 but the bound ‖a‖‖b‖ = 400
    a2 = torch.zeros(8, 4)
    a2[:, 0] = 20.0
    b2 = torch.zeros(8, 4)
    b2[:, 1] = 20.0
    for kind, phi in (("rowlse", "exp"), ("lse", "exp"), ("sum", "softplus")):
        assert tiled_module._plan(a2, b2, None, None, _spec(kind, phi=phi))[0] == "running"
    # exp-sums need no stabiliser; a callable φ always takes the running (generic) path
    assert tiled_module._plan(a2, b2, None, None, _spec("sum", phi="exp"))[0] == "fixed"
    assert tiled_module._plan(a, b, None, None, _spec("sum", phi=torch.tanh))[0] == "running"
    assert tiled_module._plan(a, b, None, None, _spec("rowlse", stabiliser="running"))[0] == (
        "running"
    )


@pytest.mark.parametrize("kind", ["rowlse", "lse", "sum"])
def test_loose_bound_falls_back_and_matches_dense_fp32(kind: str) -> None:
    """fp32 scores near 0 with a Cauchy–Schwarz bound of 400: the fixed path would underflow,
    the fallback gives the dense value."""
    g = torch.Generator().manual_seed(1)
    a = torch.zeros(30, 6)
    a[:, :3] = 20.0 * torch.nn.functional.normalize(torch.randn(30, 3, generator=g), dim=1)
    b = torch.zeros(40, 6)
    b[:, 3:] = 20.0 * torch.nn.functional.normalize(torch.randn(40, 3, generator=g), dim=1)
    a[:, 3:] = 0.01 * torch.randn(30, 3, generator=g)
    a.requires_grad_()
    phi = "softplus" if kind == "sum" else "exp"
    ref = _brute_force(a.double(), b.double(), kind, None, None, 0.0, True, 0, phi, None)
    got = tiled_reduce(a, b, kind, exclude_diagonal=True, phi=phi, tile_size=(7, 9))
    assert torch.isfinite(got)
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("objective", ["infonce", "dv", "js", "smile", "flo", "fmicl"])
@pytest.mark.parametrize("temperature", [0.05, 0.2])
def test_fixed_stabiliser_fp32_matches_fp64(objective: str, temperature: float) -> None:
    """The exp2 fast path in fp32 (cosine critic, K = 300) against the fp64 dense reference:
    every value and gradient within 1e-5 of the reference's largest entry (FLO's reach 1e5)."""
    x = _inputs(300, 32, torch.float32, 11)
    ref_inputs = {n: t.detach().double().requires_grad_(True) for n, t in x.items()}
    kw = {"critic": "cosine", "temperature": temperature, "divergence": "js"}
    v, g = _value_and_grads(tiled_objective, x, objective, tile_size=(64, 96), **kw)
    rv, rg = _value_and_grads(dense_objective, ref_inputs, objective, **kw)
    for name, got, ref in zip(["value", *x], [v, *g], [rv, *rg], strict=True):
        err = float((got.detach().double() - ref.detach()).abs().max())
        assert err <= 1e-5 * float(ref.detach().abs().max()) + 1e-6, (objective, name, err)


@pytest.mark.parametrize("divergence", ["pearson", "sqhellinger", "tsallis", "vlc"])
def test_divergence_negative_terms_keep_their_closed_forms(divergence: str) -> None:
    """The ElementwisePhi forms equal the generators' f*(f′(eˢ)) = e^s f′(e^s) − f(e^s)."""
    s = torch.linspace(-3, 3, 61, dtype=F64)
    div = get_divergence(divergence)
    u = torch.exp(s)
    torch.testing.assert_close(div.negative(s), u * div.f_prime(u) - div.f(u))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 200), folds=st.integers(0, 6), seed=st.integers(0, 1000))
def test_sum_log_by_halving_products(n: int, folds: int, seed: int) -> None:
    """``Σ log v`` through products of 2^folds terms equals the plain sum (odd lengths too)."""
    v = 1.0 + torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=F64) * 3.0
    expected = torch.log(v).sum()
    torch.testing.assert_close(tiled_module._sum_log(v.clone(), folds), expected)


@pytest.mark.parametrize("excluded", [True, False])
def test_masked_layout_equals_the_gathered_negatives(excluded: bool) -> None:
    """MaskedScores (SimCLR's dense layout: positives and self masked in place) gives every
    reduction of SplitScores built from explicitly gathered negatives, values and gradients."""
    from infomax.reductions import MaskedScores, SplitScores

    g = torch.Generator().manual_seed(3)
    r, m = 6, 12
    scores = torch.randn(r, m, generator=g, dtype=F64).requires_grad_()
    pos = torch.tensor([3, 7, 0, 11, 5, 2])
    excl = torch.tensor([1, 2, 4, 6, 8, 10]) if excluded else None
    keep = torch.ones(r, m, dtype=torch.bool)
    keep[torch.arange(r), pos] = False
    if excl is not None:
        keep[torch.arange(r), excl] = False
    negs = int(keep[0].sum())

    def both(fn):  # type: ignore[no-untyped-def]
        masked = MaskedScores(scores, pos, excl)
        split = SplitScores(scores[torch.arange(r), pos], scores[keep].view(r, negs))
        return fn(masked), fn(split)

    row = torch.randn(r, generator=g, dtype=F64)
    for fn in (
        lambda lay: lay.row_lse(),
        lambda lay: lay.neg_lse(clip=0.8),
        lambda lay: lay.neg_sum("softplus", 0.5, row_shift=row),
        lambda lay: lay.neg_sum(ElementwisePhi("exp", rate=2.0, weight=3.0)),
        lambda lay: lay.mean(lay.positive),
    ):
        a, b = both(fn)
        torch.testing.assert_close(a, b)
        (ga,) = torch.autograd.grad(a, scores)
        (gb,) = torch.autograd.grad(b, scores)
        torch.testing.assert_close(ga, gb)
    assert both(lambda lay: lay.candidates) == (negs + 1, negs + 1)


def test_softplus_is_exact_above_torch_threshold_and_dense_equals_tiled() -> None:
    """``F.softplus`` is linear above 20 (value and gradient off by up to e^−20); the library's
    softplus is exact, so the dense and tiled sums agree to fp64 rounding there too (the case
    hypothesis found: scores up to 21)."""
    from infomax.reductions import apply_phi, softplus

    s = torch.tensor([21.0, 25.0, -30.0], dtype=F64, requires_grad=True)
    exact = torch.log1p(torch.exp(-s.abs())) + s.clamp_min(0)
    torch.testing.assert_close(softplus(s), exact, rtol=0, atol=1e-15)
    (grad,) = torch.autograd.grad(softplus(s).sum(), s)
    torch.testing.assert_close(grad, torch.sigmoid(s.detach()), rtol=0, atol=1e-15)
    g = torch.Generator().manual_seed(0)
    a = (3.0 * torch.randn(9, 4, generator=g, dtype=F64)).requires_grad_()
    b = torch.randn(3, 4, generator=g, dtype=F64).requires_grad_()
    assert float((a @ b.T).max()) > 20
    ref = apply_phi("softplus", a @ b.T).sum()
    got = tiled_reduce(a, b, "sum", phi="softplus", tile_size=(1, 1))
    torch.testing.assert_close(got, ref, rtol=1e-13, atol=0)
    for x1, x2 in zip(
        torch.autograd.grad(got, [a, b]), torch.autograd.grad(ref, [a, b]), strict=True
    ):
        torch.testing.assert_close(x1, x2, rtol=1e-12, atol=1e-13)
