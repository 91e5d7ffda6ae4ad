"""worker: what it serves when it starts, and one line per scheduled job it ran (a JSON object with --json)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ukg2d365.render import Output

if TYPE_CHECKING:  # only the types: rendering never runs a flow
    from ukg2d365.flows.scheduled import JobReport, Tenant


def worker_started(out: Output, tenants: list[Tenant], name: str, scheduled: int, where: str) -> None:
    from ukg2d365.flows.scheduled import COMMANDS

    for tenant in tenants:
        jobs = ", ".join(f"{COMMANDS[job]} at '{cron}'" for job, cron in tenant.schedule.items()) or "nothing scheduled"
        profile = tenant.config.credentials.profile
        secrets = f"credential profile {profile}" if profile else "global credentials"
        out.say(f"{tenant.name} ({tenant.config_path.name}, {secrets}): {jobs}")
        out.event("tenant", tenant=tenant.name, config=str(tenant.config_path), schedule=tenant.schedule,
                  credential_profile=profile)
    out.summary(f"worker {name}: {scheduled} scheduled job(s) of {len(tenants)} tenant(s) on {where}; "
                "SIGTERM stops it after the jobs in progress", worker=name, scheduled=scheduled, tenants=len(tenants))


def job_done(out: Output, report: JobReport) -> None:
    from ukg2d365.flows.scheduled import COMMANDS

    counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report.summary.items())
    text = f"{report.tenant}: {COMMANDS[report.job]} (scheduled {report.scheduled_for}) exit {report.code}"
    text += (f": {counts}" if counts else "") + (f"; error: {report.error}" if report.error else "")
    if out.json_mode:
        out.event("job", tenant=report.tenant, job=report.job, scheduled_for=report.scheduled_for,
                  exit_code=report.code, summary=report.summary, error=report.error)
    elif report.code:
        out.warn(text)
    else:
        out.say(text)
