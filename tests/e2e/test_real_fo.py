"""The CLI against the sandbox D365 in its default, which behaves as the recorded live F&O does:
D365 assigns line numbers and vouchers, a write that timed out may still land, a $batch stops after a
failed changeset unless continue-on-error is honoured. Every posting ends with one journal holding each
planned line exactly once, compared by content (display value, debit, credit, text) with the ledger's plan.
"""

from __future__ import annotations

import signal
import time
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

import pytest
import yaml

from tests.world import World, spawn, wait_for
from ukg2d365.config import load_config
from ukg2d365.flows.runtime import Context
from ukg2d365.ledger import Ledger
from ukg2d365.sandbox import Sandbox, catalog
from ukg2d365.sandbox.faults import FaultRule

pytestmark = pytest.mark.e2e

LineContent = tuple[str, Decimal, Decimal, str]


# ------------------------------------------------------------------------------------------- helpers


def configure_d365(world: World, **settings: Any) -> None:
    """Change d365.* keys of the config the CLI reads (timeouts, settle time, line numbers)."""
    data = yaml.safe_load(world.config_path.read_text(encoding="utf-8"))
    data["d365"].update(settings)
    world.config_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def ledger(world: World) -> Ledger:
    return Ledger(world.sandbox.dir / "ukg2d365.db")


def posting_key(run: Any) -> str:
    return f"C0MP1/BW/{run.period_end}/{run.run_id}"


def content(account: Any, debit: Any, credit: Any, text: Any) -> LineContent:
    return (str(account).casefold(), Decimal(str(debit)), Decimal(str(credit)), str(text or "").rstrip())


def planned(world: World, run: Any) -> Counter[LineContent]:
    led = ledger(world)
    try:
        lines = led.plan_lines(posting_key(run))
    finally:
        led.close()
    assert lines, "the plan is in the ledger"
    return Counter(content(ln.account, ln.debit, ln.credit, ln.text) for ln in lines)


def assert_one_journal_each_line_once(world: World, run: Any) -> dict[str, Any]:
    journals = world.journals()
    assert len(journals) == 1, [(j["JournalBatchNumber"], len(j["lines"])) for j in journals]
    (journal,) = journals
    held = Counter(content(r["AccountDisplayValue"], r["DebitAmount"], r["CreditAmount"], r["Text"])
                   for r in journal["lines"])
    assert held == planned(world, run)  # every planned line, each exactly once, nothing else
    numbers = [r["LineNumber"] for r in journal["lines"]]
    assert len(set(numbers)) == len(numbers)
    return journal


def voucher_balances(journal: dict[str, Any]) -> dict[str, Decimal]:
    balance: dict[str, Decimal] = defaultdict(Decimal)
    for line in journal["lines"]:
        balance[line["Voucher"]] += line["DebitAmount"] - line["CreditAmount"]
    return dict(balance)


def audit_kinds(world: World, run: Any) -> list[dict[str, Any]]:
    trail = world.json_events("audit", posting_key(run), "--format", "json")[0]
    assert trail["posting"]["status"] == "posted"
    return list(trail["events"])



# ---------------------------------------------------------------------- exactly once, D365 numbering


def test_d365_assigns_the_line_numbers_by_default_and_client_numbers_are_never_sent(world: World) -> None:
    run = world.latest_run()
    world.d365.refuse_client_line_numbers = True  # an environment that refuses a client's LineNumber
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    journal = assert_one_journal_each_line_once(world, run)
    assert sorted(r["LineNumber"] for r in journal["lines"]) == list(range(1, len(journal["lines"]) + 1))


def test_client_line_numbers_against_an_f_and_o_that_refuses_them_fail_with_one_clear_line(world: World) -> None:
    run = world.latest_run()
    world.d365.refuse_client_line_numbers = True
    configure_d365(world, line_numbers="client")
    result = world.cli("post-payroll", "--run-id", run.run_id, "--yes", expect=None)
    assert result.exit_code != 0
    assert "LineNumber" in result.output and "assigned by the system" in result.output
    assert "set d365.line_numbers: d365" in result.output  # and which setting fixes it
    assert all(not j["lines"] for j in world.journals())  # nothing booked
    # the same posting goes through once the config says D365 numbers the lines
    configure_d365(world, line_numbers="d365")
    world.cli("replay", "--failed")
    assert_one_journal_each_line_once(world, run)


def test_sigkill_mid_send_then_rerun_holds_each_line_once(world: World) -> None:
    run = world.latest_run()
    # the lines request is on its way (D365 processes it) when the process is killed: no answer recorded
    world.sandbox.faults.add(FaultRule("d365", "latency", method="POST", path_regex=r"\$batch$", latency_ms=1500))
    proc = spawn(world, "post-payroll", "--run-id", run.run_id, "--yes")
    wait_for(lambda: bool(world.journals()))
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    wait_for(lambda: any(j["lines"] for j in world.journals()), timeout=10)  # landed after the kill
    status = world.json_events("status")[0]
    assert [p["status"] for p in status["pending"]] == ["sending"]  # the ledger never learnt the answer
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    assert_one_journal_each_line_once(world, run)
    assert "recover" in [e["kind"] for e in audit_kinds(world, run)]


def test_dropped_batch_answer_holds_each_line_once(world: World) -> None:
    run = world.latest_run()
    world.sandbox.faults.add(FaultRule("d365", "drop_after", method="POST", path_regex=r"\$batch$"))
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    assert_one_journal_each_line_once(world, run)
    kinds = [e["kind"] for e in audit_kinds(world, run)]
    assert "ambiguous" in kinds and "recover" in kinds


@pytest.mark.parametrize("line_numbers", ["d365", "client"])
def test_header_post_d365_runs_after_the_client_timed_out_leaves_one_journal(world: World, line_numbers: str) -> None:
    run = world.latest_run()
    configure_d365(world, timeout_seconds=2, settle_seconds=0.3, line_numbers=line_numbers)
    # The header POST runs 3 s after it arrived: the client gave up at 2 s, waited 0.3 s, found nothing and
    # created a second header. The late one lands while the lines are on their way (1.8 s), so the final
    # verify-and-repair pass finds it, empty, and deletes it.
    world.sandbox.faults.add(FaultRule("d365", "latency", method="POST", path_regex=r"LedgerJournalHeaders$",
                                       latency_ms=3000))
    world.sandbox.faults.add(FaultRule("d365", "latency", method="POST", path_regex=r"\$batch$", latency_ms=1800))
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    assert_one_journal_each_line_once(world, run)
    requests = [e["detail"].get("op") for e in audit_kinds(world, run) if e["kind"] == "request"]
    assert requests.count("create header") == 2 and "delete empty duplicate journal" in requests
    assert world.d365.request_count["LedgerJournalHeaders"] >= 3  # two creates that landed, one delete


@pytest.mark.parametrize("line_numbers", ["d365", "client"])
def test_changeset_d365_runs_after_the_client_timed_out_leaves_each_line_once(world: World,
                                                                             line_numbers: str) -> None:
    run = world.latest_run()
    configure_d365(world, timeout_seconds=2, settle_seconds=0.3, line_numbers=line_numbers)
    # The first lines changeset runs 3 s after it arrived: the client gave up at 2 s, looked at 2.3 s, found
    # no lines and sent them again (answered after 1.8 s). The late copy landed in between: nothing in D365
    # refuses it without client line numbers, so the verify-and-repair pass deletes the surplus copies.
    world.sandbox.faults.add(FaultRule("d365", "latency", method="POST", path_regex=r"\$batch$", latency_ms=3000))
    world.sandbox.faults.add(FaultRule("d365", "latency", method="POST", path_regex=r"\$batch$", latency_ms=1800))
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    journal = assert_one_journal_each_line_once(world, run)
    requests = [e["detail"].get("op") for e in audit_kinds(world, run) if e["kind"] == "request"]
    # D365 refuses the late copy by its line numbers when the client sends them (the key is taken);
    # without them nothing refuses it and the surplus is deleted
    assert ("delete surplus lines" in requests) == (line_numbers == "d365")
    assert all(balance == 0 for balance in voucher_balances(journal).values())


def test_recovery_pages_through_relative_next_links_and_holds_each_line_once(world: World) -> None:
    run = world.latest_run()
    world.sandbox.d365.relative_next_links = True  # "LedgerJournalLines?$skip=25", relative to /data/
    world.sandbox.d365.page_size = 25
    world.sandbox.faults.add(FaultRule("d365", "drop_after", method="POST", path_regex=r"\$batch$"))
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    journal = assert_one_journal_each_line_once(world, run)
    assert len(journal["lines"]) > 2 * 25  # recovery read several pages
    world.cli("reconcile", "--run-id", run.run_id)


# ------------------------------------------------------------------------------------------ vouchers


@pytest.mark.parametrize("setting", ["OneVoucher", "BalanceSheet", "Manually"])
def test_every_voucher_of_the_posted_journal_balances_under_each_new_voucher_setting(world: World,
                                                                                     setting: str) -> None:
    run = world.latest_run()
    world.d365.set_new_voucher(setting)
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    journal = assert_one_journal_each_line_once(world, run)
    balances = voucher_balances(journal)
    assert balances and all(b == 0 for b in balances.values()), balances
    assert "" not in balances  # every line carries a voucher
    if setting != "BalanceSheet":
        assert len(balances) == 1  # one voucher for the journal (Manually: the one this tool names)
    world.d365.post_journal(journal["JournalBatchNumber"])  # finance can post it


# ------------------------------------------------------------------------------------ sync-dimensions


def _created_values(world: World) -> Counter[tuple[str, str]]:
    rows = Counter((r["FinancialDimension"], r["DimensionValue"])
                   for r in world.d365.entities("FinancialDimensionValues"))
    rows.update(("Department", r["OperatingUnitNumber"]) for r in world.d365.entities("OperatingUnits")
                if r["OperatingUnitType"] == "OMDepartment")
    return rows


@pytest.mark.parametrize("honoured", [True, False], ids=["continue-on-error", "server-stops-at-failure"])
def test_sync_dimensions_with_one_refused_value_creates_every_other_value_once(
        sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, honoured: bool) -> None:
    world = World(sandbox, monkeypatch)  # a bare world: sync-dimensions creates what D365 lacks
    # honoured: the client's Prefer: odata.continue-on-error is applied; otherwise D365 stops at the failed
    # changeset and the client must send the rest again (OData/WebApi DefaultODataBatchHandler.cs)
    sandbox.d365.honor_continue_on_error = honoured
    # Someone already used operating unit number IT for a business unit: D365 refuses the department IT
    # ("The record already exists"), whatever else the batch holds.
    Context(load_config(world.config_path)).d365.create(
        "OperatingUnits", {"OperatingUnitNumber": "IT", "Name": "IT business unit",
                           "OperatingUnitType": "OMBusinessUnit"})
    before = _created_values(world)
    result = world.cli("sync-dimensions", expect=None)
    assert result.exit_code != 0
    expected = {("CostCenter", c.code) for c in catalog.COST_CENTERS
                if c.is_active and c.code not in catalog.D365_EXISTING_COST_CENTERS}
    expected |= {("Department", d.code) for d in catalog.DEPARTMENTS
                 if d.code not in catalog.D365_EXISTING_DEPARTMENTS and d.code != "IT"}
    assert len(expected) == 8
    after = _created_values(world)
    assert after - before == Counter(expected)  # every other value created, once
    assert "IT" in result.output and result.output.count("already exists") == 1  # exactly one failure
    # a rerun creates nothing twice and reports the same one failure
    again = world.cli("sync-dimensions", expect=None)
    assert again.output.count("already exists") == 1
    assert _created_values(world) == after
    assert all(n == 1 for n in after.values())
