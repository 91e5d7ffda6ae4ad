"""ping: authenticate to every system and make one cheap read on each (not recorded as a run)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import typer

from ukg2d365.cli.app import app, command
from ukg2d365.config import Config
from ukg2d365.credentials import CredentialScope
from ukg2d365.errors import ExitStatus, Ukg2d365Error
from ukg2d365.flows import ping as flow
from ukg2d365.flows.runtime import Context
from ukg2d365.notify import notifier
from ukg2d365.render import ping as render


@app.command()
def ping(
    ctx: typer.Context,
    notify: bool = typer.Option(False, "--notify", help="Also send a test alert to every notification URL"),
) -> None:
    """Authenticate to UKG, Entra ID and D365, make one cheap read on each, and diagnose what is wrong.

    Examples:

    \b
      ukg2d365 ping
      ukg2d365 -c /etc/ukg2d365/ukg2d365.yaml ping      # after any change in D365's set-up
      ukg2d365 --json ping                             # a health check for monitoring
      ukg2d365 ping --notify                           # and a test alert
    """
    with command(ctx) as run:
        config = run.state.config()
        context = Context(config, ledger_path=run.state.ledger_path, record_http=False)
        checks = flow.ping(context)
        if notify:
            checks.append(notify_check(config, checks))
        code = int(flow.exit_status(checks))
        render.checks(run.out, checks, code)
        run.finish(code=code)


def notify_check(config: Config, checks: list[flow.Check]) -> flow.Check:
    """A line of its own: a test alert sent to every notification URL (named by position and scheme only)."""
    host = socket.gethostname()
    try:
        sender = notifier(config.notify, scope=CredentialScope.of(config))
    except Ukg2d365Error as exc:
        return flow.Check("Notify", "-", False, None, str(exc), exc.exit_status)
    if not sender.urls:
        return flow.Check("Notify", "-", False, None, f"no notification URLs: set {sender.where_urls_come_from()}",
                          ExitStatus.USAGE)
    verdict = "; ".join(f"{c.system} {'ok' if c.ok else 'FAILED'}" for c in checks)
    title, body, failure = _message(host, verdict, os.environ)
    problems = sender.send(title, body, failure=failure)
    if problems:
        return flow.Check("Notify", "-", False, None, "; ".join(problems), ExitStatus.UNAVAILABLE)
    heartbeat = "heartbeat configured" if sender.heartbeat else "no heartbeat (notify.heartbeat_url)"
    return flow.Check("Notify", "-", True, None, f"test alert sent to {len(sender.urls)} URL(s); {heartbeat}")


def _message(host: str, verdict: str, environ: Mapping[str, str]) -> tuple[str, str, bool]:
    """A test alert, or, run from a systemd OnFailure= unit, the alert that the monitored unit failed.

    systemd passes the failed unit's name and result to OnFailure= units as $MONITOR_UNIT,
    $MONITOR_SERVICE_RESULT, $MONITOR_EXIT_CODE and $MONITOR_EXIT_STATUS (systemd.exec(5), "Environment
    Variables Set or Propagated by the Service Manager"): a unit that died without its own alert (killed,
    timed out) is still reported.
    """
    unit = environ.get("MONITOR_UNIT")
    if not unit:
        return (f"ukg2d365 test alert from {host}",
                f"ukg2d365 ping --notify on {host}: this is a test alert. ping: {verdict}", False)
    result = ", ".join(v for v in (environ.get("MONITOR_SERVICE_RESULT"), environ.get("MONITOR_EXIT_CODE"),
                                   environ.get("MONITOR_EXIT_STATUS")) if v)
    return (f"ukg2d365: {unit} failed on {host}",
            f"systemd unit {unit} failed on {host} ({result or 'no result given'}). next: `journalctl -u {unit}` "
            f"has its output; `ukg2d365 status` lists the runs. ping now: {verdict}", True)
