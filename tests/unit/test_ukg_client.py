"""UkgClient: auth headers on every page, paging rules, Decimal amounts, and errors that say what to check."""

from __future__ import annotations

import base64
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
import responses
from responses import matchers

from ukg2d365.credentials import UkgCredentials
from ukg2d365.errors import AuthError, ProtocolError, RemoteError, RemoteUnavailable
from ukg2d365.http import HttpClient, RetryBudget, RetryPolicy
from ukg2d365.ukg.client import (
    DEMOGRAPHIC_DETAILS_PATH,
    EMPLOYMENT_DETAILS_PATH,
    ORG_LEVELS_PATH,
    PAY_PERIODS_PATH,
    UkgClient,
)

BASE = "https://service4.ultipro.test"
GL_PATH = "/payroll/v2/general-ledger"
GL = BASE + GL_PATH
USERNAME = "svc-gl-reader"
PASSWORD = "Pa55w0rd-very-secret"
CUSTOMER_KEY = "B7X2Q"
USER_KEY = "USRKEY123456"
CREDS = UkgCredentials(USERNAME, PASSWORD, CUSTOMER_KEY, USER_KEY)
BASIC = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(
    creds: UkgCredentials = CREDS, *, page_size: int = 2, sleeps: Sleeps | None = None
) -> UkgClient:
    policy = RetryPolicy(
        max_attempts=4, backoff_base=1.0, backoff_max=8.0, max_retry_after=60.0, budget_seconds=300
    )
    http = HttpClient(
        system="UKG",
        base_url=BASE,
        timeout=30,
        ca_bundle=None,
        policy=policy,
        budget=RetryBudget(policy.budget_seconds),
        sleep=sleeps if sleeps is not None else Sleeps(),
        rng=lambda: 0.5,
    )
    return UkgClient(http, creds, page_size=page_size, gl_path=GL_PATH)


def page(n: int, *items: dict[str, Any], url: str = GL, per_page: int = 2, **extra: str) -> None:
    responses.get(
        url,
        json=list(items),
        match=[matchers.query_param_matcher({**extra, "page": str(n), "per_Page": str(per_page)})],
    )


def gl_line(i: int) -> dict[str, Any]:
    return {"runId": "R1", "systemId": i, "generalLedgerAccount": "6000", "debitAmt": 1, "creditAmt": 0}


# ---------------------------------------------------------------- auth headers


@responses.activate
def test_basic_auth_and_both_api_keys_on_every_page() -> None:
    page(1, gl_line(1), gl_line(2))
    page(2, gl_line(3), gl_line(4))
    page(3, gl_line(5))

    lines = list(make_client().gl_lines())

    assert [line["systemId"] for line in lines] == [1, 2, 3, 4, 5]
    assert len(responses.calls) == 3
    for call in responses.calls:
        headers = call.request.headers
        assert headers["Authorization"] == BASIC
        assert headers["US-Customer-Api-Key"] == CUSTOMER_KEY
        assert headers["US-User-Api-Key"] == USER_KEY
        assert headers["Accept"] == "application/json"


@responses.activate
def test_no_user_api_key_header_when_not_configured() -> None:
    page(1, gl_line(1), gl_line(2))
    page(2)
    client = make_client(UkgCredentials(USERNAME, PASSWORD, CUSTOMER_KEY, None))

    assert len(list(client.gl_lines())) == 2

    for call in responses.calls:
        assert "US-User-Api-Key" not in call.request.headers
        assert call.request.headers["US-Customer-Api-Key"] == CUSTOMER_KEY


# ---------------------------------------------------------------- paging


@responses.activate
def test_paging_stops_on_an_empty_page() -> None:
    page(1, gl_line(1), gl_line(2))
    page(2, gl_line(3), gl_line(4))
    page(3)
    assert len(list(make_client().gl_lines())) == 4
    assert len(responses.calls) == 3


@responses.activate
def test_paging_stops_on_a_short_page_without_asking_for_more() -> None:
    page(1, gl_line(1), gl_line(2))
    page(2, gl_line(3))
    assert len(list(make_client().gl_lines())) == 3
    assert len(responses.calls) == 2  # no request for page 3


@responses.activate
def test_paging_is_lazy() -> None:
    page(1, gl_line(1), gl_line(2))
    page(2, gl_line(3))
    lines = make_client().gl_lines()
    assert len(responses.calls) == 0
    next(lines)
    assert len(responses.calls) == 1


@responses.activate
def test_404_after_a_full_page_means_end_of_data() -> None:
    page(1, gl_line(1), gl_line(2))
    responses.get(GL, status=404, match=[matchers.query_param_matcher({"page": "2", "per_Page": "2"})])
    assert len(list(make_client().gl_lines())) == 2


@responses.activate
def test_a_server_that_ignores_page_is_refused_not_looped() -> None:
    responses.get(GL, json=[gl_line(1), gl_line(2)])  # same answer for every page
    with pytest.raises(ProtocolError, match="same page"):
        list(make_client().gl_lines())
    assert len(responses.calls) == 2


@responses.activate
def test_filters_are_sent_with_paging_parameters() -> None:
    page(1, gl_line(1), runId="R-77")
    responses.get(
        BASE + EMPLOYMENT_DETAILS_PATH,
        json=[{"employeeID": "E1"}],
        match=[
            matchers.query_param_matcher({"dateTimeChanged": ">03-01-2026", "page": "1", "per_Page": "2"})
        ],
    )
    page(1, {"payGroup": "BW"}, url=BASE + PAY_PERIODS_PATH, payGroup="BW")
    page(1, {"employeeId": "E1"}, url=BASE + DEMOGRAPHIC_DETAILS_PATH)

    client = make_client()
    assert len(list(client.gl_lines("R-77"))) == 1
    assert len(list(client.employment_details(changed_since=date(2026, 3, 1)))) == 1
    assert len(list(client.pay_periods("BW"))) == 1
    assert len(list(client.demographic_details())) == 1
    assert "dateTimeChanged=%3E03-01-2026" in str(responses.calls[1].request.url)


@responses.activate
def test_org_levels_is_one_unpaged_call() -> None:
    levels = [{"level": i, "code": f"C{i}"} for i in range(5)]  # more than page_size
    responses.get(BASE + ORG_LEVELS_PATH, json=levels, match=[matchers.query_param_matcher({})])
    assert make_client().org_levels() == levels
    assert len(responses.calls) == 1


# ---------------------------------------------------------------- decoding


@responses.activate
def test_amounts_are_decimal_and_sum_exactly() -> None:
    body = (
        '[{"systemId": 1, "debitAmt": 1234.1, "creditAmt": 0},'
        ' {"systemId": 2, "debitAmt": 0.1, "creditAmt": 0},'
        ' {"systemId": 3, "debitAmt": 0.2, "creditAmt": 0}]'
    )
    responses.get(GL, body=body, content_type="application/json; charset=utf-8")
    lines = list(make_client(page_size=10).gl_lines())

    assert lines[0]["debitAmt"] == Decimal("1234.1")
    assert all(isinstance(line["debitAmt"], Decimal) for line in lines)
    assert lines[1]["debitAmt"] + lines[2]["debitAmt"] == Decimal("0.3")


@responses.activate
def test_html_200_is_a_protocol_error() -> None:
    responses.get(GL, body="<html><body>Scheduled maintenance</body></html>", content_type="text/html")
    with pytest.raises(ProtocolError, match="HTML"):
        list(make_client().gl_lines())


@responses.activate
def test_json_that_is_not_an_array_is_a_protocol_error_naming_the_path() -> None:
    responses.get(GL, json={"message": "ok", "items": []})
    with pytest.raises(ProtocolError, match="/payroll/v2/general-ledger.*JSON array"):
        list(make_client().gl_lines())


@responses.activate
def test_nan_reaches_the_record_check_instead_of_failing_the_page() -> None:
    # The record that carries NaN is refused by name later (records.parse_gl_line); its neighbours survive.
    responses.get(GL, body='[{"debitAmt": NaN}, {"debitAmt": 1.5}]', content_type="application/json")
    items = list(make_client(page_size=10).gl_lines())
    assert items[0]["debitAmt"].is_nan() and items[1]["debitAmt"] == Decimal("1.5")


# ---------------------------------------------------------------- throttling


@responses.activate
def test_429_retry_after_is_honoured_through_http() -> None:
    responses.get(GL, status=429, headers={"Retry-After": "7"})
    page(1, gl_line(1))
    sleeps = Sleeps()
    assert len(list(make_client(sleeps=sleeps).gl_lines())) == 1
    assert sleeps == [7.0]
    # The retried request carries the auth headers too.
    assert responses.calls[1].request.headers["US-Customer-Api-Key"] == CUSTOMER_KEY


@responses.activate
def test_throttled_past_max_attempts_is_remote_unavailable() -> None:
    responses.get(GL, status=429, headers={"Retry-After": "1"})
    with pytest.raises(RemoteUnavailable):
        list(make_client().gl_lines())


# ---------------------------------------------------------------- auth errors and ping


def assert_no_secret(text: str) -> None:
    for secret in (PASSWORD, CUSTOMER_KEY, USER_KEY, BASIC.split()[1], USERNAME):
        assert secret not in text


@responses.activate
def test_401_diagnosis_names_the_headers_but_no_secret() -> None:
    responses.get(BASE + ORG_LEVELS_PATH, status=401, body="")
    result = make_client().ping()

    assert result.ok is False and result.host == "service4.ultipro.test"
    assert isinstance(result.error, AuthError)
    detail = result.detail
    assert "UKG answered 401" in detail
    assert (
        "Authorization (Basic)" in detail and "US-Customer-Api-Key" in detail and "US-User-Api-Key" in detail
    )
    assert "UKG2D365_UKG_PASSWORD" in detail
    assert "not configured" not in detail  # the user key was sent
    assert_no_secret(detail)


@responses.activate
def test_401_says_when_the_user_key_is_not_configured() -> None:
    responses.get(BASE + ORG_LEVELS_PATH, status=401)
    result = make_client(UkgCredentials(USERNAME, PASSWORD, CUSTOMER_KEY, None)).ping()
    assert "US-User-Api-Key was not sent (UKG2D365_UKG_USER_API_KEY is not configured)" in result.detail
    assert_no_secret(result.detail)


@responses.activate
def test_401_says_when_the_customer_key_has_the_wrong_shape() -> None:
    responses.get(GL, status=401)
    bad = UkgCredentials(USERNAME, PASSWORD, "B7X2Q-extra", USER_KEY)
    with pytest.raises(AuthError) as err:
        list(make_client(bad).gl_lines())
    message = str(err.value)
    assert "US-Customer-Api-Key is not 5 alphanumeric characters" in message
    assert "B7X2Q-extra" not in message and PASSWORD not in message


@pytest.mark.parametrize(
    ("path", "service"),
    [
        (ORG_LEVELS_PATH, "Company Configuration Integration"),
        (GL_PATH, "Payroll Integration"),
        (PAY_PERIODS_PATH, "Payroll Integration"),
        (EMPLOYMENT_DETAILS_PATH, "Personnel Integration"),
    ],
)
@responses.activate
def test_403_names_the_missing_web_service_permission(path: str, service: str) -> None:
    responses.get(BASE + path, status=403)
    client = make_client()
    calls = {
        ORG_LEVELS_PATH: client.org_levels,
        GL_PATH: lambda: list(client.gl_lines()),
        PAY_PERIODS_PATH: lambda: list(client.pay_periods()),
        EMPLOYMENT_DETAILS_PATH: lambda: list(client.employment_details()),
    }
    with pytest.raises(AuthError, match=service):
        calls[path]()


@responses.activate
def test_404_on_the_gl_path_suggests_the_config_key() -> None:
    responses.get(GL, status=404)
    with pytest.raises(RemoteError, match="ukg.gl_path") as err:
        list(make_client().gl_lines())
    assert err.value.status == 404


@responses.activate
def test_other_errors_carry_status_and_a_redacted_excerpt() -> None:
    responses.get(GL, status=400, json={"message": "bad filter", "password": "leaked-value"})
    with pytest.raises(RemoteError) as err:
        list(make_client().gl_lines())
    assert err.value.status == 400
    assert "bad filter" in str(err.value) and "leaked-value" not in str(err.value)


@responses.activate
def test_ping_ok() -> None:
    responses.get(BASE + ORG_LEVELS_PATH, json=[{"level": 1, "code": "100"}])
    result = make_client().ping()
    assert result.ok is True and result.error is None
    assert result.host == "service4.ultipro.test"
    assert result.latency_ms >= 0
    assert "1 org level" in result.detail


def test_credentials_held_by_the_client_repr_masked() -> None:
    client = make_client()
    assert_no_secret(repr(vars(client)))
    assert_no_secret(repr(client))


@responses.activate
def test_server_ignoring_page_with_nan_items_is_refused_not_looped() -> None:
    responses.get(GL, body='[{"debitAmt": NaN}, {"debitAmt": 1.5}]', content_type="application/json")
    with pytest.raises(ProtocolError, match="same page twice"):
        list(make_client(page_size=2).gl_lines())
