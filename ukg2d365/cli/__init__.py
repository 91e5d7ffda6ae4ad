"""The command line: parse options, load config, call a flow, render its result, map errors to exit codes.

``app.py`` holds the Typer app, the global options and ``command()``; each other module adds its commands
to that app when imported, and imports nothing else from this package. Business logic lives in
``ukg2d365.flows``, output in ``ukg2d365.render``; nothing outside this package imports it.
"""

from __future__ import annotations

from importlib import import_module

from ukg2d365.cli.app import app

# Imported in this order because it is the order `ukg2d365 --help` lists the commands in (Typer keeps
# registration order); an import statement would be re-sorted alphabetically by the linter.
COMMAND_MODULES = ("ping", "payroll", "accruals", "ledger", "sandbox", "sync", "reconcile", "credentials", "webhook")
for _module in COMMAND_MODULES:
    import_module(f"{__name__}.{_module}")

__all__ = ["app", "main"]


def main() -> None:
    app()
