"""The intercompany rules: every journal balances and the intercompany lines net to zero, whatever moves."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from ukg2d365.intercompany import EntityRouting, Transfer, balancing_lines, net_of, transfers

D = Decimal


def test_routing_without_legal_entities_pays_every_company_from_the_one_entity():
    routing = EntityRouting("USMF")
    assert routing.paying("ANY") == "USMF"
    assert routing.bearing([("CostCenter", "1200")]) is None


def test_routing_by_company_and_dimension():
    routing = EntityRouting("USMF", {"C1": "USMF", "C2": "USPI"}, "CostCenter", {"1200": "USPM"})
    assert routing.paying("C2") == "USPI"
    assert routing.paying("C3") is None
    assert routing.bearing([("BusinessUnit", "1200"), ("CostCenter", "1200")]) == "USPM"
    assert routing.bearing([("CostCenter", "110")]) is None


def test_a_moved_expense_is_a_receivable_in_the_paying_entity_and_a_payable_in_the_bearing_one():
    (moved,) = transfers("USMF", [("USPM", D("100.00"), D("0.00")), ("USPM", D("20.00"), D("0.00"))])
    assert moved == Transfer("USMF", "USPM", D("120.00"))
    due_from, due_to = balancing_lines(moved, "133100", "233100")
    assert (due_from.entity, due_from.main_account, due_from.debit, due_from.credit) == \
        ("USMF", "133100", D("120.00"), D("0.00"))
    assert (due_to.entity, due_to.main_account, due_to.debit, due_to.credit) == \
        ("USPM", "233100", D("0.00"), D("120.00"))


def test_a_moved_credit_lowers_the_net_and_a_net_credit_flips_both_sides():
    (moved,) = transfers("USMF", [("USPM", D("10.00"), D("0.00")), ("USPM", D("0.00"), D("25.00"))])
    assert moved.amount == D("-15.00")
    due_from, due_to = balancing_lines(moved, "133100", "233100")
    assert (due_from.debit, due_from.credit) == (D("0.00"), D("15.00"))
    assert (due_to.debit, due_to.credit) == (D("15.00"), D("0.00"))


def test_lines_that_cancel_out_need_no_intercompany_line_and_the_paying_entity_never_owes_itself():
    assert transfers("USMF", [("USPM", D("5.00"), D("0.00")), ("USPM", D("0.00"), D("5.00")),
                              ("USMF", D("9.00"), D("0.00"))]) == []


amounts = st.decimals(min_value=D("-100000"), max_value=D("100000"), places=2)
entities = st.sampled_from(["USMF", "USPI", "USPM", "DEMF"])


@given(st.lists(st.tuples(entities, amounts, amounts), max_size=40), entities)
def test_every_journal_balances_and_intercompany_nets_to_zero(rows, paying):
    """A balanced pay run split over entities: each entity's lines plus its intercompany lines sum to zero."""
    lines = [(entity, max(dr, D(0)), max(cr, D(0))) for entity, dr, cr in rows]
    imbalance = sum((dr - cr for _, dr, cr in lines), D(0))
    lines.append((paying, D(0) if imbalance > 0 else -imbalance, imbalance if imbalance > 0 else D(0)))
    generated = [line for t in transfers(paying, lines) for line in balancing_lines(t, "133100", "233100")]
    assert net_of(generated) == 0
    for entity in {e for e, _, _ in lines}:
        own = sum((dr - cr for e, dr, cr in lines if e == entity), D(0))
        settle = net_of(g for g in generated if g.entity == entity)
        assert own + settle == 0, entity
    for g in generated:
        assert g.debit >= 0 and g.credit >= 0 and (g.debit == 0) != (g.credit == 0)
