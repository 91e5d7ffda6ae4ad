"""HttpClient: retries, Retry-After, write safety, host pinning, redaction, JSON with Decimal."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import pytest
import requests
import responses
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from ukg2d365.config import HttpConfig
from ukg2d365.errors import AmbiguousWriteError, ProtocolError, RemoteUnavailable
from ukg2d365.http import (
    HttpClient,
    RetryBudget,
    RetryPolicy,
    build_session,
    decode_json,
    dumps_json,
    redact,
)

BASE = "https://api.example.test"
NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=timezone.utc)


class Recorder:
    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.auth_calls: list[str] = []
        self.events: list[dict[str, Any]] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def auth(self, prepared: requests.PreparedRequest) -> None:
        self.auth_calls.append(prepared.url or "")
        prepared.headers["Authorization"] = "Bearer tok-secret"


def make_client(
    rec: Recorder,
    *,
    policy: RetryPolicy | None = None,
    budget: RetryBudget | None = None,
    session: requests.Session | None = None,
    rng: float = 0.25,  # any jitter applied to Retry-After would show in the recorded waits
) -> HttpClient:
    policy = policy or RetryPolicy(
        max_attempts=4, backoff_base=1.0, backoff_max=8.0, max_retry_after=60.0, budget_seconds=600.0
    )
    return HttpClient(
        system="D365",
        base_url=BASE,
        timeout=30,
        ca_bundle=None,
        policy=policy,
        budget=budget or RetryBudget(policy.budget_seconds),
        session=session,
        sleep=rec.sleep,
        auth=rec.auth,
        rng=lambda: rng,
        on_event=rec.events.append,
        clock=lambda: NOW,
    )


# ---------------------------------------------------------------- Retry-After and backoff


@responses.activate
def test_retry_after_seconds_is_waited_exactly() -> None:
    responses.get(f"{BASE}/data/X", status=429, headers={"Retry-After": "2"})
    responses.get(f"{BASE}/data/X", json={"ok": True})
    rec = Recorder()
    client = make_client(rec)
    response = client.request("GET", "/data/X")
    assert response.status_code == 200
    assert rec.sleeps == [2.0]
    assert client.budget.waited == 2.0


@responses.activate
def test_retry_after_http_date_is_waited_relative_to_now() -> None:
    when = format_datetime(NOW + timedelta(seconds=7), usegmt=True)
    responses.get(f"{BASE}/x", status=429, headers={"Retry-After": when})
    responses.get(f"{BASE}/x", status=200)
    rec = Recorder()
    make_client(rec).request("GET", "/x")
    assert rec.sleeps == [7.0]


@responses.activate
def test_retry_after_in_the_past_waits_zero_and_large_values_are_capped() -> None:
    past = format_datetime(NOW - timedelta(seconds=30), usegmt=True)
    responses.get(f"{BASE}/x", status=429, headers={"Retry-After": past})
    responses.get(f"{BASE}/x", status=503, headers={"Retry-After": "3600"})
    responses.get(f"{BASE}/x", status=200)
    rec = Recorder()
    make_client(rec).request("GET", "/x")
    assert rec.sleeps == [0.0, 60.0]


@responses.activate
def test_throttling_without_retry_after_uses_exponential_backoff_with_full_jitter() -> None:
    for _ in range(3):
        responses.get(f"{BASE}/x", status=429)
    responses.get(f"{BASE}/x", status=200)
    rec = Recorder()
    make_client(rec, rng=0.5).request("GET", "/x")
    # base 1 s doubling (1, 2, 4), each scaled by the injected jitter factor 0.5
    assert rec.sleeps == [0.5, 1.0, 2.0]


def test_backoff_is_capped_at_backoff_max() -> None:
    policy = RetryPolicy(max_attempts=20, backoff_base=1, backoff_max=8, max_retry_after=60, budget_seconds=1)
    assert policy.backoff(10, lambda: 1.0) == 8


def test_policy_from_config_maps_every_field() -> None:
    cfg = HttpConfig(
        max_attempts=3,
        backoff_base_seconds=2,
        backoff_max_seconds=9,
        max_retry_after_seconds=42,
        retry_budget_seconds=100,
    )
    assert RetryPolicy.from_config(cfg) == RetryPolicy(3, 2, 9, 42, 100)


# ---------------------------------------------------------------- write safety


@responses.activate
def test_503_on_a_write_is_retried() -> None:
    responses.post(f"{BASE}/data/Lines", status=503, headers={"Retry-After": "1"})
    responses.post(f"{BASE}/data/Lines", status=201, json={"id": 1})
    rec = Recorder()
    response = make_client(rec).request("POST", "/data/Lines", json={"a": 1})
    assert response.status_code == 201
    assert len(responses.calls) == 2
    assert rec.sleeps == [1.0]


@responses.activate
def test_500_on_a_write_is_returned_not_retried() -> None:
    responses.post(f"{BASE}/data/Lines", status=500, json={"error": {"message": "boom"}})
    rec = Recorder()
    response = make_client(rec).request("POST", "/data/Lines", json={"a": 1})
    assert response.status_code == 500
    assert len(responses.calls) == 1
    assert rec.sleeps == []


@responses.activate
def test_500_on_a_read_is_retried() -> None:
    responses.get(f"{BASE}/x", status=500)
    responses.get(f"{BASE}/x", status=200)
    rec = Recorder()
    assert make_client(rec).request("GET", "/x").status_code == 200
    assert len(responses.calls) == 2


@responses.activate
def test_gateway_timeout_on_a_write_is_ambiguous() -> None:
    responses.post(f"{BASE}/data/Lines", status=504)
    with pytest.raises(AmbiguousWriteError):
        make_client(Recorder()).request("POST", "/data/Lines", json={})
    assert len(responses.calls) == 1


@responses.activate
def test_read_timeout_on_a_write_raises_ambiguous_write_error() -> None:
    responses.post(f"{BASE}/data/Lines", body=requests.exceptions.ReadTimeout("read timed out"))
    rec = Recorder()
    with pytest.raises(AmbiguousWriteError) as info:
        make_client(rec).request("POST", "/data/Lines", json={"a": 1})
    assert "may or may not" in str(info.value)
    assert len(responses.calls) == 1
    assert rec.sleeps == []


@responses.activate
def test_dropped_connection_after_sending_a_write_is_ambiguous() -> None:
    responses.post(f"{BASE}/data/Lines", body=requests.exceptions.ConnectionError("connection reset by peer"))
    with pytest.raises(AmbiguousWriteError):
        make_client(Recorder()).request("POST", "/data/Lines", json={})


@responses.activate
def test_connect_timeout_on_a_write_is_retried_because_nothing_was_sent() -> None:
    responses.post(f"{BASE}/data/Lines", body=requests.exceptions.ConnectTimeout("connect timed out"))
    responses.post(f"{BASE}/data/Lines", status=201, json={})
    rec = Recorder()
    assert make_client(rec).request("POST", "/data/Lines", json={}).status_code == 201
    assert len(rec.sleeps) == 1


@responses.activate
def test_connection_refused_on_a_write_is_retried() -> None:
    refused = urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection: refused")
    wrapped = urllib3.exceptions.MaxRetryError(None, "/data/Lines", refused)  # type: ignore[arg-type]
    responses.post(f"{BASE}/data/Lines", body=requests.exceptions.ConnectionError(wrapped))
    responses.post(f"{BASE}/data/Lines", status=201, json={})
    assert make_client(Recorder()).request("POST", "/data/Lines", json={}).status_code == 201


@responses.activate
def test_read_timeout_on_a_read_is_retried() -> None:
    responses.get(f"{BASE}/x", body=requests.exceptions.ReadTimeout("slow"))
    responses.get(f"{BASE}/x", status=200)
    assert make_client(Recorder()).request("GET", "/x").status_code == 200


@responses.activate
def test_explicit_idempotent_write_is_retried_like_a_read() -> None:
    responses.post(f"{BASE}/search", status=500)
    responses.post(f"{BASE}/search", status=200)
    assert make_client(Recorder()).request("POST", "/search", json={}, idempotent=True).status_code == 200


# ---------------------------------------------------------------- giving up


@responses.activate
def test_attempts_exhausted_raises_remote_unavailable_naming_system_host_status_and_wait() -> None:
    responses.get(f"{BASE}/data/X", status=503, headers={"Retry-After": "5"})
    rec = Recorder()
    with pytest.raises(RemoteUnavailable) as info:
        make_client(rec).request("GET", "/data/X?secret=abc")
    message = str(info.value)
    assert "D365" in message and "api.example.test" in message and "HTTP 503" in message
    assert "15.0s waited" in message
    assert "secret" not in message
    assert len(responses.calls) == 4
    assert rec.sleeps == [5.0, 5.0, 5.0]


@responses.activate
def test_retry_budget_exhaustion_raises_remote_unavailable_without_sleeping_past_it() -> None:
    responses.get(f"{BASE}/x", status=429, headers={"Retry-After": "40"})
    policy = RetryPolicy(max_attempts=10, backoff_base=1, backoff_max=8, max_retry_after=60, budget_seconds=100)
    rec = Recorder()
    client = make_client(rec, policy=policy)
    with pytest.raises(RemoteUnavailable) as info:
        client.request("GET", "/x")
    assert rec.sleeps == [40.0, 40.0]
    assert client.budget.waited == 80.0
    assert "budget" in str(info.value)
    assert info.value.exit_status == 4


def test_retry_budget_is_shared_and_refuses_a_wait_that_would_exceed_it() -> None:
    budget = RetryBudget(10)
    budget.spend(6)
    with pytest.raises(RemoteUnavailable):
        budget.spend(5)
    budget.spend(4)
    assert budget.waited == 10


# ---------------------------------------------------------------- host pinning and redirects


@responses.activate
def test_redirect_is_refused_naming_the_location_host() -> None:
    responses.get(f"{BASE}/data/X", status=302, headers={"Location": "https://login.example.com/signin?x=1"})
    with pytest.raises(ProtocolError) as info:
        make_client(Recorder()).request("GET", "/data/X")
    assert "login.example.com" in str(info.value)
    assert "login page" in str(info.value)
    assert len(responses.calls) == 1


@responses.activate
def test_absolute_url_on_a_foreign_host_is_refused_before_credentials_are_attached() -> None:
    rec = Recorder()
    with pytest.raises(ProtocolError) as info:
        make_client(rec).request("GET", "https://evil.example.com/data/X")
    assert "refusing to send credentials to evil.example.com" in str(info.value)
    assert rec.auth_calls == []
    assert len(responses.calls) == 0


@pytest.mark.parametrize("url", ["http://api.example.test/x", "https://api.example.test:8443/x"])
def test_absolute_url_with_another_scheme_or_port_is_refused(url: str) -> None:
    with pytest.raises(ProtocolError):
        make_client(Recorder()).url_for(url)


def test_absolute_url_on_the_configured_origin_is_accepted() -> None:
    assert make_client(Recorder()).url_for("https://API.example.test:443/x?a=1") == "https://API.example.test:443/x?a=1"


def test_rewrite_to_base_keeps_path_and_query_and_replaces_origin() -> None:
    client = make_client(Recorder())
    rewritten = client.rewrite_to_base("http://api.example.test:8080/data/X?$skip=10&cross-company=true")
    assert rewritten == f"{BASE}/data/X?$skip=10&cross-company=true"


def test_rewrite_to_base_refuses_a_foreign_host() -> None:
    with pytest.raises(ProtocolError):
        make_client(Recorder()).rewrite_to_base("https://other.example.com/data/X?$skip=10")


@responses.activate
def test_auth_runs_on_every_attempt() -> None:
    responses.get(f"{BASE}/x", status=429, headers={"Retry-After": "0"})
    responses.get(f"{BASE}/x", status=200)
    rec = Recorder()
    make_client(rec).request("GET", "/x")
    assert len(rec.auth_calls) == 2
    assert all(c.request.headers["Authorization"] == "Bearer tok-secret" for c in responses.calls)


@responses.activate
def test_401_and_403_are_returned_to_the_caller() -> None:
    responses.get(f"{BASE}/a", status=401)
    responses.get(f"{BASE}/b", status=403)
    client = make_client(Recorder())
    assert client.request("GET", "/a").status_code == 401
    assert client.request("GET", "/b").status_code == 403


# ---------------------------------------------------------------- transport settings


class RecordingAdapter(HTTPAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.kwargs: list[dict[str, Any]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.kwargs.append(kwargs)
        response = requests.Response()
        response.status_code = 200
        response.request = request
        response.url = request.url or ""
        response._content = b"{}"
        response._content_consumed = True  # as requests leaves a response whose body was read
        return response


def test_every_request_has_split_timeouts_tls_verification_and_no_redirects() -> None:
    session = build_session()
    adapter = RecordingAdapter()
    session.mount("https://", adapter)
    rec = Recorder()
    client = make_client(rec, session=session)
    client.request("GET", "/x")
    sent = adapter.kwargs[0]
    assert sent["timeout"] == (10, 30)
    assert sent["verify"] is True or isinstance(sent["verify"], str)
    bundled = HttpClient(
        system="UKG",
        base_url=BASE,
        timeout=5,
        ca_bundle="/etc/ssl/private-ca.pem",
        policy=RetryPolicy(),
        budget=RetryBudget(10),
        session=session,
    )
    bundled.request("GET", "/x")
    assert adapter.kwargs[1]["verify"] == "/etc/ssl/private-ca.pem"
    assert adapter.kwargs[1]["timeout"] == (5, 5)


@responses.activate
def test_redirects_are_not_followed_by_requests() -> None:
    responses.get(f"{BASE}/x", status=301, headers={"Location": f"{BASE}/y"})
    responses.get(f"{BASE}/y", status=200)
    with pytest.raises(ProtocolError):
        make_client(Recorder()).request("GET", "/x")
    assert [c.request.url for c in responses.calls] == [f"{BASE}/x"]


def test_build_session_sets_user_agent_and_pool_size() -> None:
    session = build_session()
    assert session.headers["User-Agent"].startswith("ukg2d365/")
    adapter = session.get_adapter("https://x")
    assert adapter._pool_maxsize == 16  # type: ignore[attr-defined]


@responses.activate
def test_events_report_status_and_attempt_but_never_headers() -> None:
    responses.get(f"{BASE}/data/X", status=429, headers={"Retry-After": "0"})
    responses.get(f"{BASE}/data/X", status=200)
    rec = Recorder()
    make_client(rec).request("GET", "/data/X", params={"$top": "1"})
    assert [(e["status"], e["attempt"], e["path"]) for e in rec.events] == [
        (429, 1, "/data/X"),
        (200, 2, "/data/X"),
    ]
    assert all(set(e) == {"system", "method", "path", "status", "elapsed_ms", "attempt"} for e in rec.events)
    assert "tok-secret" not in repr(rec.events)


@responses.activate
def test_decimal_json_body_is_sent_exactly() -> None:
    responses.post(f"{BASE}/x", status=201)
    make_client(Recorder()).request("POST", "/x", json={"DebitAmount": Decimal("1234.10")})
    assert responses.calls[0].request.body == b'{"DebitAmount":1234.10}'
    assert responses.calls[0].request.headers["Content-Type"].startswith("application/json")


# ---------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
        ("headers={'Authorization': 'Basic dXNlcjpwYXNz'}", "dXNlcjpwYXNz"),
        ("token was bearer s3cr3tT0ken", "s3cr3tT0ken"),
        ("grant_type=client_credentials&client_secret=hunter2&scope=x", "hunter2"),
        ("https://svc:P4ssw0rd@proxy.example.com:8080/", "P4ssw0rd"),
        ('{"password": "pa55"}', "pa55"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-nature", "eyJzdWIiOiIxIn0"),
    ],
)
def test_redact_removes_credentials(text: str, secret: str) -> None:
    assert secret not in redact(text)


def test_redact_leaves_ordinary_text_alone() -> None:
    assert redact("GET api.example.test/data/X answered 404") == "GET api.example.test/data/X answered 404"


# ---------------------------------------------------------------- JSON


def _response(body: bytes, content_type: str = "application/json; odata.metadata=minimal") -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response.url = f"{BASE}/data/X?password=nope"
    response.headers["Content-Type"] = content_type
    response._content = body
    return response


def test_decode_json_parses_amounts_as_decimal() -> None:
    data = decode_json(_response(b'{"amount": 1234.10, "n": 3}'), "UKG")
    assert data == {"amount": Decimal("1234.10"), "n": 3}
    assert str(data["amount"]) == "1234.10"


def test_decode_json_refuses_html_naming_system_and_path() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_json(_response(b"<html>Down for maintenance</html>", "text/html"), "UKG")
    message = str(info.value)
    assert "UKG" in message and "/data/X" in message and "maintenance page" in message
    assert "password" not in message


def test_decode_json_reports_truncated_json() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_json(_response(b'{"value": [{"a": 1}'), "D365")
    assert "truncated" in str(info.value) and "D365" in str(info.value)


def test_decode_json_refuses_nan() -> None:
    with pytest.raises(ProtocolError):
        decode_json(_response(b'{"amount": NaN}'), "UKG")


def test_dumps_json_writes_decimals_exactly_and_refuses_floats() -> None:
    assert dumps_json({"a": Decimal("1234.10"), "b": [Decimal("-0.01"), 2, None, True, "O'Brien é"]}) == (
        '{"a":1234.10,"b":[-0.01,2,null,true,"O\'Brien é"]}'
    )
    assert dumps_json(Decimal("1E+2")) == "100"
    with pytest.raises(TypeError):
        dumps_json({"a": 1.5})
    with pytest.raises(ValueError):
        dumps_json(Decimal("NaN"))


def test_prompt_thread_switches_shortens_the_interval_and_puts_it_back() -> None:
    import sys

    from ukg2d365.http import IO_SWITCH_INTERVAL, prompt_thread_switches

    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        with prompt_thread_switches():
            assert sys.getswitchinterval() == pytest.approx(IO_SWITCH_INTERVAL, rel=0.05)
        assert sys.getswitchinterval() == pytest.approx(0.005, rel=0.05)
        sys.setswitchinterval(0.0001)  # already shorter (set by the embedding program): never raised
        with prompt_thread_switches():
            assert sys.getswitchinterval() == pytest.approx(0.0001, rel=0.05)
        with pytest.raises(RuntimeError), prompt_thread_switches():
            sys.setswitchinterval(0.0001)
            raise RuntimeError("boom")
        assert sys.getswitchinterval() == pytest.approx(0.0001, rel=0.05)
    finally:
        sys.setswitchinterval(before)


# ---------------------------------------------------------------- the tenacity hooks


@responses.activate
def test_a_budget_spent_by_another_client_stops_before_the_first_wait() -> None:
    # The budget is tenacity's stop condition, asked with the wait it just computed: a run that already
    # waited its budget elsewhere gives up at once, naming attempts, the wait refused and the hint.
    responses.get(f"{BASE}/x", status=429, headers={"Retry-After": "5"})
    budget = RetryBudget(600)
    budget.spend(598)
    rec = Recorder()
    with pytest.raises(RemoteUnavailable) as info:
        make_client(rec, budget=budget).request("GET", "/x")
    message = str(info.value)
    assert "HTTP 429 after 1 attempt(s); retry budget exhausted" in message
    assert "598.0s waited this run, next wait 5.0s" in message
    assert info.value.hint == RetryBudget.HINT
    assert rec.sleeps == [] and budget.waited == 598
    assert len(responses.calls) == 1


@responses.activate
def test_the_wait_the_attempt_limit_rules_out_is_never_charged() -> None:
    # stop_after_attempt is asked before the budget: the last failure costs no budget.
    responses.get(f"{BASE}/x", status=503, headers={"Retry-After": "5"})
    policy = RetryPolicy(max_attempts=2, backoff_base=1, backoff_max=8, max_retry_after=60, budget_seconds=600)
    budget = RetryBudget(600)
    with pytest.raises(RemoteUnavailable) as info:
        make_client(Recorder(), policy=policy, budget=budget).request("GET", "/x")
    assert budget.waited == 5
    assert "HTTP 503 after 2 attempt(s) (5.0s waited this run)" in str(info.value)


@responses.activate
def test_giving_up_is_never_tenacitys_retry_error() -> None:
    import tenacity

    responses.get(f"{BASE}/x", body=requests.exceptions.ConnectionError("reset"))
    policy = RetryPolicy(max_attempts=3, backoff_base=1, backoff_max=8, max_retry_after=60, budget_seconds=600)
    rec = Recorder()
    with pytest.raises(RemoteUnavailable) as info:
        make_client(rec, policy=policy, rng=1.0).request("GET", "/x")
    assert not isinstance(info.value, tenacity.RetryError)
    assert "connection dropped after 3 attempt(s)" in str(info.value)
    assert rec.sleeps == [1.0, 2.0]  # backoff per attempt, full jitter factor 1.0


def test_try_spend_charges_only_what_fits() -> None:
    budget = RetryBudget(10)
    assert budget.try_spend(7) is True
    assert budget.try_spend(4) is False
    assert budget.try_spend(3) is True
    assert budget.waited == 10


# ---------------------------------------------------------------- bodies cut short


class _CutServer:
    """A plain HTTP server on a free port whose first ``cut`` answers promise 2 MB and close after 10 bytes."""

    BODY = b'{"n": "' + b"x" * (2 * 1024 * 1024) + b'"}'

    def __init__(self, cut: int) -> None:
        import http.server
        import threading

        owner = self
        self.cut = cut
        self.requests: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                owner.requests.append(self.command)
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(owner.BODY)))
                self.end_headers()
                if len(owner.requests) <= owner.cut:
                    self.wfile.write(owner.BODY[:10])
                    self.close_connection = True
                    return
                self.wfile.write(owner.BODY)

            do_GET = do_POST = _answer  # noqa: N815 - the names BaseHTTPRequestHandler dispatches to

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _plain_client(base: str) -> HttpClient:
    return HttpClient(system="UKG", base_url=base, timeout=10, ca_bundle=None, sleep=lambda _: None,
                      policy=RetryPolicy(max_attempts=3, backoff_base=0, backoff_max=0, budget_seconds=10),
                      budget=RetryBudget(10))


def test_a_read_whose_body_is_cut_short_is_read_again_whole() -> None:
    """The body is read (a megabyte at a time) inside the request's error handling: a connection that drops
    half-way through a 2 MB answer is a transport failure like any other, retried for a read."""
    server = _CutServer(cut=1)
    try:
        response = _plain_client(server.base).request("GET", "/page")
        assert response.content == _CutServer.BODY and response.json()["n"] == "x" * (2 * 1024 * 1024)
        assert server.requests == ["GET", "GET"]
    finally:
        server.close()


def test_a_write_whose_answer_is_cut_short_is_ambiguous_and_not_sent_again() -> None:
    server = _CutServer(cut=1)
    try:
        with pytest.raises(AmbiguousWriteError, match="may or may not have been processed"):
            _plain_client(server.base).request("POST", "/write", json={"a": 1})
        assert server.requests == ["POST"]
    finally:
        server.close()
