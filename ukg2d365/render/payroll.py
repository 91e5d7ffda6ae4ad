"""post-payroll and replay for people and for --json: the plan, each posting's outcome, the summary line."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Iterator
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from rich.table import Table as RichTable

from ukg2d365.journal import JournalPlan
from ukg2d365.render import PREVIEW_ROWS, Column, Output, Rows, Table, entity, money

if TYPE_CHECKING:  # only the types: rendering never runs a flow
    from ukg2d365.flows.journal_poster import PostOutcome
    from ukg2d365.flows.post_payroll import PayrollPlan, PayrollResult
    from ukg2d365.flows.replay import ReplayPlan, ReplayResult
    from ukg2d365.ledger import Refusal


MORE_HINT = "--all shows every one; --format csv exports every line"

LINE_COLUMNS = (
    Column("company", "Company"), Column("pay_group", "Pay group"), Column("period_end", "Period end"),
    Column("run_id", "UKG run"), Column("marker", "Marker"), Column("status", "Status"),
    Column("legal_entity", "Legal entity"), Column("journal_name", "Journal name"),
    Column("journal_batch_number", "Journal"), Column("trans_date", "TransDate"), Column("currency", "Currency"),
    Column("description", "Description"), Column("line", "Line", "count"),
    Column("account", "Account and dimensions"), Column("debit", "Debit", "money"),
    Column("credit", "Credit", "money"), Column("text", "Text"),
)


def journal_table(journal: JournalPlan, title: str, *, limit: int | None = PREVIEW_ROWS) -> Table:
    """Lines grouped by account and dimensions (what finance reviews), with totals; ``limit`` None shows all."""
    grouped: dict[str, list[Decimal]] = {}
    for line in journal.lines:
        sums = grouped.setdefault(line.account, [Decimal(0), Decimal(0), Decimal(0)])
        sums[0] += line.debit
        sums[1] += line.credit
        sums[2] += 1
    table = Table(title=title, title_justify="left", show_footer=True)
    table.add_column("Account and dimensions", footer="Total", overflow="fold")
    table.add_column("Lines", justify="right", footer=str(len(journal.lines)))
    table.add_column("Debit", justify="right", footer=money(journal.debit_total))
    table.add_column("Credit", justify="right", footer=money(journal.credit_total))
    for i, (account, (dr, cr, n)) in enumerate(sorted(grouped.items())):
        if limit is not None and i == limit:
            table.add_row(f"... {len(grouped) - limit} more accounts", "", "", "")
            table.caption = MORE_HINT
            break
        table.add_row(account, str(n), money(dr) if dr else "", money(cr) if cr else "")
    return table


def header_facts(journal: JournalPlan) -> dict[str, Any]:
    """What the journal header in D365 will say, and how its lines travel there (per journal: each has its own)."""
    texts = journal.line_texts
    return {
        "legal_entity": journal.legal_entity.upper(), "journal_name": journal.journal_name,
        "trans_date": journal.trans_date,
        "currency": journal.currency, "description": journal.description,
        "line_text": texts[0] if len(texts) == 1 else texts, "route": journal.route,
    }


def header_grid(journal: JournalPlan) -> RichTable:
    """The header facts as label/value pairs, two per row: narrow enough for an 80-column terminal."""
    facts = header_facts(journal)
    texts = journal.line_texts
    line_text = texts[0] if len(texts) == 1 else f"{len(texts)} texts, e.g. {texts[0]!r}" if texts else "-"
    pairs = [("Legal entity", facts["legal_entity"]), ("Journal name", facts["journal_name"]),
             ("TransDate", str(facts["trans_date"])), ("Currency", facts["currency"]),
             ("Route", facts["route"]), ("Lines", f"{len(journal.lines)} from {journal.source_lines} UKG lines")]
    grid = Table.grid(padding=(0, 2))
    for _ in range(2):
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(overflow="fold")
    for i in range(0, len(pairs), 2):
        (a, x), (b, y) = pairs[i], pairs[i + 1]
        grid.add_row(a, x, b, y)
    wide = Table.grid(padding=(0, 2))
    wide.add_column(style="dim", no_wrap=True)
    wide.add_column(overflow="fold")
    wide.add_row("Description", facts["description"])
    wide.add_row("Line text", line_text)
    outer = Table.grid()
    outer.add_row(grid)
    outer.add_row(wide)
    return outer


def journal_fields(journal: JournalPlan) -> dict[str, Any]:
    k = journal.key
    return {
        "key": k.text, "company": k.company, "pay_group": k.pay_group, "period_end": k.period_end,
        "run_id": k.run_id, "marker": k.marker, "lines": len(journal.lines), "source_lines": journal.source_lines,
        "debit": journal.debit_total, "credit": journal.credit_total, **header_facts(journal),
    }


# ---------------------------------------------------------------------- post-payroll


def payroll_plan(out: Output, plan: PayrollPlan, *, dry_run: bool, detailed: bool, show_all: bool = False) -> None:
    """The plan. ``detailed`` (preview and confirmation): each journal's header facts and its accounts, at most
    PREVIEW_ROWS of them unless ``show_all``; otherwise one line per journal."""
    _due_periods(out, plan)
    verb = "would post" if dry_run else "to post"
    for journal in plan.to_post:
        number = plan.in_d365.get(journal.key.text)
        if number is not None:  # a lost or new ledger: D365 holds it already, nothing is sent
            out.event("plan", status="already in D365", journal_batch_number=number, **journal_fields(journal))
            out.say(f"pay group {journal.key.pay_group}, period ending {journal.key.period_end}, UKG run "
                    f"{journal.key.run_id} [{journal.key.marker}]: already in D365 as {number}, matching UKG; "
                    f"{'would be recorded' if dry_run else 'recorded'} as posted, nothing sent")
            continue
        resumed = journal.key.text in plan.resumed
        out.event("plan", status="resume" if resumed else verb, **journal_fields(journal))
        title = (f"{'Resume' if resumed else 'Journal'}: pay group {journal.key.pay_group}, period ending "
                 f"{journal.key.period_end}, UKG run {journal.key.run_id}, legal entity "
                 f"{journal.legal_entity.upper()}  [{journal.key.marker}]")
        if detailed:
            out.say(title, style="bold")
            out.table(header_grid(journal))
            out.table(journal_table(journal, "", limit=None if show_all else PREVIEW_ROWS))
        else:
            out.say(f"{title}: {len(journal.lines)} lines, debit {money(journal.debit_total)}, "
                    f"credit {money(journal.credit_total)}, {entity(journal.legal_entity)} {journal.journal_name}")
    _already_posted(out, plan.already_posted)
    for journal in plan.changed_since_posting:
        out.warn(f"UKG run {journal.key.run_id} ({journal.key.pay_group} {journal.key.period_end}) changed after "
                 f"it was posted; nothing is posted again. Compare with `ukg2d365 reconcile --run-id "
                 f"{journal.key.run_id}` and correct D365 by hand if needed")
    for journal in plan.refused:
        out.event("plan", status="refused", problems=journal.problems, **journal_fields(journal))
        borne = f", the part borne by {journal.key.entity}" if journal.key.entity else ""
        out.warn(f"refusing UKG run {journal.key.run_id} ({journal.key.pay_group} {journal.key.period_end}){borne}, "
                 f"nothing is sent for it: " + "; ".join(journal.problems)
                 + refused_since(plan.refused_before.get(journal.key.text)))
    refusal_outcomes(out, plan)
    for message in plan.unattributed_errors:
        out.event("bad record", message=message)
        out.warn(message)


def skip_command(key: str) -> str:
    return f"`ukg2d365 replay --skip {shlex.quote(key)} --reason TEXT`"


def refused_since(refusal: Refusal | None) -> str:
    """What a refusal the ledger held already adds to the warning: since when, and the way out."""
    if refusal is None:
        return ""
    return (f" (refused before: {refusal.times} time(s) since {refusal.first_at[:10]}; its period stays due until it "
            f"posts: fix it, or if it can never be posted acknowledge it with {skip_command(refusal.key)})")


def what_refused(refusal: Refusal) -> str:
    if refusal.kind == "accrual":
        return f"accrual {refusal.key}"
    run = f"UKG run {refusal.run_id} ({refusal.pay_group} {refusal.period_end})"
    if "/@" in refusal.key:  # a journal of the part of the run another legal entity bears (journal.PostingKey)
        return f"{run}, the part borne by {refusal.key.rpartition('/@')[2]}"
    return run


def refusal_outcomes(out: Output, plan: PayrollPlan) -> None:
    """Skipped runs, left alone as an operator decided; refused runs no longer planned, which need a person."""
    for key, refusal in sorted(plan.skipped.items()):
        out.event("plan", status="skipped", key=key, kind=refusal.kind, pay_group=refusal.pay_group,
                  period_end=refusal.period_end, run_id=refusal.run_id, skipped_at=refusal.skipped_at,
                  reason=refusal.skip_reason)
        out.say(f"left alone: {what_refused(refusal)}, refused and skipped on {(refusal.skipped_at or '')[:10]} "
                f"({refusal.skip_reason}); `ukg2d365 audit {shlex.quote(key)}` says who skipped it")
    for refusal in plan.vanished:
        source = "is no longer planned" if refusal.kind == "accrual" else "UKG no longer returns it"
        out.event("plan", status="refused, not found again", key=refusal.key, kind=refusal.kind,
                  pay_group=refusal.pay_group, period_end=refusal.period_end, run_id=refusal.run_id,
                  first_refused=refusal.first_at, problems=refusal.problems)
        out.warn(f"{what_refused(refusal)} was refused on {refusal.first_at[:10]} ({'; '.join(refusal.problems)}) "
                 f"and {source}; it stays due until it posts: if it can never be posted (a run UKG voided), "
                 f"acknowledge it with {skip_command(refusal.key)}")


def stale_refusals_text(refused: list[Refusal]) -> str:
    """A stale period's refused runs, each with its way out."""
    if not refused:
        return ""
    return "; refused there: " + "; ".join(
        f"{what_refused(r)}: {'; '.join(r.problems)} (if it can never be posted: {skip_command(r.key)})"
        for r in refused)


def confirmation(plan: PayrollPlan, base_url: str) -> str:
    """The question asked on a terminal before anything is written: what, where, into which journals."""
    journals = plan.to_write
    lines = sum(len(j.lines) for j in journals)
    where = sorted({f"{entity(j.legal_entity)} {j.journal_name}" for j in journals})
    return (f"Create {len(journals)} journal(s), {lines} lines, in D365 {base_url} "
            f"(legal entity and journal name: {', '.join(where)}), left unposted for finance?")


def payroll_export(out: Output, plan: PayrollPlan, *, dry_run: bool, result: PayrollResult | None = None,
                   command: str = "post-payroll") -> None:
    """--format csv|json: every planned line with its journal's header facts (CSV), and the journals (JSON).

    Also accrue-payroll's (``command``): its journals' run is the UKG run(s) the amounts come from, and the JSON
    names the day each accrual reverses."""
    outcomes = {o.key: o for o in result.outcomes} if result is not None else {}
    rows = Rows("lines", "Journal lines", LINE_COLUMNS)
    journals = []
    for journal in plan.to_post:
        k = journal.key
        outcome = outcomes.get(k.text)
        number = plan.in_d365.get(k.text) or (outcome.journal_batch_number if outcome else None)
        status = _journal_status(plan, journal, dry_run=dry_run, outcome=outcome)
        reverses = {"reverse_date": journal.reverse_date} if journal.reverse_date else {}
        journals.append({**journal_fields(journal), **reverses, "status": status, "journal_batch_number": number,
                         "error": outcome.error if outcome else None})
        if out.wants_export:  # the lines' records are made as the export is written, read again from the plan
            rows.add_later(partial(_line_records, journal, status, number))
    out.export(rows, command=command, dry_run=dry_run, journals=journals,
               already_posted=[journal_fields(j) for j in plan.already_posted],
               refused=[{**journal_fields(j), "problems": j.problems} for j in plan.refused],
               skipped=sorted(plan.skipped), refused_not_found=[r.key for r in plan.vanished],
               problems=plan.unattributed_errors)


def _line_records(journal: JournalPlan, status: str, number: str | None) -> Iterator[dict[str, Any]]:
    """A journal's lines as export records, one at a time as its planned lines are read (from memory, or from
    the temporary file a large journal spills to): a journal of any size is exported in bounded memory."""
    k, facts = journal.key, header_facts(journal)
    head = {"company": k.company, "pay_group": k.pay_group, "period_end": k.period_end, "run_id": journal.run_ids,
            "marker": k.marker, "status": status, "legal_entity": entity(journal.legal_entity),
            "journal_name": journal.journal_name, "journal_batch_number": number, "trans_date": journal.trans_date,
            "currency": journal.currency, "description": facts["description"]}
    for line in journal.lines:
        yield {**head, "line": line.line_number, "account": line.account, "debit": line.debit, "credit": line.credit,
               "text": line.text}


def _journal_status(plan: PayrollPlan, journal: JournalPlan, *, dry_run: bool, outcome: PostOutcome | None) -> str:
    key = journal.key.text
    if outcome is not None:
        return "found in D365" if outcome.adopted else "created, unposted" if outcome.status == "posted" \
            else outcome.status
    if key in plan.in_d365:
        return "already in D365"
    if key in plan.resumed:
        return "would resume" if dry_run else "resume"
    return "would post" if dry_run else "to post"


def _due_periods(out: Output, plan: PayrollPlan) -> None:
    due = plan.due
    if due is None:
        return
    for pay_group, end in sorted(due.open):
        out.event("period", pay_group=pay_group, period_end=end, status="open")
    if due.open:
        out.say("Open pay periods (left alone): " + ", ".join(f"{g} {d}" for g, d in sorted(due.open)))
    for pay_group, end in sorted(due.already_posted):
        out.event("period", pay_group=pay_group, period_end=end, status="already posted")
    for pay_group, end in sorted(due.stale):
        refused = [r for r in due.refused if (r.pay_group, r.period_end) == (pay_group, end.isoformat())]
        out.event("period", pay_group=pay_group, period_end=end, status="closed, older than the window, unposted",
                  refused=[r.key for r in refused])
        out.warn(f"pay group {pay_group} period {end} is closed but was never posted, and is older than "
                 f"payroll.lookback_days, so --due leaves it: post it with `ukg2d365 post-payroll "
                 f"--pay-group {pay_group} --period-end {end}`" + stale_refusals_text(refused))
    for pay_group, end in plan.runs_without_gl:
        out.event("period", pay_group=pay_group, period_end=end, status="closed, no GL run yet")
        out.warn(f"pay group {pay_group} period {end} is closed but UKG has no GL run for it yet")


def _already_posted(out: Output, journals: list[JournalPlan]) -> None:
    for journal in journals:
        out.event("plan", status="already posted", **journal_fields(journal))
    if not journals:
        return
    table = Table(title="Skipped: already posted", title_justify="left")
    for column in ("Pay group", "Period end", "UKG run", "Debit", "Credit"):
        table.add_column(column)
    for j in journals:
        table.add_row(j.key.pay_group, str(j.key.period_end), j.key.run_id, money(j.debit_total),
                      money(j.credit_total))
    out.table(table)


def payroll_counts(plan: PayrollPlan) -> dict[str, int]:
    """What the run's summary records about the plan."""
    return {"to_post": len(plan.to_write), "in_d365": len(plan.in_d365),
            "already_posted": len(plan.already_posted), "refused": len(plan.refused),
            "lines_read": plan.lines_read}


def payroll_plan_summary(plan: PayrollPlan, *, dry_run: bool) -> str:
    """The summary line of a run that posts nothing: a dry run, or nothing new."""
    what = "dry run: would post" if dry_run else "nothing new to post:"
    posted_before = len(plan.already_posted) + (len(plan.due.already_posted) if plan.due else 0)
    in_d365 = f"{len(plan.in_d365)} already in D365; " if plan.in_d365 else ""
    return (f"{what} {len(plan.to_write)} journal(s); {in_d365}{posted_before} already posted; "
            f"{len(plan.refused)} refused; {plan.lines_read} UKG lines read")


# What finance does with a journal ukg2d365 created: D365 shows it unposted (IsPosted No).
POST_IT = "post it in D365, or let the recurring Post journals batch job do it"


def posting_outcomes(out: Output, outcomes: Iterable[PostOutcome], *, replay: bool = False) -> None:
    """One line per journal sent: its number, or why it failed (replay's lines stay the shorter ones)."""
    for o in outcomes:
        out.event("posting", key=o.key, status=o.status, journal_batch_number=o.journal_batch_number,
                  lines_sent=o.lines_sent, recovered=o.recovered, error=o.error)
        if o.adopted and not replay:
            out.say(f"journal {o.journal_batch_number} already in D365 for {o.key}, matching UKG; recorded, "
                    "nothing sent", lead=("found", "green"))
        elif o.status == "posted":
            # "posted" in the ledger means "in D365, verified"; the journal itself is left unposted for finance
            # (no OData action posts a general journal), so the words say what D365 shows, once per journal:
            # the summary line only counts.
            recovered = ", recovered" if o.recovered and not replay else ""
            out.say(f"journal {o.journal_batch_number} in D365 for {o.key} ({o.lines_sent} lines sent{recovered}), "
                    f"unposted: {POST_IT}", lead=("created", "green"))
        else:
            out.warn(f"{o.key}: {o.error}")


def found_in_d365(result: PayrollResult) -> int:
    """Journals D365 already held (a lost or new ledger): adopted, nothing sent."""
    return sum(1 for o in result.outcomes if o.adopted)


def posted_count(result: PayrollResult) -> int:
    """Journals this run sent (adopted ones are counted apart)."""
    return sum(1 for o in result.outcomes if o.status == "posted") - found_in_d365(result)


def journal_counts(what: str, plan: PayrollPlan, result: PayrollResult, *, unposted: str = "unposted") -> str:
    """The summary line after journals were sent: counts only (each journal's own line said what to do with it)."""
    found = found_in_d365(result)
    return (f"{what}: {posted_count(result)} created in D365 ({unposted}); "
            + (f"{found} found in D365 and recorded; " if found else "")
            + f"{len(result.failed)} failed; {len(plan.already_posted)} already posted; {len(plan.refused)} refused")


def payroll_summary(plan: PayrollPlan, result: PayrollResult) -> str:
    return journal_counts("journals", plan, result)


# ---------------------------------------------------------------------- replay


def replay_plan(out: Output, plan: ReplayPlan, *, dry_run: bool) -> None:
    for key in plan.unknown:
        out.warn(f"no posting {key!r} in the ledger")
    for why in plan.not_skippable:
        out.event("skip", status="refused", message=why)
        out.warn(why)
    for r in plan.already_skipped:
        out.event("skip", key=r.key, status="already skipped", skipped_at=r.skipped_at, reason=r.skip_reason)
        out.say(f"{r.key}: already skipped on {(r.skipped_at or '')[:10]} ({r.skip_reason})")
    for r in plan.to_skip:
        out.event("skip", key=r.key, status="would skip" if dry_run else "skip", kind=r.kind,
                  pay_group=r.pay_group, period_end=r.period_end, run_id=r.run_id, problems=r.problems,
                  reason=plan.reason)
        out.say(f"{'would skip' if dry_run else 'skipping'} {what_refused(r)}, refused {r.times} time(s) since "
                f"{r.first_at[:10]}: {'; '.join(r.problems)}")
    for p in plan.already_posted:
        out.event("replay", key=p.key, status="already posted")
        out.say(f"skipped {p.key}: already posted as journal {p.journal_batch_number}")
    for p in plan.to_replay:
        out.event("replay", key=p.key, status="would replay" if dry_run else "replay",
                  previous_status=p.status, last_error=p.last_error)
        out.say(f"{'would replay' if dry_run else 'replaying'} {p.key} ({p.status}; "
                f"{p.line_count} lines){': ' + p.last_error if p.last_error else ''}")


REPLAY_COLUMNS = (
    Column("key", "Posting key"), Column("marker", "Marker"), Column("previous_status", "Ledger status"),
    Column("lines", "Lines", "count"), Column("debit", "Debit", "money"), Column("credit", "Credit", "money"),
    Column("last_error", "Last error"), Column("outcome", "Outcome"), Column("journal_batch_number", "Journal"),
    Column("error", "Error"),
)


def skip_confirmation(plan: ReplayPlan) -> str:
    return (f"Skip {len(plan.to_skip)} refused run(s) for good (never posted; --due and status leave them alone), "
            f"reason {plan.reason!r}?")


def skip_summary(plan: ReplayPlan, *, dry_run: bool) -> str:
    what = "dry run: would skip" if dry_run else "skipped"
    return (f"{what} {len(plan.to_skip)} refused run(s); {len(plan.already_skipped)} already skipped; "
            f"{len(plan.not_skippable)} cannot be skipped")


def replay_confirmation(plan: ReplayPlan) -> str:
    lines = sum(p.line_count for p in plan.to_replay)
    return (f"Replay {len(plan.to_replay)} posting(s), {lines} lines, into D365 (recovery first: nothing is sent "
            "twice)?")


def replay_export(out: Output, plan: ReplayPlan, *, dry_run: bool, result: ReplayResult | None = None) -> None:
    """--format csv|json: one row per posting named or failed, with what happened to it."""
    outcomes = {o.key: o for o in result.outcomes} if result is not None else {}
    rows = Rows("postings", "Replay", REPLAY_COLUMNS)
    for p in plan.to_replay + plan.already_posted:
        o = outcomes.get(p.key)
        if p in plan.already_posted:
            outcome = "already posted"
        elif o is None:
            outcome = "would replay" if dry_run else "not sent"
        else:
            outcome = "created, unposted" if o.status == "posted" else o.status
        rows.add(key=p.key, marker=p.marker, previous_status=p.status, lines=p.line_count, debit=p.debit_total,
                 credit=p.credit_total, last_error=p.last_error, outcome=outcome,
                 journal_batch_number=o.journal_batch_number if o else p.journal_batch_number,
                 error=o.error if o else None)
    for r in plan.to_skip + plan.already_skipped:
        rows.add(key=r.key, previous_status="refused", last_error="; ".join(r.problems),
                 outcome="already skipped" if r in plan.already_skipped else "would skip" if dry_run else "skipped")
    out.export(rows, command="replay", dry_run=dry_run, unknown=plan.unknown, not_skippable=plan.not_skippable)


def replay_plan_summary(plan: ReplayPlan, *, dry_run: bool) -> str:
    if dry_run:
        return f"dry run: would replay {len(plan.to_replay)} posting(s); {len(plan.already_posted)} already posted"
    return f"nothing to replay; {len(plan.already_posted)} already posted"


def replay_summary(result: ReplayResult) -> str:
    return (f"replayed {len(result.outcomes)} posting(s); {len(result.outcomes) - len(result.failed)} posted; "
            f"{len(result.failed)} failed")
