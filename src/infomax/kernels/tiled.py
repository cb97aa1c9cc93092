"""Tiled reductions of a score matrix ``X = a bᵀ`` that never materialise it (SPEC §8).

Every bound and divergence in :mod:`infomax.bounds` / :mod:`infomax.divergences` is built from
three reductions of the (shifted) scores ``x_ij = a_i·b_j + shift − c_i − d_j``, taken over the
columns ``j ∈ J(i)`` (all ``j``, or all but the excluded column ``i + diag_offset``):

========== ======================================================= ============================
kind       value                                                   used by
========== ======================================================= ============================
``rowlse`` ``Σ_i logsumexp_{j∈J(i)} x_ij``                          InfoNCE, NT-Xent (SimCLR)
``lse``    ``logsumexp_{i, j∈J(i)} clip(x_ij)``                     NWJ, DV, MINE, TUBA, JS, SMILE
``sum``    ``Σ_i Σ_{j∈J(i)} φ(x_ij)``                               FLO, JS loss, f-MICL
========== ======================================================= ============================

The value is a scalar, so :class:`TiledReduce` forms the gradient in the **same pass**: each
``[T, Tc]`` tile of scores is one GEMM into a reused buffer, its elementwise terms are computed in
place while the tile is hot in cache, and the two gradient GEMMs ``dA_I += G_IJ B_J`` and
``dBᵀ_J += A_Iᵀ G_IJ`` follow: three GEMM units in all, no recomputation; backward only scales
the saved ``[K, d]``/``[M, d]`` gradients.

**Fixed stabiliser (the fast path).** By Cauchy–Schwarz ``x_ij ≤ hi_i = ‖a_i‖·max_j ‖b_j‖ +
shift − c_i − min_j d_j``, known before any tile is computed. When ``hi_i`` lies at most ``gap``
nats (80 in fp32, 700 in fp64) above ``lo_i``, a score the row certainly reaches (its first
column in ``J(i)``), the fixed stabiliser ``m_i = max(lo_i, hi_i − gap + 20)`` keeps every
``exp(x − m)`` below ``exp(gap − 20)`` and each row's largest term above ``exp(−20)``, so it
replaces running maxima: no ``max`` pass, no rescaling, and ``exp`` is
taken as ``exp2`` with ``log₂ e`` folded into ``a`` (``exp2`` is ~3× faster than ``exp`` on
CPU). Per tile that is one GEMM, one broadcast add, one ``exp2`` and one row sum:

- ``rowlse`` (per-row ``m_i``) keeps the ``[T, M]`` strip of ``E = exp(x − m)`` of one row
  block: pass 1 accumulates ``l_I = E 1`` and ``E_IJ B_J``, pass 2 adds ``(A_I / l_I)ᵀ E_IJ``;
- ``lse`` uses one ``m`` from ``max_i lo_i`` and ``max_i hi_i`` for the whole batch (clipped for
  SMILE);
- ``sum`` with ``φ(x) = w·g(βx)`` (:class:`~infomax.reductions.ElementwisePhi`, every f-MICL
  divergence) needs no stabiliser: ``β log₂ e`` goes into the GEMM, ``e = exp(βx)`` is one
  ``exp2``, and ``g`` comes from ``e``: ``exp``; ``softplus = log(1 + e)`` with ``σ = e/(1 + e)``,
  the logarithm taken once per ``2^k`` terms of a product that cannot overflow; or ``σ²`` with
  ``g′ = 2σ²(1 − σ)``. ``w`` and ``β`` scale the gradients once at the end.

**Running maxima (the fallback)**, when the bound is too loose (large unnormalised scores,
temperatures below ~0.03) or ``φ`` is an arbitrary callable: ``lse`` keeps one running maximum
(rescaling the accumulated gradients when it rises); ``rowlse`` keeps each tile's running row
maximum, folded into the small ``[T, d]`` operands; ``sum`` differentiates ``φ`` on the tile.
``stabiliser="running"`` forces it. Both paths give the same value and gradients.

Memory: ``O((K + M)·d + T·Tc)`` for ``lse`` / ``sum`` and ``O((K + M)·d + T·M)`` for ``rowlse``,
never ``O(K·M)``.

>>> import torch
>>> a, b = torch.randn(5, 3, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64)
>>> v = tiled_reduce(a, b, "rowlse", tile_size=2)
>>> bool(torch.allclose(v, torch.logsumexp(a @ b.T, 1).sum()))
True
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import torch
from torch import Tensor

from ..reductions import ElementwisePhi, Phi, as_elementwise, softplus

#: ``exp(x) = 2^(x·log₂ e)``: the kernels fold ``log₂ e`` into the GEMM and take ``exp2``.
LOG2E = 1.0 / math.log(2.0)
#: How a kernel stabilises its exponentials (:func:`tiled_reduce`'s ``stabiliser``).
STABILISERS = ("auto", "running")

#: Default tile: rows per block and columns per tile (``[1024, 1024]`` fp32 is 4 MiB; measured best
#: of 10 shapes for the general kernel at B = 8192, docs/benchmarks-losses.md).
DEFAULT_ROWS = 1024
DEFAULT_COLS = 1024
#: ``rowlse`` keeps a ``[T, M]`` strip; its rows are capped so the strip stays below this size.
MAX_STRIP_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class ReduceSpec:
    """What :class:`TiledReduce` computes (module table); validated by :func:`tiled_reduce`."""

    kind: str
    shift: float = 0.0
    exclude_diagonal: bool = False
    diag_offset: int = 0
    phi: Phi = "exp"
    clip: float | None = None
    rows: int = DEFAULT_ROWS
    cols: int = DEFAULT_COLS
    stabiliser: str = "auto"


def _tile_size(tile_size: int | tuple[int, int] | None, kind: str, m: int) -> tuple[int, int]:
    if tile_size is None:
        rows, cols = DEFAULT_ROWS, DEFAULT_COLS
        if kind == "rowlse":
            rows = max(32, min(rows, MAX_STRIP_ELEMENTS // max(m, 1)))
    elif isinstance(tile_size, int):
        rows = cols = tile_size
    else:
        rows, cols = tile_size
    if rows < 1 or cols < 1:
        raise ValueError(f"tile_size must be positive, got {tile_size}")
    return rows, cols


def _mask_excluded(tile: Tensor, spec: ReduceSpec, i0: int, j0: int, value: float) -> None:
    """Write ``value`` at the excluded entries ``(i, i + diag_offset)`` that fall in this tile."""
    if spec.exclude_diagonal:
        offset = spec.diag_offset + i0 - j0
        if -tile.shape[0] < offset < tile.shape[1]:
            tile.diagonal(offset).fill_(value)


def _prepare(
    tile: Tensor, spec: ReduceSpec, c: Tensor | None, d: Tensor | None, i0: int, j0: int
) -> None:
    """In place: ``tile ← tile + shift − c_I − d_J`` (the GEMM already wrote ``A_I B_Jᵀ``)."""
    if spec.shift != 0.0:
        tile.add_(spec.shift)
    if c is not None:
        tile.sub_(c[i0 : i0 + tile.shape[0], None])
    if d is not None:
        tile.sub_(d[None, j0 : j0 + tile.shape[1]])


def _phi_tiles(x: Tensor, phi: Phi, grad_buf: Tensor) -> tuple[Tensor, Tensor]:
    """``(φ(x), φ′(x))`` as tiles (they may alias ``x``, which is overwritten).

    Fast in-place paths for ``exp`` (value and gradient are the same tile) and ``softplus``;
    any other :data:`~infomax.reductions.Phi` is differentiated with autograd on the tile.
    """
    named = as_elementwise(phi)
    if named == ElementwisePhi("exp"):
        x.exp_()
        return x, x
    if named == ElementwisePhi("softplus"):
        torch.sigmoid(x, out=grad_buf)
        return softplus(x), grad_buf
    fn = named if named is not None else phi
    assert callable(fn)
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        value = fn(leaf)
        (grad,) = torch.autograd.grad(value.sum(), leaf)
    grad_buf.copy_(grad)
    return value.detach(), grad_buf


_WORKSPACE = threading.local()


def _workspace(slot: str, numel: int, like: Tensor) -> Tensor:
    """A flat scratch buffer of at least ``numel`` elements for ``slot``, kept per thread, device
    and dtype between calls: a fresh 64 MiB strip costs ~30 ms of page faults per call, as much
    as 5% of a B = 8192 loss. Only the kernels' tile and strip buffers live here (≤ 72 MiB fp32
    per thread by default); :func:`clear_workspace` frees them."""
    cache: dict[tuple[str, torch.device, torch.dtype], Tensor]
    cache = _WORKSPACE.__dict__.setdefault("buffers", {})
    key = (slot, like.device, like.dtype)
    buf = cache.get(key)
    if buf is None or buf.numel() < numel:
        cache.pop(key, None)  # free the old buffer before allocating the larger one
        buf = cache[key] = like.new_empty(numel)
    return buf[:numel]


def clear_workspace() -> None:
    """Free this thread's cached tile and strip buffers (:func:`_workspace`)."""
    _WORKSPACE.__dict__.pop("buffers", None)


def _gap(dtype: torch.dtype) -> float:
    """How far (nats) a fixed stabiliser may sit above a row's largest score: ``exp(−gap)``
    stays a normal number of ``dtype``."""
    return 700.0 if dtype == torch.float64 else 80.0


def _score_bounds(
    a: Tensor, b: Tensor, c: Tensor | None, d: Tensor | None, spec: ReduceSpec
) -> tuple[Tensor, Tensor, Tensor]:
    """``(hi, lo, bound)``, each ``[K]`` in nats, from ``O((K + M)·d)`` work: ``hi_i ≥ max_j
    x_ij`` (Cauchy–Schwarz), ``lo_i ≤ max_{j∈J(i)} x_ij`` (the score of one column of ``J(i)``)
    and ``bound_i ≥ max_j |x_ij|``; ``clip`` applied (``lse``)."""
    m = b.shape[0]
    norm = a.norm(dim=1) * b.norm(dim=1).max()
    base = torch.full_like(norm, spec.shift) if c is None else spec.shift - c
    j = torch.arange(a.shape[0], device=a.device) + spec.diag_offset + int(spec.exclude_diagonal)
    j = j % m
    lo = (a * b[j]).sum(dim=1) + base
    hi = norm + base
    bound = norm + base.abs()
    if d is not None:
        lo, hi, bound = lo - d[j], hi - d.min(), bound + d.abs().max()
    if spec.clip is not None:
        lo, hi = lo.clamp(-spec.clip, spec.clip), hi.clamp(-spec.clip, spec.clip)
    return hi, lo, bound


def _plan(
    a: Tensor, b: Tensor, c: Tensor | None, d: Tensor | None, spec: ReduceSpec
) -> tuple[str, Tensor | ElementwisePhi | None]:
    """``("fixed", stabiliser or φ)`` when the fixed-stabiliser path is exact (module doc), else
    ``("running", None)``."""
    if spec.stabiliser == "running" or (spec.exclude_diagonal and b.shape[0] == 1):
        return "running", None
    gap = _gap(a.dtype)
    if spec.kind == "sum":
        phi = as_elementwise(spec.phi)
        if phi is None:
            return "running", None
        if phi.kind == "exp":  # no stabiliser: exp(βx) as the dense value
            return "fixed", phi
        _, _, bound = _score_bounds(a, b, c, d, spec)
        return ("fixed", phi) if bool(phi.rate * bound.max() <= gap) else ("running", None)
    hi, lo, _ = _score_bounds(a, b, c, d, spec)
    if spec.kind == "lse":
        hi = hi.max().expand_as(hi)
        lo = lo.max().expand_as(lo)
    safe = torch.isfinite(hi).all() & torch.isfinite(lo).all() & ((hi - lo) <= gap).all()
    if not bool(safe):
        return "running", None
    # Stabilise near a score the row reaches, not at the bound: every term stays below
    # exp(gap − 20) (no sum overflows), the largest above exp(−20), and log l + m loses no more
    # precision than with the row's true maximum (a loose bound would cost eps·(hi − max)).
    return "fixed", torch.maximum(lo, hi - (gap - 20.0))


def _reduce(
    a: Tensor, b: Tensor, c: Tensor | None, d: Tensor | None, spec: ReduceSpec, grad: bool
) -> tuple[Tensor, list[Tensor | None]]:
    """The reduction of ``spec`` and its gradients, by the fixed-stabiliser path when it is
    exact, else by running maxima."""
    path, arg = _plan(a, b, c, d, spec)
    if path == "running":
        fn = _rowlse if spec.kind == "rowlse" else _lse_or_sum
        return fn(a, b, c, d, spec, grad)
    if spec.kind == "rowlse":
        assert isinstance(arg, Tensor)
        return _rowlse_fixed(a, b, c, d, spec, grad, arg)
    if spec.kind == "lse":
        assert isinstance(arg, Tensor)
        return _lse_fixed(a, b, c, d, spec, grad, float(arg[0]))
    assert isinstance(arg, ElementwisePhi)
    return _sum_fixed(a, b, c, d, spec, grad, arg)


def _operands(
    a: Tensor, c: Tensor | None, d: Tensor | None, offset: float | Tensor, lam: float
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``(λa, λ(offset − c), λd)``: the GEMM operand and the broadcast row / column terms of
    :func:`_scores_into`, so that a tile is ``λ(a_i·b_j + offset_i − c_i − d_j)``; ``λ`` carries
    ``log₂ e`` (and φ's rate). A zero row term is ``None``."""
    row = offset if c is None else offset - c
    if isinstance(row, Tensor):
        row_term: Tensor | None = row * lam
    else:
        row_term = None if row == 0.0 else a.new_full((a.shape[0],), row * lam)
    return a * lam, row_term, None if d is None else d * lam


def _scores_into(
    x: Tensor,
    a_s: Tensor,
    b: Tensor,
    row_term: Tensor | None,
    col_term: Tensor | None,
    spec: ReduceSpec,
    i0: int,
    j0: int,
    clip: tuple[float, float] | None = None,
) -> Tensor | None:
    """In place: ``x ← a_s,I b_Jᵀ + row_I − col_J`` (one GEMM and at most two broadcast adds;
    ``a_s`` carries the ``log₂ e`` factor), clamped to ``clip = (lo, hi)`` if given, excluded
    entries at ``−∞``. Returns the mask of the entries strictly inside ``clip`` (or ``None``)."""
    ti, tj = x.shape
    torch.mm(a_s[i0 : i0 + ti], b[j0 : j0 + tj].T, out=x)
    if row_term is not None:
        x.add_(row_term[i0 : i0 + ti, None])
    if col_term is not None:
        x.sub_(col_term[None, j0 : j0 + tj])
    inside = None
    if clip is not None:
        inside = (x > clip[0]).logical_and_(x < clip[1])
        x.clamp_(*clip)
    _mask_excluded(x, spec, i0, j0, -math.inf)
    return inside


def _accumulate(
    grads: list[Tensor | None],
    g: Tensor,
    a: Tensor,
    b: Tensor,
    i0: int,
    j0: int,
    row_sums: Tensor | None = None,
) -> None:
    """Add the gradient tile ``g = ∂value/∂x_IJ`` to ``[dA, dBᵀ, dc, dd]``: the two gradient GEMMs
    (``beta = 0`` on each block's first), and ``−g 1`` / ``−gᵀ 1`` for the row / column shifts."""
    ga, gbt, gc, gd = grads
    assert ga is not None and gbt is not None
    ti, tj = g.shape
    ga[i0 : i0 + ti].addmm_(g, b[j0 : j0 + tj], beta=float(j0 > 0))
    gbt[:, j0 : j0 + tj].addmm_(a[i0 : i0 + ti].T, g, beta=float(i0 > 0))
    if gc is not None:
        gc[i0 : i0 + ti].sub_(g.sum(dim=1) if row_sums is None else row_sums)
    if gd is not None:
        gd[j0 : j0 + tj].sub_(g.sum(dim=0))


def _grads(
    a: Tensor, b: Tensor, c: Tensor | None, d: Tensor | None, grad: bool
) -> list[Tensor | None]:
    """Accumulators ``[dA, dBᵀ, dc, dd]``: ``dB`` is accumulated transposed, ``dBᵀ_J += A_Iᵀ
    G_IJ`` (a GEMM on the untransposed tile, ~10% faster than ``G_IJᵀ A_I``). ``dA`` and ``dBᵀ``
    are uninitialised: each block's first GEMM writes it with ``beta = 0``."""
    if not grad:
        return [None, None, None, None]
    return [
        torch.empty_like(a),
        b.new_empty(b.shape[1], b.shape[0]),
        None if c is None else a.new_zeros(a.shape[0]),
        None if d is None else b.new_zeros(b.shape[0]),
    ]


def _untranspose(grads: list[Tensor | None]) -> list[Tensor | None]:
    """``[dA, dBᵀ, dc, dd]`` → ``[dA, dB, dc, dd]``."""
    gbt = grads[1]
    return [grads[0], None if gbt is None else gbt.T.contiguous(), grads[2], grads[3]]


def _rowlse_fixed(
    a: Tensor,
    b: Tensor,
    c: Tensor | None,
    d: Tensor | None,
    spec: ReduceSpec,
    grad: bool,
    stab: Tensor,
) -> tuple[Tensor, list[Tensor | None]]:
    """``rowlse`` with the per-row stabiliser ``stab_i`` (:func:`_plan`): per row block, pass 1
    writes ``E_IJ = exp(x_IJ − stab_I)`` into the strip and accumulates ``l_I = E 1`` and
    ``E_IJ B_J`` (GEMM 2); pass 2 adds ``(A_I / l_I)ᵀ E_IJ`` to ``dBᵀ_J`` (GEMM 3)."""
    k, m = a.shape[0], b.shape[0]
    rows, cols = min(spec.rows, k), spec.cols
    a_s, row_term, col_term = _operands(a, c, d, spec.shift - stab, LOG2E)
    strip = _workspace("strip", rows * (m if grad else min(cols, m)), a)
    scaled = a.new_empty(rows, a.shape[1])
    sums = a.new_empty(rows)
    grads = ga, gb, gc, gd = _grads(a, b, c, d, grad)
    total = a.new_zeros(())
    for i0 in range(0, k, rows):
        ti = min(rows, k - i0)
        l_i = a.new_zeros(ti)
        tiles: list[tuple[int, Tensor]] = []
        for j0 in range(0, m, cols):
            tj = min(cols, m - j0)
            base = ti * j0 if grad else 0
            x = strip[base : base + ti * tj].view(ti, tj)
            _scores_into(x, a_s, b, row_term, col_term, spec, i0, j0)
            x.exp2_()
            l_i.add_(torch.sum(x, dim=1, out=sums[:ti]))
            if ga is not None:
                ga[i0 : i0 + ti].addmm_(x, b[j0 : j0 + tj], beta=float(j0 > 0))
                tiles.append((j0, x))
        total += (torch.log(l_i) + stab[i0 : i0 + ti]).sum()
        if ga is None or gb is None:
            continue
        w = l_i.reciprocal_()
        ga[i0 : i0 + ti].mul_(w[:, None])
        torch.mul(a[i0 : i0 + ti], w[:, None], out=scaled[:ti])
        for j0, x in tiles:
            gb[:, j0 : j0 + x.shape[1]].addmm_(scaled[:ti].T, x, beta=float(i0 > 0))
            if gd is not None:
                gd[j0 : j0 + x.shape[1]].sub_(w @ x)
    if gc is not None:
        gc.fill_(-1.0)  # each row's softmax sums to one
    return total, _untranspose(grads)


def _lse_fixed(
    a: Tensor,
    b: Tensor,
    c: Tensor | None,
    d: Tensor | None,
    spec: ReduceSpec,
    grad: bool,
    stab: float,
) -> tuple[Tensor, list[Tensor | None]]:
    """``lse`` with one stabiliser ``stab`` (``_plan``) for the whole batch: no rescaling."""
    k, m = a.shape[0], b.shape[0]
    rows, cols = min(spec.rows, k), min(spec.cols, m)
    a_s, row_term, col_term = _operands(a, c, d, spec.shift - stab, LOG2E)
    buf = _workspace("tile", rows * cols, a)
    sums = a.new_empty(max(rows, cols))
    grads = _grads(a, b, c, d, grad)
    clip = None
    if spec.clip is not None:  # [−clip, clip] in the tile's units
        clip = ((-spec.clip - stab) * LOG2E, (spec.clip - stab) * LOG2E)
    total = a.new_zeros(())
    for i0 in range(0, k, rows):
        ti = min(rows, k - i0)
        for j0 in range(0, m, cols):
            tj = min(cols, m - j0)
            x = buf[: ti * tj].view(ti, tj)
            inside = _scores_into(x, a_s, b, row_term, col_term, spec, i0, j0, clip)
            x.exp2_()
            row_sums = torch.sum(x, dim=1, out=sums[:ti])
            total += row_sums.sum()
            if not grad:
                continue
            if inside is not None:  # clipped scores carry no gradient
                row_sums = torch.sum(x.mul_(inside), dim=1, out=sums[:ti])
            _accumulate(grads, x, a, b, i0, j0, row_sums)
    for g in grads:
        if g is not None:
            g.div_(total)
    return torch.log(total) + stab, _untranspose(grads)


def _sum_log(v: Tensor, folds: int) -> Tensor:
    """``Σ log v`` for ``v ≥ 1`` (overwritten) whose products of ``2^folds`` terms stay finite:
    the halves are multiplied in place ``folds`` times, then one ``log`` per ``2^folds`` terms
    (``log`` costs ~8 multiplications)."""
    n, extra = v.numel(), v.new_zeros(())
    for _ in range(folds):
        if n < 2:
            break
        if n % 2:
            n -= 1
            extra += torch.log(v[n])
        half = n // 2
        v[:half].mul_(v[half:n])
        n = half
    return v[:n].log_().sum() + extra


def _sum_fixed(
    a: Tensor,
    b: Tensor,
    c: Tensor | None,
    d: Tensor | None,
    spec: ReduceSpec,
    grad: bool,
    phi: ElementwisePhi,
) -> tuple[Tensor, list[Tensor | None]]:
    """``sum`` for ``φ(x) = w·g(βx)``: ``β·log₂ e`` is folded into the GEMM, so each tile needs
    one ``exp2`` (``e = exp(βx)``) and ``g`` is formed from ``e``: ``exp`` itself, ``softplus =
    log1p(e)`` with ``σ = e/(1 + e)``, or ``σ²`` with ``g′ = 2σ²(1 − σ)``."""
    k, m = a.shape[0], b.shape[0]
    rows, cols = min(spec.rows, k), min(spec.cols, m)
    a_s, row_term, col_term = _operands(a, c, d, spec.shift, LOG2E * phi.rate)
    buf, aux = _workspace("tile", rows * cols, a), _workspace("aux", rows * cols, a)
    grads = _grads(a, b, c, d, grad)
    folds = 0
    if phi.kind == "softplus":  # products of 2^folds terms 1 + exp(βx) stay below exp(gap)
        _, _, bound = _score_bounds(a, b, c, d, spec)
        per_term = float(softplus(phi.rate * bound.max()))
        folds = max(0, int(math.log2(max(_gap(a.dtype) / max(per_term, 1e-3), 1.0))))
    total = a.new_zeros(())
    for i0 in range(0, k, rows):
        ti = min(rows, k - i0)
        for j0 in range(0, m, cols):
            tj = min(cols, m - j0)
            e = buf[: ti * tj].view(ti, tj)
            _scores_into(e, a_s, b, row_term, col_term, spec, i0, j0)
            e.exp2_()
            h = aux[: ti * tj].view(ti, tj)
            if phi.kind == "exp":
                g = e
                total += e.sum()
            elif phi.kind == "softplus":
                g = e.div_(torch.add(e, 1.0, out=h))  # σ(βx); h = 1 + exp(βx)
                total += _sum_log(h.view(-1), folds)
            else:  # sigmoid_sq
                sig = e.div_(torch.add(e, 1.0, out=h))
                g = torch.mul(sig, sig, out=h)
                total += g.sum()
                g.addcmul_(g, sig, value=-1.0)  # σ² − σ³ = g′/2
            if grad:
                _accumulate(grads, g, a, b, i0, j0)
    factor = phi.weight * phi.rate * (2.0 if phi.kind == "sigmoid_sq" else 1.0)
    for grad_t in grads:
        if grad_t is not None:
            grad_t.mul_(factor)
    return total * phi.weight, _untranspose(grads)


class TiledReduce(torch.autograd.Function):
    """Autograd function for :func:`tiled_reduce` (value and gradient in one tiled pass)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        a: Tensor,
        b: Tensor,
        c: Tensor | None,
        d: Tensor | None,
        spec: ReduceSpec,
        grad: bool,
    ) -> Tensor:
        a, b = a.detach().contiguous(), b.detach().contiguous()
        c = None if c is None else c.detach().contiguous()
        d = None if d is None else d.detach().contiguous()
        value, grads = _reduce(a, b, c, d, spec, grad)
        ctx.save_for_backward(*[g if g is not None else torch.empty(0) for g in grads])
        ctx.has = [g is not None for g in grads]  # type: ignore[attr-defined]
        return value

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_out: Tensor
    ) -> tuple[Tensor | None, ...]:
        saved = ctx.saved_tensors  # type: ignore[attr-defined]
        grads = [g * grad_out if h else None for g, h in zip(saved, ctx.has, strict=True)]  # type: ignore[attr-defined]
        return (*grads, None, None)


def _rowlse(
    a: Tensor, b: Tensor, c: Tensor | None, d: Tensor | None, spec: ReduceSpec, grad: bool
) -> tuple[Tensor, list[Tensor | None]]:
    """``Σ_i logsumexp_{j∈J(i)} x_ij`` and its gradients (softmax rows), strip by strip."""
    k, m = a.shape[0], b.shape[0]
    rows, cols = spec.rows, spec.cols
    n_tiles = -(-m // cols)
    strip = a.new_empty(rows * cols * n_tiles if grad else rows * min(cols, m))
    maxes = a.new_empty(n_tiles, rows)
    fa = a.new_empty(rows, a.shape[1])
    tmp = a.new_empty(rows, a.shape[1])
    ga = torch.zeros_like(a) if grad else None
    gb = torch.zeros_like(b) if grad else None
    gc = a.new_zeros(k) if grad and c is not None else None
    gd = b.new_zeros(m) if grad and d is not None else None
    total = a.new_zeros(())
    for i0 in range(0, k, rows):
        ti = min(rows, k - i0)
        a_i = a[i0 : i0 + ti]
        run = a.new_full((ti,), -math.inf)
        acc = a.new_zeros(ti)
        for t, j0 in enumerate(range(0, m, cols)):
            tj = min(cols, m - j0)
            base = t * rows * cols if grad else 0
            x = strip[base : base + ti * tj].view(ti, tj)
            torch.mm(a_i, b[j0 : j0 + tj].T, out=x)
            _prepare(x, spec, c, d, i0, j0)
            _mask_excluded(x, spec, i0, j0, -math.inf)
            new = torch.maximum(run, x.amax(dim=1))
            safe = torch.where(torch.isfinite(new), new, torch.zeros_like(new))
            acc.mul_(torch.exp(run - safe).nan_to_num_(0.0))
            x.sub_(safe[:, None]).exp_()
            acc.add_(x.sum(dim=1))
            maxes[t, :ti] = safe
            run = new
        lse = torch.log(acc) + maxes[n_tiles - 1, :ti]
        total += lse.sum()
        if not grad:
            continue
        assert ga is not None and gb is not None
        for t, j0 in enumerate(range(0, m, cols)):
            tj = min(cols, m - j0)
            base = t * rows * cols
            e = strip[base : base + ti * tj].view(ti, tj)
            f = torch.exp(maxes[t, :ti] - lse)  # P_IJ = diag(f) · e
            torch.mm(e, b[j0 : j0 + tj], out=tmp[:ti])
            ga[i0 : i0 + ti].addcmul_(tmp[:ti], f[:, None])
            torch.mul(a_i, f[:, None], out=fa[:ti])
            gb[j0 : j0 + tj].addmm_(e.T, fa[:ti])
            if gd is not None:
                gd[j0 : j0 + tj].sub_(e.T @ f)
        if gc is not None:
            gc[i0 : i0 + ti] = -1.0
    return total, [ga, gb, gc, gd]


def _lse_or_sum(
    a: Tensor, b: Tensor, c: Tensor | None, d: Tensor | None, spec: ReduceSpec, grad: bool
) -> tuple[Tensor, list[Tensor | None]]:
    """``lse``: global ``logsumexp`` with one running maximum; ``sum``: ``Σ φ(x_ij)``."""
    k, m = a.shape[0], b.shape[0]
    rows, cols = spec.rows, spec.cols
    is_lse = spec.kind == "lse"
    buf = a.new_empty(min(rows, k) * min(cols, m))
    gbuf = a.new_empty(buf.numel())
    ga = torch.zeros_like(a) if grad else None
    gb = torch.zeros_like(b) if grad else None
    gc = a.new_zeros(k) if grad and c is not None else None
    gd = b.new_zeros(m) if grad and d is not None else None
    accs = [g for g in (ga, gb, gc, gd) if g is not None]
    total = a.new_zeros(())
    run = -math.inf  # lse: the running maximum every exp is taken against
    for i0 in range(0, k, rows):
        ti = min(rows, k - i0)
        a_i = a[i0 : i0 + ti]
        for j0 in range(0, m, cols):
            tj = min(cols, m - j0)
            x = buf[: ti * tj].view(ti, tj)
            torch.mm(a_i, b[j0 : j0 + tj].T, out=x)
            _prepare(x, spec, c, d, i0, j0)
            if is_lse:
                inside = None
                if spec.clip is not None:
                    inside = (x.abs() < spec.clip).to(x.dtype)
                    x.clamp_(-spec.clip, spec.clip)
                _mask_excluded(x, spec, i0, j0, -math.inf)
                tile_max = float(x.max())
                if tile_max > run:
                    if run > -math.inf:  # rescale everything accumulated so far
                        ratio = math.exp(run - tile_max)
                        total.mul_(ratio)
                        for acc in accs:
                            acc.mul_(ratio)
                    run = tile_max
                if run == -math.inf:
                    continue
                x.sub_(run).exp_()
                total += x.sum()
                grad_tile = x if inside is None else x.mul_(inside)
            else:
                value, grad_tile = _phi_tiles(x, spec.phi, gbuf[: ti * tj].view(ti, tj))
                _mask_excluded(value, spec, i0, j0, 0.0)
                _mask_excluded(grad_tile, spec, i0, j0, 0.0)
                total += value.sum()
            if not grad:
                continue
            assert ga is not None and gb is not None
            ga[i0 : i0 + ti].addmm_(grad_tile, b[j0 : j0 + tj])
            gb[j0 : j0 + tj].addmm_(grad_tile.T, a_i)
            if gc is not None:
                gc[i0 : i0 + ti].sub_(grad_tile.sum(dim=1))
            if gd is not None:
                gd[j0 : j0 + tj].sub_(grad_tile.sum(dim=0))
    if is_lse:
        if run == -math.inf:
            return total.new_tensor(-math.inf), [ga, gb, gc, gd]
        for acc in accs:
            acc.div_(total)
        return torch.log(total) + run, [ga, gb, gc, gd]
    return total, [ga, gb, gc, gd]


def tiled_reduce(
    a: Tensor,
    b: Tensor,
    kind: str,
    *,
    row_shift: Tensor | None = None,
    col_shift: Tensor | None = None,
    shift: float = 0.0,
    exclude_diagonal: bool = False,
    diag_offset: int = 0,
    phi: Phi = "exp",
    clip: float | None = None,
    tile_size: int | tuple[int, int] | None = None,
    stabiliser: str = "auto",
) -> Tensor:
    """One of the three tiled reductions of ``x_ij = a_i·b_j + shift − c_i − d_j`` (module table).

    Args:
        a: ``[K, d]`` row embeddings (already scaled by the critic's ``1/τ``), differentiable.
        b: ``[M, d]`` column embeddings (``M = K``, or the gathered columns across ranks).
        kind: ``"rowlse"``, ``"lse"`` or ``"sum"``.
        row_shift: ``c: [K]`` subtracted from row ``i`` (differentiable), e.g. FLO's ``S_ii + u_i``.
        col_shift: ``d: [M]`` subtracted from column ``j`` (differentiable), e.g. TUBA's ``b(y_j)``.
        shift: a constant added to every score (the f-Gaussian critic's ``−1/σ²``).
        exclude_diagonal: drop column ``i + diag_offset`` from row ``i`` (the positive or self).
        phi: ``sum`` only: ``"exp"``, ``"softplus"`` or an elementwise callable.
        clip: ``lse`` only: clamp ``x`` to ``[−clip, clip]`` first (SMILE).
        tile_size: ``T`` (a ``T × T`` tile) or ``(rows, cols)``; default ``(1024, 1024)``, with the
            ``rowlse`` strip capped at ``2^24`` elements.
        stabiliser: ``auto`` (the fixed Cauchy–Schwarz stabiliser when it is exact, else
            running maxima; module doc) or ``running`` (always running maxima).

    Returns:
        A 0-d tensor; its gradient was formed in the forward pass.
    """
    if kind not in ("rowlse", "lse", "sum"):
        raise ValueError(f"kind must be 'rowlse', 'lse' or 'sum', got {kind!r}")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"a and b must be [K, d] and [M, d], got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    if a.dtype != b.dtype or not a.is_floating_point():
        raise ValueError(f"a and b must share a floating dtype, got {a.dtype} and {b.dtype}")
    if a.shape[0] == 0 or b.shape[0] == 0:
        raise ValueError("a and b need at least one row each")
    for name, t, n in (("row_shift", row_shift, a.shape[0]), ("col_shift", col_shift, b.shape[0])):
        if t is not None and t.shape != (n,):
            raise ValueError(f"{name} must have shape [{n}], got {tuple(t.shape)}")
    if clip is not None and clip <= 0:
        raise ValueError(f"clip must be > 0, got {clip}")
    if stabiliser not in STABILISERS:
        raise ValueError(f"stabiliser must be 'auto' or 'running', got {stabiliser!r}")
    rows, cols = _tile_size(tile_size, kind, b.shape[0])
    spec = ReduceSpec(
        kind, float(shift), exclude_diagonal, int(diag_offset), phi, clip, rows, cols, stabiliser
    )
    inputs = [t for t in (a, b, row_shift, col_shift) if t is not None]
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
    out: Tensor = TiledReduce.apply(a, b, row_shift, col_shift, spec, grad)
    return out
