"""What a UKG webhook means: which read it triggers, and running that read with the flows.

The webhook server (``ukg2d365.webhook``) verifies and records each event; this module decides what it
triggers and runs it:

* **Route**: employee events run that employee's sync-employees; payroll events run post-payroll --due for
  their pay group (only pay groups in ``ukg.pay_groups``: a webhook never widens what cron would post).
  Events queued together are merged into one read (``merge``).
* **Run**: ``FlowRunner`` runs one read under the ledger lock, as a run recorded by ``recorded_run`` (like
  every CLI command), with the flows' own ``read_and_plan``/``apply``; outcomes (done, failed, ignored) land in
  ``webhook_events.status``/``detail``.
* **Backfill**: UKG drops events while its triggers are off (restores, mass updates) and keeps undelivered
  ones for a limited time, so webhooks only make things faster: the scheduled ``post-payroll --due`` and
  ``sync-employees`` runs remain the safety net.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from ukg2d365.config import Config
from ukg2d365.errors import ExitStatus, LockBusy, Ukg2d365Error
from ukg2d365.flows.post_payroll import Selection, read_and_plan
from ukg2d365.flows.post_payroll import apply as apply_payroll
from ukg2d365.flows.runtime import Context, recorded_run
from ukg2d365.flows.sync_employees import SINCE_OVERLAP, EmployeePlan, plan_records
from ukg2d365.flows.sync_employees import apply as apply_employees
from ukg2d365.ledger import Ledger
from ukg2d365.ledger.tables import DONE, FAILED, QUEUED

MAX_EVENT_ID_CHARS = 200
MAX_DETAIL_CHARS = 2000
# A cron run can take a while; an event waits at least this long for the ledger lock before it is marked
# failed (the next scheduled run covers it then).
LOCK_WAIT_SECONDS = 900.0
LOCK_POLL_SECONDS = 1.0

SYNC_EMPLOYEES, POST_PAYROLL_DUE = "sync-employees", "post-payroll --due"


# ---------------------------------------------------------------------- events and what they trigger


class EventError(ValueError):
    """A verified body that is not a usable UKG event (the reason is safe to log and answer)."""


def _lookup(mapping: Mapping[str, Any], *names: str) -> str | None:
    """First non-empty value among ``names``, case-insensitive: UKG spells ids differently per product."""
    folded = {str(k).casefold(): v for k, v in mapping.items()}
    for name in names:
        value = folded.get(name.casefold())
        if value is not None and not isinstance(value, (dict, list, bool)) and str(value).strip():
            return str(value).strip()
    return None


@dataclass(frozen=True)
class WebhookEvent:
    """The fields of a UKG webhook the tool uses (the payload is thin: details are read back over REST)."""

    event_id: str
    event_type: str
    operation: str | None = None
    event_time: str | None = None
    company: str | None = None
    employee: str | None = None
    pay_group: str | None = None
    tenant: str | None = None

    @classmethod
    def parse(cls, document: Any) -> WebhookEvent:
        if not isinstance(document, dict):
            raise EventError("the body is not a JSON object")
        event_id = _lookup(document, "EventId")
        if event_id is None:
            raise EventError("EventId is missing")
        if len(event_id) > MAX_EVENT_ID_CHARS:
            raise EventError(f"EventId is longer than {MAX_EVENT_ID_CHARS} characters")
        event_type = _lookup(document, "EventType")
        if event_type is None:
            raise EventError("EventType is missing")
        payload = document.get("Payload") or {}
        if not isinstance(payload, dict):
            raise EventError("Payload is not a JSON object")
        return cls(
            event_id=event_id,
            event_type=event_type,
            operation=_lookup(document, "Operation"),
            event_time=_lookup(document, "EventTime"),
            company=_lookup(payload, "CoId", "CompanyId"),
            employee=_lookup(payload, "EeId", "EmployeeId"),
            pay_group=_lookup(payload, "PayGroup", "PayGroupCode"),
            tenant=_lookup(document, "Tenant"),
        )

    def day(self, today: date) -> date:
        """The day the event happened (UKG's EventTime is tenant-local, without zone), never after today."""
        try:
            happened = date.fromisoformat((self.event_time or "")[:10])
        except ValueError:
            return today
        return min(happened, today)


@dataclass(frozen=True)
class EmployeeRef:
    employee: str  # UKG EeId (employeeID)
    company: str | None  # UKG CoId (companyID); None matches any company


@dataclass(frozen=True)
class WebhookAction:
    """A read to run for one or more events (events queued together are merged)."""

    kind: str  # SYNC_EMPLOYEES | POST_PAYROLL_DUE
    event_ids: tuple[str, ...]
    employees: tuple[EmployeeRef, ...] = ()
    changed_since: date | None = None  # employee events: read UKG records changed on or after this day
    pay_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ignored:
    reason: str


@dataclass(frozen=True)
class RunOutcome:
    status: str  # DONE | FAILED | QUEUED (interrupted before it started: picked up at the next start)
    detail: str


def _is_employee_event(event_type: str) -> bool:
    return "employee" in event_type.casefold()


def _is_payroll_event(event_type: str) -> bool:
    folded = event_type.casefold()
    return any(word in folded for word in ("payroll", "payperiod", "generalledger"))


def route(event: WebhookEvent, pay_groups: Sequence[str], today: date) -> WebhookAction | Ignored:
    """What an event triggers. No I/O."""
    if _is_employee_event(event.event_type):
        if event.employee is None:
            return Ignored("employee event without Payload.EeId")
        return WebhookAction(SYNC_EMPLOYEES, (event.event_id,), (EmployeeRef(event.employee, event.company),),
                             changed_since=event.day(today) - SINCE_OVERLAP)
    if _is_payroll_event(event.event_type):
        if event.pay_group is not None:
            # Only what cron would post: a webhook must not widen the configured scope.
            if pay_groups and event.pay_group not in pay_groups:
                return Ignored(f"pay group {event.pay_group} is not in ukg.pay_groups")
            return WebhookAction(POST_PAYROLL_DUE, (event.event_id,), pay_groups=(event.pay_group,))
        if not pay_groups:
            return Ignored("payroll event without a pay group, and ukg.pay_groups is empty")
        return WebhookAction(POST_PAYROLL_DUE, (event.event_id,), pay_groups=tuple(pay_groups))
    return Ignored(f"event type {event.event_type} triggers nothing")


def merge(actions: Iterable[WebhookAction]) -> list[WebhookAction]:
    """One employee sync and one payroll read for a burst of events (mass updates send thousands)."""
    merged: dict[str, WebhookAction] = {}
    for action in actions:
        previous = merged.get(action.kind)
        if previous is None:
            merged[action.kind] = action
            continue
        since = [d for d in (previous.changed_since, action.changed_since) if d is not None]
        merged[action.kind] = replace(
            previous,
            event_ids=previous.event_ids + action.event_ids,
            employees=tuple(dict.fromkeys(previous.employees + action.employees)),
            changed_since=min(since) if since else None,
            pay_groups=tuple(dict.fromkeys(previous.pay_groups + action.pay_groups)),
        )
    return [merged[k] for k in (SYNC_EMPLOYEES, POST_PAYROLL_DUE) if k in merged]


# ---------------------------------------------------------------------- the ledger's record of events


class WebhookEventTable:
    """Every event received with a valid signature, keyed by EventId: replay protection and outcome.

    A typed view of the ledger's ``webhook_events`` (its statements live in ``ukg2d365.ledger.tables``).
    """

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def record(self, event: WebhookEvent, status: str, detail: str) -> bool:
        """Insert the event; False when its EventId is already recorded (a replay or a redelivery)."""
        return self._ledger.record_webhook_event(asdict(event), status, detail[:MAX_DETAIL_CHARS])

    def set_status(self, event_ids: Sequence[str], status: str, detail: str) -> None:
        self._ledger.set_webhook_event_status(event_ids, status, detail[:MAX_DETAIL_CHARS])

    def get(self, event_id: str) -> dict[str, Any] | None:
        return self._ledger.webhook_event(event_id)

    def unfinished(self) -> list[WebhookEvent]:
        """Events queued or running when the server last stopped, oldest first."""
        return [WebhookEvent(**row) for row in self._ledger.unfinished_webhook_events()]


# ---------------------------------------------------------------------- running an action with the flows


class ActionRunner(Protocol):
    """Runs one read; ``stop`` is set when the server shuts down (stop waiting, do not start)."""

    def __call__(self, action: WebhookAction, stop: threading.Event) -> RunOutcome: ...


@dataclass
class EmployeeEventPlan:
    plan: EmployeePlan
    not_found: list[EmployeeRef] = field(default_factory=list)


def _matcher(wanted: Sequence[EmployeeRef]) -> Callable[[Mapping[str, Any]], EmployeeRef | None]:
    by_employee: dict[str, list[EmployeeRef]] = {}
    for ref in wanted:
        by_employee.setdefault(ref.employee.casefold(), []).append(ref)

    def match(raw: Mapping[str, Any]) -> EmployeeRef | None:
        employee = _lookup(raw, "employeeID")
        company = (_lookup(raw, "companyID") or "").casefold()
        for ref in by_employee.get((employee or "").casefold(), []):
            if ref.company is None or ref.company.casefold() == company:
                return ref
        return None

    return match


def plan_employee_events(ctx: Context, wanted: Sequence[EmployeeRef], changed_since: date | None, *,
                         today: date | None = None) -> EmployeeEventPlan:
    """sync-employees' read and plan, narrowed to the employees the events name.

    The same steps as ``flows.sync_employees.read_and_plan`` over a filtered stream of UKG records. The plan
    has no ``started_at``, so applying it never moves sync-employees' watermark: a one-employee run must not
    make the next scheduled run skip other employees' changes.
    """
    match = _matcher(wanted)
    found: set[EmployeeRef] = set()

    def named(raws: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        for raw in raws:
            ref = match(raw)
            if ref is not None:
                found.add(ref)
                yield raw

    plan = plan_records(ctx, named(ctx.ukg.employment_details(changed_since)), today=today)
    plan.changed_since = changed_since
    return EmployeeEventPlan(plan, [ref for ref in wanted if ref not in found])


class FlowRunner:
    """Runs the real flows for an action, under the ledger lock, as a run recorded in the ledger."""

    def __init__(self, config: Config, ledger_path: Path | None = None, *,
                 lock_wait_seconds: float = LOCK_WAIT_SECONDS) -> None:
        self.config = config
        self.ledger_path = ledger_path
        self.lock_wait_seconds = max(config.ledger.lock_timeout_seconds, lock_wait_seconds)

    def __call__(self, action: WebhookAction, stop: threading.Event) -> RunOutcome:
        args = {"event_ids": list(action.event_ids), "employees": [r.employee for r in action.employees],
                "pay_groups": list(action.pay_groups)}
        try:
            with recorded_run(self.config, f"webhook {action.kind}", args, lock=False,
                              ledger_path=self.ledger_path) as run:
                if not self._lock(run.context.ledger, stop):
                    run.code = int(ExitStatus.LOCKED)
                    run.summary["detail"] = "the server stopped while waiting for the ledger lock"
                    return RunOutcome(QUEUED, run.summary["detail"])
                if action.kind == SYNC_EMPLOYEES:
                    outcome = self._sync_employees(run.context, action)
                else:
                    outcome = self._post_due(run.context, action)
                run.code = int(ExitStatus.OK if outcome.status == DONE else ExitStatus.RECORDS_FAILED)
                run.summary["detail"] = outcome.detail
                return outcome
        except LockBusy:
            raise  # recorded (75); the worker marks the events failed: the next scheduled run covers them
        except Ukg2d365Error as exc:
            return RunOutcome(FAILED, str(exc))

    def _lock(self, ledger: Ledger, stop: threading.Event) -> bool:
        """Wait for a cron run holding the lock to finish, but give up at once when the server stops."""
        deadline = time.monotonic() + self.lock_wait_seconds
        while True:
            try:
                ledger.acquire_lock(0)
                return True
            except LockBusy:
                if time.monotonic() >= deadline:
                    raise
            if stop.wait(LOCK_POLL_SECONDS):
                return False

    def _sync_employees(self, ctx: Context, action: WebhookAction) -> RunOutcome:
        planned = plan_employee_events(ctx, action.employees, action.changed_since)
        result = apply_employees(ctx, planned.plan)
        notes = [f"{a.personnel_number}: {a.kind} ({a.reason})" for a in planned.plan.actions]
        notes += [f"{o.action.personnel_number}: failed: {o.error}" for o in result.failed]
        notes += [f"UKG employee {r.employee}: no employment change since {action.changed_since}"
                  for r in planned.not_found]
        return RunOutcome(DONE if result.ok else FAILED, "; ".join(notes) or "nothing to do")

    def _post_due(self, ctx: Context, action: WebhookAction) -> RunOutcome:
        notes: list[str] = []
        ok = True
        for pay_group in action.pay_groups:
            plan = read_and_plan(ctx, Selection(pay_group=pay_group, due=True))
            result = apply_payroll(ctx, plan)  # the CLI's apply: it records refusals also when nothing is to post
            posted = sum(1 for o in result.outcomes if o.status == "posted")
            note = (f"pay group {pay_group}: posted {posted} journal(s), {len(result.failed)} failed, "
                    f"{len(plan.already_posted)} already posted, {len(plan.refused)} refused")
            if plan.runs_without_gl:
                note += ", closed without a GL run yet: " + ", ".join(str(d) for _, d in plan.runs_without_gl)
            notes.append(note)
            ok = ok and result.ok
        return RunOutcome(DONE if ok else FAILED, "; ".join(notes))
