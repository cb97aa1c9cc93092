"""Run records: atomic file writes, version stamps, ``results.json``, CSV curves, rich tables.

Every entry point writes its outputs through these helpers so that a crash never leaves a
half-written file and every ``results.json`` carries the config, seed and library versions.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files ``.NAME.PID.*.tmp`` that a killed writer of ``path`` left
    (SIGKILL gives no chance to clean up); files of a live process are kept."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        parts = tmp.name[len(path.name) + 2 :].split(".")
        if parts and parts[0].isdigit() and _pid_alive(int(parts[0])):
            continue  # another live process is writing this file right now
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    The temporary file is ``.NAME.PID.XXXX.tmp``; leftovers of a killed writer are removed on
    the next write of the same file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def prepare_out_dir(path: str | os.PathLike[str], option: str = "--out") -> Path:
    """Check that the output folder ``path`` can be created and written, creating nothing.

    ``ValueError`` (one line) when ``path`` is an existing file, or when neither it nor (if it
    does not exist yet) its nearest existing parent folder accepts a new file, so that a run
    fails before its work, not after it, and a failing command leaves no empty folder behind.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{option} {p} is an existing file, not a folder; choose another {option}")
    probe = p
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        if not probe.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(probe))
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        reason = err.strerror or str(err)
        msg = f"{option} {p} cannot be written ({reason}); choose another {option}"
        raise ValueError(msg) from None
    return p


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomic UTF-8 text write (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file, then an atomic rename."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, numpy/torch scalars and arrays and paths to JSON types; a non-finite
    float (a quantity that could not be computed) becomes ``None`` (JSON ``null``)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return value if math.isfinite(value) else None  # JSON null: "not available"
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if type(obj).__module__.startswith("torch") and hasattr(obj, "tolist"):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return repr(obj)


def versions() -> dict[str, str]:
    """Versions of Python, the platform and the libraries a run depends on."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("infomax", "torch", "numpy", "scipy", "sklearn", "kornia"):
        try:
            module = __import__(name)
            out[name] = str(getattr(module, "__version__", "unknown"))
        except Exception:  # pragma: no cover - optional package missing
            continue
    return out


def write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    """Atomically write ``payload`` (converted with :func:`to_jsonable`) as indented JSON."""
    return atomic_write_text(path, json.dumps(to_jsonable(payload), indent=2) + "\n")


def write_results(
    out_dir: str | os.PathLike[str],
    *,
    config: Any,
    results: Any,
    seed: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``out_dir/results.json`` with config, seed, versions and results."""
    payload: dict[str, Any] = {
        "config": config,
        "seed": seed,
        "versions": versions(),
        "results": results,
    }
    if extra:
        payload.update(extra)
    return write_json(Path(out_dir) / "results.json", payload)


def write_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> Path:
    """Atomically write ``rows`` (dicts sharing keys) as CSV with pandas."""
    import pandas as pd

    frame = pd.DataFrame(list(rows))
    return atomic_write_text(path, frame.to_csv(index=False))


def save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Save a matplotlib figure atomically as PNG and close it."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def empty_panels(fig: Any) -> list[str]:
    """The panels of a matplotlib figure that show no data (no line with points, no filled
    collection, image or bar), by title or position: a figure to fix before it is saved.

    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> fig, (a, b) = plt.subplots(1, 2)
    >>> _ = a.plot([0, 1], [1, 2]); _ = b.set_title("kNN")
    >>> empty_panels(fig)
    ['kNN']
    >>> plt.close(fig)
    """
    import numpy as np

    def has_data(ax: Any) -> bool:
        for line in ax.get_lines():
            if np.size(line.get_xdata()) and np.isfinite(np.asarray(line.get_ydata(), float)).any():
                return True
        for coll in ax.collections:
            if len(coll.get_offsets()) or len(coll.get_paths()):
                return True
        return bool(ax.images or ax.patches or ax.containers)

    return [
        ax.get_title() or f"panel {i}"
        for i, ax in enumerate(fig.get_axes())
        if ax.get_visible() and ax.axison and not has_data(ax)
    ]


def cell(value: Any) -> str:
    """A table cell: floats to 3 decimals, ``—`` for a missing number (NaN), else ``str``.

    >>> cell(0.12345), cell(float("nan")), cell("js")
    ('0.123', '—', 'js')
    """
    if isinstance(value, float):
        return "—" if value != value else f"{value:.3f}"
    return str(value)


def print_table(
    title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], console: Any = None
) -> None:
    """Print a rich table (:func:`cell` formatting; long names wrap instead of truncating)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(str(col), overflow="fold")
    for row in rows:
        table.add_row(*[cell(v) for v in row])
    (console or Console()).print(table)


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub Markdown table (:func:`cell` formatting)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"
