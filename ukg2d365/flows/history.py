"""status and audit: what the ledger knows, for people (tables) and monitoring (JSON/CSV), and whether D365
shows the recent journals posted yet (finance posts them: no OData action does)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from ukg2d365.config import Config
from ukg2d365.d365.journals import posted_states
from ukg2d365.errors import Ukg2d365Error, UsageError
from ukg2d365.flows.post_payroll import stale_periods
from ukg2d365.flows.runtime import Context
from ukg2d365.http import redact
from ukg2d365.ledger import FAILED, PLANNED, POSTED, SENDING, Ledger, Posting, Refusal

STATUS_TIMEOUT_SECONDS = 15.0  # status is a glance: one attempt, no retry budget, a short timeout


@dataclass
class StatusReport:
    counts: dict[str, int]
    runs: list[dict[str, Any]]
    pending: list[Posting]  # planned or sending: recovery runs first next time
    failed: list[Posting]
    recent: list[Posting]
    # Closed, never posted, older than payroll.lookback_days (as the last --due found them): --due leaves them.
    stale: list[tuple[str, date]] = field(default_factory=list)
    # Refused runs and accruals neither posted nor skipped, of any age: each needs a fix or `replay --skip`.
    refused: list[Refusal] = field(default_factory=list)
    # D365's IsPosted per journal number of the postings shown; a number D365 no longer holds is absent.
    is_posted: dict[str, bool] = field(default_factory=dict)
    is_posted_unknown: str | None = None  # why D365 was not asked or did not answer

    @property
    def shown(self) -> list[Posting]:
        """The postings the report lists: failed, then pending, then recent, each once."""
        return list({p.key: p for p in self.failed + self.pending + self.recent}.values())

    def in_d365(self, posting: Posting) -> str:
        """D365's IsPosted of the posting's journal: Yes, No, not in D365, unknown, or '-' (no journal yet)."""
        number = posting.journal_batch_number
        if not number:
            return "-"
        if self.is_posted_unknown is not None:
            return "unknown"
        if number not in self.is_posted:
            return "not in D365"
        return "Yes" if self.is_posted[number] else "No"

    @property
    def unposted_in_d365(self) -> int:
        """Journals of the listed postings that D365 holds and finance has not posted yet."""
        return sum(1 for posted in self.is_posted.values() if not posted)


def status(ledger: Ledger, limit: int = 10, config: Config | None = None, *,
           offline_reason: str | None = None) -> StatusReport:
    """The ledger's counts, recent runs and postings, and (with a ``config``) D365's IsPosted of their journals."""
    report = StatusReport(
        counts={s: ledger.counts_by_status().get(s, 0) for s in (POSTED, SENDING, PLANNED, FAILED)},
        runs=ledger.recent_runs(limit),
        pending=ledger.find_postings(status=SENDING) + ledger.find_postings(status=PLANNED),
        failed=ledger.find_postings(status=FAILED),
        recent=ledger.find_postings(limit=limit),
        stale=stale_periods(ledger),
        refused=ledger.open_refusals(),
    )
    numbers = [p.journal_batch_number for p in report.shown if p.journal_batch_number]
    if not numbers:
        return report
    if config is None:
        report.is_posted_unknown = offline_reason or "D365 not asked"
        return report
    report.is_posted, report.is_posted_unknown = read_is_posted(config, numbers)
    return report


def read_is_posted(config: Config, numbers: list[str]) -> tuple[dict[str, bool], str | None]:
    """D365's IsPosted of ``numbers`` (one cheap read), or why it is unknown: no credentials, D365 unreachable."""
    glance = config.model_copy(update={
        "http": config.http.model_copy(update={"max_attempts": 1, "retry_budget_seconds": 0}),
        "d365": config.d365.model_copy(update={"timeout_seconds": min(config.d365.timeout_seconds,
                                                                      STATUS_TIMEOUT_SECONDS)}),
    })
    try:
        context = Context(glance, record_http=False)
        return posted_states(context.d365, numbers, config.d365.data_area_id), None
    except Ukg2d365Error as exc:
        return {}, str(exc)


@dataclass
class TenantStatus:
    """One tenant of a tenants folder: its schedule and, from its ledger, its last runs and postings."""

    tenant: str
    config_path: Path
    schedule: dict[str, str]
    report: StatusReport | None = None
    error: str | None = None  # its ledger could not be read
    last_by_command: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_failure: dict[str, Any] | None = None  # its latest run that exited non-zero, with ``error``: one line


def failure_of(run: dict[str, Any]) -> dict[str, Any]:
    """A failed run as status --tenants shows it: its error on one line with any credential removed (the message
    of an internal error quotes an exception, which may quote a URL or a header), or None when the run recorded
    only counts (exit 1: records failed or refused, each with its own last error)."""
    summary = json.loads(run["summary"]) if isinstance(run.get("summary"), str) else run.get("summary") or {}
    error = summary.get("error")
    return {"run": run["id"], "command": run["command"], "exit_code": run["exit_code"],
            "started_at": run["started_at"], "host": run["host"],
            "error": " ".join(redact(str(error)).split()) if error else None, "summary": summary}


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
                        if run["exit_code"] not in (None, 0):
                            entry.last_failure = failure_of(run)
                finally:
                    ledger.close()
        found.append(entry)
    return found


def posting_dict(p: Posting) -> dict[str, Any]:
    """A posting for JSON (status, audit): amounts as exact text, the legal entity as D365 shows it (upper case)."""
    data = asdict(p)
    data["legal_entity"] = p.legal_entity.upper() if p.legal_entity else p.legal_entity
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
