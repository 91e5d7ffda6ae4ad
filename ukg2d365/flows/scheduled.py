"""Scheduled jobs: the tenants of ``ukg2d365 worker --tenants DIR``, their ``schedule:``, and how a job runs.

Scheduling is Procrastinate's, not ours: each (tenant, job) with a cron expression becomes a periodic task,
deferred once per period by whichever worker gets there first, the database refusing a second defer
(procrastinate-org/procrastinate docs/howto/advanced/cron.md). Each job carries Procrastinate's ``lock`` of
its tenant (one job of a tenant runs at a time, in order: docs/howto/advanced/locks.md) and a
``queueing_lock`` (a slow tenant never piles up copies of one job: docs/howto/advanced/queueing_locks.md),
and runs as a recorded run under the tenant's ledger lock, like cron's runs, so a worker and a cron run of
one tenant never overlap either. Jobs of a worker killed mid-run are retried by a periodic task, as
docs/howto/production/retry_stalled_jobs.md shows; the flows recover what was in flight.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ukg2d365 import notify
from ukg2d365.config import Config, load_config
from ukg2d365.credentials import CredentialScope, missing_secrets
from ukg2d365.errors import ConfigError, ExitStatus, Ukg2d365Error
from ukg2d365.flows import accrue_payroll, post_payroll, sync_dimensions, sync_employees
from ukg2d365.flows.runtime import (
    Context,
    RecordedRun,
    internal_error_line,
    open_ledger,
    recorded_run,
    run_audit_key,
)
from ukg2d365.ledger import POSTED, queue


@dataclass
class JobOutcome:
    """What a job's flow planned and did: the counts its run records, and the plan and result themselves, which
    the worker describes as the command's own output would (its warnings and summary line) for the alert."""

    ok: bool
    counts: dict[str, Any]
    plan: Any
    result: Any


def _postings(plan: post_payroll.PayrollPlan, result: post_payroll.PayrollResult) -> JobOutcome:
    """The outcome of a job that posts journals (pay runs and accruals share the plan, result and poster)."""
    return JobOutcome(result.ok, {"posted": sum(1 for o in result.outcomes if o.status == POSTED),
                                  "failed": len(result.failed), "already_posted": len(plan.already_posted),
                                  "refused": len(plan.refused)}, plan, result)


def _post_payroll_due(ctx: Context) -> JobOutcome:
    plan = post_payroll.read_and_plan(ctx, post_payroll.Selection(due=True))
    return _postings(plan, post_payroll.apply(ctx, plan))


def _accrue_payroll_due(ctx: Context) -> JobOutcome:
    plan = accrue_payroll.read_and_plan(ctx, accrue_payroll.AccrualSelection(due=True))
    return _postings(plan, accrue_payroll.apply(ctx, plan))


def _sync_dimensions(ctx: Context) -> JobOutcome:
    plan = sync_dimensions.read_and_plan(ctx, sync_dimensions.DimensionSelection())
    result = sync_dimensions.apply(ctx, plan)
    return JobOutcome(result.ok, {"created": len(result.created), "failed": len(result.failed),
                                  "skipped": len(plan.skipped),
                                  "missing_main_accounts": len(plan.missing_main_accounts)}, plan, result)


def _sync_employees(ctx: Context) -> JobOutcome:
    plan = sync_employees.read_and_plan(ctx, sync_employees.EmployeeSelection())
    result = sync_employees.apply(ctx, plan)
    return JobOutcome(result.ok, {"sent": len(result.outcomes) - len(result.failed), "failed": len(result.failed),
                                  "skipped": len(plan.skipped)}, plan, result)


@dataclass(frozen=True)
class Job:
    command: str  # as the ledger records the run, after "worker "; and as an alert names it
    run: Callable[[Context], JobOutcome]


# The one table of schedulable jobs: a key of ``schedule:`` -> the flow it runs.
JOBS: dict[str, Job] = {
    "post_payroll_due": Job("post-payroll --due", _post_payroll_due),
    "accrue_payroll_due": Job("accrue-payroll --due", _accrue_payroll_due),
    "sync_dimensions": Job("sync-dimensions", _sync_dimensions),
    "sync_employees": Job("sync-employees", _sync_employees),
}
COMMANDS = {name: job.command for name, job in JOBS.items()}


# ---------------------------------------------------------------------- tenants


@dataclass
class Tenant:
    """One config file of the tenants folder."""

    config_path: Path
    config: Config

    @property
    def name(self) -> str:
        return self.config.ledger_tenant

    @property
    def schedule(self) -> dict[str, str]:
        return self.config.schedule.jobs()


def load_tenant(path: Path) -> Tenant:
    """A tenant's config (``schedule:`` names only jobs of ``JOBS``: the config model refuses any other key)."""
    return Tenant(path, load_config(path))


def load_tenants(folder: Path) -> list[Tenant]:
    """Every ``*.yaml`` / ``*.yml`` of ``folder``, one tenant each; two files naming one tenant are refused."""
    if not folder.is_dir():
        raise ConfigError(f"--tenants {folder}: not a folder", hint="give the folder holding one config per tenant")
    paths = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if not paths:
        raise ConfigError(f"--tenants {folder}: no tenant config (*.yaml) in it")
    tenants = [load_tenant(p) for p in paths]
    seen: dict[str, Path] = {}
    for tenant in tenants:
        if tenant.name in seen:
            raise ConfigError(f"{tenant.config_path}: ledger.tenant {tenant.name} is also the tenant of "
                              f"{seen[tenant.name]}", hint="set a distinct ledger.tenant in each file")
        seen[tenant.name] = tenant.config_path
    return tenants


def shared_ledger_url(tenants: list[Tenant]) -> str:
    """The one PostgreSQL every tenant's ledger and the queue live in."""
    urls = {t.config.ledger.url for t in tenants}
    if None in urls:
        without = next(t for t in tenants if t.config.ledger.url is None)
        raise ConfigError(f"{without.config_path}: the worker needs ledger.url (PostgreSQL)",
                          hint="a SQLite ledger serves one cron host; see README, 'Two set-ups'")
    if len(urls) > 1:
        raise ConfigError(f"--tenants: the configs name {len(urls)} different ledger.url values",
                          hint="every tenant of a worker shares one PostgreSQL database")
    return str(urls.pop())


# ---------------------------------------------------------------------- running a job


# What the job's run would have told an operator at a terminal: its warnings and its summary line. The worker
# passes the CLI's own wording (render.worker.describe_job); the flows never render.
Describe = Callable[[str, JobOutcome], tuple[list[str], str | None]]


@dataclass
class JobReport:
    """What one scheduled job did, as its run was recorded in the tenant's ledger, and how its alert went."""

    tenant: str
    job: str
    scheduled_for: str
    code: int
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    summary_text: str | None = None
    alert_problems: list[str] = field(default_factory=list)  # alert or heartbeat not delivered: the log says so


def scheduled_for(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


def counts_text(counts: dict[str, Any]) -> str:
    """``posted 1, failed 0, refused 1``: a job's counts in words."""
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items())


def run_job(tenant: Tenant, job: str, timestamp: int, worker: str, *, describe: Describe | None = None) -> JobReport:
    """Run one scheduled job of a tenant as a recorded run under the tenant's ledger lock, then alert as cron would.

    The config is read again, so an edit reaches the next run without a restart (its ``schedule:`` is read
    when the worker starts). A refusal, a busy lock, an unavailable system or a bug ends the run with its exit
    code, recorded in the tenant's ledger, and does not stop the worker. The run's Context takes its secrets from
    the config's ``credentials.profile`` only (or the global ones when it names none): never another tenant's.
    Then the run's alert (failed, refused or warned) or heartbeat (succeeded) goes to the tenant's own channel,
    after the lock is released, through the same ``notify.after_run`` as a CLI run's.
    """
    when = scheduled_for(timestamp)
    report = JobReport(tenant.name, job, when, int(ExitStatus.RECORDS_FAILED))
    run: RecordedRun | None = None
    outcome: JobOutcome | None = None
    try:
        config = load_tenant(tenant.config_path).config
        with recorded_run(config, f"worker {JOBS[job].command}", {"scheduled_for": when, "worker": worker},
                          lock=True) as run:
            outcome = JOBS[job].run(run.context)
            run.summary.update(outcome.counts)
            run.code = int(ExitStatus.OK if outcome.ok else ExitStatus.RECORDS_FAILED)
        report.summary, report.code = dict(outcome.counts), run.code
    except Ukg2d365Error as exc:
        report.code, report.error = int(exc.exit_status), str(exc)
    except Exception as exc:  # noqa: BLE001 - a bug in one job: recorded, alerted, and the worker serves on
        report.code = int(ExitStatus.INTERNAL)
        where = (f"the traceback is in `ukg2d365 -c {shlex.quote(str(tenant.config_path))} audit "
                 f"{run.traceback_key}`" if run is not None and run.traceback_key else "the worker's log has it")
        report.error = f"internal error (this is a bug): {internal_error_line(exc)}; {where}"
    if outcome is not None and describe is not None:
        report.warnings, report.summary_text = _described(describe, job, outcome)
    report.alert_problems = _alert(tenant, report, worker, run)
    return report


def _described(describe: Describe, job: str, outcome: JobOutcome) -> tuple[list[str], str | None]:
    try:
        warnings, summary = describe(job, outcome)
    except Exception as exc:  # noqa: BLE001 - the run is recorded; its alert still goes, with its counts
        return [f"the job's warnings could not be listed ({internal_error_line(exc)})"], None
    return list(warnings), summary


def _alert(tenant: Tenant, report: JobReport, worker: str, run: RecordedRun | None) -> list[str]:
    """The job's alert or heartbeat; what did not arrive is audited under the run (``audit run:N``)."""
    problems = notify.after_run(notify.RunReport(
        JOBS[report.job].command, report.code, error=report.error, warnings=report.warnings,
        summary=report.summary_text or counts_text(report.summary) or None, tenant=tenant.name,
        config_path=tenant.config_path, origin=f"scheduled for {report.scheduled_for} (worker {worker})"),
        tenant.config_path)
    if problems and run is not None:
        _audit_undelivered(run, problems)
    return problems


def _audit_undelivered(run: RecordedRun, problems: list[str]) -> None:
    run_id = run.context.ledger.run_id if "ledger" in run.context.__dict__ else None
    if run_id is None:
        return
    with contextlib.suppress(Ukg2d365Error):  # a ledger gone away: the log line still says it
        ledger = open_ledger(run.config)
        try:
            ledger.run_id = run_id  # the event belongs to the job's run, which has ended
            ledger.audit("alert not delivered", {"problems": problems}, run_audit_key(run_id))
        finally:
            ledger.close()


# ---------------------------------------------------------------------- at worker start


@dataclass
class MissingSecrets:
    """A tenant whose jobs would stop with exit 2 for want of a secret, and how its alert about it went."""

    tenant: Tenant
    problems: list[str]  # one per system, each naming the command that sets it
    alert_problems: list[str] = field(default_factory=list)


def check_secrets(tenants: list[Tenant], worker: str) -> list[MissingSecrets]:
    """Each tenant with a schedule has its UKG and D365 secrets (presence only: nothing decrypted nor sent).

    A tenant missing one gets an alert through its own channel, if it has one; the worker serves it anyway, so a
    secret stored while it runs (``credentials set``) reaches the next job without a restart.
    """
    found = []
    for tenant in tenants:
        if not tenant.schedule:
            continue
        scope = CredentialScope.of(tenant.config)
        missing = [str(e) for e in (missing_secrets(system, scope=scope) for system in ("ukg", "d365")) if e]
        if not missing:
            continue
        jobs = ", ".join(JOBS[job].command for job in tenant.schedule)
        report = notify.RunReport(jobs, int(ExitStatus.USAGE), error="; ".join(missing), tenant=tenant.name,
                                  config_path=tenant.config_path, verdict="will fail",
                                  origin=f"as scheduled on worker {worker}, which started without the secrets")
        found.append(MissingSecrets(tenant, missing, notify.after_run(report, tenant.config_path,
                                                                      config=tenant.config)))
    return found


# ---------------------------------------------------------------------- the worker


def _register(app: Any, tenants: list[Tenant], worker: str, report: Callable[[JobReport], None],
              describe: Describe | None) -> int:
    """One Procrastinate periodic task per (tenant, job); the number registered."""
    by_name = {t.name: t for t in tenants}

    @app.task(name="ukg2d365.scheduled_job")
    def scheduled_job(timestamp: int, tenant: str, job: str) -> None:
        report(run_job(by_name[tenant], job, timestamp, worker, describe=describe))

    @app.periodic(cron="* * * * *", periodic_id="retry-stalled")
    @app.task(name="ukg2d365.retry_stalled_jobs", queueing_lock="ukg2d365:retry-stalled")
    async def retry_stalled_jobs(timestamp: int) -> None:
        # Jobs of a worker killed mid-run stay "doing" and hold their tenant's Procrastinate lock: hand them
        # back to the queue (docs/howto/production/retry_stalled_jobs.md). Their flows recover what was sent.
        for stalled in await app.job_manager.get_stalled_jobs():
            await app.job_manager.retry_job(stalled)

    count = 0
    for tenant in tenants:
        for job, cron in tenant.schedule.items():
            app.periodic(cron=cron, periodic_id=f"{job}:{tenant.name}", lock=f"ukg2d365:{tenant.name}",
                         queueing_lock=f"ukg2d365:{job}:{tenant.name}",
                         task_kwargs={"tenant": tenant.name, "job": job})(scheduled_job)
            count += 1
    return count


class Worker:
    """A Procrastinate worker on the tenants' shared PostgreSQL, with every tenant's schedule registered."""

    def __init__(self, tenants: list[Tenant], *, name: str, concurrency: int,
                 report: Callable[[JobReport], None], describe: Describe | None = None) -> None:
        self.name = name
        self.concurrency = concurrency
        url = shared_ledger_url(tenants)
        for tenant in tenants:  # each ledger reachable and at the current schema before the first job
            open_ledger(tenant.config).close()
        self.where = queue.describe(url)
        self.app = queue.open_app(url, max_connections=concurrency + 4)
        self.scheduled = _register(self.app, tenants, name, report, describe)

    def serve(self) -> None:
        """Run until SIGTERM or SIGINT; the jobs in progress finish first (a second signal stops at once)."""
        self.app.run_worker(name=self.name, concurrency=self.concurrency, wait=True, delete_jobs="successful",
                            install_signal_handlers=True)
