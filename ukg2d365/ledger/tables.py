"""The ledger's other tables: the employee sync record, the webhook events, the reference cache and settings.

Every statement on them lives here. Reads of the employee and webhook tables run inside a transaction: the
webhook server shares one connection between its HTTP threads and its worker, and the transaction's lock
keeps them from interleaving on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ukg2d365.ledger.schema import Store, chunked, now_iso

# webhook_events.status (the CHECK of migration 3).
QUEUED, RUNNING, DONE, FAILED, IGNORED = "queued", "running", "done", "failed", "ignored"
EVENT_STATUSES = (QUEUED, RUNNING, DONE, FAILED, IGNORED)
# The columns that describe a received event, in the order of flows.webhook_events.WebhookEvent's fields; the
# event's own tenant (UKG's, from its payload) is the column event_tenant, as ``tenant`` scopes every row.
EVENT_COLUMNS = ("event_id", "event_type", "operation", "event_time", "company", "employee", "pay_group", "tenant")
_EVENT_SELECT = ", ".join("event_tenant AS tenant" if c == "tenant" else c for c in EVENT_COLUMNS)


@dataclass(frozen=True)
class SyncedEmployee:
    """What sync-employees last sent (or found already right in D365) for one personnel number."""

    personnel_number: str
    payload_hash: str
    sent_at: str
    employment_id: str | None


class TableStore(Store):
    """Named statements for the tables beside the postings."""

    # ------------------------------------------------------------------ employee sync (migration 2)

    def synced_employees(self, personnel_numbers: Iterable[str]) -> dict[str, SyncedEmployee]:
        found: dict[str, SyncedEmployee] = {}
        with self.transaction() as db:
            for chunk, marks in chunked(sorted(set(personnel_numbers))):
                rows = db.execute(
                    "SELECT personnel_number, payload_hash, sent_at, employment_id FROM employee_sync "
                    f"WHERE tenant = ? AND personnel_number IN ({marks})", [self.tenant, *chunk])
                found.update((r[0], SyncedEmployee(r[0], r[1], r[2], r[3])) for r in rows)
        return found

    def record_employee_sync(self, personnel_number: str, payload_hash: str, employment_id: str | None) -> None:
        """Remember what was sent; a known employment id is kept when this send did not learn one."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO employee_sync (tenant, personnel_number, payload_hash, sent_at, employment_id) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, personnel_number) DO UPDATE SET "
                "payload_hash = excluded.payload_hash, sent_at = excluded.sent_at, "
                "employment_id = COALESCE(excluded.employment_id, employee_sync.employment_id)",
                (self.tenant, personnel_number, payload_hash, now_iso(), employment_id))

    def count_synced_employees(self) -> int:
        with self.transaction() as db:
            return int(db.execute("SELECT COUNT(*) FROM employee_sync WHERE tenant = ?", (self.tenant,)).fetchone()[0])

    # ------------------------------------------------------------------ webhook events (migration 3)

    def record_webhook_event(self, event: Mapping[str, str | None], status: str, detail: str) -> bool:
        """Insert an event (``EVENT_COLUMNS``); False when its event_id is already recorded."""
        stamp = now_iso()
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO webhook_events (tenant, event_id, received_at, event_time, event_type, operation, "
                "event_tenant, company, employee, pay_group, status, detail, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, event_id) DO NOTHING",
                (self.tenant, event["event_id"], stamp, event["event_time"], event["event_type"], event["operation"],
                 event["tenant"], event["company"], event["employee"], event["pay_group"], status, detail, stamp),
            )
            return cur.rowcount == 1

    def set_webhook_event_status(self, event_ids: Sequence[str], status: str, detail: str) -> None:
        if status not in EVENT_STATUSES:
            raise ValueError(status)
        stamp = now_iso()
        with self.transaction() as db:
            db.executemany(
                "UPDATE webhook_events SET status = ?, detail = ?, updated_at = ? WHERE tenant = ? AND event_id = ?",
                ((status, detail, stamp, self.tenant, event_id) for event_id in event_ids),
            )

    def webhook_event(self, event_id: str) -> dict[str, Any] | None:
        with self.transaction() as db:
            row = db.execute(f"SELECT {_EVENT_SELECT}, received_at, status, detail, updated_at FROM webhook_events "
                             "WHERE tenant = ? AND event_id = ?", (self.tenant, event_id)).fetchone()
        return dict(row) if row is not None else None

    def unfinished_webhook_events(self) -> list[dict[str, Any]]:
        """``EVENT_COLUMNS`` of the events queued or running when the server last stopped, oldest first."""
        with self.transaction() as db:
            rows = db.execute(
                f"SELECT {_EVENT_SELECT} FROM webhook_events WHERE tenant = ? AND status IN (?, ?) "
                "ORDER BY received_at, event_id", (self.tenant, QUEUED, RUNNING),
            ).fetchall()
        return [dict(row) for row in rows]

    # ------------------------------------------------------------------ reference data cache and settings

    def known_values(self, kind: str, name: str) -> set[str]:
        rows = self._db.execute("SELECT value FROM reference_values WHERE tenant = ? AND kind = ? AND name = ?",
                                (self.tenant, kind, name))
        return {r[0] for r in rows}

    def remember_values(self, kind: str, name: str, values: Iterable[str]) -> None:
        stamp = now_iso()
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO reference_values (tenant, kind, name, value, seen_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (tenant, kind, name, value) DO UPDATE SET seen_at = excluded.seen_at",
                ((self.tenant, kind, name, v, stamp) for v in values),
            )

    def forget_values(self, kind: str, name: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM reference_values WHERE tenant = ? AND kind = ? AND name = ?",
                       (self.tenant, kind, name))

    def get_setting(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM settings WHERE tenant = ? AND key = ?", (self.tenant, key)).fetchone()
        return row[0] if row else None

    def set_setting(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO settings (tenant, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (tenant, key) DO UPDATE SET value = excluded.value",
                (self.tenant, key, value),
            )
