"""status and audit: read the ledger only (a config is optional when --ledger is given)."""

from __future__ import annotations

from pathlib import Path

import typer

from ukg2d365.cli.app import FORMAT, State, app, command
from ukg2d365.errors import Ukg2d365Error, UsageError
from ukg2d365.flows import history
from ukg2d365.ledger import Ledger
from ukg2d365.render import ledger as render


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
    offline: bool = typer.Option(False, "--offline", help="Do not ask D365 whether the journals are posted"),
    tenants: Path | None = typer.Option(None, "--tenants", help="Every tenant of this folder (one config each): "
                                        "schedule and last runs"),
) -> None:
    """Recent runs, postings, failures with their last error, and what is pending, from the ledger.

    For the journals listed it asks D365 once whether finance has posted them yet (IsPosted); when D365
    cannot be asked (no config or credentials, unreachable) that column says unknown and status still works.

    Examples:

    \b
      ukg2d365 status
      ukg2d365 --json status            # monitoring
      ukg2d365 --ledger /var/lib/ukg2d365/ukg2d365.db status --limit 30 --offline
      ukg2d365 status --tenants /etc/ukg2d365/tenants   # every tenant of a worker's folder
    """
    with command(ctx) as run:
        if tenants is not None:
            found = history.tenants_status(tenants, limit)
            render.tenants_status(run.out, found)
            return run.finish(code=1 if any(t.error for t in found) else 0)
        ledger = _ledger_only(run.state)
        config, reason = None, "--offline"
        if not offline:
            try:
                config = run.state.config()
            except Ukg2d365Error as exc:
                reason = f"no config to reach D365 with ({exc})"
        render.status(run.out, history.status(ledger, limit, config, offline_reason=reason))


@app.command()
def audit(
    ctx: typer.Context,
    key: str | None = typer.Argument(None, help="Posting key, marker or journal number; omit for recent postings"),
    fmt: str = FORMAT,
) -> None:
    """The full trail of one posting: what UKG returned, the plan, each request and answer, who ran it, when.

    Examples:

    \b
      ukg2d365 audit                                   # recent postings, to pick a key
      ukg2d365 audit C0MP1/BW/2026-11-13/GL20261113BW01
      ukg2d365 audit U2D-ABCDEFGHIJKL --format csv > trail.csv
      ukg2d365 audit dimension:CostCenter:130 --format json
    """
    with command(ctx, fmt=fmt) as run:
        ledger = _ledger_only(run.state)
        if key is None:
            render.recent_postings(run.out, ledger.find_postings(limit=20))
            return
        posting, events = history.audit_trail(ledger, key)
        render.audit_trail(run.out, key, posting, events)
