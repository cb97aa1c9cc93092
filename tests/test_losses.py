"""Drop-in loss modules of ``infomax.losses`` against references written here (float64):
a plain-torch SimCLR NT-Xent, a double loop over SPEC §3's f-MICL with the generators typed out
again, 2 gloo ranks against one process on the concatenated batch, and bad input."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dist_helpers import run_ranks
from infomax import dist
from infomax.losses import BoundLoss, FMICLLoss, InfoNCELoss, NTXentLoss

F64 = torch.float64


def _views(b: int, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z0 = torch.randn(b, d, generator=g, dtype=F64)
    z1 = z0 + 0.7 * torch.randn(b, d, generator=g, dtype=F64)
    return z0.requires_grad_(True), z1.requires_grad_(True)


def simclr_reference(z0: torch.Tensor, z1: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCLR's loss as its paper writes it: cross-entropy of each of the 2B views' positive
    (the other view) against its 2B − 1 non-self columns of the cosine matrix over τ."""
    z = F.normalize(torch.cat([z0, z1]), dim=1)
    sim = z @ z.T / tau
    n2 = z.shape[0]
    sim = sim.masked_fill(torch.eye(n2, dtype=torch.bool), float("-inf"))
    labels = (torch.arange(n2) + n2 // 2) % n2
    return F.cross_entropy(sim, labels)


def _grads(loss: torch.Tensor, *ts: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(loss, ts)


@pytest.mark.parametrize("impl", ["dense", "tiled"])
@pytest.mark.parametrize("tau", [0.07, 0.5, 1.0])
@pytest.mark.parametrize("b", [2, 8, 33, 256])
def test_ntxent_equals_plain_torch_simclr(b: int, tau: float, impl: str) -> None:
    z0, z1 = _views(b, seed=b)
    ref = simclr_reference(z0, z1, tau)
    got = NTXentLoss(temperature=tau, impl=impl, tile_size=16)(z0, z1)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    for g, e in zip(_grads(got, z0, z1), _grads(ref, z0, z1), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-8, atol=1e-12)


def test_ntxent_tiled_without_the_symmetric_kernel_equals_reference() -> None:
    z0, z1 = _views(20, seed=3)
    ref = simclr_reference(z0, z1, 0.3)
    got = NTXentLoss(temperature=0.3, impl="tiled", tile_size=(7, 5))(z0, z1)  # 3-GEMM path
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------------
# f-MICL: SPEC §3 as a double loop, with each generator f and its derivative typed out again


A_TSALLIS = 2.0
GENERATORS = {
    "kl": (lambda u: u * math.log(u), lambda u: 1 + math.log(u)),
    "js": (
        lambda u: u * math.log(u) - (u + 1) * math.log((u + 1) / 2),
        lambda u: math.log(2 * u / (u + 1)),
    ),
    "pearson": (lambda u: (u - 1) ** 2, lambda u: 2 * (u - 1)),
    "sqhellinger": (lambda u: (math.sqrt(u) - 1) ** 2, lambda u: 1 - 1 / math.sqrt(u)),
    "tsallis": (
        lambda u: (u**A_TSALLIS - u) / (A_TSALLIS - 1),
        lambda u: (A_TSALLIS * u ** (A_TSALLIS - 1) - 1) / (A_TSALLIS - 1),
    ),
    "vlc": (lambda u: (u - 1) ** 2 / (u + 1), lambda u: 1 - 4 / (u + 1) ** 2),
}


def _score(a: list[float], b: list[float], similarity: str, tau: float) -> float:
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
    ua, ub = [x / na for x in a], [x / nb for x in b]
    if similarity == "cosine":
        return sum(x * y for x, y in zip(ua, ub, strict=True)) / tau
    return -sum((x - y) ** 2 for x, y in zip(ua, ub, strict=True)) / (2 * tau)  # f-Gaussian


def fmicl_reference(
    z0: torch.Tensor, z1: torch.Tensor, name: str, similarity: str, tau: float, alpha: float
) -> float:
    """−mean over the 2B anchors of f′(r⁺) − α mean_{j ∉ {i, i±B}} [r f′(r) − f(r)], r = e^S."""
    f, fp = GENERATORS[name]
    z = torch.cat([z0, z1]).tolist()
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        pos = (i + n2 // 2) % n2
        r_pos = math.exp(_score(z[i], z[pos], similarity, tau))
        negs = [j for j in range(n2) if j not in (i, pos)]
        conj = 0.0
        for j in negs:
            r = math.exp(_score(z[i], z[j], similarity, tau))
            conj += r * fp(r) - f(r)
        total += fp(r_pos) - alpha * conj / len(negs)
    return -total / n2


@pytest.mark.parametrize("similarity", ["cosine", "gaussian"])
@pytest.mark.parametrize("name", list(GENERATORS))
def test_fmicl_equals_double_loop_and_dense_equals_tiled(name: str, similarity: str) -> None:
    z0, z1 = _views(6, d=4, seed=7)
    kw = {"divergence": name, "similarity": similarity, "temperature": 0.6, "alpha": 0.8}
    dense = FMICLLoss(**kw, impl="dense")(z0, z1)
    tiled = FMICLLoss(**kw, impl="tiled", tile_size=(5, 3))(z0, z1)
    ref = fmicl_reference(z0, z1, name, similarity, 0.6, 0.8)
    assert float(dense.detach()) == pytest.approx(ref, rel=1e-10, abs=1e-12)
    torch.testing.assert_close(tiled, dense, rtol=1e-10, atol=1e-12)
    for g, e in zip(_grads(tiled, z0, z1), _grads(dense, z0, z1), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-8, atol=1e-12)


def test_fmicl_gradient_matches_finite_differences() -> None:
    z0, z1 = _views(4, d=3, seed=11)
    loss_fn = FMICLLoss("pearson", "gaussian", 0.5)
    assert torch.autograd.gradcheck(lambda a, b: loss_fn(a, b), (z0, z1))


def test_infonce_paired_one_and_two_sided() -> None:
    z0, z1 = _views(9, seed=5)
    s = F.normalize(z0, dim=1) @ F.normalize(z1, dim=1).T / 0.4
    labels = torch.arange(9)
    one = InfoNCELoss(temperature=0.4)(z0, z1)
    torch.testing.assert_close(one, F.cross_entropy(s, labels))
    two = InfoNCELoss(temperature=0.4, symmetric=True, impl="tiled", tile_size=4)(z0, z1)
    ref = 0.5 * (F.cross_entropy(s, labels) + F.cross_entropy(s.T, labels))
    torch.testing.assert_close(two, ref)
    queue = torch.randn(13, 5, dtype=F64)
    pos = (F.normalize(z0, dim=1) * F.normalize(z1, dim=1)).sum(1, keepdim=True) / 0.4
    logits = torch.cat([pos, F.normalize(z0, dim=1) @ F.normalize(queue, dim=1).T / 0.4], 1)
    got = InfoNCELoss(temperature=0.4)(z0, z1, negatives=queue)
    torch.testing.assert_close(got, F.cross_entropy(logits, torch.zeros(9, dtype=torch.long)))


@pytest.mark.parametrize("bound", ["infonce", "nwj", "dv", "js", "smile", "flo", "tuba", "mine"])
def test_bound_loss_is_the_registry_loss(bound: str) -> None:
    from infomax.registry import BOUNDS

    z0, z1 = _views(12, d=4, seed=2)
    torch.manual_seed(0)
    loss_fn = BoundLoss(bound, dim=4, hidden=8).double()
    s = z0 @ z1.T
    spec = BOUNDS.get(bound)
    extra: dict[str, torch.Tensor] = {}
    if bound == "flo":
        extra["u"] = loss_fn.head(torch.cat([z0, z1], 1)).squeeze(1)  # type: ignore[misc]
    if bound == "tuba":
        extra["baseline"] = loss_fn.head(z1).squeeze(1)  # type: ignore[misc]
    if bound == "mine":
        m = (
            torch.exp(
                torch.logsumexp(
                    s.masked_fill(torch.eye(12, dtype=torch.bool), -math.inf).flatten(), 0
                )
            )
            / 132
        )
        ref = -spec.estimate(s)  # first step: EMA = m, forward = DV
        torch.testing.assert_close(loss_fn(z0, z1), ref)
        torch.testing.assert_close(loss_fn.mine.ema, m.detach())  # type: ignore[union-attr]
        return
    torch.testing.assert_close(loss_fn(z0, z1), spec.loss(s, **extra))
    if bound not in ("flo", "tuba"):
        tiled = BoundLoss(bound, impl="tiled", tile_size=5)
        torch.testing.assert_close(tiled(z0, z1), spec.loss(s))


# --------------------------------------------------------------------------------------------
# Two gloo ranks = one process on the concatenated batch

B_LOCAL, WORLD = 4, 2


def _loss_modules() -> dict[str, torch.nn.Module]:
    modules: dict[str, torch.nn.Module] = {
        "ntxent-dense": NTXentLoss(0.5, impl="dense"),
        "ntxent-tiled": NTXentLoss(0.5, impl="tiled", tile_size=3),
        "infonce-sym": InfoNCELoss(0.5, symmetric=True),
        "nwj-tiled": BoundLoss("nwj", impl="tiled", tile_size=3),
        "dv-dense": BoundLoss("dv", impl="dense"),
    }
    for name in GENERATORS:  # every divergence × similarity, dense and tiled
        for sim in ("cosine", "gaussian"):
            for impl in ("dense", "tiled"):
                loss_fn = FMICLLoss(name, sim, 0.7, 0.9, impl=impl, tile_size=3)
                modules[f"fmicl-{name}-{sim}-{impl}"] = loss_fn
    return modules


def _loss_worker(rank: int, world: int, out_dir: str) -> None:
    rows = slice(rank * B_LOCAL, (rank + 1) * B_LOCAL)
    out: dict[str, torch.Tensor] = {}
    for name, loss_fn in _loss_modules().items():
        z0, z1 = _views(B_LOCAL * WORLD, seed=1)
        a, b = z0.detach()[rows].requires_grad_(True), z1.detach()[rows].requires_grad_(True)
        loss = loss_fn(a, b)
        loss.backward()
        out[f"{name}/loss"] = loss.detach()
        out[f"{name}/z0"], out[f"{name}/z1"] = a.grad, b.grad  # type: ignore[assignment]
        with dist.local_only():  # gather_distributed=False: this rank's rows alone
            out[f"{name}/alone"] = loss_fn(a.detach(), b.detach())
    torch.save(out, os.path.join(out_dir, f"losses{rank}.pt"))


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_two_ranks_equal_one_process(tmp_path: Path) -> None:
    run_ranks(_loss_worker, WORLD, tmp_path, str(tmp_path))
    ranks = [torch.load(tmp_path / f"losses{r}.pt", weights_only=True) for r in range(WORLD)]
    for name, loss_fn in _loss_modules().items():
        z0, z1 = _views(B_LOCAL * WORLD, seed=1)
        ref = loss_fn(z0, z1)
        g0, g1 = _grads(ref, z0, z1)
        mean = sum(r[f"{name}/loss"] for r in ranks) / WORLD
        torch.testing.assert_close(mean, ref.detach(), rtol=1e-10, atol=1e-12, msg=name)
        for r, out in enumerate(ranks):
            rows = slice(r * B_LOCAL, (r + 1) * B_LOCAL)
            # DDP averages the ranks' parameter gradients: world × (1/world) = the global one
            torch.testing.assert_close(out[f"{name}/z0"] / WORLD, g0[rows], msg=name)
            torch.testing.assert_close(out[f"{name}/z1"] / WORLD, g1[rows], msg=name)
            alone = loss_fn(z0.detach()[rows], z1.detach()[rows])
            torch.testing.assert_close(out[f"{name}/alone"], alone, msg=name)


# --------------------------------------------------------------------------------------------
# Bad input: one clear ValueError; no process group: one process


@pytest.mark.parametrize(
    ("make", "args", "match"),
    [
        (lambda: NTXentLoss(), (torch.randn(4, 3), torch.randn(5, 3)), "one shape"),
        (lambda: NTXentLoss(), (torch.randn(4, 3), torch.randn(4, 2)), "one shape"),
        (lambda: NTXentLoss(), (torch.randn(4), torch.randn(4)), r"\[B, d\]"),
        (lambda: NTXentLoss(), (torch.randn(1, 3), torch.randn(1, 3)), "B >= 2"),
        (lambda: FMICLLoss(), (torch.randn(4, 3), torch.full((4, 3), math.nan)), "NaN or Inf"),
        (lambda: InfoNCELoss(), (torch.randn(4, 3), torch.full((4, 3), math.inf)), "NaN or Inf"),
        (lambda: NTXentLoss(), (torch.ones(4, 3, dtype=torch.long),) * 2, "floating"),
        (lambda: InfoNCELoss(), (torch.randn(4, 3), torch.randn(4, 3), torch.randn(6, 2)), "Q"),
    ],
)
def test_bad_embeddings_are_one_value_error(make, args, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        make()(*args)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: NTXentLoss(temperature=0.0), "temperature"),
        (lambda: NTXentLoss(temperature=-1.0), "temperature"),
        (lambda: FMICLLoss(temperature=math.nan), "temperature"),
        (lambda: FMICLLoss(divergence="hellinger"), "unknown objective"),
        (lambda: FMICLLoss(divergence="infonce"), "NTXentLoss"),
        (lambda: FMICLLoss(similarity="euclid"), "unknown similarity"),
        (lambda: FMICLLoss(alpha=0.0), "alpha"),
        (lambda: NTXentLoss(impl="gpu"), "impl"),
        (lambda: BoundLoss("flo"), "dim"),
        (lambda: BoundLoss("nope"), "valid names"),
        (lambda: BoundLoss("mine", impl="tiled"), "tiled"),
    ],
)
def test_bad_settings_are_one_value_error(make, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        make()


def test_without_process_group_the_losses_run_as_one_process() -> None:
    assert not dist.is_distributed()
    z0, z1 = _views(6)
    ref = simclr_reference(z0, z1, 0.5)
    for gather in (True, False):
        torch.testing.assert_close(NTXentLoss(gather_distributed=gather)(z0, z1), ref)


README_SNIPPET = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_custom_loop_snippet_runs() -> None:
    """The README's "your own loop" snippet, run as written (≤ 15 lines)."""
    text = README_SNIPPET.read_text()
    start = text.index("<!-- custom-loop -->")
    block = text[start:].split("```python", 1)[1].split("```", 1)[0]
    lines = [line for line in block.strip().splitlines() if line.strip()]
    assert len(lines) <= 15, f"the custom-loop snippet has {len(lines)} lines"
    namespace: dict[str, object] = {}
    exec(compile(block, "README.md:custom-loop", "exec"), namespace)  # noqa: S102
    losses = namespace["history"]
    assert isinstance(losses, list) and sum(losses[-20:]) < sum(losses[:20])
