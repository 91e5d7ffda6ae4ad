"""The two databases a ledger lives in: a SQLite file (the embedded default) and PostgreSQL (shared by hosts).

Everything that differs between them lives here: how a connection opens, the placeholder style, how a write
transaction starts, the few DDL words the migrations leave open (``{id}``, ``{without_rowid}``), how a new
row's id comes back, and the run lock (an ``flock`` on a file beside the SQLite ledger; a session advisory lock
on PostgreSQL, which the server releases when the session ends, so a killed run never leaves it held). Every
statement elsewhere in this package is written once, with ``?`` placeholders, in SQL both engines read.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import os
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ukg2d365.config import TENANT_PATTERN
from ukg2d365.errors import ConfigError, ExitStatus, Ukg2d365Error

# The ledger's PostgreSQL password, when libpq's own ways (PGPASSWORD, ~/.pgpass) are not used.
PASSWORD_ENV = "UKG2D365_LEDGER_PASSWORD"
# Seconds libpq waits for a connection, and the TCP keepalive that lets the server see a host that vanished
# (power cut, cable) and end its session, which releases that host's run lock (libpq parameter keywords,
# PostgreSQL docs "Connection Strings"). Each can be overridden in the URL's query string.
PG_DEFAULTS = {"connect_timeout": "10", "keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10",
               "keepalives_count": "3", "application_name": "ukg2d365"}
# Namespaces of the advisory lock keys (the first int4 of pg_advisory_lock's two-key form): arbitrary, fixed.
RUN_LOCK_SPACE = 0x75_6B_67_32  # "ukg2"
MIGRATION_LOCK_SPACE = 0x75_6B_67_33


class LedgerError(Ukg2d365Error):
    """The ledger's database did not answer (gone away, locked past its timeout, disk full): the run stops.

    Exit 4: what was in flight is ``sending`` in the ledger and the next run recovers it.
    """

    exit_status = ExitStatus.UNAVAILABLE


def is_url(location: Path | str) -> bool:
    return isinstance(location, str) and location.split(":", 1)[0] in ("postgresql", "postgres")


@functools.lru_cache(maxsize=512)
def _pyformat(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (outside quoted literals), a literal ``%`` doubled."""
    out = []
    quote: str | None = None
    for ch in sql:
        if quote:
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "?":
            out.append("%s")
            continue
        out.append("%%" if ch == "%" else ch)
    return "".join(out)


class Connection:
    """One connection that speaks ``?`` placeholders and turns every driver error into a ``LedgerError``."""

    def __init__(self, raw: Any, backend: Backend) -> None:
        self.raw = raw
        self.backend = backend

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self.backend.execute(self.raw, sql, params)
        except self.backend.driver_errors as exc:
            raise self.backend.error(exc) from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        try:
            return self.backend.executemany(self.raw, sql, rows)
        except self.backend.driver_errors as exc:
            raise self.backend.error(exc) from exc

    def tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A query's rows as plain tuples: cheaper than named rows when a million of them are read."""
        try:
            return self.backend.tuples(self.raw, sql, params)
        except self.backend.driver_errors as exc:
            raise self.backend.error(exc) from exc

    def insert(self, sql: str, params: Sequence[Any]) -> int:
        """Run an INSERT into a table with an ``{id}`` column and return the new row's id."""
        try:
            return self.backend.insert(self.raw, sql, params)
        except self.backend.driver_errors as exc:
            raise self.backend.error(exc) from exc

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.raw.close()


class Backend(ABC):
    """What a database engine needs to say differently; see the module docstring."""

    name = ""
    where = ""  # how messages name the ledger: a path, or a host:port/dbname (never a password)
    path: Path | None = None
    begin_write = "BEGIN"
    ddl: dict[str, str] = {}
    driver_errors: tuple[type[BaseException], ...] = ()

    @abstractmethod
    def open(self) -> Connection:
        """Connect, with the engine's settings; a ``ConfigError`` or ``LedgerError`` when it cannot."""

    def after_migrations(self) -> None:  # noqa: B027 - a hook only SQLite needs
        """Hook for what must follow the schema (file modes of SQLite's side files)."""

    def begin_migration(self, db: Connection) -> None:
        db.execute(self.begin_write)

    def render(self, sql: str) -> str:
        for token, value in self.ddl.items():
            sql = sql.replace("{" + token + "}", value)
        return sql

    def execute(self, raw: Any, sql: str, params: Sequence[Any]) -> Any:
        return raw.execute(sql, params)

    def executemany(self, raw: Any, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        return raw.executemany(sql, rows)

    def tuples(self, raw: Any, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.execute(raw, sql, params).fetchall()]

    @abstractmethod
    def insert(self, raw: Any, sql: str, params: Sequence[Any]) -> int:
        """Run an INSERT and return the new row's id."""

    def error(self, exc: BaseException) -> LedgerError:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return LedgerError(f"{self.where}: {first}")

    @abstractmethod
    def try_lock(self, db: Connection, tenant: str) -> bool:
        """Take the tenant's run lock if it is free; never waits."""

    @abstractmethod
    def unlock(self, db: Connection, tenant: str) -> None:
        """Release the tenant's run lock taken by ``try_lock``."""


# ---------------------------------------------------------------------- SQLite


class SqliteBackend(Backend):
    name = "sqlite"
    begin_write = "BEGIN IMMEDIATE"
    ddl = {"id": "INTEGER PRIMARY KEY", "without_rowid": "WITHOUT ROWID"}
    driver_errors = (sqlite3.Error,)

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = f"ledger {path}"
        self._lock_files: dict[str, int] = {}

    def open(self) -> Connection:
        path = self.path
        assert path is not None
        folder = path.parent
        if not folder.exists():
            raise ConfigError(f"ledger.path {path}: folder {folder} does not exist",
                              hint="create it or fix ledger.path")
        if not folder.is_dir():
            raise ConfigError(f"ledger.path {path}: {folder} is not a folder", hint="fix ledger.path")
        if not os.access(folder, os.W_OK):
            raise ConfigError(f"ledger.path {path}: folder {folder} is not writable")
        if path.is_dir():
            raise ConfigError(f"ledger.path {path} is a folder, not a file", hint="name a file inside it")
        try:
            if not path.exists():
                # Create with 0600 before SQLite opens it: the audit trail names accounts and amounts.
                fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
            else:
                os.chmod(path, 0o600)
        except OSError as exc:
            # os.access trusts the mode bits; a read-only mount or an ACL still says no here.
            raise ConfigError(f"ledger.path {path}: cannot create or open it ({exc.strerror or exc})") from None
        raw = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        raw.row_factory = sqlite3.Row
        db = Connection(raw, self)
        try:
            self._enable_wal(db)
        except sqlite3.Error as exc:
            db.close()
            raise self.error(exc) from exc
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    def tuples(self, raw: Any, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        cursor = raw.cursor()
        cursor.row_factory = None  # the connection's sqlite3.Row, per row, costs a million times over
        return cursor.execute(sql, params).fetchall()  # type: ignore[no-any-return]

    def error(self, exc: BaseException) -> LedgerError:
        return LedgerError(f"{self.where}: {exc}")

    @staticmethod
    def _enable_wal(db: Connection, deadline_seconds: float = 30.0) -> None:
        # Switching to WAL takes an exclusive lock and does not wait on SQLite's busy handler: two processes
        # opening a new ledger at once (cron and a manual run) would otherwise see "database is locked".
        deadline = time.monotonic() + deadline_seconds
        while True:
            try:
                db.raw.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def after_migrations(self) -> None:
        for suffix in ("-wal", "-shm"):
            side = Path(str(self.path) + suffix)
            if side.exists():
                os.chmod(side, 0o600)

    def insert(self, raw: Any, sql: str, params: Sequence[Any]) -> int:
        return int(raw.execute(sql, params).lastrowid or 0)

    def lock_path(self, tenant: str) -> Path:
        """One lock file per tenant beside the ledger file."""
        digest = hashlib.sha256(tenant.encode()).hexdigest()[:12]
        return Path(f"{self.path}.{digest}.lock")

    def try_lock(self, db: Connection, tenant: str) -> bool:
        fd = self._lock_files.get(tenant)
        if fd is None:
            fd = os.open(self.lock_path(tenant), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            return False
        self._lock_files[tenant] = fd
        return True

    def unlock(self, db: Connection, tenant: str) -> None:
        fd = self._lock_files.pop(tenant, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


# ---------------------------------------------------------------------- PostgreSQL


class PgRow:
    """A row read like ``sqlite3.Row``: by position, by column name, and ``dict(row)``."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: tuple[str, ...], values: Sequence[Any]) -> None:
        self._names = names
        self._values = tuple(values)

    def keys(self) -> list[str]:
        return list(self._names)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._values[self._names.index(key)]
        return self._values[key]

    def __iter__(self) -> Any:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _pg_row_factory(cursor: Any) -> Any:
    names = tuple(d.name for d in cursor.description or ())
    return lambda values: PgRow(names, values)


def advisory_key(name: str) -> int:
    """The second int4 of an advisory lock key: a stable hash of ``name`` (Python's hash() is salted)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)


class PostgresUrl:
    """``postgresql://user@host:port/dbname[?param=value]``; a password in it is refused (it would be logged)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ConfigError("ledger.url must start with postgresql://")
        if parts.password is not None:
            raise ConfigError("ledger.url holds a password; URLs end up in logs and process lists",
                              hint=f"remove it from the URL and set {PASSWORD_ENV}, PGPASSWORD or ~/.pgpass")
        self.user = unquote(parts.username) if parts.username else None
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 5432
        self.dbname = unquote(parts.path.lstrip("/")) or None
        self.params = dict(parse_qsl(parts.query))
        self.url = url

    @property
    def display(self) -> str:
        """How messages name the database: host, port and name, never a password."""
        host = self.params.get("host", self.host)
        return f"{host}:{self.port}/{self.dbname or self.user or ''}"

    def connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(PG_DEFAULTS)
        kwargs.update(self.params)
        password = os.environ.get(PASSWORD_ENV)
        if password:
            kwargs["password"] = password
        return kwargs


class PostgresBackend(Backend):
    name = "postgresql"
    ddl = {"id": "INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", "without_rowid": ""}

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = PostgresUrl(url)
        self.where = f"ledger PostgreSQL at {self.url.display}"
        self.driver_errors = (psycopg.Error,)
        self._psycopg = psycopg

    def open(self) -> Connection:
        try:
            raw = self._psycopg.connect(self.url.url, autocommit=True, row_factory=_pg_row_factory,
                                        **self.url.connect_kwargs())
        except self._psycopg.Error as exc:
            raise self.error(exc) from None
        return Connection(raw, self)

    def error(self, exc: BaseException) -> LedgerError:
        text = " ".join(str(exc).split())
        password = os.environ.get(PASSWORD_ENV)
        if password:
            text = text.replace(password, "***")
        if isinstance(exc, self._psycopg.OperationalError):
            return LedgerError(f"{self.where} is unavailable: {text[:300]}",
                               hint="what was in flight is recovered by the next run, on any host")
        return LedgerError(f"{self.where}: {text[:300]}")

    def begin_migration(self, db: Connection) -> None:
        # PostgreSQL's BEGIN takes no lock: a transaction-scoped advisory lock makes two hosts opening a new
        # database apply each migration once (and not race on CREATE TABLE IF NOT EXISTS).
        db.execute("BEGIN")
        db.execute("SELECT pg_advisory_xact_lock(?, 0)", (MIGRATION_LOCK_SPACE,))

    def execute(self, raw: Any, sql: str, params: Sequence[Any]) -> Any:
        # Without parameters psycopg sends the text as it is: no placeholder to convert, no % to double.
        return raw.execute(_pyformat(sql), tuple(params)) if params else raw.execute(sql)

    def executemany(self, raw: Any, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        cur = raw.cursor()
        batch = [tuple(r) for r in rows]
        if batch:
            cur.executemany(_pyformat(sql), batch)
        return cur

    def insert(self, raw: Any, sql: str, params: Sequence[Any]) -> int:
        return int(raw.execute(_pyformat(sql + " RETURNING id"), tuple(params)).fetchone()[0])

    def try_lock(self, db: Connection, tenant: str) -> bool:
        row = db.execute("SELECT pg_try_advisory_lock(?, ?)", (RUN_LOCK_SPACE, advisory_key(tenant)))
        return bool(row.fetchone()[0])

    def unlock(self, db: Connection, tenant: str) -> None:
        db.execute("SELECT pg_advisory_unlock(?, ?)", (RUN_LOCK_SPACE, advisory_key(tenant)))


def backend_for(location: Path | str) -> Backend:
    """SQLite for a path, PostgreSQL for a ``postgresql://`` URL."""
    if is_url(location):
        return PostgresBackend(str(location))
    return SqliteBackend(Path(location))


def check_tenant(tenant: str) -> str:
    if not TENANT_PATTERN.match(tenant):
        raise ConfigError(f"ledger.tenant {tenant!r}: use 1 to 100 letters, digits and . _ : / @ + -, "
                          "starting with a letter or digit")
    return tenant
