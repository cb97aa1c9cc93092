"""Command line interface (typer): ``app`` and the console-script entry point ``main``.

Each command is a thin wrapper over one public function, in one module per command group;
options that mirror a config field take its name, type and default from the frozen config
dataclass (:func:`~infomax.cli._common.config_options`). Errors that come from bad input
(``ValueError``, ``OSError``) are printed as one red line and exit with status 2; no traceback.
"""

from __future__ import annotations

import importlib

from ._common import app

#: the command modules; importing one registers its commands on ``app`` (in --help's order)
COMMAND_MODULES = ("estimate", "demo", "train", "identify", "rpm", "dm", "bench")
for _module in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
