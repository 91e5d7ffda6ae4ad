"""One journal per pay run per legal entity: keys, the split, intercompany lines, and today's key kept."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import CONFIG_YAML, gl
from ukg2d365.config import Config, parse_config
from ukg2d365.journal import PostingKey, build_journals
from ukg2d365.ukg.records import parse_gl_line

D = Decimal
ENTITIES = """
legal_entities:
  by_company: {"C0MP1": "USMF", "C0MP2": "USPI"}
  by_dimension:
    dimension: CostCenter
    values: {"130": "USPM"}
  intercompany:
    due_from_account: "133100"
    due_to_account: "233100"
"""


def config(extra: str = ENTITIES, summarize: bool = True) -> Config:
    return parse_config(CONFIG_YAML.format(summarize=str(summarize).lower()) + extra, Path("/nonexistent/c.yaml"))


def lines(*items: dict) -> list:
    return [parse_gl_line(item, i) for i, item in enumerate(items, start=1)]


def test_single_entity_posting_key_and_marker_are_todays():
    """Ledgers and D365 journals already carry these: an upgrade must not change them, or it would repost."""
    key = PostingKey("C0MP1", "BW", date(2026, 11, 13), "GL20261113BW01")
    assert key.text == "C0MP1/BW/2026-11-13/GL20261113BW01"
    assert key.marker == "U2D-AEVMDTTD3NPG"
    (plan,) = build_journals(lines(gl("5000", "10.00", run="GL20261113BW01"),
                                   gl("2100", 0, "10.00", run="GL20261113BW01", system_id=2)), config(""))
    assert plan.key == key and plan.key.marker == "U2D-AEVMDTTD3NPG"
    assert plan.legal_entity == "usmf" and plan.data_area_id == "usmf"


@pytest.mark.parametrize("run_id", ["GL20261127BW01", "OFFCYCLE-2026-11-27-BONUS-RUN-0001"])
def test_a_bearing_entitys_description_keeps_the_entity_whole_within_60_characters(run_id):
    """D365's journal list shows the Description: '@USP' (cut from @USPM) would name no entity, or the wrong one."""
    key = PostingKey("C0MP1", "BW", date(2026, 11, 13), run_id, "USPM")
    (plan,) = [p for p in build_journals(lines(gl("5000", "40.00", cc="130", dept="PROD", run=run_id),
                                               gl("2100", 0, "40.00", run=run_id, system_id=2)), config())
               if p.key == key]
    assert len(plan.description) <= 60
    assert plan.description.endswith(f" @USPM [{key.marker}]")
    if len(run_id) < 20:  # UKG's own run ids: the whole of it, the word "Payroll" gives way
        assert plan.description == f"BW 2026-11-13 {run_id} @USPM [{key.marker}]"
    else:
        assert plan.description.startswith("BW 2026-11-13 OFFCYCLE")
        assert "\N{HORIZONTAL ELLIPSIS} @USPM" in plan.description


def test_the_paying_entitys_journal_keeps_todays_key_and_a_bearing_entity_gets_a_suffix():
    run = lines(gl("5000", "100.00", cc="110", dept="PROD"), gl("5000", "40.00", cc="130", dept="PROD", system_id=2),
                gl("2100", 0, "140.00", system_id=3))
    paying, bearing = build_journals(run, config())
    assert paying.key == PostingKey("C0MP1", "BW", date(2026, 11, 13), "R1")
    assert paying.key.text == "C0MP1/BW/2026-11-13/R1"
    assert bearing.key.text == "C0MP1/BW/2026-11-13/R1/@USPM" and bearing.key.marker != paying.key.marker
    assert (paying.legal_entity, bearing.legal_entity) == ("USMF", "USPM")
    assert bearing.key.marker in bearing.description and "@USPM" in bearing.description
    shown = {(p.legal_entity, ln.account, ln.debit, ln.credit) for p in (paying, bearing) for ln in p.lines}
    assert shown == {
        ("USMF", "601500-CC110-PROD", D("100.00"), D("0.00")),
        ("USMF", "211000--", D("0.00"), D("140.00")),
        ("USMF", "133100--", D("40.00"), D("0.00")),  # receivable from USPM
        ("USPM", "601500-130-PROD", D("40.00"), D("0.00")),
        ("USPM", "233100--", D("0.00"), D("40.00")),  # payable to USMF
    }
    for plan in (paying, bearing):
        assert plan.balanced and plan.postable, plan.problems
        assert [ln.line_number for ln in plan.lines] == list(range(1, len(plan.lines) + 1))
    assert paying.accounts == {"601500", "211000", "133100"} and bearing.accounts == {"601500", "233100"}
    assert bearing.dimension_values == {"CostCenter": {"130"}, "Department": {"PROD"}}


def test_a_company_maps_to_its_own_entity_without_intercompany():
    run = lines(gl("5000", "5.00", coId="C0MP2"), gl("2100", 0, "5.00", coId="C0MP2", system_id=2))
    (plan,) = build_journals(run, config())
    assert plan.legal_entity == "USPI" and plan.key.text == "C0MP2/BW/2026-11-13/R1"


def test_an_unmapped_company_is_refused_by_name():
    run = lines(gl("5000", "5.00", coId="ZZZ9"), gl("2100", 0, "5.00", coId="ZZZ9", system_id=2))
    (plan,) = build_journals(run, config())
    assert not plan.postable
    assert any("UKG company ZZZ9 has no entry in legal_entities.by_company" in p for p in plan.problems)


def test_intercompany_dimension_constants_land_on_both_intercompany_lines():
    extra = ENTITIES + '    dimensions: {"CostCenter": "IC"}\n'
    run = lines(gl("5000", "40.00", cc="130"), gl("2100", 0, "40.00", system_id=2))
    paying, bearing = build_journals(run, config(extra))
    assert paying.lines[-1].account == "133100-IC-" and bearing.lines[-1].account == "233100-IC-"
    assert "IC" in paying.dimension_values["CostCenter"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["110", "130", ""]), st.sampled_from(["C0MP1", "C0MP2"]),
                          st.decimals(min_value=D("-500"), max_value=D("500"), places=2)), min_size=1, max_size=20),
       st.booleans())
def test_every_entity_journal_balances_and_intercompany_nets_to_zero(rows, summarize):
    items = []
    for i, (cc, company, amount) in enumerate(rows):
        items.append(gl("5000", str(amount), cc=cc, coId=company, system_id=2 * i + 1))
        items.append(gl("2100", 0, str(amount), coId=company, system_id=2 * i + 2))
    plans = build_journals(lines(*items), config(summarize=summarize))
    ic = D(0)
    for plan in plans:
        if not plan.lines:
            continue
        assert plan.debit_total == plan.credit_total, plan.key.text
        ic += sum((ln.debit - ln.credit for ln in plan.lines if ln.account[:6] in ("133100", "233100")), D(0))
    assert ic == 0
    keys = [p.key.text for p in plans]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("summarize", [True, False])
def test_a_moved_credit_is_settled_on_the_net(summarize):
    run = lines(gl("5000", "30.00", cc="130"), gl("5000", "-50.00", cc="130", system_id=2),
                gl("2100", "20.00", 0, system_id=3))
    paying, bearing = build_journals(run, config(summarize=summarize))
    assert (paying.lines[-1].account, paying.lines[-1].debit, paying.lines[-1].credit) == \
        ("133100--", D("0.00"), D("20.00"))
    assert (bearing.lines[-1].account, bearing.lines[-1].debit, bearing.lines[-1].credit) == \
        ("233100--", D("20.00"), D("0.00"))
    assert paying.balanced and bearing.balanced
