"""The README's troubleshooting table, row by row: what a user sees, through the real CLI against the
sandbox, with the exit status the table promises and no secret or traceback in the output.

Rows already proven elsewhere (config, hostile data, network) are named in the table with their own tests.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import certifi
import pytest
import yaml

from tests.world import SECRETS, World, d365_totals, ukg_totals
from ukg2d365.config import D365Config, load_config
from ukg2d365.d365.auth import diagnose_entra_error
from ukg2d365.ledger import Ledger
from ukg2d365.sandbox.faults import FaultRule

pytestmark = pytest.mark.e2e


def patch_config(world: World, **sections: dict) -> None:
    data = yaml.safe_load(world.config_path.read_text())
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    world.config_path.write_text(yaml.safe_dump(data, sort_keys=False))


def flat(text: str) -> str:
    return " ".join(text.split())


def post(world: World, expect: int, *extra: str) -> str:
    result = world.cli("post-payroll", "--run-id", world.latest_run().run_id, "--yes", *extra, expect=expect)
    output = flat(result.output)
    assert "Traceback" not in output and not any(secret in output for secret in SECRETS)
    return output


# ---------------------------------------------------------------- credentials and authentication


def test_missing_credential_exits_2_naming_the_variable(world: World, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("UKG2D365_UKG_PASSWORD")
    monkeypatch.setenv("UKG2D365_CREDENTIALS_BACKEND", "file")
    monkeypatch.setenv("UKG2D365_CREDENTIALS_FILE", str(tmp_path / "none.enc"))
    before = world.sandbox.stats()
    output = post(world, 2)
    assert "error: UKG credentials missing: UKG2D365_UKG_PASSWORD" in output
    assert "ukg2d365 credentials set ukg" in output
    assert world.sandbox.stats()["ukg"] == before["ukg"]


def test_ukg_wrong_password_exits_3_naming_what_was_sent(world: World, monkeypatch) -> None:
    monkeypatch.setenv("UKG2D365_UKG_PASSWORD", "not-the-password")
    output = post(world, 3)
    assert "UKG answered 401 for /payroll/v2/general-ledger: sent Authorization (Basic), US-Customer-Api-Key, " \
           "US-User-Api-Key" in output
    assert "check UKG2D365_UKG_PASSWORD" in output and "not-the-password" not in output


def test_ukg_customer_api_key_of_the_wrong_shape_is_diagnosed(world: World, monkeypatch) -> None:
    monkeypatch.setenv("UKG2D365_UKG_CUSTOMER_API_KEY", "abc")
    output = post(world, 3)
    assert "US-Customer-Api-Key is not 5 alphanumeric characters (3 characters)" in output


@pytest.mark.parametrize("section,value,expected", [
    ("client_id", "00000000-0000-0000-0000-00000000dead", "was not found in tenant"),
    ("tenant_id", "00000000-0000-0000-0000-00000000beef", "not found (AADSTS90002)"),
])
def test_entra_refusal_exits_3_with_its_aadsts_code(world: World, section: str, value: str, expected: str) -> None:
    patch_config(world, d365={section: value})
    output = post(world, 3)
    assert expected in output
    assert world.journals() == []


def test_d365_401_after_a_fresh_token_points_at_the_app_registration(world: World) -> None:
    world.sandbox.faults.add(FaultRule("d365", "status", method="GET", status=401, count=None))
    output = post(world, 3)
    assert "D365 refused the token: is the app registered under System administration > Setup > " \
           "Microsoft Entra ID applications?" in output


def test_d365_403_exits_3_naming_the_entity_set_and_the_role(world: World) -> None:
    world.sandbox.faults.add(FaultRule("d365", "status", method="POST", path_regex="LedgerJournalHeaders$",
                                       status=403, count=None))
    output = post(world, 3)
    assert "D365 denied POST LedgerJournalHeaders (HTTP 403)" in output
    assert "give the app's user (Microsoft Entra ID applications > User ID) a role that allows it" in output


# ---------------------------------------------------------------- D365 set-up and reference data


def test_ping_reports_a_delimiter_mismatch(world: World) -> None:
    world.sandbox.d365.state.set_delimiter("Period")
    [d365] = [e for e in world.json_events("ping", expect=1) if e.get("system") == "D365"]
    assert not d365["ok"]
    assert d365["detail"].startswith("D365's segment delimiter is Period but mapping.delimiter is '-' (Hyphen)")


def test_dimension_value_unknown_in_d365_refuses_the_run(sandbox, monkeypatch) -> None:
    bare = World(sandbox, monkeypatch)  # sync-dimensions never ran: some cost centers are missing in D365
    output = post(bare, 1)
    assert "CostCenter values not in D365:" in output and "(run sync-dimensions)" in output
    assert bare.journals() == []


def test_main_account_unknown_in_d365_refuses_the_run(world: World) -> None:
    world.sandbox.d365.state.remove_main_account("601500")
    output = post(world, 1)
    assert "main accounts not in D365: 601500" in output
    assert world.journals() == []


def test_unmapped_ukg_account_refuses_the_run(world: World) -> None:
    period = world.sandbox.dataset.closed_periods()[-1].period_end
    make = world.sandbox.dataset.make_gl_line
    world.sandbox.dataset.add_gl_run("UNMAP1", period_end=period, lines=[
        make("UNMAP1", "9999", debit=Decimal("5.00"), cost_center="110", department="PROD", period_end=period),
        make("UNMAP1", "2100", credit=Decimal("5.00"), period_end=period)])
    result = world.cli("post-payroll", "--run-id", "UNMAP1", "--yes", expect=1)
    assert "account has no entry in mapping.main_accounts: 9999" in flat(result.output)


def test_lines_d365_refuses_fail_the_posting_with_the_infolog_line_and_replay_finishes(world: World) -> None:
    run = world.latest_run()
    world.cli("post-payroll", "--run-id", run.run_id, "--dry-run")  # fills the reference cache
    world.sandbox.d365.state.remove_main_account("601500")  # gone in D365 after the cache saw it
    output = post(world, 1)
    assert "D365 refused lines" in output and "Main account 601500 does not exist" in output
    world.sandbox.d365.state.add_main_account("601500", "Salaries and wages")
    world.cli("replay", "--failed")
    [journal] = world.journals()
    assert d365_totals(journal) == ukg_totals(run)


# ---------------------------------------------------------------- availability, locks, TLS


def test_throttled_past_the_retry_budget_exits_4_and_stays_resumable(world: World) -> None:
    patch_config(world, http={"retry_budget_seconds": 1, "max_retry_after_seconds": 30})
    world.sandbox.faults.add(FaultRule("d365", "status", method="POST", path_regex=r"\$batch$", status=429,
                                       retry_after="5", count=None))
    output = post(world, 4)
    assert "retry budget exhausted" in output and "http.retry_budget_seconds" in output
    world.sandbox.faults.clear()
    world.cli("post-payroll", "--run-id", world.latest_run().run_id, "--yes")
    assert len(world.journals()) == 1


def test_unreachable_host_exits_4_naming_it(world: World) -> None:
    patch_config(world, ukg={"base_url": "https://127.0.0.1:9"}, http={"max_attempts": 1})
    output = post(world, 4)
    assert "UKG 127.0.0.1:9/payroll/v2/general-ledger:" in output and "after 1 attempt(s)" in output


def test_unknown_certificate_exits_4_suggesting_ca_bundle(world: World) -> None:
    patch_config(world, ukg={"ca_bundle": certifi.where()})  # public CAs only: the sandbox's CA is unknown
    output = post(world, 4)
    assert "TLS handshake failed: certificate verify failed: " in output and "set ca_bundle for this system" in output
    assert "per_Page" not in output and "runId=" not in output  # no URL query in the message


def test_second_run_while_the_lock_is_held_exits_75_at_once(world: World) -> None:
    config = load_config(world.config_path)
    holder = Ledger(config.ledger_path, config.ledger_tenant)
    holder.acquire_lock()
    try:
        output = post(world, 75)  # EX_TEMPFAIL: try again later, not "a remote system is down" (4)
    finally:
        holder.close()
    assert f"another ukg2d365 run holds the lock for tenant {config.ledger_tenant} (pid {os.getpid()} on " in output
    assert "ledger.lock_timeout_seconds" in output
    assert world.journals() == []


def test_post_payroll_without_a_selection_exits_2(world: World) -> None:
    result = world.cli("post-payroll", "--yes", expect=2)
    assert "post-payroll needs a selection" in flat(result.output)


def test_closed_period_without_a_gl_run_is_a_warning_not_a_failure(world: World) -> None:
    run = world.latest_run()
    world.sandbox.dataset.gl_runs.remove(run)  # UKG closed the period but has not produced its GL yet
    result = world.cli("post-payroll", "--due", "--yes")
    assert f"pay group BW period {run.period_end} is closed but UKG has no GL run for it yet" in flat(result.output)
    assert world.journals() == []


def test_no_active_ledger_format_stops_sync_before_any_write(world: World) -> None:
    world.sandbox.d365.state.set_ledger_format(None)
    result = world.cli("sync-dimensions", expect=2)
    assert "no active ledger dimension format in D365; activate one that starts with MainAccount (General " \
           "ledger > Chart of accounts > Dimensions" in flat(result.output)


@pytest.mark.parametrize("code,expected,hint", [
    ("7000222", "the D365 client secret has expired (AADSTS7000222)", "create a new secret"),
    ("7000112", "is disabled in tenant", "enable the app registration"),
    ("53003", "Entra ID Conditional Access blocked the token request (AADSTS53003)", "exclude this service principal"),
    ("50058", "Entra ID refused the token request (invalid_client: AADSTS50058: something new)",
     "check d365.tenant_id, d365.client_id and the secret"),
])
def test_every_aadsts_code_gets_a_one_line_diagnosis(code: str, expected: str, hint: str) -> None:
    cfg = D365Config(base_url="https://d365.test", tenant_id="t", client_id="c", legal_entity="usmf")
    message, advice = diagnose_entra_error("invalid_client", f"AADSTS{code}: something new Trace ID: 1", cfg)
    assert expected in message and hint in (advice or "")
