"""webhook serve: signature, size and replay checks over real HTTP, the worker, and one run against the sandbox."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.helpers import CONFIG_YAML, make_config
from tests.world import World, worker_display
from ukg2d365.cli import app
from ukg2d365.config import Config, WebhooksConfig, load_config
from ukg2d365.errors import ConfigError, LockBusy
from ukg2d365.flows.runtime import Context
from ukg2d365.flows.sync_employees import LAST_SYNC_SETTING
from ukg2d365.ledger import Ledger
from ukg2d365.sandbox import Sandbox, catalog
from ukg2d365.webhook import (
    DONE,
    FAILED,
    IGNORED,
    POST_PAYROLL_DUE,
    QUEUED,
    SYNC_EMPLOYEES,
    EmployeeRef,
    FlowRunner,
    Ignored,
    RunOutcome,
    WebhookAction,
    WebhookEvent,
    WebhookEventTable,
    WebhookServer,
    build_server,
    load_secret,
    merge,
    route,
)

SECRET = "s3cret-of-the-ukg-subscription"
SECRET_ENV = "UKG2D365_WEBHOOK_SECRET"
TODAY = dt.date(2026, 3, 10)


class FakeRunner:
    """Stands in for the flows: records each action it is asked to run."""

    def __init__(self, outcome: RunOutcome | Exception = RunOutcome(DONE, "ran")) -> None:
        self.actions: list[WebhookAction] = []
        self.outcome = outcome
        self.started = threading.Event()
        self.gate: threading.Event | None = None

    def __call__(self, action: WebhookAction, stop: threading.Event) -> RunOutcome:
        self.actions.append(action)
        self.started.set()
        if self.gate is not None:
            self.gate.wait(10)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def event(event_id: Any = 459469162, event_type: str = "EmployeeAddressChangeEvent", **payload: Any) -> dict:
    """A UKG webhook in the documented shape (UKG Pro's published webhook guide)."""
    return {"EventId": event_id, "EventTime": "2026-03-09T15:51:52.64", "EventType": event_type,
            "Operation": "Update", "Payload": {"CoId": "C0MP1", "EeId": "EE000042", "IntegrationRecordId": None,
                                               **payload}, "Tenant": "G0311"}


def hex_signature(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(server: WebhookServer, body: bytes, signature: str | None, *, path: str = "/ukg/webhooks",
         header: str = "X-UKG-Signature") -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers[header] = signature
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def post_event(server: WebhookServer, document: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    body = json.dumps(document).encode()
    return post(server, body, hex_signature(body))


def get(server: WebhookServer, path: str) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def raw_exchange(server: WebhookServer, data: bytes, *, half_close: bool) -> tuple[int | None, bytes]:
    """Send bytes as they are (a cut-short body, a lying Content-Length) and read the answer (None: closed
    without one)."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return (int(answer.split(b" ", 2)[1]) if answer else None), answer


def wait_for_status(server: WebhookServer, event_id: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = server.receiver.table.get(event_id)
        if row is not None and row["status"] not in (QUEUED, "running"):
            return row
        time.sleep(0.02)
    raise AssertionError(f"event {event_id} not processed within {timeout}s: {server.receiver.table.get(event_id)}")


def ledger_rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as db:
        exists = db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone()
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]) if exists else 0


@pytest.fixture
def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., WebhookServer]]:
    """Start a webhook server on a free port with a fake runner; stopped after the test."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    started: list[WebhookServer] = []

    def make(runner: FakeRunner, *, read_timeout: float = 5.0, logs: list[str] | None = None,
             **webhooks: Any) -> WebhookServer:
        config = make_config(tmp_path)
        config.webhooks = WebhooksConfig(**webhooks)
        log = logs.append if logs is not None else (lambda line: None)
        server = build_server(config, ledger_path=tmp_path / "ledger.db", host="127.0.0.1", port=0,
                              runner=runner, log=log, read_timeout=read_timeout).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


# ---------------------------------------------------------------------- over HTTP


def test_correctly_signed_employee_event_is_accepted_with_202_and_triggers_that_employees_sync(
    start: Callable[..., WebhookServer], tmp_path: Path
) -> None:
    runner = FakeRunner()
    server = start(runner)
    status, answer = post_event(server, event(EeId="EE000042"))
    assert status == 202
    assert answer == {"status": "accepted", "event_id": "459469162", "action": SYNC_EMPLOYEES}
    row = wait_for_status(server, "459469162")
    assert (row["status"], row["detail"], row["event_type"], row["company"], row["employee"]) == (
        DONE, "ran", "EmployeeAddressChangeEvent", "C0MP1", "EE000042")
    [action] = runner.actions
    assert action.kind == SYNC_EMPLOYEES and action.event_ids == ("459469162",)
    assert action.employees == (EmployeeRef("EE000042", "C0MP1"),)
    assert action.changed_since is not None and action.changed_since <= dt.date(2026, 3, 8)


def test_payroll_event_triggers_post_payroll_due_for_its_pay_group(start: Callable[..., WebhookServer]) -> None:
    runner = FakeRunner()
    server = start(runner)
    status, answer = post_event(server, event(7, "PayrollGeneralLedgerCompletedEvent", PayGroup="BW"))
    assert (status, answer["action"]) == (202, POST_PAYROLL_DUE)
    wait_for_status(server, "7")
    [action] = runner.actions
    assert (action.kind, action.pay_groups) == (POST_PAYROLL_DUE, ("BW",))


def test_event_that_triggers_nothing_is_recorded_as_ignored(start: Callable[..., WebhookServer]) -> None:
    runner = FakeRunner()
    server = start(runner)
    status, answer = post_event(server, event(8, "CompanyHolidayChangeEvent"))
    assert (status, answer["status"]) == (200, "ignored")
    row = server.receiver.table.get("8")
    assert row is not None and row["status"] == IGNORED
    assert "triggers nothing" in row["detail"]
    time.sleep(0.3)
    assert runner.actions == []


@pytest.mark.parametrize("signature", ["0" * 64, "not hex at all", "", None], ids=["wrong", "garbage", "empty",
                                                                                       "missing"])
def test_unverified_request_gets_401_and_leaves_only_a_counter_and_a_log_line(
    start: Callable[..., WebhookServer], tmp_path: Path, signature: str | None
) -> None:
    runner = FakeRunner()
    logs: list[str] = []
    server = start(runner, logs=logs)
    body = json.dumps(event()).encode()
    status, _ = post(server, body, signature)
    assert status == 401
    time.sleep(0.3)
    assert runner.actions == []
    assert ledger_rows(tmp_path / "ledger.db", "webhook_events") == 0
    assert ledger_rows(tmp_path / "ledger.db", "audit_events") == 0
    assert get(server, "/healthz")[1]["unverified"] == 1
    [line] = logs
    assert "401" in line and "EE000042" not in line and (not signature or signature not in line)


def test_signature_of_another_secret_or_of_another_body_is_refused(start: Callable[..., WebhookServer]) -> None:
    server = start(FakeRunner())
    body = json.dumps(event()).encode()
    assert post(server, body, hex_signature(body, "another-secret-of-16+chars"))[0] == 401
    assert post(server, body + b" ", hex_signature(body))[0] == 401


def test_truncated_body_never_reaches_the_receiver_and_is_not_recorded(
    start: Callable[..., WebhookServer], tmp_path: Path
) -> None:
    # waitress hands the application whole bodies only: one cut short ends with the connection, unanswered.
    runner = FakeRunner()
    server = start(runner)
    body = json.dumps(event()).encode()
    cut = body[: len(body) // 2]
    head = (f"POST /ukg/webhooks HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
            f"X-UKG-Signature: {hex_signature(body)}\r\n\r\n").encode()
    status, _ = raw_exchange(server, head + cut, half_close=True)
    assert status is None
    assert runner.actions == [] and ledger_rows(tmp_path / "ledger.db", "webhook_events") == 0
    assert get(server, "/healthz")[1]["accepted"] == 0


def test_body_that_stalls_before_its_content_length_is_dropped_within_the_read_timeout(
    start: Callable[..., WebhookServer], tmp_path: Path
) -> None:
    runner = FakeRunner()
    server = start(runner, read_timeout=1)
    body = json.dumps(event()).encode()
    head = (f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
            f"X-UKG-Signature: {hex_signature(body)}\r\n\r\n").encode()
    began = time.monotonic()
    status, _ = raw_exchange(server, head + body[:10], half_close=False)
    assert status is None and time.monotonic() - began < 5  # channel_timeout, checked every cleanup_interval
    assert runner.actions == [] and ledger_rows(tmp_path / "ledger.db", "webhook_events") == 0


def test_oversized_body_is_refused_with_413_before_it_is_read(
    start: Callable[..., WebhookServer], tmp_path: Path
) -> None:
    runner = FakeRunner()
    server = start(runner, max_body_bytes=4096)
    head = (b"POST /ukg/webhooks HTTP/1.1\r\nHost: x\r\nContent-Length: 4097\r\n"
            b"X-UKG-Signature: " + b"0" * 64 + b"\r\n\r\n")
    status, answer = raw_exchange(server, head, half_close=False)  # no body sent: the answer must not wait for it
    assert status == 413 and b"4096" in answer
    assert runner.actions == [] and ledger_rows(tmp_path / "ledger.db", "webhook_events") == 0


def test_chunked_body_is_decoded_and_checked_like_any_other(start: Callable[..., WebhookServer]) -> None:
    runner = FakeRunner()
    server = start(runner)
    body = json.dumps(event(31)).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:50], body[50:])) + b"0\r\n\r\n"
    head = (f"POST /ukg/webhooks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
            f"X-UKG-Signature: {hex_signature(body)}\r\n\r\n").encode()
    assert raw_exchange(server, head + chunks, half_close=False)[0] == 202
    forged = head.replace(hex_signature(body).encode(), hex_signature(body, "another-secret-entirely").encode())
    assert raw_exchange(server, forged + chunks, half_close=False)[0] == 401
    assert wait_for_status(server, "31")["status"] == DONE


def test_replayed_event_id_is_ignored_and_triggers_nothing_again(start: Callable[..., WebhookServer]) -> None:
    runner = FakeRunner()
    server = start(runner)
    assert post_event(server, event(99))[0] == 202
    wait_for_status(server, "99")
    status, answer = post_event(server, event(99))
    assert (status, answer["status"]) == (200, "duplicate, ignored")
    # The same id with another body (a forged or reused id) is no different: the id was seen.
    status, _ = post_event(server, event(99, "PayrollGeneralLedgerCompletedEvent", PayGroup="BW"))
    assert status == 200
    time.sleep(0.3)
    assert len(runner.actions) == 1
    health = get(server, "/healthz")[1]
    assert (health["accepted"], health["duplicates"]) == (1, 2)


def test_base64_signature_with_sha256_prefix_is_accepted_when_configured(
    start: Callable[..., WebhookServer]
) -> None:
    runner = FakeRunner()
    server = start(runner, signature_header="X-Hub-Signature-256", signature_encoding="base64",
                   signature_prefix="sha256=")
    body = json.dumps(event(5)).encode()
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
    good = "sha256=" + base64.b64encode(digest).decode()
    assert post(server, body, hex_signature(body), header="X-Hub-Signature-256")[0] == 401  # hex: wrong encoding
    assert post(server, body, good, header="X-UKG-Signature")[0] == 401  # right value, wrong header
    assert post(server, body, good, header="X-Hub-Signature-256")[0] == 202
    wait_for_status(server, "5")
    assert len(runner.actions) == 1


def test_signed_body_that_is_not_a_usable_event_gets_400_and_an_audit_entry(
    start: Callable[..., WebhookServer], tmp_path: Path
) -> None:
    server = start(FakeRunner())
    for body in (b"{not json", json.dumps({"EventType": "EmployeeAddressChangeEvent"}).encode()):
        status, answer = post(server, body, hex_signature(body))
        assert status == 400, answer
    assert ledger_rows(tmp_path / "ledger.db", "webhook_events") == 0
    assert ledger_rows(tmp_path / "ledger.db", "audit_events") == 2


def test_healthz_counts_accepted_and_rejected_requests(start: Callable[..., WebhookServer]) -> None:
    server = start(FakeRunner())
    assert get(server, "/healthz") == (200, {"ok": True, "accepted": 0, "rejected": 0, "unverified": 0,
                                             "duplicates": 0, "queued": 0})
    post_event(server, event(1))
    post_event(server, event(2))
    post(server, b"{}", "bad")
    status, health = get(server, "/healthz")
    assert status == 200
    assert (health["accepted"], health["rejected"], health["unverified"]) == (2, 1, 1)


def test_only_post_to_the_webhook_paths_is_served(start: Callable[..., WebhookServer]) -> None:
    server = start(FakeRunner())
    body = json.dumps(event(3)).encode()
    assert post(server, body, hex_signature(body), path="/other")[0] == 404
    assert post(server, body, hex_signature(body), path="/healthz")[0] == 405  # GET only
    assert get(server, "/ukg/webhooks")[0] == 405
    assert get(server, "/")[0] == 405
    assert get(server, "/nothing")[0] == 404
    assert post(server, body, hex_signature(body), path="/")[0] == 202


def test_a_failing_read_is_recorded_and_the_server_keeps_going(start: Callable[..., WebhookServer]) -> None:
    runner = FakeRunner(RuntimeError("boom"))
    server = start(runner)
    post_event(server, event(11))
    row = wait_for_status(server, "11")
    assert (row["status"], row["detail"]) == (FAILED, "internal error (this is a bug): RuntimeError: boom")
    runner.outcome = RunOutcome(DONE, "fine")
    post_event(server, event(12))
    assert wait_for_status(server, "12")["status"] == DONE
    assert get(server, "/healthz")[1]["ok"] is True


def test_stop_finishes_the_current_read_and_a_restart_picks_up_what_was_still_queued(
    start: Callable[..., WebhookServer], tmp_path: Path
) -> None:
    runner = FakeRunner()
    runner.gate = threading.Event()
    server = start(runner)
    post_event(server, event(21))
    assert runner.started.wait(5)
    post_event(server, event(22, "PayrollGeneralLedgerCompletedEvent", PayGroup="BW"))
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    time.sleep(0.3)
    assert stopper.is_alive()  # waiting for the read in progress
    runner.gate.set()
    stopper.join(10)
    assert not stopper.is_alive()
    ledger = Ledger(tmp_path / "ledger.db", make_config(tmp_path).ledger_tenant)
    try:
        table = WebhookEventTable(ledger)
        statuses = {e: (table.get(e) or {}).get("status") for e in ("21", "22")}
    finally:
        ledger.close()
    assert statuses == {"21": DONE, "22": QUEUED}

    again = FakeRunner()
    restarted = start(again)
    assert wait_for_status(restarted, "22")["status"] == DONE
    [action] = again.actions
    assert (action.kind, action.event_ids, action.pay_groups) == (POST_PAYROLL_DUE, ("22",), ("BW",))


def test_sigterm_stops_a_server_serving_in_the_main_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    logs: list[str] = []
    server = build_server(make_config(tmp_path), ledger_path=tmp_path / "ledger.db", host="127.0.0.1", port=0,
                          runner=FakeRunner(), log=logs.append)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    before = signal.getsignal(signal.SIGTERM)
    server.serve_until_signal()
    timer.join()
    assert any("SIGTERM" in line for line in logs)
    assert signal.getsignal(signal.SIGTERM) == before


# ---------------------------------------------------------------------- pieces


def test_secret_must_be_set_and_at_least_16_characters() -> None:
    cfg = WebhooksConfig()
    with pytest.raises(ConfigError, match=SECRET_ENV):
        load_secret(cfg, {})
    with pytest.raises(ConfigError, match="fewer than 16"):
        load_secret(cfg, {SECRET_ENV: "short"})
    assert load_secret(cfg, {SECRET_ENV: SECRET}) == SECRET.encode()


def test_webhook_serve_without_the_secret_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_path = tmp_path / "ukg2d365.yaml"
    config_path.write_text(CONFIG_YAML.format(summarize="true"))
    monkeypatch.setenv("UKG2D365_CONFIG", str(config_path))
    monkeypatch.delenv(SECRET_ENV, raising=False)
    result = CliRunner().invoke(app, ["webhook", "serve", "--port", "0"])
    assert result.exit_code == 2, result.output
    assert SECRET_ENV in result.output
    assert not (tmp_path / "ukg2d365.db").exists()


def employee_event(event_id: str, employee: str, time_: str | None) -> WebhookEvent:
    return WebhookEvent(event_id, "EmployeePersonNameChangeEvent", event_time=time_, company="C0MP1",
                        employee=employee)


def test_route_sends_employee_events_to_their_sync_reading_from_the_day_before_the_event() -> None:
    action = route(employee_event("1", "EE1", "2026-03-09T23:59:00"), ["BW"], TODAY)
    assert action == WebhookAction(SYNC_EMPLOYEES, ("1",), (EmployeeRef("EE1", "C0MP1"),),
                                   changed_since=dt.date(2026, 3, 8))
    future = route(employee_event("2", "EE1", "2027-01-01T00:00:00"), ["BW"], TODAY)
    assert isinstance(future, WebhookAction) and future.changed_since == dt.date(2026, 3, 9)
    assert isinstance(route(employee_event("3", "EE1", "garbage"), ["BW"], TODAY), WebhookAction)
    assert route(WebhookEvent("4", "EmployeeHireEvent"), ["BW"], TODAY) == Ignored(
        "employee event without Payload.EeId")


def test_route_keeps_payroll_events_within_the_configured_pay_groups() -> None:
    def payroll(pay_group: str | None) -> WebhookEvent:
        return WebhookEvent("9", "PayPeriodClosedEvent", pay_group=pay_group)

    assert route(payroll("BW"), ["BW", "WK"], TODAY) == WebhookAction(POST_PAYROLL_DUE, ("9",), pay_groups=("BW",))
    assert isinstance(route(payroll("MO"), ["BW"], TODAY), Ignored)
    assert route(payroll("MO"), [], TODAY) == WebhookAction(POST_PAYROLL_DUE, ("9",), pay_groups=("MO",))
    assert route(payroll(None), ["BW", "WK"], TODAY) == WebhookAction(POST_PAYROLL_DUE, ("9",),
                                                                      pay_groups=("BW", "WK"))
    assert isinstance(route(payroll(None), [], TODAY), Ignored)


def test_merge_makes_one_read_per_kind_for_a_burst_of_events() -> None:
    burst = [
        WebhookAction(SYNC_EMPLOYEES, ("1",), (EmployeeRef("EE1", "C"),), changed_since=dt.date(2026, 3, 8)),
        WebhookAction(POST_PAYROLL_DUE, ("2",), pay_groups=("BW",)),
        WebhookAction(SYNC_EMPLOYEES, ("3",), (EmployeeRef("EE2", "C"), EmployeeRef("EE1", "C")),
                      changed_since=dt.date(2026, 3, 1)),
        WebhookAction(POST_PAYROLL_DUE, ("4",), pay_groups=("BW",)),
    ]
    employees, payroll = merge(burst)
    assert employees == WebhookAction(SYNC_EMPLOYEES, ("1", "3"), (EmployeeRef("EE1", "C"), EmployeeRef("EE2", "C")),
                                      changed_since=dt.date(2026, 3, 1))
    assert payroll == WebhookAction(POST_PAYROLL_DUE, ("2", "4"), pay_groups=("BW",))


def test_event_parsing_reads_the_documented_shape_and_refuses_what_is_not_an_event() -> None:
    parsed = WebhookEvent.parse(event())
    assert parsed == WebhookEvent("459469162", "EmployeeAddressChangeEvent", "Update", "2026-03-09T15:51:52.64",
                                  "C0MP1", "EE000042", None, "G0311")
    for bad, reason in (([], "not a JSON object"), ({"EventType": "X"}, "EventId is missing"),
                        ({"EventId": 1}, "EventType is missing"),
                        ({"EventId": 1, "EventType": "X", "Payload": [1]}, "Payload"),
                        ({"EventId": "x" * 201, "EventType": "X"}, "longer than")):
        with pytest.raises(ValueError, match=reason):
            WebhookEvent.parse(bad)


def test_flow_runner_waits_for_a_cron_run_holding_the_ledger_lock(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    cron = Ledger(tmp_path / "ledger.db", config.ledger_tenant)
    cron.acquire_lock()
    action = WebhookAction(POST_PAYROLL_DUE, ("1",), pay_groups=("BW",))
    try:
        runner = FlowRunner(config, tmp_path / "ledger.db", lock_wait_seconds=0)
        with pytest.raises(LockBusy):
            runner(action, threading.Event())
        stop = threading.Event()
        threading.Timer(0.3, stop.set).start()
        patient = FlowRunner(config, tmp_path / "ledger.db", lock_wait_seconds=60)
        began = time.monotonic()
        assert patient(action, stop).status == QUEUED  # the server stopped while it waited: queued for next start
        assert time.monotonic() - began < 5
    finally:
        cron.close()


# ---------------------------------------------------------------------- against the sandbox


@pytest.mark.e2e
def test_signed_employee_event_makes_the_hired_worker_appear_in_d365_and_no_one_else(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    world = World(sandbox, monkeypatch)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    config: Config = load_config(world.config_path)
    d365 = Context(config, record_http=False).d365
    before = list(d365.get_all("EmployeesV2", select=["PersonnelNumber"]))
    dataset = sandbox.dataset
    hired = dataset.hire("Grace", "Hopper", cost_center=catalog.D365_EXISTING_COST_CENTERS[0],
                         department=catalog.D365_EXISTING_DEPARTMENTS[0])
    ledger_path = tmp_path / "webhook-ledger.db"
    server = build_server(config, ledger_path=ledger_path, host="127.0.0.1", port=0, log=lambda line: None).start()
    try:
        document = event(1001, CoId=catalog.UKG_CO_ID, EeId=hired.employee_id)
        document["EventTime"] = dataset.now().isoformat()
        status, _ = post_event(server, document)
        assert status == 202
        row = wait_for_status(server, "1001", timeout=60)
    finally:
        server.stop()
    assert row["status"] == DONE, row["detail"]
    assert hired.employee_number in row["detail"] and "create" in row["detail"]

    [worker] = d365.get_all("EmployeesV2", filter=f"PersonnelNumber eq '{hired.employee_number}'")
    assert (worker["FirstName"], worker["LastName"]) == ("Grace", "Hopper")
    assert worker["DimensionDisplayValue"] == worker_display(catalog.D365_EXISTING_COST_CENTERS[0],
                                                             catalog.D365_EXISTING_DEPARTMENTS[0])
    after = list(d365.get_all("EmployeesV2", select=["PersonnelNumber"]))
    assert len(after) == len(before) + 1  # only the employee the event named
    ledger = Ledger(ledger_path)
    try:
        assert ledger.get_setting(LAST_SYNC_SETTING) is None  # the scheduled sync's watermark did not move
        assert ledger.recent_runs(1)[0]["command"] == "webhook sync-employees"
    finally:
        ledger.close()


def test_flow_runner_records_its_run_like_a_cli_command_and_audits_a_bug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: FlowRunner, ctx: Context, action: WebhookAction) -> RunOutcome:
        raise RuntimeError("boom")

    monkeypatch.setattr(FlowRunner, "_post_due", broken)
    runner = FlowRunner(make_config(tmp_path), tmp_path / "ledger.db", lock_wait_seconds=0)
    with pytest.raises(RuntimeError):
        runner(WebhookAction(POST_PAYROLL_DUE, ("7",), pay_groups=("BW",)), threading.Event())
    ledger = Ledger(tmp_path / "ledger.db")
    try:
        [run] = ledger.recent_runs(1)
        assert (run["command"], run["exit_code"]) == ("webhook post-payroll --due", 70)
        assert json.loads(run["args"])["event_ids"] == ["7"]
        [event] = ledger.audit_trail(f"run:{run['id']}")
        assert event["kind"] == "internal error" and "RuntimeError: boom" in event["detail"]["traceback"]
    finally:
        ledger.close()
