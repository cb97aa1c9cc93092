"""Encoders and heads: output shapes, CIFAR ResNet-18 structure, validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from infomax.models import ResNet18, SmallCNN, build_encoder, predictor_head, projection_head


def test_small_cnn_shapes():
    enc = build_encoder("cnn", in_channels=1, width=8)
    assert enc(torch.rand(3, 1, 28, 28)).shape == (3, 64) and enc.out_dim == 64
    assert SmallCNN(3, (4, 8))(torch.rand(2, 3, 32, 32)).shape == (2, 8)


def test_cifar_resnet18_structure():
    net = ResNet18(3)
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 512)
    stem = net.net[0]
    assert isinstance(stem, nn.Conv2d) and stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    n_params = sum(p.numel() for p in net.parameters())
    assert 11_100_000 < n_params < 11_200_000  # the CIFAR ResNet-18 has 11.17 M parameters
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 17  # stem + 8 blocks × 2


def test_mlp_encoder_and_heads():
    enc = build_encoder("mlp", in_channels=1, image_size=8, width=32)
    z = enc(torch.rand(5, 1, 8, 8))
    assert z.shape == (5, 32)
    assert projection_head(32, 64, 16)(z).shape == (5, 16)
    assert predictor_head(16, 32)(torch.rand(5, 16)).shape == (5, 16)


def test_unknown_encoder():
    with pytest.raises(ValueError, match="valid names"):
        build_encoder("vit")
    with pytest.raises(ValueError):
        SmallCNN(1, ())
