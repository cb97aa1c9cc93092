"""Read user arrays for the CLI: ``.npy``, ``.npz`` (keys ``x``, ``y``) and ``.csv`` files.

Never unpickles: ``np.load(..., allow_pickle=False)``. Every problem (missing, empty,
unreadable, wrong keys, non-numeric) is a ``ValueError`` naming the file.
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Sequence
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
            arr = _read_csv(p)
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
    if np.iscomplexobj(arr):
        raise ValueError(
            f"{p} holds complex numbers; give the real and imaginary parts as separate columns"
        )
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{p} holds non-numeric data (dtype {arr.dtype})")
    return arr


def _read_csv(p: Path) -> np.ndarray:
    """A numeric CSV as ``float64``: an optional header row, the same number of fields on every
    row (``ValueError`` naming the first ragged line), and a pandas-style row-index column
    (empty or ``index`` header over ``0, 1, 2, ...``) dropped with a warning."""
    import csv

    import pandas as pd

    width, header = None, None
    with open(p, newline="") as fh:
        for lineno, fields in enumerate(csv.reader(fh), start=1):
            if not fields or all(not f.strip() for f in fields):
                continue  # blank line
            if width is None:
                width, first_line = len(fields), lineno
                header = None if _is_numeric_row(fields) else fields
            elif len(fields) != width:
                raise ValueError(
                    f"{p}: line {lineno} has {len(fields)} fields but line {first_line} has "
                    f"{width}: every row needs the same number of columns"
                )
    frame = pd.read_csv(p, header=None, skip_blank_lines=True)
    if header is not None:
        frame = frame.iloc[1:]
    arr = frame.to_numpy(dtype=np.float64)
    if header is not None and arr.shape[1] > 1 and header[0].strip().lower() in ("", "index"):
        first = arr[:, 0]
        if np.array_equal(first, np.arange(len(first))):
            warnings.warn(
                f"{p}: the first column (header {header[0]!r}, values 0..{len(first) - 1}) is a "
                "row index, not data; it was dropped (write the CSV with index=False)",
                stacklevel=3,
            )
            arr = arr[:, 1:]
    return arr


def _is_numeric_row(values: Sequence[object]) -> bool:
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
