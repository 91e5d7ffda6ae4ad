"""Exactly once, whatever fails: crashes, refusals, overlapping runs, revoked tokens."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.world import SECRETS, World, d365_totals, spawn, ukg_totals
from ukg2d365.sandbox.faults import FaultRule

pytestmark = pytest.mark.e2e



def assert_exactly_once(world: World, run) -> None:
    journals = world.journals()
    assert len(journals) == 1, [j["JournalBatchNumber"] for j in journals]
    assert d365_totals(journals[0]) == ukg_totals(run)



def test_every_lines_write_failing_with_500_then_replay_failed_posts_once(world):
    run = world.latest_run()
    world.sandbox.faults.add(FaultRule("d365", "status", method="POST", path_regex=r"\$batch$", status=500,
                                       count=None))
    result = world.cli("post-payroll", "--run-id", run.run_id, "--yes", expect=None)
    assert result.exit_code in (1, 4)
    assert all(not j["lines"] for j in world.journals())
    status = world.json_events("status")[0]
    stuck = status["failed"] + status["pending"]
    assert len(stuck) == 1 and stuck[0]["last_error"]
    world.sandbox.faults.clear()
    world.cli("replay", "--failed")
    assert_exactly_once(world, run)
    world.cli("replay", "--failed")  # nothing left: a second replay sends nothing
    assert_exactly_once(world, run)


def test_two_runs_started_at_once_post_once_and_the_second_says_why(world):
    run = world.latest_run()
    world.sandbox.faults.add(FaultRule("d365", "latency", method="POST", path_regex=r"\$batch$", latency_ms=800))
    first = spawn(world, "post-payroll", "--run-id", run.run_id, "--yes")
    second = spawn(world, "post-payroll", "--run-id", run.run_id, "--yes")
    outs = [p.communicate(timeout=60) for p in (first, second)]
    codes = sorted(p.returncode for p in (first, second))
    assert codes in ([0, 75], [0, 0]), outs
    if codes == [0, 75]:
        assert any("another ukg2d365 run holds the lock for tenant" in err for _, err in outs)
    assert_exactly_once(world, run)


def test_status_and_audit_tell_the_story_without_secrets(world):
    run = world.latest_run()
    world.sandbox.faults.add(FaultRule("d365", "drop_after", method="POST", path_regex=r"\$batch$", count=1))
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    key = f"C0MP1/BW/{run.period_end}/{run.run_id}"
    audit = world.cli("audit", key)
    for expected in ("plan", "request", "ambiguous", "recover", "verify", "posted"):
        assert expected in audit.output
    rows = list(csv.DictReader(io.StringIO(world.cli("audit", key, "--format", "csv").stdout)))
    assert list(rows[0])[:7] == ["id", "at", "run", "user", "host", "command", "kind"]
    http = [r for r in rows if r["kind"] == "http"]  # real columns, not a JSON blob in one
    assert http and all(r["method"] in ("GET", "POST", "PATCH", "DELETE") and r["path"].startswith("/")
                        for r in http)
    assert any(r["op"] == "create header" and r["kind"] == "request" for r in rows)
    trail = json.loads(world.cli("audit", key, "--format", "json").stdout)
    assert trail["posting"]["journal_batch_number"]
    assert any(e["kind"] == "http" for e in trail["events"])
    blob = "\n".join(world.outputs)
    assert not any(secret in blob for secret in SECRETS)


def test_token_revoked_mid_run_is_renewed_once_and_posts_once(world):
    run = world.latest_run()
    world.sandbox.faults.add(FaultRule("d365", "revoke_tokens", method="POST", path_regex=r"\$batch$", count=1))
    issued_before = world.sandbox.tokens.issued_count
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    assert_exactly_once(world, run)
    assert world.sandbox.tokens.issued_count == issued_before + 2  # the first token, then one renewal


def test_audit_shows_the_trail_of_a_synced_dimension_value(world, monkeypatch):
    world.sandbox.dataset.add_org_level(1, "777", "New cost center")
    world.cli("sync-dimensions")
    trail = json.loads(world.cli("audit", "dimension:CostCenter:777", "--format", "json").stdout)
    assert trail["posting"] is None and trail["events"]
    missing = world.cli("audit", "no-such-key", expect=2)
    assert "no posting or audited record" in missing.output
