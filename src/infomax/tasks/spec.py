"""Build tasks from names and from spec strings (the CLI's ``--tasks``).

Grammar: ``name[:key=value,...]`` (values are Python literals: ``2``, ``0.5``, ``[[1, 0.5], ...]``),
wrapped in transforms as ``cubic(...)`` or ``cubic[x](...)`` (one side only); several tasks are
separated by ``;``. Suites (``staircase``) expand to several tasks.

>>> [t.id for t in tasks_from_string("cubic(gaussian:dim=5,mi=2); staircase:dim=20,mis=[2,4]")]
['cubic(gaussian-d5-mi2)', 'gaussian-d20-mi2', 'gaussian-d20-mi4']
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from infomax.registry import SUITES, TASKS
from infomax.tasks.base import Task
from infomax.tasks.gaussian import staircase
from infomax.tasks.transforms import transformed

SUITES.add("staircase", staircase)

#: The tasks of ``mi-suite``: the 20-D staircase, heavy tails, MI-preserving transforms of a
#: sparse Gaussian, a 25 x 25 sparse Gaussian and additive uniform noise (as in bmi's benchmark).
MI_SUITE = (
    "staircase:dim=20,mis=[2,4,6,8,10]",
    *(f"student-t:dim_x={d},dim_y={d},dof={nu}" for d in (2, 5) for nu in (1, 2)),
    *(
        f"{name}(gaussian-sparse:dim_x=5,dim_y=5)"
        for name in ("cubic", "asinh", "half_cube", "normal_cdf", "spiral")
    ),
    "gaussian-sparse:dim_x=25,dim_y=25",
    "additive-uniform:epsilon=0.75",
)


def mi_suite() -> list[Task]:
    """The benchmark suite that picks :func:`infomax.estimate_mi`'s defaults (``mi-suite``)."""
    return tasks_from_string(";".join(MI_SUITE))


SUITES.add("mi-suite", mi_suite)


def _call(name: str, factory: Callable[..., Any], params: dict[str, Any]) -> Any:
    try:
        inspect.signature(factory).bind(**params)
    except TypeError as err:
        accepted = ", ".join(inspect.signature(factory).parameters)
        raise ValueError(f"bad parameters for {name!r}: {err} (accepted: {accepted})") from None
    return factory(**params)


def make_task(name: str, **params: Any) -> Task:
    """The ``TASKS`` entry ``name`` built with ``params``; ``ValueError`` for unknown names/params.

    >>> make_task("gaussian", dim=5, mi=2).id
    'gaussian-d5-mi2'
    """
    if str(name).lower() in SUITES:
        raise ValueError(f"{name!r} is a suite of tasks; use tasks_from_string({name!r})")
    task: Task = _call(name, TASKS.get(name), params)
    return task


def _split_top(text: str, sep: str) -> list[str]:
    """Split ``text`` on ``sep`` outside brackets ``()[]{}``."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced brackets in task spec {text!r}")
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise ValueError(f"unbalanced brackets in task spec {text!r}")
    parts.append(text[start:])
    return parts


def _parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false", "none"):
        return {"true": True, "false": False, "none": None}[low]
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


def _parse_params(text: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in _split_top(text, ","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"task parameters must look like key=value, got {item.strip()!r}")
        params[key] = _parse_value(value)
    return params


def _parse(spec: str) -> list[Task]:
    text = spec.strip()
    if not text:
        raise ValueError("empty task spec")
    paren, colon = text.find("("), text.find(":")
    if paren != -1 and (colon == -1 or paren < colon):
        if not text.endswith(")"):
            raise ValueError(f"transform spec must look like name(task), got {text!r}")
        head, on = text[:paren].strip(), "both"
        if head.endswith("]") and "[" in head:
            head, _, side = head[:-1].partition("[")
            on = side.strip()
        return [transformed(task, head.strip(), on) for task in _parse(text[paren + 1 : -1])]
    name, _, args = text.partition(":")
    name, params = name.strip(), _parse_params(args)
    if name.lower() in SUITES:
        suite: Callable[..., Sequence[Task]] = SUITES.get(name)
        return list(_call(name, suite, params))
    return [make_task(name, **params)]


def tasks_from_string(spec: str) -> list[Task]:
    """All tasks in ``spec`` (``;``-separated; suites such as ``staircase:dim=20`` expand)."""
    tasks: list[Task] = []
    for part in _split_top(str(spec), ";"):
        if part.strip():
            tasks.extend(_parse(part))
    if not tasks:
        raise ValueError(f"no task in spec {spec!r}")
    return tasks


def task_from_string(spec: str) -> Task:
    """The single task in ``spec``: ``"gaussian:dim=5,mi=2"``, ``"cubic(gaussian:dim=5,mi=2)"``.

    >>> task_from_string("asinh[y](student-t:dim_x=2,dim_y=2,dof=3,rho=0.5)").id
    'asinh[y](student-t-dx2-dy2-dof3-rho0.5)'
    """
    tasks = tasks_from_string(spec)
    if len(tasks) != 1:
        raise ValueError(f"spec {spec!r} holds {len(tasks)} tasks; use tasks_from_string")
    return tasks[0]
