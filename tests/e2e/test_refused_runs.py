"""A refused run is never forgotten: its period stays due (each --due refuses it again, exit 1, a warning, an
alert) until it posts or an operator skips it (`replay --skip KEY --reason TEXT`, audited); once older than the
window it is listed among the stale periods. The same holds for each legal entity's accrual of a month-end.

The sandbox's pay run of a period is posted beside an off-cycle run of the same period that UKG sends
unbalanced (an off-cycle run is UKG's second run for a period: ``SandboxDataset.add_gl_run``).
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
import yaml

from tests.e2e.test_notify import Receiver, receiver  # noqa: F401 - the alert receiver fixture
from tests.world import World, display
from ukg2d365.accruals import month_end_of, previous_month_end, straddles
from ukg2d365.config import load_config
from ukg2d365.flows.runtime import Context
from ukg2d365.journal import AccrualKey
from ukg2d365.sandbox import catalog

pytestmark = pytest.mark.e2e

OFF_CYCLE = "OFF1"


def said(result: Any) -> str:
    return " ".join(result.output.split())


def add_refused_off_cycle_run(world: World, period_end: date) -> str:
    """An off-cycle run of the period whose lines do not balance (debits 10.00, credits 9.00): always refused."""
    ds = world.sandbox.dataset
    ds.add_gl_run(OFF_CYCLE, period_end=period_end, lines=[
        ds.make_gl_line(OFF_CYCLE, "5000", debit=Decimal("10.00"), cost_center="110", department="PROD",
                        period_end=period_end),
        ds.make_gl_line(OFF_CYCLE, "2100", credit=Decimal("9.00"), period_end=period_end),
    ])
    return f"{catalog.UKG_CO_ID}/{catalog.PAY_GROUP}/{period_end}/{OFF_CYCLE}"


def look_back_to(world: World, pay_date: date) -> None:
    config = yaml.safe_load(world.config_path.read_text())
    config.setdefault("payroll", {})["lookback_days"] = (date.today() - pay_date).days
    world.config_path.write_text(yaml.safe_dump(config))


def periods_of(events: list[dict[str, Any]], status: str) -> set[str]:
    return {e["period_end"] for e in events if e["event"] == "period" and e["status"].startswith(status)}


def test_a_refused_run_beside_a_posted_one_stays_due_every_night_until_it_is_skipped_and_the_skip_is_audited(
        world: World, receiver: Receiver) -> None:  # noqa: F811 - the fixture imported above
    newest = world.sandbox.dataset.closed_periods()[-1]
    look_back_to(world, newest.pay_date)
    key = add_refused_off_cycle_run(world, newest.period_end)

    first = world.cli("post-payroll", "--due", "--yes", expect=1)
    assert f"refusing UKG run {OFF_CYCLE}" in said(first) and "unbalanced in UKG" in said(first)
    assert len(world.journals()) == 1  # the period's regular run posted

    for night in (2, 3):  # the regular run is posted, yet the period is not done: the refused run is read again
        before = world.d365.request_count["$batch"]
        again = world.cli("post-payroll", "--due", "--yes", expect=1)
        text = said(again)
        assert f"refusing UKG run {OFF_CYCLE}" in text and "already posted" in text
        assert f"(refused before: {night - 1} time(s) since {date.today()}" in text
        assert f"`ukg2d365 replay --skip {key} --reason TEXT`" in text
        assert world.d365.request_count["$batch"] == before and len(world.journals()) == 1
    alerts = [a for a in receiver.alerts if "post-payroll --due" in a["title"]]
    assert len(alerts) == 3 and all(f"refusing UKG run {OFF_CYCLE}" in a["message"] for a in alerts)

    [report] = world.json_events("status")
    assert [(r["key"], r["times"]) for r in report["refused"]] == [(key, 3)]
    assert "Refused, not posted" in world.cli("status").output

    assert "replay --skip needs --reason TEXT" in said(world.cli("replay", "--skip", key, expect=2))
    skip = world.cli("replay", "--skip", key, "--reason", "voided in UKG", "--yes")
    assert "skipped 1 refused run(s)" in said(skip)
    trail = world.json_events("audit", key, "--format", "json")[0]
    [skipped] = [e for e in trail["events"] if e["kind"] == "skipped"]
    assert skipped["detail"]["reason"] == "voided in UKG" and skipped["command"] == "replay" and skipped["user"]
    assert [e["kind"] for e in trail["events"]].count("refused") == 3

    quiet = world.json_events("post-payroll", "--due", "--yes")  # exit 0: the period is done
    assert str(newest.period_end) in periods_of(quiet, "already posted")
    assert [e for e in quiet if e["event"] == "summary"][0]["message"].startswith("nothing new to post")
    [report] = world.json_events("status")
    assert report["refused"] == []
    # Named by its run, the skipped run is read again (and refused again: UKG still sends it unbalanced).
    named = world.cli("post-payroll", "--run-id", OFF_CYCLE, "--yes", expect=1)
    assert f"refusing UKG run {OFF_CYCLE}" in said(named)
    assert len(world.journals()) == 1


def test_a_refused_run_that_falls_out_of_the_window_is_a_stale_period_naming_it_in_due_status_and_the_alert(
        world: World, receiver: Receiver) -> None:  # noqa: F811
    closed = sorted(world.sandbox.dataset.closed_periods(), key=lambda p: p.period_end)
    older, newest = closed[-2], closed[-1]
    key = add_refused_off_cycle_run(world, older.period_end)
    look_back_to(world, older.pay_date)
    world.cli("post-payroll", "--due", "--yes", expect=1)  # both periods' regular runs post; OFF1 is refused
    assert len(world.journals()) == 2

    look_back_to(world, newest.pay_date)  # the older period (posted run and refused run) leaves the window
    receiver.requests.clear()
    result = world.cli("post-payroll", "--due", "--yes")  # exit 0, as for any stale period, but it warns
    text = said(result)
    assert f"pay group BW period {older.period_end} is closed but was never posted" in text
    assert f"refused there: UKG run {OFF_CYCLE} (BW {older.period_end}): unbalanced in UKG" in text
    assert f"`ukg2d365 replay --skip {key} --reason TEXT`" in text
    [alert] = receiver.alerts
    assert f"pay group BW period {older.period_end} is closed but was never posted" in alert["message"]

    [report] = world.json_events("status")
    assert {"pay_group": "BW", "period_end": str(older.period_end)} in report["stale_periods"]
    assert [r["key"] for r in report["refused"]] == [key]
    status = said(world.cli("status"))
    assert f"period {older.period_end} is closed, older than payroll.lookback_days and not posted" in status

    world.cli("replay", "--skip", key, "--reason", "booked by hand after review", "--yes")
    events = world.json_events("post-payroll", "--due", "--yes")
    assert str(older.period_end) not in periods_of(events, "closed, older than the window")
    assert world.json_events("status")[0]["stale_periods"] == []


def test_a_refused_run_ukg_no_longer_returns_is_reported_each_night_until_skipped(world: World) -> None:
    newest = world.sandbox.dataset.closed_periods()[-1]
    look_back_to(world, newest.pay_date)
    key = add_refused_off_cycle_run(world, newest.period_end)
    world.cli("post-payroll", "--due", "--yes", expect=1)
    ds = world.sandbox.dataset
    ds.gl_runs = [r for r in ds.gl_runs if r.run_id != OFF_CYCLE]  # UKG voided the off-cycle run

    result = world.cli("post-payroll", "--due", "--yes", expect=1)
    text = said(result)
    assert f"UKG run {OFF_CYCLE} (BW {newest.period_end}) was refused on {date.today()}" in text
    assert "UKG no longer returns it" in text and f"`ukg2d365 replay --skip {key} --reason TEXT`" in text
    assert "has no GL run for it yet" not in text

    unknown = world.cli("replay", "--skip", "C0MP1/BW/2000-01-01/NOPE", "--reason", "x", "--yes", expect=1)
    assert "no refused run 'C0MP1/BW/2000-01-01/NOPE' in the ledger" in said(unknown)
    posted_key = next(e["key"] for e in world.json_events("status")[0]["recent"])
    assert "is posted (journal" in said(world.cli("replay", "--skip", posted_key, "--reason", "x", "--yes",
                                                  expect=1))
    world.cli("replay", "--skip", key, "--reason", "voided in UKG", "--yes")
    world.cli("post-payroll", "--due", "--yes")


def _accrual_month_end(world: World) -> date:
    today = datetime.now(timezone.utc).date()  # the CLI's today: d365.time_zone, UTC in the sandbox config
    periods = world.sandbox.dataset.pay_periods
    month_end = month_end_of(today) if month_end_of(today) == today else previous_month_end(today)
    while not any(straddles(p.period_start, p.period_end, month_end) for p in periods):
        month_end = previous_month_end(month_end)
    config = yaml.safe_load(world.config_path.read_text())
    config.setdefault("payroll", {})["lookback_days"] = (today - month_end).days
    world.config_path.write_text(yaml.safe_dump(config))
    return month_end


@pytest.mark.sandbox(companies=2)
def test_accrual_due_counts_a_month_end_accrued_only_when_every_entitys_journal_is_posted(world: World) -> None:
    month_end = _accrual_month_end(world)
    planned = [e["key"] for e in world.json_events("accrue-payroll", "--due", "--dry-run") if e.get("event") == "plan"]
    entity = catalog.LEGAL_ENTITY_3.upper()
    blocked = AccrualKey.for_month(catalog.PAY_GROUP, entity, month_end)
    assert blocked.text in planned and len(planned) == 3
    # Someone copied a journal carrying that entity's accrual marker into D365: that accrual alone is refused.
    d365 = Context(load_config(world.config_path)).d365
    header = d365.create("LedgerJournalHeaders", {"dataAreaId": catalog.LEGAL_ENTITY_3, "JournalName": "GenJrn",
                                                  "Description": f"Copy [{blocked.marker}]"})
    line = {"dataAreaId": catalog.LEGAL_ENTITY_3, "JournalBatchNumber": header["JournalBatchNumber"],
            "AccountType": "Ledger", "AccountDisplayValue": display(catalog.ACCRUED_PAYROLL_ACCOUNT),
            "TransDate": f"{month_end}T12:00:00Z", "DebitAmount": Decimal("1.00"), "CreditAmount": Decimal(0),
            "CurrencyCode": "USD", "Text": "copy"}
    copied = d365.create("LedgerJournalLines", line)

    first = world.json_events("accrue-payroll", "--due", "--yes", expect=1)
    assert sorted(e["key"] for e in first if e["event"] == "posting" and e["status"] == "posted") == \
        sorted(k for k in planned if k != blocked.text)
    again = world.json_events("accrue-payroll", "--due", "--yes", expect=1)  # the month-end is not accrued yet
    assert "nothing due" not in [e.get("status") for e in again if e["event"] == "accrual"]
    assert [(e["key"], e["status"]) for e in again if e["event"] == "plan" and e["status"] == "refused"] == \
        [(blocked.text, "refused")]
    assert len(world.journals()) == 3  # two accruals and the copy: nothing posted twice

    window = yaml.safe_load(world.config_path.read_text())
    if month_end < datetime.now(timezone.utc).date():  # out of a window of 0 days, it is said, not dropped
        world.config_path.write_text(yaml.safe_dump({**window, "payroll": {"lookback_days": 0}}))
        stale = said(world.cli("accrue-payroll", "--due", "--yes"))
        assert f"accrual {blocked.text} was refused on" in stale and "older than payroll.lookback_days" in stale
        assert f"replay --skip {blocked.text} --reason TEXT" in stale
        world.config_path.write_text(yaml.safe_dump(window))

    d365.delete("LedgerJournalLines", {k: copied[k] for k in ("dataAreaId", "JournalBatchNumber", "LineNumber")})
    d365.delete("LedgerJournalHeaders", {"dataAreaId": catalog.LEGAL_ENTITY_3,
                                         "JournalBatchNumber": header["JournalBatchNumber"]})
    fixed = world.json_events("accrue-payroll", "--due", "--yes")
    assert [e["key"] for e in fixed if e["event"] == "posting" and e["status"] == "posted"] == [blocked.text]
    done = world.json_events("accrue-payroll", "--due", "--yes")
    assert [e.get("status") for e in done if e["event"] == "accrual"] == ["nothing due"]
    assert sorted(j["dataAreaId"] for j in world.journals()) == \
        sorted([catalog.LEGAL_ENTITY, catalog.LEGAL_ENTITY_2, catalog.LEGAL_ENTITY_3])


@pytest.mark.sandbox(companies=2)
def test_skipping_a_refused_run_skips_its_journal_in_the_entity_bearing_part_of_it_too(world: World) -> None:
    newest = world.sandbox.dataset.closed_periods()[-1]
    look_back_to(world, newest.pay_date)
    ds = world.sandbox.dataset
    ds.add_gl_run(OFF_CYCLE, period_end=newest.period_end, lines=[  # unbalanced, part of it borne by USPM
        ds.make_gl_line(OFF_CYCLE, "5000", debit=Decimal("10.00"), cost_center="110", department="PROD",
                        period_end=newest.period_end),
        ds.make_gl_line(OFF_CYCLE, "5000", debit=Decimal("5.00"), cost_center=catalog.BEARING_COST_CENTER,
                        department="PROD", period_end=newest.period_end),
        ds.make_gl_line(OFF_CYCLE, "2100", credit=Decimal("9.00"), period_end=newest.period_end),
    ])
    key = f"{catalog.UKG_CO_ID}/{catalog.PAY_GROUP}/{newest.period_end}/{OFF_CYCLE}"
    bearing = f"{key}/@{catalog.LEGAL_ENTITY_3.upper()}"
    refused = said(world.cli("post-payroll", "--due", "--yes", expect=1))
    assert f"refusing UKG run {OFF_CYCLE} ({catalog.PAY_GROUP} {newest.period_end}), nothing" in refused
    assert f"refusing UKG run {OFF_CYCLE} ({catalog.PAY_GROUP} {newest.period_end}), the part borne by " \
        f"{catalog.LEGAL_ENTITY_3.upper()}, nothing" in refused
    [report] = world.json_events("status")
    assert sorted(r["key"] for r in report["refused"]) == [key, bearing]
    journals = len(world.journals())

    preview = said(world.cli("replay", "--skip", key, "--reason", "voided in UKG", "--dry-run"))
    assert f"would skip UKG run {OFF_CYCLE}" in preview and f"the part borne by {catalog.LEGAL_ENTITY_3.upper()}" \
        in preview and "would skip 2 refused run(s)" in preview
    skip = world.json_events("replay", "--skip", key, "--reason", "voided in UKG", "--yes")
    assert sorted(e["key"] for e in skip if e["event"] == "skip") == [key, bearing]
    [report] = world.json_events("status")
    assert report["refused"] == []
    for each in (key, bearing):  # each journal's skip is in its own audit trail, with the reason
        trail = world.json_events("audit", each, "--format", "json")[0]
        assert [e["detail"]["reason"] for e in trail["events"] if e["kind"] == "skipped"] == ["voided in UKG"]
    quiet = world.json_events("post-payroll", "--due", "--yes")  # exit 0: the period is done in every entity
    assert [e for e in quiet if e["event"] == "summary"][0]["message"].startswith("nothing new to post")
    assert len(world.journals()) == journals
