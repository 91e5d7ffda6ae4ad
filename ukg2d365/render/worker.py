"""worker: what it serves when it starts, and one line per scheduled job it ran (a JSON object with --json).

A job's alert says what the same command run from cron would have printed: ``describe_job`` renders the job's
plan and result through the commands' own render functions into a transcript that prints nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ukg2d365.render import Output
from ukg2d365.render import accruals as render_accruals
from ukg2d365.render import payroll as render_payroll
from ukg2d365.render import sync as render_sync

if TYPE_CHECKING:  # only the types: rendering never runs a flow
    from ukg2d365.flows.scheduled import JobOutcome, JobReport, MissingSecrets, Tenant


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


def secrets_missing(out: Output, missing: list[MissingSecrets]) -> None:
    """One warning per tenant whose jobs will stop with exit 2 until its secrets are set; the worker serves on."""
    for m in missing:
        out.warn(f"{m.tenant.name} ({m.tenant.config_path.name}): its jobs will stop with exit 2 until the secret is "
                 f"set: {'; '.join(m.problems)}")
        for problem in m.alert_problems:
            out.warn(f"{m.tenant.name}: {problem}")


def job_done(out: Output, report: JobReport) -> None:
    from ukg2d365.flows.scheduled import COMMANDS, counts_text

    counts = counts_text(report.summary)
    text = f"{report.tenant}: {COMMANDS[report.job]} (scheduled {report.scheduled_for}) exit {report.code}"
    text += (f": {counts}" if counts else "") + (f"; error: {report.error}" if report.error else "")
    if out.json_mode:
        out.event("job", tenant=report.tenant, job=report.job, scheduled_for=report.scheduled_for,
                  exit_code=report.code, summary=report.summary, error=report.error, warnings=report.warnings,
                  alert_problems=report.alert_problems)
    elif report.code:
        out.warn(text)
    else:
        out.say(text)
    for problem in report.alert_problems:  # a warning line of its own, also as a JSON log line with --json
        out.warn(f"{report.tenant}: {COMMANDS[report.job]}: {problem}")


# ---------------------------------------------------------------------- what a job would have printed


class Transcript(Output):
    """An Output that prints nothing and keeps what a run tells its operator: the warnings and the summary line."""

    def event(self, name: str, **fields: Any) -> None:
        pass

    def say(self, text: str, *, style: str | None = None, lead: tuple[str, str] | None = None) -> None:
        pass

    def table(self, table: Any) -> None:
        pass

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def summary(self, text: str, **fields: Any) -> None:
        self.summary_text = text


def _post_payroll(out: Output, plan: Any, result: Any) -> str:
    render_payroll.payroll_plan(out, plan, dry_run=False, detailed=False)
    if not plan.to_post:
        return render_payroll.payroll_plan_summary(plan, dry_run=False)
    render_payroll.posting_outcomes(out, result.outcomes)
    return render_payroll.payroll_summary(plan, result)


def _accrue_payroll(out: Output, plan: Any, result: Any) -> str:
    render_accruals.accrual_plan(out, plan, dry_run=False, detailed=False)
    if not plan.to_post:
        return render_accruals.accrual_plan_summary(plan, dry_run=False)
    render_payroll.posting_outcomes(out, result.outcomes)
    return render_accruals.accrual_summary(plan, result)


def _sync_dimensions(out: Output, plan: Any, result: Any) -> str:
    render_sync.dimension_plan(out, plan, dry_run=False)
    if not plan.to_create:
        return render_sync.dimension_summary(plan)
    render_sync.dimension_outcomes(out, result)
    return render_sync.dimension_summary(plan, result)


def _sync_employees(out: Output, plan: Any, result: Any) -> str:
    render_sync.employee_plan(out, plan, dry_run=False)
    if not plan.writes:
        return render_sync.employee_summary(plan)
    render_sync.employee_outcomes(out, result)
    return render_sync.employee_summary(plan, result)


# A key of ``schedule:`` -> what its command prints after it applied (cli/payroll.py, accruals.py, sync.py).
DESCRIBERS: dict[str, Callable[[Output, Any, Any], str]] = {
    "post_payroll_due": _post_payroll,
    "accrue_payroll_due": _accrue_payroll,
    "sync_dimensions": _sync_dimensions,
    "sync_employees": _sync_employees,
}


def describe_job(job: str, outcome: JobOutcome) -> tuple[list[str], str | None]:
    """The warnings and summary line the job's command prints, in its own words: what the alert repeats."""
    out = Transcript()
    summary = DESCRIBERS[job](out, outcome.plan, outcome.result)
    return out.warnings, summary
