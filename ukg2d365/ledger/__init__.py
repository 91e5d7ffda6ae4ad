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

The ledger knows nothing about HTTP: flows call it before and after each remote write. Every SQL statement
of the project lives in this package: ``schema.py`` (migrations, the connection), ``postings.py`` (the state
machine above), ``tables.py`` (employee sync, webhook events, reference cache, settings); this module opens
the file and holds the run lock, the runs and the audit trail.
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
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ukg2d365.errors import ConfigError, LockBusy
from ukg2d365.journal import PlannedLine
from ukg2d365.ledger.postings import FAILED, PLANNED, POSTED, SENDING, STATES, Posting, PostingStore
from ukg2d365.ledger.schema import MIGRATIONS, LedgerError, now_iso
from ukg2d365.ledger.tables import SyncedEmployee, TableStore

__all__ = [
    "FAILED", "MIGRATIONS", "PLANNED", "LedgerError", "POSTED", "SENDING", "STATES", "Ledger", "PlannedLine", "Posting",
    "SyncedEmployee", "content_hash", "now_iso",
]


class Ledger(PostingStore, TableStore):
    """One SQLite file; safe to share between the threads of one run (a lock serializes writes)."""

    def __init__(self, path: Path) -> None:
        """Open (or create, mode 0600) the ledger file at ``path`` and bring it to the current schema."""
        self._lock_file: int | None = None
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
            super().__init__(path)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"ledger.path {path}: not a usable SQLite ledger ({exc})") from None
        for suffix in ("-wal", "-shm"):
            side = Path(str(path) + suffix)
            if side.exists():
                os.chmod(side, 0o600)

    def close(self) -> None:
        self._close_connection()
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
            self._insert_audit(db, kind, detail, posting_key)

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


def content_hash(items: Iterable[Any]) -> str:
    """Stable hash of JSON-able items (used for plan and source hashes in the audit trail)."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps(item, default=str, sort_keys=True, separators=(",", ":")).encode())
        digest.update(b"\n")
    return digest.hexdigest()
