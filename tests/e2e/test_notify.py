"""Alerts for unattended runs: one Apprise message per run that failed, refused something or warned (naming
what and the command to run next), a heartbeat ping after each success, and `ping --notify` as a test. The
URLs come from the environment or the credential store, never the YAML file, and never appear in any output.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml

from tests.world import World

pytestmark = pytest.mark.e2e

HEARTBEAT_TOKEN = "0d9c3b1e-hb-token-5f21"
ALERT_TOKEN = "alert-token-77aa"


class Receiver:
    """A local HTTP server standing in for an alert service (Apprise's json://) and a heartbeat service."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        received = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                received.requests.append({"method": self.command, "path": self.path, "body": body})
                self.send_response(received.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.requests if r["method"] == "POST"]

    @property
    def heartbeats(self) -> list[str]:
        return [r["path"] for r in self.requests if r["method"] == "GET"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    r = Receiver()
    monkeypatch.setenv("UKG2D365_NOTIFY_URLS", f"json://127.0.0.1:{r.port}/alerts/{ALERT_TOKEN}")
    monkeypatch.setenv("UKG2D365_NOTIFY_HEARTBEAT_URL", f"http://127.0.0.1:{r.port}/ping/{HEARTBEAT_TOKEN}")
    yield r
    r.close()


def assert_no_url(world: World) -> None:
    for output in world.outputs:
        assert HEARTBEAT_TOKEN not in output and ALERT_TOKEN not in output


def add_unbalanced_run(world: World) -> None:
    ds = world.sandbox.dataset
    period = ds.closed_periods()[-1].period_end
    ds.add_gl_run("UNBAL1", period_end=period, lines=[
        ds.make_gl_line("UNBAL1", "5000", debit=Decimal("10.00"), credit=Decimal("0"), period_end=period),
        ds.make_gl_line("UNBAL1", "2100", debit=Decimal("0"), credit=Decimal("9.00"), period_end=period),
    ])


def test_a_refused_run_sends_one_alert_naming_it_and_the_next_command_with_its_config_and_no_heartbeat(
    world: World, receiver: Receiver
) -> None:
    add_unbalanced_run(world)
    world.cli("-q", "post-payroll", "--run-id", "UNBAL1", "--yes", expect=1)
    [alert] = receiver.alerts
    assert alert["type"] == "failure"
    assert alert["title"].startswith("ukg2d365 post-payroll --run-id UNBAL1 failed on ")
    assert "(exit 1)" in alert["title"]
    assert "refusing UKG run UNBAL1" in alert["message"]
    # run with -c: every command the alert suggests names that config (the host may hold several)
    cli = f"ukg2d365 -c {world.config_path}"
    assert f"next: `{cli} status` lists what failed" in alert["message"]
    assert f"`{cli} replay --failed`" in alert["message"]
    assert f"`{cli} post-payroll --run-id UNBAL1`" in alert["message"]
    assert receiver.heartbeats == []
    assert_no_url(world)


def test_a_successful_run_pings_the_heartbeat_sends_no_alert_and_is_silent_with_quiet(
    world: World, receiver: Receiver
) -> None:
    result = world.cli("-q", "post-payroll", "--run-id", world.latest_run().run_id, "--yes")
    assert result.output == ""  # -q: nothing on success, so cron mails nothing
    assert receiver.heartbeats == [f"/ping/{HEARTBEAT_TOKEN}"]
    assert receiver.alerts == []
    assert_no_url(world)


def test_a_dry_run_alerts_nobody(world: World, receiver: Receiver) -> None:
    add_unbalanced_run(world)
    world.cli("post-payroll", "--run-id", "UNBAL1", "--dry-run", expect=1)
    assert receiver.requests == []


def test_a_wrong_d365_secret_fails_the_night_it_breaks_even_with_nothing_due(
    world: World, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing is due: the lookback window holds no closed period.
    world.config_path.write_text(world.config_path.read_text() + "payroll:\n  lookback_days: 0\n")
    world.cli("post-payroll", "--due", "--yes")
    assert len(receiver.heartbeats) == 1
    monkeypatch.setenv("UKG2D365_D365_CLIENT_SECRET", "rotated-and-forgotten-secret")
    result = world.cli("post-payroll", "--due", "--yes", expect=3)
    assert "Entra ID rejected the client secret" in result.output
    [alert] = receiver.alerts
    assert "post-payroll --due failed" in alert["title"] and "(exit 3)" in alert["title"]
    assert "error: Entra ID rejected the client secret" in alert["message"]
    assert f"next: `ukg2d365 -c {world.config_path} ping` names what is refused" in alert["message"]
    assert len(receiver.heartbeats) == 1  # no heartbeat for the failed night


def test_a_config_error_is_alerted_too(world: World, receiver: Receiver) -> None:
    world.config_path.write_text(world.config_path.read_text() + "payroll:\n  lookbak_days: 3\n")
    world.cli("post-payroll", "--due", "--yes", expect=2)
    [alert] = receiver.alerts
    assert "payroll.lookbak_days: unknown key" in alert["message"] and "(exit 2)" in alert["title"]


def test_stale_periods_are_listed_by_status_and_reported_by_the_alert(world: World, receiver: Receiver) -> None:
    _, skipped, _ = world.leave_periods_behind_the_window()

    world.cli("post-payroll", "--due", "--yes")  # exit 0, but it warned
    [alert] = receiver.alerts
    assert alert["title"].startswith("ukg2d365 post-payroll --due warned on ") and "(exit 0)" in alert["title"]
    assert f"pay group BW period {skipped.period_end} is closed but was never posted" in alert["message"]
    assert f"ukg2d365 post-payroll --pay-group BW --period-end {skipped.period_end}" in alert["message"]

    status = " ".join(world.cli("status").output.split())
    assert (f"pay group BW period {skipped.period_end} is closed, older than payroll.lookback_days and not "
            f"posted: `ukg2d365 post-payroll --pay-group BW --period-end {skipped.period_end}` posts it") in status
    [report] = world.json_events("status")
    assert {"pay_group": "BW", "period_end": str(skipped.period_end)} in report["stale_periods"]

    world.cli("post-payroll", "--pay-group", "BW", "--period-end", str(skipped.period_end), "--yes")
    [report] = world.json_events("status")
    assert {"pay_group": "BW", "period_end": str(skipped.period_end)} not in report["stale_periods"]


def test_ping_notify_sends_a_test_alert(world: World, receiver: Receiver) -> None:
    checks = {e["system"]: e for e in world.json_events("ping", "--notify") if e["event"] == "check"}
    assert checks["Notify"]["ok"] and checks["Notify"]["detail"] == "test alert sent to 1 URL(s); heartbeat configured"
    [alert] = receiver.alerts
    assert alert["title"].startswith("ukg2d365 test alert from ") and alert["type"] == "info"
    assert receiver.heartbeats == []
    assert_no_url(world)


def test_an_alert_that_cannot_be_delivered_is_a_warning_naming_the_url_by_position_only(
    world: World, receiver: Receiver
) -> None:
    receiver.status = 500
    add_unbalanced_run(world)
    result = world.cli("post-payroll", "--run-id", "UNBAL1", "--yes", expect=1)  # the run's own code is kept
    assert "warning: notification URL 1 of 1 (json) did not accept the alert" in " ".join(result.output.split())
    assert_no_url(world)


def test_ping_notify_without_urls_says_where_they_come_from(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UKG2D365_NOTIFY_URLS", raising=False)
    monkeypatch.setenv("UKG2D365_CREDENTIALS_BACKEND", "file")
    monkeypatch.setenv("UKG2D365_CREDENTIALS_FILE", str(world.config_path.parent / "none.enc"))
    checks = {e["system"]: e for e in world.json_events("ping", "--notify", expect=2) if e["event"] == "check"}
    assert checks["Notify"]["detail"] == ("no notification URLs: set UKG2D365_NOTIFY_URLS or run "
                                          "`ukg2d365 credentials set notify`")


def test_a_heartbeat_url_written_into_the_yaml_is_refused_without_repeating_it(world: World) -> None:
    data = yaml.safe_load(world.config_path.read_text())
    data["notify"] = {"heartbeat_url": f"https://hc-ping.com/{HEARTBEAT_TOKEN}"}
    world.config_path.write_text(yaml.safe_dump(data))
    result = world.cli("ping", expect=2)
    assert "notify.heartbeat_url: is a URL; heartbeat URLs carry a token" in " ".join(result.output.split())
    assert_no_url(world)


def test_the_heartbeat_can_come_from_a_named_variable(
    world: World, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UKG2D365_NOTIFY_HEARTBEAT_URL")
    monkeypatch.setenv("HC_NIGHTLY", f"http://127.0.0.1:{receiver.port}/ping/{HEARTBEAT_TOKEN}/nightly")
    data = yaml.safe_load(world.config_path.read_text())
    data["notify"] = {"heartbeat_url": "env:HC_NIGHTLY"}
    world.config_path.write_text(yaml.safe_dump(data))
    world.cli("sync-dimensions")
    assert receiver.heartbeats == [f"/ping/{HEARTBEAT_TOKEN}/nightly"]
