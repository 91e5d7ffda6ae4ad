"""The command names and their order in `ukg2d365 --help` are a contract with users' scripts: the package keeps them."""

from __future__ import annotations

from typer.testing import CliRunner

from ukg2d365.cli import app

COMMANDS = ["ping", "post-payroll", "replay", "accrue-payroll", "status", "audit", "sandbox", "sync-dimensions",
            "sync-employees", "reconcile", "report", "init", "worker"]
GROUPS = ["credentials", "webhook"]


def test_every_command_is_registered_once_in_the_help_order() -> None:
    # a command registered without a name takes its function's, as Typer derives it
    names = [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands if c.callback]
    assert names == COMMANDS and len(app.registered_commands) == len(COMMANDS)
    assert [g.name for g in app.registered_groups] == GROUPS


def test_help_lists_the_commands_in_that_order() -> None:
    result = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    listed = [line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.startswith("  ")
              and not line.startswith("   ")]
    assert listed == COMMANDS + GROUPS
