"""The in-memory dataset record shared by every loader."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

#: Dataset names with (channels, height, width, mean, std) per channel in [0, 1] units.
DATASETS: dict[str, tuple[int, int, int, tuple[float, ...], tuple[float, ...]]] = {
    "digits": (1, 8, 8, (0.3059,), (0.3730,)),
    "mnist": (1, 28, 28, (0.1307,), (0.3081,)),
    "fashion-mnist": (1, 28, 28, (0.2860,), (0.3530,)),
    "cifar10": (3, 32, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


@dataclass(frozen=True)
class ImageDataset:
    """Train/test images ``uint8 [N, C, H, W]`` and labels ``int64 [N]``."""

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor

    @property
    def num_classes(self) -> int:
        """Number of classes (``max label + 1``)."""
        return int(max(int(self.train_y.max()), int(self.test_y.max())) + 1)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean of the training images in [0, 1] units (standard constants)."""
        return DATASETS[self.name][3]

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel standard deviation in [0, 1] units (standard constants)."""
        return DATASETS[self.name][4]
