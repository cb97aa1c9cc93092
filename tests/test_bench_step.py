"""benchmarks/bench_step.py: its plain-torch references against infomax, and a smoke run."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from infomax.critics import DotCritic
from infomax.losses import InfoNCELoss, NTXentLoss
from infomax.objectives import MIObjective

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_step.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_step", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def isolated() -> Iterator[None]:
    """An in-process run may install lightly's torchvision stand-in and set torch's threads:
    undo both for the tests that follow."""
    meta_path, modules, threads = list(sys.meta_path), set(sys.modules), torch.get_num_threads()
    try:
        yield
    finally:
        sys.meta_path[:] = meta_path
        for name in set(sys.modules) - modules:
            if name.split(".")[0] in ("torchvision", "lightly"):
                del sys.modules[name]
        torch.set_num_threads(threads)


def _leaves(*shapes: tuple[int, ...], seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64).requires_grad_(True) for s in shapes]


def _value_and_grads(loss: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    return [loss.detach(), *torch.autograd.grad(loss, inputs)]


@pytest.mark.parametrize("temperature", [0.2, 0.5])
@pytest.mark.parametrize("impl", ["dense", "tiled"])
def test_dense_ntxent_matches_infomax_value_and_gradient(
    bench: ModuleType, temperature: float, impl: str
) -> None:
    z0, z1 = _leaves((6, 5), (6, 5), seed=1)
    ref = _value_and_grads(bench.dense_ntxent(z0, z1, temperature), [z0, z1])
    ours = _value_and_grads(NTXentLoss(temperature=temperature, impl=impl)(z0, z1), [z0, z1])
    for a, b in zip(ref, ours, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_dense_ntxent_is_the_textbook_loss(bench: ModuleType) -> None:
    """An explicit loop over the ``2B`` anchors: −log softmax of the other view over j ≠ i."""
    z0, z1 = _leaves((4, 3), (4, 3), seed=2)
    z = torch.nn.functional.normalize(torch.cat([z0, z1]), dim=1).detach()
    n, tau, total = 4, 0.3, 0.0
    for i in range(2 * n):
        others = [j for j in range(2 * n) if j != i]
        logits = torch.stack([z[i] @ z[j] / tau for j in others])
        pos = others.index((i + n) % (2 * n))
        total -= float(torch.log_softmax(logits, 0)[pos])
    value = float(bench.dense_ntxent(z0, z1, tau).detach())
    assert value == pytest.approx(total / (2 * n), rel=1e-12)


@pytest.mark.parametrize("impl", ["dense", "tiled"])
def test_dense_infonce_matches_infomax_value_and_gradient(bench: ModuleType, impl: str) -> None:
    k = 7
    gx, hy = _leaves((k, 4), (k, 4), seed=3)
    ref = _value_and_grads(bench.dense_infonce(gx, hy), [gx, hy])
    loss = InfoNCELoss(temperature=1.0, similarity="dot", impl=impl)(gx, hy)
    for a, b in zip(ref, _value_and_grads(loss, [gx, hy]), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # the benchmark's infomax row: MIObjective's loss is −InfoNCE bound = CE − log K
    objective = MIObjective("infonce", DotCritic(), 4, 4, memory_efficient=impl == "tiled")
    loss = objective.loss(gx, hy)[0] + math.log(k)
    for a, b in zip(ref, _value_and_grads(loss, [gx, hy]), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _rows(payload: dict, part: str) -> dict[tuple[int, str], dict]:
    return {(r["size"], r["impl"]): r for r in payload["summary"][part]}


def test_quick_run_writes_every_row(bench: ModuleType, tmp_path: Path, isolated: None) -> None:
    out = tmp_path / "bs"
    bench.main(["--out", str(out), "--quick", "--in-process"])
    payload = json.loads((out / "results.json").read_text())
    assert (out / "table.md").read_text().count("\n|---|") == 2  # two tables
    assert set(payload["load_average"]) == {"before", "after"}
    assert {"torch", "kornia", "lightly", "torch-mist"} <= set(payload["versions"])
    for part, impls, peer, tol in (
        ("simclr", bench.SSL_IMPLS, "lightly", 1e-4),
        ("mi", bench.MI_IMPLS, "torch-mist", 1e-4),
    ):
        rows = _rows(payload, part)
        size = bench.QUICK["batch_sizes" if part == "simclr" else "mi_batch_sizes"][0]
        assert set(rows) == {(size, impl) for impl in impls}
        for (_, impl), row in rows.items():
            if impl == peer and row["status"] != "ok":  # the peer may be missing here
                assert row["status"].startswith("not installed")
                continue
            assert row["status"] == "ok", row
            assert row["step_ms"] > 0 and 0 < row["loss_share"]
            assert row["diff"] <= tol  # the same loss of the same embeddings
        assert rows[(size, "infomax-tiled")]["path"] == "tiled"
        assert rows[(size, "infomax")]["path"] == "dense"  # auto, at these sizes
        runs = payload["runs"][part]
        ok = [r["result"] for r in runs if r["result"]["status"] == "ok"]
        assert all(len(r["step_times"]) == bench.QUICK["repeats"] for r in ok)


def test_a_run_in_a_fresh_process_measures_memory(bench: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "bs"
    argv = ["--out", str(out), "--quick", "--impls", "--mi-impls", "dense", "--repeats", "1"]
    payload = bench.main(argv)
    (row,) = payload["summary"]["mi"]
    assert payload["summary"]["simclr"] == []
    assert row["status"] == "ok" and row["peak_mb"] >= 0
    assert row["value"] == pytest.approx(payload["runs"]["mi"][0]["result"]["first_nats"])
