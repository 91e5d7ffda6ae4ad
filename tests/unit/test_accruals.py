"""Month-end accrual arithmetic: the month's share of a straddling period, exact to the cent."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ukg2d365.accruals import (
    Share,
    accrual_lines,
    allocate,
    is_month_end,
    month_ends_between,
    period_share,
    previous_month_end,
    straddles,
)

D = Decimal


def test_fourteen_day_period_with_four_days_in_the_month():
    # 2026-11-27 (Fri) .. 2026-12-10 (Thu): Nov 27, 28, 29, 30 fall in November.
    start, end, month_end = date(2026, 11, 27), date(2026, 12, 10), date(2026, 11, 30)
    assert straddles(start, end, month_end)
    assert period_share(start, end, month_end) == Share(4, 14)
    # Workdays: Fri 27 and Mon 30 of Mon..Fri; the period holds ten.
    assert period_share(start, end, month_end, "workdays") == Share(2, 10)
    assert period_share(start, end, month_end, "workdays", {0, 1, 2, 3, 4, 5}) == Share(3, 12)


def test_a_period_ending_on_the_month_end_does_not_straddle_it():
    assert not straddles(date(2026, 11, 17), date(2026, 11, 30), date(2026, 11, 30))
    assert straddles(date(2026, 11, 30), date(2026, 12, 13), date(2026, 11, 30))


def test_month_end_helpers():
    assert is_month_end(date(2028, 2, 29)) and not is_month_end(date(2026, 2, 28 - 1))
    assert previous_month_end(date(2026, 3, 1)) == date(2026, 2, 28)
    assert previous_month_end(date(2026, 3, 31)) == date(2026, 2, 28)
    assert month_ends_between(date(2026, 10, 15), date(2026, 12, 31)) == \
        [date(2026, 10, 31), date(2026, 11, 30), date(2026, 12, 31)]


def test_shares_are_rounded_per_line_with_the_residue_on_the_largest():
    # 4/14 of 0.01 three times is 0.0029 each (rounds to 0.00) but 0.0086 in total (0.01): the cent goes
    # onto the largest line (the first of equals).
    assert allocate([D("0.01"), D("0.01"), D("0.01")], Share(4, 14)) == [D("0.01"), D("0.00"), D("0.00")]
    assert allocate([D("1000.00"), D("0.01"), D("0.01"), D("0.01")], Share(4, 14)) == \
        [D("285.72"), D("0.00"), D("0.00"), D("0.00")]  # 285.714.. + residue: total 1000.03*4/14 = 285.72


def test_accrual_lines_debit_expense_credit_liability_and_balance():
    lines = accrual_lines([("601500-CC110", D("1400.00")), ("601510-CC110", D("-70.00")),
                           ("602100-CC110", D("0.00"))], Share(4, 14), "211900")
    assert [(ln.account, ln.debit, ln.credit) for ln in lines] == [
        ("601500-CC110", D("400.00"), D("0.00")),
        ("601510-CC110", D("0.00"), D("20.00")),
        ("211900", D("0.00"), D("380.00")),
    ]


def test_nothing_to_accrue_gives_no_lines():
    assert accrual_lines([("601500", D("0.00"))], Share(4, 14), "211900") == []
    assert accrual_lines([("601500", D("100.00"))], Share(0, 14), "211900") == []


def test_more_places_than_the_currency_are_refused():
    with pytest.raises(ValueError, match="more than 2 decimal places"):
        allocate([D("1.005")], Share(1, 2))


amounts = st.decimals(min_value=D("-99999.99"), max_value=D("99999.99"), places=2)
shares = st.integers(min_value=1, max_value=31).flatmap(
    lambda total: st.builds(Share, st.integers(min_value=0, max_value=total), st.just(total)))


@given(st.lists(amounts, min_size=1, max_size=30), shares)
def test_allocation_sums_to_the_share_of_the_total_and_strays_at_most_the_residue(values, share):
    parts = allocate(values, share)
    exact_total = sum(values, D(0)) * share.days_in_month / share.days_in_period
    assert abs(sum(parts, D(0)) - exact_total) <= D("0.005")
    largest = max(range(len(values)), key=lambda i: (abs(values[i]), -i))
    for i, (value, part) in enumerate(zip(values, parts, strict=True)):
        exact = value * share.days_in_month / share.days_in_period
        assert part == part.quantize(D("0.01"))
        if i != largest:
            assert abs(part - exact) <= D("0.005")
    assert abs(parts[largest] - values[largest] * share.days_in_month / share.days_in_period) <= \
        D("0.005") * (len(values) + 1)


@given(st.lists(st.tuples(st.text(min_size=1, max_size=5), amounts), max_size=30), shares)
def test_accrual_journal_always_balances(rows, share):
    lines = accrual_lines(rows, share, "211900")
    assert sum((ln.debit - ln.credit for ln in lines), D(0)) == 0
    assert all(ln.debit >= 0 and ln.credit >= 0 and not (ln.debit and ln.credit) for ln in lines)
