"""A selection that matches nothing says why and exits 1, never "would post 0 journal(s)", exit 0.

Cron and people both read exit 0 as "posted"; a case slip (`bw`), a typo'd run id or an open period would
otherwise pass in silence.
"""

from __future__ import annotations

import pytest

from tests.world import World

pytestmark = pytest.mark.e2e


def one_line(world: World, *args: str) -> str:
    result = world.cli("post-payroll", *args, "--dry-run", expect=1)
    assert "would post 0" not in result.output or "no GL run" in result.output
    return " ".join(result.output.split())


def test_pay_group_in_the_wrong_case_suggests_the_right_one(world: World) -> None:
    text = one_line(world, "--pay-group", "bw")
    assert "no GL run in UKG matches --pay-group bw; did you mean --pay-group BW?" in text


def test_unknown_run_id_is_named(world: World) -> None:
    assert "no GL run in UKG matches --run-id NOPE" in one_line(world, "--run-id", "NOPE")


def test_an_open_period_says_it_is_still_open(world: World) -> None:
    period = world.sandbox.dataset.open_periods()[0].period_end
    text = one_line(world, "--pay-group", "BW", "--period-end", period.isoformat())
    assert f"pay group BW period {period} is still open in UKG" in text


def test_a_period_without_a_run_lists_the_latest_periods_that_have_one(world: World) -> None:
    closed = world.sandbox.dataset.closed_periods()
    text = one_line(world, "--pay-group", "BW", "--period-end", "2001-01-05")
    assert "latest periods with a GL run:" in text and closed[-1].period_end.isoformat() in text


def test_a_selection_that_matches_still_posts_with_exit_0(world: World) -> None:
    run = world.latest_run()
    result = world.cli("post-payroll", "--run-id", run.run_id, "--dry-run")
    assert "no GL run" not in result.output
