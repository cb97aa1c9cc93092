"""Run a function on ``world`` gloo ranks in spawned processes (shared by the distributed tests).

``run_ranks(target, world, tmp_path, *args)`` starts ``target(rank, world, init_file, *args)``
in ``world`` processes (``spawn``), waits at most ``timeout`` seconds and fails the test when a
rank hangs or exits non-zero. Targets live in importable test modules (spawn pickles by name).
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch


def init_gloo(rank: int, world: int, init_file: str) -> None:
    """Join the file-rendezvous gloo group of the test (one CPU thread per rank)."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )


def run_ranks(
    target: Callable[..., None], world: int, tmp_path: Path, *args: Any, timeout: float = 120.0
) -> None:
    """Spawn ``world`` ranks of ``target`` and require that all exit 0 within ``timeout`` s."""
    ctx = mp.get_context("spawn")
    init_file = str(tmp_path / f"init-{target.__name__}")
    procs = [ctx.Process(target=target, args=(r, world, init_file, *args)) for r in range(world)]
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
