"""Batched image augmentations for contrastive learning (kornia), run on the training device.

``build_augment(preset)`` returns a module mapping ``x: float [B, C, H, W]`` in ``[0, 1]`` to one
random view of the same shape (each image gets its own random parameters, drawn from torch's
global generator, so runs are reproducible by seed). Presets follow SimCLR practice scaled to the
image size: random resized crop, horizontal flip (not for digits), colour jitter (brightness /
contrast only on grey images), grayscale (colour only), Gaussian blur and, optionally, a random
stroke width (:class:`RandomStrokeWidth`, off in every preset).

>>> import torch
>>> aug = build_augment("mnist")
>>> aug(torch.rand(4, 1, 28, 28)).shape
torch.Size([4, 1, 28, 28])
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class AugmentConfig:
    """Parameters of the SimCLR-style pipeline (probabilities in ``[0, 1]``)."""

    size: int
    crop_scale: tuple[float, float] = (0.2, 1.0)
    flip: float = 0.5
    jitter: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale: float = 0.2
    blur: float = 0.0
    stroke: float = 0.0
    channels: int = 3

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        for name in ("flip", "jitter", "grayscale", "blur", "stroke"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} probability must be in [0, 1], got {p}")
        if self.size < 2 or self.channels not in (1, 3):
            raise ValueError(
                f"need size >= 2 and 1 or 3 channels, got {self.size}, {self.channels}"
            )


PRESETS: dict[str, AugmentConfig] = {
    "digits": AugmentConfig(8, crop_scale=(0.5, 1.0), flip=0.0, channels=1),
    "mnist": AugmentConfig(28, crop_scale=(0.3, 1.0), flip=0.0, channels=1),
    "fashion-mnist": AugmentConfig(28, crop_scale=(0.2, 1.0), flip=0.5, channels=1),
    "cifar10": AugmentConfig(32, crop_scale=(0.2, 1.0), flip=0.5, grayscale=0.2, channels=3),
}


def build_augment(preset: str | AugmentConfig, **overrides: object) -> nn.Module:
    """A kornia ``AugmentationSequential`` for ``preset`` (a name in ``PRESETS`` or a config).

    ``overrides`` replace fields of the preset, e.g. ``build_augment("mnist", blur=0.5)``.
    """
    import kornia.augmentation as K

    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown augmentation preset {preset!r}; valid: {', '.join(PRESETS)}")
        cfg = PRESETS[preset]
    else:
        cfg = preset
    if overrides:
        cfg = replace(cfg, **overrides)  # type: ignore[arg-type]
    ops: list[Any] = [
        K.RandomResizedCrop((cfg.size, cfg.size), scale=cfg.crop_scale, ratio=(3 / 4, 4 / 3))
    ]
    if cfg.flip > 0:
        ops.append(K.RandomHorizontalFlip(p=cfg.flip))
    if cfg.jitter > 0:
        colour = cfg.channels == 3
        ops.append(
            K.ColorJiggle(
                cfg.brightness,
                cfg.contrast,
                cfg.saturation if colour else 0.0,
                cfg.hue if colour else 0.0,
                p=cfg.jitter,
            )
        )
    if cfg.grayscale > 0 and cfg.channels == 3:
        ops.append(K.RandomGrayscale(p=cfg.grayscale))
    if cfg.blur > 0:
        k = max(3, (cfg.size // 10) | 1)
        ops.append(K.RandomGaussianBlur((k, k), (0.1, 2.0), p=cfg.blur))
    seq = K.AugmentationSequential(*ops)
    return nn.Sequential(seq, RandomStrokeWidth(cfg.stroke)) if cfg.stroke > 0 else seq


class RandomStrokeWidth(nn.Module):
    """Thicker or thinner strokes (for digits): with probability ``p`` an image becomes
    ``x + a (dilate(x) − x)`` or ``x + |a| (erode(x) − x)`` for ``a ~ U(−1, 1)`` (positive:
    dilation), with grey-scale 3×3 dilation / erosion (max / min pooling). ``x: [B, C, H, W]``.

    Writers differ in pen width; the view teaches the encoder that the digit is the same.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"stroke probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        dilated = F.max_pool2d(x, 3, 1, 1)
        eroded = -F.max_pool2d(-x, 3, 1, 1)
        a = torch.rand(x.shape[0], 1, 1, 1, device=x.device) * 2 - 1
        a = a * (torch.rand_like(a) < self.p)
        return torch.where(a > 0, x + a * (dilated - x), x - a * (eroded - x))


class Normalize(nn.Module):
    """``(x − mean) / std`` per channel; ``x: [B, C, H, W]`` (buffers follow the device)."""

    mean: Tensor
    std: Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def to_float(images: Tensor, device: torch.device | str | None = None) -> Tensor:
    """``uint8 [B, C, H, W]`` images -> ``float32`` in ``[0, 1]`` on ``device``."""
    x = images.to(device) if device is not None else images
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
