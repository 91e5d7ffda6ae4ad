"""The command line: parse options, load config, call a flow, render its result, map errors to exit codes.

``app.py`` holds the Typer app, the global options and ``command()``; each other module adds its commands
to that app when imported, and imports nothing else from this package. Business logic lives in
``ukg2d365.flows``, output in ``ukg2d365.render``; nothing outside this package imports it.
"""

from __future__ import annotations

# The import order is the order of `ukg2d365 --help`.
from ukg2d365.cli import credentials, ledger, payroll, ping, reconcile, sandbox, sync, webhook  # noqa: F401, I001
from ukg2d365.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    app()
