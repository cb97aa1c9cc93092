"""CIFAR-10 "python version" batches, read with a restricted unpickler.

Each batch file is a pickled dict with ``data`` (``uint8 [N, 3072]``, row-major R, G, B planes of
32×32) and ``labels`` (list of ints), plus ``batch_label`` and ``filenames``. The unpickler
only accepts the numpy array reconstruction globals these files contain, so a malicious
pickle cannot run code.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .types import ImageDataset

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array / dtype reconstruction globals."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR batch file -> ``(images uint8 [N, 3, 32, 32], labels int64 [N])``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"missing data file {str(path)!r}")
    try:
        obj = _RestrictedUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except Exception as err:  # any unpickling failure means the file is not a CIFAR batch
        raise ValueError(f"corrupt data file {str(path)!r}: {err}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"corrupt data file {str(path)!r}: expected a dict, got {type(obj)}")
    obj = {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}
    if "data" not in obj or "labels" not in obj:
        raise ValueError(f"corrupt data file {str(path)!r}: needs keys 'data' and 'labels'")
    data, labels = obj["data"], np.asarray(obj["labels"], dtype=np.int64)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise ValueError(f"corrupt data file {str(path)!r}: 'data' must be uint8 [N, 3072]")
    if data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
        raise ValueError(
            f"corrupt data file {str(path)!r}: wrong size: data {data.shape}, "
            f"{labels.shape[0]} labels (expected [N, 3072] and N labels)"
        )
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(root: str | Path) -> ImageDataset:
    """CIFAR-10 from ``root`` or ``root/cifar-10-batches-py``."""
    root = Path(root)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    missing = [f for f in (*TRAIN_FILES, TEST_FILE) if not (root / f).is_file()]
    if missing:
        raise ValueError(
            f"cifar10 directory {str(root)!r} is incomplete: missing {', '.join(missing)}"
        )
    parts = [read_cifar_batch(root / f) for f in TRAIN_FILES]
    test_x, test_y = read_cifar_batch(root / TEST_FILE)
    return ImageDataset(
        name="cifar10",
        train_x=torch.from_numpy(np.concatenate([p[0] for p in parts])),
        train_y=torch.from_numpy(np.concatenate([p[1] for p in parts])),
        test_x=torch.from_numpy(test_x.copy()),
        test_y=torch.from_numpy(test_y),
    )
