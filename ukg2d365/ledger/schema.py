"""The ledger's schema and its connection: the migrations, and the one place that speaks SQLite's plumbing.

Each migration is applied together with the row that records it, in one write transaction. sqlite-utils
applies a migration and then inserts its record (simonw/sqlite-utils, ``sqlite_utils/migrations.py``,
``Migrations.apply``); here both sit inside one ``BEGIN IMMEDIATE``, so a crash between them cannot leave a
table without its record, and two processes opening a new ledger at once apply each migration only once.

The statements of ``postings.py`` and ``tables.py`` keep to SQL that PostgreSQL reads too (``ON CONFLICT``
rather than ``INSERT OR REPLACE``); what is SQLite's own (the PRAGMAs, WAL, ``BEGIN IMMEDIATE``, the
``WITHOUT ROWID`` tables) lives in this module.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ukg2d365.errors import ConfigError

# What a ledger statement raises when the database cannot answer (locked past its timeout, disk full, I/O):
# callers that must survive it (the webhook server) catch this name, not the driver's.
LedgerError = sqlite3.Error

# Bound parameters per ``IN (...)``: well under SQLite's SQLITE_MAX_VARIABLE_NUMBER (999 before 3.32).
IN_CHUNK = 500

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "postings, plans, audit trail, runs",
        """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            command TEXT NOT NULL,
            args TEXT NOT NULL,
            user TEXT NOT NULL,
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
        ) WITHOUT ROWID;
        CREATE TABLE audit_events (
            id INTEGER PRIMARY KEY,
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
        ) WITHOUT ROWID;
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
]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def chunked(values: Sequence[Any]) -> Iterator[tuple[list[Any], str]]:
    """``values`` in slices of ``IN_CHUNK``, each with the ``?,?,...`` placeholders of its ``IN (...)``."""
    for i in range(0, len(values), IN_CHUNK):
        chunk = list(values[i : i + IN_CHUNK])
        yield chunk, ",".join("?" * len(chunk))


class Store:
    """One SQLite connection at the current schema, shared by the threads of one run.

    A re-entrant lock serializes write transactions; ``run_id`` is the run this process records (see
    ``Ledger.start_run``), stamped on the audit events and postings it writes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.run_id: int | None = None
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._enable_wal()
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def _enable_wal(self, deadline_seconds: float = 30.0) -> None:
        # Switching to WAL takes an exclusive lock and does not wait on SQLite's busy handler: two processes
        # opening a new ledger at once (cron and a manual run) would otherwise see "database is locked".
        deadline = time.monotonic() + deadline_seconds
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        """Apply missing migrations, each with its record in its own write transaction.

        Two processes may open a new ledger at the same moment (cron and a manual run): the applied set is
        re-read inside each write transaction, so only one of them applies a migration.
        """
        with self.transaction() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            newest = int(db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0])
        if newest > MIGRATIONS[-1][0]:
            raise ConfigError(
                f"ledger {self.path} was written by a newer ukg2d365 (schema {newest}); upgrade ukg2d365"
            )
        for version, name, sql in MIGRATIONS:
            if version <= newest:
                continue
            with self.transaction() as db:
                if db.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone():
                    continue  # another process applied it while we waited for the write lock
                for statement in (s.strip() for s in sql.split(";")):
                    if statement:
                        db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, now_iso()),
                )

    def schema_version(self) -> int:
        row = self._db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def _insert_audit(self, db: sqlite3.Connection, kind: str, detail: dict[str, Any], posting_key: str | None,
                      at: str | None = None) -> None:
        """The one INSERT into the audit trail: ``Ledger.audit`` and a posting's state change both use it."""
        db.execute(
            "INSERT INTO audit_events (at, run, posting_key, kind, detail) VALUES (?, ?, ?, ?, ?)",
            (at or now_iso(), self.run_id, posting_key, kind, json.dumps(detail, default=str, sort_keys=True)),
        )

    def _close_connection(self) -> None:
        with self._lock:
            self._db.close()
