"""The command line: parse options, load config, call a flow, render its result, map errors to exit codes.

``app.py`` holds the Typer app, the global options and ``command()``; each other module adds its commands
to that app when imported, and imports nothing else from this package. Business logic lives in
``ukg2d365.flows``, output in ``ukg2d365.render``; nothing outside this package imports it.
"""

from __future__ import annotations

import sys
import traceback
from importlib import import_module

from ukg2d365.cli.app import app
from ukg2d365.errors import ExitStatus
from ukg2d365.flows.runtime import internal_error_line

# Imported in this order because it is the order `ukg2d365 --help` lists the commands in (Typer keeps
# registration order); an import statement would be re-sorted alphabetically by the linter.
COMMAND_MODULES = (
    "ping", "payroll", "accruals", "ledger", "sandbox", "sync", "reconcile", "report", "init", "credentials", "webhook",
    "worker",
)
for _module in COMMAND_MODULES:
    import_module(f"{__name__}.{_module}")

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except Exception as exc:  # noqa: BLE001 - a bug outside a command (option parsing, start-up): one line, 70
        verbose = bool({"-v", "--verbose"} & set(sys.argv[1:]))
        sys.stderr.write(f"error: internal error (this is a bug): {internal_error_line(exc)}"
                         + ("\n" if verbose else "; run with --verbose for the traceback\n"))
        if verbose:
            traceback.print_exc()
        sys.exit(int(ExitStatus.INTERNAL))
