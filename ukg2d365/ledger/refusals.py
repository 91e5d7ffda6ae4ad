"""Refused runs: a pay run's or accrual's journal refused before anything was sent, remembered by its posting key.

A refusal writes no posting (nothing was planned for D365), so without this table a period in which another run
of the pay group posted would look done, and ``--due`` would forget the refused run the next night. A refusal
stays *open* until its key is posted or an operator skips it (``replay --skip KEY --reason TEXT``, audited); a
period is done when every key the ledger knows of it is posted or skipped (:meth:`RefusalStore.period_states`).

Every statement on ``refusals`` lives here, each scoped to the tenant.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ukg2d365.ledger.postings import POSTED
from ukg2d365.ledger.schema import Store, chunked, now_iso

REFUSED, SKIPPED = "refused", "skipped"  # a period key's state when the ledger holds no posting for it
_COLUMNS = ("key, kind, company, pay_group, period_end, run_id, legal_entity, problems, first_at, last_at, times, "
            "last_run, skipped_at, skip_reason, skip_run")


@dataclass(frozen=True)
class Refusal:
    """One refused journal: what it is, why it was last refused, and whether an operator skipped it."""

    key: str
    kind: str  # pay_run | accrual, as postings.kind
    company: str
    pay_group: str
    period_end: str  # the pay period's end, or an accrual's month-end
    run_id: str
    legal_entity: str | None
    problems: list[str] = field(default_factory=list)  # the reasons of the latest refusal
    first_at: str = ""
    last_at: str = ""
    times: int = 1  # how many runs refused it
    last_run: int | None = None
    skipped_at: str | None = None
    skip_reason: str | None = None
    skip_run: int | None = None  # the run that skipped it: who, where, when (`ukg2d365 audit KEY`)

    @property
    def skipped(self) -> bool:
        return self.skipped_at is not None

    @classmethod
    def from_row(cls, row: Any) -> Refusal:
        data = dict(row)
        data["problems"] = json.loads(data["problems"])
        return cls(**data)


class RefusalStore(Store):
    """Named statements for the ``refusals`` table (migration 6)."""

    def record_refusal(self, refusal: Refusal, detail: dict[str, Any]) -> None:
        """Remember (or refresh) a refusal and write its ``refused`` audit event, in one transaction.

        A skip stays: a run an operator skipped and that is refused again is still acknowledged.
        """
        stamp = now_iso()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO refusals (tenant, key, kind, company, pay_group, period_end, run_id, legal_entity, "
                "problems, first_at, last_at, times, last_run) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?) "
                "ON CONFLICT (tenant, key) DO UPDATE SET problems = excluded.problems, last_at = excluded.last_at, "
                "times = refusals.times + 1, last_run = excluded.last_run, run_id = excluded.run_id",
                (self.tenant, refusal.key, refusal.kind, refusal.company, refusal.pay_group, refusal.period_end,
                 refusal.run_id, refusal.legal_entity, json.dumps(refusal.problems), stamp, stamp, self.run_id),
            )
            self._insert_audit(db, "refused", detail, refusal.key, at=stamp)

    def refusal(self, key: str) -> Refusal | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM refusals WHERE tenant = ? AND key = ?",
                               (self.tenant, key)).fetchone()
        return Refusal.from_row(row) if row else None

    def refusals_of(self, keys: Iterable[str]) -> dict[str, Refusal]:
        """The refusals, open or skipped, of these keys."""
        found: dict[str, Refusal] = {}
        for chunk, marks in chunked(sorted(set(keys))):
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM refusals WHERE tenant = ? AND key IN ({marks})",
                                    [self.tenant, *chunk])
            found.update((r["key"], Refusal.from_row(r)) for r in rows.fetchall())
        return found

    def open_refusals(self, *, kind: str | None = None, pay_group: str | None = None,
                      period_end: str | None = None) -> list[Refusal]:
        """Refusals neither skipped nor posted since, oldest period first."""
        sql = (f"SELECT {', '.join('r.' + c.strip() for c in _COLUMNS.split(','))} FROM refusals r "
               "LEFT JOIN postings p ON p.tenant = r.tenant AND p.key = r.key "
               "WHERE r.tenant = ? AND r.skipped_at IS NULL AND (p.status IS NULL OR p.status <> ?)")
        args: list[Any] = [self.tenant, POSTED]
        for column, value in (("kind", kind), ("pay_group", pay_group), ("period_end", period_end)):
            if value is not None:
                sql += f" AND r.{column} = ?"
                args.append(value)
        rows = self._db.execute(sql + " ORDER BY r.period_end, r.key", args).fetchall()
        return [Refusal.from_row(r) for r in rows]

    def skip_refusal(self, key: str, reason: str) -> None:
        """An operator's acknowledgement that a refused run will never be posted; audited under its key."""
        stamp = now_iso()
        with self.transaction() as db:
            db.execute("UPDATE refusals SET skipped_at = ?, skip_reason = ?, skip_run = ? WHERE tenant = ? AND key = ?",
                       (stamp, reason, self.run_id, self.tenant, key))
            self._insert_audit(db, "skipped", {"reason": reason, "what": "a refused run acknowledged as never to be "
                                               "posted: --due and status leave it alone"}, key, at=stamp)

    def period_states(self, pay_group: str, period_end: str, kind: str = "pay_run") -> dict[str, str]:
        """Every key the ledger knows of one period (a pay period, or an accrual's month-end) and its state: a
        posting's status, else ``refused`` or ``skipped``. A skip outranks an unposted posting (skipping refuses
        postings with a journal in D365); ``posted`` outranks everything."""
        states = {str(r[0]): str(r[1]) for r in self._db.execute(
            "SELECT key, status FROM postings WHERE tenant = ? AND pay_group = ? AND period_end = ? AND kind = ?",
            (self.tenant, pay_group, period_end, kind))}
        for key, skipped_at in self._db.execute(
                "SELECT key, skipped_at FROM refusals WHERE tenant = ? AND pay_group = ? AND period_end = ? "
                "AND kind = ?", (self.tenant, pay_group, period_end, kind)).fetchall():
            if states.get(key) == POSTED:
                continue
            if skipped_at is not None:
                states[key] = SKIPPED
            else:
                states.setdefault(key, REFUSED)
        return states

    def refused_period_ends(self, kind: str = "pay_run") -> list[tuple[str, str]]:
        """(pay group, period end) of every refusal of ``kind``: the ledger knows those periods too."""
        rows = self._db.execute("SELECT DISTINCT pay_group, period_end FROM refusals WHERE tenant = ? AND kind = ?",
                                (self.tenant, kind))
        return [(str(r[0]), str(r[1])) for r in rows.fetchall()]
