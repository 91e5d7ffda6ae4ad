"""post-payroll and replay for people and for --json: the plan, each posting's outcome, the summary line."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ukg2d365.journal import JournalPlan
from ukg2d365.render import PREVIEW_ROWS, Output, Table

if TYPE_CHECKING:  # only the types: rendering never runs a flow
    from ukg2d365.flows.journal_poster import PostOutcome
    from ukg2d365.flows.post_payroll import PayrollPlan, PayrollResult
    from ukg2d365.flows.replay import ReplayPlan, ReplayResult


def journal_table(journal: JournalPlan, title: str) -> Table:
    """Lines grouped by account and dimensions (what finance reviews), with totals."""
    grouped: dict[str, list[Decimal]] = {}
    for line in journal.lines:
        sums = grouped.setdefault(line.account, [Decimal(0), Decimal(0), Decimal(0)])
        sums[0] += line.debit
        sums[1] += line.credit
        sums[2] += 1
    table = Table(title=title, title_justify="left", show_footer=True)
    table.add_column("Account and dimensions", footer="Total")
    table.add_column("Lines", justify="right", footer=str(len(journal.lines)))
    table.add_column("Debit", justify="right", footer=f"{journal.debit_total:,.2f}")
    table.add_column("Credit", justify="right", footer=f"{journal.credit_total:,.2f}")
    for i, (account, (dr, cr, n)) in enumerate(sorted(grouped.items())):
        if i == PREVIEW_ROWS:
            table.add_row(f"... {len(grouped) - PREVIEW_ROWS} more accounts", "", "", "")
            break
        table.add_row(account, str(n), f"{dr:,.2f}" if dr else "", f"{cr:,.2f}" if cr else "")
    return table


def journal_fields(journal: JournalPlan) -> dict[str, Any]:
    k = journal.key
    return {
        "key": k.text, "company": k.company, "pay_group": k.pay_group, "period_end": k.period_end,
        "run_id": k.run_id, "legal_entity": journal.legal_entity.upper(), "marker": k.marker,
        "lines": len(journal.lines), "source_lines": journal.source_lines,
        "debit": journal.debit_total, "credit": journal.credit_total,
    }


# ---------------------------------------------------------------------- post-payroll


def payroll_plan(out: Output, plan: PayrollPlan, *, dry_run: bool, detailed: bool) -> None:
    """The plan; ``detailed`` adds the per-account tables (preview and confirmation), else one line each."""
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
            out.table(journal_table(journal, title))
        else:
            out.say(f"{title}: {len(journal.lines)} lines, debit {journal.debit_total:,.2f}, "
                    f"credit {journal.credit_total:,.2f}")
    _already_posted(out, plan.already_posted)
    for journal in plan.changed_since_posting:
        out.warn(f"UKG run {journal.key.run_id} ({journal.key.pay_group} {journal.key.period_end}) changed after "
                 f"it was posted; nothing is posted again. Compare with `ukg2d365 reconcile --run-id "
                 f"{journal.key.run_id}` and correct D365 by hand if needed")
    for journal in plan.refused:
        out.event("plan", status="refused", problems=journal.problems, **journal_fields(journal))
        out.warn(f"refusing UKG run {journal.key.run_id} ({journal.key.pay_group} {journal.key.period_end}), "
                 f"nothing is sent for it: " + "; ".join(journal.problems))
    for message in plan.unattributed_errors:
        out.event("bad record", message=message)
        out.warn(message)


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
        out.event("period", pay_group=pay_group, period_end=end, status="closed, older than the window, unposted")
        out.warn(f"pay group {pay_group} period {end} is closed but was never posted, and is older than "
                 f"payroll.lookback_days, so --due leaves it: post it with `ukg2d365 post-payroll "
                 f"--pay-group {pay_group} --period-end {end}`")
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
        table.add_row(j.key.pay_group, str(j.key.period_end), j.key.run_id, f"{j.debit_total:,.2f}",
                      f"{j.credit_total:,.2f}")
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


def posting_outcomes(out: Output, outcomes: Iterable[PostOutcome], *, replay: bool = False) -> None:
    """One line per journal sent: its number, or why it failed (replay's lines stay the shorter ones)."""
    for o in outcomes:
        out.event("posting", key=o.key, status=o.status, journal_batch_number=o.journal_batch_number,
                  lines_sent=o.lines_sent, recovered=o.recovered, error=o.error)
        if o.adopted and not replay:
            out.say(f"{o.key} -> journal {o.journal_batch_number} (already in D365, matching UKG; recorded as "
                    "posted, nothing sent)", lead=("found", "green"))
        elif o.status == "posted":
            # "posted" in the ledger means "in D365, verified"; the journal itself is left unposted for finance
            # (no OData action posts a general journal), so the words say what D365 shows.
            recovered = ", recovered" if o.recovered and not replay else ""
            out.say(f"{o.key} -> journal {o.journal_batch_number} in D365, unposted ({o.lines_sent} lines "
                    f"sent{recovered})", lead=("created", "green"))
        else:
            out.warn(f"{o.key}: {o.error}")


def found_in_d365(result: PayrollResult) -> int:
    """Journals D365 already held (a lost or new ledger): adopted, nothing sent."""
    return sum(1 for o in result.outcomes if o.adopted)


def posted_count(result: PayrollResult) -> int:
    """Journals this run sent (adopted ones are counted apart)."""
    return sum(1 for o in result.outcomes if o.status == "posted") - found_in_d365(result)


def payroll_summary(plan: PayrollPlan, result: PayrollResult) -> str:
    found, created = found_in_d365(result), posted_count(result)
    unposted = (" in D365, unposted (post them in D365, or let the recurring Post journals batch job do it)"
                if created else "")
    return (f"created {created} journal(s){unposted}; " + (f"{found} found in D365 and recorded; " if found else "")
            + f"{len(result.failed)} failed; {len(plan.already_posted)} already posted; {len(plan.refused)} refused")


# ---------------------------------------------------------------------- replay


def replay_plan(out: Output, plan: ReplayPlan, *, dry_run: bool) -> None:
    for key in plan.unknown:
        out.warn(f"no posting {key!r} in the ledger")
    for p in plan.already_posted:
        out.event("replay", key=p.key, status="already posted")
        out.say(f"skipped {p.key}: already posted as journal {p.journal_batch_number}")
    for p in plan.to_replay:
        out.event("replay", key=p.key, status="would replay" if dry_run else "replay",
                  previous_status=p.status, last_error=p.last_error)
        out.say(f"{'would replay' if dry_run else 'replaying'} {p.key} ({p.status}; "
                f"{p.line_count} lines){': ' + p.last_error if p.last_error else ''}")


def replay_plan_summary(plan: ReplayPlan, *, dry_run: bool) -> str:
    if dry_run:
        return f"dry run: would replay {len(plan.to_replay)} posting(s); {len(plan.already_posted)} already posted"
    return f"nothing to replay; {len(plan.already_posted)} already posted"


def replay_summary(result: ReplayResult) -> str:
    return (f"replayed {len(result.outcomes)} posting(s); {len(result.outcomes) - len(result.failed)} posted; "
            f"{len(result.failed)} failed")
