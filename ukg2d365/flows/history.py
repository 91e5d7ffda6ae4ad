"""status and audit: what the ledger knows, for people (tables) and monitoring (JSON/CSV)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from ukg2d365.errors import Ukg2d365Error, UsageError
from ukg2d365.flows.post_payroll import stale_periods
from ukg2d365.ledger import FAILED, PLANNED, POSTED, SENDING, Ledger, Posting


@dataclass
class StatusReport:
    counts: dict[str, int]
    runs: list[dict[str, Any]]
    pending: list[Posting]  # planned or sending: recovery runs first next time
    failed: list[Posting]
    recent: list[Posting]
    # Closed, never posted, older than payroll.lookback_days (as the last --due found them): --due leaves them.
    stale: list[tuple[str, date]] = field(default_factory=list)


def status(ledger: Ledger, limit: int = 10) -> StatusReport:
    return StatusReport(
        counts={s: ledger.counts_by_status().get(s, 0) for s in (POSTED, SENDING, PLANNED, FAILED)},
        runs=ledger.recent_runs(limit),
        pending=ledger.find_postings(status=SENDING) + ledger.find_postings(status=PLANNED),
        failed=ledger.find_postings(status=FAILED),
        recent=ledger.find_postings(limit=limit),
        stale=stale_periods(ledger),
    )


@dataclass
class TenantStatus:
    """One tenant of a tenants folder: its schedule and, from its ledger, its last runs and postings."""

    tenant: str
    config_path: Path
    schedule: dict[str, str]
    report: StatusReport | None = None
    error: str | None = None  # its ledger could not be read
    last_by_command: dict[str, dict[str, Any]] = field(default_factory=dict)


def tenants_status(folder: Path, limit: int = 10) -> list[TenantStatus]:
    """``status --tenants DIR``: every tenant's last runs; a ledger that cannot be read is reported, not fatal."""
    from ukg2d365.flows.runtime import open_ledger
    from ukg2d365.flows.scheduled import load_tenants

    found = []
    for tenant in load_tenants(folder):
        entry = TenantStatus(tenant.name, tenant.config_path, tenant.schedule)
        location = tenant.config.ledger_location
        if isinstance(location, Path) and not location.exists():
            entry.error = f"no ledger at {location} yet"
        else:
            try:
                ledger = open_ledger(tenant.config)
            except Ukg2d365Error as exc:
                entry.error = str(exc)
            else:
                try:
                    entry.report = status(ledger, limit)
                    for run in reversed(ledger.recent_runs(200)):
                        entry.last_by_command[run["command"]] = run
                finally:
                    ledger.close()
        found.append(entry)
    return found


def posting_dict(p: Posting) -> dict[str, Any]:
    data = asdict(p)
    data["debit_total"] = str(p.debit_total)
    data["credit_total"] = str(p.credit_total)
    return data


def audit_trail(ledger: Ledger, key: str) -> tuple[Posting | None, list[dict[str, Any]]]:
    """A posting's trail (by key, marker or journal number), or the trail of another audited record.

    sync-dimensions and sync-employees audit under keys like ``dimension:CostCenter:130`` and
    ``employee:100123``; those have events but no posting.
    """
    posting = ledger.get_posting(key)
    if posting is None:
        for candidate in ledger.find_postings():
            if candidate.marker == key or candidate.journal_batch_number == key:
                posting = candidate
                break
    if posting is None:
        events = ledger.audit_trail(key)
        if events:
            return None, events
        raise UsageError(f"no posting or audited record {key!r} in the ledger",
                         hint="`ukg2d365 status` lists posting keys; sync records are dimension:NAME:VALUE "
                              "and employee:NUMBER")
    return posting, ledger.audit_trail(posting.key)
