"""Critics: score matrices vs per-pair references (SPEC §1)."""

from __future__ import annotations

import pytest
import torch

from infomax.critics import (
    BilinearCritic,
    CosineCritic,
    DotCritic,
    GaussianCritic,
    JointCritic,
    LpCritic,
    build_critic,
    mlp,
)
from infomax.registry import CRITICS


def _xy(k: int = 6, d: int = 4):
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(k, d, generator=g, dtype=torch.float64),
        torch.randn(k, d, generator=g, dtype=torch.float64),
    )


def _pairwise(fn, a, b):
    with torch.no_grad():
        rows = [[float(fn(a[i], b[j])) for j in range(len(b))] for i in range(len(a))]
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize(
    "critic, pair",
    [
        (DotCritic(), lambda a, b: a @ b),
        (CosineCritic(temperature=0.3), lambda a, b: (a / a.norm()) @ (b / b.norm()) / 0.3),
        (
            GaussianCritic(sigma=0.7),
            lambda a, b: -((a / a.norm() - b / b.norm()) ** 2).sum() / (2 * 0.7**2),
        ),
        (LpCritic(p=1.0, temperature=0.5), lambda a, b: -(a - b).abs().sum() / 0.5),
        (LpCritic(p=2.0, alpha=2.0), lambda a, b: -((a - b) ** 2).sum()),
        (LpCritic(p=1.5, alpha=1.0), lambda a, b: -(((a - b).abs() ** 1.5).sum() ** (1 / 1.5))),
    ],
)
def test_separable_critics_match_pairwise_reference(critic, pair) -> None:
    x, y = _xy()
    s = critic(x, y)
    assert s.shape == (6, 6)
    assert torch.allclose(s, _pairwise(pair, x, y), atol=1e-10)
    assert torch.allclose(critic.pair_scores(x, y), s.diagonal(), atol=1e-10)


def test_bilinear_and_joint() -> None:
    x, y = _xy()
    bil = BilinearCritic(embed_dim=4).double()
    with torch.no_grad():
        bil.weight.copy_(torch.randn(4, 4, dtype=torch.float64))
    w = bil.weight.detach()
    assert torch.allclose(bil(x, y), _pairwise(lambda a, b: a @ w @ b, x, y))
    net = mlp([8, 16, 1]).double()
    joint = JointCritic(net)
    ref = _pairwise(lambda a, b: net(torch.cat([a, b]))[0], x, y)
    assert torch.allclose(joint(x, y), ref)
    assert torch.allclose(joint.pair_scores(x, y), ref.diagonal())


def test_encoders_and_learnable_temperature() -> None:
    x, y = _xy()
    crit = build_critic(
        "cosine", 4, 4, hidden=8, embed_dim=3, learn_temperature=True, temperature=0.2
    ).double()
    assert any(p is crit.log_temperature for p in crit.parameters())
    assert crit.temperature.item() == pytest.approx(0.2)
    s = crit(x, y)
    s.sum().backward()
    assert crit.log_temperature.grad is not None
    for name in CRITICS.names():
        c = build_critic(name, 4, 2, hidden=8, embed_dim=3).double()
        assert c(x, y[:, :2]).shape == (6, 6)


def test_critic_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="valid names: bilinear, cosine, dot"):
        build_critic("dott", 2, 2)
    with pytest.raises(ValueError, match="does not take options"):
        build_critic("dot", 2, 2, temperature=0.1)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        CosineCritic(temperature=0.0)
    with pytest.raises(ValueError, match="dimensions"):
        build_critic("dot", 0, 2)
    with pytest.raises(ValueError, match="activation"):
        mlp([2, 2], act="nope")


def test_additive_dot_critic_is_a_dot_product_plus_marginal_terms() -> None:
    """``dot-additive``: ``S_ij = g(x_i)·h(y_j) + a(x_i) + b(y_j)``, checked entry by entry
    against its parts, and its kernel form (augmented embeddings) gives the same matrix."""
    from infomax.critics import AdditiveDotCritic, build_critic

    torch.manual_seed(0)
    critic = build_critic("dot-additive", 3, 4, hidden=16, embed_dim=5)
    assert isinstance(critic, AdditiveDotCritic)
    x, y = torch.randn(6, 3), torch.randn(7, 4)
    ex, ey = critic.encoder_x, critic.encoder_y
    g, a = ex.encoder(x), ex.term(x).squeeze(1)
    h, b = ey.encoder(y), ey.term(y).squeeze(1)
    expected = g @ h.T + a[:, None] + b[None, :]
    torch.testing.assert_close(critic(x, y), expected)
    u, v, sim = critic.kernel_form(critic.embed_x(x), critic.embed_y(y))
    torch.testing.assert_close(sim(u, v), expected)
    torch.testing.assert_close(critic.pair_scores(x[:6], y[:6]), expected[:6, :6].diagonal())
