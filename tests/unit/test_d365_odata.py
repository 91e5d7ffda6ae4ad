"""ODataClient and URL literals: paging, keys, 401 refresh, errors, $batch."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import requests
import responses

from ukg2d365.config import D365Config
from ukg2d365.d365.auth import TokenProvider
from ukg2d365.d365.batch import BatchOperation
from ukg2d365.d365.odata import (
    ODataClient,
    entity_path,
    enum_literal,
    filter_eq,
    key_predicate,
    odata_literal,
)
from ukg2d365.errors import AuthError, ProtocolError, RemoteError, RemoteUnavailable
from ukg2d365.http import HttpClient, RetryBudget, RetryPolicy

BASE = "https://contoso.operations.dynamics.com"
DATA = f"{BASE}/data"


class FakeApp:
    def __init__(self) -> None:
        self.issued = 0
        self.removed = 0

    def acquire_token_for_client(self, scopes: list[str]) -> dict[str, Any]:
        # A new token only after the cache was dropped, like msal.
        return {"access_token": f"token-{self.removed}"}

    def remove_tokens_for_client(self) -> None:
        self.removed += 1


@pytest.fixture
def app() -> FakeApp:
    return FakeApp()


@pytest.fixture
def client(app: FakeApp) -> ODataClient:
    cfg = D365Config(base_url=BASE, tenant_id="t", client_id="c", legal_entity="usmf")
    tokens = TokenProvider(cfg, "secret", requests.Session(), app_factory=lambda **_: app)
    policy = RetryPolicy(max_attempts=3, backoff_base=1, backoff_max=4, max_retry_after=60, budget_seconds=100)
    http = HttpClient(
        system="D365",
        base_url=BASE,
        timeout=30,
        ca_bundle=None,
        policy=policy,
        budget=RetryBudget(100),
        sleep=lambda _: None,
    )
    return ODataClient(http, tokens)


def page(values: list[dict[str, Any]], next_link: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"@odata.context": f"{DATA}/$metadata#X", "value": values}
    if next_link:
        body["@odata.nextLink"] = next_link
    return body


# ---------------------------------------------------------------- literals and keys


def test_odata_literal_escapes_obrien() -> None:
    assert odata_literal("O'Brien") == "'O''Brien'"


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        (True, "true"),
        (False, "false"),
        (None, "null"),
        (12, "12"),
        (Decimal("1234.10"), "1234.10"),
        (Decimal("1E+2"), "100"),
        ("", "''"),
        (date(2026, 1, 15), "2026-01-15T00:00:00Z"),
        (datetime(2026, 1, 15, 8, 30, tzinfo=timezone(timedelta(hours=-5))), "2026-01-15T13:30:00Z"),
        (enum_literal("NoYes", "Yes"), "Microsoft.Dynamics.DataEntities.NoYes'Yes'"),
    ],
)
def test_odata_literal_formats(value: Any, literal: str) -> None:
    assert odata_literal(value) == literal


@pytest.mark.parametrize("value", [1.5, Decimal("NaN"), datetime(2026, 1, 1), object()])
def test_odata_literal_refuses_floats_naive_datetimes_and_unknown_types(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        odata_literal(value)


def test_key_predicate_quotes_strings_and_leaves_decimals_bare() -> None:
    key = {"dataAreaId": "usmf", "JournalBatchNumber": "00012", "LineNumber": Decimal("1")}
    assert key_predicate(key) == "(dataAreaId='usmf',JournalBatchNumber='00012',LineNumber=1)"


def test_entity_path_url_encodes_key_values_but_keeps_the_predicate_readable() -> None:
    path = entity_path("LedgerJournalHeaders", {"dataAreaId": "usmf", "JournalBatchNumber": "O'B #1/2&3"})
    assert path == "LedgerJournalHeaders(dataAreaId='usmf',JournalBatchNumber='O''B%20%231%2F2%263')"


@pytest.mark.parametrize("name", ["Ledger/../x", "Lines?x=1", "", "A B"])
def test_entity_path_refuses_names_that_are_not_entity_sets(name: str) -> None:
    with pytest.raises(ValueError):
        entity_path(name)


def test_filter_eq_builds_an_equality() -> None:
    assert filter_eq("Name", "O'Brien") == "Name eq 'O''Brien'"
    with pytest.raises(ValueError):
        filter_eq("Name eq 'x' or 1", "y")


# ---------------------------------------------------------------- reads


@responses.activate
def test_get_all_follows_next_links_rewritten_onto_the_configured_host(client: ODataClient) -> None:
    responses.get(
        f"{DATA}/MainAccounts",
        json=page(
            [{"MainAccountId": "1"}],
            "http://contoso.operations.dynamics.com:8080/data/MainAccounts?cross-company=true&$skip=1",
        ),
    )
    responses.get(f"{DATA}/MainAccounts", json=page([{"MainAccountId": "2"}]))
    rows = list(
        client.get_all(
            "MainAccounts",
            filter="ChartOfAccounts eq 'Shared'",
            select=["MainAccountId", "Name"],
            cross_company=True,
            top=10,
        )
    )
    assert [r["MainAccountId"] for r in rows] == ["1", "2"]
    first, second = (c.request.url for c in responses.calls)
    assert first == (
        f"{DATA}/MainAccounts?cross-company=true&$filter=ChartOfAccounts%20eq%20'Shared'"
        "&$select=MainAccountId,Name&$top=10"
    )
    assert second == f"{DATA}/MainAccounts?cross-company=true&$skip=1"
    assert all(c.request.headers["Authorization"] == "Bearer token-0" for c in responses.calls)


@responses.activate
def test_next_link_to_a_foreign_host_is_refused_and_no_credentials_are_sent_there(client: ODataClient) -> None:
    responses.get(
        f"{DATA}/MainAccounts",
        json=page([{"MainAccountId": "1"}], "https://evil.example.com/data/MainAccounts?$skip=1"),
    )
    evil = responses.get("https://evil.example.com/data/MainAccounts", json=page([]))
    rows = client.get_all("MainAccounts")
    assert next(rows)["MainAccountId"] == "1"
    with pytest.raises(ProtocolError, match="evil.example.com"):
        next(rows)
    assert evil.call_count == 0
    assert len(responses.calls) == 1


@responses.activate
def test_get_all_stops_at_top_even_if_the_server_pages_on(client: ODataClient) -> None:
    responses.get(f"{DATA}/X", json=page([{"n": 1}, {"n": 2}], f"{DATA}/X?$skip=2"))
    assert [r["n"] for r in client.get_all("X", top=1)] == [1]
    assert len(responses.calls) == 1


@responses.activate
def test_get_all_refuses_a_page_without_value(client: ODataClient) -> None:
    responses.get(f"{DATA}/X", json={"error": "nope"})
    with pytest.raises(ProtocolError):
        list(client.get_all("X"))


@responses.activate
def test_get_all_refuses_a_next_link_loop(client: ODataClient) -> None:
    responses.get(f"{DATA}/X", json=page([{"n": 1}], f"{DATA}/X?$skip=1"))
    with pytest.raises(ProtocolError, match="repeats"):
        list(client.get_all("X"))


@responses.activate
def test_get_by_key_returns_the_entity_with_decimals_and_none_on_404(client: ODataClient) -> None:
    key = {"dataAreaId": "usmf", "JournalBatchNumber": "00012"}
    url = f"{DATA}/LedgerJournalHeaders(dataAreaId='usmf',JournalBatchNumber='00012')"
    responses.get(url, json={"JournalBatchNumber": "00012", "JournalTotalDebit": 10.50})
    responses.get(url, status=404, json={"error": {"message": "not found"}})
    entity = client.get("LedgerJournalHeaders", key)
    assert entity is not None and entity["JournalTotalDebit"] == Decimal("10.50")
    assert client.get("LedgerJournalHeaders", key) is None
    assert responses.calls[0].request.url.endswith("?cross-company=true")


# ---------------------------------------------------------------- writes


@responses.activate
def test_create_posts_exact_decimals_and_returns_the_created_entity(client: ODataClient) -> None:
    responses.post(f"{DATA}/LedgerJournalHeaders", status=201, json={"JournalBatchNumber": "USMF-000042"})
    created = client.create(
        "LedgerJournalHeaders", {"dataAreaId": "usmf", "JournalName": "GenJrn", "X": Decimal("1234.10")}
    )
    assert created == {"JournalBatchNumber": "USMF-000042"}
    assert b'"X":1234.10' in responses.calls[0].request.body
    assert responses.calls[0].request.headers["OData-Version"] == "4.0"


@responses.activate
def test_update_patches_and_delete_deletes_by_key(client: ODataClient) -> None:
    url = f"{DATA}/LedgerJournalHeaders(dataAreaId='usmf',JournalBatchNumber='00012')"
    responses.patch(url, status=204)
    responses.delete(url, status=204)
    key = {"dataAreaId": "usmf", "JournalBatchNumber": "00012"}
    client.update("LedgerJournalHeaders", key, {"Description": "Payroll BW 2026-01-15"})
    client.delete("LedgerJournalHeaders", key)
    assert [c.request.method for c in responses.calls] == ["PATCH", "DELETE"]
    assert responses.calls[0].request.body == b'{"Description":"Payroll BW 2026-01-15"}'


@responses.activate
def test_write_error_surfaces_the_innererror_infolog_line(client: ODataClient) -> None:
    responses.post(
        f"{DATA}/LedgerJournalLines",
        status=500,
        json={
            "error": {
                "code": "",
                "message": "An error has occurred.",
                "innererror": {
                    "message": "Write failed for table row of type 'LedgerJournalLineEntity'. Infolog: Error: "
                    "Account 999999 does not exist.\r\nStack line",
                    "type": "AxODataWriteException",
                },
            }
        },
    )
    with pytest.raises(RemoteError) as info:
        client.create("LedgerJournalLines", {"a": 1})
    message = str(info.value)
    # every Infolog line is kept, on one line; the generic outer message is left out
    assert message.endswith("Infolog: Error: Account 999999 does not exist. | Stack line")
    assert "An error has occurred." not in message and "\n" not in message
    assert info.value.status == 500
    assert len(responses.calls) == 1  # a write's 500 is not retried


@responses.activate
def test_html_error_body_is_a_protocol_error(client: ODataClient) -> None:
    responses.get(f"{DATA}/Y", status=400, body="<html>Bad</html>", content_type="text/html")
    with pytest.raises(ProtocolError):
        list(client.get_all("Y"))


# ---------------------------------------------------------------- auth


@responses.activate
def test_401_drops_the_cached_token_and_retries_once_with_a_new_one(client: ODataClient, app: FakeApp) -> None:
    responses.get(f"{DATA}/X", status=401)
    responses.get(f"{DATA}/X", json=page([{"n": 1}]))
    assert list(client.get_all("X")) == [{"n": 1}]
    assert app.removed == 1
    assert [c.request.headers["Authorization"] for c in responses.calls] == ["Bearer token-0", "Bearer token-1"]


@responses.activate
def test_second_401_is_an_auth_error_pointing_at_the_app_registration(client: ODataClient, app: FakeApp) -> None:
    responses.get(f"{DATA}/X", status=401)
    with pytest.raises(AuthError, match="Microsoft Entra ID applications") as info:
        list(client.get_all("X"))
    assert len(responses.calls) == 2
    assert app.removed == 1
    assert info.value.exit_status == 3


@responses.activate
def test_403_is_an_auth_error_naming_the_entity_set(client: ODataClient) -> None:
    responses.post(f"{DATA}/FinancialDimensionValues", status=403, json={"error": {"message": "Forbidden"}})
    with pytest.raises(AuthError, match="FinancialDimensionValues"):
        client.create("FinancialDimensionValues", {})


# ---------------------------------------------------------------- $batch


BATCH_RESPONSE = (
    "--batchresponse_9\r\n"
    "Content-Type: multipart/mixed; boundary=changesetresponse_1\r\n\r\n"
    "--changesetresponse_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    "Content-ID: 1\r\n\r\nHTTP/1.1 201 Created\r\nContent-Type: application/json; odata.metadata=minimal\r\n\r\n"
    '{"LineNumber":1,"DebitAmount":1234.10}\r\n'
    "--changesetresponse_1--\r\n"
    "--batchresponse_9\r\n"
    "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json; odata.metadata=minimal\r\n\r\n"
    '{"error":{"code":"","message":"An error has occurred.","innererror":{"message":"Voucher GJ-1 is not '
    'balanced.","type":"AxODataWriteException"}}}\r\n'
    "--batchresponse_9--\r\n"
)


def _line(amount: str) -> BatchOperation:
    return BatchOperation("POST", "LedgerJournalLines", {"DebitAmount": Decimal(amount)})


@responses.activate
def test_batch_reports_an_inner_failure_with_its_innererror_message(client: ODataClient) -> None:
    responses.post(
        f"{DATA}/$batch", status=200, body=BATCH_RESPONSE, content_type="multipart/mixed; boundary=batchresponse_9"
    )
    results = client.batch([[_line("1234.10")], [_line("5.00")]])
    assert results[0].ok and results[0].responses[0].body["DebitAmount"] == Decimal("1234.10")
    assert not results[1].ok
    assert results[1].error_message == "Voucher GJ-1 is not balanced."
    request = responses.calls[0].request
    assert request.headers["Content-Type"].startswith("multipart/mixed; boundary=batch_")
    assert b'"DebitAmount":1234.10}' in request.body
    assert f"POST {DATA}/LedgerJournalLines HTTP/1.1".encode() in request.body


@responses.activate
def test_batch_answer_stopped_at_a_failure_resends_only_the_unprocessed_rest(client: ODataClient) -> None:
    # BATCH_RESPONSE answers changeset 1 (created) and 2 (refused) and stops: 3 was not processed.
    responses.post(
        f"{DATA}/$batch", status=200, body=BATCH_RESPONSE, content_type="multipart/mixed; boundary=batchresponse_9"
    )
    rest = (
        "--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n"
        "--c\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\r\n"
        "--c--\r\n--b--\r\n"
    )
    responses.post(f"{DATA}/$batch", status=200, body=rest, content_type="multipart/mixed; boundary=b")
    results = client.batch([[_line("1")], [_line("2")], [_line("3")]])
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error_message == "Voucher GJ-1 is not balanced."
    first, second = (call.request for call in responses.calls)
    assert first.headers["Prefer"] == "odata.continue-on-error"
    assert first.body.count(b"POST ") == 3
    assert second.body.count(b"POST ") == 1 and b'"DebitAmount":3}' in second.body
    assert "Prefer" not in second.headers  # one changeset has nothing after it to go on to


@responses.activate
def test_batch_answer_cut_short_after_a_success_is_a_protocol_error(client: ODataClient) -> None:
    ok_only = BATCH_RESPONSE.split("--batchresponse_9\r\nContent-Type: application/http")[0] + "--batchresponse_9--\r\n"
    responses.post(f"{DATA}/$batch", status=200, body=ok_only, content_type="multipart/mixed; boundary=batchresponse_9")
    with pytest.raises(ProtocolError, match="cut short"):
        client.batch([[_line("1")], [_line("2")]])


@responses.activate
def test_relative_next_link_resolves_against_the_service_root(client: ODataClient) -> None:
    responses.get(f"{DATA}/MainAccounts", json=page([{"id": 1}], "MainAccounts?$skiptoken=2"),
                  match=[responses.matchers.query_param_matcher({})])
    responses.get(f"{DATA}/MainAccounts", json=page([{"id": 2}], "/data/MainAccounts?$skiptoken=3"),
                  match=[responses.matchers.query_param_matcher({"$skiptoken": "2"})])
    responses.get(f"{DATA}/MainAccounts", json=page([{"id": 3}]),
                  match=[responses.matchers.query_param_matcher({"$skiptoken": "3"})])
    assert [e["id"] for e in client.get_all("MainAccounts")] == [1, 2, 3]
    assert [c.request.url for c in responses.calls][1:] == [f"{DATA}/MainAccounts?$skiptoken=2",
                                                          f"{DATA}/MainAccounts?$skiptoken=3"]


@responses.activate
def test_ping_reads_one_journal_header(client: ODataClient) -> None:
    responses.get(f"{DATA}/LedgerJournalHeaders", json=page([{"JournalBatchNumber": "1"}]))
    result = client.ping()
    assert result.host == "contoso.operations.dynamics.com"
    assert result.latency_ms >= 0
    assert responses.calls[0].request.url == f"{DATA}/LedgerJournalHeaders?$top=1"


class RecordingGate:
    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.events: list[str] = []

    def acquire(self) -> None:
        self.events.append("acquire")
        if self.refuse:
            raise RuntimeError("turned away")

    def release(self, *, ok: bool = True) -> None:
        self.events.append(f"release ok={ok}")


@responses.activate
def test_batch_holds_the_gate_only_around_the_exchange(client: ODataClient) -> None:
    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        gate.events.append("on the wire")
        return 200, {"Content-Type": "multipart/mixed; boundary=batchresponse_9"}, BATCH_RESPONSE

    gate = RecordingGate()
    responses.add_callback(responses.POST, f"{DATA}/$batch", callback=answer)
    results = client.batch([[_line("1234.10")], [_line("5.00")]], gate=gate)
    assert gate.events == ["acquire", "on the wire", "release ok=True"]
    assert results[0].ok and not results[1].ok  # an inner failure is not a throttle of the exchange


@responses.activate
def test_batch_turned_away_by_its_gate_sends_nothing(client: ODataClient) -> None:
    gate = RecordingGate(refuse=True)
    with pytest.raises(RuntimeError, match="turned away"):
        client.batch([[_line("1.00")]], gate=gate)
    assert len(responses.calls) == 0 and gate.events == ["acquire"]


@responses.activate
def test_batch_releases_its_gate_as_throttled_when_d365_keeps_answering_429(client: ODataClient) -> None:
    responses.post(f"{DATA}/$batch", status=429, headers={"Retry-After": "0"}, json={"error": {"message": "slow"}})
    gate = RecordingGate()
    with pytest.raises(RemoteUnavailable):
        client.batch([[_line("1.00")]], gate=gate)
    assert gate.events == ["acquire", "release ok=False"]
