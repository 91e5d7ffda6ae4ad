"""status and audit: what the ledger holds, as tables for people, CSV or JSON lines for machines."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ukg2d365.render import Column, Output, Rows, Table, entity, money, styled
from ukg2d365.render.payroll import skip_command, stale_refusals_text, what_refused

if TYPE_CHECKING:  # only the types: rendering never runs a flow
    from ukg2d365.flows.history import StatusReport, TenantStatus
    from ukg2d365.ledger import Posting, Refusal


def status(out: Output, report: StatusReport) -> None:
    from ukg2d365.flows.history import posting_dict

    if out.json_mode:
        def with_d365(p: Posting) -> dict[str, Any]:
            return {**posting_dict(p), "in_d365": report.in_d365(p)}

        out.event("status", counts=report.counts, runs=[run_record(r) for r in report.runs],
                  pending=[with_d365(p) for p in report.pending],
                  failed=[with_d365(p) for p in report.failed],
                  recent=[with_d365(p) for p in report.recent],
                  stale_periods=[{"pay_group": g, "period_end": d} for g, d in report.stale],
                  refused=[_refusal_dict(r) for r in report.refused],
                  is_posted_unknown=report.is_posted_unknown)
        _stale_warnings(out, report)
        return
    wide = out.out.width >= WIDE
    out.table(_runs_table(report.runs, wide=wide))
    out.table(_postings_table(report) if wide else _postings_table_narrow(report))
    for p in report.shown:
        if p.last_error:
            out.say(f"{p.key}: {p.last_error}", lead=("last error", "red"))
    _refused(out, report.refused)
    if report.is_posted_unknown is not None:
        out.say(f"IsPosted in D365 unknown: {report.is_posted_unknown}", style="yellow")
    elif report.unposted_in_d365:
        out.say(f"{report.unposted_in_d365} journal(s) above are in D365 but not posted yet (IsPosted No): post "
                "them in D365, or let the recurring Post journals batch job do it")
    _stale_warnings(out, report)
    c = report.counts
    out.summary(f"ledger: {c['posted']} posted, {c['sending']} in flight (recovered next run), "
                f"{c['planned']} planned, {c['failed']} failed" +
                (f", {len(report.refused)} refused and not posted" if report.refused else "") +
                (" - run `ukg2d365 replay --failed`" if c["failed"] or c["sending"] else ""))


def run_record(run: dict[str, Any]) -> dict[str, Any]:
    """A run as --json shows it: its arguments and summary as JSON objects (the ledger keeps them as text)."""
    record = dict(run)
    for field in ("args", "summary"):
        if isinstance(record.get(field), str):
            record[field] = json.loads(record[field])
    return record


def _stale_warnings(out: Output, report: StatusReport) -> None:
    for pay_group, end in report.stale:
        refused = [r for r in report.refused if r.kind == "pay_run" and (r.pay_group, r.period_end) ==
                   (pay_group, end.isoformat())]
        out.warn(f"pay group {pay_group} period {end} is closed, older than payroll.lookback_days and not posted: "
                 f"`ukg2d365 post-payroll --pay-group {pay_group} --period-end {end}` posts it"
                 + stale_refusals_text(refused))


def _refusal_dict(r: Refusal) -> dict[str, Any]:
    return {"key": r.key, "kind": r.kind, "pay_group": r.pay_group, "period_end": r.period_end, "run_id": r.run_id,
            "legal_entity": entity(r.legal_entity), "problems": r.problems, "first_refused": r.first_at,
            "last_refused": r.last_at, "times": r.times}


def _refused(out: Output, refused: list[Refusal]) -> None:
    """Refused runs not posted nor skipped: a table, then each one's reasons and its way out on a line of its own."""
    if not refused:
        return
    table = Table(title="Refused, not posted", title_justify="left")
    for column, whole in (("Key", False), ("Kind", True), ("Entity", True), ("First refused (UTC)", False),
                          ("Times", True)):
        table.add_column(column, overflow="fold", no_wrap=whole, justify="right" if column == "Times" else "left")
    for r in refused:
        table.add_row(r.key, r.kind.replace("_", " "), (r.legal_entity or "").upper(),
                      r.first_at[:16].replace("T", " "), str(r.times))
    out.table(table)
    for r in refused:
        out.say(f"{what_refused(r)}: {'; '.join(r.problems)}; fix it and post again, or if it can never be posted "
                f"{skip_command(r.key)}", lead=("refused", "red"))


def tenants_status(out: Output, tenants: list[TenantStatus]) -> None:
    """``status --tenants DIR``: per tenant, each command's last run and the postings."""
    from ukg2d365.flows.history import posting_dict

    if out.json_mode:
        for t in tenants:
            r = t.report
            out.event("tenant", tenant=t.tenant, config=str(t.config_path), schedule=t.schedule, error=t.error,
                      counts=r.counts if r else None, runs=[run_record(run) for run in r.runs] if r else [],
                      last_by_command={c: run_record(run) for c, run in t.last_by_command.items()},
                      failed=[posting_dict(p) for p in r.failed] if r else [],
                      pending=[posting_dict(p) for p in r.pending] if r else [],
                      last_failure=t.last_failure)
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
    for t in tenants:  # the error beside "exit 3": what went wrong, on one line, cut at a word
        f = t.last_failure
        if f is not None:
            what = f["error"] or run_summary_text(f["summary"])
            out.say(f"{t.tenant}: {f['command']} exit {f['exit_code']} at {f['started_at'][:19].replace('T', ' ')} "
                    f"on {f['host']}: {cut(what, FAILURE_WIDTH)}", lead=("last failure", "red"))
    broken = sum(1 for t in tenants if t.error)
    out.summary(f"{len(tenants)} tenant(s)" + (f", {broken} whose ledger cannot be read" if broken else ""))


# A tenant's last failure is one line: its error cut at a word past this many characters (`--json status
# --tenants` has it whole).
FAILURE_WIDTH = 160


def cut(text: str, width: int) -> str:
    """``text`` on one line, at most ``width`` characters: cut at the last space before, marked with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    head = text[:width - 1]
    space = head.rfind(" ")
    return (head[:space] if space > width // 2 else head).rstrip(" ,;:(") + "…"


def _exit_text(run: dict[str, Any]) -> str:
    return "running" if run["exit_code"] is None else f"exit {run['exit_code']}"


# Below this many columns the status tables stack what they can (a 40-character key beside eight columns of
# states and amounts left each cell one character wide at 80 columns).
WIDE = 120
# Counters a run records for the benchmark and for diagnosis (timings, concurrency, request counts): in
# `--json status` and `audit run:N`, not in the table people read.
INTERNAL_COUNTERS = ("_seconds", "_concurrency", "_requests", "_throttled")


def run_summary_text(summary: dict[str, Any]) -> str:
    """What a run did, for people: its non-zero counts (a reconcile's verdicts by name), then its error."""
    parts: list[str] = []
    for key, value in summary.items():
        if key in ("error", "exit_code") or key.endswith(INTERNAL_COUNTERS):
            continue
        if isinstance(value, dict):
            parts += [f"{name} {count}" for name, count in value.items() if count]
        elif value not in (0, None, False, "", []):
            parts.append(f"{key.replace('_', ' ')} {value}")
    text = ", ".join(parts) or "nothing to do"
    if summary.get("error"):
        text += "; error: " + str(summary["error"])
    return text


def _runs_table(rows: list[dict[str, Any]], *, wide: bool = True) -> Table:
    runs = Table(title="Recent runs", title_justify="left")
    for column in ("#", "Command", "Started (UTC)", "User@host", "Exit", "Summary"):
        runs.add_column(column, overflow="fold", no_wrap=column in ("#", "Exit"))
    for r in rows:
        summary = json.loads(r["summary"]) if r["summary"] else {}
        started = r["started_at"][:19].replace("T", " " if wide else "\n")
        runs.add_row(str(r["id"]), r["command"], started, f"{r['user']}@{r['host']}",
                     "running" if r["exit_code"] is None else str(r["exit_code"]), run_summary_text(summary))
    return runs


def _postings_table_narrow(report: StatusReport) -> Table:
    """The postings on a narrow terminal: the key folds beside the ledger state, the journal (its legal entity
    under it), IsPosted and the total (debit equals credit in every journal); the rest is in the wide table,
    `--json status` and `audit KEY`."""
    postings = Table(title="Postings", title_justify="left")
    for column, whole, right in (("Key", False, False), ("Ledger", True, False), ("Journal", True, False),
                                 ("IsPosted", True, False), ("Total", True, True)):
        postings.add_column(column, overflow="fold", no_wrap=whole, justify="right" if right else "left")
    for p in report.shown:
        colour = {"posted": "green", "failed": "red", "sending": "yellow"}.get(p.status, "white")
        in_d365 = report.in_d365(p)
        shade = {"Yes": "green", "No": "yellow", "not in D365": "red"}.get(in_d365, "white")
        journal = (p.journal_batch_number or "-") + (f"\n{p.legal_entity.upper()}" if p.legal_entity else "")
        total = money(p.debit_total) if p.debit_total == p.credit_total else \
            f"Dr {money(p.debit_total)}\nCr {money(p.credit_total)}"
        postings.add_row(p.key, styled(p.status, colour), journal, styled(in_d365, shade), total)
    return postings


def _postings_table(report: StatusReport) -> Table:
    """One row per posting; its last error (long text) follows the table, so amounts are never squeezed."""
    postings = Table(title="Postings", title_justify="left")
    # amounts, numbers and states are never cut; the key, the journal and the time fold
    for column, whole, right in (("Key", False, False), ("Entity", True, False), ("Ledger", True, False),
                                 ("Journal", False, False), ("IsPosted", True, False), ("Lines", True, True),
                                 ("Debit", True, True), ("Credit", True, True), ("Updated (UTC)", False, False)):
        postings.add_column(column, overflow="fold", no_wrap=whole, justify="right" if right else "left")
    for p in report.shown:
        colour = {"posted": "green", "failed": "red", "sending": "yellow"}.get(p.status, "white")
        in_d365 = report.in_d365(p)
        shade = {"Yes": "green", "No": "yellow", "not in D365": "red"}.get(in_d365, "white")
        postings.add_row(p.key, (p.legal_entity or "").upper(), styled(p.status, colour), p.journal_batch_number or "-",
                         styled(in_d365, shade),
                         str(p.line_count), money(p.debit_total), money(p.credit_total),
                         p.updated_at[:16].replace("T", " "))
    return postings


POSTING_COLUMNS = (
    Column("key", "Key"), Column("marker", "Marker"), Column("status", "Status"),
    Column("journal_batch_number", "Journal"), Column("legal_entity", "Entity"), Column("line_count", "Lines", "count"),
    Column("debit_total", "Debit", "money"), Column("credit_total", "Credit", "money"),
    Column("updated_at", "Updated (UTC)"), Column("last_error", "Last error"),
)
# The fields of an audit event's detail that get a column of their own; the rest stays in `detail`.
DETAIL_COLUMNS = (
    Column("system", "System"), Column("method", "Method"), Column("path", "Path"),
    Column("http_status", "HTTP", "count"), Column("elapsed_ms", "ms", "count"), Column("op", "Operation"),
    Column("journal_batch_number", "Journal"), Column("first_line", "First line", "count"),
    Column("last_line", "Last line", "count"), Column("lines", "Lines", "count"), Column("ok", "OK"),
    Column("error", "Error"),
)
AUDIT_COLUMNS = (
    Column("id", "#", "count"), Column("at", "At (UTC)"), Column("run", "Run", "count"), Column("user", "User"),
    Column("host", "Host"), Column("command", "Command"), Column("kind", "Event"), *DETAIL_COLUMNS,
    Column("detail", "Detail"),
)


def recent_postings(out: Output, postings: list[Posting]) -> None:
    """``audit`` without a key: the latest postings, to pick a key from."""
    rows = Rows("postings", "Recent postings (give a key for its trail)", POSTING_COLUMNS)
    for p in postings:
        rows.add(key=p.key, marker=p.marker, status=p.status, journal_batch_number=p.journal_batch_number,
                 legal_entity=entity(p.legal_entity), line_count=p.line_count, debit_total=p.debit_total,
                 credit_total=p.credit_total, updated_at=p.updated_at[:19], last_error=p.last_error)
    out.export(rows, command="audit")
    for record in rows.json_records():
        out.event("posting", **record)
    if out.out.width >= WIDE:
        out.table(rows.table())
        return
    # a narrow terminal: what picks a key (debit equals credit in every journal); --format csv has every column
    table = rows.table(only=("key", "status", "journal_batch_number", "debit_total", "last_error"))
    table.caption = "--format csv (or a wider terminal) shows every column"
    out.table(table)


def _entity_upper(event: dict[str, Any]) -> dict[str, Any]:
    """An audit event whose detail names a legal entity (a DMF import's), spelt as everywhere else: upper case."""
    detail = event["detail"]
    if isinstance(detail, dict) and isinstance(detail.get("legal_entity"), str):
        return {**event, "detail": {**detail, "legal_entity": entity(detail["legal_entity"])}}
    return event


def audit_trail(out: Output, key: str, posting: Posting | None, events: list[dict[str, Any]]) -> None:
    """One record's trail: its posting line and a table for people; real columns in CSV; one JSON document."""
    from ukg2d365.flows.history import posting_dict

    rows = Rows("events", "Audit trail", AUDIT_COLUMNS)
    events = [_entity_upper(e) for e in events]
    for e in events:
        detail = dict(e["detail"]) if isinstance(e["detail"], dict) else {"value": e["detail"]}
        if "status" in detail and e["kind"] == "http":
            detail["http_status"] = detail.pop("status")
        broken_out = {c.key: detail.pop(c.key) for c in DETAIL_COLUMNS if c.key in detail}
        rows.add(id=e["id"], at=e["at"], run=e["run"], user=e["user"], host=e["host"], command=e["command"],
                 kind=e["kind"], **broken_out, detail=detail or None)
    posting_data = posting_dict(posting) if posting else None
    # JSON keeps each event's whole detail object (machines read it as one); CSV gets the real columns.
    out.export(rows, key=key, posting=posting_data, events=events)
    out.event("audit", key=key, posting=posting_data, events=events)
    if out.exporting:
        return
    if posting is None:
        out.say(key, style="bold")
    else:
        p = posting
        out.say(f"{p.key}  marker {p.marker}  status {p.status}  journal "
                f"{p.journal_batch_number or '-'}  lines {p.line_count} (from {p.source_lines} UKG lines, "
                f"source hash {p.source_hash[:12]})  debit {money(p.debit_total)}  credit "
                f"{money(p.credit_total)}")
    table = Table(title="Audit trail", title_justify="left")
    for column in ("At (UTC)", "Run", "Who", "Event", "Detail"):
        table.add_column(column, overflow="fold")
    for e in events:
        table.add_row(e["at"][:23].replace("T", " "), str(e["run"] or ""), f"{e['user']}@{e['host']}",
                      e["kind"], json.dumps(e["detail"], sort_keys=True))
    out.table(table)
