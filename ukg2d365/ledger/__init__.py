"""The ledger (a SQLite file or a shared PostgreSQL database): dedupe keys, posting states, stored plans, audit trail,
run lock.

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

A run refused before planning (unbalanced, unmapped, ...) has no posting: it is kept in ``refusals`` by its
posting key, open until the key is posted or an operator skips it, and its period is not done until then.

The ledger knows nothing about HTTP: flows call it before and after each remote write. Every SQL statement
of the project lives in this package: ``backends.py`` (what SQLite and PostgreSQL say differently: connection,
placeholders, DDL words, the run lock), ``schema.py`` (migrations, transactions, the tenant), ``postings.py``
(the state machine above), ``refusals.py`` (refused runs, open until posted or skipped), ``tables.py`` (employee
sync, webhook events, reference cache, settings); this module opens the ledger and holds the run lock, the runs
and the audit trail.

One ledger, two homes: a SQLite file (``ledger.path``, the embedded default for one cron host) or a
PostgreSQL database (``ledger.url``) shared by several hosts and tenants. Every row carries its tenant
(``ledger.tenant``), and the run lock is one per tenant: two hosts never run one tenant at once, while
different tenants run in parallel.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ukg2d365.errors import ConfigError, LockBusy
from ukg2d365.journal import PlannedLine
from ukg2d365.ledger.backends import PASSWORD_ENV, LedgerError, backend_for, is_url
from ukg2d365.ledger.postings import FAILED, PLANNED, POSTED, SENDING, STATES, Posting, PostingStore
from ukg2d365.ledger.refusals import REFUSED, SKIPPED, Refusal, RefusalStore
from ukg2d365.ledger.schema import DEFAULT_TENANT, MIGRATIONS, now_iso
from ukg2d365.ledger.tables import SyncedEmployee, TableStore

__all__ = [
    "DEFAULT_TENANT", "FAILED", "MIGRATIONS", "PASSWORD_ENV", "PLANNED", "LedgerError", "POSTED", "REFUSED",
    "SENDING", "SKIPPED", "STATES", "Ledger", "PlannedLine", "Posting", "Refusal", "SyncedEmployee", "content_hash",
    "is_url", "now_iso",
]


class Ledger(PostingStore, RefusalStore, TableStore):
    """One tenant's view of a ledger; safe to share between the threads of one run (writes are serialized).

    ``location`` is a SQLite file's path or a ``postgresql://user@host:port/dbname`` URL (the password comes
    from ``UKG2D365_LEDGER_PASSWORD`` or libpq's ``PGPASSWORD`` / ``~/.pgpass``). ``tenant`` scopes every row
    read and written; without one, a ledger holding a single tenant is read as that tenant.
    """

    def __init__(self, location: Path | str, tenant: str | None = None) -> None:
        """Open (or create: a SQLite file with mode 0600) the ledger and bring it to the current schema."""
        backend = backend_for(location)
        self._locked = False
        try:
            super().__init__(backend, tenant)
        except LedgerError as exc:
            if backend.name == "sqlite":
                reason = exc.__cause__ or exc
                raise ConfigError(f"ledger.path {location}: not a usable SQLite ledger ({reason})") from None
            raise

    @property
    def where(self) -> str:
        """How messages name this ledger (a path, or PostgreSQL's host:port/dbname), never with a password."""
        return self.backend.where

    def close(self) -> None:
        self.release_lock()
        self._close_connection()

    # ------------------------------------------------------------------ run lock

    def acquire_lock(self, timeout_seconds: float = 0, poll: float = 0.2) -> None:
        """This tenant's exclusive run lock, so two runs (cron, a manual run, another host) never write at once.

        SQLite: an ``flock`` on a file beside the ledger. PostgreSQL: a session advisory lock, released by the
        server when the session ends, so a run killed on one host never blocks the next run on another.
        """
        deadline = time.monotonic() + timeout_seconds
        while not self.backend.try_lock(self._db, self.tenant):
            if time.monotonic() >= deadline:
                holder = self._lock_holder()
                raise LockBusy(
                    f"another ukg2d365 run holds the lock for tenant {self.tenant}"
                    + (f" ({holder})" if holder else ""),
                    hint="it finishes on its own; set ledger.lock_timeout_seconds to wait for it",
                )
            time.sleep(poll)
        self._locked = True
        with self.transaction() as db:
            db.execute(
                "INSERT INTO run_locks (tenant, pid, host, since) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (tenant) DO UPDATE SET pid = excluded.pid, host = excluded.host, since = excluded.since",
                (self.tenant, os.getpid(), socket.gethostname(), now_iso()),
            )

    def _lock_holder(self) -> str:
        with self._lock:
            row = self._db.execute("SELECT pid, host, since FROM run_locks WHERE tenant = ?", (self.tenant,)).fetchone()
        return f"pid {row[0]} on {row[1]} since {row[2]}" if row else ""

    def release_lock(self) -> None:
        if self._locked:
            self._locked = False
            try:
                self.backend.unlock(self._db, self.tenant)
            except LedgerError:
                pass  # a PostgreSQL session that is gone has released its locks already

    # ------------------------------------------------------------------ runs and audit

    def start_run(self, command: str, args: dict[str, Any]) -> int:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        with self.transaction() as db:
            self.run_id = db.insert(
                'INSERT INTO runs (tenant, command, args, "user", host, pid, started_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
                (self.tenant, command, json.dumps(args, default=str, sort_keys=True), user, socket.gethostname(),
                 os.getpid(), now_iso()),
            )
        return self.run_id

    def finish_run(self, exit_code: int, summary: dict[str, Any]) -> None:
        if self.run_id is None:
            return
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, exit_code = ?, summary = ? WHERE tenant = ? AND id = ?",
                (now_iso(), exit_code, json.dumps(summary, default=str, sort_keys=True), self.tenant, self.run_id),
            )

    def audit(self, kind: str, detail: dict[str, Any], posting_key: str | None = None) -> None:
        with self.transaction() as db:
            self._insert_audit(db, kind, detail, posting_key)

    def audit_trail(self, posting_key: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            'SELECT a.id, a.at, a.kind, a.detail, a.run, r."user", r.host, r.command FROM audit_events a '
            "LEFT JOIN runs r ON r.id = a.run WHERE a.tenant = ? AND a.posting_key = ? ORDER BY a.id",
            (self.tenant, posting_key),
        ).fetchall()
        return [dict(row) | {"detail": json.loads(row["detail"])} for row in rows]

    def recent_runs(self, limit: int = 10) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM runs WHERE tenant = ? ORDER BY id DESC LIMIT ?",
                                (self.tenant, limit)).fetchall()
        return [dict(row) for row in rows]


def content_hash(items: Iterable[Any]) -> str:
    """Stable hash of JSON-able items (used for plan and source hashes in the audit trail)."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps(item, default=str, sort_keys=True, separators=(",", ":")).encode())
        digest.update(b"\n")
    return digest.hexdigest()
