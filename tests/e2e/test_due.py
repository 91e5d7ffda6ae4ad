"""post-payroll --due, the cron mode: closed and unposted periods get posted, the rest is left alone."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest

from ukg2d365.cli import app

pytestmark = pytest.mark.e2e


def test_due_posts_each_closed_unposted_period_skips_posted_and_open_then_is_quiet(world):
    closed = sorted(world.sandbox.dataset.closed_periods(), key=lambda p: p.period_end)
    newest_three = closed[-3:]
    # Look back far enough for exactly the three newest closed periods.
    lookback = (date.today() - newest_three[0].pay_date).days
    world.config_path.write_text(world.config_path.read_text() + f"payroll:\n  lookback_days: {lookback}\n")
    runs = {r.period_end: r.run_id for r in world.sandbox.dataset.gl_runs}
    world.cli("post-payroll", "--run-id", runs[newest_three[0].period_end], "--yes")  # one already posted

    events = world.json_events("post-payroll", "--due", "--yes")
    posted = sorted(e["key"] for e in events if e["event"] == "posting" and e["status"] == "posted")
    assert posted == sorted(f"C0MP1/BW/{p.period_end}/{runs[p.period_end]}" for p in newest_three[1:])
    periods = {(e["period_end"], e["status"]) for e in events if e["event"] == "period"}
    assert (str(newest_three[0].period_end), "already posted") in periods
    open_ends = {str(p.period_end) for p in world.sandbox.dataset.open_periods()}
    assert {end for end, status in periods if status == "open"} <= open_ends
    assert len(world.journals()) == 3

    before = world.sandbox.stats()
    again = world.runner.invoke(app, ["-c", str(world.config_path), "--json", "post-payroll", "--due", "--yes"])
    assert again.exit_code == 0
    summaries = [json.loads(line) for line in again.stdout.splitlines() if '"summary"' in line]
    assert len(summaries) == 1 and summaries[0]["message"].startswith("nothing new to post")
    after = world.sandbox.stats()
    assert after["d365"] == before["d365"]  # nothing sent to D365
    assert after["ukg"] - before["ukg"] == 1  # one look at the pay calendar, no GL read
    assert len(world.journals()) == 3


def test_json_mode_logs_warnings_on_stderr_as_json(world):
    period = world.sandbox.dataset.closed_periods()[-1].period_end
    ds = world.sandbox.dataset
    ds.add_gl_run("UNBAL1", period_end=period, lines=[
        ds.make_gl_line("UNBAL1", "5000", debit=Decimal("10.00"), credit=Decimal("0"), period_end=period),
        ds.make_gl_line("UNBAL1", "2100", debit=Decimal("0"), credit=Decimal("9.00"), period_end=period),
    ])
    result = world.runner.invoke(app, ["-c", str(world.config_path), "--json", "post-payroll", "--run-id", "UNBAL1",
                                       "--yes"])
    assert result.exit_code == 1
    logs = [json.loads(line) for line in result.stderr.splitlines()]
    assert logs and all(set(rec) == {"at", "level", "message"} for rec in logs)
    assert any(rec["level"] == "warning" and "UNBAL1" in rec["message"] for rec in logs)
    for line in result.stdout.splitlines():
        json.loads(line)  # stdout stays pure JSON lines


def test_due_warns_about_a_closed_unposted_period_older_than_the_window_naming_the_command(world):
    """Period 3 of the newest four was never posted and fell out of the window; --due says so."""
    oldest, skipped, closed = world.leave_periods_behind_the_window()
    result = world.cli("post-payroll", "--due", "--yes")
    text = " ".join(result.output.split())
    assert (f"pay group BW period {skipped.period_end} is closed but was never posted, and is older than "
            "payroll.lookback_days") in text
    assert f"ukg2d365 post-payroll --pay-group BW --period-end {skipped.period_end}" in text
    assert f"period {oldest.period_end} is closed but was never posted" not in text  # it was posted
    events = world.json_events("post-payroll", "--due", "--dry-run")
    stale = {e["period_end"] for e in events if e["event"] == "period" and "older than the window" in e["status"]}
    assert stale == {str(p.period_end) for p in closed[-3:-1]}
    world.cli("post-payroll", "--pay-group", "BW", "--period-end", str(skipped.period_end), "--yes")
    after = world.json_events("post-payroll", "--due", "--dry-run")
    assert str(skipped.period_end) not in {e["period_end"] for e in after if e["event"] == "period"
                                           and "older than the window" in e["status"]}
