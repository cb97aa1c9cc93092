"""``estimate_mi`` / ``MIObjective`` on the tiled kernels equal the dense path (value, gradient)."""

from __future__ import annotations

import pytest
import torch

from infomax.critics import build_critic
from infomax.estimate import estimate_mi
from infomax.objectives import TILED_BOUNDS, MIObjective


def _objective(bound: str, critic: str, memory_efficient: bool) -> MIObjective:
    torch.manual_seed(0)
    net = build_critic(critic, 3, 2, hidden=8, layers=1, embed_dim=4)
    return MIObjective(bound, net, 3, 2, hidden=8, layers=1, memory_efficient=memory_efficient)


@pytest.mark.parametrize("critic", ["dot", "cosine", "gaussian", "bilinear"])
@pytest.mark.parametrize("bound", sorted(TILED_BOUNDS))
def test_tiled_loss_estimate_and_gradients_equal_dense(bound: str, critic: str) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(11, 3, generator=g, dtype=torch.float64)
    y = torch.cat([x[:, :1], x[:, 1:2] ** 2], 1) + 0.5 * torch.randn(11, 2, generator=g).double()
    results = []
    for memory_efficient in (False, True):
        obj = _objective(bound, critic, memory_efficient).double()
        assert obj.tiled(11) is memory_efficient
        loss, value = obj.loss(x, y)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in obj.named_parameters() if p.grad is not None}
        results.append((loss.detach(), value, obj.estimate(x, y), grads))
    (l0, v0, e0, g0), (l1, v1, e1, g1) = results
    torch.testing.assert_close(l1, l0, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(v1, v0, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(e1, e0, rtol=1e-10, atol=1e-12)
    assert g0.keys() == g1.keys() and g0
    for name, grad in g0.items():
        torch.testing.assert_close(g1[name], grad, rtol=1e-8, atol=1e-11, msg=name)


def test_estimate_mi_memory_efficient_follows_the_dense_run() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(800, 2, generator=g)
    y = x + torch.randn(800, 2, generator=g)
    kw = {"batch_size": 64, "steps": 60, "eval_every": 20, "progress": False, "hidden": 16}
    kw["cap_scores"] = False  # the score cap is a dense-evaluation guard
    dense = estimate_mi(x, y, "flo", "dot", memory_efficient=False, **kw)
    tiled = estimate_mi(x, y, "flo", "dot", memory_efficient=True, **kw)
    assert tiled.config.memory_efficient is True
    expected = torch.tensor([dense.mi] + [h["val"] for h in dense.history])
    got = torch.tensor([tiled.mi] + [h["val"] for h in tiled.history])
    torch.testing.assert_close(got, expected, rtol=2e-3, atol=2e-3)  # float32 summation order


@pytest.mark.parametrize(("bound", "critic"), [("mine", "dot"), ("flo", "lp"), ("nwj", "joint")])
def test_memory_efficient_rejects_what_has_no_kernel(bound: str, critic: str) -> None:
    x = torch.randn(300, 2)
    with pytest.raises(ValueError, match="memory_efficient"):
        estimate_mi(x, x, bound, critic, batch_size=16, steps=2, memory_efficient=True)
