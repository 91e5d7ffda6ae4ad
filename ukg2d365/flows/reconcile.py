"""reconcile: prove, per pay run, that D365 holds exactly what UKG paid. Read-only.

1. **read**: the UKG GL lines of the selected pay runs, planned through the same ``JournalBuilder``
   post-payroll uses (so UKG is seen exactly as it would be posted: mapped, summarized); the ledger's
   postings and the lines it sent; and, per run, every D365 journal whose Description carries the run's
   marker, with its lines, posted or not.
2. **compare**: :func:`compare_run`, a pure function of three maps keyed by AccountDisplayValue (main
   account + dimensions) with Decimal debit and credit totals: a verdict and the differing rows.
3. **record**: :func:`apply` writes each run's verdict to the ledger audit under its posting key (and one
   event for the whole check), so ``audit <key>`` shows when a pay run was last proven and what was found.
4. **report**: rendered by ``ukg2d365.render.reconcile`` (table, CSV, JSON).

``read_and_plan`` does steps 1 and 2, ``apply`` step 3: the flow contract every command shares. Nothing is
written to UKG or D365; the ledger gets the run row every command records and the audit events of step 3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from ukg2d365.d365.journals import find_journals, is_posted, journal_lines
from ukg2d365.errors import DataError, UsageError
from ukg2d365.flows import accrue_payroll
from ukg2d365.flows.gl_read import GlFilter, GlRead, gl_file, ledger_mapper, read_gl
from ukg2d365.flows.runtime import Context
from ukg2d365.journal import AccrualKey, PostingKey
from ukg2d365.ledger import POSTED, Posting
from ukg2d365.money import AmountError, parse_amount, quantum
from ukg2d365.ukg.records import parse_date

MATCH = "match"
MISSING = "missing in D365"
EXTRA = "extra in D365"
DIFFERS = "amount differs"
DUPLICATE = "duplicate journal"
# A run gets the first verdict of this list that applies to it; every differing row keeps its own.
VERDICTS = (DUPLICATE, MISSING, EXTRA, DIFFERS, MATCH)

DEFAULT_WINDOW_DAYS = 60
D365_AMOUNT_PRECISION = 6  # D365 stores amounts as numeric(32,6)
MAX_NOTES_PER_CAUSE = 5

ZERO = Decimal("0")


# ---------------------------------------------------------------------- the comparison (pure)


@dataclass(frozen=True)
class Amounts:
    """Debit and credit totals of one account + dimensions (or of a whole run)."""

    debit: Decimal = ZERO
    credit: Decimal = ZERO

    def __add__(self, other: Amounts) -> Amounts:
        return Amounts(self.debit + other.debit, self.credit + other.credit)

    def __sub__(self, other: Amounts) -> Amounts:
        return Amounts(self.debit - other.debit, self.credit - other.credit)


AccountAmounts = Mapping[str, Amounts]  # AccountDisplayValue -> debit/credit totals


def sum_by_account(rows: Iterable[tuple[str, Decimal, Decimal]]) -> dict[str, Amounts]:
    """(AccountDisplayValue, debit, credit) rows -> totals per AccountDisplayValue."""
    totals: dict[str, Amounts] = {}
    for account, debit, credit in rows:
        totals[account] = totals.get(account, Amounts()) + Amounts(debit, credit)
    return totals


def total(amounts: AccountAmounts) -> Amounts:
    return sum(amounts.values(), Amounts())


@dataclass(frozen=True)
class LineDifference:
    """One account + dimensions where D365, UKG and the ledger do not all agree."""

    account: str
    verdict: str  # missing in D365 | extra in D365 | amount differs
    ukg: Amounts
    d365: Amounts
    ledger: Amounts | None  # None: the ledger never sent this run

    @property
    def difference(self) -> Amounts:
        """What D365 holds beyond what UKG paid (negative: less)."""
        return self.d365 - self.ukg


@dataclass
class Comparison:
    verdict: str
    differences: list[LineDifference]
    notes: list[str]
    ukg_changed: bool  # the ledger sent something other than what UKG holds now


def compare_run(
    ukg: AccountAmounts | None,
    ledger: AccountAmounts | None,
    d365_journals: Sequence[AccountAmounts],
    *,
    ukg_source_unchanged: bool = False,
    source_file: str | None = None,
) -> Comparison:
    """Compare one pay run: what UKG paid, what the ledger sent, what each D365 journal with its marker holds.

    ``ukg`` is None when UKG returns no lines for the run; ``ledger`` is None when the ledger never planned
    it. ``ukg_source_unchanged`` says UKG's raw lines hash as they did when posted, so a difference between
    UKG and the ledger comes from the mapping, not from UKG. ``source_file`` names UKG's GL export file when
    UKG's side was read from it.
    """
    ukg_map = ukg or {}
    d365_map: dict[str, Amounts] = {}
    for journal in d365_journals:
        for account, amounts in journal.items():
            d365_map[account] = d365_map.get(account, Amounts()) + amounts
    accounts = sorted(set(ukg_map) | set(ledger or {}) | set(d365_map))
    differences: list[LineDifference] = []
    ukg_changed = False
    for account in accounts:
        u = ukg_map.get(account, Amounts())
        d = d365_map.get(account, Amounts())
        sent = None if ledger is None else ledger.get(account, Amounts())
        if sent is not None and sent != u:
            ukg_changed = True
        kind = _row_verdict(u, sent, d)
        if kind is not None:
            differences.append(LineDifference(account, kind, u, d, sent))

    notes: list[str] = []
    if ukg is None:
        notes.append("UKG returns no GL lines for this run" if source_file is None else
                     f"{source_file} holds no GL lines for this run")
    if ukg_changed:
        notes.append("the mapping changed since posting: UKG's lines are unchanged but map to other accounts"
                     if ukg_source_unchanged else
                     "UKG changed since posting: its GL lines differ from what the ledger sent")
    if len(d365_journals) > 1:
        verdict = DUPLICATE
    elif not d365_journals:
        verdict = MISSING
    elif ledger is None:
        # post-payroll would not find this journal (it looks only after its own sends): a second copy looms.
        verdict = EXTRA
        notes.append("D365 holds a journal with this run's marker that the ledger never sent (made by hand, "
                     "or by another ledger)")
    else:
        kinds = {row.verdict for row in differences}
        verdict = next((v for v in VERDICTS if v in kinds), MATCH)
    return Comparison(verdict, differences, notes, ukg_changed)


def _row_verdict(ukg: Amounts, sent: Amounts | None, d365: Amounts) -> str | None:
    if d365 == ukg and (sent is None or sent == d365):
        return None
    if sent is not None and sent == d365:
        return DIFFERS  # D365 holds exactly what was sent; UKG (or the mapping) moved since
    # D365 is judged against what was sent when there is a posting: that is what it should hold.
    expected = sent if sent is not None else ukg
    kinds = set()
    for want, have in ((expected.debit, d365.debit), (expected.credit, d365.credit)):
        if want == have:
            continue
        kinds.add(MISSING if have == 0 else EXTRA if want == 0 else DIFFERS)
    return kinds.pop() if len(kinds) == 1 else DIFFERS


# ---------------------------------------------------------------------- selection


@dataclass(frozen=True)
class ReconcileSelection:
    run_id: str | None = None
    pay_group: str | None = None
    period_end: date | None = None
    period_from: date | None = None
    period_to: date | None = None
    from_file: Path | None = None  # UKG's GL export file instead of the API: the runs it holds

    @property
    def names_runs(self) -> bool:
        """A run id, pay group or period (range) was given."""
        return any(v is not None for v in (self.run_id, self.pay_group, self.period_end, self.period_from,
                                           self.period_to))

    @property
    def explicit(self) -> bool:
        return self.names_runs or self.from_file is not None

    def validate(self) -> None:
        if self.period_end is not None and (self.period_from is not None or self.period_to is not None):
            raise UsageError("--period-end cannot be combined with --from/--to",
                             hint="give one period end, or a range of period end dates")
        if self.period_from and self.period_to and self.period_from > self.period_to:
            raise UsageError(f"--from {self.period_from} is after --to {self.period_to}")

    def gl_filter(self, companies: Iterable[str]) -> GlFilter:
        return GlFilter(companies=frozenset(companies), pay_group=self.pay_group, period_end=self.period_end,
                        run_id=self.run_id, period_from=self.period_from, period_to=self.period_to)

    def covers(self, key: PostingKey, companies: set[str]) -> bool:
        return self.gl_filter(companies).covers(key)


# ---------------------------------------------------------------------- report


@dataclass(frozen=True)
class JournalRef:
    journal_batch_number: str
    posted: bool
    lines: int


@dataclass
class RunReconciliation:
    key: PostingKey
    marker: str
    verdict: str
    ukg_total: Amounts
    d365_total: Amounts
    ledger_total: Amounts | None
    ledger_status: str | None
    journals: list[JournalRef]
    differences: list[LineDifference]
    notes: list[str]
    legal_entity: str = ""  # the D365 company of this journal, as configured
    ukg_accounts: dict[str, Amounts] = field(default_factory=dict)  # UKG's totals per AccountDisplayValue

    @property
    def matches(self) -> bool:
        return self.verdict == MATCH


@dataclass
class ReconcileReport:
    selection: ReconcileSelection
    window_start: date | None  # the default selection: postings and closed UKG periods ending since then
    runs: list[RunReconciliation] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # UKG lines that could not be tied to a run
    ukg_lines_read: int = 0
    precision: int = 2  # decimal places of d365.currency, for showing amounts
    # D365's ledger dimension format and segment delimiter the display values were built in (to read them back)
    ledger_format: tuple[str, ...] = ()
    delimiter: str = "-"

    @property
    def ok(self) -> bool:
        """Exit 0 only when every selected run matches; an explicit selection that finds nothing proves nothing."""
        if not self.runs:
            return not self.selection.explicit
        return all(run.matches for run in self.runs)

    def counts(self) -> dict[str, int]:
        return {verdict: sum(1 for r in self.runs if r.verdict == verdict) for verdict in VERDICTS}


# ---------------------------------------------------------------------- read


@dataclass
class _UkgRun:
    ukg: dict[str, Amounts]
    source_hash: str
    problems: list[str]
    legal_entity: str = ""


def read_and_plan(ctx: Context, selection: ReconcileSelection, *, today: date | None = None) -> ReconcileReport:
    """Read UKG, the ledger and D365 for the selected pay runs and compare them. Writes nothing."""
    selection.validate()
    companies = set(ctx.config.ukg.company_ids)
    window_start = None
    if not selection.explicit:
        window_start = (today or date.today()) - timedelta(days=DEFAULT_WINDOW_DAYS)
    report = ReconcileReport(selection, window_start, precision=ctx.config.d365.currency_precision)

    accruals: dict[PostingKey, Posting] = {}
    if selection.from_file is not None:
        ukg_runs, errors_by_run, postings = _read_file(ctx, selection, selection.from_file, companies, report)
    else:
        postings = _ledger_postings(ctx, selection, window_start, companies)
        accruals = _accrual_postings(ctx, selection, window_start)
        # A closed pay period with a GL run nobody posted is what a month-end check must not miss: the default
        # selection asks UKG for the closed periods of the window too, so such a run says "missing in D365".
        closed = _closed_periods(ctx, window_start, today or date.today()) if window_start is not None else set()
        if not selection.explicit and not postings and not accruals and not closed:
            return report  # nothing posted or closed lately: no need to ask UKG or D365 anything
        ukg_runs, errors_by_run = _read_ukg(ctx, selection, postings, companies, report, closed)
        found_periods = {(key.pay_group, key.period_end) for key in set(ukg_runs) | set(postings)}
        for pay_group, end in sorted(closed - found_periods):
            report.warnings.append(f"pay group {pay_group} period {end} is closed but UKG has no GL run for it yet")
        ukg_runs.update(_read_accruals(ctx, accruals))
        postings.update(accruals)
    d365 = ctx.d365
    # pay runs first, then accruals; each kind in key order (keys of two kinds do not compare)
    keys = sorted(set(ukg_runs) | set(postings), key=lambda k: (k.kind != PostingKey.kind, k))
    markers = {key: postings[key].marker if key in postings else key.marker for key in keys}
    entities = {key: _legal_entity(ctx, postings.get(key), ukg_runs.get(key)) for key in keys}
    headers = find_journals(d365, {e.lower() for e in entities.values()} or {ctx.config.d365.data_area_id},
                            markers.values())
    for key in keys:
        found = postings.get(key)
        marker = markers[key]
        area = entities[key].lower()
        journals = [(header, journal_lines(d365, area, str(header["JournalBatchNumber"])))
                    for header in headers[marker] if str(header.get("dataAreaId", area)).lower() == area]
        run = _reconcile_run(ctx, key, marker, ukg_runs.get(key), found, journals,
                             str(selection.from_file) if selection.from_file is not None else None)
        run.legal_entity = entities[key]
        unreadable = errors_by_run.get(key.run_id, [])
        run.notes.extend(unreadable[:MAX_NOTES_PER_CAUSE])
        if unreadable and run.verdict == MATCH:
            # Lines we could not read could hold any amount: a match cannot be proven.
            run.verdict = DIFFERS
            run.notes.append(f"{len(unreadable)} UKG line(s) could not be read, so the match is not proven")
        report.runs.append(run)
    tied = {key.run_id for key in ukg_runs} | {key.run_id for key in postings}
    for run_id, messages in errors_by_run.items():
        if run_id not in tied:
            report.warnings.extend(messages[:MAX_NOTES_PER_CAUSE])
    return report


def apply(ctx: Context, report: ReconcileReport, progress: Callable[[int], None] | None = None) -> ReconcileReport:
    """Record the check in the ledger audit: each run's verdict on its posting key's trail, and one event for
    the whole check (also when nothing was selected). Writes nothing to UKG or D365; returns ``report``."""
    advance = progress or (lambda n: None)
    for run in report.runs:
        ctx.ledger.audit("reconcile", {
            "verdict": run.verdict, "marker": run.marker, "ledger_status": run.ledger_status,
            "journals": [j.journal_batch_number for j in run.journals],
            "ukg": {"debit": run.ukg_total.debit, "credit": run.ukg_total.credit},
            "d365": {"debit": run.d365_total.debit, "credit": run.d365_total.credit},
            "differing_rows": len(run.differences), "notes": run.notes[:MAX_NOTES_PER_CAUSE],
        }, run.key.text)
        advance(1)
    ctx.ledger.audit("reconcile.summary", {
        "runs": len(report.runs), "verdicts": {v: n for v, n in report.counts().items() if n},
        "window_start": report.window_start, "ukg_lines_read": report.ukg_lines_read,
        "warnings": report.warnings[:MAX_NOTES_PER_CAUSE], "ok": report.ok,
    })
    return report


def _accrual_postings(ctx: Context, selection: ReconcileSelection,
                      window_start: date | None) -> dict[PostingKey, Posting]:
    """The ledger's accrual postings: selected by pay group and month-end (as a period end), or by a run they
    were accrued from; with no selection, those of a month-end in the window."""
    accruals: dict[PostingKey, Posting] = {}
    named = GlFilter(pay_group=selection.pay_group, period_end=selection.period_end,
                     period_from=selection.period_from, period_to=selection.period_to)
    for posting in ctx.ledger.find_postings():
        if posting.kind != AccrualKey.kind:
            continue
        month_end = date.fromisoformat(posting.period_end)
        key = AccrualKey.for_month(posting.pay_group, posting.legal_entity or "", month_end)
        if window_start is not None:
            wanted = key.period_end >= window_start
        else:
            wanted = named.covers(key) and (selection.run_id is None or selection.run_id in posting.run_id.split(","))
        if wanted:
            accruals[key] = posting
    return accruals


def _read_accruals(ctx: Context, accruals: Mapping[PostingKey, Posting]) -> dict[PostingKey, _UkgRun]:
    """What each posted accrual's UKG runs accrue today, planned as accrue-payroll plans (one read per
    pay group, month-end and set of runs, whatever the number of legal entities)."""
    if not accruals:
        return {}
    mapper = ledger_mapper(ctx, "reconcile", fresh=False)
    groups: dict[tuple[str, date, str], list[PostingKey]] = {}
    for key, posting in accruals.items():
        groups.setdefault((key.pay_group, key.period_end, posting.run_id), []).append(key)
    runs: dict[PostingKey, _UkgRun] = {}
    for (pay_group, month_end, run_ids), keys in sorted(groups.items()):
        planned = accrue_payroll.replan(ctx, mapper, pay_group, month_end, run_ids.split(","))
        by_key = {journal.key: journal for journal in planned.journals}
        for key in keys:
            journal = by_key.get(key)
            if journal is None:
                continue  # nothing to accrue there today: UKG's side is empty, and the notes say why
            amounts = sum_by_account((ln.account, ln.debit, ln.credit) for ln in journal.lines)
            runs[key] = _UkgRun(amounts, journal.source_hash, journal.problems, journal.legal_entity)
    return runs


def _closed_periods(ctx: Context, window_start: date, today: date) -> set[tuple[str, date]]:
    """(pay group, period end) of every closed UKG pay period of ``ukg.pay_groups`` ending in the window."""
    closed: set[tuple[str, date]] = set()
    for pay_group in ctx.config.ukg.pay_groups:
        for period in ctx.ukg.pay_periods(pay_group):
            if str(period.get("payGroup", pay_group)) != pay_group or period.get("isPeriodClosed") is not True:
                continue
            try:
                end = parse_date(period.get("periodEndDate"))
            except ValueError as exc:
                raise DataError(f"UKG pay period of {pay_group}: {exc}") from None
            if window_start <= end <= today:
                closed.add((pay_group, end))
    return closed


def _posting_key(posting: Posting) -> PostingKey:
    # A bearing entity's journal carries "/@ENTITY" after the pay run's key (see journal.PostingKey).
    entity = posting.key.rpartition("/@")[2] if "/@" in posting.key else ""
    return PostingKey(posting.company, posting.pay_group, date.fromisoformat(posting.period_end), posting.run_id,
                      entity)


def _legal_entity(ctx: Context, posting: Posting | None, ukg_run: _UkgRun | None) -> str:
    """Where the journal lives: as the ledger recorded it, else as UKG's lines plan it, else d365.legal_entity."""
    if posting is not None and posting.legal_entity:
        return posting.legal_entity
    if ukg_run is not None and ukg_run.legal_entity:
        return ukg_run.legal_entity
    return ctx.config.d365.legal_entity


def _ledger_postings(
    ctx: Context, selection: ReconcileSelection, window_start: date | None, companies: set[str]
) -> dict[PostingKey, Posting]:
    """The ledger's postings the selection names, or (no selection) those with a period end in the window."""
    postings: dict[PostingKey, Posting] = {}
    for posting in ctx.ledger.find_postings():
        if posting.kind != PostingKey.kind:
            continue  # accruals: see _accrual_postings
        key = _posting_key(posting)
        if window_start is not None:
            wanted = key.period_end >= window_start and (not companies or key.company in companies)
        else:
            wanted = selection.covers(key, companies)
        if wanted:
            postings[key] = posting
    return postings


def _read_file(
    ctx: Context, selection: ReconcileSelection, path: Path, companies: set[str], report: ReconcileReport
) -> tuple[dict[PostingKey, _UkgRun], dict[str, list[str]], dict[PostingKey, Posting]]:
    """UKG's side from its GL export file: the runs it holds (narrowed by the selection), and the ledger's
    postings of those runs, or of what the selection names besides."""
    file = gl_file(ctx, path)  # a bad row stops here, before D365 is asked anything
    mapper = ledger_mapper(ctx, "reconcile", fresh=False)
    report.ledger_format, report.delimiter = mapper.formats.ledger, mapper.delimiter
    selected = selection.gl_filter(companies)
    runs, errors = _runs_read(read_gl(file.items(), ctx.config, mapper, wanted=selected.covers), report)
    postings = {key: posting for key, posting in _ledger_postings(ctx, selection, None, companies).items()
                if key in runs or selection.names_runs}
    return runs, errors, postings


def _read_ukg(
    ctx: Context,
    selection: ReconcileSelection,
    postings: Mapping[PostingKey, Posting],
    companies: set[str],
    report: ReconcileReport,
    closed: set[tuple[str, date]],
) -> tuple[dict[PostingKey, _UkgRun], dict[str, list[str]]]:
    """Plan the selected runs' UKG lines exactly as post-payroll would, and keep only the totals per account."""
    mapper = ledger_mapper(ctx, "reconcile", fresh=False)  # the cached format: reconcile only reads
    report.ledger_format, report.delimiter = mapper.formats.ledger, mapper.delimiter
    items = _ukg_items(ctx, selection, postings, bool(closed))
    if selection.explicit:
        selected = selection.gl_filter(companies)
        read = read_gl(items, ctx.config, mapper, wanted=selected.covers, may_want=selected.may_cover)
    else:
        in_closed = GlFilter(companies=frozenset(companies), periods=frozenset(closed))
        runs_posted = {replace(key, entity="") for key in postings}  # a pay run is read whole, every entity
        posted_runs = {key.run_id for key in postings}

        def may_want(raw: Any) -> bool:  # a bad line of a posted run or of a closed period of the window
            return (isinstance(raw, dict) and str(raw.get("runId")) in posted_runs) or in_closed.may_cover(raw)

        read = read_gl(items, ctx.config, mapper, wanted=lambda key: key in runs_posted or in_closed.covers(key),
                       may_want=may_want)
    return _runs_read(read, report)


def _runs_read(read: GlRead, report: ReconcileReport) -> tuple[dict[PostingKey, _UkgRun], dict[str, list[str]]]:
    """Each planned run's totals per account, and the unreadable lines by run."""
    report.ukg_lines_read = read.lines_read
    runs: dict[PostingKey, _UkgRun] = {}
    for plan in read.journals():
        amounts = sum_by_account((ln.account, ln.debit, ln.credit) for ln in plan.lines)
        runs[plan.key] = _UkgRun(amounts, plan.source_hash, plan.problems, plan.legal_entity)
    errors_by_run = {run: [f"unreadable line: {message}" for message in messages]
                     for run, messages in read.errors_by_run.items()}
    return runs, errors_by_run


def _ukg_items(
    ctx: Context, selection: ReconcileSelection, postings: Mapping[PostingKey, Posting], closed_periods: bool
) -> Iterator[Any]:
    if selection.run_id is not None:
        yield from ctx.ukg.gl_lines(run_id=selection.run_id)
    elif selection.explicit or closed_periods:
        # UKG's GL read takes no period filter: the runs of closed periods are found among all of its lines.
        yield from ctx.ukg.gl_lines()
    else:
        # The default selection comes from the ledger: ask UKG only for those runs, not for its whole history.
        for run_id in sorted({key.run_id for key in postings}):
            yield from ctx.ukg.gl_lines(run_id=run_id)


def _d365_amount(value: Any, journal_batch_number: str, precision: int) -> Decimal:
    """An amount as D365 stores it, shown at the currency's scale when that loses nothing (100.000000 -> 100.00)."""
    try:
        amount = parse_amount(value, D365_AMOUNT_PRECISION)
    except AmountError as exc:
        raise DataError(f"D365 journal {journal_batch_number}: line amount {exc}") from None
    scaled = amount.quantize(quantum(precision))
    return scaled if scaled == amount else amount


def _reconcile_run(
    ctx: Context,
    key: PostingKey,
    marker: str,
    ukg_run: _UkgRun | None,
    posting: Posting | None,
    journals: list[tuple[dict[str, Any], list[dict[str, Any]]]],
    source_file: str | None = None,
) -> RunReconciliation:
    journal_maps: list[dict[str, Amounts]] = []
    refs: list[JournalRef] = []
    precision = ctx.config.d365.currency_precision
    for header, rows in journals:
        number = str(header["JournalBatchNumber"])
        journal_maps.append(sum_by_account(
            (str(row.get("AccountDisplayValue") or ""), _d365_amount(row.get("DebitAmount"), number, precision),
             _d365_amount(row.get("CreditAmount"), number, precision))
            for row in rows))
        refs.append(JournalRef(number, is_posted(header), len(rows)))
    ledger_map = None
    if posting is not None:
        ledger_map = sum_by_account((ln.account, ln.debit, ln.credit) for ln in ctx.ledger.iter_plan(posting.key))
    comparison = compare_run(
        ukg_run.ukg if ukg_run is not None else None,
        ledger_map,
        journal_maps,
        ukg_source_unchanged=bool(ukg_run and posting and ukg_run.source_hash == posting.source_hash),
        source_file=source_file,
    )
    notes = _context_notes(key, marker, ukg_run, posting, refs) + comparison.notes
    d365_total = sum((total(m) for m in journal_maps), Amounts())
    return RunReconciliation(
        key=key,
        marker=marker,
        verdict=comparison.verdict,
        ukg_total=total(ukg_run.ukg) if ukg_run is not None else Amounts(),
        d365_total=d365_total,
        ledger_total=total(ledger_map) if ledger_map is not None else None,
        ledger_status=posting.status if posting is not None else None,
        journals=refs,
        differences=comparison.differences,
        notes=notes,
        legal_entity=ctx.config.d365.legal_entity,
        ukg_accounts=dict(ukg_run.ukg) if ukg_run is not None else {},
    )


def _context_notes(
    key: PostingKey, marker: str, ukg_run: _UkgRun | None, posting: Posting | None, refs: list[JournalRef]
) -> list[str]:
    """What the comparison cannot know: journal numbers, ledger states, why UKG's side may be incomplete."""
    notes: list[str] = []
    if ukg_run is not None:
        notes.extend(f"UKG: {problem}" for problem in ukg_run.problems[:MAX_NOTES_PER_CAUSE])
    if len(refs) > 1:
        numbers = ", ".join(f"{r.journal_batch_number}{' (posted)' if r.posted else ''}" for r in refs)
        notes.append(f"{len(refs)} journals carry marker {marker}: {numbers}")
    if not refs:
        if posting is None:
            notes.append(f"never posted: no ledger posting and no D365 journal (`ukg2d365 post-payroll --run-id "
                         f"{key.run_id}`)")
        elif posting.journal_batch_number:
            notes.append(f"the ledger recorded journal {posting.journal_batch_number}, but no D365 journal carries "
                         f"marker {marker} (deleted in D365?)")
    if posting is not None and posting.status != POSTED:
        notes.append(f"ledger status {posting.status}" + (f": {posting.last_error}" if posting.last_error else ""))
    return notes
