"""accrue-payroll end to end: the month's share of a straddling pay period, reversing, posted exactly once.

The sandbox's BW period 2026-06-27 to 2026-07-10 has 4 of its 14 days in June, so the June accrual is 4/14 of
that period's expense lines, per account and dimensions, to the cent.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal

import pytest
import yaml

from tests.world import World, display, expected_display
from ukg2d365.accruals import month_end_of, previous_month_end, straddles
from ukg2d365.sandbox import catalog

pytestmark = pytest.mark.e2e

MONTH_END = date(2026, 6, 30)
PERIOD = (date(2026, 6, 27), date(2026, 7, 10))  # 4 days in June, 10 in July
EXPENSE = {a.ukg_account for a in catalog.GL_ACCOUNTS if a.main_account_type == "Expense"}
LIABILITY = display(catalog.ACCRUED_PAYROLL_ACCOUNT)
CENT = Decimal("0.01")


def said(result) -> str:
    """The output as one line of words: the terminal wraps long lines."""
    return " ".join(result.output.split())


def run_of(world: World, period_end: date):
    return next(r for r in world.sandbox.dataset.gl_runs if r.period_end == period_end)


def expected_accrual(run, days: int, of: int) -> dict[str, Decimal]:
    """Each expense account and dimensions' days/of share, rounded half up to the cent, the residue on the
    largest: computed from the simulator's data, apart from the tool's own arithmetic."""
    nets: dict[str, Decimal] = defaultdict(Decimal)
    for item in run.items(0, len(run)):
        if item["generalLedgerAccount"] in EXPENSE:
            nets[expected_display(item)] += Decimal(str(item["debitAmt"])) - Decimal(str(item["creditAmt"]))
    shares = {account: (net * days / of).quantize(CENT, ROUND_HALF_UP) for account, net in nets.items()}
    total = (sum(nets.values(), Decimal(0)) * days / of).quantize(CENT, ROUND_HALF_UP)
    largest = max(sorted(nets), key=lambda account: abs(nets[account]))
    shares[largest] += total - sum(shares.values(), Decimal(0))
    return shares


def accrued(journal: dict) -> tuple[dict[str, Decimal], Counter]:
    """The journal's expense lines (debit minus credit by account and dimensions) and how often each appears."""
    lines = [ln for ln in journal["lines"] if ln["AccountDisplayValue"] != LIABILITY]
    amounts = {ln["AccountDisplayValue"]: Decimal(str(ln["DebitAmount"])) - Decimal(str(ln["CreditAmount"]))
               for ln in lines}
    return amounts, Counter(ln["AccountDisplayValue"] for ln in lines)


def assert_balanced_and_reversing(journal: dict, month_end: date) -> None:
    lines = journal["lines"]
    debit = sum((Decimal(str(ln["DebitAmount"])) for ln in lines), Decimal(0))
    credit = sum((Decimal(str(ln["CreditAmount"])) for ln in lines), Decimal(0))
    assert debit == credit > 0
    (liability,) = [ln for ln in lines if ln["AccountDisplayValue"] == LIABILITY]
    assert Decimal(str(liability["CreditAmount"])) == credit
    for line in lines:
        assert line["ReverseEntry"] == "Yes"
        assert line["ReverseDate"][:10] == date.fromordinal(month_end.toordinal() + 1).isoformat()
        assert line["TransDate"][:10] == month_end.isoformat()


@pytest.mark.sandbox(today=date(2026, 7, 13))  # the straddling period closed that day, with its GL run
def test_an_accrual_of_4_of_14_days_is_4_14_of_each_account_to_the_cent_reversing_once_and_reconciles(world):
    period = world.sandbox.dataset.period(catalog.PAY_GROUP, PERIOD[1])
    assert (period.period_start, period.is_closed) == (PERIOD[0], True)
    run = run_of(world, PERIOD[1])
    preview = world.cli("accrue-payroll", "--month-end", str(MONTH_END), "--dry-run")
    assert "4/14 calendar days" in said(preview) and f"UKG run {run.run_id}, the period's own run" in said(preview)
    assert world.journals() == []

    world.cli("accrue-payroll", "--month-end", str(MONTH_END), "--yes")
    (journal,) = world.journals()
    assert journal["dataAreaId"] == catalog.LEGAL_ENTITY and "Accrual BW 2026-06-30 @USMF" in journal["Description"]
    amounts, counts = accrued(journal)
    assert amounts == expected_accrual(run, 4, 14) and set(counts.values()) == {1}
    assert_balanced_and_reversing(journal, MONTH_END)

    writes = world.d365.request_count["$batch"]
    again = world.cli("accrue-payroll", "--month-end", str(MONTH_END), "--yes")
    assert "1 already posted" in again.output
    assert world.d365.request_count["$batch"] == writes and len(world.journals()) == 1

    report = world.json_events("reconcile", "--pay-group", catalog.PAY_GROUP, "--period-end", str(MONTH_END))
    (verdict,) = [e for e in report if e.get("event") == "reconcile"]
    assert (verdict["kind"], verdict["key"], verdict["verdict"]) == ("accrual", "accrual/BW/USMF/2026-06-30", "match")
    assert verdict["d365"]["debit"] == verdict["ukg"]["debit"] == str(sum(amounts.values()))


@pytest.mark.sandbox(today=date(2026, 7, 1))  # the straddling period is still open: UKG has no run of it yet
def test_before_the_period_has_a_run_the_latest_closed_run_is_accrued_as_an_estimate_and_said_so(world):
    latest = world.latest_run()
    assert latest.period_end == date(2026, 6, 26)
    assert not world.sandbox.dataset.period(catalog.PAY_GROUP, PERIOD[1]).is_closed
    result = world.cli("accrue-payroll", "--month-end", str(MONTH_END), "--yes")
    assert f"UKG run {latest.run_id}, the latest closed run (period ending 2026-06-26): an estimate" in said(result)
    (journal,) = world.journals()
    assert accrued(journal)[0] == expected_accrual(latest, 4, 14)
    assert_balanced_and_reversing(journal, MONTH_END)
    (audit,) = world.json_events("audit", "accrual/BW/USMF/2026-06-30")
    (source,) = [e["detail"] for e in audit["events"] if e["kind"] == "accrual"]
    assert source["runs"] == [latest.run_id] and source["estimate"] is True and source["share"] == "4/14"


def test_due_accrues_the_latest_straddled_month_end_in_the_window_then_nothing(world):
    today = datetime.now(timezone.utc).date()  # the CLI's today: d365.time_zone, UTC in the sandbox config
    periods = world.sandbox.dataset.pay_periods
    month_end = month_end_of(today) if month_end_of(today) == today else previous_month_end(today)
    while not any(straddles(p.period_start, p.period_end, month_end) for p in periods):
        month_end = previous_month_end(month_end)  # a month-end a period ends on needs no accrual
    config = yaml.safe_load(world.config_path.read_text())
    config.setdefault("payroll", {})["lookback_days"] = (today - month_end).days
    world.config_path.write_text(yaml.safe_dump(config))

    events = world.json_events("accrue-payroll", "--due", "--yes")
    posted = [e["key"] for e in events if e["event"] == "posting" and e["status"] == "posted"]
    assert posted == [f"accrual/BW/USMF/{month_end}"]
    (journal,) = world.journals()
    assert_balanced_and_reversing(journal, month_end)

    again = world.json_events("accrue-payroll", "--due", "--yes")
    assert [e["status"] for e in again if e["event"] == "accrual"] == ["nothing due"]
    assert len(world.journals()) == 1


@pytest.mark.sandbox(today=date(2026, 7, 13), companies=2)
def test_an_accrual_is_one_journal_per_legal_entity_each_balanced_by_its_own_liability(world):
    run = run_of(world, PERIOD[1])
    world.cli("accrue-payroll", "--month-end", str(MONTH_END), "--yes")
    journals = {j["dataAreaId"]: j for j in world.journals()}
    assert set(journals) == {catalog.LEGAL_ENTITY, catalog.LEGAL_ENTITY_2, catalog.LEGAL_ENTITY_3}
    booked: dict[str, Decimal] = {}
    for journal in journals.values():
        assert_balanced_and_reversing(journal, MONTH_END)
        booked.update(accrued(journal)[0])
    # lines of both companies and the cost center borne by the third entity, each in its own entity's journal
    assert sum(booked.values()) == (sum(expected_accrual(run, 4, 14).values()))
    report = world.json_events("reconcile", "--period-end", str(MONTH_END))
    assert sorted((e["legal_entity"], e["verdict"]) for e in report if e.get("event") == "reconcile") == \
        [("USMF", "match"), ("USPI", "match"), ("USPM", "match")]


def test_a_date_that_is_no_month_end_or_a_config_without_accruals_exits_2_naming_what_to_do(world):
    result = world.cli("accrue-payroll", "--month-end", "2026-06-29", expect=2)
    assert "--month-end 2026-06-29 is not the last day of a month" in said(result)
    assert "did you mean --month-end 2026-06-30?" in said(result)
    assert "after today" in said(world.cli("accrue-payroll", "--month-end", "2999-12-31", expect=2))
    config = yaml.safe_load(world.config_path.read_text())
    del config["accruals"]
    world.config_path.write_text(yaml.safe_dump(config))
    result = world.cli("accrue-payroll", "--month-end", str(MONTH_END), expect=2)
    assert "accrue-payroll needs an accruals: section in the config" in said(result)
    assert world.journals() == [] and world.sandbox.stats()["ukg"] == 0


@pytest.mark.sandbox(today=date(2026, 7, 13))
def test_the_accrual_preview_offers_all_and_csv_and_its_csv_is_the_journal_later_posted(world):
    run = run_of(world, PERIOD[1])
    preview = world.cli("accrue-payroll", "--month-end", str(MONTH_END), "--dry-run")
    assert "--all shows every one" in said(preview)  # what the preview offers, the command takes
    every = world.cli("accrue-payroll", "--month-end", str(MONTH_END), "--dry-run", "--all")
    expected = expected_accrual(run, 4, 14)
    assert "more accounts" not in every.output and all(account in every.output for account in expected)
    exported = world.cli("accrue-payroll", "--month-end", str(MONTH_END), "--dry-run", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert {r["run_id"] for r in rows} == {run.run_id} and {r["status"] for r in rows} == {"would post"}
    assert world.journals() == []

    world.cli("accrue-payroll", "--month-end", str(MONTH_END), "--yes")
    (journal,) = world.journals()
    posted = Counter((ln["AccountDisplayValue"], Decimal(str(ln["DebitAmount"])), Decimal(str(ln["CreditAmount"])))
                     for ln in journal["lines"])
    assert Counter((r["account"], Decimal(r["debit"] or 0), Decimal(r["credit"] or 0)) for r in rows) == posted
    document = json.loads(world.cli("accrue-payroll", "--month-end", str(MONTH_END), "--format", "json").stdout)
    assert document["command"] == "accrue-payroll"
    assert [j["key"] for j in document["already_posted"]] == ["accrual/BW/USMF/2026-06-30"]
