"""The pieces of a worker's alerting that need no sandbox: the secrets check at start, the alert's wording for a
tenant's job, and the worker's log line when an alert did not arrive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ukg2d365 import notify
from ukg2d365.credentials import CredentialScope, CredentialStore, missing_secrets
from ukg2d365.flows.scheduled import JobReport
from ukg2d365.render import Output
from ukg2d365.render.worker import job_done

ACME = CredentialScope("acme", Path("/etc/ukg2d365/tenants/acme.yaml"))


@pytest.fixture(autouse=True)
def file_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    import os

    for name in list(os.environ):
        if name.startswith("UKG2D365_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)
    path = tmp_path / "credentials.enc"
    monkeypatch.setenv("UKG2D365_CREDENTIALS_BACKEND", "file")
    monkeypatch.setenv("UKG2D365_CREDENTIALS_FILE", str(path))
    return path


def test_the_secrets_check_names_the_missing_secret_and_the_command_that_sets_it() -> None:
    problem = missing_secrets("d365", scope=ACME)
    assert problem is not None and str(problem).startswith(
        "no D365 client secret for credential profile acme: run "
        "`ukg2d365 -c /etc/ukg2d365/tenants/acme.yaml credentials set d365`")
    ukg = missing_secrets("ukg", scope=CredentialScope())
    assert ukg is not None and "run `ukg2d365 credentials set ukg`" in str(ukg)


def test_the_secrets_check_is_presence_only_and_needs_no_master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UKG2D365_MASTER_KEY", "the key the operator stored them with")
    CredentialStore(scope=ACME).set("d365", {"client_secret": "acme-secret-0123456789"})
    monkeypatch.delenv("UKG2D365_MASTER_KEY")  # the worker's check decrypts nothing
    assert missing_secrets("d365", scope=ACME) is None
    assert missing_secrets("d365", scope=CredentialScope("globex")) is not None  # another profile's is not its own
    monkeypatch.setenv("UKG2D365_GLOBEX_D365_CLIENT_SECRET", "globex-secret-0123456789")
    assert missing_secrets("d365", scope=CredentialScope("globex")) is None


def test_a_tenants_alert_names_the_tenant_and_every_command_it_suggests_carries_its_config() -> None:
    report = notify.RunReport("post-payroll --due", 1, warnings=["refusing UKG run X"], tenant="acme",
                              config_path=ACME.config_path,
                              origin="scheduled for 2026-11-14T06:00:00+00:00 (worker w1)")
    title, body = notify.compose(report, ACME)
    assert title.startswith("ukg2d365 post-payroll --due failed for tenant acme on ") and title.endswith("(exit 1)")
    assert body.startswith("post-payroll --due of tenant acme (/etc/ukg2d365/tenants/acme.yaml), scheduled for "
                           "2026-11-14T06:00:00+00:00 (worker w1), on ")
    commands = [part for i, part in enumerate(body.split("`")) if i % 2]
    assert commands and all(c.startswith("ukg2d365 -c /etc/ukg2d365/tenants/acme.yaml ") for c in commands), commands


def test_a_cli_runs_alert_is_worded_as_before() -> None:
    title, body = notify.compose(notify.RunReport("post-payroll --due", 1))
    assert title.startswith("ukg2d365 post-payroll --due failed on ")
    assert "next: `ukg2d365 status` lists what failed" in body


def test_the_worker_logs_an_undelivered_alert_as_a_warning_of_its_tenant(capsys: pytest.CaptureFixture[str]) -> None:
    report = JobReport("acme", "post_payroll_due", "2026-11-14T06:00:00+00:00", 0, {"posted": 1},
                       alert_problems=["heartbeat to hc-ping.com answered HTTP 503"])
    job_done(Output(json_mode=True), report)
    captured = capsys.readouterr()
    [event] = [json.loads(line) for line in captured.out.splitlines()]
    assert event["alert_problems"] == ["heartbeat to hc-ping.com answered HTTP 503"]
    [log] = [json.loads(line) for line in captured.err.splitlines()]
    assert log["level"] == "warning"
    assert log["message"] == "acme: post-payroll --due: heartbeat to hc-ping.com answered HTTP 503"
