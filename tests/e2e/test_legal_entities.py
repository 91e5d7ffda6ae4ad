"""Several legal entities end to end: a pay run of two UKG companies, and a cost center borne by a third entity.

The sandbox with ``companies=2``: company C0MP1 is paid by USMF, C0MP2 (the Riverside plant) by USPI, and cost
center 130 belongs to USPM. One pay run makes three journals, each in its own company, each balanced, with the
intercompany lines netting to zero.
"""

from __future__ import annotations

import signal
import time
from collections import defaultdict
from decimal import Decimal

import pytest
import yaml

from tests.world import D365_ACCOUNT, World, display, spawn, wait_for
from ukg2d365.sandbox import catalog
from ukg2d365.sandbox.faults import FaultRule

pytestmark = [pytest.mark.e2e, pytest.mark.sandbox(companies=2)]

IC_ACCOUNTS = (catalog.DUE_FROM_ACCOUNT, catalog.DUE_TO_ACCOUNT)
ENTITIES = {"usmf", catalog.LEGAL_ENTITY_2, catalog.LEGAL_ENTITY_3}


def expected_by_entity(run) -> dict[str, dict[tuple[str, str], Decimal]]:
    """UKG's amounts per legal entity, account display value and side: where each line must land."""
    out: dict[str, dict[tuple[str, str], Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for item in run.items(0, len(run)):
        entity = "usmf" if item["coId"] == catalog.UKG_CO_ID else catalog.LEGAL_ENTITY_2
        if item["orgLevel1"] == catalog.BEARING_COST_CENTER:
            entity = catalog.LEGAL_ENTITY_3
        account = display(D365_ACCOUNT[item["generalLedgerAccount"]], item["orgLevel1"], item["orgLevel2"])
        out[entity][(account, "debit")] += Decimal(str(item["debitAmt"]))
        out[entity][(account, "credit")] += Decimal(str(item["creditAmt"]))
    return {e: {k: v for k, v in totals.items() if v} for e, totals in out.items()}


def d365_by_entity(world: World) -> dict[str, dict[tuple[str, str], Decimal]]:
    out: dict[str, dict[tuple[str, str], Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for journal in world.journals():
        for line in journal["lines"]:
            if line["AccountDisplayValue"].split("-")[0] in IC_ACCOUNTS:
                continue
            out[journal["dataAreaId"]][(line["AccountDisplayValue"], "debit")] += Decimal(str(line["DebitAmount"]))
            out[journal["dataAreaId"]][(line["AccountDisplayValue"], "credit")] += Decimal(str(line["CreditAmount"]))
    return {e: {k: v for k, v in totals.items() if v} for e, totals in out.items()}


def assert_three_balanced_journals(world: World, run) -> None:
    journals = world.journals()
    assert sorted(j["dataAreaId"] for j in journals) == sorted(ENTITIES)
    intercompany = Decimal(0)
    for journal in journals:
        lines = journal["lines"]
        debit = sum((Decimal(str(ln["DebitAmount"])) for ln in lines), Decimal(0))
        credit = sum((Decimal(str(ln["CreditAmount"])) for ln in lines), Decimal(0))
        assert debit == credit and debit > 0, journal["dataAreaId"]
        intercompany += sum((Decimal(str(ln["DebitAmount"])) - Decimal(str(ln["CreditAmount"]))
                             for ln in lines if ln["AccountDisplayValue"].split("-")[0] in IC_ACCOUNTS), Decimal(0))
    assert intercompany == 0
    # every UKG amount once, in the entity that bears it (multisets by account and side)
    assert d365_by_entity(world) == expected_by_entity(run)


def test_a_pay_run_of_two_companies_posts_three_balanced_journals_and_reconciles(world: World) -> None:
    run = world.latest_run()
    preview = world.cli("post-payroll", "--run-id", run.run_id, "--dry-run")
    for entity in ("USMF", "USPI", "USPM"):
        assert entity in preview.output
    assert world.journals() == []
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    assert_three_balanced_journals(world, run)
    bearing = next(j for j in world.journals() if j["dataAreaId"] == catalog.LEGAL_ENTITY_3)
    assert [ln["AccountDisplayValue"] for ln in bearing["lines"]][-1] == display(catalog.DUE_TO_ACCOUNT)

    writes = world.d365.request_count["$batch"]
    again = world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    assert "already posted" in again.output
    assert world.d365.request_count["$batch"] == writes and len(world.journals()) == 3

    report = world.json_events("reconcile", "--run-id", run.run_id)
    runs = [e for e in report if e.get("verdict")]
    assert len(runs) == 3 and {r["verdict"] for r in runs} == {"match"}, report
    status = world.json_events("status")[0]
    assert sorted(p["legal_entity"] for p in status["recent"]) == ["USMF", "USPI", "USPM"]
    assert sorted(r["legal_entity"] for r in runs) == ["USMF", "USPI", "USPM"]


def test_sigkill_during_the_second_journal_recovers_every_line_exactly_once(world: World) -> None:
    run = world.latest_run()
    # Each $batch takes a while (D365 still runs it): the process is killed while the second journal's lines
    # are on the wire, so the ledger never learns their answer.
    world.sandbox.faults.add(FaultRule("d365", "latency", method="POST", path_regex=r"\$batch$", latency_ms=1500,
                                       count=None))
    proc = spawn(world, "post-payroll", "--run-id", run.run_id, "--yes")
    wait_for(lambda: len(world.journals()) >= 2, timeout=30)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    world.sandbox.faults.clear()
    wait_for(lambda: sum(bool(j["lines"]) for j in world.journals()) >= 2, timeout=10)  # landed after the kill
    pending = world.json_events("status")[0]["pending"]
    # the second journal: its answer never recorded; the third: planned with the others before any was sent
    assert [p["status"] for p in pending] == ["sending", "planned"]
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    assert_three_balanced_journals(world, run)


def test_a_company_without_a_legal_entity_is_refused_by_name(world: World) -> None:
    config = yaml.safe_load(world.config_path.read_text())
    del config["legal_entities"]["by_company"][catalog.UKG_CO_ID_2]
    world.config_path.write_text(yaml.safe_dump(config))
    run = world.latest_run()
    result = world.cli("post-payroll", "--run-id", run.run_id, "--yes", expect=1)
    assert f"UKG company {catalog.UKG_CO_ID_2} has no entry in legal_entities.by_company" in result.output
    assert {j["dataAreaId"] for j in world.journals()} == {"usmf", catalog.LEGAL_ENTITY_3}


def test_ping_checks_each_legal_entity_on_a_line_of_its_own(world: World) -> None:
    checks = {e["system"]: e for e in world.json_events("ping") if e.get("event") == "check"}
    entities = [s for s in checks if s.startswith("Entity ")]
    assert entities == ["Entity USMF", "Entity USPI", "Entity USPM"]  # d365.legal_entity first
    assert all(checks[s]["ok"] for s in entities) and "GenJrn in USPI: New voucher" in checks["Entity USPI"]["detail"]
    assert "Journal name" not in checks

    config = yaml.safe_load(world.config_path.read_text())
    config["legal_entities"]["by_dimension"]["values"]["999"] = catalog.LEGAL_ENTITY_3.upper()
    world.config_path.write_text(yaml.safe_dump(config))
    checks = {e["system"]: e for e in world.json_events("ping", expect=1) if e.get("event") == "check"}
    assert not checks["Entity USPM"]["ok"]
    assert "CostCenter value(s) 999 not in D365 for USPM" in checks["Entity USPM"]["detail"]
    assert checks["Entity USMF"]["ok"] and checks["Entity USPI"]["ok"]
