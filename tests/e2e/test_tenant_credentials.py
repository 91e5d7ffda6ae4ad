"""One worker, two customers, two D365 client secrets: each tenant's job runs with its credential profile's.

Each customer has an Entra ID directory and a D365 environment of its own (here: a sandbox each, the second
with a second app registration: another client id and secret). The worker process has one environment and one
credential store for both, with a global secret in it that belongs to neither: every journal still reaches
its D365 with a token its own app's secret earned, and no Entra ID ever sees the other tenant's secret.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests.ledgers import Host, PgDatabase
from tests.world import World
from ukg2d365.cli import app
from ukg2d365.flows import scheduled
from ukg2d365.ledger import POSTED
from ukg2d365.sandbox import catalog

pytestmark = pytest.mark.e2e

MASTER = "worker master key for the tenants' secrets"
GLOBAL_SECRET = "global-d365-secret-of-no-tenant"
GLOBAL_UKG_PASSWORD = "global-ukg-password-of-no-tenant"


def profiled_tenant(host: Host, folder: Path, tenant: str, profile: str | None) -> Path:
    """The host's config of its sandbox as a tenant of the worker's folder, with a credential profile."""
    data = yaml.safe_load(host.config_path.read_text(encoding="utf-8"))
    data["ledger"]["tenant"] = tenant
    data["schedule"] = {"post_payroll_due": "0 6 * * *"}
    if profile is not None:
        data["credentials"] = {"profile": profile}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{tenant}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def store_credentials(config: Path, system: str, *values: str) -> None:
    """``ukg2d365 -c CONFIG credentials set SYSTEM``, the values on stdin as a script would pipe them."""
    result = CliRunner().invoke(app, ["-c", str(config), "credentials", "set", system], input="\n".join(values) + "\n")
    assert result.exit_code == 0, result.output
    assert "credential profile" in result.output and not any(v in result.output for v in values if len(v) > 5)


@pytest.fixture
def shared_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The worker's one encrypted credential file (what a headless server has) under one master key."""
    path = tmp_path / "worker-credentials.enc"
    monkeypatch.setenv("UKG2D365_CREDENTIALS_BACKEND", "file")
    monkeypatch.setenv("UKG2D365_CREDENTIALS_FILE", str(path))
    monkeypatch.setenv("UKG2D365_MASTER_KEY", MASTER)
    return path


def poison_global_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Global secrets that belong to no tenant: a run that fell back to them would be refused."""
    monkeypatch.setenv("UKG2D365_D365_CLIENT_SECRET", GLOBAL_SECRET)
    monkeypatch.setenv("UKG2D365_UKG_PASSWORD", GLOBAL_UKG_PASSWORD)


def ledger_text(database: PgDatabase) -> str:
    rows = database.query("SELECT args, summary FROM runs") + database.query("SELECT * FROM audit_events")
    return "\n".join(str(row) for row in rows)


def test_one_worker_posts_two_tenants_each_with_its_own_d365_client_secret(
        world: World, make_sandbox: Any, tmp_path: Path, pg_database: PgDatabase, shared_store: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    globex_world = World(make_sandbox(client_id=catalog.CLIENT_ID_2, client_secret=catalog.CLIENT_SECRET_2),
                         monkeypatch)
    globex_world.create_missing_dimensions()
    folder = tmp_path / "tenants"
    acme_path = profiled_tenant(Host(tmp_path, "acme", world.sandbox, pg_database.url), folder, "acme", "acme")
    profiled_tenant(Host(tmp_path, "globex", globex_world.sandbox, pg_database.url), folder, "globex", "globex")
    # acme's secrets in the worker's store, under its profile, as an operator stores them
    store_credentials(acme_path, "ukg", catalog.UKG_USERNAME, catalog.UKG_PASSWORD, catalog.UKG_CUSTOMER_API_KEY,
                      catalog.UKG_USER_API_KEY)
    store_credentials(acme_path, "d365", catalog.CLIENT_SECRET)
    # globex's in the worker's environment, scoped to its profile (a Kubernetes secret, an EnvironmentFile)
    for name, value in globex_world.sandbox.env("globex").items():
        monkeypatch.setenv(name, value)
    poison_global_secrets(monkeypatch)
    assert catalog.CLIENT_SECRET != catalog.CLIENT_SECRET_2 != GLOBAL_SECRET

    tenants = {t.name: t for t in scheduled.load_tenants(folder)}
    reports = [scheduled.run_job(tenants[name], "post_payroll_due", int(time.time()), "worker-1")
               for name in ("acme", "globex")]  # one process, one environment, one store

    for report in reports:
        assert (report.code, report.error) == (0, None), report
        assert report.summary["posted"] >= 1 and report.summary["failed"] == 0
    for w, client_id in ((world, catalog.CLIENT_ID), (globex_world, catalog.CLIENT_ID_2)):
        journals = w.journals()
        assert len(journals) == reports[0 if w is world else 1].summary["posted"]
        assert w.sandbox.tokens.issued_to() == {client_id}  # every journal came with its own app's token
        assert w.sandbox.entra is not None and w.sandbox.entra.refusals == []  # no other secret ever tried
    counts = pg_database.query("SELECT tenant, count(*) FROM postings WHERE status = %s GROUP BY tenant "
                               "ORDER BY tenant", POSTED)
    assert [row[0] for row in counts] == ["acme", "globex"]
    text = ledger_text(pg_database)
    for secret in (catalog.CLIENT_SECRET, catalog.CLIENT_SECRET_2, GLOBAL_SECRET, catalog.UKG_PASSWORD):
        assert secret not in text


def test_a_tenant_without_its_own_secret_is_refused_even_when_the_global_one_would_work(
        world: World, tmp_path: Path, pg_database: PgDatabase, shared_store: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The global UKG2D365_D365_CLIENT_SECRET here is this very D365's: a fallback would post, silently."""
    path = profiled_tenant(Host(tmp_path, "initech", world.sandbox, pg_database.url), tmp_path / "tenants",
                           "initech", "initech")
    for name, value in world.sandbox.env("initech").items():
        if not name.endswith("_D365_CLIENT_SECRET"):
            monkeypatch.setenv(name, value)  # UKG's are there; D365's secret is not
    requests_before = world.sandbox.stats()["entra"]

    report = scheduled.run_job(scheduled.load_tenant(path), "post_payroll_due", int(time.time()), "worker-1")

    assert report.code == 2
    assert report.error == (f"no D365 client secret for credential profile initech: run `ukg2d365 -c {path} "
                            "credentials set d365` (or set UKG2D365_INITECH_D365_CLIENT_SECRET; a config with "
                            "credentials.profile never uses the global UKG2D365_D365_CLIENT_SECRET nor the global "
                            "stored secrets)")
    assert world.sandbox.stats()["entra"] == requests_before and world.journals() == []
    assert pg_database.query("SELECT exit_code FROM runs WHERE tenant = 'initech'") == [(2,)]
    assert catalog.CLIENT_SECRET not in ledger_text(pg_database)


def test_a_profiled_configs_alerts_and_heartbeat_go_to_its_own_channel_never_the_global_one(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.e2e.test_notify import Receiver

    own, other = Receiver(), Receiver()
    try:
        monkeypatch.setenv("UKG2D365_NOTIFY_URLS", f"json://127.0.0.1:{other.port}/alerts/global")
        monkeypatch.setenv("UKG2D365_NOTIFY_HEARTBEAT_URL", f"http://127.0.0.1:{other.port}/ping/global")
        monkeypatch.setenv("UKG2D365_ACME_NOTIFY_URLS", f"json://127.0.0.1:{own.port}/alerts/acme-token")
        monkeypatch.setenv("UKG2D365_ACME_NOTIFY_HEARTBEAT_URL", f"http://127.0.0.1:{own.port}/ping/acme-token")
        for name, value in world.sandbox.env("acme").items():
            monkeypatch.setenv(name, value)
        poison_global_secrets(monkeypatch)
        data = yaml.safe_load(world.config_path.read_text(encoding="utf-8"))
        data["credentials"] = {"profile": "acme"}
        world.config_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

        world.cli("post-payroll", "--run-id", world.latest_run().run_id, "--yes")
        assert own.heartbeats == ["/ping/acme-token"]
        # A config that does not load still alerts the profile it names.
        world.config_path.write_text(world.config_path.read_text(encoding="utf-8") + "payroll:\n  lookbak_days: 3\n",
                                     encoding="utf-8")
        world.cli("post-payroll", "--due", "--yes", expect=2)
        [alert] = own.alerts
        assert "payroll.lookbak_days: unknown key" in alert["message"]
        assert other.requests == []
        assert not any("acme-token" in output for output in world.outputs)
    finally:
        own.close()
        other.close()
