"""Two hosts, one PostgreSQL ledger: the highly available set-up, proven with the real CLI as separate processes.

Each "host" has its own working folder, HOME and copy of the config; they share the ledger (``ledger.url``)
and so each tenant's run lock (a session advisory lock). Kubernetes CronJob "might" start two jobs at once
(kubernetes/website content/en/docs/concepts/workloads/controllers/cron-jobs.md); these tests start them.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.ledgers import Host, PgDatabase
from tests.world import World, wait_for
from ukg2d365.config import load_config
from ukg2d365.ledger import Ledger
from ukg2d365.sandbox.faults import FaultRule

pytestmark = pytest.mark.e2e


def posting_key(run: Any) -> str:
    return f"C0MP1/BW/{run.period_end}/{run.run_id}"


def content(account: Any, debit: Any, credit: Any, text: Any) -> tuple[str, Decimal, Decimal, str]:
    return (str(account).casefold(), Decimal(str(debit)), Decimal(str(credit)), str(text or "").rstrip())


def shared_ledger(host: Host) -> Ledger:
    config = load_config(host.config_path)
    return Ledger(config.ledger_location, config.ledger_tenant)


def assert_each_line_once(journals: list[dict[str, Any]], host: Host, run: Any) -> None:
    """One journal in D365, holding every line the shared ledger planned, each exactly once."""
    assert len(journals) == 1, [(j["JournalBatchNumber"], len(j["lines"])) for j in journals]
    ledger = shared_ledger(host)
    try:
        plan = Counter(content(ln.account, ln.debit, ln.credit, ln.text) for ln in ledger.plan_lines(posting_key(run)))
        assert ledger.get_posting(posting_key(run)).status == "posted"
    finally:
        ledger.close()
    assert plan
    held = Counter(content(r["AccountDisplayValue"], r["DebitAmount"], r["CreditAmount"], r["Text"])
                   for r in journals[0]["lines"])
    assert held == plan


def two_hosts(world: World, tmp_path: Path, database: PgDatabase, **ledger: Any) -> tuple[Host, Host]:
    return (Host(tmp_path, "host-a", world.sandbox, database.url, **ledger),
            Host(tmp_path, "host-b", world.sandbox, database.url, **ledger))


def sending_on(world: World, host: Host, run: Any) -> subprocess.Popen[str]:
    """Host's post-payroll of ``run``, returned once it has created the journal and is sending its lines
    (each $batch answer 1.5 s late, so the run is caught mid-send)."""
    world.sandbox.faults.add(FaultRule("d365", "latency", method="POST", path_regex=r"\$batch$", latency_ms=1500))
    proc = host.spawn("post-payroll", "--run-id", run.run_id, "--yes")
    wait_for(lambda: bool(world.journals()), timeout=60)
    return proc


def test_overlapping_runs_of_one_tenant_on_two_hosts_post_once_and_the_second_exits_75_at_once(
        world: World, tmp_path: Path, pg_database: PgDatabase) -> None:
    run = world.latest_run()
    a, b = two_hosts(world, tmp_path, pg_database)
    first = sending_on(world, a, run)  # host A holds the lock and is sending
    began = time.monotonic()
    second = b.run("post-payroll", "--run-id", run.run_id, "--yes")
    assert second.returncode == 75, second.stderr
    assert time.monotonic() - began < 15  # at once, not after host A's run
    tenant = load_config(a.config_path).ledger_tenant
    assert f"another ukg2d365 run holds the lock for tenant {tenant} (pid {first.pid} on " in second.stderr
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    # a third run that waits for the lock instead finds the pay run posted and sends nothing
    patient = Host(tmp_path, "host-c", world.sandbox, pg_database.url, lock_timeout_seconds=60)
    assert patient.run("post-payroll", "--run-id", run.run_id, "--yes").returncode == 0
    assert_each_line_once(world.journals(), a, run)


def test_sigkill_on_host_a_mid_send_then_host_b_recovers_each_line_once(
        world: World, tmp_path: Path, pg_database: PgDatabase) -> None:
    run = world.latest_run()
    a, b = two_hosts(world, tmp_path, pg_database)
    proc = sending_on(world, a, run)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    wait_for(lambda: any(j["lines"] for j in world.journals()), timeout=10)  # landed after the kill
    ledger = shared_ledger(b)
    try:
        assert ledger.get_posting(posting_key(run)).status == "sending"  # host A never learnt the answer
    finally:
        ledger.close()
    # host B at once: the killed session's advisory lock is gone with it
    result = b.run("post-payroll", "--run-id", run.run_id, "--yes")
    assert result.returncode == 0, result.stderr
    assert_each_line_once(world.journals(), b, run)


def test_two_tenants_on_one_database_post_at_the_same_time_and_both_succeed(
        world: World, make_sandbox: Any, tmp_path: Path, pg_database: PgDatabase,
        monkeypatch: pytest.MonkeyPatch) -> None:
    other_world = World(make_sandbox(), monkeypatch)
    other_world.create_missing_dimensions()
    hosts = [Host(tmp_path, "acme", world.sandbox, pg_database.url, tenant="acme"),
             Host(tmp_path, "globex", other_world.sandbox, pg_database.url, tenant="globex")]
    for w in (world, other_world):
        w.sandbox.faults.add(FaultRule("d365", "latency", method="POST", path_regex=r"\$batch$", latency_ms=1000))
    procs = [h.spawn("post-payroll", "--due", "--yes") for h in hosts]
    results = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    spans = {tenant: (started, finished) for tenant, started, finished in pg_database.query(
        "SELECT tenant, started_at, finished_at FROM runs WHERE command = 'post-payroll'")}
    assert set(spans) == {"acme", "globex"}
    (a_start, a_end), (g_start, g_end) = spans["acme"], spans["globex"]
    assert a_start < g_end and g_start < a_end  # they ran at once: one tenant's lock never waits for another
    for host, w in zip(hosts, (world, other_world), strict=True):
        ledger = shared_ledger(host)
        try:
            posted = ledger.find_postings(status="posted")
        finally:
            ledger.close()
        assert posted and len(w.journals()) == len(posted)


def test_postgresql_going_away_mid_run_exits_4_naming_the_host_and_the_next_run_recovers(
        world: World, tmp_path: Path, pg_database: PgDatabase) -> None:
    run = world.latest_run()
    a, b = two_hosts(world, tmp_path, pg_database)
    proc = sending_on(world, a, run)
    assert pg_database.terminate_sessions() >= 1  # as a restart or a cut network ends them
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 4, err
    [line] = [ln for ln in err.splitlines() if ln.startswith("error:")]
    host = pg_database.url.split("@", 1)[1]
    assert f"ledger PostgreSQL at {host} is unavailable" in line
    assert "recovered by the next run" in line and "Traceback" not in err
    password = a.env()["UKG2D365_LEDGER_PASSWORD"]
    assert password and password not in err + out
    result = b.run("post-payroll", "--run-id", run.run_id, "--yes")
    assert result.returncode == 0, result.stderr
    assert_each_line_once(world.journals(), b, run)
