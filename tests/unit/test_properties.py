"""Property-based tests of the money paths: mapping and summarizing never create or lose a cent, a plan
balances exactly when its input does, and amounts survive parsing and serializing exactly.
"""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import gl, make_config
from ukg2d365.http import dumps_json
from ukg2d365.journal import JournalPlan, build_journals
from ukg2d365.mapping import Mapper
from ukg2d365.money import MAX_AMOUNT, AmountError, parse_amount
from ukg2d365.ukg.records import GlDistribution, parse_gl_line

PROPS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONFIGS = {summarize: make_config(summarize=summarize) for summarize in (True, False)}
ZERO = Decimal(0)

cents = st.integers(-10**9, 10**9).map(lambda c: Decimal(c).scaleb(-2))  # exactly two places, sign included
amount_or_null = st.one_of(st.none(), cents, st.just(Decimal("0.00")))
# Accounts and codes the test config maps (5000 -> 601500, 2100 -> 211000; CostCenter 110 -> CC110).
gl_lines = st.lists(
    st.tuples(st.sampled_from(["5000", "2100"]), st.sampled_from(["", "110", "120"]), st.sampled_from(["", "PROD"]),
              amount_or_null, amount_or_null).filter(lambda row: row[3] is not None or row[4] is not None),
    min_size=1, max_size=25,  # a line with both sides null is refused by parse_gl_line (tested in test_journal)
)


def parse(rows: list[tuple[str, str, str, Any, Any]], *, balance: bool = False) -> list[GlDistribution]:
    items = [gl(account, debit, credit, cc=cc, dept=dept, system_id=n)
             for n, (account, cc, dept, debit, credit) in enumerate(rows, start=1)]
    if balance:
        gap = sum((parse_amount(i["debitAmt"]) - parse_amount(i["creditAmt"]) for i in items), ZERO)
        items.append(gl("2100", 0, gap, system_id=len(items) + 1))  # a negative credit when debits fall short
    return [parse_gl_line(item, n) for n, item in enumerate(items, start=1)]


def net_by_account(lines: list[GlDistribution], plan: JournalPlan) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """Debit minus credit per D365 display value: from UKG's lines (mapped one by one) and from the plan."""
    source: dict[str, Decimal] = defaultdict(Decimal)
    mapper = Mapper(CONFIGS[True].mapping)
    for line in lines:
        source[mapper.ledger_account(line.account, line.org_level).display] += line.debit - line.credit
    planned: dict[str, Decimal] = defaultdict(Decimal)
    for ln in plan.lines:
        planned[ln.account] += ln.debit - ln.credit
    return {k: v for k, v in source.items() if v}, {k: v for k, v in planned.items() if v}


@PROPS
@given(gl_lines, st.booleans(), st.booleans())
def test_planning_never_creates_or_loses_a_cent(rows: list, summarize: bool, balance: bool) -> None:
    lines = parse(rows, balance=balance)
    [plan] = build_journals(lines, CONFIGS[summarize])
    source, planned = net_by_account(lines, plan)
    assert planned == source  # per account + dimensions, to the cent
    # Every planned line is one non-negative amount on one side, in cents.
    for ln in plan.lines:
        assert ln.debit >= 0 and ln.credit >= 0 and (ln.debit == 0) != (ln.credit == 0)
        assert ln.debit.as_tuple().exponent == ln.credit.as_tuple().exponent == -2
    assert plan.debit_total == sum((ln.debit for ln in plan.lines), ZERO)
    assert plan.credit_total == sum((ln.credit for ln in plan.lines), ZERO)
    assert [ln.line_number for ln in plan.lines] == list(range(1, len(plan.lines) + 1))


@PROPS
@given(gl_lines)
def test_without_summarizing_each_amount_moves_whole_to_its_side_after_sign_reversal(rows: list) -> None:
    lines = parse(rows)
    [plan] = build_journals(lines, CONFIGS[False])
    # A negative debit is a credit and a negative credit is a debit; nothing else changes an amount.
    want_debit = sum((max(ln.debit, ZERO) + max(-ln.credit, ZERO) for ln in lines), ZERO)
    want_credit = sum((max(ln.credit, ZERO) + max(-ln.debit, ZERO) for ln in lines), ZERO)
    assert plan.debit_total == want_debit
    assert plan.credit_total == want_credit
    assert sorted(a for ln in plan.lines for a in (ln.debit, ln.credit) if a) == sorted(
        abs(a) for ln in lines for a in (ln.debit, ln.credit) if a)


@PROPS
@given(gl_lines, st.booleans())
def test_summarized_and_detailed_plans_agree_on_every_account(rows: list, balance: bool) -> None:
    lines = parse(rows, balance=balance)
    [summed] = build_journals(lines, CONFIGS[True])
    [detailed] = build_journals(lines, CONFIGS[False])
    assert net_by_account(lines, summed)[1] == net_by_account(lines, detailed)[1]
    assert summed.debit_total - summed.credit_total == detailed.debit_total - detailed.credit_total
    assert len(summed.lines) <= len(detailed.lines)


@PROPS
@given(gl_lines, st.booleans(), st.booleans())
def test_plan_balances_if_and_only_if_its_input_balances(rows: list, summarize: bool, balance: bool) -> None:
    lines = parse(rows, balance=balance)
    [plan] = build_journals(lines, CONFIGS[summarize])
    input_balances = sum((ln.debit for ln in lines), ZERO) == sum((ln.credit for ln in lines), ZERO)
    unbalanced_problem = any("unbalanced" in p for p in plan.problems)
    assert plan.balanced == input_balances
    assert unbalanced_problem == (not input_balances)
    if balance:
        assert input_balances
    if input_balances and plan.lines:
        assert plan.postable  # nothing else is wrong with these lines: a balanced run is posted


@PROPS
@given(st.lists(st.tuples(st.sampled_from(["A", "B"]), cents), min_size=1, max_size=10), st.booleans())
def test_runs_are_planned_independently(rows: list[tuple[str, Decimal]], summarize: bool) -> None:
    items = []
    for n, (run, amount) in enumerate(rows, start=1):
        items += [gl("5000", amount, 0, run=run, cc="110", system_id=2 * n),
                  gl("2100", 0, amount, run=run, system_id=2 * n + 1)]
    lines = [parse_gl_line(item, n) for n, item in enumerate(items, start=1)]
    plans = {p.key.run_id: p for p in build_journals(lines, CONFIGS[summarize])}
    for run, plan in plans.items():
        own = [ln for ln in lines if ln.run_id == run]
        [alone] = build_journals(own, CONFIGS[summarize])
        assert [(ln.account, ln.debit, ln.credit) for ln in plan.lines] == [
            (ln.account, ln.debit, ln.credit) for ln in alone.lines]
        assert plan.source_hash == alone.source_hash


# ---------------------------------------------------------------- parsing and serializing amounts


valid_amounts = st.decimals(min_value=-MAX_AMOUNT, max_value=MAX_AMOUNT, places=2, allow_nan=False,
                            allow_infinity=False)


@PROPS
@given(valid_amounts)
def test_parse_amount_reads_back_what_str_wrote(amount: Decimal) -> None:
    assert parse_amount(str(amount)) == amount
    assert parse_amount(amount) == amount
    assert parse_amount(format(amount, "e")) == amount  # exponent notation is the same number
    assert parse_amount(str(amount)).as_tuple().exponent == -2


@PROPS
@given(valid_amounts, st.integers(1, 9))
def test_a_third_decimal_place_is_always_refused(amount: Decimal, extra: int) -> None:
    with pytest.raises(AmountError, match="more than 2 decimal places"):
        parse_amount(amount + Decimal(extra).scaleb(-3))


@PROPS
@given(st.one_of(st.text(max_size=40), st.decimals(), st.floats(), st.integers(), st.none(), st.booleans(),
                 st.lists(st.integers(), max_size=2), st.from_regex(r"[+-]?\d{0,20}(\.\d{0,6})?([eE][+-]?\d{1,12})?")))
def test_parse_amount_returns_cents_within_bounds_or_refuses(value: Any) -> None:
    try:
        amount = parse_amount(value)
    except AmountError as exc:
        assert str(exc) and "Decimal(" not in str(exc)
        return
    assert isinstance(amount, Decimal) and amount.is_finite()
    assert amount.as_tuple().exponent == -2 and abs(amount) <= MAX_AMOUNT
    assert not isinstance(value, (float, bool))


json_trees = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.text(max_size=20)
    | st.decimals(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=15,
)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Decimal):
        # Equal in value, and written without losing a trailing zero of a fraction (1.10 stays 1.10).
        exponent = a.as_tuple().exponent
        return a == b and (exponent >= 0 or (isinstance(b, Decimal) and format(b, "f") == format(a, "f")))
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b and type(a) is type(b)


@PROPS
@given(json_trees)
def test_dumps_json_round_trips_decimals_exactly(value: Any) -> None:
    assert _same(value, json.loads(dumps_json(value), parse_float=Decimal))


@PROPS
@given(valid_amounts)
def test_amount_written_for_d365_is_plain_fixed_point(amount: Decimal) -> None:
    text = dumps_json({"DebitAmount": amount})
    assert text == '{"DebitAmount":' + format(amount, "f") + "}"
    assert json.loads(text, parse_float=Decimal)["DebitAmount"] == amount


def test_float_is_refused_on_the_way_out() -> None:
    with pytest.raises(TypeError, match="float"):
        dumps_json({"DebitAmount": 0.1})
