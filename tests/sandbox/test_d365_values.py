"""The D365 simulator's body reader: its fast paths answer exactly what the full type check answers."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from ukg2d365.sandbox.d365.schema import SPECS
from ukg2d365.sandbox.d365.values import _coerce_value, coerce_body

LINES = SPECS["LedgerJournalLines"]


@pytest.mark.parametrize(
    ("prop", "value", "stored"),
    [
        ("Text", "Payroll", "Payroll"),
        ("DebitAmount", 5, Decimal(5)),
        ("DebitAmount", Decimal("1.50"), Decimal("1.50")),
        ("TransDate", "2024-03-15T23:30:00-02:00", "2024-03-15T12:00:00Z"),  # the date as written, at noon
        ("ReverseEntry", "Yes", "Yes"),
        ("JournalNames.PostingLineLimit", 500, 500),
    ],
)
def test_full_type_check_agrees_with_the_fast_paths(prop: str, value: Any, stored: Any) -> None:
    spec, _, prop = prop.rpartition(".")
    entity = SPECS[spec] if spec else LINES
    checked = _coerce_value(entity, prop, value, False)
    fast = coerce_body(entity, {prop: value}, False)[prop]
    assert (type(checked), checked) == (type(fast), fast) == (type(stored), stored)


def test_utc_date_time_is_stored_in_utc() -> None:
    spec = SPECS["EmploymentsV2"]
    assert _coerce_value(spec, "EmploymentStartDate", "2024-03-15T23:30:00-02:00", False) == "2024-03-16T01:30:00Z"
    assert _coerce_value(spec, "EmploymentEndDate", "1900-01-01T00:00:00Z", False) == "1900-01-01T00:00:00Z"


def test_a_string_subtype_passes_the_full_type_check_unchanged() -> None:
    class Text(str):
        pass

    value = Text("Payroll")
    assert _coerce_value(LINES, "Text", value, False) is value
    assert coerce_body(LINES, {"Text": value}, False)["Text"] is value
