"""A worker's jobs alert as cron runs do: each tenant through its own channel (its credential profile's URLs).

In the highly available set-up nobody reads a terminal: a refused pay run, a failed job or a broken secret must
reach the tenant's notification URLs, and each successful job pings the tenant's heartbeat, so a dead pair of
workers is noticed too. Most tests call ``scheduled.run_job`` as the worker's task does (with the worker's
describer); one runs a real worker process for about a minute to prove the wiring through Procrastinate.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests.e2e.test_notify import Receiver, add_unbalanced_run
from tests.ledgers import Host, PgDatabase
from tests.world import World
from ukg2d365.cli import app
from ukg2d365.flows import scheduled
from ukg2d365.render.worker import describe_job

pytestmark = pytest.mark.e2e


@pytest.fixture
def channels(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Receiver]]:
    """An alert service and heartbeat of its own for tenants acme, globex and initech, and a global one that a
    profiled tenant must never use; the credential store is a file of the test's own, holding nothing."""
    receivers = {name: Receiver() for name in ("acme", "globex", "initech", "global")}
    for name, r in receivers.items():
        prefix = "UKG2D365_" if name == "global" else f"UKG2D365_{name.upper()}_"
        monkeypatch.setenv(f"{prefix}NOTIFY_URLS", f"json://127.0.0.1:{r.port}/alerts/{name}-token")
        monkeypatch.setenv(f"{prefix}NOTIFY_HEARTBEAT_URL", f"http://127.0.0.1:{r.port}/ping/{name}-token")
    monkeypatch.setenv("UKG2D365_CREDENTIALS_BACKEND", "file")
    monkeypatch.setenv("UKG2D365_CREDENTIALS_FILE", str(tmp_path / "worker-credentials.enc"))
    monkeypatch.setenv("UKG2D365_MASTER_KEY", "worker master key of the alert tests")
    try:
        yield receivers
    finally:
        for r in receivers.values():
            r.close()


def tenant(world: World, tmp_path: Path, pg_database: PgDatabase, name: str,
           schedule: dict[str, str] | None = None) -> Path:
    """``name``'s config in the worker's folder: its sandbox, the shared ledger, credential profile ``name``."""
    host = Host(tmp_path, name, world.sandbox, pg_database.url)
    data = yaml.safe_load(host.config_path.read_text(encoding="utf-8"))
    data["ledger"]["tenant"] = name
    data["credentials"] = {"profile": name}
    data["schedule"] = schedule or {"post_payroll_due": "0 6 * * *"}
    folder = tmp_path / "tenants"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def give_secrets(world: World, monkeypatch: pytest.MonkeyPatch, profile: str, *, d365: bool = True) -> None:
    for name, value in world.sandbox.env(profile).items():
        if d365 or not name.endswith("_D365_CLIENT_SECRET"):
            monkeypatch.setenv(name, value)


def run_due(path: Path) -> scheduled.JobReport:
    return scheduled.run_job(scheduled.load_tenant(path), "post_payroll_due", int(time.time()), "w1",
                             describe=describe_job)


def test_a_scheduled_job_that_refuses_a_pay_run_alerts_its_own_tenant_once_and_no_other(
        world: World, make_sandbox: Any, tmp_path: Path, pg_database: PgDatabase, channels: dict[str, Receiver],
        monkeypatch: pytest.MonkeyPatch) -> None:
    globex_world = World(make_sandbox(), monkeypatch)
    globex_world.create_missing_dimensions()
    acme, globex = (tenant(w, tmp_path, pg_database, n) for w, n in ((world, "acme"), (globex_world, "globex")))
    give_secrets(world, monkeypatch, "acme")
    give_secrets(globex_world, monkeypatch, "globex")
    add_unbalanced_run(world)  # acme's UKG holds a run that does not balance: refused, nothing sent for it

    refused, clean = run_due(acme), run_due(globex)

    assert (refused.code, refused.summary["refused"], clean.code) == (1, 1, 0), (refused, clean)
    [alert] = channels["acme"].alerts
    assert alert["type"] == "failure"
    assert alert["title"].startswith("ukg2d365 post-payroll --due failed for tenant acme on ")
    assert alert["title"].endswith("(exit 1)")
    message = alert["message"]
    assert f"post-payroll --due of tenant acme ({acme}), scheduled for {refused.scheduled_for} (worker w1)," in message
    assert "warning: refusing UKG run UNBAL1 (" in message and "unbalanced in UKG" in message, message
    assert f"next: `ukg2d365 -c {acme} status` lists what failed" in message
    assert f"`ukg2d365 -c {acme} replay --failed`" in message
    assert channels["acme"].heartbeats == []  # a run that refused something is no heartbeat
    assert channels["globex"].alerts == [] and channels["globex"].heartbeats == ["/ping/globex-token"]
    assert channels["global"].requests == [] and channels["initech"].requests == []
    assert (refused.alert_problems, clean.alert_problems) == ([], [])


def test_a_successful_scheduled_job_pings_its_tenants_heartbeat_and_sends_no_alert(
        world: World, tmp_path: Path, pg_database: PgDatabase, channels: dict[str, Receiver],
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tenant(world, tmp_path, pg_database, "acme")
    give_secrets(world, monkeypatch, "acme")

    first, second = run_due(path), run_due(path)  # the second has nothing new to post: still a success

    assert (first.code, second.code) == (0, 0) and first.summary["posted"] >= 1 and second.summary["posted"] == 0
    assert channels["acme"].heartbeats == ["/ping/acme-token"] * 2
    assert channels["acme"].alerts == [] and channels["global"].requests == []


def test_every_kind_of_job_is_described_in_its_commands_own_summary_line(
        world: World, tmp_path: Path, pg_database: PgDatabase, channels: dict[str, Receiver],
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tenant(world, tmp_path, pg_database, "acme")
    give_secrets(world, monkeypatch, "acme")
    acme = scheduled.load_tenant(path)
    summaries: dict[str, str] = {}
    for job in scheduled.JOBS:
        report = scheduled.run_job(acme, job, int(time.time()), "w1", describe=describe_job)
        assert not any("could not be listed" in w for w in report.warnings), report
        assert report.summary_text is not None, report
        summaries[job] = report.summary_text
    # each the summary line its command prints (cli/payroll.py, accruals.py, sync.py), not the worker's counts
    assert summaries["post_payroll_due"].startswith("journals: 1 created in D365 (unposted); "), summaries
    assert "accrual journal" in summaries["accrue_payroll_due"], summaries  # created, or nothing due today
    assert "dimension value(s);" in summaries["sync_dimensions"], summaries
    assert summaries["sync_employees"].startswith("sent ") and "UKG record(s) read" in summaries["sync_employees"]


def test_a_scheduled_job_without_its_d365_secret_sends_the_failure_alert_naming_the_command_that_sets_it(
        world: World, tmp_path: Path, pg_database: PgDatabase, channels: dict[str, Receiver],
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tenant(world, tmp_path, pg_database, "initech")
    give_secrets(world, monkeypatch, "initech", d365=False)  # and the global one is set: never used for initech

    report = run_due(path)

    assert report.code == 2 and world.journals() == []
    [alert] = channels["initech"].alerts
    assert alert["title"].startswith("ukg2d365 post-payroll --due failed for tenant initech on ")
    assert alert["title"].endswith("(exit 2)")
    assert (f"error: no D365 client secret for credential profile initech: run `ukg2d365 -c {path} credentials "
            "set d365`") in alert["message"]
    assert f"next: fix the configuration or credential named above; `ukg2d365 -c {path} ping`" in alert["message"]
    assert channels["initech"].heartbeats == [] and channels["global"].requests == []


def test_an_alert_that_is_not_delivered_is_a_warning_in_the_tenants_audit_and_the_job_keeps_its_exit_code(
        world: World, tmp_path: Path, pg_database: PgDatabase, channels: dict[str, Receiver],
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tenant(world, tmp_path, pg_database, "acme")
    give_secrets(world, monkeypatch, "acme")
    add_unbalanced_run(world)
    channels["acme"].status = 500  # the alert service is down

    report = run_due(path)

    assert report.code == 1
    assert report.alert_problems == ["notification URL 1 of 1 (json) did not accept the alert"]
    [(run_id,)] = pg_database.query("SELECT id FROM runs WHERE tenant = 'acme'")
    trail = CliRunner().invoke(app, ["-c", str(path), "--json", "audit", f"run:{run_id}"])
    assert trail.exit_code == 0, trail.output
    events = [json.loads(line) for line in trail.stdout.splitlines()]
    assert any("notification URL 1 of 1 (json) did not accept the alert" in json.dumps(e) for e in events), events
    stored = str(pg_database.query("SELECT detail FROM audit_events WHERE kind = 'alert not delivered'"))
    assert "did not accept the alert" in stored and "acme-token" not in stored


def test_a_bug_in_a_job_is_recorded_and_alerted_with_its_audit_command_and_the_worker_serves_on(
        world: World, tmp_path: Path, pg_database: PgDatabase, channels: dict[str, Receiver],
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tenant(world, tmp_path, pg_database, "acme")
    give_secrets(world, monkeypatch, "acme")

    def broken(ctx: Any) -> scheduled.JobOutcome:
        raise KeyError("a bug")

    monkeypatch.setitem(scheduled.JOBS, "post_payroll_due", scheduled.Job("post-payroll --due", broken))
    report = run_due(path)  # returns: Procrastinate's task, and so the worker, carries on

    [(run_id, code)] = pg_database.query("SELECT id, exit_code FROM runs WHERE tenant = 'acme'")
    assert report.code == code == 70
    audit = f"ukg2d365 -c {path} audit run:{run_id}"
    assert report.error == f"internal error (this is a bug): KeyError: 'a bug'; the traceback is in `{audit}`"
    [alert] = channels["acme"].alerts
    assert alert["title"].endswith("(exit 70)") and f"next: report the bug with the output of `{audit}`" in \
        alert["message"]


def test_a_worker_names_the_tenant_missing_a_secret_alerts_it_and_serves_the_others_through_procrastinate(
        world: World, tmp_path: Path, pg_database: PgDatabase, channels: dict[str, Receiver],
        monkeypatch: pytest.MonkeyPatch) -> None:
    every_minute = {"post_payroll_due": "* * * * *"}
    tenant(world, tmp_path, pg_database, "acme", every_minute)
    initech = tenant(world, tmp_path, pg_database, "initech", every_minute)
    give_secrets(world, monkeypatch, "acme")
    give_secrets(world, monkeypatch, "initech", d365=False)
    host = Host(tmp_path, "host-a", world.sandbox, pg_database.url)

    worker = host.spawn("worker", "--tenants", str(tmp_path / "tenants"), "--name", "host-a")
    try:
        deadline = time.monotonic() + 150  # the first job runs at the next minute
        while time.monotonic() < deadline and not (channels["acme"].heartbeats
                                                   and len(channels["initech"].alerts) >= 2):
            assert worker.poll() is None, worker.communicate()
            time.sleep(0.5)
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=120)

    assert worker.returncode == 0, (out, err)
    missing = [line for line in err.splitlines() if "its jobs will stop with exit 2" in line]
    assert missing == [f"warning: initech (initech.yaml): its jobs will stop with exit 2 until the secret is set: "
                       f"no D365 client secret for credential profile initech: run `ukg2d365 -c {initech} "
                       "credentials set d365` (or set UKG2D365_INITECH_D365_CLIENT_SECRET; a config with "
                       "credentials.profile never uses the global UKG2D365_D365_CLIENT_SECRET nor the global stored "
                       "secrets)"], err
    started, job = channels["initech"].alerts[:2]
    assert started["title"].startswith("ukg2d365 post-payroll --due will fail for tenant initech on ")
    assert "no D365 client secret for credential profile initech" in started["message"]
    assert job["title"].startswith("ukg2d365 post-payroll --due failed for tenant initech on ")
    assert "acme: post-payroll --due (scheduled " in out and "exit 0" in out  # the other tenant was served
    assert channels["acme"].heartbeats and channels["acme"].alerts == []
    assert channels["global"].requests == []
    assert "token" not in out + err
