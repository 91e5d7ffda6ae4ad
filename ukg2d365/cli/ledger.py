"""status and audit: read the ledger only (a config is optional when --ledger is given)."""

from __future__ import annotations

from pathlib import Path

import typer

from ukg2d365.cli.app import State, app, command
from ukg2d365.errors import UsageError
from ukg2d365.flows import history
from ukg2d365.ledger import Ledger
from ukg2d365.render import ledger as render

AUDIT_FORMATS = ("table", "csv", "json")


def _ledger_only(state: State) -> Ledger:
    """status/audit only need the ledger: a config is optional when --ledger is given (then, without one, the
    file is read as the one tenant it holds)."""
    has_config = state.config_path is not None and state.config_path.exists()
    config = state.config() if state.ledger_path is None or has_config else None
    location = state.ledger_path or (config.ledger_location if config is not None else None)
    if isinstance(location, Path) and not location.exists():
        raise UsageError(f"no ledger at {location} yet", hint="it is created by the first post-payroll or sync run")
    assert location is not None
    return Ledger(location, config.ledger_tenant if config is not None else None)


@app.command()
def status(
    ctx: typer.Context,
    limit: int = typer.Option(10, "--limit", help="How many recent runs/postings"),
    tenants: Path | None = typer.Option(None, "--tenants", help="Every tenant of this folder (one config each): "
                                        "schedule and last runs"),
) -> None:
    """Recent runs, postings, failures with their last error, and what is pending, from the ledger."""
    with command(ctx) as run:
        if tenants is not None:
            found = history.tenants_status(tenants, limit)
            render.tenants_status(run.out, found)
            return run.finish(code=1 if any(t.error for t in found) else 0)
        render.status(run.out, history.status(_ledger_only(run.state), limit))


@app.command()
def audit(
    ctx: typer.Context,
    key: str | None = typer.Argument(None, help="Posting key, marker or journal number; omit for recent postings"),
    fmt: str = typer.Option("table", "--format", help="table | csv | json"),
) -> None:
    """The full trail of one posting: what UKG returned, the plan, each request and answer, who ran it, when."""
    with command(ctx) as run:
        if fmt not in AUDIT_FORMATS:
            raise UsageError(f"--format {fmt!r}: use table, csv or json")
        ledger = _ledger_only(run.state)
        if key is None:
            render.recent_postings(run.out, ledger.find_postings(limit=20), fmt)
            return
        posting, events = history.audit_trail(ledger, key)
        render.audit_trail(run.out, key, posting, events, fmt)
