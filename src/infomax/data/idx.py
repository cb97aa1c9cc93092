"""MNIST / Fashion-MNIST: gzip-compressed IDX files (LeCun's format).

IDX layout: two zero bytes, a type byte (``0x08`` = unsigned byte), the number of dimensions
``nd``, then ``nd`` big-endian ``uint32`` sizes and the row-major data.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from .types import ImageDataset

IDX_FILES = {
    "train_x": "train-images-idx3-ubyte.gz",
    "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz",
    "test_y": "t10k-labels-idx1-ubyte.gz",
}


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Parse one (optionally gzip-compressed) IDX file of unsigned bytes into a numpy array.

    Raises ``ValueError`` naming the file for a missing file, a bad magic number, an
    unexpected number of dimensions or a payload whose size does not match the header.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"missing data file {str(path)!r}")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"corrupt data file {str(path)!r}: {err}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(
            f"corrupt data file {str(path)!r}: bad magic number {raw[:4].hex()} "
            "(expected 0000 08 nd for unsigned-byte IDX)"
        )
    nd = raw[3]
    if ndim is not None and nd != ndim:
        raise ValueError(f"corrupt data file {str(path)!r}: {nd} dimensions, expected {ndim}")
    header = 4 + 4 * nd
    if len(raw) < header:
        raise ValueError(f"corrupt data file {str(path)!r}: truncated header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(nd))
    expected = int(np.prod(shape)) if shape else 0
    if len(raw) - header != expected:
        raise ValueError(
            f"corrupt data file {str(path)!r}: header says shape {shape} ({expected} bytes) "
            f"but the payload has {len(raw) - header} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_idx_dataset(root: str | Path, name: str = "mnist") -> ImageDataset:
    """Load the four IDX ``.gz`` files of MNIST or Fashion-MNIST from ``root``."""
    root = Path(root)
    missing = [f for f in IDX_FILES.values() if not (root / f).is_file()]
    if missing:
        raise ValueError(
            f"{name} directory {str(root)!r} is incomplete: missing {', '.join(missing)}"
        )
    arrays = {}
    for key, fname in IDX_FILES.items():
        arrays[key] = read_idx(root / fname, ndim=3 if key.endswith("x") else 1)
    for split in ("train", "test"):
        nx, ny = len(arrays[f"{split}_x"]), len(arrays[f"{split}_y"])
        if nx != ny:
            raise ValueError(
                f"{name} {split} split: {nx} images in {IDX_FILES[split + '_x']} but "
                f"{ny} labels in {IDX_FILES[split + '_y']}"
            )
    return ImageDataset(
        name=name,
        train_x=torch.from_numpy(arrays["train_x"].copy()).unsqueeze(1),
        train_y=torch.from_numpy(arrays["train_y"].astype(np.int64)),
        test_x=torch.from_numpy(arrays["test_x"].copy()).unsqueeze(1),
        test_y=torch.from_numpy(arrays["test_y"].astype(np.int64)),
    )
