"""Month-end labor accruals: the month's share of a pay period that straddles the month-end. Pure; no I/O.

A bi-weekly period of 14 days with 4 of them in November holds 4/14 of its labor cost in November, but
its pay run books all of it in December. accrue-payroll books the 4/14 at the November month-end, as a
reversing entry (ReverseEntry, ReverseDate on LedgerJournalLines) that D365 undoes on December 1st.

Amounts are exact: each line's share is rounded to the currency's precision half away from zero from the
exact fraction (integers, never float), and the difference between the rounded lines and the rounded
share of their total (a few cents at most) goes onto the largest line, so the total accrued is itself
the share of the total to the cent and the liability line balances the journal exactly.
"""

from __future__ import annotations

import calendar
import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Literal

from ukg2d365.journal import LINE_TEXT_MAX, AccrualKey, JournalPlan, PlannedLine, PlannedLines
from ukg2d365.mapping import LedgerAccount

Basis = Literal["calendar_days", "workdays"]


def month_end_of(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def is_month_end(day: date) -> bool:
    return day == month_end_of(day)


def previous_month_end(day: date) -> date:
    """The last month-end strictly before ``day``."""
    return day.replace(day=1) - timedelta(days=1)


def month_ends_between(first: date, last: date) -> list[date]:
    """Every month-end M with first <= M <= last, oldest first."""
    ends = []
    current = month_end_of(first)
    while current <= last:
        ends.append(current)
        current = month_end_of(current + timedelta(days=1))
    return ends


def straddles(start: date, end: date, month_end: date) -> bool:
    """The period starts on or before the month-end and ends after it."""
    return start <= month_end < end


def _days(start: date, end: date, basis: Basis, workdays: Collection[int]) -> int:
    count = (end - start).days + 1
    if count <= 0:
        return 0
    if basis == "calendar_days":
        return count
    return sum(1 for i in range(count) if (start + timedelta(days=i)).weekday() in workdays)


@dataclass(frozen=True)
class Share:
    """The month's part of a pay period: ``days_in_month`` of ``days_in_period`` (calendar days or workdays)."""

    days_in_month: int
    days_in_period: int

    def __str__(self) -> str:
        return f"{self.days_in_month}/{self.days_in_period}"


WEEKDAYS_MON_FRI = frozenset(range(5))


def period_share(start: date, end: date, month_end: date, basis: Basis = "calendar_days",
                 workdays: Collection[int] = WEEKDAYS_MON_FRI) -> Share:
    """The share of the period [start, end] that falls on or before ``month_end``.

    ``workdays`` holds weekday numbers (Monday 0) counted under the ``workdays`` basis.
    """
    if end < start:
        raise ValueError(f"pay period ends ({end}) before it starts ({start})")
    in_month = _days(start, min(end, month_end), basis, workdays)
    return Share(in_month, _days(start, end, basis, workdays))


def _round_half_away(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded to an integer, halves away from zero (denominator > 0)."""
    quotient, remainder = divmod(abs(numerator), denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    return quotient if numerator >= 0 else -quotient


def allocate(amounts: Sequence[Decimal], share: Share, precision: int = 2) -> list[Decimal]:
    """Each amount's share, to ``precision`` places, summing exactly to the share of their total.

    The residue of rounding line by line goes onto the largest line (the largest amount by size; the first
    of equals).
    """
    scale = 10**precision
    unit = Decimal(1).scaleb(-precision)
    if share.days_in_period == 0:
        return [unit * 0 for _ in amounts]
    minor = []
    for amount in amounts:
        scaled = amount * scale
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{amount} has more than {precision} decimal places")
        minor.append(int(scaled))
    shares = [_round_half_away(m * share.days_in_month, share.days_in_period) for m in minor]
    total = _round_half_away(sum(minor) * share.days_in_month, share.days_in_period)
    if shares:
        largest = max(range(len(minor)), key=lambda i: (abs(minor[i]), -i))
        shares[largest] += total - sum(shares)
    return [Decimal(s).scaleb(-precision).quantize(unit) for s in shares]


@dataclass(frozen=True)
class AccrualLine:
    account: str  # AccountDisplayValue
    debit: Decimal
    credit: Decimal
    source: Decimal  # the period's amount (debits minus credits) it is the share of; 0 on the liability line
    item: int | None = None  # the position in ``amounts`` it is the share of; None on the liability line


def accrual_lines(amounts: Iterable[tuple[str, Decimal]], share: Share, liability: str,
                  precision: int = 2) -> list[AccrualLine]:
    """Expense shares (debit; a net credit as credit) and the liability line that balances them.

    ``amounts``: (display value, debits minus credits of the period) per accrued account and dimensions.
    Lines whose share is zero are left out; an empty list when nothing is to accrue.
    """
    items = [(i, account, amount) for i, (account, amount) in enumerate(amounts) if amount != 0]
    shares = allocate([amount for _, _, amount in items], share, precision)
    zero = Decimal(1).scaleb(-precision) * 0
    lines = [AccrualLine(account, s if s > 0 else zero, -s if s < 0 else zero, amount, i)
             for (i, account, amount), s in zip(items, shares, strict=True) if s != 0]
    total = sum((s for s in shares), zero)
    if total != 0:
        lines.append(AccrualLine(liability, -total if total < 0 else zero, total if total > 0 else zero, zero))
    return lines  # shares that cancel out exactly balance without a liability line


@dataclass(frozen=True)
class SourceRun:
    """One UKG run the accrual takes its amounts from: its journals (one per legal entity, as post-payroll
    plans them) and the account + dimensions each display value stands for."""

    run_id: str
    journals: Sequence[JournalPlan]
    accounts: Mapping[str, LedgerAccount]


@dataclass
class AccrualJournals:
    journals: list[JournalPlan]
    problems: list[str]  # the source runs' problems: every journal carries them, so none is posted


@dataclass(frozen=True)
class AccrualRules:
    """What accruals config and D365's ledger format say about every accrual journal."""

    accounts: frozenset[str]  # the accrued UKG accounts
    liability_account: str  # D365 main account
    liability_display: str  # its AccountDisplayValue (other segments blank)
    line_text: str
    precision: int = 2


@dataclass
class _Sources:
    """The source runs, summed: per entity, debits minus credits by (display value, UKG account)."""

    nets: dict[str, dict[tuple[str, str], Decimal]]
    references: dict[str, LedgerAccount]
    problems: list[str]
    source_lines: int
    source_hash: str
    run_ids: tuple[str, ...]


def _sum_sources(runs: Sequence[SourceRun], share: Share, rules: AccrualRules) -> _Sources:
    zero = Decimal(1).scaleb(-rules.precision) * 0
    nets: dict[str, dict[tuple[str, str], Decimal]] = {}
    problems: dict[str, None] = {}
    references: dict[str, LedgerAccount] = {}
    digest = hashlib.sha256(f"{share}|{rules.liability_display}|{sorted(rules.accounts)}".encode())
    source_lines = 0
    for run in sorted(runs, key=lambda r: r.run_id):
        references.update(run.accounts)
        if run.journals:  # every entity's journal of a run carries the whole run's hash and line count
            source_lines += run.journals[0].source_lines
            digest.update(f"{run.run_id}|{run.journals[0].source_hash}\n".encode())
        for journal in run.journals:
            problems.update((f"UKG run {run.run_id}: {p}", None) for p in journal.problems)
            per = nets.setdefault(journal.legal_entity, {})
            for line in journal.lines:
                if line.source_account in rules.accounts:
                    key = (line.account, line.source_account)
                    per[key] = per.get(key, zero) + line.debit - line.credit
    return _Sources(nets, references, list(problems), source_lines, digest.hexdigest(),
                    tuple(sorted(r.run_id for r in runs)))


def accrual_journals(pay_group: str, month_end: date, share: Share, runs: Sequence[SourceRun],
                     rules: AccrualRules) -> AccrualJournals:
    """One reversing accrual journal per legal entity of the runs, each balanced by its own liability line.

    Per entity, the debits minus the credits of every line booking an accrued UKG account are summed by
    display value (main account and dimensions) and UKG account, and ``share`` of each is accrued
    (:func:`accrual_lines`). The intercompany lines of a run are no UKG account's, so each entity accrues
    the labor it bears. A problem of a source run (unmapped code, incomplete run, ...) goes on every
    journal: an accrual of half a run would be wrong. An entity whose shares are all zero gets no journal.
    """
    sources = _sum_sources(runs, share, rules)
    journals = []
    for entity, per in sorted(sources.nets.items()):
        if entity:  # "": a company no legal entity pays, which its problem names
            journal = _entity_journal(pay_group, month_end, share, entity, sorted(per.items()), sources, rules)
            if journal is not None:
                journals.append(journal)
    return AccrualJournals(journals, sources.problems)


def _entity_journal(pay_group: str, month_end: date, share: Share, entity: str,
                    items: list[tuple[tuple[str, str], Decimal]], sources: _Sources,
                    rules: AccrualRules) -> JournalPlan | None:
    lines = accrual_lines([(display, net) for (display, _), net in items], share, rules.liability_display,
                          rules.precision)
    if not lines:
        return None
    planned = []
    used: list[LedgerAccount] = []
    for number, ln in enumerate(lines, start=1):
        ukg_account = items[ln.item][0][1] if ln.item is not None else ""
        if ln.item is not None:
            used.append(sources.references[ln.account])
        text = rules.line_text.format(pay_group=pay_group, month_end=month_end.isoformat(),
                                      legal_entity=entity.upper(), account=ukg_account or rules.liability_account)
        planned.append(PlannedLine(number, ln.account, ln.debit, ln.credit, text[:LINE_TEXT_MAX], ukg_account))
    dimension_values: dict[str, set[str]] = {}
    for account in used:
        for name, value in account.dimensions:
            if value:
                dimension_values.setdefault(name, set()).add(value)
    zero = Decimal(1).scaleb(-rules.precision) * 0
    return JournalPlan(
        key=AccrualKey.for_month(pay_group, entity, month_end),
        lines=PlannedLines(planned),
        debit_total=sum((ln.debit for ln in planned), zero),
        credit_total=sum((ln.credit for ln in planned), zero),
        source_lines=sources.source_lines,
        source_hash=sources.source_hash,
        accounts={a.main_account for a in used} | {rules.liability_account},
        dimension_values=dimension_values,
        problems=list(sources.problems),
        legal_entity=entity,
        reverse_date=month_end + timedelta(days=1),
        source_runs=sources.run_ids,
    )
