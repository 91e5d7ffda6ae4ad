"""report: the month-end labor report finance attaches to the close. Read-only, like reconcile, whose flow it reuses.

1. **read**: one reconcile read (:func:`ukg2d365.flows.reconcile.read_and_plan`) over the range and the period
   before it, so the verdicts and the UKG and D365 totals are reconcile's own, never computed twice; the runs
   are then split into the range and the previous period.
2. **labor cost** (pure): UKG's amounts per AccountDisplayValue (as post-payroll maps them) read back into
   dimension values by D365's ledger format. A line is labor cost when it carries a value of a dimension UKG's
   org levels feed (cost center, department): the expense side of a GL run is distributed by org level, while
   its clearing and withholding lines carry none. Labor cost is debit minus credit.
3. **record**: :func:`apply` writes the range's verdicts on each run's trail, as ``reconcile`` does.

Rendered by ``ukg2d365.render.report`` (one self-contained HTML page, or CSV rows).
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from ukg2d365.config import Config
from ukg2d365.errors import UsageError
from ukg2d365.flows import reconcile
from ukg2d365.flows.runtime import Context

NONE = "(none)"  # a labor line without a value for this dimension
MAX_DAYS = 366


@dataclass(frozen=True)
class ReportSelection:
    date_from: date
    date_to: date
    pay_group: str | None = None

    def validate(self) -> None:
        if self.date_from > self.date_to:
            raise UsageError(f"--from {self.date_from} is after --to {self.date_to}")
        if (self.date_to - self.date_from).days >= MAX_DAYS:
            raise UsageError(f"--from {self.date_from} --to {self.date_to} spans more than a year",
                             hint="a labor report covers a month or a quarter; run one per period")

    @property
    def previous(self) -> tuple[date, date]:
        """The period the change is measured against: the previous calendar month when the range is a whole
        month, else as many days right before the range."""
        start, end = self.date_from, self.date_to
        if start.day == 1 and end == _month_end(start):
            before = start - timedelta(days=1)
            return before.replace(day=1), before
        days = (end - start).days + 1
        return start - timedelta(days=days), start - timedelta(days=1)


def _month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


@dataclass(frozen=True)
class CostLine:
    """Labor cost of one dimension value in the range and in the previous period."""

    value: str
    current: Decimal
    previous: Decimal

    @property
    def change(self) -> Decimal:
        return self.current - self.previous

    @property
    def change_percent(self) -> Decimal | None:
        if not self.previous:
            return None
        return (self.change * 100 / self.previous).quantize(Decimal("0.1"))


@dataclass
class LaborReport:
    selection: ReportSelection
    previous_from: date
    previous_to: date
    reconciliation: reconcile.ReconcileReport  # the range's runs: what `reconcile --from --to` says
    previous_runs: list[reconcile.RunReconciliation]
    dimensions: tuple[str, ...]  # the UKG-fed dimensions labor cost is shown by, in D365's format order
    by_dimension: dict[str, list[CostLine]] = field(default_factory=dict)
    # Labor cost per pay period end (previous period and range) by value of the first dimension: the chart.
    by_period: list[tuple[date, dict[str, Decimal]]] = field(default_factory=list)
    labor_total: Decimal = Decimal(0)
    previous_labor_total: Decimal = Decimal(0)
    currency: str = ""
    generated_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def runs(self) -> list[reconcile.RunReconciliation]:
        return self.reconciliation.runs

    @property
    def ok(self) -> bool:
        """Every run of the range matches D365 (an empty range proves nothing and is not ok)."""
        return bool(self.runs) and self.reconciliation.ok

    @property
    def chart_dimension(self) -> str | None:
        return self.dimensions[0] if self.dimensions else None


def read_and_plan(ctx: Context, selection: ReportSelection) -> LaborReport:
    """Reconcile the range and the period before it in one read, and sum labor cost by dimension. Writes nothing."""
    selection.validate()
    previous_from, previous_to = selection.previous
    both = reconcile.read_and_plan(ctx, reconcile.ReconcileSelection(
        pay_group=selection.pay_group, period_from=previous_from, period_to=selection.date_to))
    current = [run for run in both.runs if run.key.period_end >= selection.date_from]
    previous = [run for run in both.runs if run.key.period_end < selection.date_from]
    range_report = reconcile.ReconcileReport(
        reconcile.ReconcileSelection(pay_group=selection.pay_group, period_from=selection.date_from,
                                     period_to=selection.date_to),
        None, current, both.warnings, both.ukg_lines_read, both.precision, both.ledger_format, both.delimiter)
    report = LaborReport(selection, previous_from, previous_to, range_report, previous,
                         labor_dimensions(ctx.config, both.ledger_format), currency=ctx.config.d365.currency)
    summarize_labor(report)
    return report


def apply(ctx: Context, report: LaborReport, progress: Callable[[int], None] | None = None) -> LaborReport:
    """Record the range's verdicts on each run's trail (reconcile's record). Writes nothing to UKG or D365."""
    reconcile.apply(ctx, report.reconciliation, progress)
    return report


def labor_dimensions(config: Config, ledger_format: Sequence[str]) -> tuple[str, ...]:
    """The dimensions UKG's org levels feed, in D365's ledger format order (constants are on every line)."""
    dimensions = config.mapping.dimensions
    return tuple(name for name in ledger_format[1:] if name in dimensions and dimensions[name].source is not None)


def labor_by_dimension(run: reconcile.RunReconciliation, ledger_format: Sequence[str], delimiter: str,
                       dimensions: Sequence[str]) -> dict[str, dict[str, Decimal]]:
    """A run's labor cost (debit - credit of its lines that carry a value of ``dimensions``) per dimension value.

    Pure: the account display values are read back by position in D365's ledger format.
    """
    result: dict[str, dict[str, Decimal]] = {name: defaultdict(Decimal) for name in dimensions}
    for account, amounts in run.ukg_accounts.items():
        segments = dict(zip(ledger_format, account.split(delimiter), strict=False))
        values = {name: segments.get(name, "") for name in dimensions}
        if not any(values.values()):
            continue  # the balance-sheet side of the run: clearing and withholdings carry no org level
        for name in dimensions:
            result[name][values[name] or NONE] += amounts.debit - amounts.credit
    return result


def summarize_labor(report: LaborReport) -> None:
    """Fill the cost lines per dimension, the chart's periods and the totals. Pure."""
    fmt, delimiter, dims = report.reconciliation.ledger_format, report.reconciliation.delimiter, report.dimensions
    current = _sum_runs(report.runs, fmt, delimiter, dims)
    previous = _sum_runs(report.previous_runs, fmt, delimiter, dims)
    for name in dims:
        values = sorted(set(current[name]) | set(previous[name]))
        report.by_dimension[name] = [CostLine(v, current[name].get(v, Decimal(0)), previous[name].get(v, Decimal(0)))
                                     for v in values]
    if dims:
        report.labor_total = sum(current[dims[0]].values(), Decimal(0))
        report.previous_labor_total = sum(previous[dims[0]].values(), Decimal(0))
    periods: dict[date, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for run in report.previous_runs + report.runs:
        by = labor_by_dimension(run, fmt, delimiter, dims[:1])
        for value, cost in (by[dims[0]].items() if dims else ()):
            periods[run.key.period_end][value] += cost
        periods.setdefault(run.key.period_end, defaultdict(Decimal))
    report.by_period = [(end, dict(periods[end])) for end in sorted(periods)]


def _sum_runs(runs: Iterable[reconcile.RunReconciliation], fmt: Sequence[str], delimiter: str,
              dims: Sequence[str]) -> dict[str, dict[str, Decimal]]:
    total: dict[str, dict[str, Decimal]] = {name: defaultdict(Decimal) for name in dims}
    for run in runs:
        for name, values in labor_by_dimension(run, fmt, delimiter, dims).items():
            for value, cost in values.items():
                total[name][value] += cost
    return total
