"""The local SQLite ledger: dedupe keys, posting states, stored plans, audit trail, run lock.

A posting (one pay run -> one D365 general journal) moves through these states::

    planned ──send header──▶ sending ──all lines confirmed──▶ posted
       │                       │  ▲
       │                       │  └── recovery (next run / replay): ask D365 by marker, complete
       │                       ▼
       └──── refused ─────▶ failed ── replay / rerun ──▶ sending

* ``planned``: the intent (key, plan lines, plan hash) is committed; nothing was sent for it.
* ``sending``: at least one write may have reached D365. A posting found in ``sending`` by a new
  process is *uncertain* (the previous process died or lost its connection): it is never sent
  blindly again; recovery first reads D365's journal by the marker in its Description.
* ``posted``: D365 holds every planned line, verified by reading the journal's totals back.
* ``failed``: D365 refused a write, or recovery could not finish; ``last_error`` says why.
  Replay and the next run go through recovery too, so a partial journal is completed or rebuilt,
  never duplicated.

The ledger knows nothing about HTTP: flows call it before and after each remote write.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from ukg2d365.errors import ConfigError, LockBusy

PLANNED, SENDING, POSTED, FAILED = "planned", "sending", "posted", "failed"
STATES = (PLANNED, SENDING, POSTED, FAILED)

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
]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class PlannedLine:
    line_number: int
    account: str
    debit: Decimal
    credit: Decimal
    text: str


@dataclass
class Posting:
    key: str
    company: str
    pay_group: str
    period_end: str
    run_id: str
    employee: str | None
    marker: str
    description: str
    status: str
    journal_batch_number: str | None
    plan_hash: str
    source_hash: str
    source_lines: int
    line_count: int
    debit_total: Decimal
    credit_total: Decimal
    trans_date: str
    attempts: int
    last_error: str | None
    created_at: str
    updated_at: str
    posted_at: str | None
    last_run: int | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Posting:
        data = dict(row)
        data["debit_total"] = Decimal(data["debit_total"])
        data["credit_total"] = Decimal(data["credit_total"])
        return cls(**data)


class Ledger:
    """One SQLite file; safe to share between the threads of one run (a lock serializes writes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._lock_file: int | None = None
        self.run_id: int | None = None
        folder = path.parent
        if not folder.exists():
            raise ConfigError(
                f"ledger.path {path}: folder {folder} does not exist", hint="create it or fix ledger.path"
            )
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
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.row_factory = sqlite3.Row
            self._enable_wal()
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"ledger.path {path}: not a usable SQLite ledger ({exc})") from None
        for suffix in ("-wal", "-shm"):
            side = Path(str(path) + suffix)
            if side.exists():
                os.chmod(side, 0o600)

    # ------------------------------------------------------------------ plumbing

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
        """Apply missing migrations, each in its own write transaction.

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

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self.release_lock()

    # ------------------------------------------------------------------ run lock

    def acquire_lock(self, timeout_seconds: float = 0, poll: float = 0.2) -> None:
        """Exclusive lock for writing runs, so cron and a manual run never post at the same time."""
        lock_path = Path(str(self.path) + ".lock")
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    holder = ""
                    with contextlib.suppress(OSError):
                        holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                    os.close(fd)
                    raise LockBusy(
                        f"another ukg2d365 run holds the ledger lock {lock_path}" + (f" ({holder})" if holder else ""),
                        hint="it finishes on its own; set ledger.lock_timeout_seconds to wait for it",
                    ) from None
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {now_iso()}".encode(), 0)
        self._lock_file = fd

    def release_lock(self) -> None:
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
                os.close(self._lock_file)
            self._lock_file = None

    # ------------------------------------------------------------------ runs and audit

    def start_run(self, command: str, args: dict[str, Any]) -> int:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO runs (command, args, user, host, pid, started_at) VALUES (?, ?, ?, ?, ?, ?)",
                (command, json.dumps(args, default=str, sort_keys=True), user, socket.gethostname(), os.getpid(),
                 now_iso()),
            )
        self.run_id = int(cur.lastrowid or 0)
        return self.run_id

    def finish_run(self, exit_code: int, summary: dict[str, Any]) -> None:
        if self.run_id is None:
            return
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, exit_code = ?, summary = ? WHERE id = ?",
                (now_iso(), exit_code, json.dumps(summary, default=str, sort_keys=True), self.run_id),
            )

    def audit(self, kind: str, detail: dict[str, Any], posting_key: str | None = None) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO audit_events (at, run, posting_key, kind, detail) VALUES (?, ?, ?, ?, ?)",
                (now_iso(), self.run_id, posting_key, kind, json.dumps(detail, default=str, sort_keys=True)),
            )

    def audit_trail(self, posting_key: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT a.id, a.at, a.kind, a.detail, a.run, r.user, r.host, r.command FROM audit_events a "
            "LEFT JOIN runs r ON r.id = a.run WHERE a.posting_key = ? ORDER BY a.id",
            (posting_key,),
        ).fetchall()
        return [dict(row) | {"detail": json.loads(row["detail"])} for row in rows]

    def recent_runs(self, limit: int = 10) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [dict(row) for row in rows]

    # ------------------------------------------------------------------ postings

    def get_posting(self, key: str) -> Posting | None:
        row = self._db.execute("SELECT * FROM postings WHERE key = ?", (key,)).fetchone()
        return Posting.from_row(row) if row else None

    def find_postings(self, *, status: str | None = None, limit: int | None = None) -> list[Posting]:
        sql = "SELECT * FROM postings"
        args: list[Any] = []
        if status:
            sql += " WHERE status = ?"
            args.append(status)
        sql += " ORDER BY updated_at DESC"
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        return [Posting.from_row(r) for r in self._db.execute(sql, args).fetchall()]

    def period_statuses(self, pay_group: str, period_end: str) -> list[str]:
        rows = self._db.execute(
            "SELECT status FROM postings WHERE pay_group = ? AND period_end = ?", (pay_group, period_end)
        )
        return [r[0] for r in rows]

    def posted_keys(self, keys: Iterable[str]) -> set[str]:
        keys = list(keys)
        found: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                r[0]
                for r in self._db.execute(
                    f"SELECT key FROM postings WHERE status = 'posted' AND key IN ({marks})", chunk
                )
            )
        return found

    def save_plan(self, posting: Posting, lines: Iterable[PlannedLine]) -> None:
        """Write-ahead: the intent and its lines are committed before any request is sent.

        A posting already posted is never replanned; one that is planned/failed/sending gets the new plan
        (recovery compares it with what D365 holds before sending anything).
        """
        with self.transaction() as db:
            row = db.execute("SELECT status FROM postings WHERE key = ?", (posting.key,)).fetchone()
            if row and row["status"] == POSTED:
                raise ValueError(f"posting {posting.key} is already posted")
            values = (
                posting.company, posting.pay_group, posting.period_end, posting.run_id, posting.employee,
                posting.marker, posting.description, posting.plan_hash, posting.source_hash, posting.source_lines,
                posting.line_count, str(posting.debit_total), str(posting.credit_total), posting.trans_date,
            )
            stamp = now_iso()
            if row is None:
                db.execute(
                    "INSERT INTO postings (company, pay_group, period_end, run_id, employee, marker, description, "
                    "plan_hash, source_hash, source_lines, line_count, debit_total, credit_total, trans_date, "
                    "key, status, created_at, updated_at, last_run) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'planned', ?, ?, ?)",
                    (*values, posting.key, stamp, stamp, self.run_id),
                )
            else:
                db.execute(
                    "UPDATE postings SET company=?, pay_group=?, period_end=?, run_id=?, employee=?, marker=?, "
                    "description=?, plan_hash=?, source_hash=?, source_lines=?, line_count=?, debit_total=?, "
                    "credit_total=?, trans_date=?, updated_at=?, last_run=? WHERE key=?",
                    (*values, stamp, self.run_id, posting.key),
                )
                db.execute("DELETE FROM posting_lines WHERE posting_key = ?", (posting.key,))
            db.executemany(
                "INSERT INTO posting_lines (posting_key, line_number, account, debit, credit, text) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                ((posting.key, ln.line_number, ln.account, str(ln.debit), str(ln.credit), ln.text) for ln in lines),
            )

    def plan_lines(self, key: str) -> list[PlannedLine]:
        rows = self._db.execute(
            "SELECT line_number, account, debit, credit, text FROM posting_lines WHERE posting_key = ? "
            "ORDER BY line_number",
            (key,),
        )
        return [PlannedLine(r[0], r[1], Decimal(r[2]), Decimal(r[3]), r[4]) for r in rows]

    def set_status(
        self,
        key: str,
        status: str,
        *,
        journal_batch_number: str | None = None,
        error: str | None = None,
        count_attempt: bool = False,
    ) -> None:
        if status not in STATES:
            raise ValueError(status)
        stamp = now_iso()
        with self.transaction() as db:
            db.execute(
                "UPDATE postings SET status = ?, updated_at = ?, last_run = ?, "
                "journal_batch_number = COALESCE(?, journal_batch_number), "
                "last_error = CASE WHEN ? = 'posted' THEN NULL ELSE COALESCE(?, last_error) END, "
                "attempts = attempts + ?, posted_at = CASE WHEN ? = 'posted' THEN ? ELSE posted_at END "
                "WHERE key = ?",
                (status, stamp, self.run_id, journal_batch_number, status, error, int(count_attempt), status, stamp,
                 key),
            )
            db.execute(
                "INSERT INTO audit_events (at, run, posting_key, kind, detail) VALUES (?, ?, ?, 'state', ?)",
                (stamp, self.run_id, key, json.dumps(
                    {"status": status, "journal_batch_number": journal_batch_number, "error": error},
                    sort_keys=True)),
            )

    def forget_journal(self, key: str) -> None:
        """The journal this posting pointed at is gone (deleted to be rebuilt)."""
        with self.transaction() as db:
            db.execute("UPDATE postings SET journal_batch_number = NULL, updated_at = ? WHERE key = ?",
                       (now_iso(), key))

    def counts_by_status(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self._db.execute("SELECT status, COUNT(*) FROM postings GROUP BY status")}

    # ------------------------------------------------------------------ reference data cache

    def known_values(self, kind: str, name: str) -> set[str]:
        rows = self._db.execute("SELECT value FROM reference_values WHERE kind = ? AND name = ?", (kind, name))
        return {r[0] for r in rows}

    def remember_values(self, kind: str, name: str, values: Iterable[str]) -> None:
        stamp = now_iso()
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO reference_values (kind, name, value, seen_at) VALUES (?, ?, ?, ?)",
                ((kind, name, v, stamp) for v in values),
            )

    def forget_values(self, kind: str, name: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM reference_values WHERE kind = ? AND name = ?", (kind, name))

    def get_setting(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_setting(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))


def content_hash(items: Iterable[Any]) -> str:
    """Stable hash of JSON-able items (used for plan and source hashes in the audit trail)."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps(item, default=str, sort_keys=True, separators=(",", ":")).encode())
        digest.update(b"\n")
    return digest.hexdigest()
