"""Run a function on ``world`` gloo ranks in spawned processes (shared by the distributed tests).

``run_ranks(target, world, tmp_path, *args)`` starts ``target(rank, world, *args)`` in ``world``
processes (``spawn``) inside a file-rendezvous gloo group, waits at most ``timeout`` seconds and
fails the test when a rank hangs or exits non-zero. Targets live in importable test modules
(spawn pickles by name).

Teardown order matters (it was the cause of random ``exit -6`` aborts): ``target`` returns
first, so its DDP model and autograd graphs (which hold the process group) are released; then
:func:`infomax.dist.shutdown` destroys the group, and each rank checks that gloo's worker
threads are gone, i.e. that the group was really freed before the interpreter exits.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from infomax import dist


def init_gloo(rank: int, world: int, init_file: str) -> None:
    """Join the file-rendezvous gloo group of the test (one CPU thread per rank)."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )


def gloo_threads() -> list[str]:
    """Names of this process's gloo threads (Linux ``/proc``; empty elsewhere)."""
    names = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return []
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:  # the thread ended meanwhile
            continue
        if "gloo" in name:
            names.append(name)
    return names


def _rank_main(
    target: Callable[..., None], rank: int, world: int, init_file: str, args: tuple[Any, ...]
) -> None:
    init_gloo(rank, world, init_file)
    try:
        target(rank, world, *args)
    finally:
        dist.shutdown()
    left = gloo_threads()
    if left:
        raise RuntimeError(
            f"rank {rank}: gloo threads {left} outlive shutdown(): the process group is still "
            "referenced, and may abort the process at interpreter exit"
        )


def run_ranks(
    target: Callable[..., None], world: int, tmp_path: Path, *args: Any, timeout: float = 120.0
) -> None:
    """Spawn ``world`` ranks of ``target`` and require that all exit 0 within ``timeout`` s."""
    ctx = mp.get_context("spawn")
    init_file = str(tmp_path / f"init-{target.__name__}")
    procs = [
        ctx.Process(target=_rank_main, args=(target, r, world, init_file, args))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=timeout)
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
    if hung:
        pytest.fail(f"{len(hung)} distributed worker(s) of {target.__name__} timed out")
    codes = [p.exitcode for p in procs]
    assert all(c == 0 for c in codes), f"{target.__name__} exit codes {codes}"
