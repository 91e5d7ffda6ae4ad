"""Hostile UKG data: a bad record refuses its own pay run, by name, and nothing else.

Unit tests go through ``parse_gl_line`` and ``build_journals``; the end-to-end tests run the CLI against the
sandbox, whose UKG serves test lines verbatim (``RawJson`` puts NaN, 1e15 or 1234.005 on the wire exactly).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import CONFIG_YAML, gl, make_config
from tests.world import World, d365_totals, display
from ukg2d365.config import parse_config
from ukg2d365.errors import DataError
from ukg2d365.journal import build_journals
from ukg2d365.sandbox.data import RawJson
from ukg2d365.sandbox.faults import FaultRule
from ukg2d365.ukg.records import parse_gl_line


def lines(*items: dict) -> list:
    return [parse_gl_line(item, i) for i, item in enumerate(items, start=1)]


# ---------------------------------------------------------------------- amounts


@pytest.mark.parametrize("value,why", [
    ("1,234.50", "'1,234.50' is not a plain number (no thousands separators or currency signs)"),
    ("$12.00", "'$12.00' is not a plain number"),
    (Decimal("1234.005"), "1234.005 has more than 2 decimal places"),
    (Decimal("1E-3"), "0.001 has more than 2 decimal places"),
    (Decimal("NaN"), "NaN is not a finite number"),
    (Decimal("Infinity"), "Infinity is not a finite number"),
    (Decimal("-Infinity"), "-Infinity is not a finite number"),
    (Decimal("1e15"), "1E+15 is larger than any payroll amount (999999999999.99)"),
    (Decimal("1E+999999"), "1E+999999 is too large"),
    ("NaN", "'NaN' is not a plain number"),
    (1.5, "1.5 is not an exact amount"),
    (True, "True is not an exact amount"),
    ([1], "[1] is not a number"),
    ({"amount": 1}, "{'amount': 1} is not a number"),
])
def test_bad_amount_is_refused_naming_run_line_field_and_value(value: Any, why: str) -> None:
    with pytest.raises(DataError) as caught:
        parse_gl_line(gl("5000", 0, value, run="R77", system_id=4711), 1)
    message = str(caught.value)
    assert message.startswith("UKG GL run R77 line 4711: creditAmt ")
    assert why in message
    assert "Decimal(" not in message  # the user's value, not Python's repr of it


@pytest.mark.parametrize("value,amount", [
    (None, Decimal("0.00")),  # UKG leaves the unused side empty
    (Decimal("1.2345E+3"), Decimal("1234.50")),  # exponent notation, exact
    (Decimal("1E+2"), Decimal("100.00")),
    ("1e2", Decimal("100.00")),
    ("1234.50", Decimal("1234.50")),
    (Decimal("12.500"), Decimal("12.50")),  # extra zeros are not extra precision
    (7, Decimal("7.00")),
])
def test_exact_amounts_in_any_notation_are_accepted(value: Any, amount: Decimal) -> None:
    line = parse_gl_line(gl("5000", value), 1)
    assert line.debit == amount
    assert str(line.debit) == str(amount)  # quantized to cents: D365 gets 100.00, never 1E+2


# ---------------------------------------------------------------------- fields


@pytest.mark.parametrize("change,why", [
    ({"runId": None}, "GL item without runId, line 9: runId is missing"),
    ({"generalLedgerAccount": None}, "generalLedgerAccount is missing"),
    ({"generalLedgerAccount": "  "}, "generalLedgerAccount is missing"),
    ({"generalLedgerAccount": {"code": "5000"}}, "generalLedgerAccount {'code': '5000'} is not text"),
    ({"payGroup": None}, "payGroup is missing"),
    ({"coId": None, "companyCode": None}, "companyCode is missing"),
    ({"periodEndDate": None}, "periodEndDate is missing"),
    ({"periodEndDate": "13/11/2026"}, "'13/11/2026' is not a date"),
    ({"periodEndDate": 20261113}, "20261113 is not a date"),
    ({"blockId": "two"}, "blockId 'two' is not a whole number"),
    ({"totalNrOfBlocks": Decimal("1.5")}, "totalNrOfBlocks 1.5 is not a whole number"),
    ({"orgLevel1": ["110"]}, "orgLevel1 ['110'] is not text"),
    ({"orgLevel1": True}, "orgLevel1 True is not text"),
])
def test_missing_or_mistyped_field_is_named(change: dict, why: str) -> None:
    item = gl("5000", 1, run="R9", system_id=9)
    item.update(change)
    with pytest.raises(DataError, match="line 9: ") as caught:
        parse_gl_line(item, 1)
    assert why in str(caught.value)


def test_item_that_is_not_an_object_is_refused_by_position() -> None:
    with pytest.raises(DataError, match=r"UKG GL item #3 is not an object: list"):
        parse_gl_line(["5000", 1], 3)


def test_extra_fields_are_ignored_and_change_nothing() -> None:
    plain = lines(gl("5000", Decimal("10.00"), cc="110", system_id=1), gl("2100", 0, Decimal("10.00"), system_id=2))
    noisy = lines(gl("5000", Decimal("10.00"), cc="110", system_id=1, surprise={"nested": [1, None]}, x=None),
                  gl("2100", 0, Decimal("10.00"), system_id=2, earningCode="REG", hours=Decimal("80")))
    a, b = build_journals(plain, make_config()), build_journals(noisy, make_config())
    assert [(ln.account, ln.debit, ln.credit) for ln in a[0].lines] == [
        (ln.account, ln.debit, ln.credit) for ln in b[0].lines]
    assert a[0].source_hash == b[0].source_hash and b[0].problems == []


# ---------------------------------------------------------------------- runs


def test_duplicate_gl_line_refuses_the_run_naming_the_system_id() -> None:
    dup = gl("5000", Decimal("50.00"), cc="110", system_id=31)
    [journal] = build_journals(lines(dup, dict(dup), gl("2100", 0, Decimal("100.00"), system_id=32)), make_config())
    assert not journal.postable
    assert any("UKG returned GL line(s) twice (systemId 31)" in p for p in journal.problems)


def test_same_system_id_in_two_blocks_is_not_a_duplicate() -> None:
    [journal] = build_journals(lines(
        gl("5000", Decimal("5.00"), cc="110", system_id=1, blockId=1, totalNrOfBlocks=2),
        gl("2100", 0, Decimal("5.00"), system_id=1, blockId=2, totalNrOfBlocks=2),
    ), make_config())
    assert journal.problems == []


def test_run_of_zero_amounts_is_refused_as_empty() -> None:
    [journal] = build_journals(lines(gl("5000", Decimal("0"), None, cc="110", system_id=1),
                                     gl("2100", Decimal("0"), Decimal("0.00"), system_id=2)), make_config())
    assert not journal.postable
    assert "empty pay run: no amounts to post" in journal.problems


def test_negative_amount_is_refused_by_line_when_configured() -> None:
    config = parse_config(
        CONFIG_YAML.format(summarize="true").replace("payroll:\n", "payroll:\n  negative_amounts: refuse\n"),
        Path("/nonexistent/ukg2d365.yaml"),
    )
    [journal] = build_journals(lines(gl("5000", Decimal("100.00"), cc="110", system_id=1),
                                     gl("5000", Decimal("-30.00"), cc="110", system_id=2),
                                     gl("2100", 0, Decimal("70.00"), system_id=3)), config)
    assert not journal.postable
    assert any(p.startswith("negative amounts on line(s) 2 ") and "negative_amounts is refuse" in p
               for p in journal.problems)


def test_negative_amount_is_reversed_by_default_and_never_sent_negative() -> None:
    [journal] = build_journals(lines(gl("5000", Decimal("100.00"), cc="110", system_id=1),
                                     gl("2100", Decimal("-100.00"), 0, system_id=2)), make_config())
    assert journal.problems == []
    assert all(ln.debit >= 0 and ln.credit >= 0 for ln in journal.lines)
    assert journal.debit_total == journal.credit_total == Decimal("100.00")


def test_a_bad_run_never_touches_its_neighbours_plan() -> None:
    good = [gl("5000", Decimal("10.00"), run="GOOD", cc="110", system_id=1),
            gl("2100", 0, Decimal("10.00"), run="GOOD", system_id=2)]
    bad = [gl("5000", Decimal("10.00"), run="BAD", cc="1-10", system_id=3),
           gl("2100", 0, Decimal("9.99"), run="BAD", system_id=4)]
    plans = {j.key.run_id: j for j in build_journals(lines(*good, *bad), make_config())}
    assert plans["GOOD"].postable and plans["GOOD"].debit_total == Decimal("10.00")
    assert not plans["BAD"].postable
    assert len(plans["BAD"].problems) == 2  # delimiter in a code, and unbalanced: every reason, not the first


# ---------------------------------------------------------------------- end to end


def patch_config(world: World, **sections: dict) -> None:
    data = yaml.safe_load(world.config_path.read_text())
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    world.config_path.write_text(yaml.safe_dump(data, sort_keys=False))


def journal_of(world: World, run_id: str) -> list[dict]:
    return [j for j in world.journals() if f" {run_id} " in j["Description"]]


@pytest.mark.e2e
def test_bad_runs_are_refused_each_by_name_while_the_rest_of_due_posts(world: World) -> None:
    period = world.sandbox.dataset.closed_periods()[-1].period_end
    make = world.sandbox.dataset.make_gl_line
    add = world.sandbox.dataset.add_gl_run

    sid = {"BADNAN": 7001, "BADSEP": 7002, "BADDEC": 7003, "BADHUGE": 7004, "BADTYPE": 7005}

    def run(run_id: str, debit: Any, credit: Any = Decimal("100.00"), *extra: dict) -> None:
        add(run_id, period_end=period, lines=[
            make(run_id, "5000", debit=debit, credit=None, cost_center="110", department="PROD", period_end=period,
                 system_id=sid.get(run_id)),
            make(run_id, "2100", debit=None, credit=credit, period_end=period), *extra])

    run("BADNAN", RawJson("NaN"))
    run("BADSEP", "1,234.50")
    run("BADDEC", RawJson("1234.005"))
    run("BADHUGE", RawJson("1e15"))
    run("BADTYPE", RawJson("true"))
    dup = make("BADDUP", "5000", debit=Decimal("50.00"), cost_center="110", department="PROD", period_end=period)
    run("BADDUP", Decimal("50.00"), Decimal("100.00"), dup, dict(dup))
    run("EMPTY0", RawJson("0"), RawJson("0.00"))
    # A good run in the same selection: exponent notation, nulls on the unused side, fields UKG may add later.
    run("GOODEXP", RawJson("1.0E+2"), RawJson("100"),
        make("GOODEXP", "5010", debit=RawJson("2.5e1"), credit=None, cost_center="110", department="PROD",
             period_end=period, newField={"any": ["thing"]}),
        make("GOODEXP", "2110", debit=None, credit=RawJson("25.00"), period_end=period))
    events = world.json_events("post-payroll", "--due", "--yes", expect=1)
    refused = {e["run_id"]: " ".join(e["problems"]) for e in events if e.get("status") == "refused"}
    assert f"GL run BADNAN line {sid['BADNAN']}: debitAmt NaN is not a finite number" in refused["BADNAN"]
    assert f"GL run BADSEP line {sid['BADSEP']}: debitAmt '1,234.50' is not a plain number" in refused["BADSEP"]
    assert f"line {sid['BADDEC']}: debitAmt 1234.005 has more than 2 decimal places" in refused["BADDEC"]
    assert f"line {sid['BADHUGE']}: debitAmt 1E+15 is larger than any payroll amount" in refused["BADHUGE"]
    assert f"line {sid['BADTYPE']}: debitAmt True is not an exact amount" in refused["BADTYPE"]
    assert "UKG returned GL line(s) twice" in refused["BADDUP"]
    assert "empty pay run" in refused["EMPTY0"]
    assert set(refused) == {"BADNAN", "BADSEP", "BADDEC", "BADHUGE", "BADTYPE", "BADDUP", "EMPTY0"}
    posted = [e["key"] for e in events if e["event"] == "posting" and e["status"] == "posted"]
    assert any(k.endswith("/GOODEXP") for k in posted)
    assert any(k.endswith(world.latest_run().run_id) for k in posted)  # UKG's own run of that period
    for bad in refused:
        assert journal_of(world, bad) == []
    [good] = journal_of(world, "GOODEXP")
    assert d365_totals(good) == {(display("601500", "110", "PROD"), "debit"): Decimal("100.00"),
                                 (display("601510", "110", "PROD"), "debit"): Decimal("25.00"),
                                 (display("211000"), "credit"): Decimal("100.00"),
                                 (display("211100"), "credit"): Decimal("25.00")}
    blob = "\n".join(world.outputs)
    assert "Traceback" not in blob


@pytest.mark.e2e
def test_bad_record_in_a_pay_group_selection_exits_1_with_a_one_line_explanation(world: World) -> None:
    period = world.sandbox.dataset.closed_periods()[-1].period_end
    make = world.sandbox.dataset.make_gl_line
    world.sandbox.dataset.add_gl_run("BADNAN2", period_end=period, lines=[
        make("BADNAN2", "5000", debit=RawJson("NaN"), cost_center="110", department="PROD", period_end=period,
             system_id=424242),
        make("BADNAN2", "2100", credit=Decimal("1.00"), period_end=period)])
    result = world.cli("post-payroll", "--pay-group", "BW", "--period-end", str(period), "--yes", expect=1)
    assert "refusing UKG run BADNAN2" in result.output
    assert "nothing is sent for it" in result.output
    assert "GL run BADNAN2 line 424242: debitAmt NaN is not a finite number" in result.output
    assert "Traceback" not in result.output
    assert journal_of(world, "BADNAN2") == []
    assert len(journal_of(world, world.latest_run().run_id)) == 1  # the healthy run of the period posted


@pytest.mark.e2e
def test_line_without_run_id_is_reported_and_does_not_block_other_runs(world: World) -> None:
    period = world.sandbox.dataset.closed_periods()[-1].period_end
    make = world.sandbox.dataset.make_gl_line
    world.sandbox.dataset.add_gl_run("ORPHAN", period_end=period, lines=[
        make("ORPHAN", "5000", debit=Decimal("1.00"), cost_center="110", department="PROD", period_end=period,
             system_id=515151, runId=None)])
    result = world.cli("post-payroll", "--due", "--yes", expect=1)
    assert "GL item without runId, line 515151: runId is missing" in result.output
    assert len(journal_of(world, world.latest_run().run_id)) == 1


@pytest.mark.e2e
def test_run_whose_ukg_data_changed_after_a_failed_attempt_is_replanned_and_never_mixed(world: World) -> None:
    period = world.sandbox.dataset.closed_periods()[-1].period_end
    make = world.sandbox.dataset.make_gl_line
    ccs = ["110", "120", "210", "310"]

    def amounts(base: Decimal) -> list[dict]:
        debits = [make("DRIFT1", "5000", debit=base + i, cost_center=cc, department="PROD", period_end=period,
                       system_id=900_000 + i) for i, cc in enumerate(ccs)]
        total = sum((base + i for i in range(len(ccs))), Decimal(0))
        return [*debits, make("DRIFT1", "2100", credit=total, period_end=period, system_id=900_100)]

    gl_run = world.sandbox.dataset.add_gl_run("DRIFT1", period_end=period, lines=amounts(Decimal("100.00")))
    patch_config(world, d365={"batch_size": 2, "max_in_flight": 1},
                 http={"max_attempts": 2, "backoff_base_seconds": 0})
    dry = world.cli("post-payroll", "--run-id", "DRIFT1", "--dry-run")
    assert "406.00" in dry.output  # what the dry run saw: 100+101+102+103
    # First attempt: the first changeset lands but its answer is lost, then D365 stays unavailable.
    world.sandbox.faults.add(FaultRule("d365", "drop_after", method="POST", path_regex=r"\$batch$", count=1))
    world.sandbox.faults.add(FaultRule("d365", "status", method="POST", path_regex=r"\$batch$", status=503,
                                       count=None))
    world.cli("post-payroll", "--run-id", "DRIFT1", "--yes", expect=4)
    [half] = journal_of(world, "DRIFT1")
    assert 0 < len(half["lines"]) < 5  # old lines are in D365, unposted
    # UKG re-runs the payroll before the next attempt: every amount changes.
    gl_run.lines[:] = amounts(Decimal("200.00"))
    world.sandbox.faults.clear()
    world.cli("post-payroll", "--run-id", "DRIFT1", "--yes")
    [journal] = journal_of(world, "DRIFT1")
    new = {(display("601500", cc, "PROD"), "debit"): Decimal("200.00") + i for i, cc in enumerate(ccs)}
    new[(display("211000"), "credit")] = Decimal("806.00")
    assert d365_totals(journal) == new  # only the new amounts: nothing of the first attempt survived
    assert Decimal(str(journal["JournalTotalDebit"])) == Decimal("806.00")
    trail = world.json_events("audit", f"C0MP1/BW/{period}/DRIFT1", "--format", "json")[0]
    assert any(e["kind"] == "request" and "delete surplus lines" in str(e.get("detail", e))
               for e in trail["events"])
    # A rerun posts nothing more; a later change in UKG is left to `reconcile`, never posted on top.
    gl_run.lines[:] = amounts(Decimal("300.00"))
    again = world.cli("post-payroll", "--run-id", "DRIFT1", "--yes")
    assert "already posted" in again.output
    assert len(journal_of(world, "DRIFT1")) == 1
