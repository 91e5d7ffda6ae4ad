"""The ``webhook`` group (``webhook serve``).

The server itself lives in ``ukg2d365.webhook``; this module loads the config, prints where it listens,
serves until SIGTERM/SIGINT, and maps errors to exit codes like every other command (a missing or short
secret, or a port that cannot be bound, exits 2 before anything is received).
"""

from __future__ import annotations

import typer

from ukg2d365.cli.app import app, command
from ukg2d365.config import is_loopback
from ukg2d365.webhook import HEALTH_PATH, build_server

HELP = ("Receive UKG webhooks and run the matching read (employee sync, post-payroll --due) for each event.\n\n"
        "Examples:\n\n\b\n  ukg2d365 webhook serve --port 8765")

webhook_app = typer.Typer(help=HELP, no_args_is_help=True)


@webhook_app.command("serve")
def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Address to listen on [default: webhooks.host]",
                                    show_default=False),
    port: int | None = typer.Option(None, "--port", min=0, max=65535,
                                    help="Port to listen on, 0 for any free one [default: webhooks.port]",
                                    show_default=False),
) -> None:
    """Verify each webhook's HMAC SHA-256, record it, answer 202 at once, and run its read in the background.

    POST to / or /ukg/webhooks; GET /healthz for monitoring. Plain HTTP: put it behind a TLS reverse proxy.
    The scheduled `post-payroll --due` and `sync-employees` runs stay the safety net for lost events.

    Examples:

    \b
      ukg2d365 webhook serve
      ukg2d365 --json webhook serve --host 127.0.0.1 --port 8765
    """
    with command(ctx) as run:
        config = run.state.config()
        server = build_server(config, ledger_path=run.state.ledger_path, host=host, port=port)
        receiver = server.receiver
        run.out.event("listening", url=server.url, health=f"http://{server.host}:{server.port}{HEALTH_PATH}",
                      signature_header=config.webhooks.signature_header)
        run.out.summary(f"listening on {server.url} (and /), health on {HEALTH_PATH}; "
                        f"signature in {config.webhooks.signature_header} ({config.webhooks.signature_encoding}); "
                        "stop with Ctrl-C or SIGTERM")
        if not is_loopback(server.host):
            run.out.warn(f"listening on {server.host} in plain HTTP: expose it only through a TLS reverse proxy")
        server.serve_until_signal()
        counts = {k: v for k, v in receiver.health().payload.items() if k != "ok"}
        run.finish(f"stopped: {counts['accepted']} event(s) accepted, {counts['duplicates']} duplicate(s), "
                   f"{counts['rejected']} refused ({counts['unverified']} unverified), {counts['queued']} "
                   "left queued for the next start", **counts)


app.add_typer(webhook_app, name="webhook")
