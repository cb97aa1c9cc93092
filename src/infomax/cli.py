"""Command line interface (typer). Each command is a thin wrapper over one public function.

Errors that come from bad input (``ValueError``, ``FileNotFoundError``) are printed as one red
line and exit with status 2; no traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Contrastive and InfoMax learning.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: accuracy, speed and memory.")
app.add_typer(bench_app, name="bench")
console = Console()

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(fn: F) -> F:
    """Turn input errors into one red line and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as err:
            console.print(f"[bold red]error:[/] {err}")
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


# Commands are added below, one block per capability.


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
