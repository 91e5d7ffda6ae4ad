"""The sandbox's Data management package API and cost model, driven by the real DMF client over HTTPS
(MicrosoftDocs/dynamics-365-unified-operations-public articles/fin-ops-core/dev-itpro/data-entities/
data-management-api.md; entity-general-journal.md for the set-based import)."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from ukg2d365.config import load_config
from ukg2d365.d365.dmf import DmfClient
from ukg2d365.d365.package import JournalFields, PackageTemplate, PackageWriter
from ukg2d365.flows.runtime import Context
from ukg2d365.sandbox import CostModel, Sandbox, catalog


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    sb = Sandbox(tmp_path / "sb", employees=6).start()
    for name, value in sb.env().items():
        monkeypatch.setenv(name, value)
    yield sb
    sb.stop()


def _client(sb: Sandbox) -> DmfClient:
    ctx = Context(load_config(sb.config_path), ledger_path=sb.dir / "l.db", record_http=False)
    return ctx.dmf


def _package(tmp_path: Path, accounts: list[str], marker: str = "U2D-TESTMARKER01") -> Path:
    account = catalog.GL_ACCOUNTS[0].d365_account
    fields = JournalFields(marker, catalog.JOURNAL_NAME, f"Payroll test [{marker}]", marker, "2026-01-31", "USD")
    writer = PackageWriter(PackageTemplate.builtin("UKG2D365 General journal", "General journal"), fields, tmp_path)
    rows = []
    for i, display in enumerate(accounts or [f"{account}--", f"{account}--"], start=1):
        rows.append((i, display, "10.00" if i % 2 else "0", "0" if i % 2 else "10.00", "t"))
    writer.add(rows)
    return writer.finish().path


def _import(client: DmfClient, path: Path, execution_id: str) -> str:
    target = client.write_url(f"{execution_id}.zip")
    client.upload(target, path)
    client.import_package(target.url, definition_group="UKG2D365 General journal", execution_id=execution_id,
                          legal_entity=catalog.LEGAL_ENTITY)
    return client.wait(execution_id, first=0.05, cap=0.2, timeout=30, unknown_for=5)


def test_package_import_runs_in_the_background_and_writes_one_journal_with_the_files_voucher(
        sandbox: Sandbox, tmp_path: Path) -> None:
    client = _client(sandbox)
    assert _import(client, _package(tmp_path, []), "EXEC-1") == "Succeeded"
    journals = [h for h in sandbox.d365.state.journals() if "U2D-TESTMARKER01" in h["Description"]]
    assert len(journals) == 1
    lines = sandbox.d365.state.lines(journals[0]["JournalBatchNumber"], catalog.LEGAL_ENTITY)
    assert [ln["Voucher"] for ln in lines] == ["U2D-TESTMARKER01"] * 2
    assert sum(ln["DebitAmount"] for ln in lines) == Decimal("10.00")
    assert sandbox.d365.dmf.blob_requests_with_token == 0  # the bearer token never went to blob storage


def test_a_refused_row_makes_the_import_partially_succeeded_and_is_named_in_the_staging_error_file(
        sandbox: Sandbox, tmp_path: Path) -> None:
    account = catalog.GL_ACCOUNTS[0].d365_account
    sandbox.d365.dmf.refuse_accounts.add(f"{account}-X-")
    client = _client(sandbox)
    path = _package(tmp_path, [f"{account}--", f"{account}-X-", f"{account}--", f"{account}--"])
    assert _import(client, path, "EXEC-2") == "PartiallySucceeded"
    report = client.report("EXEC-2", "PartiallySucceeded", "General journal")
    assert report.refused_rows == 1 and list(report.line_errors) == [2]
    assert "not valid" in report.line_errors[2]


def test_a_failed_target_step_writes_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.d365.dmf.fail_target = True
    before = len(sandbox.d365.state.journals())
    assert _import(_client(sandbox), _package(tmp_path, []), "EXEC-3") == "Failed"
    assert len(sandbox.d365.state.journals()) == before


def test_an_execution_id_used_twice_is_refused_and_an_unknown_one_is_unknown(sandbox: Sandbox, tmp_path: Path) -> None:
    client = _client(sandbox)
    assert _import(client, _package(tmp_path, []), "EXEC-4") == "Succeeded"
    with pytest.raises(Exception, match="already exists"):
        _import(client, _package(tmp_path, []), "EXEC-4")
    assert client.status("NEVER-SENT") == "Unknown"


def test_blob_storage_refuses_a_request_without_the_right_signature(sandbox: Sandbox, tmp_path: Path) -> None:
    target = _client(sandbox).write_url("x.zip")
    wrong = target.url.reveal().rsplit("sig=", 1)[0] + "sig=forged"
    answer = requests.put(wrong, data=b"zip", headers={"x-ms-blob-type": "BlockBlob"}, verify=str(sandbox.ca_path),
                          timeout=10)
    assert answer.status_code == 403


def test_cost_model_answers_429_with_retry_after_past_the_changesets_it_runs_at_once(tmp_path: Path) -> None:
    cost = CostModel(odata_line_ms=200, max_changesets=1)
    with cost.odata_request(1) as first:
        with cost.odata_request(1) as second:
            assert first and not second
    started = time.monotonic()
    with cost.odata_request(3) as admitted:
        assert admitted
    assert time.monotonic() - started >= 0.6  # serial inside the request: 3 lines x 200 ms
    assert CostModel(dmf_fixed_ms=5000, dmf_line_us=20).dmf_seconds(100_000) == pytest.approx(7.0)
