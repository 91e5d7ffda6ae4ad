"""accrue-payroll: book the month's share of a pay period that straddles a month-end, as a reversing journal.

A pay period of 14 days with 4 of them in November holds 4/14 of its labor in November, but its pay run is
booked in December. For each pay group and month-end, ``read_and_plan``

1. takes the month-end (``--month-end``, or for ``--due`` the latest month-end within payroll.lookback_days
   whose accrual the ledger does not hold as posted: :func:`due_month_end`);
2. finds the pay period that starts on or before the month-end and ends after it (UKG's paygroup-payperiods)
   and the share of its days in the month (``accruals.basis``: calendar days or workdays);
3. reads the amounts from that period's GL run(s) when UKG has them, else from the latest closed run of the
   pay group (an estimate: the plan says which), through the GL read and mapping post-payroll uses;
4. plans one journal per legal entity (:func:`ukg2d365.accruals.accrual_journals`): the share of each
   accrued account and dimensions debited, ``accruals.liability_account`` credited, every line reversing
   the day after the month-end, under the posting key ``accrual/<pay group>/<legal entity>/<month-end>``;
5. checks them as post-payroll checks its journals (ledger, D365's accounts and dimension values per
   entity, the marker looked up in D365 before anything is created: :func:`post_payroll.classify`).

``apply`` is post-payroll's: the same exactly-once poster, the ledger written before every request.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from ukg2d365.accruals import (
    AccrualJournals,
    AccrualRules,
    Share,
    SourceRun,
    accrual_journals,
    is_month_end,
    month_end_of,
    month_ends_between,
    period_share,
    straddles,
)
from ukg2d365.config import AccrualsConfig
from ukg2d365.errors import ConfigError, DataError, UsageError
from ukg2d365.flows import post_payroll
from ukg2d365.flows.gl_read import GlFilter, GlRead, ledger_mapper, read_gl
from ukg2d365.flows.runtime import Context
from ukg2d365.journal import JournalBuilder, JournalPlan, PostingKey
from ukg2d365.ledger import Refusal
from ukg2d365.mapping import Mapper
from ukg2d365.ukg.records import parse_date


@dataclass(frozen=True)
class AccrualSelection:
    month_end: date | None = None
    due: bool = False
    pay_group: str | None = None

    def validate(self) -> None:
        if self.month_end is None and not self.due:
            raise UsageError("accrue-payroll needs --month-end DATE or --due",
                             hint="--month-end names the month-end to accrue; --due takes the latest one not yet "
                                  "accrued within payroll.lookback_days (for cron)")
        if self.month_end is not None and self.due:
            raise UsageError("give --month-end or --due, not both")
        if self.month_end is not None and not is_month_end(self.month_end):
            raise UsageError(f"--month-end {self.month_end} is not the last day of a month",
                             hint=f"did you mean --month-end {month_end_of(self.month_end)}?")


@dataclass(frozen=True)
class PayPeriod:
    pay_group: str
    start: date
    end: date
    closed: bool


@dataclass
class AccrualSource:
    """Where one pay group's accrual for a month-end comes from, or why there is none."""

    pay_group: str
    month_end: date
    period: PayPeriod | None = None  # the period straddling the month-end
    share: Share | None = None
    basis: str = ""  # accruals.basis the share counts in
    run_ids: tuple[str, ...] = ()  # the UKG runs the amounts come from
    source_period_end: date | None = None  # the period of those runs
    note: str = ""  # why nothing is accrued

    @property
    def estimate(self) -> bool:
        """The amounts come from an earlier period's run: the straddling period has none in UKG yet."""
        return self.period is not None and self.source_period_end is not None and \
            self.source_period_end != self.period.end


@dataclass
class AccrualPlan(post_payroll.PayrollPlan):
    """post-payroll's plan (to post, already posted, refused, found in D365) and where the amounts came from."""

    sources: list[AccrualSource] = field(default_factory=list)
    not_due: list[str] = field(default_factory=list)  # --due: pay groups with every month-end in the window accrued
    # --due: refused accruals neither posted nor skipped whose month-end is older than payroll.lookback_days:
    # --due no longer takes them, but says so every time.
    stale: list[Refusal] = field(default_factory=list)
    run_errors: dict[str, list[str]] = field(default_factory=dict)  # run id -> its GL lines that failed to read


# ---------------------------------------------------------------------- read


def accruals_config(ctx: Context) -> AccrualsConfig:
    cfg = ctx.config.accruals
    if cfg is None:
        raise ConfigError("accrue-payroll needs an accruals: section in the config",
                          hint="set accruals.accounts (the UKG expense accounts to accrue) and "
                               "accruals.liability_account (the D365 accrued payroll account)")
    return cfg


def due_month_end(ctx: Context, pay_group: str, today: date, periods: list[PayPeriod]) -> date | None:
    """--due's month-end: the latest M with M <= today and today - M <= payroll.lookback_days that one of the
    pay group's periods straddles (a month-end a period ends on needs no accrual) and whose accrual the ledger
    does not hold as posted: no accrual journal of the pay group for M, or one of its legal entities' journals
    not posted (planned, failed, or refused and not skipped); None: none."""
    window = today - timedelta(days=ctx.config.payroll.lookback_days)
    for month_end in reversed(month_ends_between(window, today)):
        if not any(straddles(p.start, p.end, month_end) for p in periods):
            continue
        if not post_payroll.period_done(ctx.ledger, pay_group, month_end, kind="accrual"):
            return month_end
    return None


def stale_refusals(ctx: Context, pay_group: str, today: date) -> list[Refusal]:
    """Refused accruals of the pay group, neither posted nor skipped, whose month-end --due no longer takes."""
    window = today - timedelta(days=ctx.config.payroll.lookback_days)
    return [r for r in ctx.ledger.open_refusals(kind="accrual", pay_group=pay_group)
            if date.fromisoformat(r.period_end) < window]


def pay_periods(ctx: Context, pay_group: str) -> list[PayPeriod]:
    """The pay group's periods from UKG's paygroup-payperiods (start, end, closed)."""
    periods = []
    for item in ctx.ukg.pay_periods(pay_group):
        if str(item.get("payGroup", pay_group)) != pay_group:
            continue
        try:
            start, end = parse_date(item.get("periodStartDate")), parse_date(item.get("periodEndDate"))
        except ValueError as exc:
            raise DataError(f"UKG pay period of {pay_group}: {exc}") from None
        periods.append(PayPeriod(pay_group, start, end, item.get("isPeriodClosed") is True))
    return periods


def read_and_plan(ctx: Context, selection: AccrualSelection, *, today: date | None = None) -> AccrualPlan:
    """Find each pay group's straddling period and its amounts in UKG, and plan the accrual journals."""
    selection.validate()
    cfg = accruals_config(ctx)
    today = today or datetime.now(ctx.config.d365.zone).date()  # the month ends in the legal entity's zone
    if selection.month_end is not None and selection.month_end > today:
        raise UsageError(f"--month-end {selection.month_end} is after today ({today}): the month has not ended")
    plan = AccrualPlan()
    periods: dict[str, list[PayPeriod]] = {}
    for pay_group in _pay_groups(ctx, selection):
        periods[pay_group] = pay_periods(ctx, pay_group)
        if selection.due:
            plan.stale += stale_refusals(ctx, pay_group, today)
        month_end = selection.month_end or due_month_end(ctx, pay_group, today, periods[pay_group])
        if month_end is None:
            plan.not_due.append(pay_group)
            continue
        plan.sources.append(_straddling(pay_group, month_end, periods[pay_group], cfg))
        # Every legal entity's refused accrual of the month-end: planned again below, or reported as gone.
        plan.refused_before.update((r.key, r) for r in ctx.ledger.open_refusals(
            kind="accrual", pay_group=pay_group, period_end=month_end.isoformat()))
    wanted = [s for s in plan.sources if s.period is not None]
    if not wanted:
        return plan
    mapper = ledger_mapper(ctx, "accrue-payroll")
    builders = _read_sources(ctx, plan, wanted, periods, mapper)
    rules = accrual_rules(ctx, cfg, mapper)
    journals: list[JournalPlan] = []
    for source in wanted:
        journals += _plan_source(plan, source, builders, rules)
    used = {run_id for source in wanted for run_id in source.run_ids}
    plan.unattributed_errors += [_unreadable(r, m) for r, m in sorted(plan.run_errors.items()) if r not in used]
    post_payroll.classify(ctx, plan, journals)
    return plan


def accrual_rules(ctx: Context, cfg: AccrualsConfig, mapper: Mapper) -> AccrualRules:
    return AccrualRules(frozenset(cfg.accounts), cfg.liability_account, mapper.display_of(cfg.liability_account),
                        cfg.line_text, ctx.config.d365.currency_precision)


def replan(ctx: Context, mapper: Mapper, pay_group: str, month_end: date, run_ids: Collection[str]) -> AccrualJournals:
    """The accrual journals these UKG runs make for the month-end today (reconcile's view of an accrual posted
    from them): the same period, share and planning as accrue-payroll."""
    cfg = accruals_config(ctx)
    source = _straddling(pay_group, month_end, pay_periods(ctx, pay_group), cfg)
    if source.period is None or source.share is None:
        return AccrualJournals([], [source.note])
    wanted = set(run_ids)
    items = (item for run_id in sorted(wanted) for item in ctx.ukg.gl_lines(run_id=run_id))
    read = read_gl(items, ctx.config, mapper, wanted=lambda key: key.pay_group == pay_group and key.run_id in wanted)
    runs = [SourceRun(key.run_id, builder.finish_by_entity(), builder.ledger_accounts())
            for key, builder in sorted(read.router.builders.items())]
    planned = accrual_journals(pay_group, month_end, source.share, runs, accrual_rules(ctx, cfg, mapper))
    unreadable = [_unreadable(r, m) for r, m in sorted(read.errors_by_run.items())]
    missing = sorted(wanted - {run.run_id for run in runs})
    if missing:
        unreadable.append(f"UKG returns no GL lines for run(s) {', '.join(missing)}")
    for journal in planned.journals:
        journal.problems.extend(unreadable)
    planned.problems.extend(unreadable)
    return planned


def _pay_groups(ctx: Context, selection: AccrualSelection) -> list[str]:
    groups = [selection.pay_group] if selection.pay_group else list(ctx.config.ukg.pay_groups)
    if not groups:
        raise UsageError("accrue-payroll needs pay groups", hint="set ukg.pay_groups in the config or pass "
                                                                  "--pay-group")
    return groups


def _straddling(pay_group: str, month_end: date, periods: list[PayPeriod], cfg: AccrualsConfig) -> AccrualSource:
    source = AccrualSource(pay_group, month_end)
    period = next((p for p in periods if straddles(p.start, p.end, month_end)), None)
    if period is None:
        source.note = (f"no pay period of {pay_group} starts on or before {month_end} and ends after it in UKG's "
                       "paygroup-payperiods: nothing to accrue")
        return source
    source.period = period
    source.basis = cfg.basis
    source.share = period_share(period.start, period.end, month_end, cfg.basis, cfg.weekday_numbers)
    return source


def _read_sources(ctx: Context, plan: AccrualPlan, sources: list[AccrualSource],
                  periods: dict[str, list[PayPeriod]], mapper: Mapper) -> dict[PostingKey, JournalBuilder]:
    """The GL runs of each straddling period; for a period UKG has no run of yet, the latest closed run before it.

    One pass over UKG's GL lines plans the straddling periods' runs and notes every run it sees; the fallback
    runs, when any is needed, are then asked for by run id.
    """
    companies = frozenset(ctx.config.ukg.company_ids)
    straddling = GlFilter(companies=companies, periods=frozenset((s.pay_group, s.period.end) for s in sources
                                                                  if s.period is not None))
    read = _read(ctx, plan, ctx.ukg.gl_lines(), mapper, straddling)
    builders = dict(read.router.builders)
    fallback: list[PostingKey] = []
    for source in sources:
        assert source.period is not None
        own = sorted(k for k in builders if (k.pay_group, k.period_end) == (source.pay_group, source.period.end))
        if not own:
            own = _latest_closed_runs(source, read.keys_seen, companies, periods[source.pay_group])
            fallback += own
        source.run_ids = tuple(k.run_id for k in own)
        source.source_period_end = own[0].period_end if own else None
    if fallback:
        wanted = set(fallback)
        items = (item for run_id in sorted({k.run_id for k in fallback}) for item in ctx.ukg.gl_lines(run_id=run_id))
        builders.update(_read(ctx, plan, items, mapper, GlFilter(), wanted=wanted.__contains__).router.builders)
    return builders


def _read(ctx: Context, plan: AccrualPlan, items: Iterator[Any], mapper: Mapper, selected: GlFilter,
          wanted: Callable[[PostingKey], bool] | None = None) -> GlRead:
    read = read_gl(items, ctx.config, mapper, wanted=wanted or selected.covers, may_want=selected.may_cover)
    plan.lines_read += read.lines_read
    for run_id, messages in read.errors_by_run.items():
        plan.run_errors.setdefault(run_id, []).extend(messages)
    return read


def _unreadable(run_id: str, messages: list[str]) -> str:
    shown = "; ".join(messages[:post_payroll.MAX_ERRORS_PER_RUN])
    more = len(messages) - post_payroll.MAX_ERRORS_PER_RUN
    return (f"UKG run {run_id or '(none)'}: {len(messages)} GL line(s) could not be read: {shown}"
            + (f" and {more} more" if more > 0 else ""))


def _latest_closed_runs(source: AccrualSource, seen: list[PostingKey], companies: frozenset[str],
                        periods: list[PayPeriod]) -> list[PostingKey]:
    """The runs of the pay group's latest period before the straddling one that UKG has runs of and that is
    not open (a period older than UKG's list is closed)."""
    assert source.period is not None
    open_ends = {p.end for p in periods if not p.closed}
    earlier = [k for k in seen if k.pay_group == source.pay_group and k.period_end < source.period.start
               and k.period_end not in open_ends and (not companies or k.company in companies)]
    if not earlier:
        return []
    latest = max(k.period_end for k in earlier)
    return sorted({k for k in earlier if k.period_end == latest})


def _plan_source(plan: AccrualPlan, source: AccrualSource, builders: dict[PostingKey, JournalBuilder],
                 rules: AccrualRules) -> list[JournalPlan]:
    assert source.period is not None and source.share is not None
    if not source.run_ids:
        source.note = (f"UKG has no GL run of pay group {source.pay_group} for the period ending "
                       f"{source.period.end} nor a closed one before it: nothing to accrue from")
        plan.unattributed_errors.append(f"pay group {source.pay_group}, month-end {source.month_end}: "
                                        f"{source.note}")
        return []
    runs = [SourceRun(key.run_id, builder.finish_by_entity(), builder.ledger_accounts())
            for key, builder in sorted(builders.items())
            if key.pay_group == source.pay_group and key.run_id in source.run_ids]
    planned = accrual_journals(source.pay_group, source.month_end, source.share, runs, rules)
    # A line of a source run that could not be read could hold any amount: no accrual from that run.
    unreadable = [_unreadable(r, plan.run_errors[r]) for r in source.run_ids if plan.run_errors.get(r)]
    for journal in planned.journals:
        journal.problems.extend(unreadable)
    if not planned.journals:
        if planned.problems or unreadable:
            plan.unattributed_errors.append(f"pay group {source.pay_group}, month-end {source.month_end}: "
                                            + "; ".join(planned.problems + unreadable))
        else:
            source.note = (f"the accrued accounts have no amounts in UKG run(s) {', '.join(source.run_ids)}: "
                           "nothing to accrue")
    return planned.journals


# ---------------------------------------------------------------------- apply


def apply(ctx: Context, plan: AccrualPlan, progress: Callable[[int], None] | None = None) -> post_payroll.PayrollResult:
    """Record where each accrual's amounts came from, then post through post-payroll's exactly-once poster."""
    for journal in plan.to_write:
        source = next(s for s in plan.sources if s.pay_group == journal.key.pay_group)
        ctx.ledger.audit("accrual", {
            "month_end": source.month_end, "period_start": source.period and source.period.start,
            "period_end": source.period and source.period.end, "share": str(source.share),
            "basis": source.basis,
            "runs": list(source.run_ids), "estimate": source.estimate, "reverse_date": journal.reverse_date,
        }, journal.key.text)
    return post_payroll.apply(ctx, plan, progress)
