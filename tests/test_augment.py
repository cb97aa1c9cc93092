"""Kornia augmentation presets: shapes, ranges, randomness by seed, validation."""

from __future__ import annotations

import pytest
import torch

from infomax.augment import PRESETS, AugmentConfig, Normalize, build_augment, to_float


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
