"""Dataset loaders: digits, IDX (MNIST / Fashion-MNIST) and CIFAR-10 pickles, with error cases."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from infomax.data import load_dataset, read_cifar_batch, read_idx
from infomax.data.idx import IDX_FILES

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _write_idx_dir(root: Path, n_train: int = 6, n_test: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train_x": rng.integers(0, 256, (n_train, 28, 28)),
        "train_y": rng.integers(0, 10, n_train),
        "test_x": rng.integers(0, 256, (n_test, 28, 28)),
        "test_y": rng.integers(0, 10, n_test),
    }
    for key, fname in IDX_FILES.items():
        (root / fname).write_bytes(gzip.compress(_idx_bytes(arrays[key])))
    return arrays


def test_digits_default_needs_no_files():
    ds = load_dataset("digits")
    assert ds.train_x.shape == (1438, 1, 8, 8) and ds.test_x.shape == (359, 1, 8, 8)
    assert ds.train_x.dtype.is_floating_point is False and int(ds.train_x.max()) == 255
    assert ds.num_classes == 10 and ds.image_shape == (1, 8, 8)


def test_idx_roundtrip(tmp_path):
    arrays = _write_idx_dir(tmp_path)
    ds = load_dataset("mnist", tmp_path)
    assert ds.train_x.shape == (6, 1, 28, 28) and ds.test_y.shape == (4,)
    np.testing.assert_array_equal(ds.train_x[:, 0].numpy(), arrays["train_x"])
    np.testing.assert_array_equal(ds.test_y.numpy(), arrays["test_y"])


def test_idx_errors_name_the_file(tmp_path):
    _write_idx_dir(tmp_path)
    (tmp_path / IDX_FILES["test_y"]).unlink()
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz"):
        load_dataset("fashion-mnist", tmp_path)
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x0d\x01" + struct.pack(">I", 3) + b"abc"))
    with pytest.raises(ValueError, match="bad magic number"):
        read_idx(bad)
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(_idx_bytes(np.zeros((3, 2, 2)))[:-1]))
    with pytest.raises(ValueError, match="short.gz.*payload"):
        read_idx(short)
    notgz = tmp_path / "notgz.gz"
    notgz.write_bytes(b"not a gzip file")
    with pytest.raises(ValueError, match="corrupt data file"):
        read_idx(notgz)
    with pytest.raises(ValueError, match="needs --data-dir"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="valid names"):
        load_dataset("svhn")


def _write_cifar(root: Path, n: int = 5) -> None:
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
            b"filenames": [f"img{i}.png".encode() for i in range(n)],
        }
        (root / name).write_bytes(pickle.dumps(batch, protocol=2))


def test_cifar_official_format(tmp_path):
    _write_cifar(tmp_path)
    ds = load_dataset("cifar10", tmp_path)
    assert ds.train_x.shape == (25, 3, 32, 32) and ds.test_x.shape == (5, 3, 32, 32)
    x, y = read_cifar_batch(tmp_path / "test_batch")
    raw = pickle.loads((tmp_path / "test_batch").read_bytes())
    np.testing.assert_array_equal(x.reshape(5, -1), raw[b"data"])
    assert y.tolist() == raw[b"labels"]


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_cifar_rejects_code_and_bad_sizes(tmp_path):
    _write_cifar(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}))
    with pytest.raises(ValueError, match="data_batch_3.*not allowed"):
        load_dataset("cifar10", tmp_path)
    bad = tmp_path / "wrong"
    bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(ValueError, match="wrong size"):
        read_cifar_batch(bad)
    (tmp_path / "test_batch").unlink()
    with pytest.raises(ValueError, match="missing test_batch"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.parametrize(
    ("name", "folder", "test_counts"),
    [
        ("mnist", "mnist", [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]),
        ("fashion-mnist", "fashion-mnist", [1000] * 10),
    ],
)
def test_real_datasets(name, folder, test_counts):
    root = SHARED / folder
    if not root.is_dir():
        pytest.skip(f"{root} not present (real datasets live in ../shared/datasets)")
    ds = load_dataset(name, root)
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert np.bincount(ds.test_y.numpy()).tolist() == test_counts


def test_batches_shuffled_epochs_replacement_and_errors():
    import torch

    from infomax.data import Batches

    x = torch.arange(10)
    y = 10 * torch.arange(10)
    one = [b.tolist() for b in Batches(x, 4, seed=3, epoch=1)]
    assert len(one) == 2 and len({i for b in one for i in b}) == 8  # no repeats, tail dropped
    # a function of (seed, epoch)
    assert one == [b.tolist() for b in Batches(x, 4, seed=3, epoch=1)]
    assert one != [b.tolist() for b in Batches(x, 4, seed=3, epoch=2)]
    for bx, by in Batches((x, y), 5, seed=0, epoch=0):  # tuples are indexed together
        assert torch.equal(by, 10 * bx)
    gen = torch.Generator().manual_seed(0)
    a = list(Batches((x, y), 4, replacement=True, steps=3, generator=gen))
    b = list(Batches((x, y), 4, replacement=True, steps=2, generator=gen))  # continues the stream
    ref = torch.Generator().manual_seed(0)
    draws = [torch.randint(0, 10, (4,), generator=ref) for _ in range(5)]
    assert [t[0].tolist() for t in a + b] == [d.tolist() for d in draws]
    with pytest.raises(ValueError, match="larger than the 10 training samples"):
        Batches(x, 11)
    with pytest.raises(ValueError, match="divisible by the 2 ranks"):
        Batches(x, 3, rank=0, world=2)
    with pytest.raises(ValueError, match="replacement"):
        Batches(x, 4, replacement=True)


def test_digits_loader_split_options():
    from infomax.data import load_digits

    default = load_digits()
    assert default.train_x.shape[0] == 1438 and default.test_x.shape[0] == 359
    strat = load_digits(0.3, seed=1, stratify=True)
    assert strat.test_x.shape[0] == 540 and set(strat.test_y.tolist()) == set(range(10))
    again = load_digits(0.3, seed=1, stratify=True)
    assert (strat.train_y == again.train_y).all()
