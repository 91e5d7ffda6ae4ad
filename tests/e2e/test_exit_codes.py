"""Exit codes that mean one thing: 4 a remote is unavailable (also a maintenance page, a login redirect,
a token answer that is not JSON), 70 a bug (its traceback in the ledger's audit, not on the screen), 75 another
run holds the lock. Every remote answer, whatever its shape, is one line on stderr.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import ukg2d365.flows.post_payroll as post_payroll
from tests.world import SECRETS, World, spawn
from ukg2d365.errors import ExitStatus
from ukg2d365.sandbox.faults import FaultRule

pytestmark = pytest.mark.e2e


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and not any(secret in stderr for secret in SECRETS)
    return lines[0]


def test_exit_status_numbers_are_distinct_and_sysexits_where_they_exist() -> None:
    assert len({int(s) for s in ExitStatus}) == len(ExitStatus)
    assert (ExitStatus.INTERNAL, ExitStatus.LOCKED) == (70, 75)  # sysexits.h EX_SOFTWARE, EX_TEMPFAIL


@pytest.mark.parametrize("status", [400, 200])
def test_entra_answering_the_token_request_with_html_is_one_line_and_exit_4(world: World, status: int) -> None:
    # msal logs this answer with logger.exception before raising: without a handler, Python's last-resort
    # handler printed a traceback (and the body) on stderr. A subprocess sees what a cron mail would.
    world.sandbox.faults.add(FaultRule("entra", "html", status=status, path_regex="token", count=None))
    proc = spawn(world, "post-payroll", "--run-id", world.latest_run().run_id, "--yes")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == ExitStatus.UNAVAILABLE, stderr
    line = one_line(stderr)
    assert line.startswith("error: Entra ID authority 127.0.0.1 answered the token request with something that "
                           "is not JSON (a proxy or login page?)"), line
    assert world.journals() == []


def test_a_bug_exits_70_and_its_traceback_is_in_the_audit_not_on_the_screen(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(post_payroll, "due_periods", broken)
    result = world.cli("post-payroll", "--due", "--yes", expect=70)
    output = " ".join(result.output.split())
    assert "error: internal error (this is a bug): KeyError: 'boom'; the traceback is in `ukg2d365 audit run:" \
        in output, output
    assert "Traceback" not in output
    key = output.split("ukg2d365 audit ")[1].split("`")[0]
    [trail] = world.json_events("audit", key)
    [event] = trail["events"]
    assert event["kind"] == "internal error"
    assert "Traceback (most recent call last)" in event["detail"]["traceback"]
    assert "in broken" in event["detail"]["traceback"] and "KeyError: 'boom'" in event["detail"]["traceback"]
    status = world.json_events("status")[0]
    assert status["runs"][0]["exit_code"] == 70


def test_a_bug_with_verbose_shows_the_traceback_too(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(post_payroll, "due_periods", broken)
    result = world.cli("--verbose", "post-payroll", "--due", "--yes", expect=70)
    assert "Traceback (most recent call last)" in result.output and "internal error (this is a bug)" in result.output


def test_a_bug_outside_any_command_is_one_line_and_exit_70(tmp_path: object) -> None:
    # The entry point itself: an exception escaping Typer (here, a command module that raises on import of
    # an option's callback) must not print a traceback either.
    code = ("import sys, ukg2d365.cli as cli\n"
            "def boom(): raise RuntimeError('broken start-up')\n"
            "cli.app = boom\n"
            "cli.main()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 70
    assert one_line(proc.stderr) == ("error: internal error (this is a bug): RuntimeError: broken start-up; "
                                     "run with --verbose for the traceback")
