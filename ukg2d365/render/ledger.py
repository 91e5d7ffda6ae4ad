"""status and audit: what the ledger holds, as tables for people, CSV or JSON lines for machines."""

from __future__ import annotations

import csv
import io
import json
import sys
from typing import TYPE_CHECKING, Any

from ukg2d365.render import Output, Table, styled

if TYPE_CHECKING:  # only the types: rendering never runs a flow
    from ukg2d365.flows.history import StatusReport, TenantStatus
    from ukg2d365.ledger import Posting


def status(out: Output, report: StatusReport) -> None:
    from ukg2d365.flows.history import posting_dict

    if out.json_mode:
        out.event("status", counts=report.counts, runs=report.runs,
                  pending=[posting_dict(p) for p in report.pending],
                  failed=[posting_dict(p) for p in report.failed],
                  recent=[posting_dict(p) for p in report.recent],
                  stale_periods=[{"pay_group": g, "period_end": d} for g, d in report.stale])
        _stale_warnings(out, report)
        return
    out.table(_runs_table(report.runs))
    out.table(_postings_table(report))
    _stale_warnings(out, report)
    c = report.counts
    out.summary(f"ledger: {c['posted']} posted, {c['sending']} in flight (recovered next run), "
                f"{c['planned']} planned, {c['failed']} failed" +
                (" - run `ukg2d365 replay --failed`" if c["failed"] or c["sending"] else ""))


def _stale_warnings(out: Output, report: StatusReport) -> None:
    for pay_group, end in report.stale:
        out.warn(f"pay group {pay_group} period {end} is closed, older than payroll.lookback_days and not posted: "
                 f"`ukg2d365 post-payroll --pay-group {pay_group} --period-end {end}` posts it")
def tenants_status(out: Output, tenants: list[TenantStatus]) -> None:
    """``status --tenants DIR``: per tenant, each command's last run and the postings."""
    from ukg2d365.flows.history import posting_dict

    if out.json_mode:
        for t in tenants:
            r = t.report
            out.event("tenant", tenant=t.tenant, config=str(t.config_path), schedule=t.schedule, error=t.error,
                      counts=r.counts if r else None, runs=r.runs if r else [],
                      last_by_command=t.last_by_command,
                      failed=[posting_dict(p) for p in r.failed] if r else [],
                      pending=[posting_dict(p) for p in r.pending] if r else [])
        return
    table = Table(title="Tenants", title_justify="left")
    for column in ("Tenant", "Schedule", "Last runs (UTC)", "Postings"):
        table.add_column(column, overflow="fold")
    for t in tenants:
        schedule = "\n".join(f"{job}: {cron}" for job, cron in t.schedule.items()) or "-"
        if t.report is None:
            table.add_row(t.tenant, schedule, styled(t.error or "", "red"), "-")
            continue
        runs = "\n".join(f"{command}: {_exit_text(r)} at {r['started_at'][:19].replace('T', ' ')} on {r['host']}"
                         for command, r in sorted(t.last_by_command.items())) or "no run yet"
        c = t.report.counts
        table.add_row(t.tenant, schedule, runs, f"{c['posted']} posted, {c['sending']} in flight, "
                      f"{c['planned']} planned, {c['failed']} failed")
    out.table(table)
    broken = sum(1 for t in tenants if t.error)
    out.summary(f"{len(tenants)} tenant(s)" + (f", {broken} whose ledger cannot be read" if broken else ""))


def _exit_text(run: dict[str, Any]) -> str:
    return "running" if run["exit_code"] is None else f"exit {run['exit_code']}"


def _runs_table(rows: list[dict[str, Any]]) -> Table:
    runs = Table(title="Recent runs", title_justify="left")
    for column in ("#", "Command", "Started (UTC)", "User@host", "Exit", "Summary"):
        runs.add_column(column, overflow="fold")
    for r in rows:
        summary = json.loads(r["summary"]) if r["summary"] else {}
        text = ", ".join(f"{k} {v}" for k, v in summary.items() if k != "error")
        if summary.get("error"):
            text = (text + "; " if text else "") + "error: " + str(summary["error"])
        runs.add_row(str(r["id"]), r["command"], r["started_at"][:19].replace("T", " "),
                     f"{r['user']}@{r['host']}", "running" if r["exit_code"] is None else str(r["exit_code"]), text)
    return runs


def _postings_table(report: StatusReport) -> Table:
    postings = Table(title="Postings", title_justify="left")
    for column in ("Key", "Entity", "Status", "Journal", "Lines", "Debit", "Credit", "Updated (UTC)", "Last error"):
        postings.add_column(column, overflow="fold")
    shown = {p.key: p for p in report.failed + report.pending + report.recent}
    for p in shown.values():
        colour = {"posted": "green", "failed": "red", "sending": "yellow"}.get(p.status, "white")
        postings.add_row(p.key, (p.legal_entity or "").upper(), styled(p.status, colour),
                         p.journal_batch_number or "-", str(p.line_count),
                         f"{p.debit_total:,.2f}", f"{p.credit_total:,.2f}", p.updated_at[:19].replace("T", " "),
                         p.last_error or "")
    return postings


def recent_postings(out: Output, postings: list[Posting], fmt: str) -> None:
    """``audit`` without a key: the latest postings, to pick a key from."""
    from ukg2d365.flows.history import posting_dict

    rows = [posting_dict(p) for p in postings]
    if fmt == "json" or out.json_mode:
        for row in rows:
            sys.stdout.write(json.dumps(row) + "\n")
    elif fmt == "csv":
        write_csv(rows)
    else:
        table = Table(title="Recent postings (give a key for its trail)", title_justify="left")
        for column in ("Key", "Marker", "Status", "Journal", "Updated (UTC)"):
            table.add_column(column, overflow="fold")
        for p in postings:
            table.add_row(p.key, p.marker, p.status, p.journal_batch_number or "-", p.updated_at[:19])
        out.table(table)


def audit_trail(out: Output, key: str, posting: Posting | None, events: list[dict[str, Any]], fmt: str) -> None:
    """One record's trail: a JSON document, CSV rows, or its header line and a table of events."""
    from ukg2d365.flows.history import posting_dict

    if fmt == "json" or out.json_mode:
        document = {"posting": posting_dict(posting) if posting else None, "key": key, "events": events}
        sys.stdout.write(json.dumps(document) + "\n")
        return
    flat = [{"id": e["id"], "at": e["at"], "kind": e["kind"], "run": e["run"], "user": e["user"],
             "host": e["host"], "command": e["command"], "detail": json.dumps(e["detail"], sort_keys=True)}
            for e in events]
    if fmt == "csv":
        write_csv(flat)
        return
    p = posting
    if p is None:
        out.say(key, style="bold")
    else:
        out.say(f"{p.key}  marker {p.marker}  status {p.status}  journal "
                f"{p.journal_batch_number or '-'}  lines {p.line_count} (from {p.source_lines} UKG lines, "
                f"source hash {p.source_hash[:12]})  debit {p.debit_total:,.2f}  credit "
                f"{p.credit_total:,.2f}")
    table = Table(title="Audit trail", title_justify="left")
    for column in ("At (UTC)", "Run", "Who", "Event", "Detail"):
        table.add_column(column, overflow="fold")
    for e in flat:
        table.add_row(e["at"][:23].replace("T", " "), str(e["run"] or ""), f"{e['user']}@{e['host']}",
                      e["kind"], e["detail"])
    out.table(table)


def write_csv(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    sys.stdout.write(buffer.getvalue())
