"""Input validation shared by every entry point: one clear ``ValueError`` per problem."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor


def as_2d_tensor(data: Any, name: str, dtype: torch.dtype = torch.float32) -> Tensor:
    """``data`` (array-like or tensor, ``[n]`` or ``[n, d]``) as a finite ``[n, d]`` tensor.

    Raises ``ValueError`` naming ``name`` for non-numeric data, more than 2 dimensions, an empty
    array, or NaN/Inf values (with the count and the first offending row).
    """
    try:
        if isinstance(data, Tensor):
            t = data.detach().to(dtype)
        else:
            t = torch.as_tensor(np.asarray(data, dtype=np.float64), dtype=dtype)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric array-like: {err}") from None
    if t.ndim == 1:
        t = t.unsqueeze(1)
    if t.ndim != 2:
        raise ValueError(f"{name} must have shape [n, d] (or [n]), got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    check_finite(t, name)
    return t


def check_finite(t: Tensor, name: str) -> None:
    """``ValueError`` if ``t`` holds NaN or Inf, naming the count and the first bad row."""
    bad = ~torch.isfinite(t)
    if bad.any():
        rows = bad.reshape(t.shape[0], -1).any(dim=1).nonzero().flatten()
        raise ValueError(
            f"{name} contains {int(bad.sum())} NaN/Inf value(s) (first in row {int(rows[0])}); "
            "drop or impute them first"
        )


def check_paired(x: Tensor, y: Tensor, names: tuple[str, str] = ("x", "y")) -> None:
    """``ValueError`` unless ``x`` and ``y`` have the same number of rows."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same number of samples, "
            f"got {x.shape[0]} and {y.shape[0]}"
        )


def check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    """``ValueError`` unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def is_real(value: Any) -> bool:
    """``value`` is a real number (int, float or numpy number; not a bool)."""
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def is_int_at_least(value: Any, minimum: int) -> bool:
    """``value`` is an integer (not a bool) >= ``minimum``."""
    ok = not isinstance(value, bool) and isinstance(value, (int, np.integer))
    return bool(ok and value >= minimum)


def check_int(name: str, value: Any, minimum: int, *, none: str | bool = False) -> None:
    """``ValueError`` naming ``name`` unless ``value`` is an integer >= ``minimum``; ``None`` is
    accepted too when ``none`` is ``True`` or says what ``None`` means."""
    if none is not False and value is None:
        return
    if not is_int_at_least(value, minimum):
        what = f"an integer >= {minimum}"
        if none is not False:
            what += " (or None)" if none is True else f" (or None: {none})"
        raise ValueError(f"{name} must be {what}, got {value!r}")


def check_positive(name: str, value: Any, *, optional: bool = False) -> None:
    """``ValueError`` naming ``name`` unless ``value`` is a finite number > 0 (or ``None`` when
    ``optional``)."""
    if optional and value is None:
        return
    if not (is_real(value) and 0 < value < math.inf):
        what = "a finite number > 0" + (" (or None)" if optional else "")
        raise ValueError(f"{name} must be {what}, got {value!r}")


def renamed_keys(values: Mapping[str, Any], renamed: Mapping[str, str]) -> dict[str, Any]:
    """``values`` with every old key of ``renamed`` (``{old: new}``) under its new name, so that
    settings saved before a field was renamed still load; a new key already present wins and the
    old one is dropped.

    >>> renamed_keys({"divergence": "js", "lr": 0.1}, {"divergence": "objective"})
    {'lr': 0.1, 'objective': 'js'}
    """
    out = {k: v for k, v in values.items() if k not in renamed}
    for old, new in renamed.items():
        if old in values and new not in out:
            out[new] = values[old]
    return out
