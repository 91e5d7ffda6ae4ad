"""webhook serve: receive UKG webhooks, verify them, record them, and run the matching read off the request path.

Three rooms, shaped like the sandbox (a pure handler, the HTTP apart):

* ``signature.py``: the secret from ``webhooks.secret_env`` and the HMAC-SHA256 check of the raw body.
* ``receiver.py``: ``WebhookReceiver.receive(body, signature, client) -> Reply``: verify, parse, route,
  record (replay protection: every verified event is in ``webhook_events`` by EventId before it is queued),
  queue. A request that fails verification gets 401, one stderr line
  (never the body or the signature) and a counter: nothing is written to the ledger, so unauthenticated
  senders cannot fill it. A second delivery of an id answers **200 "duplicate, ignored"** and triggers
  nothing. Not 409: a sender that retries because our first answer was lost would read 409 as a failure
  and keep retrying (or disable the subscription), while a replayed body gains an attacker nothing anyway.
* ``server.py``: the HTTP transport (Content-Length, size and read-time limits, /healthz) and the worker
  that runs one read at a time under the ledger lock.

What an event means (which flow it runs) lives in ``ukg2d365.flows.webhook_events``.
"""

from ukg2d365.flows.webhook_events import (
    POST_PAYROLL_DUE,
    SYNC_EMPLOYEES,
    ActionRunner,
    EmployeeRef,
    EventError,
    FlowRunner,
    Ignored,
    RunOutcome,
    WebhookAction,
    WebhookEvent,
    WebhookEventTable,
    merge,
    plan_employee_events,
    route,
)
from ukg2d365.ledger.tables import DONE, FAILED, IGNORED, QUEUED, RUNNING
from ukg2d365.webhook.receiver import Reply, WebhookReceiver, stderr_log
from ukg2d365.webhook.server import HEALTH_PATH, WEBHOOK_PATHS, WebhookServer, WebhookWorker, build_server
from ukg2d365.webhook.signature import SignatureVerifier, load_secret

__all__ = [
    "DONE", "FAILED", "HEALTH_PATH", "IGNORED", "POST_PAYROLL_DUE", "QUEUED", "RUNNING", "SYNC_EMPLOYEES",
    "WEBHOOK_PATHS", "ActionRunner", "EmployeeRef", "EventError", "FlowRunner", "Ignored", "Reply", "RunOutcome",
    "SignatureVerifier", "WebhookAction", "WebhookEvent", "WebhookEventTable", "WebhookReceiver", "WebhookServer",
    "WebhookWorker", "build_server", "load_secret", "merge", "plan_employee_events", "route", "stderr_log",
]
