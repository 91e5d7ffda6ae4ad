"""The DMF package API client (MicrosoftDocs/dynamics-365-unified-operations-public articles/fin-ops-core/
dev-itpro/data-entities/data-management-api.md): actions, the blob upload with its SAS URL kept secret,
bounded polling and error retrieval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from ukg2d365.config import D365Config
from ukg2d365.d365.auth import TokenProvider
from ukg2d365.d365.dmf import DmfClient, DmfStillRunning, SasUrl, parse_error_file
from ukg2d365.d365.odata import ODataClient
from ukg2d365.errors import AmbiguousWriteError, RemoteError
from ukg2d365.http import HttpClient, RetryBudget, RetryPolicy

BASE = "https://contoso.operations.dynamics.com"
ACTIONS = f"{BASE}/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities."
BLOB = "https://contosoblob.blob.core.windows.net/dmf/U2D-1.zip?sv=2020&sig=TOPSECRETSIG%3D&se=2030"


class FakeApp:
    def acquire_token_for_client(self, scopes: list[str]) -> dict[str, Any]:
        return {"access_token": "tok"}

    def remove_tokens_for_client(self) -> None:
        pass


def _http(base: str) -> HttpClient:
    policy = RetryPolicy(max_attempts=3, backoff_base=0, backoff_max=0, max_retry_after=1, budget_seconds=100)
    return HttpClient(system="D365" if base == BASE else "blob", base_url=base, timeout=30, ca_bundle=None,
                      policy=policy, budget=RetryBudget(100), sleep=lambda _: None)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def dmf(clock: Clock) -> DmfClient:
    cfg = D365Config(base_url=BASE, tenant_id="t", client_id="c", legal_entity="usmf")
    tokens = TokenProvider(cfg, "secret", requests.Session(), app_factory=lambda **_: FakeApp())
    return DmfClient(ODataClient(_http(BASE), tokens), _http, sleep=clock.sleep, clock=lambda: clock.now)


def _value(value: Any) -> dict[str, Any]:
    return {"@odata.context": f"{BASE}/data/$metadata#Edm.String", "value": value}


@responses.activate
def test_write_url_parses_the_json_string_and_keeps_the_sas_out_of_str_and_repr(dmf: DmfClient) -> None:
    responses.post(ACTIONS + "GetAzureWriteUrl",
                   json=_value(json.dumps({"BlobId": "{B1}", "BlobUrl": BLOB})))
    target = dmf.write_url("U2D-1.zip")
    assert json.loads(responses.calls[0].request.body) == {"uniqueFileName": "U2D-1.zip"}
    assert target.blob_id == "{B1}" and target.url.reveal() == BLOB
    assert "TOPSECRET" not in str(target.url) and "TOPSECRET" not in repr(target) and "sig" not in str(target)


@responses.activate
def test_upload_puts_a_block_blob_without_the_d365_token(dmf: DmfClient, tmp_path: Path) -> None:
    package = tmp_path / "p.zip"
    package.write_bytes(b"PK-zip-bytes")
    responses.put(BLOB, status=201)
    dmf.upload(dmf_target(), package)
    request = responses.calls[0].request
    assert request.headers["x-ms-blob-type"] == "BlockBlob" and "Authorization" not in request.headers
    assert request.headers["Content-Length"] == str(len(b"PK-zip-bytes"))  # streamed from the file, sized


def dmf_target() -> Any:
    from ukg2d365.d365.dmf import BlobTarget

    return BlobTarget("{B1}", SasUrl(BLOB))


@responses.activate
def test_a_refused_upload_names_the_blob_without_its_signature(dmf: DmfClient, tmp_path: Path) -> None:
    package = tmp_path / "p.zip"
    package.write_bytes(b"x")
    responses.put(BLOB, status=403, body=f"AuthenticationFailed for {BLOB}")
    with pytest.raises(RemoteError) as caught:
        dmf.upload(dmf_target(), package)
    message = str(caught.value)
    assert "TOPSECRET" not in message and "contosoblob.blob.core.windows.net/dmf/U2D-1.zip" in message


@responses.activate
def test_import_sends_the_documented_body_and_scrubs_the_url_from_a_refusal(dmf: DmfClient) -> None:
    responses.post(ACTIONS + "ImportFromPackage", json=_value("EXEC-1"))
    assert dmf.import_package(SasUrl(BLOB), definition_group="UKG GJ", execution_id="EXEC-1",
                              legal_entity="usmf") == "EXEC-1"
    assert json.loads(responses.calls[0].request.body) == {
        "packageUrl": BLOB, "definitionGroupId": "UKG GJ", "executionId": "EXEC-1", "execute": True,
        "overwrite": True, "legalEntityId": "usmf"}
    responses.post(ACTIONS + "ImportFromPackage", status=400,
                   json={"error": {"code": "", "message": f"Package {BLOB} could not be read"}})
    with pytest.raises(RemoteError) as caught:
        dmf.import_package(SasUrl(BLOB), definition_group="UKG GJ", execution_id="EXEC-2", legal_entity="usmf")
    assert "TOPSECRET" not in str(caught.value) and "could not be read" in str(caught.value)


@responses.activate
def test_import_whose_answer_is_lost_is_ambiguous_and_not_resent(dmf: DmfClient) -> None:
    responses.post(ACTIONS + "ImportFromPackage", body=requests.exceptions.ReadTimeout(f"read timeout {BLOB}"))
    with pytest.raises(AmbiguousWriteError) as caught:
        dmf.import_package(SasUrl(BLOB), definition_group="G", execution_id="E", legal_entity="usmf")
    assert len(responses.calls) == 1 and "TOPSECRET" not in str(caught.value)


@responses.activate
def test_wait_polls_with_growing_bounded_waits_until_a_terminal_status(dmf: DmfClient, clock: Clock) -> None:
    for status in ["NotRun", "Executing", "Executing", "Executing", "Executing", "PartiallySucceeded"]:
        responses.post(ACTIONS + "GetExecutionSummaryStatus", json=_value(status))
    seen: list[str] = []
    assert dmf.wait("E", first=2, cap=4, timeout=100, unknown_for=30, on_poll=seen.append) == "PartiallySucceeded"
    assert clock.sleeps == [2, 3, 4, 4, 4] and seen[-1] == "PartiallySucceeded"


@responses.activate
def test_a_status_poll_is_a_read_retried_after_a_5xx(dmf: DmfClient, clock: Clock) -> None:
    responses.post(ACTIONS + "GetExecutionSummaryStatus", status=500)
    responses.post(ACTIONS + "GetExecutionSummaryStatus", json=_value("Succeeded"))
    assert dmf.status("E") == "Succeeded"


@responses.activate
def test_wait_gives_up_after_the_timeout_saying_a_rerun_picks_it_up(dmf: DmfClient, clock: Clock) -> None:
    responses.post(ACTIONS + "GetExecutionSummaryStatus", json=_value("Executing"))
    with pytest.raises(DmfStillRunning, match="still Executing") as caught:
        dmf.wait("E", first=10, cap=10, timeout=35, unknown_for=30)
    assert "run the same command again" in (caught.value.hint or "") and clock.now <= 35


@responses.activate
def test_an_execution_d365_never_heard_of_ends_the_wait_as_unknown(dmf: DmfClient, clock: Clock) -> None:
    responses.post(ACTIONS + "GetExecutionSummaryStatus", status=400,
                   json={"error": {"code": "", "message": "Execution details for E were not found"}})
    assert dmf.wait("E", first=5, cap=5, timeout=600, unknown_for=12) == "Unknown"
    assert clock.now >= 12


@responses.activate
def test_report_names_refused_lines_from_the_staging_error_file(dmf: DmfClient) -> None:
    error_url = "https://contosoblob.blob.core.windows.net/dmf/err.csv?sig=ERRSIG"
    responses.post(ACTIONS + "GetExecutionErrors", json=_value(json.dumps(["1 record(s) failed"])))
    responses.post(ACTIONS + "GetImportStagingErrorFileUrl", json=_value(error_url))
    responses.get(error_url, body=("LINENUMBER,ACCOUNTDISPLAYVALUE,ERROR\r\n"
                                   "17,999999-,Main account 999999 does not exist\r\n").encode("utf-16"))
    report = dmf.report("E", "PartiallySucceeded", "General journal")
    assert report.messages == ["1 record(s) failed"] and report.refused_rows == 1
    assert report.line_errors == {17: "Main account 999999 does not exist"}
    assert json.loads(responses.calls[1].request.body) == {"executionId": "E", "entityName": "General journal"}


def test_error_file_in_utf8_without_a_line_number_counts_rows() -> None:
    assert parse_error_file(b"ACCOUNT,Error message\r\na,bad\r\nb,bad\r\n") == (2, {})


def test_error_file_line_numbers_as_decimals_are_read_and_odd_ones_counted_but_not_named() -> None:
    raw = (b"LINENUMBER,Error message\r\n12.0000,bad account\r\ninf,odd\r\nNaN,odd\r\n2.5,odd\r\n0,odd\r\n"
           b"abc,odd\r\n,odd\r\n")
    assert parse_error_file(raw) == (7, {12: "bad account"})
