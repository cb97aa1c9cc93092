"""Slow check of SPEC §7 on MNIST (``pytest -m slow``; about a minute on one core).

Noise-injected DIM, Gaussian target, ``d = 16``, the settings of the documented batch-norm sweep
(docs/dm.md: full 60k training set, 5 epochs). With ``σ = 1`` (where the ceiling
``(d/2) log(1 + 1/σ²)`` equals ``log K``) the held-out representation is much closer to
``N(0, I)`` than with ``σ = 0``, which fails the energy test at ``n = 200``, and the held-out
InfoNCE estimate stays below the ceiling.

This test used to assert that ``σ = 1`` *passes* the energy test (the documented run gave
p = 0.50). That run's encoder was not seeded. Seeded, seeds 0, 1 and 2 give p = 0.025, 0.030
and 0.015 at ``σ = 1`` (energy 0.022-0.027) against p = 0.005 at ``σ = 0`` (energy
0.059-0.214), so only the direction and its size are asserted.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from infomax.dm import DMConfig, train_dm

MNIST = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist"


@pytest.mark.slow
def test_mnist_gaussian_target_noise_moves_towards_the_target_and_no_noise_fails():
    if not (MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"{MNIST} not present (real datasets live in ../shared/datasets)")
    torch.set_num_threads(1)
    base = DMConfig(
        data="mnist",
        data_dir=str(MNIST),
        target="gaussian",
        dim=16,
        encoder="mlp",
        views="identity",
        normalization="batch",  # the batch-norm recipe of docs/dm.md's earlier results
        denominator="with-positive",
        match_weight=0.0,  # noise alone, no match penalty
        stroke=0.0,
        epochs=5,
        lr=3e-3,
        probe_subset=10_000,
        test_subset=5_000,
        dm_sizes=(200,),
        progress=False,
        device="cpu",
    )
    noisy, _ = train_dm(replace(base, sigma=1.0))
    clean, _ = train_dm(replace(base, sigma=0.0))
    assert noisy["energy"] < 0.5 * clean["energy"], (noisy, clean)
    assert noisy["sliced_w2"] < clean["sliced_w2"], (noisy, clean)
    assert not clean["energy_pass"], clean
    assert noisy["mi_estimate"] <= noisy["capacity"] + 2 * noisy["mi_stderr"]
