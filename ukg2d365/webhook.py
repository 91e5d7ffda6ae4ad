"""webhook serve: receive UKG webhooks, verify them, record them, and run the matching read off the request path.

A request goes through, in this order (the first failing step answers)::

    path / method ─▶ Content-Length ─▶ read exactly that many bytes ─▶ HMAC ─▶ JSON ─▶ EventId seen? ─▶ queue
       404 / 405         411 / 413            400 "truncated"           401     400      200 duplicate    202

* **Signature**: HMAC-SHA256 of the raw body with the secret from ``webhooks.secret_env``, compared in
  constant time. UKG does not publish the header name, the encoding nor whether anything besides the body
  is signed (ukg-api.md §5), so header, encoding (hex | base64) and an optional prefix (``sha256=``) are
  configurable. A request that fails verification gets 401, one stderr line (never the body or the
  signature) and a counter: nothing is written to the ledger, so unauthenticated senders cannot fill it.
* **Replay**: every verified event is recorded in ``webhook_events`` keyed by its EventId before it is
  queued. A second delivery of an id answers **200 "duplicate, ignored"** and triggers nothing. Not 409:
  a sender that retries because our first answer was lost would read 409 as a failure and keep retrying
  (or disable the subscription), while a replayed body gains an attacker nothing anyway.
* **Work**: answers come at once; one background worker runs the reads one at a time, under the ledger
  lock, so it never overlaps a cron run. Employee events run that employee's sync-employees; payroll events
  run post-payroll --due for their pay group. Events queued together are merged into one read. Outcomes
  (done, failed, ignored) land in ``webhook_events.status``/``detail``; a failure never stops the server.
* **Backfill**: UKG drops events while its triggers are off (restores, mass updates) and keeps undelivered
  ones for a limited time, so webhooks only make things faster: the scheduled ``post-payroll --due`` and
  ``sync-employees`` runs remain the safety net. Events still queued or running when the server stopped
  are picked up again at the next start.

The server speaks plain HTTP: expose it through a TLS-terminating reverse proxy, never directly.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import queue
import signal
import socket
import socketserver
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, Protocol
from urllib.parse import urlsplit

from ukg2d365.config import Config, WebhooksConfig
from ukg2d365.errors import ConfigError, LockBusy, Ukg2d365Error, UsageError
from ukg2d365.flows.post_payroll import PayrollResult, Selection, read_and_plan, record_refusals
from ukg2d365.flows.post_payroll import apply as apply_payroll
from ukg2d365.flows.runtime import Context
from ukg2d365.flows.sync_employees import SINCE_OVERLAP, EmployeePlan, plan_records
from ukg2d365.flows.sync_employees import apply as apply_employees
from ukg2d365.ledger import Ledger, LedgerError, now_iso
from ukg2d365.ledger.tables import DONE, FAILED, IGNORED, QUEUED, RUNNING

WEBHOOK_PATHS = ("/", "/ukg/webhooks")
HEALTH_PATH = "/healthz"
MIN_SECRET_CHARS = 16
READ_TIMEOUT_SECONDS = 10.0
MAX_EVENT_ID_CHARS = 200
MAX_DETAIL_CHARS = 2000
# A cron run can take a while; an event waits at least this long for the ledger lock before it is marked
# failed (the next scheduled run covers it then).
LOCK_WAIT_SECONDS = 900.0
LOCK_POLL_SECONDS = 1.0

SYNC_EMPLOYEES, POST_PAYROLL_DUE = "sync-employees", "post-payroll --due"

Log = Callable[[str], None]


def stderr_log(message: str) -> None:
    """One line per message on stderr, timestamped (a service's journal or log file)."""
    sys.stderr.write(f"{now_iso()} ukg2d365 webhook: {message}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------- secret and signature


def load_secret(cfg: WebhooksConfig, environ: Mapping[str, str] | None = None) -> bytes:
    """The HMAC secret from ``webhooks.secret_env``; ConfigError (exit 2) when missing or too short."""
    value = (os.environ if environ is None else environ).get(cfg.secret_env)
    if not value:
        raise ConfigError(f"webhooks.secret_env: environment variable {cfg.secret_env} is not set",
                          hint="export the hmacSecret of the UKG webhook subscription in it")
    if len(value) < MIN_SECRET_CHARS:
        raise ConfigError(f"webhooks.secret_env: {cfg.secret_env} holds fewer than {MIN_SECRET_CHARS} characters",
                          hint="use the subscription's hmacSecret, or a long random value on both sides")
    return value.encode("utf-8")


class SignatureVerifier:
    """HMAC-SHA256 of the raw body, in the header, encoding and prefix the config names."""

    def __init__(self, secret: bytes, cfg: WebhooksConfig) -> None:
        self._secret = secret
        self.header = cfg.signature_header
        self.encoding = cfg.signature_encoding
        self.prefix = cfg.signature_prefix

    def sign(self, body: bytes) -> str:
        """The header value a sender computes for ``body`` (for tests and for documenting the format)."""
        digest = hmac.new(self._secret, body, hashlib.sha256).digest()
        encoded = digest.hex() if self.encoding == "hex" else base64.b64encode(digest).decode("ascii")
        return self.prefix + encoded

    def verify(self, body: bytes, header_value: str | None) -> bool:
        if not header_value:
            return False
        given = self._decode(header_value.strip())
        if given is None:
            return False
        expected = hmac.new(self._secret, body, hashlib.sha256).digest()
        return hmac.compare_digest(expected, given)

    def _decode(self, value: str) -> bytes | None:
        # The prefix is optional on the wire: senders differ on "sha256=" and its case.
        if self.prefix and value[: len(self.prefix)].lower() == self.prefix.lower():
            value = value[len(self.prefix):]
        try:
            if self.encoding == "hex":
                return bytes.fromhex(value)
            return base64.b64decode(value, validate=True)
        except (ValueError, binascii.Error):
            return None


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


# ---------------------------------------------------------------------- the ledger table


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


# ---------------------------------------------------------------------- the worker


class ActionRunner(Protocol):
    """Runs one read; ``stop`` is set when the server shuts down (stop waiting, do not start)."""

    def __call__(self, action: WebhookAction, stop: threading.Event) -> RunOutcome: ...


class WebhookWorker:
    """One thread, one read at a time, off the request path; the queue holds actions of recorded events."""

    def __init__(self, table: WebhookEventTable, runner: ActionRunner, log: Log) -> None:
        self._table = table
        self._runner = runner
        self._log = log
        self._queue: queue.Queue[WebhookAction] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ukg2d365-webhook-worker", daemon=True)
        self.completed: Counter[str] = Counter()

    def start(self) -> None:
        self._thread.start()

    def submit(self, action: WebhookAction) -> None:
        self._queue.put(action)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the read in progress, start no other (still-queued events stay 'queued' for the next start)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self._queue.get_nowait())
            for action in merge(batch):
                if self._stop.is_set():
                    break
                self._run(action)

    def _run(self, action: WebhookAction) -> None:
        what = f"{action.kind} for event(s) {', '.join(action.event_ids)}"
        try:
            self._table.set_status(action.event_ids, RUNNING, action.kind)
            outcome = self._runner(action, self._stop)
        except Exception as exc:  # noqa: BLE001 - a failed read must never stop the server
            message = str(exc) if isinstance(exc, Ukg2d365Error) else f"internal error: {type(exc).__name__}: {exc}"
            outcome = RunOutcome(FAILED, message)
        try:
            self._table.set_status(action.event_ids, outcome.status, outcome.detail)
        except LedgerError as exc:
            self._log(f"cannot record the outcome of {what}: {exc}")
        self.completed[outcome.status] += 1
        self._log(f"{what}: {outcome.status}: {outcome.detail}")


# ---------------------------------------------------------------------- the real runner: the flows


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
        context = Context(self.config, ledger_path=self.ledger_path)
        ledger = context.ledger
        try:
            if not self._lock(ledger, stop):
                return RunOutcome(QUEUED, "the server stopped while waiting for the ledger lock")
            ledger.start_run(f"webhook {action.kind}", {"event_ids": list(action.event_ids),
                                                        "employees": [r.employee for r in action.employees],
                                                        "pay_groups": list(action.pay_groups)})
            code = 1
            summary: dict[str, Any] = {}
            try:
                if action.kind == SYNC_EMPLOYEES:
                    outcome = self._sync_employees(context, action)
                else:
                    outcome = self._post_due(context, action)
                code = 0 if outcome.status == DONE else 1
                summary = {"detail": outcome.detail}
                return outcome
            except Ukg2d365Error as exc:
                code = int(exc.exit_status)
                summary = {"error": str(exc)}
                return RunOutcome(FAILED, str(exc))
            finally:
                ledger.finish_run(code, summary)
        finally:
            context.close()

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
            if plan.to_post:
                result = apply_payroll(ctx, plan)
            else:
                # As the CLI does: no D365 client for nothing to post, but refusals still reach the audit trail.
                record_refusals(ctx, plan)
                result = PayrollResult(plan)
            posted = sum(1 for o in result.outcomes if o.status == "posted")
            note = (f"pay group {pay_group}: posted {posted} journal(s), {len(result.failed)} failed, "
                    f"{len(plan.already_posted)} already posted, {len(plan.refused)} refused")
            if plan.runs_without_gl:
                note += ", closed without a GL run yet: " + ", ".join(str(d) for _, d in plan.runs_without_gl)
            notes.append(note)
            ok = ok and result.ok
        return RunOutcome(DONE if ok else FAILED, "; ".join(notes))


# ---------------------------------------------------------------------- receiving


@dataclass(frozen=True)
class Reply:
    status: int
    payload: dict[str, Any]


class WebhookReceiver:
    """Everything behind HTTP: verification, recording, replay protection, counters, the worker."""

    def __init__(self, cfg: WebhooksConfig, secret: bytes, ledger: Ledger, runner: ActionRunner, *,
                 pay_groups: Sequence[str] = (), log: Log = stderr_log) -> None:
        self.cfg = cfg
        self.verifier = SignatureVerifier(secret, cfg)
        self.ledger = ledger
        self.table = WebhookEventTable(ledger)
        self.pay_groups = list(pay_groups)
        self.log = log
        self.worker = WebhookWorker(self.table, runner, log)
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()

    def count(self, name: str) -> None:
        with self._counts_lock:
            self._counts[name] += 1

    def health(self) -> Reply:
        with self._counts_lock:
            counts = dict(self._counts)
        ok = self.worker.alive
        return Reply(200 if ok else 503, {
            "ok": ok,
            "accepted": counts.get("accepted", 0),
            "rejected": counts.get("rejected", 0),
            "unverified": counts.get("unverified", 0),
            "duplicates": counts.get("duplicates", 0),
            "queued": self.worker.backlog,
        })

    def refuse(self, status: int, reason: str, client: str) -> Reply:
        """A refusal before or at verification: a counter and a log line, nothing in the ledger."""
        self.count("rejected")
        if status == 401:
            self.count("unverified")
        self.log(f"refused a request from {client}: HTTP {status}, {reason}")
        return Reply(status, {"error": reason})

    def requeue_unfinished(self) -> int:
        """Queue again what was queued or running when the server last stopped."""
        events = self.table.unfinished()
        today = datetime.now(timezone.utc).date()
        for event in events:
            decision = route(event, self.pay_groups, today)
            if isinstance(decision, WebhookAction):
                self.worker.submit(decision)
            else:
                self.table.set_status([event.event_id], IGNORED, decision.reason)
        return len(events)

    def receive(self, body: bytes, signature: str | None, client: str) -> Reply:
        if not self.verifier.verify(body, signature):
            what = "no signature" if not signature else "the signature does not match"
            return self.refuse(401, f"{what} ({self.cfg.signature_header}, {len(body)} bytes)", client)
        try:
            event = WebhookEvent.parse(json.loads(body))
        except (ValueError, RecursionError) as exc:
            # Signed, so from UKG (or someone holding the secret): worth a trace in the audit trail.
            reason = str(exc) if isinstance(exc, EventError) else "the body is not JSON"
            self.count("rejected")
            self.ledger.audit("webhook.invalid", {"reason": reason, "bytes": len(body),
                                                  "sha256": hashlib.sha256(body).hexdigest()})
            self.log(f"refused a signed request from {client}: HTTP 400, {reason}")
            return Reply(400, {"error": reason})
        decision = route(event, self.pay_groups, datetime.now(timezone.utc).date())
        if isinstance(decision, WebhookAction):
            status, detail = QUEUED, decision.kind
        else:
            status, detail = IGNORED, decision.reason
        if not self.table.record(event, status, detail):
            self.count("duplicates")
            self.log(f"event {event.event_id} ({event.event_type}) was already received: ignored")
            return Reply(200, {"status": "duplicate, ignored", "event_id": event.event_id})
        self.count("accepted")
        if isinstance(decision, WebhookAction):
            self.worker.submit(decision)
            self.log(f"event {event.event_id} ({event.event_type}) accepted: {decision.kind} queued")
            return Reply(202, {"status": "accepted", "event_id": event.event_id, "action": decision.kind})
        self.log(f"event {event.event_id} ({event.event_type}) recorded, ignored: {decision.reason}")
        return Reply(200, {"status": "ignored", "event_id": event.event_id, "reason": decision.reason})


# ---------------------------------------------------------------------- HTTP


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    receiver: WebhookReceiver
    read_timeout: float

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall on a host without reverse DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _HttpServer6(_HttpServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    server_version = "ukg2d365-webhook"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        # Bounds a client that stops sending: headers and body alike must arrive within this.
        self.connection.settimeout(self.server.read_timeout)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Access lines are left to the reverse proxy; the receiver logs what matters."""

    def log_error(self, format: str, *args: Any) -> None:
        self.server.receiver.log(f"{self._client()}: " + (format % args))

    def _client(self) -> str:
        return str(self.client_address[0]) if self.client_address else "?"

    def _path(self) -> str:
        return urlsplit(self.path).path

    def _reply(self, reply: Reply, *, allow: str | None = None) -> None:
        body = json.dumps(reply.payload).encode("utf-8")
        self.close_connection = True
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            if allow:
                self.send_header("Allow", allow)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            pass  # the sender went away; it retries on its own

    def _not_allowed(self) -> None:
        path = self._path()
        if path in WEBHOOK_PATHS:
            self._reply(Reply(405, {"error": "use POST"}), allow="POST")
        elif path == HEALTH_PATH:
            self._reply(Reply(405, {"error": "use GET"}), allow="GET")
        else:
            self._reply(Reply(404, {"error": "not found"}))

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if self._path() == HEALTH_PATH:
            self._reply(self.server.receiver.health())
        else:
            self._not_allowed()

    def do_POST(self) -> None:
        receiver = self.server.receiver
        client = self._client()
        if self._path() not in WEBHOOK_PATHS:
            self._reply(Reply(404, {"error": "not found"}))
            return
        lengths = self.headers.get_all("Content-Length") or []
        if self.headers.get("Transfer-Encoding") is not None or not lengths:
            self._reply(receiver.refuse(411, "Content-Length is required (chunked bodies are not accepted)", client))
            return
        if len(set(lengths)) != 1 or not (lengths[0].isascii() and lengths[0].isdigit()):
            self._reply(receiver.refuse(400, "Content-Length is not one number", client))
            return
        length = int(lengths[0])
        if length > receiver.cfg.max_body_bytes:
            # Answer before reading: a sender cannot make us buffer more than webhooks.max_body_bytes.
            self._reply(receiver.refuse(413, f"body of {length} bytes exceeds webhooks.max_body_bytes "
                                             f"({receiver.cfg.max_body_bytes})", client))
            return
        body = self._read_body(length)
        if body is None:
            self._reply(receiver.refuse(400, f"truncated: fewer than the {length} bytes announced arrived", client))
            return
        try:
            reply = receiver.receive(body, self.headers.get(receiver.cfg.signature_header), client)
        except LedgerError as exc:
            # Not recorded, so not accepted: the sender retries later.
            receiver.log(f"cannot record an event from {client}: {exc}")
            reply = Reply(503, {"error": "cannot record the event now; retry later"})
        self._reply(reply)

    def _read_body(self, length: int) -> bytes | None:
        """Exactly ``length`` bytes within the read timeout, or None (the body was cut short or stalled)."""
        deadline = time.monotonic() + self.server.read_timeout
        chunks: list[bytes] = []
        remaining = length
        try:
            while remaining > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.connection.settimeout(left)
                # read1: at most one recv, so a sender trickling bytes cannot stretch the deadline.
                chunk = self.rfile.read1(min(remaining, 65536))  # type: ignore[attr-defined]
                if not chunk:
                    return None
                chunks.append(chunk)
                remaining -= len(chunk)
        except OSError:  # includes the socket timeout
            return None
        finally:
            self.connection.settimeout(self.server.read_timeout)
        return b"".join(chunks)


class WebhookServer:
    """The HTTP listener plus the receiver's worker; started in the foreground (CLI) or a thread (tests)."""

    def __init__(self, receiver: WebhookReceiver, host: str, port: int, *,
                 read_timeout: float = READ_TIMEOUT_SECONDS) -> None:
        self.receiver = receiver
        server_class = _HttpServer6 if ":" in host else _HttpServer
        try:
            self.httpd: _HttpServer = server_class((host, port), _Handler)
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                             hint="pick another --port, or stop what uses it") from None
        self.httpd.receiver = receiver
        self.httpd.read_timeout = read_timeout
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self.httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{WEBHOOK_PATHS[1]}"

    def start(self) -> WebhookServer:
        """Serve in a background thread (tests, embedding)."""
        self.receiver.worker.start()
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="ukg2d365-webhook-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, let the worker finish the read in progress, close the ledger."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._close()

    def serve_until_signal(self) -> None:
        """Serve in this (main) thread until SIGTERM or SIGINT; then stop as ``stop`` does."""
        stopping = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if not stopping.is_set():
                stopping.set()
                self.receiver.log(f"{signal.Signals(signum).name}: stopping once the current read is done")
                # shutdown() waits for serve_forever to return, so it cannot run in this (serving) thread.
                threading.Thread(target=self.httpd.shutdown, daemon=True).start()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        self.receiver.worker.start()
        try:
            self.httpd.serve_forever(poll_interval=0.5)
        finally:
            self._close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _close(self) -> None:
        self.httpd.server_close()
        self.receiver.worker.stop()
        self.receiver.ledger.close()


def build_server(config: Config, *, ledger_path: Path | None = None, host: str | None = None,
                 port: int | None = None, runner: ActionRunner | None = None, log: Log = stderr_log,
                 read_timeout: float = READ_TIMEOUT_SECONDS) -> WebhookServer:
    """The server for ``webhook serve``: secret checked, ledger opened, unfinished events queued again."""
    cfg = config.webhooks
    secret = load_secret(cfg)
    path = ledger_path or config.ledger_path
    ledger = Ledger(path)
    try:
        receiver = WebhookReceiver(cfg, secret, ledger, runner or FlowRunner(config, path),
                                   pay_groups=config.ukg.pay_groups, log=log)
        server = WebhookServer(receiver, host if host is not None else cfg.host,
                               port if port is not None else cfg.port, read_timeout=read_timeout)
        requeued = receiver.requeue_unfinished()
    except BaseException:
        ledger.close()
        raise
    if requeued:
        log(f"{requeued} event(s) left unfinished by the last run queued again")
    return server
