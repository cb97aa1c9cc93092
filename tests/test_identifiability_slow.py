"""Acceptance runs of the identifiability toolkit (SPEC §5 targets); minutes of CPU each.

Run with ``pytest -m slow -s tests/test_identifiability_slow.py`` (``-s`` prints the metrics and
the CPU seconds; time is reported, never asserted). The settings are those of the
commands in ``docs/identifiability.md`` (the sphere run is ``infomax identify``'s defaults).
"""

from __future__ import annotations

import pytest
import torch

from infomax.identifiability import IdentifyConfig, run_identify

pytestmark = pytest.mark.slow


def test_matched_sphere_recovers_latents_linearly() -> None:
    """Sphere, n = 10, vMF(κ = 10), cosine critic with τ = 1/κ, 3-layer invertible MLP."""
    torch.set_num_threads(2)
    res = run_identify(IdentifyConfig(space="sphere", conditional="vmf"), progress=False)
    print(f"sphere: {res.metrics}, untrained {res.untrained}, CPU {res.cpu_seconds:.0f} s")
    assert res.metrics["r2_linear"] >= 0.99, res.metrics
    assert res.untrained["r2_linear"] < 0.9, res.untrained


def test_box_laplace_l1_recovers_latents_up_to_permutation() -> None:
    """Box [0, 1]^10, Laplace(b = 0.1) conditional, L1 critic: MCC ≥ 0.95."""
    torch.set_num_threads(2)
    cfg = IdentifyConfig(space="box", conditional="laplace", steps=5000, eval_every=500)
    res = run_identify(cfg, progress=False)
    print(f"box: {res.metrics}, untrained {res.untrained}, CPU {res.cpu_seconds:.0f} s")
    assert res.metrics["mcc"] >= 0.95, res.metrics
    assert res.untrained["mcc"] < 0.9, res.untrained


def test_shapes_world_recovers_every_latent_from_pixels() -> None:
    """The image world (32×32 RGB, six latents in the box, Laplace(b = 0.1), L1 critic): the
    command of docs/identifiability.md, "From pixels"; every latent's held-out linear R² and
    matched correlation ≥ 0.90, the untrained CNN far below."""
    torch.set_num_threads(2)
    cfg = IdentifyConfig(
        world="shapes",
        space="box",
        conditional="laplace",
        scale=0.1,
        steps=2500,
        batch=256,
        eval_every=500,
    )
    res = run_identify(cfg, progress=False)
    print(f"shapes: {res.metrics} {res.per_latent}, untrained {res.untrained}")
    print(f"CPU {res.cpu_seconds:.0f} s")
    assert min(res.per_latent["r2_linear"]) >= 0.90, res.per_latent
    assert min(res.per_latent["mcc"]) >= 0.90, res.per_latent
    assert res.untrained["mcc"] < 0.6 and res.untrained["r2_linear"] < 0.6, res.untrained
