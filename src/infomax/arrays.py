"""Read user arrays for the CLI: ``.npy``, ``.npz`` (keys ``x``, ``y``) and ``.csv`` files.

Never unpickles: ``np.load(..., allow_pickle=False)``. Every problem (missing, empty,
unreadable, wrong keys, non-numeric) is a ``ValueError`` naming the file.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np


def load_array(path: str | Path) -> np.ndarray:
    """One numeric array from ``.npy`` or ``.csv`` (a header row is skipped if present)."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"file not found: {p}")
    if p.is_dir():
        raise ValueError(f"{p} is a directory, expected a .npy, .npz or .csv file")
    if p.stat().st_size == 0:
        raise ValueError(f"{p} is empty")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        elif suffix in (".csv", ".txt"):
            import pandas as pd

            frame = pd.read_csv(p, header=None)
            if frame.shape[0] > 0 and not _is_numeric_row(frame.iloc[0].tolist()):
                frame = frame.iloc[1:]
            arr = frame.to_numpy(dtype=np.float64)
        else:
            raise ValueError(f"{p}: unsupported file type {suffix!r}; use .npy, .npz or .csv")
    except ValueError as err:
        if str(err).startswith(str(p)):
            raise
        raise ValueError(f"cannot read {p}: {err}") from None
    except (OSError, EOFError) as err:
        raise ValueError(f"cannot read {p}: {err}") from None
    if arr.size == 0:
        raise ValueError(f"{p} holds no data")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{p} holds non-numeric data (dtype {arr.dtype})")
    return arr


def _is_numeric_row(values: list[object]) -> bool:
    try:
        [float(v) for v in values]  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def load_pair(
    x_path: str | Path, y_path: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` from two files, or from one ``.npz`` holding arrays ``x`` and ``y``."""
    p = Path(x_path)
    if y_path is None:
        if p.suffix.lower() != ".npz":
            raise ValueError(f"give two files X Y, or one .npz with arrays 'x' and 'y' (got {p})")
        if not p.exists():
            raise ValueError(f"file not found: {p}")
        try:
            with np.load(p, allow_pickle=False) as data:
                missing = [k for k in ("x", "y") if k not in data.files]
                if missing:
                    raise ValueError(f"{p} lacks array(s) {missing}; it has {data.files}")
                return np.asarray(data["x"]), np.asarray(data["y"])
        except (OSError, EOFError, zipfile.BadZipFile) as err:
            raise ValueError(f"cannot read {p}: {err}") from None
    return load_array(p), load_array(y_path)
