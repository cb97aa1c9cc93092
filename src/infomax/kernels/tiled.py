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
``dB_J += G_IJᵀ A_I`` follow: three GEMM units in all, no recomputation. ``lse`` keeps one running
maximum (rescaling the accumulated gradients when it rises); ``rowlse`` needs the row's final
normaliser before ``G_IJ`` is known, so it keeps the ``[T, M]`` strip of ``exp(x − m)`` of one
row block (with each tile's running row maximum, folded into the small ``[T, d]`` operands).
Memory: ``O((K + M)·d + T·Tc)`` for ``lse`` / ``sum`` and ``O((K + M)·d + T·M)`` for ``rowlse``,
never ``O(K·M)``; backward only scales the saved ``[K, d]``/``[M, d]`` gradients.

>>> import torch
>>> a, b = torch.randn(5, 3, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64)
>>> v = tiled_reduce(a, b, "rowlse", tile_size=2)
>>> bool(torch.allclose(v, torch.logsumexp(a @ b.T, 1).sum()))
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

Phi = str | Callable[[Tensor], Tensor]

#: Default tile: rows per block and columns per tile (``[256, 4096]`` fp32 is 4 MiB, L3-resident).
DEFAULT_ROWS = 256
DEFAULT_COLS = 4096
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
    any other callable is differentiated with autograd on the tile.
    """
    if phi == "exp":
        x.exp_()
        return x, x
    if phi == "softplus":
        torch.sigmoid(x, out=grad_buf)
        return F.softplus(x), grad_buf
    if not callable(phi):
        raise ValueError(f"unknown phi {phi!r}: use 'exp', 'softplus' or a callable")
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        value = phi(leaf)
        (grad,) = torch.autograd.grad(value.sum(), leaf)
    grad_buf.copy_(grad)
    return value.detach(), grad_buf


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
        fn = _rowlse if spec.kind == "rowlse" else _lse_or_sum
        value, grads = fn(a, b, c, d, spec, grad)
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
        tile_size: ``T`` (a ``T × T`` tile) or ``(rows, cols)``; default ``(256, 4096)``, with the
            ``rowlse`` strip capped at ``2^24`` elements.

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
    rows, cols = _tile_size(tile_size, kind, b.shape[0])
    spec = ReduceSpec(kind, float(shift), exclude_diagonal, int(diag_offset), phi, clip, rows, cols)
    inputs = [t for t in (a, b, row_shift, col_shift) if t is not None]
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
    out: Tensor = TiledReduce.apply(a, b, row_shift, col_shift, spec, grad)
    return out
