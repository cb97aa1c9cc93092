"""Kornia augmentation presets: shapes, ranges, randomness by seed, validation."""

from __future__ import annotations

import pytest
import torch

from infomax.augment import (
    PRESETS,
    AugmentConfig,
    Normalize,
    RandomStrokeWidth,
    build_augment,
    to_float,
)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_keep_shape_and_range(preset):
    cfg = PRESETS[preset]
    x = torch.rand(8, cfg.channels, cfg.size, cfg.size)
    aug = build_augment(preset, blur=0.5)
    y = aug(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0 + 1e-6


def test_views_are_random_but_seeded():
    aug = build_augment("mnist")
    x = torch.rand(16, 1, 28, 28)
    torch.manual_seed(3)
    a, b = aug(x), aug(x)
    torch.manual_seed(3)
    a2 = aug(x)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(a, a2)


def test_pipeline_contents_follow_the_config():
    import kornia.augmentation as K

    grey = build_augment("mnist")
    kinds = [type(m) for m in grey.children()]
    assert K.RandomResizedCrop in kinds and K.RandomHorizontalFlip not in kinds
    assert K.RandomGrayscale not in kinds
    colour = build_augment("cifar10", blur=0.5)
    kinds = [type(m) for m in colour.children()]
    for op in (K.RandomHorizontalFlip, K.ColorJiggle, K.RandomGrayscale, K.RandomGaussianBlur):
        assert op in kinds


def test_normalize_and_to_float():
    x = to_float(torch.full((2, 1, 2, 2), 255, dtype=torch.uint8))
    assert float(x.max()) == 1.0
    y = Normalize((0.5,), (0.25,))(x)
    torch.testing.assert_close(y, torch.full_like(x, 2.0))


def test_invalid_configs():
    with pytest.raises(ValueError):
        AugmentConfig(28, crop_scale=(0.0, 1.0))
    with pytest.raises(ValueError):
        AugmentConfig(28, flip=1.5)
    with pytest.raises(ValueError, match="valid"):
        build_augment("svhn")


def _grey_morphology(x, op):
    """3×3 dilation (max) or erosion (min) over the in-image neighbours, one pixel at a time."""
    out = torch.empty_like(x)
    b, c, h, w = x.shape
    for i in range(h):
        for j in range(w):
            patch = x[:, :, max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2]
            out[:, :, i, j] = op(patch.reshape(b, c, -1), dim=2).values
    return out


def test_stroke_width_blends_towards_dilation_or_erosion():
    x = torch.rand(64, 1, 6, 6)
    torch.manual_seed(5)
    y = RandomStrokeWidth(0.7)(x)
    torch.manual_seed(5)  # replay the module's two draws
    a = torch.rand(64, 1, 1, 1) * 2 - 1
    a = a * (torch.rand_like(a) < 0.7)
    dil, ero = _grey_morphology(x, torch.max), _grey_morphology(x, torch.min)
    expected = torch.where(a > 0, (1 - a) * x + a * dil, (1 + a) * x - a * ero)
    torch.testing.assert_close(y, expected)
    untouched = (a == 0).flatten()
    assert 5 < int(untouched.sum()) < 40  # about 30% of the images keep their strokes
    torch.testing.assert_close(y[untouched], x[untouched])
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    thicker = (a > 0).flatten()
    assert bool((y[thicker].sum((1, 2, 3)) >= x[thicker].sum((1, 2, 3))).all())
    torch.testing.assert_close(RandomStrokeWidth(0.0)(x), x)
    with pytest.raises(ValueError, match="stroke probability"):
        RandomStrokeWidth(1.5)
    with pytest.raises(ValueError, match="stroke probability must be in"):
        AugmentConfig(28, stroke=-0.1)
    staged = build_augment("mnist", stroke=0.5)
    assert isinstance(staged[-1], RandomStrokeWidth) and staged[-1].p == 0.5
    assert not any(isinstance(m, RandomStrokeWidth) for m in build_augment("mnist").modules())
