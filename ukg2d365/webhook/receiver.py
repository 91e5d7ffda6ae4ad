"""Receiving one webhook, transport aside: ``receive(body, signature, client) -> Reply``.

Shaped like the sandbox's simulators (``handle(SimRequest) -> SimResponse``, the HTTP in ``server.py``): the
receiver verifies the signature, parses the event, routes it, records it in the ledger and hands its action
to a queue, and answers with a ``Reply`` that the transport writes out. No sockets here, no threads of its
own; the queue (the server's worker) is given to it.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from ukg2d365.config import WebhooksConfig
from ukg2d365.flows.webhook_events import (
    EventError,
    WebhookAction,
    WebhookEvent,
    WebhookEventTable,
    route,
)
from ukg2d365.ledger import Ledger, now_iso
from ukg2d365.ledger.tables import IGNORED, QUEUED
from ukg2d365.webhook.signature import SignatureVerifier

Log = Callable[[str], None]


def stderr_log(message: str) -> None:
    """One line per message on stderr, timestamped (a service's journal or log file)."""
    sys.stderr.write(f"{now_iso()} ukg2d365 webhook: {message}\n")
    sys.stderr.flush()


class EventQueue(Protocol):
    """Where the actions of accepted events go (the server's worker); the receiver submits and reports on it."""

    def submit(self, action: WebhookAction) -> None: ...

    @property
    def alive(self) -> bool: ...

    @property
    def backlog(self) -> int: ...


@dataclass(frozen=True)
class Reply:
    status: int
    payload: dict[str, Any]


class WebhookReceiver:
    """Everything behind HTTP: verification, recording, replay protection, counters; actions go to ``worker``."""

    def __init__(self, cfg: WebhooksConfig, secret: bytes, ledger: Ledger, worker: EventQueue, *,
                 pay_groups: Sequence[str] = (), log: Log = stderr_log) -> None:
        self.cfg = cfg
        self.verifier = SignatureVerifier(secret, cfg)
        self.ledger = ledger
        self.table = WebhookEventTable(ledger)
        self.pay_groups = list(pay_groups)
        self.log = log
        self.worker = worker
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
