"""The ledger's two homes for tests: a SQLite file, or a fresh database on the throwaway PostgreSQL.

``.ci/with-postgres`` (which ``make test`` and ``.ci/run`` use) starts a PostgreSQL cluster and names it in
``UKG2D365_TEST_PG_URL`` / ``UKG2D365_TEST_PG_PASSWORD``; without it the PostgreSQL cases skip, saying why.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from ukg2d365.ledger import PASSWORD_ENV, Ledger

PG_URL_ENV = "UKG2D365_TEST_PG_URL"
PG_PASSWORD_ENV = "UKG2D365_TEST_PG_PASSWORD"


def pg_skip_reason() -> str | None:
    if os.environ.get(PG_URL_ENV):
        return None
    why = os.environ.get("UKG2D365_TEST_PG_SKIP") or f"{PG_URL_ENV} is not set"
    return f"no PostgreSQL for the tests ({why}); `make test` starts one through .ci/with-postgres"


def require_pg() -> str:
    reason = pg_skip_reason()
    if reason:
        pytest.skip(reason)
    return os.environ[PG_URL_ENV]


def with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


def pg_admin() -> Any:
    import psycopg

    return psycopg.connect(require_pg(), password=os.environ.get(PG_PASSWORD_ENV), autocommit=True)


class PgDatabase:
    """A database of its own on the test server, dropped at the end."""

    def __init__(self) -> None:
        self.name = "t_" + uuid.uuid4().hex[:16]
        with pg_admin() as admin:
            admin.execute(f'CREATE DATABASE "{self.name}"')
        self.url = with_database(require_pg(), self.name)

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, password=os.environ.get(PG_PASSWORD_ENV), autocommit=True)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with self.connect() as db:
            cur = db.execute(sql, params or None)
            return cur.fetchall() if cur.description else []

    def terminate_sessions(self) -> int:
        """End every other session on this database, as a PostgreSQL restart or a cut network would."""
        with pg_admin() as admin:
            rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                                 "AND pid <> pg_backend_pid()", (self.name,)).fetchall()
        return len(rows)

    def drop(self) -> None:
        with pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class LedgerSite:
    """Where a test's ledger lives; ``open()`` opens it as a tenant, ``query()`` reads it with plain SQL."""

    def __init__(self, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.kind = kind
        self.database: PgDatabase | None = None
        if kind == "postgresql":
            require_pg()
            self.database = PgDatabase()
            monkeypatch.setenv(PASSWORD_ENV, os.environ.get(PG_PASSWORD_ENV, ""))
            self.location: Path | str = self.database.url
        else:
            self.location = tmp_path / "l.db"

    def open(self, tenant: str | None = None) -> Ledger:
        return Ledger(self.location, tenant)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if self.database is not None:
            return self.database.query(sql.replace("?", "%s"), *params)
        import sqlite3

        assert isinstance(self.location, Path)
        db = sqlite3.connect(self.location)
        try:
            rows = db.execute(sql, params).fetchall()
            db.commit()
            return rows
        finally:
            db.close()

    def close(self) -> None:
        if self.database is not None:
            self.database.drop()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_site(request: pytest.FixtureRequest, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[LedgerSite]:
    """The ledger suite's home, once on SQLite and once on PostgreSQL."""
    site = LedgerSite(request.param, tmp_path, monkeypatch)
    try:
        yield site
    finally:
        site.close()


@pytest.fixture
def pg_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[PgDatabase]:
    """A fresh PostgreSQL database, its password in ``UKG2D365_LEDGER_PASSWORD`` for the tool."""
    require_pg()
    database = PgDatabase()
    monkeypatch.setenv(PASSWORD_ENV, os.environ.get(PG_PASSWORD_ENV, ""))
    try:
        yield database
    finally:
        database.drop()


class Host:
    """One machine of the highly available set-up: a working folder and HOME of its own, its own copy of a
    tenant's config, and the shared PostgreSQL ledger. Runs the real CLI as a process of its own."""

    def __init__(self, root: Path, name: str, sandbox: Any, ledger_url: str, **ledger: Any) -> None:
        import yaml

        self.name = name
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        data = sandbox.config_dict()
        data["ukg"]["ca_bundle"] = data["d365"]["ca_bundle"] = str(sandbox.ca_path)
        data["ledger"] = {"url": ledger_url, **ledger}
        self.config_path = self.dir / "ukg2d365.yaml"
        self.config_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["HOME"] = str(self.dir)
        env.pop("UKG2D365_CONFIG", None)
        return env

    def spawn(self, *args: str, config: Path | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "ukg2d365", "-c", str(config or self.config_path), *args],
                                cwd=self.dir, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        proc = self.spawn(*args)
        out, err = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
