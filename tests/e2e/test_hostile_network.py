"""Hostile and broken answers from the network: refused with a one-line error, never followed with
credentials, never posted twice.

Client-level tests mock HTTP with ``responses``; end-to-end tests inject faults into the sandbox.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import responses

from tests.world import World, d365_totals, ukg_totals
from ukg2d365.config import D365Config
from ukg2d365.credentials import UkgCredentials
from ukg2d365.d365.auth import TokenProvider
from ukg2d365.d365.batch import BatchOperation
from ukg2d365.d365.odata import ODataClient
from ukg2d365.errors import AuthError, ProtocolError, RemoteError
from ukg2d365.http import HttpClient, RetryBudget, RetryPolicy
from ukg2d365.sandbox.faults import FaultRule
from ukg2d365.ukg.client import UkgClient

UKG = "https://service4.ultipro.test"
GL_PATH = "/payroll/v2/general-ledger"
D365 = "https://contoso.operations.dynamics.test"
DATA = f"{D365}/data"
LOGIN = "https://login.example.invalid/adfs/ls/"
EVIL = "https://evil.example.test"
PASSWORD = "Pa55w0rd-very-secret"
CUSTOMER_KEY = "B7X2Q"
USER_KEY = "USRKEY123456"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
SECRET_HEADERS = ("Authorization", "US-Customer-Api-Key", "US-User-Api-Key")


def _http(system: str, base: str) -> HttpClient:
    policy = RetryPolicy(max_attempts=2, backoff_base=0, backoff_max=0, max_retry_after=0, budget_seconds=10)
    return HttpClient(system=system, base_url=base, timeout=5, ca_bundle=None, policy=policy,
                      budget=RetryBudget(10), sleep=lambda _: None)


@pytest.fixture
def ukg() -> UkgClient:
    return UkgClient(_http("UKG", UKG), UkgCredentials("svc", PASSWORD, CUSTOMER_KEY, USER_KEY), page_size=100,
                     gl_path=GL_PATH)


class _App:
    def acquire_token_for_client(self, scopes: list[str]) -> dict[str, Any]:
        return {"access_token": TOKEN}

    def remove_tokens_for_client(self) -> None:
        pass


@pytest.fixture
def d365() -> ODataClient:
    cfg = D365Config(base_url=D365, tenant_id="t", client_id="c", legal_entity="usmf")
    tokens = TokenProvider(cfg, "secret", requests.Session(), app_factory=lambda **_: _App())
    return ODataClient(_http("D365", D365), tokens)


def assert_credentials_stayed_home(home: str) -> None:
    """Every request that left carried its credentials to the configured host and nowhere else."""
    host = urlsplit(home).hostname
    assert responses.calls, "nothing was sent at all"
    for call in responses.calls:
        sent = [h for h in SECRET_HEADERS if h in call.request.headers]
        assert urlsplit(call.request.url).hostname == host, f"{call.request.url} was sent {sent}"
        assert sent, "the configured host got its credentials (the check above is not vacuous)"


def gl_items() -> list[dict[str, Any]]:
    return [{"runId": "R1", "systemId": 1, "generalLedgerAccount": "5000", "debitAmt": 1, "creditAmt": 0}]


# ---------------------------------------------------------------- UKG: bodies that are not JSON


MAINTENANCE = "<!DOCTYPE html><html><body><h1>Scheduled maintenance</h1></body></html>"


@responses.activate
def test_ukg_html_maintenance_page_with_200_is_refused_naming_system_and_path(ukg: UkgClient) -> None:
    responses.get(UKG + GL_PATH, body=MAINTENANCE, status=200, content_type="text/html; charset=utf-8")
    with pytest.raises(ProtocolError) as caught:
        list(ukg.gl_lines())
    assert str(caught.value) == (
        "UKG service4.ultipro.test/payroll/v2/general-ledger answered HTML/text instead of JSON "
        "(text/html, HTTP 200) (a maintenance page or proxy?)")


@pytest.mark.parametrize("body,reason", [
    ('[{"runId": "R1", "debitAmt": 12', "truncated JSON"),
    ("", "truncated JSON"),
    ('[{"runId": "R1"}] trailing', "invalid JSON"),
    ("<html>oops</html>", "invalid JSON"),
])
@responses.activate
def test_ukg_truncated_or_invalid_json_is_refused(ukg: UkgClient, body: str, reason: str) -> None:
    responses.get(UKG + GL_PATH, body=body, status=200, content_type="application/json")
    with pytest.raises(ProtocolError, match=f"UKG service4.ultipro.test{GL_PATH} answered {reason} "):
        list(ukg.gl_lines())


@responses.activate
def test_ukg_body_that_is_not_utf8_is_refused(ukg: UkgClient) -> None:
    responses.get(UKG + GL_PATH, body=b'[{"runId": "R\xff"}]', status=200, content_type="application/json")
    with pytest.raises(ProtocolError, match="invalid JSON"):
        list(ukg.gl_lines())


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", ""])
@responses.activate
def test_ukg_json_with_a_wrong_content_type_is_refused(ukg: UkgClient, content_type: str) -> None:
    responses.get(UKG + GL_PATH, json=gl_items(), status=200, content_type=content_type or None)
    with pytest.raises(ProtocolError, match="instead of JSON"):
        list(ukg.gl_lines())


@responses.activate
def test_ukg_json_with_bom_and_charset_is_accepted_with_exact_amounts(ukg: UkgClient) -> None:
    body = '\ufeff[{"runId": "R1", "debitAmt": 1234.10}]'.encode()
    responses.get(UKG + GL_PATH, body=body, status=200, content_type="application/json; charset=utf-8")
    [item] = list(ukg.gl_lines())
    assert item["debitAmt"] == Decimal("1234.10") and type(item["debitAmt"]) is Decimal


@pytest.mark.parametrize("body,what", [
    ('{"message": "An error has occurred."}', "a JSON object where a JSON array was expected"),
    ("[1, 2]", "array holding int items"),
    ("[null]", "array holding NoneType items"),
])
@responses.activate
def test_ukg_json_of_the_wrong_shape_is_refused(ukg: UkgClient, body: str, what: str) -> None:
    responses.get(UKG + GL_PATH, body=body, status=200, content_type="application/json")
    with pytest.raises(ProtocolError, match=what):
        list(ukg.gl_lines())


@responses.activate
def test_ukg_nan_is_kept_for_the_record_check_not_refused_for_the_page(ukg: UkgClient) -> None:
    responses.get(UKG + GL_PATH, body='[{"runId": "R1", "debitAmt": NaN, "creditAmt": -Infinity}]',
                  status=200, content_type="application/json")
    [item] = list(ukg.gl_lines())
    assert item["debitAmt"].is_nan() and item["creditAmt"].is_infinite()


# ---------------------------------------------------------------- redirects: never followed with credentials


@pytest.mark.parametrize("location,named", [
    (LOGIN + "?wa=wsignin1.0&wreply=%2Fpayroll", "login.example.invalid"),
    ("https://user:pw@login.example.invalid/x", "login.example.invalid"),
    ("/adfs/ls/?wa=wsignin1.0", "service4.ultipro.test"),  # relative: the same host, named, not "?"
])
@responses.activate
def test_ukg_302_to_a_login_page_is_refused_and_not_followed(ukg: UkgClient, location: str, named: str) -> None:
    responses.get(UKG + GL_PATH, status=302, headers={"Location": location})
    login = responses.get(LOGIN, body="<html>sign in</html>", content_type="text/html")
    with pytest.raises(ProtocolError) as caught:
        list(ukg.gl_lines())
    message = str(caught.value)
    assert message.startswith(f"UKG service4.ultipro.test{GL_PATH} redirected to {named} (a login page?)")
    assert "pw" not in message and "wreply" not in message
    assert login.call_count == 0
    assert len(responses.calls) == 1
    assert_credentials_stayed_home(UKG)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@responses.activate
def test_d365_redirect_on_a_write_is_refused_and_not_followed(d365: ODataClient, status: int) -> None:
    responses.post(f"{DATA}/LedgerJournalHeaders", status=status, headers={"Location": f"{EVIL}/data/X"})
    evil = responses.post(f"{EVIL}/data/X", json={})
    with pytest.raises(ProtocolError, match="redirected to evil.example.test"):
        d365.create("LedgerJournalHeaders", {"Description": "x"})
    assert evil.call_count == 0
    assert_credentials_stayed_home(D365)


@pytest.mark.parametrize("next_link", [
    f"{EVIL}/data/MainAccounts?$skip=1",
    "//evil.example.test/data/MainAccounts?$skip=1",  # scheme-relative
    "https://contoso.operations.dynamics.test@evil.example.test/data/MainAccounts?$skip=1",  # userinfo trick
    "https://contoso.operations.dynamics.test.evil.example.test/data/MainAccounts?$skip=1",  # suffix trick
])
@responses.activate
def test_d365_next_link_off_the_configured_host_is_refused_before_any_credential_leaves(
    d365: ODataClient, next_link: str
) -> None:
    responses.get(f"{DATA}/MainAccounts", json={"value": [{"MainAccountId": "601500"}], "@odata.nextLink": next_link})
    rows = d365.get_all("MainAccounts")
    assert next(rows)["MainAccountId"] == "601500"
    with pytest.raises(ProtocolError, match=r"refusing to send credentials to \S*evil\.example\.test "):
        next(rows)
    assert len(responses.calls) == 1
    assert_credentials_stayed_home(D365)


@responses.activate
def test_d365_next_link_with_an_internal_scheme_or_port_is_rewritten_onto_the_configured_origin(
    d365: ODataClient,
) -> None:
    responses.get(f"{DATA}/MainAccounts", json={
        "value": [{"MainAccountId": "1"}],
        "@odata.nextLink": "http://contoso.operations.dynamics.test:8080/data/MainAccounts?$skip=1"})
    responses.get(f"{DATA}/MainAccounts?$skip=1", json={"value": [{"MainAccountId": "2"}]})
    assert [r["MainAccountId"] for r in d365.get_all("MainAccounts")] == ["1", "2"]
    assert responses.calls[1].request.url == f"{DATA}/MainAccounts?$skip=1"
    assert_credentials_stayed_home(D365)


@pytest.mark.parametrize("page,why", [
    ({"value": [1, "x"]}, "holds int items, not entities"),
    ({"value": [{"MainAccountId": "1"}], "@odata.nextLink": {"href": "x"}}, "@odata.nextLink is not a URL"),
    ({"values": []}, "the answer has no 'value' list"),
    ([], "the answer has no 'value' list"),
])
@responses.activate
def test_d365_page_of_the_wrong_shape_is_a_protocol_error(d365: ODataClient, page: Any, why: str) -> None:
    responses.get(f"{DATA}/MainAccounts", json=page)
    with pytest.raises(ProtocolError, match=why):
        list(d365.get_all("MainAccounts"))


# ---------------------------------------------------------------- D365: errors whose body is HTML


@responses.activate
def test_d365_html_with_200_on_a_read_is_refused(d365: ODataClient) -> None:
    responses.get(f"{DATA}/MainAccounts", body=MAINTENANCE, status=200, content_type="text/html")
    with pytest.raises(ProtocolError, match=r"D365 contoso.operations.dynamics.test/data/MainAccounts answered "
                                            r"HTML/text instead of JSON \(text/html, HTTP 200\)"):
        list(d365.get_all("MainAccounts"))


@pytest.mark.parametrize("status", [400, 404, 500])
@responses.activate
def test_d365_odata_error_whose_body_is_html_is_explained_without_the_html(d365: ODataClient, status: int) -> None:
    responses.post(f"{DATA}/LedgerJournalHeaders", body=MAINTENANCE, status=status, content_type="text/html")
    with pytest.raises(ProtocolError) as caught:
        d365.create("LedgerJournalHeaders", {"Description": "x"})
    assert str(caught.value) == (f"D365 POST LedgerJournalHeaders answered HTTP {status} with HTML/text instead "
                                 "of JSON (a maintenance page or proxy?)")
    assert caught.value.status == status


@responses.activate
def test_d365_403_with_an_html_body_is_still_an_auth_error(d365: ODataClient) -> None:
    responses.post(f"{DATA}/LedgerJournalHeaders", body=MAINTENANCE, status=403, content_type="text/html")
    with pytest.raises(AuthError) as caught:
        d365.create("LedgerJournalHeaders", {})
    assert str(caught.value).startswith("D365 denied POST LedgerJournalHeaders (HTTP 403) (")
    assert "<" not in str(caught.value)


@pytest.mark.parametrize("body", ['{"error": "text"}', '{"error": {"innererror": []}}', "{}", "[1]",
                                  '{"error": {"message": 5}}', '{"error": {"message": "x"'])
@responses.activate
def test_d365_odata_error_json_of_any_shape_becomes_a_one_line_remote_error(d365: ODataClient, body: str) -> None:
    responses.post(f"{DATA}/LedgerJournalHeaders", body=body, status=400, content_type="application/json")
    with pytest.raises(RemoteError) as caught:
        d365.create("LedgerJournalHeaders", {})
    message = str(caught.value)
    assert message.startswith("D365 POST LedgerJournalHeaders failed (HTTP 400): ")
    assert "\n" not in message


# ---------------------------------------------------------------- D365: malformed $batch answers


GOOD_CHANGESET = (
    "--b\r\nContent-Type: multipart/mixed; boundary=cs\r\n\r\n"
    "--cs\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\r\n"
    "--cs--\r\n"
)


@pytest.mark.parametrize("content_type,body,why", [
    ("text/html", MAINTENANCE, "no multipart boundary"),
    ("multipart/mixed; boundary=b", MAINTENANCE, "has no part with boundary b"),
    ("multipart/mixed; boundary=b", GOOD_CHANGESET, "truncated"),  # no closing --b--
    ("multipart/mixed; boundary=b", GOOD_CHANGESET[:60], "truncated"),
    ("multipart/mixed; boundary=b", "--b--\r\n", "has no parts"),
    ("multipart/mixed; boundary=b",
     "--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 400 Bad\r\nContent-Type: application/json\r\n\r\n"
     '{"error": {"message": "x"\r\n--b--\r\n', "truncated or invalid JSON"),
    ("multipart/mixed; boundary=b",
     "--b\r\nContent-Type: application/http\r\n\r\nnot a status line\r\n\r\n--b--\r\n", "no HTTP status line"),
    ("multipart/mixed; boundary=b", "--b\r\nContent-Type: text/html\r\n\r\n<html/>\r\n--b--\r\n",
     "unexpected Content-Type text/html"),
])
@responses.activate
def test_d365_malformed_batch_answer_is_a_protocol_error(
    d365: ODataClient, content_type: str, body: str, why: str
) -> None:
    responses.post(f"{DATA}/$batch", body=body, status=200, content_type=content_type)
    with pytest.raises(ProtocolError, match=why):
        d365.batch([[BatchOperation("POST", "LedgerJournalLines", {"DebitAmount": Decimal("1.00")})]])


@responses.activate
def test_d365_batch_answer_cut_after_a_success_is_a_protocol_error(d365: ODataClient) -> None:
    # A server that stops early stops at a *failed* changeset (DefaultODataBatchHandler without
    # continue-on-error); one whose last answered changeset succeeded was cut short in transit.
    responses.post(f"{DATA}/$batch", body=GOOD_CHANGESET + "--b--\r\n", status=200,
                   content_type="multipart/mixed; boundary=b")
    ops = [[BatchOperation("POST", "LedgerJournalLines", {"LineNumber": Decimal(n)})] for n in (1, 2)]
    with pytest.raises(ProtocolError, match=r"answered 1 of 2 changeset\(s\) and the last answered one succeeded"):
        d365.batch(ops)


# ---------------------------------------------------------------- end to end against the sandbox


@pytest.mark.e2e
def test_ukg_maintenance_page_stops_the_run_with_one_line_and_posts_nothing(world: World) -> None:
    world.sandbox.faults.add(FaultRule("ukg", "html", path_regex="general-ledger", count=None))
    result = world.cli("post-payroll", "--due", "--yes", expect=4)  # unavailable, like a 503
    assert "answered HTML/text instead of JSON (text/html, HTTP 200) (a maintenance page or proxy?)" in result.output
    assert "Traceback" not in result.output
    assert world.journals() == []


@pytest.mark.e2e
def test_ukg_302_to_a_login_page_stops_the_run_and_is_not_followed(world: World) -> None:
    world.sandbox.faults.add(FaultRule("ukg", "redirect", path_regex="general-ledger", count=None))
    before = world.sandbox.stats()
    result = world.cli("post-payroll", "--run-id", world.latest_run().run_id, "--yes", expect=4)
    assert "/payroll/v2/general-ledger redirected to login.example.invalid (a login page?)" in result.output
    assert "check the base URL for UKG" in result.output
    assert world.sandbox.stats()["ukg"] == before["ukg"] + 1  # one request, no retry, no follow
    assert world.journals() == []


@pytest.mark.e2e
@pytest.mark.parametrize("action,path", [
    ("html", r"\$batch$"),  # lines answered by a maintenance page: unreadable, so looked up, not resent
    ("redirect", r"\$batch$"),  # lines answered by a login redirect
    ("html", "LedgerJournalHeaders$"),  # header answered by a maintenance page
])
def test_d365_unreadable_answer_to_a_write_is_recovered_and_posts_exactly_once(
    world: World, action: str, path: str
) -> None:
    run = world.latest_run()
    world.sandbox.faults.add(FaultRule("d365", action, method="POST", path_regex=path, count=1))
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    [journal] = world.journals()
    assert d365_totals(journal) == ukg_totals(run)


@pytest.mark.e2e
def test_d365_maintenance_page_on_every_read_exits_without_writing(world: World) -> None:
    world.sandbox.faults.add(FaultRule("d365", "html", method="GET", count=None))
    result = world.cli("post-payroll", "--run-id", world.latest_run().run_id, "--yes", expect=4)
    assert "answered HTML/text instead of JSON" in result.output
    assert "Traceback" not in result.output
    assert world.journals() == []

