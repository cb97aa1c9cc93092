"""The SimCLR ``2N`` form of InfoNCE (NT-Xent), tiled or dense (SPEC §4, §8).

Two views ``z1, z2: [N, d]`` give ``2N`` embeddings ``z = [z1; z2]`` and ``S = critic(z, z)``
(``[2N, 2N]``). Anchor ``i`` has its positive at ``i ± N`` and the ``2N − 2`` other embeddings as
negatives; its own self-similarity is masked:

    I_SimCLR = mean_i [S_{i, i±N} − logsumexp_{j≠i} S_ij] + log(2N − 1)   (nats)

and the NT-Xent loss that SimCLR minimises (lightly's and pytorch-metric-learning's
``NTXentLoss``) is ``log(2N − 1) − I_SimCLR``. Across ranks, rows are this rank's ``2N_r``
embeddings and the columns are ``[gather(z1); gather(z2)]``; each rank returns its share (the
shares sum to the single-process value on the concatenated batch). In one process with a fixed
temperature the score matrix is symmetric and :func:`~infomax.kernels.symmetric.symmetric_rowlse`
needs 2 GEMM units instead of 3.

>>> import torch
>>> z1, z2 = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
>>> t = ntxent_loss(z1, z2, temperature=0.5, tile_size=3)
>>> bool(torch.allclose(t, ntxent_loss(z1, z2, temperature=0.5, impl="dense")))
True
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import dist
from ..critics import cosine_scores, dot_scores, gaussian_scores
from ..divergences import Divergence, get_divergence
from .objectives import _critic, negative_phi
from .symmetric import symmetric_rowlse
from .tiled import tiled_reduce


def simclr_infonce(
    z1: Tensor,
    z2: Tensor,
    *,
    temperature: float | Tensor = 0.5,
    critic: str = "cosine",
    sigma: float = 1.0,
    impl: str = "tiled",
    tile_size: int | tuple[int, int] | None = None,
    symmetric: bool | None = None,
) -> Tensor:
    """InfoNCE bound of the ``2N`` SimCLR batch (module formula), in nats.

    Args:
        z1, z2: ``[N, d]`` embeddings of the two views; ``z1[i]`` and ``z2[i]`` are positives.
        temperature / sigma: of the ``cosine`` / ``gaussian`` critic (``dot`` uses neither).
        impl: ``"tiled"`` (never holds ``[2N, 2N]``) or ``"dense"`` (materialised reference).
        tile_size: see :func:`~infomax.kernels.tiled.tiled_reduce` (an ``int`` for the symmetric
            kernel's square tile).
        symmetric: use :func:`~infomax.kernels.symmetric.symmetric_rowlse` (2 GEMM units instead
            of 3; single process, fixed temperature). ``None``: whenever it applies.
    """
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must both be [N, d], got {tuple(z1.shape)}, {tuple(z2.shape)}")
    if impl not in ("tiled", "dense"):
        raise ValueError(f"impl must be 'tiled' or 'dense', got {impl!r}")
    n = z1.shape[0]
    if impl == "dense":
        if dist.world_size() > 1:
            raise ValueError("the dense SimCLR reference is single-process")
        z = torch.cat([z1, z2])
        if critic == "dot":
            s = dot_scores(z, z)
        elif critic == "cosine":
            s = cosine_scores(z, z, temperature)
        elif critic == "gaussian":
            s = gaussian_scores(z, z, sigma)
        else:
            raise ValueError(f"critic must be 'dot', 'cosine' or 'gaussian', got {critic!r}")
        idx = torch.arange(2 * n, device=z.device)
        pos = s[idx, (idx + n) % (2 * n)]
        eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
        lse = torch.logsumexp(s.masked_fill(eye, -math.inf), dim=1)
        return (pos - lse).mean() + math.log(2 * n - 1)
    c = _critic(z1, z2, critic, temperature, sigma)
    fixed_scale = not (isinstance(c.scale, Tensor) and c.scale.requires_grad)
    usable = dist.world_size() == 1 and fixed_scale and not isinstance(tile_size, tuple)
    if symmetric and not usable:
        raise ValueError("the symmetric kernel needs one process, a fixed temperature, int tiles")
    if usable and symmetric is not False:
        z = torch.cat([c.a, c.b])
        lse = symmetric_rowlse(z, float(c.scale), tile_size)  # type: ignore[arg-type]
        pos = 2.0 * (c.scale * (c.a * c.b).sum())
        return (pos - lse) / (2 * n) + math.log(2 * n - 1)
    n_all, r_off = n * dist.world_size(), dist.diagonal_offset(n)
    cols = torch.cat([dist.all_gather_with_grad(c.a), dist.all_gather_with_grad(c.b)])
    a1, a2 = c.a * c.scale, c.b * c.scale
    kw = {"shift": c.shift, "exclude_diagonal": True, "tile_size": tile_size}
    lse1 = tiled_reduce(a1, cols, "rowlse", diag_offset=r_off, **kw)  # type: ignore[arg-type]
    lse2 = tiled_reduce(a2, cols, "rowlse", diag_offset=n_all + r_off, **kw)  # type: ignore[arg-type]
    pos = 2.0 * ((a1 * c.b).sum() + n * c.shift)
    return (pos - lse1 - lse2) / (2 * n_all) + math.log(2 * n_all - 1) / dist.world_size()


def ntxent_loss(
    z1: Tensor,
    z2: Tensor,
    *,
    temperature: float | Tensor = 0.5,
    critic: str = "cosine",
    sigma: float = 1.0,
    impl: str = "tiled",
    tile_size: int | tuple[int, int] | None = None,
    symmetric: bool | None = None,
) -> Tensor:
    """NT-Xent loss ``log(2N − 1) − I_SimCLR`` (minimised): mean cross-entropy of each anchor's
    positive against its ``2N − 1`` non-self columns. Arguments as :func:`simclr_infonce`."""
    bound = simclr_infonce(
        z1,
        z2,
        temperature=temperature,
        critic=critic,
        sigma=sigma,
        impl=impl,
        tile_size=tile_size,
        symmetric=symmetric,
    )
    return math.log(2 * z1.shape[0] * dist.world_size() - 1) / dist.world_size() - bound


def simclr_fmicl(
    z1: Tensor,
    z2: Tensor,
    *,
    divergence: str | Divergence = "kl",
    alpha: float = 1.0,
    temperature: float | Tensor = 0.5,
    critic: str = "cosine",
    sigma: float = 1.0,
    tile_size: int | tuple[int, int] | None = None,
) -> Tensor:
    """f-MICL objective (maximised) of the ``2N`` SimCLR batch, tiled:

        mean_i [ D.positive(S_{i, i±N}) − α · mean_{j ∉ {i, i±N}} D.negative(S_ij) ]

    (:func:`infomax.ssl.losses.ntxent_loss` with a divergence is its dense form: loss = −this).
    Each row's ``2N − 2`` negatives are the tiled sum over its non-self columns minus the
    positive's own term, computed from the ``[N]`` positive scores. Across ranks the columns are
    ``[gather(z1); gather(z2)]`` and each rank returns its share of the global value.
    """
    if z1.ndim != 2 or z1.shape != z2.shape or z1.shape[0] < 2:
        raise ValueError(
            f"z1 and z2 must both be [N >= 2, d], got {tuple(z1.shape)}, {tuple(z2.shape)}"
        )
    div = get_divergence(divergence)
    c = _critic(z1, z2, critic, temperature, sigma)
    n = z1.shape[0]
    n_all, r_off = n * dist.world_size(), dist.diagonal_offset(n)
    rows_all = 2 * n_all
    cols = torch.cat([dist.all_gather_with_grad(c.a), dist.all_gather_with_grad(c.b)])
    a1, a2 = c.a * c.scale, c.b * c.scale
    phi, per_entry = negative_phi(div)
    kw = {"shift": c.shift, "exclude_diagonal": True, "phi": phi, "tile_size": tile_size}
    s1 = tiled_reduce(a1, cols, "sum", diag_offset=r_off, **kw)  # type: ignore[arg-type]
    s2 = tiled_reduce(a2, cols, "sum", diag_offset=n_all + r_off, **kw)  # type: ignore[arg-type]
    pos = (a1 * c.b).sum(dim=1) + c.shift  # S_{i, i+N} = S_{i+N, i}: [N]
    non_self = s1 + s2 + per_entry * 2 * n * (rows_all - 1)
    neg = non_self - 2.0 * div.negative(pos).sum()  # drop each row's positive column
    return (2.0 * div.positive(pos).sum() - alpha * neg / (rows_all - 2)) / rows_all
