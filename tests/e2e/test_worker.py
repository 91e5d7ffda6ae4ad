"""`ukg2d365 worker --tenants DIR`: two workers on two hosts, one PostgreSQL, every tenant's schedule.

Procrastinate defers each periodic task once per period "even with multiple workers"
(procrastinate-org/procrastinate docs/howto/advanced/cron.md); these tests run two real workers as separate
processes against the sandbox and read what the tenants' ledgers recorded.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests.ledgers import Host, PgDatabase
from tests.world import World
from ukg2d365.accruals import month_end_of, previous_month_end, straddles
from ukg2d365.cli import app
from ukg2d365.flows import scheduled

pytestmark = pytest.mark.e2e


def tenant_file(host: Host, folder: Path, tenant: str, schedule: dict[str, str]) -> Path:
    """The host's config of a sandbox, as a tenant of the folder, with its schedule."""
    data = yaml.safe_load(host.config_path.read_text(encoding="utf-8"))
    data["ledger"]["tenant"] = tenant
    data["schedule"] = schedule
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{tenant}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def scheduled_runs(database: PgDatabase) -> dict[str, list[tuple[str, int | None, str]]]:
    """tenant -> [(scheduled_for, exit code, worker)] of the worker's post-payroll --due runs."""
    found: dict[str, list[tuple[str, int | None, str]]] = defaultdict(list)
    if not database.query("SELECT to_regclass('runs')")[0][0]:
        return found  # the workers have not opened the ledger yet
    for tenant, args, code in database.query(
            "SELECT tenant, args, exit_code FROM runs WHERE command = 'worker post-payroll --due' ORDER BY id"):
        parsed = json.loads(args)
        found[tenant].append((parsed["scheduled_for"], code, parsed["worker"]))
    return found


def test_two_workers_run_every_tenants_job_once_per_minute_never_twice(
        world: World, make_sandbox: Any, tmp_path: Path, pg_database: PgDatabase,
        monkeypatch: pytest.MonkeyPatch) -> None:
    other = World(make_sandbox(), monkeypatch)
    other.create_missing_dimensions()
    every_minute = {"post_payroll_due": "* * * * *"}
    workers = []
    for name in ("host-a", "host-b"):
        acme = Host(tmp_path, name, world.sandbox, pg_database.url)
        globex = Host(tmp_path / "globex", name, other.sandbox, pg_database.url)
        folder = acme.dir / "tenants"
        tenant_file(acme, folder, "acme", every_minute)
        tenant_file(globex, folder, "globex", every_minute)
        workers.append(acme.spawn("worker", "--tenants", str(folder), "--name", name))
    try:
        deadline = time.monotonic() + 250
        while time.monotonic() < deadline:
            runs = scheduled_runs(pg_database)
            done = {t: [r for r in runs.get(t, []) if r[1] is not None] for t in ("acme", "globex")}
            if all(len({r[0] for r in rows}) >= 3 for rows in done.values()):
                break
            assert all(w.poll() is None for w in workers), [w.communicate() for w in workers]
            time.sleep(1)
        time.sleep(3)  # a second copy of a period, if one were deferred, would show up now
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        outputs = [w.communicate(timeout=60) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    runs = scheduled_runs(pg_database)
    for tenant in ("acme", "globex"):
        minutes = Counter(r[0] for r in runs[tenant])
        assert len(minutes) >= 3, runs[tenant]
        assert set(minutes.values()) == {1}, minutes  # never twice for one minute, whichever worker ran it
        stamps = sorted(datetime.fromisoformat(m) for m in minutes)
        assert all(s.second == 0 for s in stamps)
        assert all((b - a).total_seconds() == 60 for a, b in zip(stamps, stamps[1:], strict=False))  # every minute
        assert all(r[1] == 0 for r in runs[tenant]), runs[tenant]
    # each tenant's pay runs reached its own D365 once
    for w in (world, other):
        journals = w.journals()
        assert journals and len({j["Description"] for j in journals}) == len(journals)
    assert "acme: post-payroll --due (scheduled " in outputs[0][0] + outputs[1][0]


def test_a_scheduled_accrual_job_posts_the_due_month_end_once_under_the_tenants_lock(tmp_path: Path, world: World,
                                                                                    pg_database: PgDatabase) -> None:
    """``schedule.accrue_payroll_due`` runs accrue-payroll --due as a recorded run of its tenant, like cron's."""
    today = datetime.now(timezone.utc).date()  # the flow's today: d365.time_zone, UTC in the sandbox config
    month_end = month_end_of(today) if month_end_of(today) == today else previous_month_end(today)
    while not any(straddles(p.period_start, p.period_end, month_end) for p in world.sandbox.dataset.pay_periods):
        month_end = previous_month_end(month_end)
    host = Host(tmp_path, "host-a", world.sandbox, pg_database.url)
    path = tenant_file(host, tmp_path / "tenants", "acme", {"accrue_payroll_due": "0 7 1 * *"})
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data.setdefault("payroll", {})["lookback_days"] = (today - month_end).days
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    tenant = scheduled.load_tenant(path)

    first = scheduled.run_job(tenant, "accrue_payroll_due", int(time.time()), "w1")
    assert (first.code, first.summary["posted"], first.error) == (0, 1, None)
    (journal,) = world.journals()
    assert {line["ReverseEntry"] for line in journal["lines"]} == {"Yes"}
    again = scheduled.run_job(tenant, "accrue_payroll_due", int(time.time()), "w2")
    assert (again.code, again.summary["posted"]) == (0, 0)
    assert len(world.journals()) == 1
    assert pg_database.query("SELECT exit_code FROM runs WHERE tenant = 'acme' AND command = "
                             "'worker accrue-payroll --due' ORDER BY id") == [(0,), (0,)]


def test_worker_refuses_tenants_without_a_shared_postgresql_ledger(tmp_path: Path, world: World) -> None:
    folder = tmp_path / "tenants"
    folder.mkdir()
    (folder / "acme.yaml").write_text(world.config_path.read_text(encoding="utf-8").replace(
        "ledger:", "schedule: {sync_dimensions: '0 * * * *'}\nledger:"), encoding="utf-8")
    result = CliRunner().invoke(app, ["worker", "--tenants", str(folder)])
    assert result.exit_code == 2 and "the worker needs ledger.url (PostgreSQL)" in result.output


def test_a_bad_cron_expression_names_the_file_and_key(tmp_path: Path, world: World, pg_database: PgDatabase) -> None:
    host = Host(tmp_path, "host-a", world.sandbox, pg_database.url)
    folder = host.dir / "tenants"
    tenant_file(host, folder, "acme", {"sync_employees": "every hour"})
    result = CliRunner().invoke(app, ["worker", "--tenants", str(folder)])
    assert result.exit_code == 2 and "schedule.sync_employees: 'every hour' is not a cron expression" in result.output


def test_status_tenants_shows_every_tenants_schedule_and_last_runs(tmp_path: Path, world: World,
                                                                  pg_database: PgDatabase) -> None:
    host = Host(tmp_path, "host-a", world.sandbox, pg_database.url)
    folder = host.dir / "tenants"
    acme = tenant_file(host, folder, "acme", {"post_payroll_due": "*/15 * * * *"})
    tenant_file(host, folder, "globex", {"sync_dimensions": "0 6 * * *"})
    runner = CliRunner()
    posted = runner.invoke(app, ["-c", str(acme), "post-payroll", "--due", "--yes"])
    assert posted.exit_code == 0, posted.output
    result = runner.invoke(app, ["status", "--tenants", str(folder)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "acme" in result.output and "globex" in result.output and "post_payroll_due: */15 * * * *" in result.output
    assert "post-payroll: exit 0 at " in result.output and "no run yet" in result.output
    lines = runner.invoke(app, ["--json", "status", "--tenants", str(folder)]).stdout.splitlines()
    tenants = {e["tenant"]: e for e in map(json.loads, lines) if e.get("event") == "tenant"}
    assert tenants["acme"]["counts"]["posted"] >= 1 and tenants["globex"]["counts"]["posted"] == 0
    assert tenants["acme"]["last_by_command"]["post-payroll"]["exit_code"] == 0
