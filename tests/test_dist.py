"""Two-process gloo test: distributed shares and gradients equal the single-process global batch.

Each rank holds half of the rows, gathers the columns with
:func:`infomax.dist.all_gather_with_grad`, computes its share of every tiled objective and
backpropagates it. The shares must sum to the dense single-process value on the concatenated batch
and each rank's gradients must equal the matching rows of the dense gradient (float64).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from dist_helpers import run_ranks
from infomax import dist
from infomax.kernels import OBJECTIVES, dense_objective, ntxent_loss, tiled_objective

K_LOCAL, DIM, WORLD = 5, 4, 2
CASES = [(obj, "cosine", False) for obj in OBJECTIVES] + [
    ("infonce", "dot", True),
    ("fmicl", "gaussian", False),
    ("simclr", "cosine", False),
]
KW = {"temperature": 0.6, "sigma": 0.8, "divergence": "js", "alpha": 0.7, "clip": 0.5}


def _global_inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    n = K_LOCAL * WORLD
    return {
        "a": torch.randn(n, DIM, generator=g, dtype=torch.float64),
        "b": torch.randn(n, DIM, generator=g, dtype=torch.float64),
        "u": torch.randn(n, generator=g, dtype=torch.float64),
        "baseline": torch.randn(n, generator=g, dtype=torch.float64),
    }


def _value(
    inputs: dict[str, torch.Tensor], obj: str, critic: str, symmetric: bool, tiled: bool
) -> torch.Tensor:
    ema = torch.tensor(1.7, dtype=torch.float64)
    if obj == "simclr":
        impl = "tiled" if tiled else "dense"
        return ntxent_loss(inputs["a"], inputs["b"], temperature=0.6, impl=impl, tile_size=3)
    fn = tiled_objective if tiled else dense_objective
    extra = {"tile_size": 3} if tiled else {}
    return fn(
        inputs["a"],
        inputs["b"],
        obj,
        critic=critic,
        u=inputs["u"],
        baseline=inputs["baseline"],
        ema=ema,
        symmetric=symmetric,
        **KW,
        **extra,
    )


def _worker(rank: int, world: int, out_dir: str) -> None:
    assert dist.world_size() == WORLD and dist.rank() == rank and dist.is_distributed()
    rows = slice(rank * K_LOCAL, (rank + 1) * K_LOCAL)
    out: dict[str, torch.Tensor] = {}
    for obj, critic, symmetric in CASES:
        local = {k: v[rows].clone().requires_grad_(True) for k, v in _global_inputs().items()}
        share = _value(local, obj, critic, symmetric, tiled=True)
        share.backward()
        key = f"{obj}-{critic}-{symmetric}"
        out[f"{key}/value"] = share.detach()
        for name, t in local.items():
            grad = t.grad if t.grad is not None else torch.zeros_like(t)
            out[f"{key}/{name}"] = grad
    torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))


def _late_import_worker(rank: int, world: int) -> None:
    """torch.distributed.nn.functional (re)imported after the group exists: its default
    arguments bind the live group; shutdown() must still free the group (checked by
    run_ranks: no gloo thread may outlive it)."""
    import importlib

    import torch.distributed.nn.functional as dist_nn

    importlib.reload(dist_nn)  # what a first import after init_process_group does
    assert any(
        isinstance(d, torch.distributed.ProcessGroup) for d in dist_nn.all_gather.__defaults__
    )
    x = torch.randn(2, 3, requires_grad=True)
    dist.all_gather_with_grad(x).sum().backward()
    assert x.grad is not None


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_a_late_import_of_torch_collectives_does_not_keep_the_group_alive(tmp_path: Path) -> None:
    run_ranks(_late_import_worker, WORLD, tmp_path)


def test_helpers_without_process_group() -> None:
    assert not dist.is_distributed()
    assert (dist.rank(), dist.world_size(), dist.diagonal_offset(7)) == (0, 1, 0)
    t = torch.randn(3, 2)
    assert dist.all_gather_with_grad(t) is t
    assert torch.equal(dist.eye_rank(3), torch.eye(3, dtype=torch.bool))


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_two_rank_gloo_equals_single_process(tmp_path: Path) -> None:
    run_ranks(_worker, WORLD, tmp_path, str(tmp_path))
    shares = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]

    for obj, critic, symmetric in CASES:
        key = f"{obj}-{critic}-{symmetric}"
        full = {k: v.clone().requires_grad_(True) for k, v in _global_inputs().items()}
        ref = _value(full, obj, critic, symmetric, tiled=False)
        names = list(full)
        grads = torch.autograd.grad(ref, [full[n] for n in names], allow_unused=True)
        total = sum(s[f"{key}/value"] for s in shares)
        torch.testing.assert_close(total, ref.detach(), msg=f"{key} value")
        for name, g in zip(names, grads, strict=True):
            expected = g if g is not None else torch.zeros_like(full[name])
            got = torch.cat([s[f"{key}/{name}"] for s in shares])
            torch.testing.assert_close(got, expected, msg=f"{key} grad {name}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
