"""The image world of the identifiability experiments: the renderer is injective on its domain,
every latent changes the image, the ranges that would break injectivity are refused, and an
identifiability run on pixels writes its metrics and plots."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from infomax.cli import app
from infomax.identifiability.experiment import IdentifyConfig, run_identify
from infomax.identifiability.worlds import SHAPES_RANGES, ShapesWorld, get_world, unit_from_space

runner = CliRunner()


def _grid(levels: int, dim: int) -> torch.Tensor:
    values = torch.linspace(0.0, 1.0, levels)
    return torch.tensor(list(itertools.product(values.tolist(), repeat=dim)))


@pytest.mark.parametrize("size", [32, 64])
def test_distinct_latents_on_a_grid_give_distinct_images(size: int) -> None:
    """Every pair of grid latents (3 levels per latent: 729 points, ≥ 0.5 apart in some
    coordinate) renders to images at positive pixel distance; the smallest distance stays
    well above float rounding."""
    world = get_world("shapes", size=size)
    u = _grid(3, world.dim)
    images = world.render(u).flatten(1).double()
    dist = torch.cdist(images, images)
    dist.fill_diagonal_(math.inf)
    assert float(dist.min()) > 0.05 * math.sqrt(images.shape[1] / 3072)


def test_nearby_latents_also_give_distinct_images() -> None:
    """Random pairs at latent distance ≥ δ = 0.02 (sup norm) differ in pixels; the distance
    grows with the latent distance."""
    world = get_world("shapes")
    gen = torch.Generator().manual_seed(0)
    u = torch.rand(2000, world.dim, generator=gen) * 0.96 + 0.02
    step = (torch.rand(2000, world.dim, generator=gen) - 0.5) * 0.04
    step[torch.arange(2000), torch.randint(0, world.dim, (2000,), generator=gen)] = 0.02
    near = world.render(u) - world.render((u + step).clamp(0, 1))
    far = world.render(u) - world.render((u + 5 * step).clamp(0, 1))
    d_near, d_far = near.flatten(1).norm(dim=1), far.flatten(1).norm(dim=1)
    assert float(d_near.min()) > 0
    assert float((d_far > d_near).float().mean()) > 0.95


@pytest.mark.parametrize("name", list(SHAPES_RANGES))
def test_each_latent_changes_the_image(name: str) -> None:
    world = get_world("shapes")
    k = world.latent_names.index(name)
    u = torch.full((5, world.dim), 0.5)
    u[:, k] = torch.linspace(0, 1, 5)
    images = world.render(u).flatten(1)
    steps = (images[1:] - images[:-1]).norm(dim=1)
    assert bool((steps > 0.1).all()), (name, steps)
    others = torch.full((2, world.dim), 0.5)
    others[1, [i for i in range(world.dim) if i != k]] = 0.9
    assert not torch.equal(world.render(others)[0], world.render(others)[1])


def test_render_is_deterministic_in_range_and_batched() -> None:
    world = get_world("shapes", size=64)
    u = torch.rand(300, world.dim, generator=torch.Generator().manual_seed(1))
    a, b = world.render(u), world.render(u, chunk=7)
    assert a.shape == (300, 3, 64, 64) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert float(a.min()) >= 0 and float(a.max()) <= 1


def test_fixed_latents_sit_mid_range_and_the_sphere_maps_into_the_box() -> None:
    world = get_world("shapes", latents=("x", "angle"))
    assert world.dim == 2
    p = world.physical(torch.tensor([[0.0, 1.0]]))
    assert p["x"].item() == pytest.approx(-0.4) and p["angle"].item() == pytest.approx(math.pi / 2)
    assert p["scale"].item() == pytest.approx(0.4) and p["hue"].item() == pytest.approx(0.175)
    z = torch.nn.functional.normalize(torch.randn(50, 4), dim=1)
    u = unit_from_space(z, "sphere")
    assert float(u.min()) >= 0 and float(u.max()) <= 1
    with pytest.raises(ValueError, match="bounded latents.*'rn'"):
        unit_from_space(z, "rn")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"size": 48}, "image size 48 is not supported; choose one of 32, 64"),
        ({"latents": ("x", "colour")}, "unknown latent 'colour'.*valid: x, y, scale"),
        ({"ranges": {"angle": (0.0, 7.0)}}, "'angle'.*full turn.*non-injective"),
        ({"ranges": {"hue": (0.0, 1.0)}}, "'hue'.*whole hue circle.*non-injective"),
        ({"ranges": {"scale": (0.0, 0.4)}}, "'scale'.*must stay > 0"),
        ({"ranges": {"x": (-0.7, 0.7)}}, "leave the canvas.*non-injective"),
        ({"ranges": {"scale": (0.3, 0.7)}}, "leave the canvas"),
        ({"ranges": {"y": (0.4, -0.4)}}, "'y'.*lo < hi"),
        ({"latents": ()}, "no latents given"),
    ],
)
def test_bad_worlds_are_one_clear_error(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ShapesWorld(**options)


def test_bad_world_settings_of_a_run_are_one_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown image world 'blocks'.*shapes"):
        IdentifyConfig(world="blocks", space="box", conditional="laplace")
    with pytest.raises(ValueError, match="bounded latents"):
        IdentifyConfig(world="shapes", space="rn", conditional="laplace")
    with pytest.raises(ValueError, match="at least 2 varying latents"):
        IdentifyConfig(world="shapes", latents=("x",), space="box", conditional="laplace")
    with pytest.raises(ValueError, match="give world too"):
        IdentifyConfig(latents=("x", "y"))
    world = get_world("shapes")
    with pytest.raises(ValueError, match=r"u must be finite and lie in \[0, 1\]"):
        world.render(torch.full((2, 6), 1.5))
    with pytest.raises(ValueError, match=r"shape \[n, 6\]"):
        world.render(torch.rand(2, 5))


def test_identify_on_pixels_writes_metrics_per_latent_and_plots(tmp_path: Path) -> None:
    cfg = IdentifyConfig(
        world="shapes",
        latents=("x", "hue"),
        space="box",
        conditional="laplace",
        scale=0.1,
        steps=40,
        batch=64,
        eval_every=20,
        eval_samples=200,
        final_samples=300,
        width=8,
    )
    assert cfg.dim == 2 and cfg.label().startswith("shapes 32px: box/")
    result = run_identify(cfg, out=tmp_path, progress=False)
    assert result.per_latent["names"] == ["x", "hue"]
    assert len(result.per_latent["r2_linear"]) == len(result.per_latent["mcc"]) == 2
    assert result.metrics["mcc"] == pytest.approx(sum(result.per_latent["mcc"]) / 2)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["config"]["world"] == "shapes" and "arrays" not in saved["results"]
    for name in ("pairs.png", "latent_scatter.png", "r2_curve.png", "history.csv"):
        assert (tmp_path / name).is_file()


def test_cli_identify_world_and_its_errors(tmp_path: Path, monkeypatch) -> None:
    import infomax.cli.identify as cli_identify

    small_eval = {"eval_samples": 200, "final_samples": 300}  # not options: a quick run
    monkeypatch.setattr(
        cli_identify, "IdentifyConfig", lambda **kw: IdentifyConfig(**kw, **small_eval)
    )
    base = ["identify", "--world", "shapes", "--space", "box", "--conditional", "laplace"]
    small = ["--steps", "10", "--batch", "32", "--eval-every", "10", "--width", "4"]
    ok = runner.invoke(app, [*base, *small, "--latents", "x,y", "--out", str(tmp_path / "r")])
    assert ok.exit_code == 0, ok.output
    assert "raw pixels" in ok.output and "per latent" in ok.output
    for args, match in (
        (["--latents", "x,wobble"], "unknown latent 'wobble'"),
        (["--image-size", "28"], "image size 28 is not supported"),
        (["--world", "blocks"], "unknown image world 'blocks'"),
    ):
        bad = runner.invoke(app, [*base, *small, *args, "--out", str(tmp_path / "bad")])
        assert bad.exit_code == 2 and match in bad.output, bad.output
