"""Postings: the state machine of one pay run's journal (drawn in :mod:`ukg2d365.ledger`), and its stored plan.

A plan is stored as blocks of its lines' records (``plan_chunks``, one row per block of about 4,000 lines, with
the block's SHA-256): a million-line journal is a few hundred rows written and read whole, where a row per line
cost ~3.5 us a line in and out. Plans stored before that (``posting_lines``, a row per line) are still read.

Every statement on ``postings``, ``plan_chunks`` and ``posting_lines`` lives here. A state change and its audit
event are written in one transaction, so the trail never misses a move.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ukg2d365.errors import Ukg2d365Error
from ukg2d365.journal import RECORD, PlannedLine, TextRow, block_rows, planned_lines, record_blocks
from ukg2d365.ledger.schema import Store, chunked, now_iso

PLANNED, SENDING, POSTED, FAILED = "planned", "sending", "posted", "failed"
STATES = (PLANNED, SENDING, POSTED, FAILED)


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
    legal_entity: str | None = None  # as configured (USMF); None only in a ledger not yet adopted
    kind: str = "pay_run"  # pay_run | accrual
    document_date: str | None = None  # DocumentDate of every line; None: not sent
    reverse_date: str | None = None  # ReverseEntry Yes with this ReverseDate; None: not reversing
    route: str | None = None  # odata | dmf, once sending
    execution_id: str | None = None  # the DMF import queued for it, recorded before ImportFromPackage is called

    @property
    def data_area_id(self) -> str | None:
        return self.legal_entity.lower() if self.legal_entity else None

    @property
    def reconcile_options(self) -> str:
        """The reconcile options that select this posting: a pay run by its run, an accrual by its month-end."""
        if self.kind == "accrual":
            return f"--pay-group {self.pay_group} --period-end {self.period_end}"
        return f"--run-id {self.run_id}"

    @classmethod
    def from_row(cls, row: Any) -> Posting:
        data = dict(row)
        data.pop("tenant", None)
        data["debit_total"] = Decimal(data["debit_total"])
        data["credit_total"] = Decimal(data["credit_total"])
        return cls(**data)


class DamagedPlan(Ukg2d365Error):
    """A stored plan that is not what was stored (a block altered or missing): nothing of it is sent."""

    def __init__(self, key: str, line: int) -> None:
        super().__init__(f"the ledger's stored plan of {key} is damaged from line {line} on (a block of it was "
                         "altered or removed since it was planned)",
                         hint="post-payroll plans a posting not yet posted again from UKG; restore the ledger from "
                              "a backup to replay it as planned")


def _digest(records: str) -> str:
    return hashlib.sha256(records.encode()).hexdigest()


class PostingStore(Store):
    """The ledger's postings: reads, the write-ahead plan, and state changes."""

    def get_posting(self, key: str) -> Posting | None:
        row = self._db.execute("SELECT * FROM postings WHERE tenant = ? AND key = ?", (self.tenant, key)).fetchone()
        return Posting.from_row(row) if row else None

    def find_postings(self, *, status: str | None = None, limit: int | None = None) -> list[Posting]:
        sql = "SELECT * FROM postings WHERE tenant = ?"
        args: list[Any] = [self.tenant]
        if status:
            sql += " AND status = ?"
            args.append(status)
        sql += " ORDER BY updated_at DESC"
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        return [Posting.from_row(r) for r in self._db.execute(sql, args).fetchall()]

    def adopt_legal_entity(self, legal_entity: str) -> None:
        """Postings written before the ledger knew legal entities were in the one configured entity."""
        if self._db.execute("SELECT 1 FROM postings WHERE tenant = ? AND legal_entity IS NULL LIMIT 1",
                            (self.tenant,)).fetchone() is None:
            return  # the usual case: no write on every open
        with self.transaction() as db:
            db.execute("UPDATE postings SET legal_entity = ? WHERE tenant = ? AND legal_entity IS NULL",
                       (legal_entity, self.tenant))

    def period_statuses(self, pay_group: str, period_end: str, kind: str = "pay_run") -> list[str]:
        rows = self._db.execute(
            "SELECT status FROM postings WHERE tenant = ? AND pay_group = ? AND period_end = ? AND kind = ?",
            (self.tenant, pay_group, period_end, kind),
        )
        return [r[0] for r in rows]

    def period_postings(self, company: str, pay_group: str, period_end: str) -> list[Posting]:
        """Every posting, of any run and state, of one company's pay group and period end."""
        rows = self._db.execute("SELECT * FROM postings WHERE tenant = ? AND company = ? AND pay_group = ? "
                                "AND period_end = ? ORDER BY created_at", (self.tenant, company, pay_group, period_end))
        return [Posting.from_row(r) for r in rows.fetchall()]

    def posted_keys(self, keys: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for chunk, marks in chunked(list(keys)):
            found.update(
                r[0]
                for r in self._db.execute(
                    f"SELECT key FROM postings WHERE tenant = ? AND status = 'posted' AND key IN ({marks})",
                    [self.tenant, *chunk]
                )
            )
        return found

    def counts_by_status(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) FROM postings WHERE tenant = ? GROUP BY status",
                                (self.tenant,))
        return {r[0]: int(r[1]) for r in rows}

    def save_plan(self, posting: Posting, lines: Iterable[PlannedLine]) -> None:
        """Write-ahead: the intent and its lines are committed before any request is sent.

        A posting already posted is never replanned; one that is planned/failed/sending gets the new plan
        (recovery compares it with what D365 holds before sending anything).
        """
        with self.transaction() as db:
            row = db.execute("SELECT status FROM postings WHERE tenant = ? AND key = ?",
                             (self.tenant, posting.key)).fetchone()
            if row and row["status"] == POSTED:
                raise ValueError(f"posting {posting.key} is already posted")
            values = (
                posting.company, posting.pay_group, posting.period_end, posting.run_id, posting.employee,
                posting.marker, posting.description, posting.plan_hash, posting.source_hash, posting.source_lines,
                posting.line_count, str(posting.debit_total), str(posting.credit_total), posting.trans_date,
                posting.legal_entity, posting.kind, posting.document_date, posting.reverse_date,
            )
            stamp = now_iso()
            if row is None:
                db.execute(
                    "INSERT INTO postings (company, pay_group, period_end, run_id, employee, marker, description, "
                    "plan_hash, source_hash, source_lines, line_count, debit_total, credit_total, trans_date, "
                    "legal_entity, kind, document_date, reverse_date, tenant, key, status, created_at, updated_at, "
                    "last_run) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'planned', ?, ?, ?)",
                    (*values, self.tenant, posting.key, stamp, stamp, self.run_id),
                )
            else:
                db.execute(
                    "UPDATE postings SET company=?, pay_group=?, period_end=?, run_id=?, employee=?, marker=?, "
                    "description=?, plan_hash=?, source_hash=?, source_lines=?, line_count=?, debit_total=?, "
                    "credit_total=?, trans_date=?, legal_entity=?, kind=?, document_date=?, reverse_date=?, "
                    "updated_at=?, last_run=? WHERE tenant=? AND key=?",
                    (*values, stamp, self.run_id, self.tenant, posting.key),
                )
                db.execute("DELETE FROM posting_lines WHERE tenant = ? AND posting_key = ?", (self.tenant, posting.key))
                db.execute("DELETE FROM plan_chunks WHERE tenant = ? AND posting_key = ?", (self.tenant, posting.key))
            first = 1
            # A spilled journal's blocks come from its file as written: no line is split apart to be stored.
            for count, records in record_blocks(lines):
                db.execute(
                    "INSERT INTO plan_chunks (tenant, posting_key, first_line, line_count, sha256, records) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (self.tenant, posting.key, first, count, _digest(records), records),
                )
                first += count
            if first - 1 != posting.line_count:
                raise ValueError(f"posting {posting.key} says {posting.line_count} lines, its plan has {first - 1}")

    def plan_rows(self, key: str, chunk: int = 5000) -> Iterator[TextRow]:
        """The stored plan's lines in order, as stored (amounts as text), a block at a time (``chunk`` lines at a
        time from a plan stored a row per line). Every block is checked against its hash and its place."""
        stored = False
        for first, records in self._plan_blocks(key):
            stored = True
            yield from block_rows(records, first)
        if not stored:
            yield from self._plan_rows_per_line(key, chunk)

    def check_plan(self, key: str) -> None:
        """DamagedPlan unless every block of the stored plan is intact: for a poster that sends the plan as it reads
        it, before its first write."""
        for _block in self._plan_blocks(key):
            pass

    def _plan_blocks(self, key: str) -> Iterator[tuple[int, str]]:
        """(first line, records) of each stored block in order, each checked against its hash, its place and its
        line count, and the lines of all against the posting's; nothing for a plan stored a row per line."""
        last = 0
        while True:
            with self._lock:  # the poster's threads write audit rows on this connection meanwhile
                found = self._db.tuples(
                    "SELECT first_line, line_count, sha256, records FROM plan_chunks WHERE tenant = ? "
                    "AND posting_key = ? AND first_line > ? ORDER BY first_line LIMIT 1",
                    (self.tenant, key, last),
                )
            if not found:
                break
            first, count, digest, records = found[0]
            if first != last + 1 or _digest(records) != digest or records.count(RECORD) != count:
                raise DamagedPlan(key, last + 1)
            yield first, records
            last = first + count - 1
        if last:
            with self._lock:
                expected = self._db.tuples("SELECT line_count FROM postings WHERE tenant = ? AND key = ?",
                                           (self.tenant, key))
            if not expected or int(expected[0][0]) != last:
                raise DamagedPlan(key, last + 1)

    def _plan_rows_per_line(self, key: str, chunk: int) -> Iterator[TextRow]:
        """A plan stored before plan_chunks: a row per line, read ``chunk`` at a time."""
        last = 0
        while True:
            with self._lock:
                rows = self._db.tuples(
                    "SELECT line_number, account, debit, credit, text FROM posting_lines WHERE tenant = ? "
                    "AND posting_key = ? AND line_number > ? ORDER BY line_number LIMIT ?",
                    (self.tenant, key, last, chunk),
                )
            if not rows:
                return
            yield from rows
            last = rows[-1][0]

    def iter_plan(self, key: str, chunk: int = 5000) -> Iterator[PlannedLine]:
        """The stored plan's lines in order, ``chunk`` at a time: a journal of any size in bounded memory."""
        return planned_lines(self.plan_rows(key, chunk))

    def plan_lines(self, key: str) -> list[PlannedLine]:
        """The stored plan as a list: for small plans and tests; the posters walk ``iter_plan``."""
        return list(self.iter_plan(key))

    def set_execution(self, key: str, execution_id: str | None) -> None:
        """Write-ahead for the DMF route: the execution id is committed (and the posting is ``sending``) before
        ImportFromPackage is called, so a run that dies after it polls that execution instead of importing again.
        ``None`` forgets a finished execution that imported nothing to keep."""
        stamp = now_iso()
        with self.transaction() as db:
            if execution_id is None:
                db.execute("UPDATE postings SET execution_id = NULL, updated_at = ? WHERE tenant = ? AND key = ?",
                           (stamp, self.tenant, key))
            else:
                db.execute("UPDATE postings SET execution_id = ?, route = 'dmf', status = 'sending', updated_at = ?, "
                           "last_run = ? WHERE tenant = ? AND key = ?",
                           (execution_id, stamp, self.run_id, self.tenant, key))
            self._insert_audit(db, "dmf.execution", {"execution_id": execution_id}, key, at=stamp)

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
                "WHERE tenant = ? AND key = ?",
                (status, stamp, self.run_id, journal_batch_number, status, error, int(count_attempt), status, stamp,
                 self.tenant, key),
            )
            self._insert_audit(db, "state", {"status": status, "journal_batch_number": journal_batch_number,
                                             "error": error}, key, at=stamp)

    def forget_journal(self, key: str) -> None:
        """The journal this posting pointed at is gone (deleted to be rebuilt)."""
        with self.transaction() as db:
            db.execute("UPDATE postings SET journal_batch_number = NULL, updated_at = ? WHERE tenant = ? AND key = ?",
                       (now_iso(), self.tenant, key))
