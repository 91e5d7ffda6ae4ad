"""The labor report's pure parts: the previous period, labor cost read back from account display values."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from ukg2d365.errors import UsageError
from ukg2d365.flows.reconcile import MATCH, Amounts, RunReconciliation
from ukg2d365.flows.report import NONE, ReportSelection, labor_by_dimension
from ukg2d365.journal import PostingKey

FORMAT = ("MainAccount", "BusinessUnit", "CostCenter", "Project", "Department", "Region")


def test_previous_period_of_a_whole_month_is_the_calendar_month_before() -> None:
    assert ReportSelection(date(2026, 3, 1), date(2026, 3, 31)).previous == (date(2026, 2, 1), date(2026, 2, 28))
    assert ReportSelection(date(2026, 1, 1), date(2026, 1, 31)).previous == (date(2025, 12, 1), date(2025, 12, 31))


def test_previous_period_of_any_other_range_is_as_many_days_before() -> None:
    assert ReportSelection(date(2026, 11, 10), date(2026, 11, 23)).previous == (date(2026, 10, 27),
                                                                                 date(2026, 11, 9))


def test_a_reversed_or_overlong_range_is_refused() -> None:
    with pytest.raises(UsageError, match="after"):
        ReportSelection(date(2026, 12, 1), date(2026, 11, 1)).validate()
    with pytest.raises(UsageError, match="more than a year"):
        ReportSelection(date(2025, 1, 1), date(2026, 1, 5)).validate()


def test_labor_cost_is_debit_minus_credit_of_the_lines_carrying_an_org_level_value() -> None:
    key = PostingKey("C0MP1", "BW", date(2026, 11, 13), "GL1")
    accounts = {
        "601500--110--PROD-": Amounts(Decimal("1000.00")),
        "601500--110--QA-": Amounts(Decimal("250.00"), Decimal("50.00")),  # a reversal nets off
        "602100--120---": Amounts(Decimal("75.50")),  # no department: shown as (none)
        "211000-----": Amounts(credit=Decimal("1275.50")),  # clearing: no org level, not labor cost
        "211100-001----": Amounts(credit=Decimal("100.00")),  # a constant BusinessUnit is not an org level
    }
    run = RunReconciliation(key, key.marker, MATCH, Amounts(), Amounts(), None, None, [], [], [],
                            ukg_accounts=accounts)
    by = labor_by_dimension(run, FORMAT, "-", ("CostCenter", "Department"))
    assert by["CostCenter"] == {"110": Decimal("1200.00"), "120": Decimal("75.50")}
    assert by["Department"] == {"PROD": Decimal("1000.00"), "QA": Decimal("200.00"), NONE: Decimal("75.50")}
