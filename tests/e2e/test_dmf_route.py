"""The DMF route end to end: the CLI against the sandbox's Data management package API over HTTPS
(MicrosoftDocs/dynamics-365-unified-operations-public articles/fin-ops-core/dev-itpro/data-entities/
data-management-api.md). Exactly once holds here too: the execution id is in the ledger before
ImportFromPackage, a rerun after a crash polls it, anything but Succeeded is a failure, and the SAS URL is
never recorded."""

from __future__ import annotations

import re
import signal
import sqlite3
import time
from decimal import Decimal
from typing import Any

import pytest
import yaml

from tests.world import D365_ACCOUNT, World, display, spawn, wait_for
from ukg2d365.ledger import Ledger

pytestmark = pytest.mark.e2e


def use_dmf(world: World, transport: str = "dmf", **dmf: Any) -> None:
    data = yaml.safe_load(world.config_path.read_text(encoding="utf-8"))
    data["d365"].update(transport=transport, settle_seconds=0.5)
    data["dmf"] = {"poll_seconds": 0.05, "poll_max_seconds": 0.2, **dmf}
    world.config_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def marked(world: World, run_id: str) -> list[dict[str, Any]]:
    posting = posting_of(world, run_id)
    return [j for j in world.journals() if posting["marker"] in j["Description"]]


def posting_of(world: World, run_id: str) -> dict[str, Any]:
    led = Ledger(world.sandbox.dir / "ukg2d365.db")
    try:
        found = [p for p in led.find_postings() if p.run_id == run_id]
        assert len(found) == 1
        return vars(found[0])
    finally:
        led.close()


def ledger_bytes(world: World) -> bytes:
    return b"".join(p.read_bytes() for p in world.sandbox.dir.glob("ukg2d365.db*"))


def test_dmf_route_creates_one_journal_verified_by_totals_and_a_rerun_imports_nothing(world: World) -> None:
    use_dmf(world)
    run = world.add_small_run("DMF1", Decimal("1234.56"))
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    journals = marked(world, run.run_id)
    assert len(journals) == 1
    posting = posting_of(world, run.run_id)
    assert posting["status"] == "posted" and posting["route"] == "dmf" and posting["execution_id"]
    assert {ln["Voucher"] for ln in journals[0]["lines"]} == {posting["marker"]}  # one balanced voucher
    assert sum(Decimal(str(ln["DebitAmount"])) for ln in journals[0]["lines"]) == Decimal("1234.56")
    dmf = world.sandbox.d365.dmf
    assert dmf.import_calls == 1 and dmf.blob_requests_with_token == 0
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    assert dmf.import_calls == 1 and len(marked(world, run.run_id)) == 1
    # the SAS URL (its signature) is a secret: not in the ledger, the audit or any output
    assert b"sig=" not in ledger_bytes(world) and not any("sig=" in out for out in world.outputs)
    audit = world.cli("audit", posting["key"], "--format", "json").output
    assert "ImportFromPackage" in audit and "[SAS redacted]" in audit and "sig=" not in audit


def test_sigkill_while_the_import_runs_then_rerun_polls_it_and_ends_with_one_journal(world: World) -> None:
    use_dmf(world)
    run = world.add_small_run("DMF2", Decimal("500.00"))
    dmf = world.sandbox.d365.dmf
    dmf.hold.clear()  # the execution stays Executing until released
    proc = spawn(world, "post-payroll", "--run-id", run.run_id, "--yes")
    try:
        wait_for(lambda: dmf.import_calls == 1 and any(e.status == "Executing" for e in dmf.executions.values()))
        time.sleep(0.3)  # the tool is polling
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    posting = posting_of(world, run.run_id)
    assert posting["status"] == "sending" and posting["execution_id"] in dmf.executions
    dmf.hold.set()
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    assert dmf.import_calls == 1  # polled, never imported again
    assert len(marked(world, run.run_id)) == 1 and posting_of(world, run.run_id)["status"] == "posted"


def test_partially_succeeded_import_exits_1_naming_the_refused_line_and_replay_completes_it_once(
        world: World) -> None:
    use_dmf(world)
    run = world.add_small_run("DMF3", Decimal("77.00"))
    refused = display(D365_ACCOUNT["2100"])
    world.sandbox.d365.dmf.refuse_accounts.add(refused)
    text = " ".join(world.cli("post-payroll", "--run-id", run.run_id, "--yes", expect=1).output.split())
    assert "PartiallySucceeded" in text and re.search(rf"line \d: Account {refused} is not valid", text)
    posting = posting_of(world, run.run_id)
    assert posting["status"] == "failed"  # never "posted"
    assert len(marked(world, run.run_id)) == 1  # the lines D365 took, unposted
    world.sandbox.d365.dmf.refuse_accounts.clear()
    world.cli("replay", posting["key"])
    journals = marked(world, run.run_id)
    assert len(journals) == 1 and len(journals[0]["lines"]) == 2
    assert posting_of(world, run.run_id)["status"] == "posted"


def test_failed_import_leaves_nothing_posted_and_replay_imports_again(world: World) -> None:
    use_dmf(world)
    run = world.add_small_run("DMF4", Decimal("12.00"))
    world.sandbox.d365.dmf.fail_target = True
    text = " ".join(world.cli("post-payroll", "--run-id", run.run_id, "--yes", expect=1).output.split())
    assert "ended Failed" in text and "nothing was written to D365" in text
    assert marked(world, run.run_id) == [] and posting_of(world, run.run_id)["status"] == "failed"
    world.sandbox.d365.dmf.fail_target = False
    world.cli("replay", "--failed")
    assert len(marked(world, run.run_id)) == 1 and posting_of(world, run.run_id)["status"] == "posted"


def test_dry_run_says_which_route_each_journal_would_take(world: World) -> None:
    use_dmf(world, transport="auto", min_lines=3)
    small = world.add_small_run("DMF5", Decimal("1.00"))
    out = " ".join(world.cli("post-payroll", "--run-id", small.run_id, "--dry-run").output.split())
    assert "Route OData $batch" in out and "DMF package" not in out
    use_dmf(world, transport="auto", min_lines=2)
    out = " ".join(world.cli("post-payroll", "--run-id", small.run_id, "--dry-run").output.split())
    assert "Route DMF package" in out and "OData $batch" not in out and world.sandbox.d365.dmf.import_calls == 0


def test_a_stored_plan_damaged_in_the_ledger_is_refused_before_anything_is_imported(world: World) -> None:
    """The plan is stored in hashed blocks: replay of a plan altered since it was planned fails that posting, naming
    it, and sends D365 nothing (the package is written from the ledger before any upload)."""
    use_dmf(world)
    run = world.add_small_run("DMF6", Decimal("31.00"))
    world.sandbox.d365.dmf.fail_target = True
    world.cli("post-payroll", "--run-id", run.run_id, "--yes", expect=1)
    world.sandbox.d365.dmf.fail_target = False
    posting = posting_of(world, run.run_id)
    dmf = world.sandbox.d365.dmf
    imports = dmf.import_calls
    db = sqlite3.connect(world.sandbox.dir / "ukg2d365.db")
    try:  # an amount changed by hand in the stored plan: 31.00 becomes 91.00
        changed = db.execute(
            "UPDATE plan_chunks SET records = REPLACE(records, '31.00', '91.00') WHERE posting_key = ?",
            (posting["key"],)).rowcount
        db.commit()
    finally:
        db.close()
    assert changed == 1
    text = " ".join(world.cli("replay", posting["key"], expect=1).output.split())
    assert f"the ledger's stored plan of {posting['key']} is damaged from line 1 on" in text
    assert dmf.import_calls == imports and marked(world, run.run_id) == []
    assert posting_of(world, run.run_id)["status"] == "failed"
