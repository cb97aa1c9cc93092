"""The reductions of :mod:`infomax.reductions` computed in tiles from embeddings (SPEC §4, §8).

A separable critic's scores are ``S = scale · â b̂ᵀ + shift`` (:class:`~infomax.critics.Similarity`),
so every reduction an objective needs is one :func:`~infomax.kernels.tiled.tiled_reduce` call on
the embeddings; the score matrix is never held. These layouts are an *execution strategy*: the
formulas stay in :mod:`infomax.bounds` / :mod:`infomax.divergences`, which call them the same
way as the dense layouts.

- :class:`TiledPairScores`: rows ``a: [K_r, d]`` (this rank's), columns ``b`` gathered from all
  ranks with gradient; the positive of row ``i`` is column ``rank·K_r + i`` (the estimation and
  MoCo v3 in-batch setting, ``C = K``).
- :class:`TiledSimCLRScores`: SimCLR's ``2N`` anchors ``[z1; z2]`` against the gathered
  ``[z1; z2]`` of all ranks; positive at ``i ± N``, the self-similarity dropped (``C = 2N − 1``).
  In one process with a fixed temperature the row log-sum-exp uses the symmetric kernel
  (:func:`~infomax.kernels.symmetric.symmetric_rowlse`, 2 GEMM units instead of 3).

Each returns this rank's share (module doc of :mod:`infomax.reductions`).

>>> import torch
>>> from infomax import bounds
>>> from infomax.critics import Similarity
>>> a, b = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
>>> sim = Similarity("cosine", 0.5)
>>> tiled = bounds.infonce(TiledPairScores(a, b, sim, tile_size=4))
>>> bool(torch.allclose(tiled, bounds.infonce(sim(a, b))))
True
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import dist
from ..critics import Similarity
from ..reductions import MaskedScores, PairScores, Phi, Reductions, apply_phi, global_lse
from .symmetric import symmetric_rowlse
from .tiled import tiled_reduce

TileSize = int | tuple[int, int] | None
#: ``impl="auto"`` tiles from this many score entries on (``1024²``): from there the tiled kernels
#: are faster than the materialised scores (NT-Xent 31 vs 57 ms at 2048 anchors, InfoNCE 10 vs
#: 12 ms at K = 1024; docs/benchmarks-losses.md), besides never holding them.
AUTO_MIN_ENTRIES = 1024 * 1024
IMPLS = ("auto", "dense", "tiled")


def check_impl(impl: str) -> str:
    """``impl`` if it is one of :data:`IMPLS`, else ``ValueError``."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be 'auto', 'dense' or 'tiled', got {impl!r}")
    return impl


def use_tiles(impl: str, entries: int) -> bool:
    """Whether ``impl`` (``auto``, ``dense``, ``tiled``) tiles a batch of ``entries`` (global)
    score entries: ``auto`` does from :data:`AUTO_MIN_ENTRIES` on."""
    check_impl(impl)
    return entries >= AUTO_MIN_ENTRIES if impl == "auto" else impl == "tiled"


def _scaled(sim: Similarity, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(â, b̂, scale·â, positive scores â_i·b̂_i·scale + shift)``."""
    if not sim.inner_product:
        raise ValueError(f"the tiled kernels need an inner-product similarity, got {sim.kind!r}")
    a, b = sim.prepare(a, b)
    scaled = a * sim.scale
    return a, b, scaled, (scaled * b).sum(dim=1) + sim.shift


class TiledPairScores(Reductions):
    """Rows ``a: [K_r, d]`` against the columns ``b`` of all ranks; ``S = sim(a, b_all)``."""

    def __init__(
        self, a: Tensor, b: Tensor, similarity: Similarity, tile_size: TileSize = None
    ) -> None:
        if a.ndim != 2 or a.shape != b.shape:
            raise ValueError(
                f"a and b must both be [K, d], got {tuple(a.shape)} and {tuple(b.shape)}"
            )
        self.world = dist.world_size()
        if a.shape[0] * self.world < 2:
            raise ValueError("need K >= 2 samples (one positive and at least one negative)")
        self.sim, self.tile_size, self._inputs = similarity, tile_size, (a, b)
        _, b_hat, self.scaled, self.positive = _scaled(similarity, a, b)
        self.cols = dist.all_gather_with_grad(b_hat)
        self.rows = self.candidates = self.cols.shape[0]
        self.common = {
            "shift": similarity.shift,
            "diag_offset": dist.diagonal_offset(a.shape[0]),
            "tile_size": tile_size,
        }

    def row_lse(self) -> Tensor:
        return tiled_reduce(self.scaled, self.cols, "rowlse", **self.common)  # type: ignore[arg-type]

    def neg_lse(self, clip: float | None = None, col_shift: Tensor | None = None) -> Tensor:
        shift = None if col_shift is None else dist.all_gather_with_grad(col_shift)
        g = tiled_reduce(
            self.scaled,
            self.cols,
            "lse",
            exclude_diagonal=True,
            clip=clip,
            col_shift=shift,
            **self.common,  # type: ignore[arg-type]
        )
        return global_lse(g, self.world)

    def neg_sum(self, phi: Phi, offset: float = 0.0, row_shift: Tensor | None = None) -> Tensor:
        total = tiled_reduce(
            self.scaled,
            self.cols,
            "sum",
            exclude_diagonal=True,
            phi=phi,
            row_shift=row_shift,
            **self.common,  # type: ignore[arg-type]
        )
        return total + offset * self.positive.shape[0] * self.negatives

    def detach(self) -> TiledPairScores:
        a, b = self._inputs
        return TiledPairScores(a.detach(), b.detach(), self.sim, self.tile_size)


class TiledSimCLRScores(Reductions):
    """SimCLR's ``2N_r`` anchors ``[z1; z2]`` of this rank against ``[gather(z1); gather(z2)]``.

    ``symmetric``: use the 2-GEMM symmetric kernel for the row log-sum-exp (one process, fixed
    temperature, an ``int`` tile); ``None`` does so whenever it applies.
    """

    def __init__(
        self,
        z1: Tensor,
        z2: Tensor,
        similarity: Similarity,
        tile_size: TileSize = None,
        symmetric: bool | None = None,
    ) -> None:
        if z1.ndim != 2 or z1.shape != z2.shape or z1.shape[0] < 1:
            raise ValueError(
                f"z1 and z2 must both be [N, d], got {tuple(z1.shape)}, {tuple(z2.shape)}"
            )
        self.world, n = dist.world_size(), z1.shape[0]
        if 2 * n * self.world < 3:
            raise ValueError("need 2N >= 3 views (one positive and at least one negative)")
        scale = similarity.scale
        usable = (
            self.world == 1
            and not (isinstance(scale, Tensor) and scale.requires_grad)
            and not isinstance(tile_size, tuple)
        )
        if symmetric and not usable:
            raise ValueError(
                "the symmetric kernel needs one process, a fixed temperature, int tiles"
            )
        self.symmetric = usable and symmetric is not False
        self.sim, self.tile_size, self._inputs = similarity, tile_size, (z1, z2)
        self.a, self.b, self.a1, pos = _scaled(similarity, z1, z2)
        self.a2 = self.b * scale
        self.positive = torch.cat([pos, pos])  # S_{i, i+N} = S_{i+N, i}
        self.n_all, self.offset = n * self.world, dist.diagonal_offset(n)
        self.rows, self.candidates = 2 * self.n_all, 2 * self.n_all - 1
        self.cols = torch.cat(
            [dist.all_gather_with_grad(self.a), dist.all_gather_with_grad(self.b)]
        )

    def _halves(self, kind: str, **kw: object) -> Tensor:
        """``kind`` over the non-self columns of both halves of the rows."""
        common = {"shift": self.sim.shift, "exclude_diagonal": True, "tile_size": self.tile_size}
        first = tiled_reduce(self.a1, self.cols, kind, diag_offset=self.offset, **common, **kw)  # type: ignore[arg-type]
        second = tiled_reduce(
            self.a2,
            self.cols,
            kind,
            diag_offset=self.n_all + self.offset,
            **common,  # type: ignore[arg-type]
            **kw,  # type: ignore[arg-type]
        )
        return first + second

    def row_lse(self) -> Tensor:
        if self.symmetric:  # one process: the columns are the rows
            lse = symmetric_rowlse(self.cols, float(self.sim.scale), self.tile_size)  # type: ignore[arg-type]
            return lse + self.sim.shift * self.rows
        return self._halves("rowlse")

    def neg_lse(self, clip: float | None = None, col_shift: Tensor | None = None) -> Tensor:
        raise ValueError(
            "the SimCLR layout supports InfoNCE and the f-MICL divergences (row log-sum-exp and "
            "sums over negatives); use the pair layout for bounds with a global log-mean-exp"
        )

    def neg_sum(self, phi: Phi, offset: float = 0.0, row_shift: Tensor | None = None) -> Tensor:
        if row_shift is not None:
            raise ValueError("the SimCLR layout takes no row shift")
        non_self = self._halves("sum", phi=phi)
        # each row's positive column is among its non-self columns: take it out again
        own = apply_phi(phi, self.positive).sum()
        return non_self - own + offset * self.positive.shape[0] * self.negatives

    def detach(self) -> TiledSimCLRScores:
        z1, z2 = self._inputs
        return TiledSimCLRScores(z1.detach(), z2.detach(), self.sim, self.tile_size)


def pair_scores(
    a: Tensor, b: Tensor, similarity: Similarity, *, impl: str = "auto", tile_size: TileSize = None
) -> Reductions:
    """Rows ``a: [K_r, d]`` against the columns ``b`` of all ranks (positive of row ``i``: its
    own ``b_i``), tiled (:class:`TiledPairScores`) or materialised (:func:`use_tiles`)."""
    world = dist.world_size()
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"a and b must both be [K, d], got {tuple(a.shape)} and {tuple(b.shape)}")
    if use_tiles(impl, (a.shape[0] * world) ** 2):
        return TiledPairScores(a, b, similarity, tile_size)
    if world == 1:
        return PairScores(similarity(a, b))
    scores = similarity(a, dist.all_gather_with_grad(b))
    idx = dist.diagonal_offset(a.shape[0]) + torch.arange(a.shape[0], device=a.device)
    return MaskedScores(scores, idx, world=world)


def simclr_scores(
    z1: Tensor,
    z2: Tensor,
    similarity: Similarity,
    *,
    impl: str = "auto",
    tile_size: TileSize = None,
    symmetric: bool | None = None,
) -> Reductions:
    """SimCLR's ``2N`` anchors ``[z1; z2]`` (positive ``i ± N``, self dropped) against the views
    of all ranks, tiled (:class:`TiledSimCLRScores`) or materialised (:func:`use_tiles`)."""
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must both be [N, d], got {tuple(z1.shape)}, {tuple(z2.shape)}")
    n, world = z1.shape[0], dist.world_size()
    if use_tiles(impl, (2 * n * world) ** 2):
        return TiledSimCLRScores(z1, z2, similarity, tile_size, symmetric)
    if 2 * n * world < 3:
        raise ValueError("need 2N >= 3 views (one positive and at least one negative)")
    z = torch.cat([z1, z2])
    cols = dist.all_gather_with_grad(z)
    idx = torch.arange(2 * n, device=z.device)
    offset = dist.rank() * 2 * n
    return MaskedScores(
        similarity(z, cols), offset + (idx + n) % (2 * n), offset + idx, world=world
    )
