"""post-payroll: read UKG GL runs -> plan one balanced journal per pay run -> post each exactly once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from ukg2d365.d365.journals import find_journals, is_posted, journal_rows, match_lines
from ukg2d365.errors import DataError, UsageError
from ukg2d365.flows.dmf_poster import make_poster
from ukg2d365.flows.gl_read import GlFilter, gl_file, ledger_mapper, read_gl
from ukg2d365.flows.journal_poster import PostOutcome, journal_route, posting_route
from ukg2d365.flows.reference import ReferenceData
from ukg2d365.flows.runtime import Context, current_posting
from ukg2d365.journal import JournalPlan, PostingKey
from ukg2d365.ledger import FAILED, POSTED, SENDING, SKIPPED, Ledger, Posting, Refusal, now_iso
from ukg2d365.ukg.gl_file import GlFile
from ukg2d365.ukg.records import parse_date

MAX_ERRORS_PER_RUN = 5  # bad lines named per run; the rest are counted


@dataclass(frozen=True)
class Selection:
    run_id: str | None = None
    pay_group: str | None = None
    period_end: date | None = None
    due: bool = False
    from_file: Path | None = None  # UKG's GL export file instead of the API: every run in it, unless narrowed

    def validate(self) -> None:
        if self.due and self.from_file is not None:
            raise UsageError("--from-file cannot be combined with --due",
                             hint="--due asks UKG which periods closed; a file holds what it holds")
        if not (self.run_id or self.pay_group or self.period_end or self.due or self.from_file):
            raise UsageError(
                "post-payroll needs a selection",
                hint="give --run-id ID, --pay-group CODE and/or --period-end DATE, or --due for every closed "
                "period not yet posted",
            )

    def gl_filter(self, companies: Iterable[str], due: DuePeriods | None = None) -> GlFilter:
        """The pay runs this selection names. By run id only for a file: UKG is asked for that run alone."""
        return GlFilter(companies=frozenset(companies), pay_group=self.pay_group, period_end=self.period_end,
                        periods=frozenset(due.targets) if due is not None else None,
                        run_id=self.run_id if self.from_file is not None else None)


@dataclass
class DuePeriods:
    targets: set[tuple[str, date]] = field(default_factory=set)
    already_posted: list[tuple[str, date]] = field(default_factory=list)
    open: list[tuple[str, date]] = field(default_factory=list)
    # Closed, paid before payroll.lookback_days and not posted by this ledger, though not older than the first
    # period it knows of the pay group (a posting or a refusal): --due leaves them alone, but never in silence.
    stale: list[tuple[str, date]] = field(default_factory=list)
    # Refusals neither posted nor skipped, of the targets (each run reads them again) and of the stale periods.
    refused: list[Refusal] = field(default_factory=list)


@dataclass
class PayrollPlan:
    to_post: list[JournalPlan] = field(default_factory=list)
    already_posted: list[JournalPlan] = field(default_factory=list)
    refused: list[JournalPlan] = field(default_factory=list)
    unattributed_errors: list[str] = field(default_factory=list)
    due: DuePeriods | None = None
    lines_read: int = 0
    runs_without_gl: list[tuple[str, date]] = field(default_factory=list)
    resumed: set[str] = field(default_factory=set)  # keys found sending/failed: recovery first
    changed_since_posting: list[JournalPlan] = field(default_factory=list)  # UKG differs from what was posted
    # Found in D365 by marker although the ledger has no record of posting it (a lost or new ledger):
    in_d365: dict[str, str] = field(default_factory=dict)  # key -> journal number holding the whole plan
    partly_in_d365: dict[str, str] = field(default_factory=dict)  # key -> unposted journal holding part of it
    skipped: dict[str, Refusal] = field(default_factory=dict)  # key -> the refusal an operator skipped: left alone
    # Refused before this run, and still not posted nor skipped: UKG no longer returns them (voided?); or, for
    # the ones refused again now (in ``refused``), since when.
    refused_before: dict[str, Refusal] = field(default_factory=dict)

    @property
    def vanished(self) -> list[Refusal]:
        """Refused runs of a due period that UKG no longer returns: they need a person (fix or skip)."""
        planned = {j.key.text for j in self.to_post + self.already_posted + self.refused}
        return [r for key, r in sorted(self.refused_before.items()) if key not in planned and key not in self.skipped]

    @property
    def problems(self) -> bool:
        """Something was refused or needs a person: the run exits 1."""
        return bool(self.refused or self.unattributed_errors or self.vanished)

    @property
    def to_write(self) -> list[JournalPlan]:
        """What apply will send to D365 (the rest of to_post is already there in full)."""
        return [j for j in self.to_post if j.key.text not in self.in_d365]


@dataclass
class PayrollResult:
    plan: PayrollPlan
    outcomes: list[PostOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[PostOutcome]:
        return [o for o in self.outcomes if o.status != POSTED]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.plan.problems


# ---------------------------------------------------------------------- read


def due_periods(ctx: Context, pay_groups: list[str], today: date) -> DuePeriods:
    """Closed pay periods paid within the lookback window and not yet fully posted in the ledger."""
    lookback = today - timedelta(days=ctx.config.payroll.lookback_days)
    result = DuePeriods()
    first_known = _first_known_periods(ctx.ledger)  # a fresh ledger knows no history to miss: nothing is stale
    for pay_group in pay_groups:
        for period in ctx.ukg.pay_periods(pay_group):
            if str(period.get("payGroup", pay_group)) != pay_group:
                continue
            try:
                end = parse_date(period.get("periodEndDate"))
                paid = parse_date(period.get("payDate") or period.get("periodEndDate"))
            except ValueError as exc:
                raise DataError(f"UKG pay period of {pay_group}: {exc}") from None
            if period.get("isPeriodClosed") is not True:
                if end <= today + timedelta(days=31):
                    result.open.append((pay_group, end))
                continue
            if paid < lookback and pay_group in first_known and end >= first_known[pay_group] and \
                    not period_done(ctx.ledger, pay_group, end):
                result.stale.append((pay_group, end))
            if paid < lookback or paid > today:
                continue
            if period_done(ctx.ledger, pay_group, end):
                result.already_posted.append((pay_group, end))
            else:
                result.targets.add((pay_group, end))
    for pay_group, end in sorted(result.targets) + result.stale:
        result.refused += ctx.ledger.open_refusals(kind="pay_run", pay_group=pay_group, period_end=end.isoformat())
    remember_stale_periods(ctx.ledger, pay_groups, result.stale)
    return result


def _first_known_periods(ledger: Ledger) -> dict[str, date]:
    """Per pay group, the first period the ledger holds a posting or a refusal of: its history starts there."""
    ends = [(p.pay_group, p.period_end) for p in ledger.find_postings() if p.kind == "pay_run"]
    first: dict[str, date] = {}
    for pay_group, text in ends + ledger.refused_period_ends("pay_run"):
        end = date.fromisoformat(text)
        first[pay_group] = min(end, first.get(pay_group, end))
    return first


def period_done(ledger: Ledger, pay_group: str, period_end: date, kind: str = "pay_run") -> bool:
    """Every journal the ledger knows of the period (or month-end) is posted or skipped, and it knows one.

    A refused run counts (it is in ``refusals``), so a period where one run posted and another was refused
    stays due until the refused one posts or an operator skips it."""
    states = ledger.period_states(pay_group, period_end.isoformat(), kind)
    return bool(states) and all(s in (POSTED, SKIPPED) for s in states.values())


STALE_PERIODS_SETTING = "due.stale_periods"


def remember_stale_periods(ledger: Ledger, pay_groups: list[str], stale: list[tuple[str, date]]) -> None:
    """Keep what --due found too old to post, so `status` (which reads only the ledger) can list it."""
    kept = [(g, d) for g, d in stale_periods(ledger) if g not in pay_groups]
    rows = sorted(set(kept) | set(stale))
    ledger.set_setting(STALE_PERIODS_SETTING, json.dumps([[g, d.isoformat()] for g, d in rows]))


def stale_periods(ledger: Ledger) -> list[tuple[str, date]]:
    """Closed periods the last --due runs left as older than the window, less those posted since."""
    try:
        rows = json.loads(ledger.get_setting(STALE_PERIODS_SETTING) or "[]")
        periods = [(str(g), date.fromisoformat(d)) for g, d in rows]
    except (ValueError, TypeError):
        return []
    return [(g, d) for g, d in periods if not period_done(ledger, g, d)]


def read_and_plan(ctx: Context, selection: Selection, *, today: date | None = None) -> PayrollPlan:
    """Stream the selected GL runs from UKG and plan one journal per pay run (nothing is written)."""
    selection.validate()
    plan = PayrollPlan()
    if selection.due:
        plan.due = due_periods(ctx, _due_pay_groups(ctx, selection), today or date.today())
        # The cron mode checks D365's credentials every night, also when nothing is due: a secret that
        # expired or was rotated fails the night it breaks (exit 3), not on the next payday.
        ctx.d365.tokens.token()
        if not plan.due.targets:
            return plan
    file = gl_file(ctx, selection.from_file) if selection.from_file is not None else None
    mapper = ledger_mapper(ctx, "post-payroll")
    selected = selection.gl_filter(ctx.config.ukg.company_ids, plan.due)
    items = file.items() if file is not None else ctx.ukg.gl_lines(run_id=selection.run_id)
    read = read_gl(items, ctx.config, mapper, wanted=selected.covers, may_want=selected.may_cover)
    plan.lines_read = read.lines_read
    journals = read.journals()
    journal_dates(ctx, journals)
    _attribute_errors(plan, journals, read.errors_by_run)
    if plan.due is not None:
        plan.runs_without_gl = sorted(plan.due.targets - {(j.key.pay_group, j.key.period_end) for j in journals})
    elif not journals and not read.errors_by_run:
        plan.unattributed_errors.append(_nothing_matched(ctx, selection, read.keys_seen, file))
    if file is not None and file.run_id is not None:
        _refuse_other_runs_of_the_period(ctx, journals, file)
    classify(ctx, plan, journals, named_run=selection.run_id)
    if file is not None:
        _whole_file_or_nothing(plan, file)
    _refused_before(ctx, plan)
    if plan.due is not None:
        vanished = {(r.pay_group, r.period_end) for r in plan.vanished}
        plan.runs_without_gl = [(g, d) for g, d in plan.runs_without_gl if (g, d.isoformat()) not in vanished]
    return plan


def _refused_before(ctx: Context, plan: PayrollPlan) -> None:
    """The refusals the ledger already holds of this plan's refused journals (since when) and, with --due, of
    the due periods: a refused run of a due period that UKG no longer returns is reported, never forgotten."""
    found = ctx.ledger.refusals_of(j.key.text for j in plan.refused)
    plan.refused_before.update((key, r) for key, r in found.items() if not r.skipped)
    if plan.due is not None:
        plan.refused_before.update((r.key, r) for r in plan.due.refused
                                   if (r.pay_group, date.fromisoformat(r.period_end)) in plan.due.targets)


def pay_dates(ctx: Context, pay_groups: Iterable[str]) -> dict[tuple[str, date], date]:
    """(pay group, period end) -> pay date, from UKG's paygroup-payperiods (one read per pay group)."""
    dates: dict[tuple[str, date], date] = {}
    for pay_group in sorted(set(pay_groups)):
        for period in ctx.ukg.pay_periods(pay_group):
            try:
                end = parse_date(period.get("periodEndDate"))
                paid = parse_date(period.get("payDate"))
            except ValueError:
                continue  # a period without a usable pay date: a journal that needs it says so below
            dates[(str(period.get("payGroup") or pay_group), end)] = paid
    return dates


def journal_dates(ctx: Context, journals: list[JournalPlan]) -> None:
    """TransDate and DocumentDate per payroll.posting_date / document_date: the period end or the pay date."""
    payroll = ctx.config.payroll
    choices = (payroll.posting_date, payroll.document_date)
    paid = pay_dates(ctx, {j.key.pay_group for j in journals}) if "pay_date" in choices and journals else {}
    for journal in journals:
        key = journal.key
        pay_date = paid.get((key.pay_group, key.period_end))
        if pay_date is None and "pay_date" in choices:
            journal.problems.append(f"UKG's paygroup-payperiods has no pay date for {key.pay_group} period ending "
                                    f"{key.period_end} (payroll.posting_date or document_date is pay_date)")
            continue
        if payroll.posting_date == "pay_date":
            journal.posting_date = pay_date
        if payroll.document_date is not None:
            journal.document_date = pay_date if payroll.document_date == "pay_date" else key.period_end


def _due_pay_groups(ctx: Context, selection: Selection) -> list[str]:
    groups = [selection.pay_group] if selection.pay_group else list(ctx.config.ukg.pay_groups)
    if not groups:
        raise UsageError("--due needs pay groups", hint="set ukg.pay_groups in the config or pass --pay-group")
    return groups


def _attribute_errors(plan: PayrollPlan, journals: list[JournalPlan], errors_by_run: dict[str, list[str]]) -> None:
    """A bad line refuses its run's journal (the first few named); one of no run, or of a run not planned, is
    reported on its own."""
    errors = dict(errors_by_run)
    plan.unattributed_errors.extend(errors.pop("", []))
    for journal in journals:
        messages = errors.get(journal.key.run_id, [])
        journal.problems.extend(message.removeprefix("UKG ") for message in messages[:MAX_ERRORS_PER_RUN])
        if len(messages) > MAX_ERRORS_PER_RUN:
            journal.problems.append(f"and {len(messages) - MAX_ERRORS_PER_RUN} more bad lines in run "
                                    f"{journal.key.run_id}")
    planned = {j.key.run_id for j in journals}
    for run, messages in errors.items():
        if run not in planned:
            plan.unattributed_errors.extend(messages[:MAX_ERRORS_PER_RUN])


def _nothing_matched(ctx: Context, selection: Selection, seen: list[PostingKey], file: GlFile | None) -> str:
    """Why an explicit selection found no GL run: a case slip, another company, an open period, a typo.

    "would post 0 journal(s)" with exit 0 reads as success to cron and to a person alike, so an empty
    selection is a refusal (exit 1) that says what UKG (or its GL export file) does hold.
    """
    asked = " ".join(f"{flag} {value}" for flag, value in (
        ("--run-id", selection.run_id), ("--pay-group", selection.pay_group),
        ("--period-end", selection.period_end.isoformat() if selection.period_end else None)) if value)
    source = "UKG" if file is None else file.name
    message = f"no GL run in {source} matches {asked}" if asked else f"no GL run in {source} to post"
    hints = []
    for flag, wanted, values in (("--pay-group", selection.pay_group, {k.pay_group for k in seen}),
                                 ("--run-id", selection.run_id, {k.run_id for k in seen})):
        if wanted and wanted not in values:
            near = sorted(v for v in values if v.casefold() == wanted.casefold())
            if near:
                hints.append(f"did you mean {flag} {near[0]}?")
    companies = set(ctx.config.ukg.company_ids)
    # UKG already filtered by run id; the pay group and period are checked as for a line, minus the company.
    named = selection.gl_filter(())
    elsewhere = sorted({k.company for k in seen if k.company not in companies and named.covers(k)}) if companies else []
    if elsewhere:
        hints.append(f"{source} has it for company {', '.join(elsewhere)}, which ukg.company_ids leaves out")
    if selection.period_end and not hints and file is None:
        groups = [selection.pay_group] if selection.pay_group else list(ctx.config.ukg.pay_groups)
        for group in groups:
            for period in ctx.ukg.pay_periods(group):
                if str(period.get("periodEndDate", ""))[:10] == selection.period_end.isoformat() and \
                        period.get("isPeriodClosed") is not True:
                    hints.append(f"pay group {group} period {selection.period_end} is still open in UKG: its GL "
                                 "run is posted once UKG closes the period")
    if not hints and selection.pay_group and seen:
        periods = sorted({k.period_end for k in seen if k.pay_group == selection.pay_group})[-3:]
        if periods:
            hints.append("latest periods with a GL run: " + ", ".join(d.isoformat() for d in periods))
    return message + ("; " + "; ".join(hints) if hints else "")


def _refuse_other_runs_of_the_period(ctx: Context, journals: list[JournalPlan], file: GlFile) -> None:
    """A file without a run id column gets its run id from its content, so a corrected copy of a posted file
    would be a new run, booked a second time: while the ledger holds another run of the same company, pay group
    and period end, such a file is refused."""
    for journal in journals:
        key = journal.key
        others = [p for p in ctx.ledger.period_postings(key.company, key.pay_group, key.period_end.isoformat())
                  if p.run_id != key.run_id]
        if others:
            runs = ", ".join(f"{p.run_id} ({p.status}{', ' + p.journal_batch_number if p.journal_batch_number else ''})"
                             for p in others[:3])
            journal.problems.append(
                f"{file.name} has no run id column (file_source.columns.run_id), and pay group {key.pay_group} "
                f"period {key.period_end} of company {key.company} already has run {runs}: a corrected copy of a "
                "posted file cannot be told apart from a second run; map the GL export's run id column")


def _whole_file_or_nothing(plan: PayrollPlan, file: GlFile) -> None:
    """A GL export file is posted whole or not at all: when one of its pay runs is refused, the others wait too
    (completing a journal an earlier run began is recovery, not a new posting, and goes on)."""
    if not (plan.refused or plan.unattributed_errors):
        return
    for journal in [j for j in plan.to_post if j.key.text not in plan.resumed | set(plan.partly_in_d365)]:
        journal.problems.append(f"not posted: another pay run of {file.name} is refused, and a file is posted "
                                "whole or not at all")
        plan.to_post.remove(journal)
        plan.in_d365.pop(journal.key.text, None)
        plan.refused.append(journal)


def classify(ctx: Context, plan: PayrollPlan, journals: list[JournalPlan], *, named_run: str | None = None) -> None:
    """Sort the planned journals into already posted, skipped, refused and to post; what is to post is checked
    against D365's main accounts and dimension values, then looked up in D365 by marker.

    A journal an operator skipped (``replay --skip``) is left alone unless its run is named (``--run-id``)."""
    for journal in journals:  # the header facts the preview shows, for pay runs and accruals alike
        journal.journal_name = journal.journal_name or ctx.config.d365.journal_name
        journal.currency = journal.currency or ctx.config.d365.currency
        journal.route = journal_route(ctx.config, len(journal.lines),
                                      dated=journal.reverse_date is not None or journal.document_date is not None)
    skipped = {key: r for key, r in ctx.ledger.refusals_of(j.key.text for j in journals).items() if r.skipped}
    posted = ctx.ledger.posted_keys(skipped)
    left = []
    for journal in journals:
        key = journal.key.text
        if key in skipped and key not in posted and journal.key.run_id != named_run:
            plan.skipped[key] = skipped[key]
        else:
            left.append(journal)
    candidates = _not_yet_posted(ctx, plan, left)
    if not candidates:
        return
    _refuse_unknown_references(ctx, candidates)
    for journal in candidates:
        if journal.problems:
            plan.refused.append(journal)
            continue
        existing = ctx.ledger.get_posting(journal.key.text)
        if existing is not None and existing.status in (SENDING, FAILED):
            plan.resumed.add(journal.key.text)
        plan.to_post.append(journal)
    _look_up_in_d365(ctx, plan)


def _not_yet_posted(ctx: Context, plan: PayrollPlan, journals: list[JournalPlan]) -> list[JournalPlan]:
    """The postable journals the ledger has not posted; the posted ones and the refused ones go into the plan."""
    ledger = ctx.ledger
    posted = ledger.posted_keys(j.key.text for j in journals)
    candidates = []
    for journal in journals:
        if journal.key.text in posted:
            plan.already_posted.append(journal)
            previous = ledger.get_posting(journal.key.text)
            if previous is not None and previous.source_hash != journal.source_hash:
                # Never reposted (that would book it twice); reported so finance can look with reconcile.
                plan.changed_since_posting.append(journal)
        elif not journal.postable:
            plan.refused.append(journal)
        else:
            candidates.append(journal)
    return candidates


def _refuse_unknown_references(ctx: Context, journals: list[JournalPlan]) -> None:
    """Name, on each journal, the main accounts and the dimension values (of its own legal entity) D365 does not
    know: D365 would reject the journal half-way through its lines, so it is refused up front."""
    reference = ReferenceData(ctx.d365, ctx.ledger, ctx.config)
    missing_accounts = reference.missing_main_accounts(set().union(*(j.accounts for j in journals)))
    missing_dims = _missing_dimension_values(ctx, reference, journals)
    for journal in journals:
        bad_accounts = sorted(journal.accounts & missing_accounts)
        if bad_accounts:
            journal.problems.append(f"main accounts not in D365: {', '.join(bad_accounts)}")
        for name, missing in missing_dims.get(journal.data_area_id, {}).items():
            bad = sorted(journal.dimension_values.get(name, set()) & missing)
            if bad:
                where = f" company {journal.legal_entity.upper()}" if ctx.config.legal_entities else ""
                journal.problems.append(f"{name} values not in D365{where}: {', '.join(bad)} (run sync-dimensions)")


def _missing_dimension_values(ctx: Context, reference: ReferenceData,
                              journals: list[JournalPlan]) -> dict[str, dict[str, set[str]]]:
    """Per legal entity (dataAreaId) and dimension: the values its journals use that D365 does not hold there."""
    missing: dict[str, dict[str, set[str]]] = {}
    for area in sorted({j.data_area_id for j in journals}):
        mine = [j for j in journals if j.data_area_id == area]
        for name in ctx.config.mapping.dimensions:
            values = set().union(*(j.dimension_values.get(name, set()) for j in mine))
            absent = reference.missing_dimension_values(name, values, area)
            if absent:
                missing.setdefault(area, {})[name] = absent
    return missing


def _look_up_in_d365(ctx: Context, plan: PayrollPlan) -> None:
    """D365 is the truth: before any journal is created, ask it (by marker, cross-company) what it holds.

    The ledger may be new, restored or moved; a pay run D365 already holds must not be booked again. A
    journal matching the plan is adopted (recorded as posted, zero writes); an unposted one holding part of
    the plan is completed by the poster's recovery; anything else is refused, named.
    """
    fresh = [j for j in plan.to_post if j.key.text not in plan.resumed]
    if not fresh:
        return
    by_marker = find_journals(ctx.d365, {j.data_area_id for j in fresh}, [j.key.marker for j in fresh])
    refused = []
    for journal in fresh:
        headers = [h for h in by_marker[journal.key.marker]
                   if str(h.get("dataAreaId", journal.data_area_id)).lower() == journal.data_area_id]
        if not headers:
            continue
        verdict = _compare_with_d365(ctx, journal, headers)
        if verdict is None:
            refused.append(journal)
            continue
        number, complete = verdict
        (plan.in_d365 if complete else plan.partly_in_d365)[journal.key.text] = number
    for journal in refused:
        plan.to_post.remove(journal)
        plan.refused.append(journal)


def _compare_with_d365(ctx: Context, journal: JournalPlan, headers: list[dict[str, Any]]) -> tuple[str, bool] | None:
    """(journal number, holds the whole plan) when D365's journal can be taken over; else refuse, named."""
    cfg = ctx.config.d365
    numbers = ", ".join(sorted(str(h.get("JournalBatchNumber")) for h in headers))
    reconcile = f"run `ukg2d365 reconcile {journal.key.reconcile_options}` to compare"
    if len(headers) > 1:
        journal.problems.append(f"already in D365 as {len(headers)} journals ({numbers}) carrying marker "
                                f"{journal.key.marker}; {reconcile}")
        return None
    header = headers[0]
    number = str(header["JournalBatchNumber"])
    rows = journal_rows(ctx.d365, journal.data_area_id, number)  # streamed: counted, not kept
    match = match_lines(journal.lines, journal.trans_date.isoformat(), rows, by_number=cfg.line_numbers == "client",
                        reverse_date=journal.reverse_date.isoformat() if journal.reverse_date else None)
    if not match.missing and not match.surplus:
        return number, True
    posted = is_posted(header)
    if not posted and not match.surplus:
        return number, False  # a run that died mid-send with its ledger: the poster completes it
    journal.problems.append(
        f"already in D365 as {number} ({'posted' if posted else 'unposted'}), which differs from UKG: "
        f"{match.matched} of {len(journal.lines)} lines match, {len(match.surplus)} line(s) in D365 are not in "
        f"the plan; {reconcile}"
    )
    return None


# ---------------------------------------------------------------------- apply


def posting_record(journal: JournalPlan) -> Posting:
    key = journal.key
    stamp = now_iso()
    return Posting(
        key=key.text,
        company=key.company,
        pay_group=key.pay_group,
        period_end=key.period_end.isoformat(),
        run_id=journal.run_ids,
        employee=None,  # column kept for ledgers written before GL v2 (no employee on a GL line)
        marker=key.marker,
        description=journal.description,
        status="planned",
        journal_batch_number=None,
        plan_hash=journal.plan_hash,
        source_hash=journal.source_hash,
        source_lines=journal.source_lines,
        line_count=len(journal.lines),
        debit_total=journal.debit_total,
        credit_total=journal.credit_total,
        trans_date=journal.trans_date.isoformat(),
        attempts=0,
        last_error=None,
        created_at=stamp,
        updated_at=stamp,
        posted_at=None,
        last_run=None,
        legal_entity=journal.legal_entity,
        kind=key.kind,
        document_date=journal.document_date.isoformat() if journal.document_date else None,
        reverse_date=journal.reverse_date.isoformat() if journal.reverse_date else None,
    )


def record_refusals(ctx: Context, plan: PayrollPlan) -> None:
    """Refused runs go into the ledger by posting key (their period stays due until they post or are skipped)
    and into the audit trail, so status/audit can tell finance why nothing was posted."""
    for journal in plan.refused:
        key = journal.key
        refusal = Refusal(key.text, key.kind, key.company, key.pay_group, key.period_end.isoformat(),
                          journal.run_ids, journal.legal_entity or None, list(journal.problems))
        ctx.ledger.record_refusal(refusal, {"problems": journal.problems, "source_lines": journal.source_lines,
                                            "debit": str(journal.debit_total), "credit": str(journal.credit_total)})
    for refusal in plan.vanished:
        ctx.ledger.audit("refused run not in UKG", {"run_id": refusal.run_id, "first_refused": refusal.first_at,
                                                    "problems": refusal.problems}, refusal.key)


def apply(
    ctx: Context,
    plan: PayrollPlan,
    progress: Callable[[int], None] | None = None,
) -> PayrollResult:
    """Post every planned journal; the ledger records intent before and outcome after each write."""
    result = PayrollResult(plan)
    record_refusals(ctx, plan)
    if not plan.to_post:
        return result  # the refusals are recorded; nothing to write needs no D365 client (nor its credentials)
    # Write-ahead for the whole plan first: a run killed after the first of a period's journals posted leaves
    # the others planned, so the period (or an accrual's month-end, one journal per legal entity) stays due.
    for journal in plan.to_post:
        ctx.ledger.save_plan(posting_record(journal), journal.lines)
        ctx.ledger.audit("plan", {"lines": len(journal.lines), "route": journal.route,
                                  "source_lines": journal.source_lines,
                                  "source_hash": journal.source_hash, "plan_hash": journal.plan_hash,
                                  "debit": str(journal.debit_total), "credit": str(journal.credit_total)},
                         journal.key.text)
    poster = make_poster(ctx, progress)
    for journal in plan.to_post:
        key = journal.key.text
        token = current_posting.set(key)
        try:
            posting = ctx.ledger.get_posting(key)
            assert posting is not None
            if key in plan.in_d365:
                result.outcomes.append(poster.adopt(posting, plan.in_d365[key]))
                continue
            if key in plan.partly_in_d365:
                # Recovery first: the poster completes D365's journal instead of creating another.
                ctx.ledger.set_status(key, SENDING, journal_batch_number=plan.partly_in_d365[key])
                posting = ctx.ledger.get_posting(key)
                assert posting is not None
            result.outcomes.append(poster.post(posting, posting_route(ctx.config, posting)))
        finally:
            current_posting.reset(token)
    return result
