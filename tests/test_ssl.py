"""SSL objectives vs brute-force references, the MoCo queue and momentum update, the methods."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from infomax.bounds import infonce_terms
from infomax.divergences import fmicl_terms, get_divergence
from infomax.registry import METHODS
from infomax.ssl import (
    MemoryQueue,
    MoCoV2,
    MoCoV3,
    Objective,
    SimCLR,
    contrastive_terms,
    ntxent_loss,
    queue_loss,
)


def _cos(a, b):
    return float(F.cosine_similarity(a, b, dim=0))


def _ntxent_reference(z1, z2, tau):
    """Double loop over the 2N views: −log softmax of the positive among the other 2N − 1."""
    z = torch.cat([z1, z2])
    n2 = z.shape[0]
    total = 0.0
    for i in range(n2):
        pos = (i + n2 // 2) % n2
        denom = sum(math.exp(_cos(z[i], z[k]) / tau) for k in range(n2) if k != i)
        total += -math.log(math.exp(_cos(z[i], z[pos]) / tau) / denom)
    return total / n2


def _fmicl_simclr_reference(z1, z2, tau, name, alpha):
    div = get_divergence(name)
    z = torch.cat([z1, z2])
    n2 = z.shape[0]
    total = 0.0
    for i in range(n2):
        pos = (i + n2 // 2) % n2
        s_pos = torch.tensor(_cos(z[i], z[pos]) / tau, dtype=torch.float64)
        negs = [k for k in range(n2) if k not in (i, pos)]
        neg = sum(
            float(div.negative(torch.tensor(_cos(z[i], z[k]) / tau, dtype=torch.float64)))
            for k in negs
        )
        total += float(div.positive(s_pos)) - alpha * neg / len(negs)
    return -total / n2


def test_ntxent_matches_double_loop():
    torch.manual_seed(0)
    z1, z2 = torch.randn(5, 7, dtype=torch.float64), torch.randn(5, 7, dtype=torch.float64)
    for tau in (0.1, 0.5):
        loss = ntxent_loss(z1, z2, Objective("infonce", "cosine", tau))
        assert float(loss) == pytest.approx(_ntxent_reference(z1, z2, tau), rel=1e-9)


@pytest.mark.parametrize("name", ["kl", "js", "pearson", "sqhellinger", "tsallis", "vlc"])
def test_fmicl_simclr_matches_double_loop(name):
    torch.manual_seed(1)
    z1, z2 = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    loss = ntxent_loss(z1, z2, Objective(name, "cosine", 0.5, alpha=0.7))
    assert float(loss) == pytest.approx(_fmicl_simclr_reference(z1, z2, 0.5, name, 0.7), rel=1e-9)


def test_square_case_reuses_the_library_bounds():
    torch.manual_seed(2)
    s = torch.randn(6, 6, dtype=torch.float64)
    eye = torch.eye(6, dtype=torch.bool)
    pos, neg = s.diagonal(), s[~eye].view(6, 5)
    torch.testing.assert_close(
        contrastive_terms(pos, neg, "infonce"), infonce_terms(s) - math.log(6)
    )
    for name in ("kl", "pearson", "vlc"):
        torch.testing.assert_close(
            contrastive_terms(pos, neg, name, 0.5), fmicl_terms(s, name, 0.5)
        )


def test_gaussian_similarity_is_shifted_cosine():
    torch.manual_seed(3)
    a, b = torch.randn(4, 5), torch.randn(6, 5)
    cos = Objective("infonce", "cosine", 0.3).scores(a, b)
    gau = Objective("infonce", "gaussian", 0.3).scores(a, b)
    torch.testing.assert_close(gau, cos - 1 / 0.3)
    # InfoNCE is shift invariant, so both similarities give the same NT-Xent
    z1, z2 = torch.randn(4, 5), torch.randn(4, 5)
    torch.testing.assert_close(
        ntxent_loss(z1, z2, Objective("infonce", "cosine", 0.3)),
        ntxent_loss(z1, z2, Objective("infonce", "gaussian", 0.3)),
    )


def test_objective_validation():
    with pytest.raises(ValueError, match="valid"):
        Objective("nope")
    with pytest.raises(ValueError, match="similarity"):
        Objective("kl", "dot")
    with pytest.raises(ValueError):
        Objective("kl", "cosine", 0.0)
    with pytest.raises(ValueError):
        contrastive_terms(torch.zeros(3), torch.zeros(4, 2))


def test_queue_fifo_and_wraparound():
    q = MemoryQueue(dim=2, size=5)
    k1 = torch.arange(6.0).view(3, 2)
    q.enqueue(k1)
    torch.testing.assert_close(q()[:3], k1)
    assert int(q.ptr) == 3
    k2 = 10 + torch.arange(8.0).view(4, 2)
    q.enqueue(k2)  # slots 3, 4, 0, 1: overwrites the two oldest keys of k1
    keys = q()
    torch.testing.assert_close(keys[3:5], k2[:2])
    torch.testing.assert_close(keys[0:2], k2[2:])
    torch.testing.assert_close(keys[2], k1[2])
    assert int(q.ptr) == 2
    q.enqueue(torch.ones(7, 2))  # more keys than slots: keep the last 5
    assert torch.equal(q(), torch.ones(5, 2))
    with pytest.raises(ValueError):
        q.enqueue(torch.ones(2, 3))


def _tiny_encoder():
    enc = nn.Sequential(nn.Flatten(), nn.Linear(12, 8))
    enc.out_dim = 8
    return enc


def test_mocov2_loss_uses_queue_before_enqueue():
    torch.manual_seed(0)
    model = MoCoV2(_tiny_encoder(), queue_size=16, proj_dim=4, proj_hidden=8)
    x1, x2 = torch.randn(6, 1, 3, 4), torch.randn(6, 1, 3, 4)
    old = model.queue().clone()
    model.train()
    loss = model(x1, x2)
    # same loss recomputed by hand with the old queue (BN in train mode: same batch -> same stats)
    q = model.embed(x1)
    k = model.keys(x2)
    torch.testing.assert_close(loss, queue_loss(q, k, old, model.objective))
    new = model.queue()
    torch.testing.assert_close(new[:6], F.normalize(k, dim=1))
    torch.testing.assert_close(new[6:], old[6:])
    model.eval()
    model(x1, x2)
    torch.testing.assert_close(model.queue(), new)  # no enqueue in eval mode


def test_momentum_update_is_explicit_ema():
    torch.manual_seed(0)
    model = MoCoV3(_tiny_encoder(), proj_dim=4, proj_hidden=8, pred_hidden=8, momentum=0.9)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(1.0)
    before = [p.clone() for p in model.encoder_k.parameters()]
    model(torch.randn(4, 1, 3, 4), torch.randn(4, 1, 3, 4)).backward()
    for p, b in zip(model.encoder_k.parameters(), before, strict=True):
        assert torch.equal(p, b) and p.grad is None  # forward/backward leave the keys alone
    model.update_momentum()
    for p_k, b, p_q in zip(
        model.encoder_k.parameters(), before, model.encoder.parameters(), strict=True
    ):
        torch.testing.assert_close(p_k, 0.9 * b + 0.1 * p_q)


def test_mocov3_is_symmetric_and_methods_registered():
    torch.manual_seed(0)
    model = MoCoV3(_tiny_encoder(), proj_dim=4, proj_hidden=8, pred_hidden=8).eval()
    x1, x2 = torch.randn(5, 1, 3, 4), torch.randn(5, 1, 3, 4)
    torch.testing.assert_close(model(x1, x2), model(x2, x1))
    assert {"simclr", "mocov2", "mocov3"} <= set(METHODS.names())
    assert METHODS.get("simclr") is SimCLR


@pytest.mark.parametrize("cls", [SimCLR, MoCoV2, MoCoV3])
@pytest.mark.parametrize("objective", ["infonce", "js"])
def test_methods_train_online_branch_only(cls, objective):
    torch.manual_seed(0)
    model = cls(
        _tiny_encoder(), objective=Objective(objective, "gaussian", 0.5), proj_dim=4, proj_hidden=8
    )
    loss = model(torch.randn(6, 1, 3, 4), torch.randn(6, 1, 3, 4))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    if hasattr(model, "encoder_k"):
        assert all(p.grad is None for p in model.encoder_k.parameters())
