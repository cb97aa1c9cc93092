"""Distributed training (2 gloo ranks on CPU): same loss and gradients as one process on the
concatenated batch, MoCo's queue fed by all ranks, exact resume, and no hang when a rank fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from dist_helpers import run_ranks
from infomax import dist
from infomax.augment import build_augment, to_float
from infomax.models import MLPEncoder
from infomax.ssl import MoCoV2, SimCLR
from infomax.ssl.losses import Objective
from infomax.ssl.trainer import EpochBatches
from infomax.train import TrainConfig, fit, load_checkpoint

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed unavailable"
)

WORLD, N_GLOBAL, IN_DIM = 2, 8, 12


def _simclr(objective: str, memory_efficient: bool = False) -> nn.Module:
    torch.manual_seed(0)
    enc = MLPEncoder(IN_DIM, hidden=10)
    obj = Objective(objective, memory_efficient=memory_efficient)
    return SimCLR(enc, objective=obj, proj_dim=6, proj_hidden=10).double()


def _views() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(N_GLOBAL, IN_DIM, generator=g, dtype=torch.float64)
    return x1, x1 + 0.3 * torch.randn(N_GLOBAL, IN_DIM, generator=g, dtype=torch.float64)


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _loss_and_grad_worker(rank: int, world: int, out: str, objective: str, tiled: bool) -> None:
    model = dist.convert_sync_batchnorm(_simclr(objective, tiled))
    ddp = nn.parallel.DistributedDataParallel(model)
    x1, x2 = _views()
    rows = slice(rank * N_GLOBAL // world, (rank + 1) * N_GLOBAL // world)
    loss = ddp(x1[rows], x2[rows])
    loss.backward()  # DDP averages the parameter gradients over ranks
    mean_loss = torch.tensor(dist.all_reduce_mean(float(loss.detach())), dtype=torch.float64)
    torch.save({"loss": mean_loss, **_grads(model)}, f"{out}/rank{rank}.pt")


@pytest.mark.parametrize("tiled", [False, True], ids=["dense", "tiled"])
@pytest.mark.parametrize("objective", ["infonce", "pearson"])
def test_simclr_two_ranks_equal_one_process(tmp_path: Path, objective: str, tiled: bool) -> None:
    """Each rank: its half of the batch, columns gathered (the tiled kernels gather inside)."""
    run_ranks(_loss_and_grad_worker, WORLD, tmp_path, str(tmp_path), objective, tiled)
    model = _simclr(objective)
    loss = model(*_views())
    loss.backward()
    expected = _grads(model)
    assert len(expected) > 10  # encoder, BN and head parameters all have gradients
    for r in range(WORLD):
        got = torch.load(tmp_path / f"rank{r}.pt", weights_only=True)
        torch.testing.assert_close(got.pop("loss"), loss.detach(), rtol=1e-12, atol=1e-12)
        assert got.keys() == expected.keys()
        for name, g in expected.items():
            torch.testing.assert_close(got[name], g, rtol=1e-10, atol=1e-12, msg=name)


def test_without_sync_bn_the_gradient_differs(tmp_path: Path) -> None:
    """The equality above needs global batch-norm statistics: per-rank BN is a different
    function of the batch (this guards the test against passing for a trivial reason)."""
    model = _simclr("infonce")
    x1, x2 = _views()
    half = N_GLOBAL // 2
    split = 0.5 * (model(x1[:half], x2[:half]) + model(x1[half:], x2[half:]))
    assert not torch.allclose(split, model(x1, x2))


def _moco_queue_worker(rank: int, world: int, out: str) -> None:
    torch.manual_seed(0)
    model = MoCoV2(MLPEncoder(IN_DIM, hidden=10), proj_dim=6, proj_hidden=10, queue_size=16)
    x1, x2 = (v.float() for v in _views())
    rows = slice(rank * N_GLOBAL // world, (rank + 1) * N_GLOBAL // world)
    before = int(model.queue.ptr)
    model(x1[rows], x2[rows])
    keys = nn.functional.normalize(model.keys(x2[rows]), dim=1)
    torch.save(
        {"queue": model.queue.keys.clone(), "keys": keys, "ptr": model.queue.ptr - before},
        f"{out}/moco{rank}.pt",
    )


def test_mocov2_enqueues_the_keys_of_all_ranks(tmp_path: Path) -> None:
    run_ranks(_moco_queue_worker, WORLD, tmp_path, str(tmp_path))
    res = [torch.load(tmp_path / f"moco{r}.pt", weights_only=True) for r in range(WORLD)]
    all_keys = torch.cat([r["keys"] for r in res])
    for r in res:
        assert int(r["ptr"]) == N_GLOBAL  # both ranks' keys went in
        torch.testing.assert_close(r["queue"][:N_GLOBAL], all_keys)  # in rank order
    torch.testing.assert_close(res[0]["queue"], res[1]["queue"])  # one queue on every rank


class _Crash(RuntimeError):
    pass


def _resume_worker(rank: int, world: int, out: str) -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8, generator=g)
    aug = build_augment("digits")

    def setup() -> nn.Module:
        torch.manual_seed(0)
        return SimCLR(MLPEncoder(64, hidden=16), proj_dim=8, proj_hidden=16)

    def batches(epoch: int) -> EpochBatches:
        return EpochBatches(images, 16, 0, epoch, rank, world)  # 4 global steps per epoch

    def loss_fn(m: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        x = to_float(batch)
        return m(aug(x), aug(x))

    cfg = TrainConfig(epochs=2, lr=1e-2, progress=False, sync_batchnorm=True)
    full = setup()
    fit(full, batches, loss_fn, cfg, out_dir=Path(out) / "full")

    def crash(m: nn.Module, step: int) -> None:
        if step == 5:  # first step of epoch 2, on every rank
            raise _Crash

    try:
        fit(setup(), batches, loss_fn, cfg, out_dir=Path(out) / "split", after_step=crash)
    except _Crash:
        pass
    dist.barrier()
    ckpt = load_checkpoint(Path(out) / "split" / "checkpoint.pt")
    assert ckpt["epoch"] == 1 and len(ckpt["rng_ranks"]) == world
    torch.manual_seed(1234 + rank)  # disturb the generators: resume must restore them
    resumed = setup()
    fit(resumed, batches, loss_fn, cfg, out_dir=Path(out) / "split", resume=True)
    same = all(
        torch.equal(a, b)
        for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True)
    )
    moved = not torch.equal(
        setup().state_dict()["projector.0.weight"], full.state_dict()["projector.0.weight"]
    )
    torch.save({"same": same, "moved": moved}, f"{out}/resume{rank}.pt")


def test_two_rank_resume_gives_the_same_weights(tmp_path: Path) -> None:
    run_ranks(_resume_worker, WORLD, tmp_path, str(tmp_path), timeout=300)
    for r in range(WORLD):
        res = torch.load(tmp_path / f"resume{r}.pt", weights_only=True)
        assert res["moved"], "training did not change the weights"
        assert res["same"], f"rank {r}: resumed weights differ from the uninterrupted run"


FAILING_SCRIPT = textwrap.dedent(
    """
    import time
    import torch
    from torch import nn
    from infomax import dist
    from infomax.train import TrainConfig, fit

    torch.set_num_threads(1)
    with dist.process_group(device="cpu"):
        torch.manual_seed(0)
        net = nn.Linear(4, 1)
        data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(10_000)]

        def loss_fn(m, batch):
            if dist.rank() == 1 and loss_fn.calls == 3:
                raise RuntimeError("rank 1 fails on purpose")
            loss_fn.calls += 1
            return ((m(batch[0]) - batch[1]) ** 2).mean()

        loss_fn.calls = 0
        fit(net, lambda e: data, loss_fn, TrainConfig(epochs=1000, progress=False))
    """
)


def test_a_failing_rank_ends_the_torchrun_job_without_waiting_for_the_timeout(
    tmp_path: Path,
) -> None:
    """The surviving rank must not sit in a collective until ``DEFAULT_TIMEOUT_S`` (600 s):
    the job has to end well before that (a hang detector, not a timing measurement)."""
    script = tmp_path / "fail.py"
    script.write_text(FAILING_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    assert dist.DEFAULT_TIMEOUT_S >= 600
    try:
        proc = subprocess.run(
            [*cmd, str(script)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the job was still running 300 s after a rank failed")
    assert proc.returncode != 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "rank 1 fails on purpose" in proc.stdout + proc.stderr


def test_convert_sync_batchnorm_keeps_parameters_and_matches_batchnorm_alone() -> None:
    torch.manual_seed(0)
    model = MoCoV2(MLPEncoder(IN_DIM, hidden=10), proj_dim=6, proj_hidden=10, queue_size=8)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    x1, x2 = (v.float() for v in _views())
    ref = model(x1, x2)
    params_before = dict(model.named_parameters())
    n_bn = sum(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    dist.convert_sync_batchnorm(model)
    assert n_bn == 6  # encoder 2 + projector 1, online and momentum branches
    assert sum(isinstance(m, dist.GlobalBatchNorm) for m in model.modules()) == n_bn
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == frozen
    assert all(params_before[n] is p for n, p in model.named_parameters())
    torch.manual_seed(0)
    twin = MoCoV2(MLPEncoder(IN_DIM, hidden=10), proj_dim=6, proj_hidden=10, queue_size=8)
    twin(x1, x2)  # same BN running-stat updates and queue as `model` before conversion
    twin.load_state_dict(model.state_dict())
    torch.testing.assert_close(model(x1, x2), twin(x1, x2))  # one process: plain batch norm
    assert ref.isfinite()


def test_torchrun_train_mocov2_sync_bn(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    args = ["-m", "infomax", "train", "mocov2", "--data", "digits", "--epochs", "1"]
    args += ["--batch-size", "128", "--sync-bn", "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    import json

    results = json.loads((out / "results.json").read_text())
    assert results["results"]["world_size"] == 2
    assert results["config"]["sync_batchnorm"] is True
    assert 0.5 < results["results"]["linear_probe_acc"] <= 1.0
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["world_size"] == 2 and len(ckpt["rng_ranks"]) == 2


# (bound, critic, memory_efficient): dense score-row blocks, or the tiled kernels' shares
ESTIMATE_CASES = [
    ("flo", "dot", False),
    ("tuba", "joint", False),
    ("mine", "cosine", False),
    ("flo", "dot", True),
    ("tuba", "bilinear", True),
    ("js", "gaussian", True),
]


def _estimate_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(600, 3, generator=g, dtype=torch.float64)
    return x, x + 0.7 * torch.randn(600, 3, generator=g, dtype=torch.float64)


def _estimate(bound: str, critic: str, memory_efficient: bool, cap: bool = True) -> object:
    """The score cap applies to dense evaluation only (the kernels never hold the scores), so
    a tiled run is compared with a dense one-process run without the cap."""
    from infomax.estimate import estimate_mi

    x, y = _estimate_data()
    kw = {"batch_size": 40, "steps": 40, "eval_every": 10, "progress": False, "hidden": 16}
    cap = cap and not memory_efficient
    return estimate_mi(x, y, bound, critic, memory_efficient=memory_efficient, cap_scores=cap, **kw)


def _estimate_worker(rank: int, world: int, out: str) -> None:
    res = {}
    for bound, critic, tiled in ESTIMATE_CASES:
        est = _estimate(bound, critic, tiled)
        res[f"{bound}/{critic}/{tiled}"] = torch.tensor(
            [est.mi, est.train_mi] + [h["val"] for h in est.history]  # type: ignore[attr-defined]
        )
    torch.save(res, f"{out}/estimate{rank}.pt")


def test_estimate_mi_two_ranks_equals_one_process(tmp_path: Path) -> None:
    run_ranks(_estimate_worker, WORLD, tmp_path, str(tmp_path), timeout=300)
    ranks = [torch.load(tmp_path / f"estimate{r}.pt", weights_only=True) for r in range(WORLD)]
    for bound, critic, tiled in ESTIMATE_CASES:
        est = _estimate(bound, critic, False, cap=not tiled)  # one process, dense: reference
        expected = torch.tensor([est.mi, est.train_mi] + [h["val"] for h in est.history])  # type: ignore[attr-defined]
        for r in ranks:
            # float32 training: only the order of summation differs between the runs
            got = r[f"{bound}/{critic}/{tiled}"]
            torch.testing.assert_close(got, expected, rtol=2e-3, atol=2e-3)


def test_epoch_batches_give_each_global_step_the_same_images_for_any_world_size() -> None:
    images = torch.arange(103, dtype=torch.uint8).reshape(103, 1, 1, 1)
    one = [b.flatten().tolist() for b in EpochBatches(images, 24, seed=5, epoch=2)]
    for world in (2, 3, 4):
        ranks = [list(EpochBatches(images, 24, 5, 2, r, world)) for r in range(world)]
        assert all(len(r) == len(one) == 103 // 24 for r in ranks)
        for step, expected in enumerate(one):
            got = sorted(x for r in ranks for x in r[step].flatten().tolist())
            assert got == sorted(expected), (world, step)
    other_epoch = [b.flatten().tolist() for b in EpochBatches(images, 24, seed=5, epoch=3)]
    assert other_epoch != one
    with pytest.raises(ValueError, match="divisible"):
        EpochBatches(images, 25, 0, 0, 0, 2)
