"""reconcile end to end: post with the real CLI, tamper with D365 over its OData API, and reconcile."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.world import World
from ukg2d365.config import load_config
from ukg2d365.flows.reconcile import DEFAULT_WINDOW_DAYS
from ukg2d365.flows.runtime import Context
from ukg2d365.ledger import Ledger
from ukg2d365.render.reconcile import CSV_COLUMNS

pytestmark = pytest.mark.e2e

@pytest.fixture
def world(sandbox, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # rich sizes tables to the terminal; CliRunner has none
    w = World(sandbox, monkeypatch)
    w.create_missing_dimensions()
    return w


def _odata(world: World) -> Any:
    return Context(load_config(world.config_path)).d365


def _posted_latest_run(world: World) -> tuple[Any, dict[str, Any]]:
    run = world.latest_run()
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    [journal] = world.journals()
    return run, journal


def _line_key(journal: dict[str, Any], line: dict[str, Any]) -> dict[str, Any]:
    return {"dataAreaId": journal["dataAreaId"], "JournalBatchNumber": journal["JournalBatchNumber"],
            "LineNumber": line["LineNumber"]}


def _reconciled(world: World, *args: str, expect: int) -> list[dict[str, Any]]:
    events = world.json_events("reconcile", *args, expect=expect)
    return [e for e in events if e["event"] == "reconcile"]


def _closed_runs_in_window(world: World) -> list[Any]:
    start = date.today() - timedelta(days=DEFAULT_WINDOW_DAYS)
    return [r for r in world.sandbox.dataset.gl_runs if start <= r.period_end <= date.today()]


def test_after_a_clean_post_every_run_matches_and_exits_0(world):
    runs = _closed_runs_in_window(world)
    assert len(runs) >= 2
    for run in runs:
        world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    reconciled = _reconciled(world, expect=0)  # no selection: the postings and closed periods of 60 days
    assert {r["run_id"] for r in reconciled} == {r.run_id for r in runs}
    assert {r["verdict"] for r in reconciled} == {"match"}
    assert all(r["lines"] == [] and r["ukg"] == r["d365"] == r["ledger"] for r in reconciled)
    ends = sorted(str(r.period_end) for r in runs)
    table = world.cli("reconcile", "--pay-group", "BW", "--from", ends[0], "--to", ends[-1])
    assert "match" in table.output
    assert f"all {len(runs)} pay run(s) match" in table.output


def test_default_reconcile_says_missing_in_d365_for_a_closed_run_never_posted(world):
    """The default selection used to read only the ledger's postings: a closed run nobody posted said "all match"."""
    runs = _closed_runs_in_window(world)
    latest = max(runs, key=lambda r: r.period_end)
    world.cli("post-payroll", "--run-id", latest.run_id, "--yes")
    reconciled = {r["run_id"]: r for r in _reconciled(world, expect=1)}
    assert set(reconciled) == {r.run_id for r in runs}
    assert reconciled[latest.run_id]["verdict"] == "match"
    missing = [reconciled[r.run_id] for r in runs if r is not latest]
    assert missing and all(r["verdict"] == "missing in D365" and r["ledger"] is None and r["journals"] == []
                           for r in missing)
    assert all(Decimal(r["difference"]["debit"]) == -Decimal(r["ukg"]["debit"]) != 0 for r in missing)
    table = world.cli("reconcile", expect=1)
    assert "all" not in table.stdout.splitlines()[-1] and "missing in D365" in table.stdout.splitlines()[-1]


def test_changed_line_amount_in_d365_is_amount_differs_and_exits_1(world):
    run, journal = _posted_latest_run(world)
    line = next(ln for ln in journal["lines"] if Decimal(str(ln["DebitAmount"])) > 0)
    _odata(world).update("LedgerJournalLines", _line_key(journal, line),
                         {"DebitAmount": Decimal(str(line["DebitAmount"])) + Decimal("1.00")})
    [result] = _reconciled(world, "--run-id", run.run_id, expect=1)
    assert result["verdict"] == "amount differs"
    [row] = result["lines"]
    assert row["account"] == line["AccountDisplayValue"]
    assert row["verdict"] == "amount differs"
    assert Decimal(row["difference"]["debit"]) == Decimal("1.00")
    assert row["ukg"] == row["ledger"]
    table = world.cli("reconcile", "--run-id", run.run_id, expect=1)
    assert line["AccountDisplayValue"] in table.output  # the differing line is expanded
    # its debit side: UKG, D365 and the difference, +1.00
    assert re.search(re.escape(line["AccountDisplayValue"]) + r"\s+dr\s+[\d,.]+\s+[\d,.]+\s+\+1\.00\s*$",
                     table.output, re.M)


def test_deleted_journal_line_is_missing_in_d365(world):
    run, journal = _posted_latest_run(world)
    line = journal["lines"][0]
    _odata(world).delete("LedgerJournalLines", _line_key(journal, line))
    [result] = _reconciled(world, "--run-id", run.run_id, expect=1)
    assert result["verdict"] == "missing in D365"
    assert [(r["account"], r["verdict"]) for r in result["lines"]] == [(line["AccountDisplayValue"],
                                                                         "missing in D365")]


def test_second_journal_with_the_same_marker_is_a_duplicate_journal(world):
    run, journal = _posted_latest_run(world)
    _odata(world).create("LedgerJournalHeaders", {"dataAreaId": journal["dataAreaId"],
                                                   "JournalName": journal["JournalName"],
                                                   "Description": journal["Description"]})
    [result] = _reconciled(world, "--run-id", run.run_id, expect=1)
    assert result["verdict"] == "duplicate journal"
    assert len(result["journals"]) == 2
    assert any("2 journals carry marker" in note for note in result["notes"])


def test_line_added_by_hand_is_extra_in_d365(world):
    run, journal = _posted_latest_run(world)
    line = next(ln for ln in journal["lines"] if Decimal(str(ln["DebitAmount"])) > 0)
    _odata(world).create("LedgerJournalLines", {
        "dataAreaId": journal["dataAreaId"], "JournalBatchNumber": journal["JournalBatchNumber"],
        "TransDate": line["TransDate"], "AccountType": "Ledger", "AccountDisplayValue": line["AccountDisplayValue"],
        "CreditAmount": Decimal("12.34"), "CurrencyCode": line["CurrencyCode"], "Text": "manual correction"})
    [result] = _reconciled(world, "--run-id", run.run_id, expect=1)
    assert result["verdict"] == "extra in D365"
    [row] = result["lines"]
    assert Decimal(row["difference"]["credit"]) == Decimal("12.34")


def test_run_never_posted_is_missing_in_d365(world):
    run = world.latest_run()
    [result] = _reconciled(world, "--run-id", run.run_id, expect=1)
    assert result["verdict"] == "missing in D365"
    assert result["ledger"] is None and result["journals"] == []
    assert any("never posted" in note for note in result["notes"])


def test_ukg_changed_since_posting_is_amount_differs_with_a_note(world):
    period = world.sandbox.dataset.closed_periods()[-1].period_end
    make = world.sandbox.dataset.make_gl_line
    lines = [make("LATE1", "5000", debit=Decimal("100.00"), cost_center="110", department="PROD",
                  period_end=period),
             make("LATE1", "2100", credit=Decimal("100.00"), period_end=period)]
    gl_run = world.sandbox.dataset.add_gl_run("LATE1", period_end=period, lines=lines)
    world.cli("post-payroll", "--run-id", "LATE1", "--yes")
    assert _reconciled(world, "--run-id", "LATE1", expect=0)[0]["verdict"] == "match"
    gl_run.lines[0]["debitAmt"] = Decimal("120.00")  # UKG re-ran the pay run after it was posted
    gl_run.lines[1]["creditAmt"] = Decimal("120.00")
    [result] = _reconciled(world, "--run-id", "LATE1", expect=1)
    assert result["verdict"] == "amount differs"
    assert any("UKG changed since posting" in note for note in result["notes"])
    assert all(r["d365"] == r["ledger"] for r in result["lines"])


def test_csv_has_a_run_row_and_one_row_per_differing_line(world):
    run, journal = _posted_latest_run(world)
    line = journal["lines"][-1]
    _odata(world).delete("LedgerJournalLines", _line_key(journal, line))
    result = world.cli("reconcile", "--run-id", run.run_id, "--format", "csv", expect=1)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["row"], r["verdict"]) for r in rows] == [("run", "missing in D365"), ("line", "missing in D365")]
    assert rows[1]["account"] == line["AccountDisplayValue"]
    assert rows[0]["run_id"] == run.run_id and rows[0]["journals"] == journal["JournalBatchNumber"]


def test_reconcile_writes_nothing_to_d365_or_the_postings(world):
    run, journal = _posted_latest_run(world)
    _odata(world).delete("LedgerJournalLines", _line_key(journal, journal["lines"][0]))
    before_d365 = world.journals()
    ledger_path = world.config_path.parent / "ukg2d365.db"
    ledger = Ledger(ledger_path)
    before = [(p, ledger.plan_lines(p.key)) for p in ledger.find_postings()]
    batches = world.d365.request_count["$batch"]
    world.cli("reconcile", "--run-id", run.run_id, expect=1)
    world.cli("reconcile", expect=1)
    assert world.journals() == before_d365
    assert [(p, ledger.plan_lines(p.key)) for p in ledger.find_postings()] == before
    assert world.d365.request_count["$batch"] == batches
    ledger.close()


def test_unknown_run_id_proves_nothing_and_exits_1(world):
    result = world.cli("reconcile", "--run-id", "NO-SUCH-RUN", expect=1)
    assert "no pay run matches the selection" in result.output


def test_help_says_read_only(world):
    result = world.cli("reconcile", "--help")
    assert "Read-only: never writes to D365 or UKG" in " ".join(result.output.split())


def test_period_end_with_a_range_is_a_usage_error(world):
    world.cli("reconcile", "--period-end", "2026-05-15", "--from", "2026-05-01", expect=2)


def test_unreadable_ukg_line_after_posting_means_the_match_is_not_proven(world):
    run = world.add_small_run("READ1", Decimal("10.00"))
    world.cli("post-payroll", "--run-id", "READ1", "--yes")
    run.lines.append(world.sandbox.dataset.make_gl_line("READ1", "5000", debit="1,234.50", period_end=run.period_end))
    runs = _reconciled(world, "--run-id", "READ1", expect=1)
    assert runs[0]["verdict"] == "amount differs"
    assert any("could not be read" in note for note in runs[0]["notes"])


def test_reconcile_records_each_verdict_on_the_runs_audit_trail(world):
    run, journal = _posted_latest_run(world)
    [result] = _reconciled(world, "--run-id", run.run_id, expect=0)
    trail = json.loads(world.cli("audit", result["key"], "--format", "json").stdout)
    [event] = [e for e in trail["events"] if e["kind"] == "reconcile"]
    assert event["detail"]["verdict"] == "match"
    assert event["detail"]["journals"] == [journal["JournalBatchNumber"]]
    assert event["command"] == "reconcile"
