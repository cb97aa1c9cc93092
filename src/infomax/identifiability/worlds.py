"""Image worlds: procedural renderers that map a latent vector to an RGB image, so that the
identifiability experiments run on pixels (a small, fast stand-in for 3DIdent, SPEC §5).

``get_world("shapes")`` is :class:`ShapesWorld`: one asymmetric object (an isosceles triangle,
so that rotation is identifiable over its range) on a plain background, rendered anti-aliased
in torch from six latents, each an interval of physical values:

| latent | default range | what it sets |
|---|---|---|
| ``x``, ``y`` | ``[−0.4, 0.4]`` | the object's centre (the canvas is ``[−1, 1]²``) |
| ``scale`` | ``[0.3, 0.5]`` | the distance from the centre to the apex |
| ``angle`` | ``[−π/2, π/2]`` | rotation (radians) |
| ``hue`` | ``[0, 0.35]`` | object hue (HSV, saturation 0.9, value 0.95) |
| ``bg_hue`` | ``[0.5, 0.85]`` | background hue (saturation 0.6, value 0.55) |

The world's input is ``u ∈ [0, 1]^d``, one coordinate per latent (mapped affinely onto its
range); latents left out of ``latents`` are held at the middle of their range. The box space of
:mod:`.spaces` gives ``u`` directly; a point ``z`` of the sphere ``S^{d−1}`` is mapped by
:func:`unit_from_space` to ``u = (z + 1) / 2`` (coordinate-wise, injective).

The renderer is injective on its domain: the object stays entirely inside the canvas
(``max |x|, |y| + scale + 1.5 px ≤ 1``), its scale is positive, the angle range is shorter than
a full turn and each hue range is shorter than the hue circle; a range that breaks one of these
is refused with a ``ValueError`` naming it. The object and the background differ in
saturation and value, so the object is visible at every hue. Images are ``float32 [n, 3, H, W]``
in ``[0, 1]``, ``H = W = size`` (32 or 64).

>>> import torch
>>> world = get_world("shapes")
>>> world.latent_names, world.dim
(('x', 'y', 'scale', 'angle', 'hue', 'bg_hue'), 6)
>>> tuple(world.render(torch.rand(5, 6)).shape)
(5, 3, 32, 32)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..registry import Registry

SIZES = (32, 64)
#: The shape in object coordinates: apex, then the two base corners (clockwise).
TRIANGLE = ((0.0, 1.0), (0.6, -0.6), (-0.6, -0.6))
#: The half-width of the anti-aliased edge, in pixels (a logistic ramp).
EDGE_PX = 0.7
#: How far (pixels) the object must stay inside the canvas edge.
MARGIN_PX = 1.5
#: Default ranges of :class:`ShapesWorld`'s latents (physical units, see the module table).
SHAPES_RANGES: dict[str, tuple[float, float]] = {
    "x": (-0.4, 0.4),
    "y": (-0.4, 0.4),
    "scale": (0.3, 0.5),
    "angle": (-math.pi / 2, math.pi / 2),
    "hue": (0.0, 0.35),
    "bg_hue": (0.5, 0.85),
}
#: (saturation, value) of the object's and the background's colour.
OBJECT_SV, BACKGROUND_SV = (0.9, 0.95), (0.6, 0.55)

WORLDS: Registry[type[ShapesWorld]] = Registry("image world")


def hsv_to_rgb(h: Tensor, s: float, v: float) -> Tensor:
    """RGB ``[n, 3]`` of hues ``h: [n]`` (in turns, ``[0, 1)``) at saturation ``s``, value ``v``
    (kornia's conversion, which takes the hue in radians)."""
    from kornia.color import hsv_to_rgb as kornia_hsv_to_rgb

    hsv = torch.stack([2 * math.pi * h, torch.full_like(h, s), torch.full_like(h, v)], dim=1)
    return kornia_hsv_to_rgb(hsv.view(-1, 3, 1, 1)).view(-1, 3)


def unit_from_space(z: Tensor, space: str) -> Tensor:
    """The world input ``u ∈ [0, 1]^d`` of a latent ``z: [n, d]``: ``z`` itself in the box
    ``[0, 1]^d``, ``(z + 1) / 2`` on the sphere; other spaces have no bounded image."""
    if space == "box":
        return z
    if space == "sphere":
        return (z + 1) / 2
    raise ValueError(
        f"an image world needs bounded latents: space 'box' or 'sphere', not {space!r}"
    )


@WORLDS.register("shapes")
@dataclass(frozen=True)
class ShapesWorld:
    """One anti-aliased triangle on a plain background (module doc): ``latents`` (default all
    of :data:`SHAPES_RANGES`, in that order) vary, each over ``ranges[name]`` (default
    :data:`SHAPES_RANGES`); ``size``: 32 or 64 pixels. ``render(u)`` maps ``u: [n, dim]`` in
    ``[0, 1]`` to images ``[n, 3, size, size]``."""

    latents: tuple[str, ...] = tuple(SHAPES_RANGES)
    size: int = 32
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or self.size not in SIZES:
            raise ValueError(
                f"image size {self.size!r} is not supported; choose one of "
                f"{', '.join(map(str, SIZES))}"
            )
        latents = tuple(str(n).lower() for n in self.latents)
        valid = ", ".join(SHAPES_RANGES)
        for name in (*latents, *self.ranges):
            if name not in SHAPES_RANGES:
                raise ValueError(f"unknown latent {name!r} of world 'shapes'; valid: {valid}")
        if not latents:
            raise ValueError(f"no latents given; choose from {valid}")
        if len(set(latents)) != len(latents):
            raise ValueError(f"latents named twice: {list(latents)}")
        object.__setattr__(self, "latents", latents)
        full: dict[str, tuple[float, float]] = {}
        for name, default in SHAPES_RANGES.items():
            lo, hi = self.ranges.get(name, default)
            full[name] = (float(lo), float(hi))
        object.__setattr__(self, "ranges", full)
        self._check_injective()

    def _check_injective(self) -> None:
        """``ValueError`` for ranges on which two latents would give the same image."""
        r = self.ranges
        for name, (lo, hi) in r.items():
            if not (math.isfinite(lo) and math.isfinite(hi)) or (name in self.latents and lo >= hi):
                raise ValueError(f"latent {name!r}: range [{lo}, {hi}] must be finite with lo < hi")
        if r["scale"][0] <= 0:
            raise ValueError(
                f"latent 'scale': range {list(r['scale'])} must stay > 0 (a zero-size object "
                "hides every other latent)"
            )
        reach = max(abs(v) for name in ("x", "y") for v in r[name]) + r["scale"][1]
        margin = MARGIN_PX * 2 / self.size
        if reach + margin > 1:
            raise ValueError(
                f"position and scale ranges let the object leave the canvas (|x|, |y| up to "
                f"{reach - r['scale'][1]:g} + scale up to {r['scale'][1]:g} + {margin:.3f} "
                "margin > 1): a clipped object makes the renderer non-injective; shrink them"
            )
        if r["angle"][1] - r["angle"][0] >= 2 * math.pi:
            raise ValueError(
                f"latent 'angle': range {list(r['angle'])} spans a full turn or more: the "
                "rotated object repeats (non-injective); keep it shorter than 2π"
            )
        for name in ("hue", "bg_hue"):
            if r[name][1] - r[name][0] >= 1:
                raise ValueError(
                    f"latent {name!r}: range {list(r[name])} spans the whole hue circle or more "
                    "(non-injective); keep it shorter than 1"
                )

    @property
    def latent_names(self) -> tuple[str, ...]:
        """The names of the varying latents, in the order of ``u``'s columns."""
        return self.latents

    @property
    def dim(self) -> int:
        """The number of varying latents (``u``'s width)."""
        return len(self.latents)

    def physical(self, u: Tensor) -> dict[str, Tensor]:
        """Every latent's physical value ``[n]`` for ``u: [n, dim]`` in ``[0, 1]`` (fixed
        latents at the middle of their range)."""
        if u.ndim != 2 or u.shape[1] != self.dim:
            raise ValueError(
                f"u must have shape [n, {self.dim}] ({self.latents}), got {tuple(u.shape)}"
            )
        if not torch.isfinite(u).all() or u.min() < 0 or u.max() > 1:
            raise ValueError("u must be finite and lie in [0, 1] (the world's unit box)")
        n, col = u.shape[0], {name: i for i, name in enumerate(self.latents)}
        out = {}
        for name, (lo, hi) in self.ranges.items():
            t = u[:, col[name]].float() if name in col else torch.full((n,), 0.5)
            out[name] = lo + (hi - lo) * t
        return out

    def render(self, u: Tensor, chunk: int = 4096) -> Tensor:
        """Images ``float32 [n, 3, size, size]`` in ``[0, 1]`` of ``u: [n, dim]`` (rendered in
        chunks of ``chunk`` images; deterministic)."""
        p = self.physical(u.detach().cpu())
        n = u.shape[0]
        parts = [
            self._render({k: v[i : i + chunk] for k, v in p.items()}) for i in range(0, n, chunk)
        ]
        return torch.cat(parts) if parts else torch.zeros(0, 3, self.size, self.size)

    __call__ = render

    def _render(self, p: Mapping[str, Tensor]) -> Tensor:
        size = self.size
        grid = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
        gx, gy = grid.view(1, 1, size), -grid.view(1, size, 1)  # y up
        x0, y0, s = (p[k].view(-1, 1, 1) for k in ("x", "y", "scale"))
        cos, sin = torch.cos(p["angle"]).view(-1, 1, 1), torch.sin(p["angle"]).view(-1, 1, 1)
        dx, dy = gx - x0, gy - y0
        lx, ly = (cos * dx + sin * dy) / s, (-sin * dx + cos * dy) / s  # object coordinates
        dist = None
        for (ax, ay), (bx, by) in zip(TRIANGLE, TRIANGLE[1:] + TRIANGLE[:1], strict=True):
            ex, ey = bx - ax, by - ay
            side = ((lx - ax) * ey - (ly - ay) * ex) / math.hypot(ex, ey)  # > 0: inside
            dist = -side if dist is None else torch.maximum(dist, -side)
        assert dist is not None
        pixels = dist * s * (size / 2)  # signed distance to the edge, in pixels (> 0 outside)
        alpha = torch.sigmoid(-pixels / EDGE_PX).unsqueeze(1)
        obj = hsv_to_rgb(p["hue"], *OBJECT_SV).view(-1, 3, 1, 1)
        back = hsv_to_rgb(p["bg_hue"], *BACKGROUND_SV).view(-1, 3, 1, 1)
        return back + (obj - back) * alpha


def get_world(name: str, **options: object) -> ShapesWorld:
    """The image world ``name`` (:data:`WORLDS`: ``shapes``) built with ``options`` (its
    dataclass fields: ``latents``, ``size``, ``ranges``)."""
    return WORLDS.get(name)(**options)  # type: ignore[arg-type]
