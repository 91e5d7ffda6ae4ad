"""worker: run every tenant's ``schedule:`` as Procrastinate periodic tasks on the ledger's PostgreSQL."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import typer

from ukg2d365.cli.app import app, command
from ukg2d365.flows import scheduled
from ukg2d365.render import worker as render

TENANTS = typer.Option(..., "--tenants", help="Folder with one config file (*.yaml) per tenant, each with schedule:")


@app.command()
def worker(
    ctx: typer.Context,
    tenants: Path = TENANTS,
    concurrency: int = typer.Option(4, "--concurrency", min=1, max=64,
                                    help="Jobs run at once (different tenants; one tenant runs one at a time)"),
    name: str | None = typer.Option(None, "--name", help="Worker name in logs [default: HOST-PID]"),
) -> None:
    """Run each tenant's schedule (highly available: start one worker on each of two hosts).

    Each job is a recorded run under its tenant's lock and alerts as a cron run does: one message to the
    tenant's notification URLs when it failed, refused something or warned, the tenant's heartbeat when it
    succeeded. At start, a tenant missing its UKG or D365 secret is named (and alerted); the others are served.

    Examples:

    \b
      ukg2d365 worker --tenants /etc/ukg2d365/tenants
      ukg2d365 --json worker --tenants /etc/ukg2d365/tenants --name host-a --concurrency 2
      ukg2d365 status --tenants /etc/ukg2d365/tenants     # each tenant's schedule and last runs
    """
    with command(ctx) as run:
        loaded = scheduled.load_tenants(tenants)
        if run.state.verbose:  # Procrastinate's own log (job fetched, deferred, stalled) on stderr
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        worker_name = name or f"{socket.gethostname()}-{os.getpid()}"
        served = scheduled.Worker(loaded, name=worker_name, concurrency=concurrency,
                                  report=lambda report: render.job_done(run.out, report),
                                  describe=render.describe_job)
        render.secrets_missing(run.out, scheduled.check_secrets(loaded, worker_name))
        render.worker_started(run.out, loaded, worker_name, served.scheduled, served.where)
        served.serve()
        run.finish(f"worker {worker_name} stopped")
