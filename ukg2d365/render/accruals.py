"""accrue-payroll for people and for --json: where each accrual's amounts come from, the journals, the summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ukg2d365.journal import JournalPlan
from ukg2d365.render import PREVIEW_ROWS, Output
from ukg2d365.render.payroll import (
    journal_counts,
    journal_fields,
    journal_table,
    refusal_outcomes,
    refused_since,
    skip_command,
)

if TYPE_CHECKING:  # only the types: rendering never runs a flow
    from ukg2d365.flows.accrue_payroll import AccrualPlan, AccrualSource
    from ukg2d365.flows.post_payroll import PayrollResult

BASIS_WORDS = {"calendar_days": "calendar days", "workdays": "workdays"}


def source_text(source: AccrualSource) -> str:
    """Which period straddles the month-end, its share, and which UKG run(s) the amounts come from."""
    head = f"pay group {source.pay_group}, month-end {source.month_end}"
    period = source.period
    if period is None or source.share is None:
        return f"{head}: {source.note}"
    text = (f"{head}: pay period {period.start} to {period.end}, {source.share} "
            f"{BASIS_WORDS.get(source.basis, source.basis)} in the month")
    runs = ", ".join(source.run_ids)
    if not runs:
        return f"{text}; {source.note}"
    if source.estimate:
        text += (f"; amounts from UKG run {runs}, the latest closed run (period ending {source.source_period_end}): "
                 f"an estimate, UKG has no run of the period ending {period.end} yet")
    else:
        text += f"; amounts from UKG run {runs}, the period's own run"
    return f"{text}; {source.note}" if source.note else text


def _title(journal: JournalPlan, verb: str) -> str:
    key = journal.key
    return (f"{verb}: pay group {key.pay_group}, month-end {key.period_end}, legal entity "
            f"{journal.legal_entity.upper()}, reverses on {journal.reverse_date}  [{key.marker}]")


def accrual_plan(out: Output, plan: AccrualPlan, *, dry_run: bool, detailed: bool, show_all: bool = False) -> None:
    """The plan; ``detailed`` adds each journal's table (preview and confirmation: at most PREVIEW_ROWS accounts
    unless ``show_all``), else one line each."""
    for pay_group in plan.not_due:
        out.event("accrual", pay_group=pay_group, status="nothing due")
        out.say(f"pay group {pay_group}: no month-end within payroll.lookback_days is due (each is accrued, or no "
                "pay period straddles it)")
    for source in plan.sources:
        out.event("accrual", pay_group=source.pay_group, month_end=source.month_end,
                  period_start=source.period.start if source.period else None,
                  period_end=source.period.end if source.period else None,
                  share=str(source.share) if source.share else None, basis=source.basis or None,
                  runs=list(source.run_ids), estimate=source.estimate, note=source.note or None)
        out.say(source_text(source))
    for journal in plan.to_post:
        number = plan.in_d365.get(journal.key.text)
        if number is not None:  # a lost or new ledger: D365 holds it already, nothing is sent
            out.event("plan", status="already in D365", journal_batch_number=number, **_fields(journal))
            out.say(f"{_title(journal, 'Accrual')}: already in D365 as {number}, matching the plan; "
                    f"{'would be recorded' if dry_run else 'recorded'} as posted, nothing sent")
            continue
        resumed = journal.key.text in plan.resumed
        out.event("plan", status="resume" if resumed else "would post" if dry_run else "to post", **_fields(journal))
        title = _title(journal, "Resume" if resumed else "Accrual")
        if detailed:
            out.table(journal_table(journal, title, limit=None if show_all else PREVIEW_ROWS))
        else:
            out.say(f"{title}: {len(journal.lines)} lines, debit {journal.debit_total:,.2f}, "
                    f"credit {journal.credit_total:,.2f}")
    for journal in plan.already_posted:
        out.event("plan", status="already posted", **_fields(journal))
        out.say(f"skipped {journal.key.text}: already posted")
    for journal in plan.changed_since_posting:
        out.warn(f"accrual {journal.key.text} was posted from other amounts than UKG holds now; it stays as posted "
                 f"and reverses on {journal.reverse_date}; nothing is posted again")
    for journal in plan.refused:
        out.event("plan", status="refused", problems=journal.problems, **_fields(journal))
        out.warn(f"refusing accrual {journal.key.text}, nothing is sent for it: " + "; ".join(journal.problems)
                 + refused_since(plan.refused_before.get(journal.key.text)))
    refusal_outcomes(out, plan)
    for refusal in plan.stale:
        out.event("accrual", pay_group=refusal.pay_group, month_end=refusal.period_end, key=refusal.key,
                  status="refused, older than the window, unposted")
        out.warn(f"accrual {refusal.key} was refused on {refusal.first_at[:10]} ({'; '.join(refusal.problems)}), "
                 "is not posted and its month-end is older than payroll.lookback_days, so --due leaves it: fix it "
                 f"and run `ukg2d365 accrue-payroll --month-end {refusal.period_end} --pay-group {refusal.pay_group}`, "
                 f"or if it can never be posted {skip_command(refusal.key)}")
    for message in plan.unattributed_errors:
        out.event("bad record", message=message)
        out.warn(message)


def _fields(journal: JournalPlan) -> dict[str, object]:
    return {**journal_fields(journal), "kind": journal.key.kind, "run_id": journal.run_ids,
            "reverse_date": journal.reverse_date}


def accrual_plan_summary(plan: AccrualPlan, *, dry_run: bool) -> str:
    """The summary line of a run that posts nothing: a dry run, or nothing new."""
    what = "dry run: would post" if dry_run else "nothing new to post:"
    in_d365 = f"{len(plan.in_d365)} already in D365; " if plan.in_d365 else ""
    return (f"{what} {len(plan.to_write)} accrual journal(s); {in_d365}{len(plan.already_posted)} already posted; "
            f"{len(plan.refused)} refused; {plan.lines_read} UKG lines read")


def accrual_summary(plan: AccrualPlan, result: PayrollResult) -> str:
    return journal_counts("accrual journals", plan, result, unposted="unposted, reversing")
