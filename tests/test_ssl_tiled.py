"""SSL methods on the tiled kernels (``memory_efficient=True``) equal the dense losses in value
and gradient, for NT-Xent and every f-MICL divergence, both similarities (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from infomax.models import MLPEncoder
from infomax.ssl import MoCoV3, SimCLR
from infomax.ssl.losses import Objective, objective_names

OBJECTIVES = objective_names()


def _model(cls: type[nn.Module], objective: Objective) -> nn.Module:
    torch.manual_seed(0)
    return cls(MLPEncoder(10, hidden=12), objective=objective, proj_dim=6, proj_hidden=12).double()


def _loss_and_grads(model: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(2)
    x1 = torch.randn(9, 10, generator=g, dtype=torch.float64)
    x2 = x1 + 0.4 * torch.randn(9, 10, generator=g, dtype=torch.float64)
    loss = model(x1, x2)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize("similarity", ["cosine", "gaussian"])
@pytest.mark.parametrize("name", OBJECTIVES)
@pytest.mark.parametrize("cls", [SimCLR, MoCoV3])
def test_memory_efficient_equals_dense(cls: type[nn.Module], name: str, similarity: str) -> None:
    dense = Objective(name, similarity, 0.7, 0.8, memory_efficient=False)
    tiled = Objective(name, similarity, 0.7, 0.8, memory_efficient=True)
    ref_loss, ref_grads = _loss_and_grads(_model(cls, dense))
    loss, grads = _loss_and_grads(_model(cls, tiled))
    torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-12)
    assert grads.keys() == ref_grads.keys() and len(grads) > 8
    for key, g in ref_grads.items():
        torch.testing.assert_close(grads[key], g, rtol=1e-8, atol=1e-11, msg=key)


def test_automatic_choice_follows_the_matrix_size() -> None:
    auto = Objective("infonce")
    assert not auto.tiled(512, 512) and auto.tiled(8192, 8192)
    assert Objective(memory_efficient=True).tiled(4, 4)
    assert not Objective(memory_efficient=False).tiled(10**5, 10**5)
