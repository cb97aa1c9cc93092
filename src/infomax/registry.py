"""Explicit name -> object registries shared by the Python API and the CLI.

Each registry is filled by a ``@REGISTRY.register("name")`` decorator in the module that
defines the objects; looking a name up imports that module first, so ``BOUNDS.get("flo")``
works without importing :mod:`infomax.bounds` by hand.

>>> from infomax.registry import BOUNDS
>>> "infonce" in BOUNDS.names()
True
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object table whose unknown-name error lists the valid names."""

    def __init__(self, kind: str, modules: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._modules = modules
        self._items: dict[str, T] = {}

    def _load(self) -> None:
        for module in self._modules:
            importlib.import_module(module)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that stores ``obj`` under ``name`` (lower-case, unique)."""

        def decorator(obj: T) -> T:
            key = name.lower()
            if key in self._items and self._items[key] is not obj:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._items[key] = obj
            return obj

        return decorator

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name`` without a decorator."""
        return self.register(name)(obj)

    def get(self, name: str) -> T:
        """The object registered as ``name``; ``ValueError`` listing valid names otherwise."""
        self._load()
        key = str(name).lower()
        if key not in self._items:
            valid = ", ".join(sorted(self._items))
            raise ValueError(f"unknown {self.kind} {name!r}; valid names: {valid}")
        return self._items[key]

    def names(self) -> list[str]:
        """Sorted registered names."""
        self._load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._items)


BOUNDS: Registry = Registry("bound", ("infomax.bounds",))
CRITICS: Registry = Registry("critic", ("infomax.critics",))
DIVERGENCES: Registry = Registry("divergence", ("infomax.divergences",))
TASKS: Registry = Registry("task", ("infomax.tasks",))
#: Suites: a name that expands to several tasks (``staircase`` -> one Gaussian task per MI).
SUITES: Registry = Registry("task suite", ("infomax.tasks",))
TRANSFORMS: Registry = Registry("transform", ("infomax.tasks",))
METHODS: Registry = Registry("method", ("infomax.ssl",))
