"""TokenProvider: msal wiring, AADSTS diagnoses, cache invalidation, a real msal run against a fake authority."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import responses

from ukg2d365.config import D365Config
from ukg2d365.d365.auth import TokenProvider
from ukg2d365.errors import AuthError, ConfigError, ExitStatus, ProtocolError, RemoteUnavailable, ServingPageError

SECRET = "s3cr3t-Value~abc"
TENANT = "5a1e0c0a-5a1d-4b0c-9d0e-000000000365"
LOCAL_AUTHORITY = "https://127.0.0.1:8443"


def make_cfg(authority_host: str = "https://login.microsoftonline.com", **extra: Any) -> D365Config:
    return D365Config(
        base_url="https://contoso.operations.dynamics.com",
        tenant_id=TENANT,
        client_id="0d365c11-e7a1-4c0d-8a5b-0000000000a1",
        authority_host=authority_host,
        legal_entity="usmf",
        **extra,
    )


class FakeApp:
    def __init__(self, results: list[Any]) -> None:
        self.results = results
        self.scopes: list[list[str]] = []
        self.removed = 0

    def acquire_token_for_client(self, scopes: list[str]) -> dict[str, Any]:
        self.scopes.append(scopes)
        result = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def remove_tokens_for_client(self) -> None:
        self.removed += 1


class Factory:
    def __init__(self, app: FakeApp | BaseException) -> None:
        self.app = app
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> FakeApp:
        self.calls.append(kwargs)
        if isinstance(self.app, BaseException):
            raise self.app
        return self.app


def provider(app: FakeApp | BaseException, cfg: D365Config | None = None) -> tuple[TokenProvider, Factory]:
    factory = Factory(app)
    return TokenProvider(cfg or make_cfg(), SECRET, requests.Session(), app_factory=factory), factory


def test_token_asks_msal_every_time_for_the_environment_default_scope() -> None:
    app = FakeApp([{"access_token": "AT1"}, {"access_token": "AT2"}])
    tokens, factory = provider(app)
    assert tokens.token() == "AT1"
    assert tokens.token() == "AT2"
    assert app.scopes == [["https://contoso.operations.dynamics.com/.default"]] * 2
    assert len(factory.calls) == 1  # one ConfidentialClientApplication per provider


def test_msal_app_gets_authority_secret_and_the_run_session() -> None:
    tokens, factory = provider(FakeApp([{"access_token": "AT"}]))
    tokens.token()
    kwargs = factory.calls[0]
    assert kwargs["authority"] == f"https://login.microsoftonline.com/{TENANT}"
    assert kwargs["client_credential"] == SECRET
    assert kwargs["client_id"] == "0d365c11-e7a1-4c0d-8a5b-0000000000a1"
    assert "instance_discovery" not in kwargs and "validate_authority" not in kwargs


def test_non_microsoft_authority_disables_instance_discovery_and_validation() -> None:
    tokens, factory = provider(FakeApp([{"access_token": "AT"}]), make_cfg(LOCAL_AUTHORITY))
    tokens.token()
    assert factory.calls[0]["instance_discovery"] is False
    assert factory.calls[0]["validate_authority"] is False


def test_authority_requests_never_turn_tls_verification_off() -> None:
    session = requests.Session()
    session.verify = False
    app = FakeApp([{"access_token": "AT"}])
    factory = Factory(app)
    TokenProvider(make_cfg(), SECRET, session, app_factory=factory).token()
    http_client = factory.calls[0]["http_client"]
    assert http_client._settings({})["verify"] is True
    assert http_client._settings({})["allow_redirects"] is False


def test_plain_http_authority_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="https"):
        TokenProvider(make_cfg("http://127.0.0.1:8080"), SECRET, requests.Session())


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("AADSTS7000215: Invalid client secret provided. Trace ID: 1 Correlation ID: 2", "invalid secret"),
        ("AADSTS700016: Application with identifier 'x' was not found in the directory", "not found in tenant"),
        ("AADSTS90002: Tenant 'x' not found.", f"tenant {TENANT} not found"),
        ("AADSTS500011: The resource principal named https://x was not found", "d365.base_url"),
    ],
)
def test_entra_errors_become_one_line_diagnoses(description: str, expected: str) -> None:
    tokens, _ = provider(FakeApp([{"error": "invalid_client", "error_description": description}]))
    with pytest.raises(AuthError) as info:
        tokens.token()
    assert expected in str(info.value)
    assert "\n" not in str(info.value)
    assert SECRET not in str(info.value)
    assert info.value.exit_status == ExitStatus.AUTH


def test_unknown_entra_error_keeps_the_first_line_without_trace_ids() -> None:
    description = "AADSTS999999: Something new happened. Trace ID: abc Correlation ID: def\r\nmore"
    tokens, _ = provider(FakeApp([{"error": "invalid_request", "error_description": description}]))
    with pytest.raises(AuthError) as info:
        tokens.token()
    assert "AADSTS999999: Something new happened." in str(info.value)
    assert "Trace ID" not in str(info.value)


def test_entra_temporarily_unavailable_is_remote_unavailable() -> None:
    tokens, _ = provider(FakeApp([{"error": "temporarily_unavailable", "error_description": "try later"}]))
    with pytest.raises(RemoteUnavailable):
        tokens.token()


def test_network_failure_reaching_the_authority_is_remote_unavailable() -> None:
    tokens, _ = provider(FakeApp([requests.exceptions.ConnectionError("boom")]))
    with pytest.raises(RemoteUnavailable, match="login.microsoftonline.com"):
        tokens.token()


def test_network_failure_during_discovery_is_remote_unavailable() -> None:
    tokens, _ = provider(requests.exceptions.ConnectTimeout("slow"))
    with pytest.raises(RemoteUnavailable, match="cannot reach the Entra ID authority"):
        tokens.token()


def test_unknown_tenant_during_discovery_is_diagnosed() -> None:
    error = ValueError(
        "Unable to get authority configuration ... OIDC Discovery failed on https://login/x. HTTP status: 400, "
        'Error: {"error":"invalid_tenant","error_description":"AADSTS90002: Tenant not found."}'
    )
    tokens, _ = provider(error)
    with pytest.raises(AuthError, match="AADSTS90002"):
        tokens.token()


def test_invalidate_drops_msal_cached_tokens() -> None:
    app = FakeApp([{"access_token": "AT"}])
    tokens, _ = provider(app)
    tokens.invalidate()  # nothing cached yet: nothing to do, no app built
    assert app.removed == 0
    tokens.token()
    tokens.invalidate()
    assert app.removed == 1


def test_apply_sets_a_bearer_header() -> None:
    tokens, _ = provider(FakeApp([{"access_token": "AT9"}]))
    prepared = requests.Request("GET", "https://contoso.operations.dynamics.com/data/X").prepare()
    tokens.apply(prepared)
    assert prepared.headers["Authorization"] == "Bearer AT9"


def test_repr_never_shows_the_secret() -> None:
    tokens, _ = provider(FakeApp([{"access_token": "AT"}]))
    assert SECRET not in repr(tokens)


# ---------------------------------------------------------------- real msal, fake local authority

DISCOVERY = f"{LOCAL_AUTHORITY}/{TENANT}/v2.0/.well-known/openid-configuration"
TOKEN_URL = f"{LOCAL_AUTHORITY}/{TENANT}/oauth2/v2.0/token"


def _serve_discovery() -> None:
    responses.get(
        DISCOVERY,
        json={
            "authorization_endpoint": f"{LOCAL_AUTHORITY}/{TENANT}/oauth2/v2.0/authorize",
            "token_endpoint": TOKEN_URL,
            "issuer": f"{LOCAL_AUTHORITY}/{TENANT}/v2.0",
        },
    )


@responses.activate
def test_real_msal_with_a_local_authority_fetches_only_its_openid_configuration_then_the_token() -> None:
    _serve_discovery()
    responses.post(TOKEN_URL, json={"access_token": "AT-1", "expires_in": 3599, "token_type": "Bearer"})
    responses.post(TOKEN_URL, json={"access_token": "AT-2", "expires_in": 3599, "token_type": "Bearer"})
    session = requests.Session()
    session.verify = "/etc/sandbox-ca.pem"  # the caller's resolved d365.ca_bundle
    tokens = TokenProvider(make_cfg(LOCAL_AUTHORITY), SECRET, session)
    assert tokens.token() == "AT-1"
    assert tokens.token() == "AT-1"  # msal's cache
    tokens.invalidate()
    assert tokens.token() == "AT-2"
    assert [c.request.method + " " + c.request.url for c in responses.calls] == [
        f"GET {DISCOVERY}",
        f"POST {TOKEN_URL}",
        f"POST {TOKEN_URL}",
    ]
    token_request = responses.calls[1].request
    assert "grant_type=client_credentials" in token_request.body
    assert "scope=https%3A%2F%2Fcontoso.operations.dynamics.com%2F.default" in token_request.body
    assert all(c.request.req_kwargs["verify"] == "/etc/sandbox-ca.pem" for c in responses.calls)
    assert all(c.request.req_kwargs["timeout"] == (10, 60) for c in responses.calls)


@responses.activate
def test_real_msal_invalid_secret_is_an_auth_error() -> None:
    _serve_discovery()
    responses.post(
        TOKEN_URL,
        status=401,
        json={"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."},
    )
    tokens = TokenProvider(make_cfg(LOCAL_AUTHORITY), SECRET, requests.Session())
    with pytest.raises(AuthError, match="invalid secret") as info:
        tokens.token()
    assert SECRET not in str(info.value)


@responses.activate
def test_real_msal_html_token_answer_is_a_protocol_error() -> None:
    _serve_discovery()
    responses.post(TOKEN_URL, status=200, body="<html>proxy login</html>", content_type="text/html")
    tokens = TokenProvider(make_cfg(LOCAL_AUTHORITY), SECRET, requests.Session())
    with pytest.raises(ProtocolError):
        tokens.token()


@responses.activate
def test_real_msal_discovery_404_names_tenant_and_authority() -> None:
    responses.get(DISCOVERY, status=404, json={"error": "not_found"})
    tokens = TokenProvider(make_cfg(LOCAL_AUTHORITY), SECRET, requests.Session())
    with pytest.raises(AuthError) as info:
        tokens.token()
    assert TENANT in str(info.value) and "127.0.0.1" in str(info.value)


@pytest.mark.parametrize("body", ['["access_token"]', '"a string"', '{"access_token": "AT", "expires_in": "soon"}'])
@responses.activate
def test_real_msal_token_answer_of_the_wrong_json_shape_is_one_line(body: str) -> None:
    _serve_discovery()
    responses.post(TOKEN_URL, status=200, body=body, content_type="application/json")
    tokens = TokenProvider(make_cfg(LOCAL_AUTHORITY), SECRET, requests.Session())
    try:
        token = tokens.token()
    except ProtocolError as exc:
        assert "answered the token request with" in str(exc) and "\n" not in str(exc)
    else:
        assert token == "AT"  # msal may accept an odd expires_in; then the token is simply used


@responses.activate
def test_real_msal_non_json_400_is_one_line_and_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    _serve_discovery()
    responses.post(TOKEN_URL, status=400, body="<html>Bad Request</html>", content_type="text/html")
    tokens = TokenProvider(make_cfg(LOCAL_AUTHORITY), SECRET, requests.Session())
    with pytest.raises(ServingPageError, match="not JSON"):
        tokens.token()
    assert capsys.readouterr().err == ""  # msal's logger.exception reached no last-resort handler
