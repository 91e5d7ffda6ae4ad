"""D365 is the truth when the ledger is lost: a new, moved or restored ledger never books twice.

The pay run's journal is found by its marker before anything is created: one that matches UKG is adopted
with zero writes, one that differs is refused, named, with the reconcile command to run.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from tests.world import World, d365_totals, ukg_totals
from ukg2d365.config import load_config
from ukg2d365.flows.runtime import Context
from ukg2d365.sandbox.faults import FaultRule

pytestmark = pytest.mark.e2e


def lose_the_ledger(world: World) -> None:
    path = Path(load_config(world.config_path).ledger_path)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    assert not path.exists()


def count_writes(world: World) -> list[FaultRule]:
    """Rules that do nothing (0 ms latency) but count every write request D365 receives."""
    rules = [FaultRule("d365", "latency", method=m, latency_ms=0, count=None) for m in ("POST", "PATCH", "DELETE")]
    for rule in rules:
        world.sandbox.faults.add(rule)
    return rules


def test_lost_ledger_then_due_adopts_the_journal_with_zero_writes(world: World) -> None:
    run = world.latest_run()
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    [journal] = world.journals()
    number = journal["JournalBatchNumber"]
    lose_the_ledger(world)
    writes = count_writes(world)

    preview = world.cli("post-payroll", "--due", "--dry-run")
    assert f"already in D365 as {number}" in preview.output
    assert "would post 0 journal(s); 1 already in D365" in " ".join(preview.output.split())

    world.cli("post-payroll", "--due", "--yes")
    assert sum(rule.fired for rule in writes) == 0  # not one POST, PATCH or DELETE reached D365
    [again] = world.journals()
    assert again["JournalBatchNumber"] == number and d365_totals(again) == ukg_totals(run)
    key = f"C0MP1/BW/{run.period_end}/{run.run_id}"
    trail = world.json_events("audit", key, "--format", "json")[0]
    assert trail["posting"]["status"] == "posted"
    assert trail["posting"]["journal_batch_number"] == number
    assert "adopted" in [e["kind"] for e in trail["events"]]


def test_lost_ledger_and_a_differing_journal_in_d365_is_refused_by_name(world: World) -> None:
    run = world.latest_run()
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    [journal] = world.journals()
    number = journal["JournalBatchNumber"]
    # Finance edited the journal in D365 after it was created: one line's amount differs from UKG.
    line = next(ln for ln in journal["lines"] if ln["DebitAmount"] > 0)
    Context(load_config(world.config_path)).d365.update(
        "LedgerJournalLines", {k: line[k] for k in ("dataAreaId", "JournalBatchNumber", "LineNumber")},
        {"DebitAmount": line["DebitAmount"] + Decimal("1.00")})
    lose_the_ledger(world)
    writes = count_writes(world)

    result = world.cli("post-payroll", "--run-id", run.run_id, "--yes", expect=1)
    text = " ".join(result.output.split())
    assert f"already in D365 as {number}" in text and "differs from UKG" in text
    assert f"ukg2d365 reconcile --run-id {run.run_id}" in text
    assert sum(rule.fired for rule in writes) == 0
    assert [j["JournalBatchNumber"] for j in world.journals()] == [number]


@pytest.mark.sandbox(today=date(2026, 7, 13))  # the June accrual's straddling period has its GL run
def test_lost_ledger_and_an_accrual_journal_in_d365_without_its_reversal_is_refused_not_adopted(world: World) -> None:
    world.cli("accrue-payroll", "--month-end", "2026-06-30", "--yes")
    [journal] = world.journals()
    number = journal["JournalBatchNumber"]
    # Someone turned the reversal off in D365: the journal would never reverse on July 1st.
    d365 = Context(load_config(world.config_path)).d365
    for line in journal["lines"]:
        d365.update("LedgerJournalLines", {k: line[k] for k in ("dataAreaId", "JournalBatchNumber", "LineNumber")},
                    {"ReverseEntry": "No", "ReverseDate": "1900-01-01T12:00:00Z"})
    lose_the_ledger(world)
    writes = count_writes(world)

    result = world.cli("accrue-payroll", "--month-end", "2026-06-30", "--yes", expect=1)
    text = " ".join(result.output.split())
    assert f"already in D365 as {number}" in text and "differs from UKG" in text
    assert sum(rule.fired for rule in writes) == 0
    assert [j["JournalBatchNumber"] for j in world.journals()] == [number]


def test_the_write_counter_counts_writes(world: World) -> None:
    """The zero-writes assertions above mean something only if the counter sees a write when one is sent."""
    writes = count_writes(world)
    Context(load_config(world.config_path)).d365.create(
        "FinancialDimensionValues", {"FinancialDimension": "CostCenter", "DimensionValue": "CNT1", "LegalEntityId": ""})
    assert [rule.fired for rule in writes] == [1, 0, 0]
