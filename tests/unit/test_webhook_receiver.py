"""The webhook receiver without HTTP: receive(body, signature, client) -> Reply, as the sandbox's handle() is."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import ukg2d365
from ukg2d365.config import WebhooksConfig
from ukg2d365.ledger import Ledger
from ukg2d365.webhook import (
    IGNORED,
    QUEUED,
    SYNC_EMPLOYEES,
    EmployeeRef,
    SignatureVerifier,
    WebhookAction,
    WebhookReceiver,
)

SECRET = b"a-secret-of-the-subscription"


class ListQueue:
    """Stands in for the server's worker: keeps what the receiver submits."""

    def __init__(self) -> None:
        self.actions: list[WebhookAction] = []
        self.alive = True

    def submit(self, action: WebhookAction) -> None:
        self.actions.append(action)

    @property
    def backlog(self) -> int:
        return len(self.actions)


def body(event_id: int, event_type: str = "EmployeeAddressChangeEvent", **payload: str) -> bytes:
    return json.dumps({"EventId": event_id, "EventType": event_type, "EventTime": "2026-03-10T10:00:00",
                       "Payload": payload or {"CoId": "C1", "EeId": "E1"}}).encode()


def test_receive_verifies_records_and_queues_without_a_socket(tmp_path: Path) -> None:
    cfg = WebhooksConfig()
    ledger = Ledger(tmp_path / "l.db")
    queue, logs = ListQueue(), []
    receiver = WebhookReceiver(cfg, SECRET, ledger, queue, pay_groups=["BW"], log=logs.append)
    sign = SignatureVerifier(SECRET, cfg).sign
    try:
        first = body(7)
        reply = receiver.receive(first, sign(first), "test")
        assert (reply.status, reply.payload["action"]) == (202, SYNC_EMPLOYEES)
        assert [a.employees for a in queue.actions] == [(EmployeeRef("E1", "C1"),)]
        assert (receiver.table.get("7") or {})["status"] == QUEUED

        assert receiver.receive(first, sign(first), "test").payload["status"] == "duplicate, ignored"
        tampered = body(8)
        assert receiver.receive(tampered, sign(first), "test").status == 401
        assert receiver.table.get("8") is None  # unverified: nothing in the ledger
        other = body(9, "CompanyHolidayEvent")
        reply = receiver.receive(other, sign(other), "test")
        assert reply.status == 200 and (receiver.table.get("9") or {})["status"] == IGNORED

        assert len(queue.actions) == 1
        health = receiver.health().payload
        assert {k: health[k] for k in ("accepted", "duplicates", "unverified", "queued")} == {
            "accepted": 2, "duplicates": 1, "unverified": 1, "queued": 1}
    finally:
        ledger.close()


def imported_modules(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for source in sorted(folder.rglob("*.py")):
        names = found.setdefault(str(source.relative_to(folder.parent)), set())
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
    return found


def test_arrows_point_down_flows_never_import_the_webhook_and_the_ledger_imports_no_flow() -> None:
    package = Path(ukg2d365.__file__).parent
    upward = {
        "flows": ("ukg2d365.webhook", "ukg2d365.cli", "ukg2d365.render"),
        "ledger": ("ukg2d365.flows", "ukg2d365.webhook", "ukg2d365.cli", "ukg2d365.render", "ukg2d365.d365",
                   "ukg2d365.ukg", "ukg2d365.http"),
        "webhook": ("ukg2d365.cli", "ukg2d365.render"),
    }
    wrong = [
        f"{module} imports {name}"
        for room, above in upward.items()
        for module, names in imported_modules(package / room).items()
        for name in names
        if name.startswith(above)
    ]
    assert wrong == []
