"""The ledger's schema and its store: the migrations, the connection, the transactions, the tenant.

Each migration is applied together with the row that records it, in one write transaction. sqlite-utils
applies a migration and then inserts its record (simonw/sqlite-utils, ``sqlite_utils/migrations.py``,
``Migrations.apply``); here both sit inside one write transaction (``BEGIN IMMEDIATE`` on SQLite, a
transaction-scoped advisory lock on PostgreSQL), so a crash between them cannot leave a table without its
record, and two processes opening a new ledger at once apply each migration only once.

The migrations are one list for both engines (``backends.py`` fills the DDL words they leave open); the
statements of ``postings.py`` and ``tables.py`` are SQL both engines read (``ON CONFLICT`` upserts, ``?``
placeholders). Every row belongs to a tenant (``ledger.tenant``, migration 4), and every statement names it,
so many tenants share one database safely.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

from ukg2d365.errors import ConfigError
from ukg2d365.ledger.backends import Backend, Connection, LedgerError, check_tenant

__all__ = ["IN_CHUNK", "LedgerError", "MIGRATIONS", "Store", "chunked", "now_iso"]

# The tenant of a ledger opened without a config (tests, `status --ledger` on an empty file).
DEFAULT_TENANT = "default"
# The first schema whose rows carry a tenant.
TENANT_SCHEMA = 4

# Bound parameters per ``IN (...)``: well under SQLite's SQLITE_MAX_VARIABLE_NUMBER (999 before 3.32).
IN_CHUNK = 500

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "postings, plans, audit trail, runs",
        """
        CREATE TABLE runs (
            id {id},
            command TEXT NOT NULL,
            args TEXT NOT NULL,
            "user" TEXT NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            exit_code INTEGER,
            summary TEXT
        );
        CREATE TABLE postings (
            key TEXT PRIMARY KEY,
            company TEXT NOT NULL,
            pay_group TEXT NOT NULL,
            period_end TEXT NOT NULL,
            run_id TEXT NOT NULL,
            employee TEXT,
            marker TEXT NOT NULL UNIQUE,
            description TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('planned', 'sending', 'posted', 'failed')),
            journal_batch_number TEXT,
            plan_hash TEXT NOT NULL,
            source_hash TEXT NOT NULL,
            source_lines INTEGER NOT NULL,
            line_count INTEGER NOT NULL,
            debit_total TEXT NOT NULL,
            credit_total TEXT NOT NULL,
            trans_date TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            posted_at TEXT,
            last_run INTEGER REFERENCES runs(id)
        );
        CREATE INDEX postings_by_status ON postings(status, updated_at);
        CREATE INDEX postings_by_period ON postings(pay_group, period_end);
        CREATE TABLE posting_lines (
            posting_key TEXT NOT NULL REFERENCES postings(key) ON DELETE CASCADE,
            line_number INTEGER NOT NULL,
            account TEXT NOT NULL,
            debit TEXT NOT NULL,
            credit TEXT NOT NULL,
            text TEXT NOT NULL,
            PRIMARY KEY (posting_key, line_number)
        ) {without_rowid};
        CREATE TABLE audit_events (
            id {id},
            at TEXT NOT NULL,
            run INTEGER,
            posting_key TEXT,
            kind TEXT NOT NULL,
            detail TEXT NOT NULL
        );
        CREATE INDEX audit_by_key ON audit_events(posting_key, id);
        CREATE INDEX audit_by_run ON audit_events(run, id);
        CREATE TABLE reference_values (
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            value TEXT NOT NULL,
            seen_at TEXT NOT NULL,
            PRIMARY KEY (kind, name, value)
        ) {without_rowid};
        CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """,
    ),
    (
        2,
        "employee sync hashes",
        """
        CREATE TABLE IF NOT EXISTS employee_sync (
            personnel_number TEXT PRIMARY KEY,
            payload_hash TEXT NOT NULL,
            sent_at TEXT NOT NULL,
            employment_id TEXT
        );
        """,
    ),
    (
        3,
        "webhook events",
        """
        CREATE TABLE IF NOT EXISTS webhook_events (
            event_id TEXT PRIMARY KEY,
            received_at TEXT NOT NULL,
            event_time TEXT,
            event_type TEXT NOT NULL,
            operation TEXT,
            tenant TEXT,
            company TEXT,
            employee TEXT,
            pay_group TEXT,
            status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'ignored')),
            detail TEXT,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS webhook_events_by_status ON webhook_events(status, received_at);
        """,
    ),
    (
        4,
        "tenants: every row scoped by ledger.tenant; who holds each tenant's run lock",
        # Existing rows get the tenant of the config that opens the ledger first ({tenant}). A key that
        # gains the tenant needs a new table (SQLite cannot change a primary key in place): each is copied,
        # the old dropped (a child before its parent, so no cascade fires), the new renamed. SQLite rewrites
        # the renamed parent in its child's REFERENCES (ALTER TABLE RENAME, since 3.26).
        """
        ALTER TABLE runs ADD COLUMN tenant TEXT NOT NULL DEFAULT {tenant};
        CREATE INDEX runs_by_tenant ON runs(tenant, id);
        ALTER TABLE audit_events ADD COLUMN tenant TEXT NOT NULL DEFAULT {tenant};
        DROP INDEX audit_by_key;
        CREATE INDEX audit_by_key ON audit_events(tenant, posting_key, id);
        CREATE TABLE postings_new (
            tenant TEXT NOT NULL,
            key TEXT NOT NULL,
            company TEXT NOT NULL,
            pay_group TEXT NOT NULL,
            period_end TEXT NOT NULL,
            run_id TEXT NOT NULL,
            employee TEXT,
            marker TEXT NOT NULL,
            description TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('planned', 'sending', 'posted', 'failed')),
            journal_batch_number TEXT,
            plan_hash TEXT NOT NULL,
            source_hash TEXT NOT NULL,
            source_lines INTEGER NOT NULL,
            line_count INTEGER NOT NULL,
            debit_total TEXT NOT NULL,
            credit_total TEXT NOT NULL,
            trans_date TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            posted_at TEXT,
            last_run INTEGER REFERENCES runs(id),
            PRIMARY KEY (tenant, key),
            UNIQUE (tenant, marker)
        );
        INSERT INTO postings_new (tenant, key, company, pay_group, period_end, run_id, employee, marker,
            description, status, journal_batch_number, plan_hash, source_hash, source_lines, line_count,
            debit_total, credit_total, trans_date, attempts, last_error, created_at, updated_at, posted_at, last_run)
        SELECT {tenant}, key, company, pay_group, period_end, run_id, employee, marker, description, status,
            journal_batch_number, plan_hash, source_hash, source_lines, line_count, debit_total, credit_total,
            trans_date, attempts, last_error, created_at, updated_at, posted_at, last_run FROM postings;
        CREATE TABLE posting_lines_new (
            tenant TEXT NOT NULL,
            posting_key TEXT NOT NULL,
            line_number INTEGER NOT NULL,
            account TEXT NOT NULL,
            debit TEXT NOT NULL,
            credit TEXT NOT NULL,
            text TEXT NOT NULL,
            PRIMARY KEY (tenant, posting_key, line_number),
            FOREIGN KEY (tenant, posting_key) REFERENCES postings_new(tenant, key) ON DELETE CASCADE
        ) {without_rowid};
        INSERT INTO posting_lines_new (tenant, posting_key, line_number, account, debit, credit, text)
        SELECT {tenant}, posting_key, line_number, account, debit, credit, text FROM posting_lines;
        DROP TABLE posting_lines;
        DROP TABLE postings;
        ALTER TABLE postings_new RENAME TO postings;
        ALTER TABLE posting_lines_new RENAME TO posting_lines;
        CREATE INDEX postings_by_status ON postings(tenant, status, updated_at);
        CREATE INDEX postings_by_period ON postings(tenant, pay_group, period_end);
        CREATE TABLE reference_values_new (
            tenant TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            value TEXT NOT NULL,
            seen_at TEXT NOT NULL,
            PRIMARY KEY (tenant, kind, name, value)
        ) {without_rowid};
        INSERT INTO reference_values_new (tenant, kind, name, value, seen_at)
        SELECT {tenant}, kind, name, value, seen_at FROM reference_values;
        DROP TABLE reference_values;
        ALTER TABLE reference_values_new RENAME TO reference_values;
        CREATE TABLE settings_new (
            tenant TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (tenant, key)
        );
        INSERT INTO settings_new (tenant, key, value) SELECT {tenant}, key, value FROM settings;
        DROP TABLE settings;
        ALTER TABLE settings_new RENAME TO settings;
        CREATE TABLE employee_sync_new (
            tenant TEXT NOT NULL,
            personnel_number TEXT NOT NULL,
            payload_hash TEXT NOT NULL,
            sent_at TEXT NOT NULL,
            employment_id TEXT,
            PRIMARY KEY (tenant, personnel_number)
        );
        INSERT INTO employee_sync_new (tenant, personnel_number, payload_hash, sent_at, employment_id)
        SELECT {tenant}, personnel_number, payload_hash, sent_at, employment_id FROM employee_sync;
        DROP TABLE employee_sync;
        ALTER TABLE employee_sync_new RENAME TO employee_sync;
        CREATE TABLE webhook_events_new (
            tenant TEXT NOT NULL,
            event_id TEXT NOT NULL,
            received_at TEXT NOT NULL,
            event_time TEXT,
            event_type TEXT NOT NULL,
            operation TEXT,
            event_tenant TEXT,
            company TEXT,
            employee TEXT,
            pay_group TEXT,
            status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'ignored')),
            detail TEXT,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (tenant, event_id)
        );
        INSERT INTO webhook_events_new (tenant, event_id, received_at, event_time, event_type, operation,
            event_tenant, company, employee, pay_group, status, detail, updated_at)
        SELECT {tenant}, event_id, received_at, event_time, event_type, operation, tenant, company, employee,
            pay_group, status, detail, updated_at FROM webhook_events;
        DROP TABLE webhook_events;
        ALTER TABLE webhook_events_new RENAME TO webhook_events;
        CREATE INDEX webhook_events_by_status ON webhook_events(tenant, status, received_at);
        CREATE TABLE run_locks (
            tenant TEXT PRIMARY KEY,
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            since TEXT NOT NULL
        );
        """,
    ),
    (
        5,
        "postings: legal entity, kind (pay run or accrual), document and reverse dates",
        # legal_entity NULL (a posting written before this migration) is the configured d365.legal_entity:
        # Ledger.adopt_legal_entity fills it in when a run opens the ledger with a config.
        """
        ALTER TABLE postings ADD COLUMN legal_entity TEXT;
        ALTER TABLE postings ADD COLUMN kind TEXT NOT NULL DEFAULT 'pay_run';
        ALTER TABLE postings ADD COLUMN document_date TEXT;
        ALTER TABLE postings ADD COLUMN reverse_date TEXT;
        """,
    ),
    (
        6,
        "refusals: refused runs by posting key, open until posted or skipped",
        # A refused run has no posting (nothing was planned for D365); remembered here, its period stays due
        # until it posts or an operator skips it (ledger/refusals.py).
        """
        CREATE TABLE refusals (
            tenant TEXT NOT NULL,
            key TEXT NOT NULL,
            kind TEXT NOT NULL,
            company TEXT NOT NULL,
            pay_group TEXT NOT NULL,
            period_end TEXT NOT NULL,
            run_id TEXT NOT NULL,
            legal_entity TEXT,
            problems TEXT NOT NULL,
            first_at TEXT NOT NULL,
            last_at TEXT NOT NULL,
            times INTEGER NOT NULL DEFAULT 1,
            last_run INTEGER,
            skipped_at TEXT,
            skip_reason TEXT,
            skip_run INTEGER,
            PRIMARY KEY (tenant, key)
        );
        CREATE INDEX refusals_by_period ON refusals(tenant, pay_group, period_end);
        """,
    ),
    (
        7,
        "DMF route: the route a posting took and the execution id of its import",
        """
        ALTER TABLE postings ADD COLUMN route TEXT;
        ALTER TABLE postings ADD COLUMN execution_id TEXT;
        """,
    ),
    (
        8,
        "plans stored in blocks of lines, each with its SHA-256",
        # A row per block of whole line records (journal.py's line_record: account, debit, credit, text and UKG
        # account, unit-separated; numbered from first_line). Plans stored before stay in posting_lines and are
        # read from there; a plan stored again (a replan) moves here.
        """
        CREATE TABLE plan_chunks (
            tenant TEXT NOT NULL,
            posting_key TEXT NOT NULL,
            first_line INTEGER NOT NULL,
            line_count INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            records TEXT NOT NULL,
            PRIMARY KEY (tenant, posting_key, first_line),
            FOREIGN KEY (tenant, posting_key) REFERENCES postings(tenant, key) ON DELETE CASCADE
        );
        """,
    ),
]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def chunked(values: Sequence[Any]) -> Iterator[tuple[list[Any], str]]:
    """``values`` in slices of ``IN_CHUNK``, each with the ``?,?,...`` placeholders of its ``IN (...)``."""
    for i in range(0, len(values), IN_CHUNK):
        chunk = list(values[i : i + IN_CHUNK])
        yield chunk, ",".join("?" * len(chunk))


class Store:
    """One connection at the current schema, shared by the threads of one run, scoped to one tenant.

    A re-entrant lock serializes write transactions; ``run_id`` is the run this process records (see
    ``Ledger.start_run``), stamped on the audit events and postings it writes; ``tenant`` is on every row.
    """

    def __init__(self, backend: Backend, tenant: str | None) -> None:
        self.backend = backend
        self.path = backend.path
        self.run_id: int | None = None
        self._lock = threading.RLock()
        self._db: Connection = backend.open()
        try:
            self.tenant = self._migrate(None if tenant is None else check_tenant(tenant))
            backend.after_migrations()
        except BaseException:
            self._db.close()
            raise

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self._lock:
            self._db.execute(self.backend.begin_write)
            try:
                yield self._db
            except BaseException:
                with contextlib.suppress(LedgerError):  # a connection that is gone has nothing to roll back
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextlib.contextmanager
    def _migration(self) -> Iterator[Connection]:
        with self._lock:
            self.backend.begin_migration(self._db)
            try:
                yield self._db
            except BaseException:
                with contextlib.suppress(LedgerError):
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _migrate(self, tenant: str | None) -> str:
        """Apply missing migrations, each with its record in its own write transaction; return the tenant.

        Two processes may open a new ledger at the same moment (cron and a manual run): the applied set is
        re-read inside each write transaction, so only one of them applies a migration.
        """
        with self._migration() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            newest = int(db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0])
            has_runs = newest >= 1 and db.execute("SELECT 1 FROM runs LIMIT 1").fetchone() is not None
        if newest > MIGRATIONS[-1][0]:
            raise ConfigError(
                f"{self.backend.where} was written by a newer ukg2d365 (schema {newest}); upgrade ukg2d365"
            )
        if tenant is None and newest < TENANT_SCHEMA and has_runs:
            raise ConfigError(
                f"{self.backend.where} predates tenants (schema {newest}): its rows must be labelled with the "
                "tenant of their config", hint="run any command once with that config, e.g. `ukg2d365 -c CONFIG "
                "status`")
        fill = tenant or DEFAULT_TENANT
        for version, name, sql in MIGRATIONS:
            if version <= newest:
                continue
            with self._migration() as db:
                if db.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone():
                    continue  # another process applied it while we waited for the write lock
                rendered = self.backend.render(sql).replace("{tenant}", f"'{fill}'")
                for statement in (s.strip() for s in rendered.split(";")):
                    if statement:
                        db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, now_iso()),
                )
        if tenant is None and MIGRATIONS[-1][0] >= TENANT_SCHEMA:
            return self._only_tenant()
        return tenant or DEFAULT_TENANT

    def _only_tenant(self) -> str:
        """The tenant of a ledger opened without one: the only tenant it holds (a SQLite file of one config)."""
        rows = self._db.execute("SELECT DISTINCT tenant FROM runs ORDER BY tenant LIMIT 3").fetchall()
        if len(rows) > 1:
            raise ConfigError(f"{self.backend.where} holds several tenants ({', '.join(r[0] for r in rows)}...)",
                              hint="give the config of one with -c, or use `status --tenants DIR`")
        return str(rows[0][0]) if rows else DEFAULT_TENANT

    def schema_version(self) -> int:
        row = self._db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def _insert_audit(self, db: Connection, kind: str, detail: dict[str, Any], posting_key: str | None,
                      at: str | None = None) -> None:
        """The one INSERT into the audit trail: ``Ledger.audit`` and a posting's state change both use it."""
        db.execute(
            "INSERT INTO audit_events (tenant, at, run, posting_key, kind, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (self.tenant, at or now_iso(), self.run_id, posting_key, kind,
             json.dumps(detail, default=str, sort_keys=True)),
        )

    def _close_connection(self) -> None:
        with self._lock:
            self._db.close()
