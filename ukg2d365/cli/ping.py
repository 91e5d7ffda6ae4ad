"""ping: authenticate to every system and make one cheap read on each (not recorded as a run)."""

from __future__ import annotations

import typer

from ukg2d365.cli.app import app, command
from ukg2d365.flows import ping as flow
from ukg2d365.flows.runtime import Context
from ukg2d365.render import ping as render


@app.command()
def ping(ctx: typer.Context) -> None:
    """Authenticate to UKG, Entra ID and D365, make one cheap read on each, and diagnose what is wrong."""
    with command(ctx) as run:
        context = Context(run.state.config(), ledger_path=run.state.ledger_path, record_http=False)
        checks = flow.ping(context)
        code = int(flow.exit_status(checks))
        render.checks(run.out, checks, code)
        run.finish(code=code)
