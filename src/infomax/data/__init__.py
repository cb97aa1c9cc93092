"""Image datasets for contrastive learning, read from their original files.

``load_dataset(name, data_dir)`` returns an :class:`ImageDataset` holding ``uint8`` tensors
``[N, C, H, W]`` and ``int64`` labels ``[N]`` for the train and test splits:

| name | files in ``data_dir`` | shape |
|---|---|---|
| ``digits`` | none (scikit-learn's bundled 8×8 digits, 1,797 images, fixed 80/20 split) | 1×8×8 |
| ``mnist`` / ``fashion-mnist`` | ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` | 1×28×28 |
| ``cifar10`` | ``data_batch_1..5``, ``test_batch`` (or in ``cifar-10-batches-py/``) | 3×32×32 |

A missing file, a bad magic number or a wrong size raises ``ValueError`` naming the file.
:func:`load_digits` is the library's one digits loader (``test_fraction``, ``seed`` and a
stratified split are options; the defaults give the fixed split above). :class:`Batches` is the
one mini-batch generator (shuffled epochs, rank slices, or draws with replacement).

>>> ds = load_dataset("digits")
>>> ds.train_x.shape[1:], ds.num_classes
(torch.Size([1, 8, 8]), 10)
"""

from __future__ import annotations

from pathlib import Path

from .batches import Batches
from .cifar import load_cifar10, read_cifar_batch
from .idx import load_idx_dataset, read_idx
from .types import DATASETS, ImageDataset

__all__ = [
    "DATASETS",
    "Batches",
    "ImageDataset",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_idx_dataset",
    "read_cifar_batch",
    "read_idx",
]


def load_digits(
    test_fraction: float = 0.2, seed: int = 0, *, stratify: bool = False
) -> ImageDataset:
    """scikit-learn's bundled 8×8 digits (values 0..16 rescaled to 0..255), split into train /
    test.

    Default: a fixed permutation with seed 0, the first 80% for training (1,438 train / 359 test
    images). ``stratify=True``: scikit-learn's stratified ``train_test_split`` with
    ``random_state=seed`` (every class in both splits in proportion, for linear probes on small
    test fractions).
    """
    import numpy as np
    import torch
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    if stratify:
        from sklearn.model_selection import train_test_split

        tr, te = train_test_split(
            np.arange(len(labels)), test_size=test_fraction, random_state=seed, stratify=labels
        )
    else:
        perm = np.random.default_rng(seed).permutation(len(labels))
        n_train = int(round((1.0 - test_fraction) * len(labels)))
        tr, te = perm[:n_train], perm[n_train:]
    return ImageDataset(
        name="digits",
        train_x=torch.from_numpy(images[tr]),
        train_y=torch.from_numpy(labels[tr]),
        test_x=torch.from_numpy(images[te]),
        test_y=torch.from_numpy(labels[te]),
    )


def load_dataset(name: str, data_dir: str | Path | None = None) -> ImageDataset:
    """Load ``name`` (``digits``, ``mnist``, ``fashion-mnist``, ``cifar10``) from ``data_dir``.

    ``digits`` needs no files; the others need ``data_dir`` (``ValueError`` otherwise).
    """
    key = str(name).lower()
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if key == "digits":
        return load_digits()
    if data_dir is None:
        raise ValueError(f"dataset {key!r} needs --data-dir pointing at its original files")
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"data directory {str(root)!r} does not exist")
    if key == "cifar10":
        return load_cifar10(root)
    return load_idx_dataset(root, key)
