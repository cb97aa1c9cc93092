"""Shared by the DM test modules: one torch thread per test, and a small, fast configuration."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from infomax.dm import DMConfig


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Autouse in every module that imports it: the tests run on one torch thread."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny_dm_config(**overrides: Any) -> DMConfig:
    """Synthetic data, d = 2, 2 epochs of batch 128 on the CPU, DM tests at n = 200 with 20
    permutations, two augmented views; ``overrides`` replace any field."""
    base: dict[str, Any] = dict(
        data="synthetic",
        dim=2,
        epochs=2,
        batch_size=128,
        progress=False,
        device="cpu",
        dm_sizes=(200,),
        permutations=20,
        views="augment",
    )
    return DMConfig(**{**base, **overrides})
