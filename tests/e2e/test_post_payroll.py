"""post-payroll end to end: the real CLI against the sandbox's UKG, Entra ID and D365 over HTTPS."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest

from tests.world import SECRETS, d365_totals, ukg_totals
from ukg2d365.sandbox.faults import FaultRule

pytestmark = pytest.mark.e2e


def test_one_pay_run_becomes_exactly_one_journal_equal_to_ukg_to_the_cent(world):
    run = world.latest_run()
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    journals = world.journals()
    assert len(journals) == 1
    journal = journals[0]
    assert d365_totals(journal) == ukg_totals(run)
    assert Decimal(str(journal["JournalTotalDebit"])) == Decimal(str(journal["JournalTotalCredit"]))
    assert re.search(r"\[U2D-[A-Z2-7]{12}\]$", journal["Description"])


def test_rerun_of_posted_pay_run_posts_nothing(world):
    run = world.latest_run()
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    writes_before = world.d365.request_count["$batch"]
    result = world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    assert "already posted" in result.output
    assert len(world.journals()) == 1
    assert world.d365.request_count["$batch"] == writes_before


def test_dry_run_writes_nothing_and_marks_nothing_posted(world):
    run = world.latest_run()
    result = world.cli("post-payroll", "--run-id", run.run_id, "--dry-run")
    assert "dry run: would post 1 journal" in result.output
    assert "Total" in result.output  # the plan table
    assert world.journals() == []
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")  # still postable afterwards
    assert len(world.journals()) == 1


def test_due_posts_closed_periods_and_second_due_is_quiet(world):
    events = world.json_events("post-payroll", "--due", "--yes")
    posted = [e for e in events if e["event"] == "posting" and e["status"] == "posted"]
    assert posted, events
    assert len(world.journals()) == len(posted)
    again = world.json_events("post-payroll", "--due", "--yes")
    assert [e for e in again if e["event"] == "summary"][0]["message"].startswith("nothing new to post")
    assert len(world.journals()) == len(posted)


def test_429_storm_with_retry_after_still_ends_with_one_copy(world):
    run = world.latest_run()
    world.sandbox.faults.add(FaultRule("d365", "status", method="POST", path_regex=r"\$batch$", status=429,
                                       retry_after="1", count=2))
    world.sandbox.faults.add(FaultRule("d365", "status", method="POST", path_regex="LedgerJournalHeaders$",
                                       status=429, count=1))
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    assert len(world.journals()) == 1
    assert d365_totals(world.journals()[0]) == ukg_totals(run)


def test_connection_dropped_after_changeset_processed_is_recovered_not_resent(world):
    run = world.latest_run()
    world.sandbox.faults.add(FaultRule("d365", "drop_after", method="POST", path_regex=r"\$batch$", count=1))
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    journals = world.journals()
    assert len(journals) == 1
    assert d365_totals(journals[0]) == ukg_totals(run)


def test_header_created_then_connection_dropped_is_found_by_marker(world):
    run = world.latest_run()
    world.sandbox.faults.add(FaultRule("d365", "drop_after", method="POST", path_regex="LedgerJournalHeaders$",
                                       count=1))
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    assert len(world.journals()) == 1
    assert d365_totals(world.journals()[0]) == ukg_totals(run)


def test_d365_down_past_the_budget_exits_4_and_replay_finishes_once(world):
    run = world.latest_run()
    text = world.config_path.read_text() + "http:\n  max_attempts: 2\n  backoff_base_seconds: 0\n"
    world.config_path.write_text(text)
    world.sandbox.faults.add(FaultRule("d365", "status", method="POST", path_regex=r"\$batch$", status=503,
                                       count=None))
    world.cli("post-payroll", "--run-id", run.run_id, "--yes", expect=4)
    status = world.cli("status")
    assert "1 in flight" in status.output
    world.sandbox.faults.clear()
    world.cli("replay", "--failed")
    assert len(world.journals()) == 1
    assert d365_totals(world.journals()[0]) == ukg_totals(run)


def test_unbalanced_run_is_refused_and_nothing_is_sent(world):
    _add_unbalanced_run(world, "BADRUN1")
    result = world.cli("post-payroll", "--run-id", "BADRUN1", "--yes", expect=1)
    assert "debits 100.00 != credits 99.99" in result.output
    assert world.journals() == []


def test_wrong_client_secret_exits_3_with_aadsts_diagnosis(world, monkeypatch):
    monkeypatch.setenv("UKG2D365_D365_CLIENT_SECRET", "not-the-secret")
    result = world.cli("post-payroll", "--run-id", world.latest_run().run_id, "--yes", expect=3)
    assert "AADSTS7000215" in result.output
    assert "not-the-secret" not in result.output


def test_bad_config_exits_2_before_any_request(world):
    world.config_path.write_text(world.config_path.read_text().replace("legal_entity:", "legal_entty:"))
    before = world.sandbox.stats()
    result = world.cli("post-payroll", "--due", expect=2)
    assert "legal_entty: unknown key" in result.output
    assert world.sandbox.stats() == before


def test_ping_reports_all_systems(world):
    result = world.cli("ping")
    assert result.output.count(" ok ") >= 3 or result.output.count("ok") >= 3


def test_ping_names_each_systems_host_the_same_way_host_and_port(world):
    checks = {e["system"]: e["host"] for e in world.json_events("ping") if e["event"] == "check"}
    urls = world.sandbox.urls
    ukg, entra, d365 = (url.removeprefix("https://") for url in (urls.ukg, urls.entra, urls.d365))
    assert checks == {"UKG": ukg, "Entra ID": entra, "D365": d365, "D365 formats": d365, "Journal name": d365,
                      "Time zone": d365}


def test_no_secret_in_any_output_or_in_the_ledger(world):
    run = world.latest_run()
    world.sandbox.faults.add(FaultRule("d365", "drop_after", method="POST", path_regex=r"\$batch$", count=1))
    world.cli("-v", "post-payroll", "--run-id", run.run_id, "--yes")
    world.json_events("status")
    world.cli("audit", f"C0MP1/BW/{run.period_end}/{run.run_id}", "--format", "json")
    world.cli("ping")
    blob = "\n".join(world.outputs)
    ledger = world.config_path.parent / "ukg2d365.db"
    files = b"".join(p.read_bytes() for p in ledger.parent.glob("ukg2d365.db*"))
    for secret in SECRETS:
        assert secret not in blob
        assert secret.encode() not in files
    assert (ledger.stat().st_mode & 0o777) == 0o600


def test_run_changed_in_ukg_after_posting_is_reported_not_posted_again(world):
    run = world.add_small_run("DRIFT1", Decimal("10.00"))
    world.cli("post-payroll", "--run-id", "DRIFT1", "--yes")
    run.lines[0]["debitAmt"] = Decimal("11.00")
    run.lines[1]["creditAmt"] = Decimal("11.00")
    result = world.cli("post-payroll", "--run-id", "DRIFT1", "--yes")
    assert "changed after it was posted" in result.output
    drift = [j for j in world.journals() if "DRIFT1" in j["Description"]]
    assert len(drift) == 1 and Decimal(str(drift[0]["JournalTotalDebit"])) == Decimal("10.00")


def test_cli_refusal_is_in_the_audit_trail(world):
    # Every journal refused: nothing is posted, yet `audit <key>` must show the refusal and why.
    period = _add_unbalanced_run(world, "BADRUN2")
    world.cli("post-payroll", "--run-id", "BADRUN2", "--yes", expect=1)
    audit = world.cli("audit", f"C0MP1/BW/{period}/BADRUN2")
    assert "no posting or audited record" not in audit.output
    assert "refused" in audit.output
    # the table wraps long reasons; the CSV export carries them whole
    csv_out = world.cli("audit", f"C0MP1/BW/{period}/BADRUN2", "--format", "csv").output
    assert "debits 100.00 != credits 99.99" in csv_out


def _add_unbalanced_run(world, run_id: str):
    """A closed-period GL run whose debits (100.00) exceed its credits (99.99) by one cent; returns its period end."""
    period = world.sandbox.dataset.closed_periods()[-1].period_end
    base = {"coId": "C0MP1", "companyCode": "MFG", "payGroup": "BW", "periodEndDate": f"{period}T00:00:00",
            "orgLevel1": "110", "orgLevel2": "PROD", "orgLevel3": "", "orgLevel4": "", "blockId": 1,
            "totalNrOfBlocks": 1}
    world.sandbox.dataset.add_gl_run(run_id, period_end=period, lines=[
        dict(base, runId=run_id, systemId=1, generalLedgerAccount="5000", debitAmt=Decimal("100.00"),
             creditAmt=Decimal("0")),
        dict(base, runId=run_id, systemId=2, generalLedgerAccount="2100", debitAmt=Decimal("0"),
             creditAmt=Decimal("99.99"), orgLevel1="", orgLevel2=""),
    ])
    return period


def test_replay_of_a_posted_key_records_the_skip_on_its_trail(world):
    run = world.latest_run()
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    key = f"C0MP1/BW/{run.period_end}/{run.run_id}"
    result = world.cli("replay", key)
    assert "already posted" in result.output
    trail = json.loads(world.cli("audit", key, "--format", "json").stdout)
    [skip] = [e for e in trail["events"] if e["kind"] == "replay.skipped"]
    assert skip["detail"]["reason"] == "already posted" and skip["command"] == "replay"
    unknown = world.cli("replay", "NO-SUCH-KEY", expect=1)
    assert "no posting 'NO-SUCH-KEY'" in unknown.output


def test_the_run_says_each_journal_is_created_unposted_once_and_the_summary_only_counts(world):
    """D365 leaves the journal unposted (IsPosted No): the words must not say "posted" to finance, and each
    journal's sentence (its number, unposted, what finance does) is said once: the summary line counts."""
    runs = sorted(world.sandbox.dataset.gl_runs, key=lambda r: r.period_end)[-2:]
    one = " ".join(world.cli("post-payroll", "--run-id", runs[0].run_id, "--yes").output.split())
    [first] = world.journals()
    assert one.count(first["JournalBatchNumber"]) == 1 and one.count("Post journals batch job") == 1, one
    result = world.cli("post-payroll", "--pay-group", "BW", "--yes")
    text = " ".join(result.output.split())
    assert {j["IsPosted"] for j in world.journals()} == {"No"}
    created = [j for j in world.journals() if j["JournalBatchNumber"] != first["JournalBatchNumber"]]
    for journal in created:
        number = journal["JournalBatchNumber"]
        assert text.count(number) == 1, text
    assert text.count("created journal ") == len(created) >= 2
    assert text.count("unposted: post it in D365, or let the recurring Post journals batch job do it") == len(created)
    last = result.output.strip().splitlines()[-1]
    assert last == f"journals: {len(created)} created in D365 (unposted); 0 failed; 1 already posted; 0 refused"
    assert "posted 1 journal" not in text


# What README's Performance section states a journal costs in D365 requests; this test holds it to a real run.
REQUEST_FORMULA = "5 + ceil(L / batch_size) + ceil(L / 10,000)"


def test_a_journal_costs_the_d365_requests_the_readme_states(world):
    """Per run the set-up check (DimensionIntegrationFormats) and the marker look-up before creating
    (LedgerJournalHeaders); per legal entity the journal name (JournalNames); per journal its header, its
    ceil(L / batch_size) changesets, its header read back (totals) and its lines read back a page at a time
    (D365 pages 10,000 rows; this sandbox 25, to count pages on a small journal)."""
    import math
    from pathlib import Path

    from tests.e2e.test_troubleshooting import patch_config

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert f"A journal of L lines costs {REQUEST_FORMULA} D365 requests" in " ".join(readme.split())
    lines, batch_size, page_size = 60, 7, 25
    patch_config(world, d365={"batch_size": batch_size}, payroll={"summarize": False})
    world.cli("sync-dimensions", "--yes")  # the nightly order: the reference cache is filled before posting
    run = world.sandbox.dataset.add_gl_run(lines=lines)
    world.sandbox.d365.page_size = page_size
    world.sandbox.reset_stats()
    [summary] = [e for e in world.json_events("post-payroll", "--run-id", run.run_id, "--yes")
                 if e["event"] == "summary"]
    expected = 5 + math.ceil(lines / batch_size) + math.ceil(lines / page_size)
    assert world.sandbox.stats()["d365"] == summary["d365_requests"] == expected == 17
