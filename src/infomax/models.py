"""Encoders and heads for contrastive learning.

- :class:`SmallCNN`: four 3×3 conv–BN–ReLU blocks (max-pool after the first three) and a global
  average pool, for 28×28 images; ``x: [B, C, 28, 28] -> [B, widths[-1]]``.
- :class:`ResNet18`: CIFAR-style ResNet-18 (3×3 stem, no max-pool) for 32×32; ``-> [B, 512]``.
- :class:`MLPEncoder`: flatten + MLP, for the 8×8 digits; ``-> [B, hidden]``.
- :class:`StridedCNN`: stride-2 4×4 convolutions down to 4×4, flattened (no global pooling, so
  positions survive), then an MLP to ``out_dim``; the pixel encoder of the identifiability
  image worlds. ``x: [B, C, S, S] -> [B, out_dim]``.
- :func:`projection_head` / :func:`predictor_head`: BN-MLPs from :func:`infomax.critics.mlp`.

Every encoder has an ``out_dim`` attribute. ``build_encoder(name, in_channels)`` picks one.

>>> import torch
>>> enc = build_encoder("cnn", in_channels=1)
>>> enc(torch.rand(2, 1, 28, 28)).shape
torch.Size([2, 256])
"""

from __future__ import annotations

from torch import Tensor, nn

from .critics import mlp


def _conv_bn(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class SmallCNN(nn.Module):
    """Four conv blocks ``widths`` with 2×2 max-pool after the first three, then average pool."""

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (32, 64, 128, 256)) -> None:
        super().__init__()
        if len(widths) < 1 or any(w < 1 for w in widths):
            raise ValueError(f"widths must be positive, got {widths}")
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            layers += _conv_bn(c, w)
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c = w
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.net = nn.Sequential(*layers)
        self.out_dim = widths[-1]

    def forward(self, x: Tensor) -> Tensor:
        """``x: [B, C, H, W] -> [B, out_dim]``."""
        return self.net(x)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3×3 convs with a (projected) identity shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(c_in, c_out, stride),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """``x: [B, c_in, H, W] -> [B, c_out, H/stride, W/stride]``."""
        return self.act(self.body(x) + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR ResNet-18: 3×3 stem (stride 1, no max-pool), stages 64–128–256–512 × 2 blocks."""

    def __init__(self, in_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = [*_conv_bn(in_channels, width)]
        c = width
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers += [BasicBlock(c, w, stride), BasicBlock(w, w)]
            c = w
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.net = nn.Sequential(*layers)
        self.out_dim = c

    def forward(self, x: Tensor) -> Tensor:
        """``x: [B, C, H, W] -> [B, 8·width]``."""
        return self.net(x)


class StridedCNN(nn.Module):
    """Convolutions ``4×4, stride 2`` (widths ``w, 2w, 4w, ...``, LeakyReLU) from ``size`` down
    to ``4×4`` pixels, flattened, then ``Linear -> hidden -> out_dim``. No pooling and no
    normalisation: the output keeps where things are and does not depend on the batch.

    >>> import torch
    >>> StridedCNN(out_dim=6, size=32)(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 6])
    """

    def __init__(
        self,
        out_dim: int,
        in_channels: int = 3,
        size: int = 32,
        width: int = 32,
        hidden: int = 256,
    ) -> None:
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"size must be a power of two >= 8, got {size}")
        layers: list[nn.Module] = []
        c, w, s = in_channels, width, size
        while s > 4:
            layers += [nn.Conv2d(c, w, 4, stride=2, padding=1), nn.LeakyReLU()]
            c, w, s = w, 2 * w, s // 2
        layers += [
            nn.Flatten(),
            nn.Linear(c * 16, hidden),
            nn.LeakyReLU(),
            nn.Linear(hidden, out_dim),
        ]
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        """``x: [B, C, size, size] -> [B, out_dim]``."""
        return self.net(x)  # type: ignore[no-any-return]


class MLPEncoder(nn.Module):
    """Flatten, then ``in_dim -> hidden -> hidden`` with BN and ReLU."""

    def __init__(self, in_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), mlp([in_dim, hidden, hidden], norm="batch", out_act=True)
        )
        self.out_dim = hidden

    def forward(self, x: Tensor) -> Tensor:
        """``x: [B, ...] -> [B, hidden]``."""
        return self.net(x)


def projection_head(in_dim: int, hidden: int = 512, out_dim: int = 128) -> nn.Sequential:
    """SimCLR projection ``Linear–BN–ReLU–Linear``: ``[B, in_dim] -> [B, out_dim]``."""
    return mlp([in_dim, hidden, out_dim], norm="batch")


def predictor_head(dim: int, hidden: int = 512) -> nn.Sequential:
    """MoCo v3 / BYOL predictor ``Linear–BN–ReLU–Linear``: ``[B, dim] -> [B, dim]``."""
    return mlp([dim, hidden, dim], norm="batch")


ENCODERS = ("cnn", "resnet18", "mlp")


def build_encoder(
    name: str, in_channels: int = 1, image_size: int = 28, width: int | None = None
) -> nn.Module:
    """``cnn`` (:class:`SmallCNN`), ``resnet18`` or ``mlp`` (for ``image_size²·C`` inputs).

    ``width`` scales the model: CNN widths ``(w, 2w, 4w, 8w)``, ResNet base width, MLP hidden.
    """
    if name == "cnn":
        w = 32 if width is None else width
        return SmallCNN(in_channels, (w, 2 * w, 4 * w, 8 * w))
    if name == "resnet18":
        return ResNet18(in_channels, 64 if width is None else width)
    if name == "mlp":
        return MLPEncoder(in_channels * image_size * image_size, 256 if width is None else width)
    raise ValueError(f"unknown encoder {name!r}; valid names: {', '.join(ENCODERS)}")
