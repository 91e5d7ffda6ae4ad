"""The sandbox's HTTPS plumbing: TLS, ports, Entra + msal, faults, admin API, config, clean stop."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msal
import pytest
import requests
from cryptography import x509

from ukg2d365.config import load_config
from ukg2d365.sandbox import FaultRule, Sandbox, catalog
from ukg2d365.sandbox.faults import D365_THROTTLE_MESSAGE


def _session(sb: Sandbox) -> requests.Session:
    s = requests.Session()
    s.verify = str(sb.ca_path)
    s.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment silently replaces verify=
    return s


def _ukg_get(sb: Sandbox, path: str = "/configuration/v1/org-levels", **kw: Any) -> requests.Response:
    headers = {"US-Customer-Api-Key": catalog.UKG_CUSTOMER_API_KEY, "US-User-Api-Key": catalog.UKG_USER_API_KEY}
    return _session(sb).get(
        sb.urls.ukg + path, headers=headers, auth=(catalog.UKG_USERNAME, catalog.UKG_PASSWORD), timeout=10, **kw
    )


def _token_post(sb: Sandbox, tenant: str = catalog.TENANT_ID, **form: str) -> requests.Response:
    data = {
        "grant_type": "client_credentials",
        "client_id": catalog.CLIENT_ID,
        "client_secret": catalog.CLIENT_SECRET,
        "scope": f"{sb.urls.d365}/.default",
    }
    data.update(form)
    return _session(sb).post(f"{sb.urls.entra}/{tenant}/oauth2/v2.0/token", data=data, timeout=10)


def _msal_app(sb: Sandbox, secret: str = catalog.CLIENT_SECRET) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        catalog.CLIENT_ID,
        client_credential=secret,
        authority=f"{sb.urls.entra}/{catalog.TENANT_ID}",
        http_client=_session(sb),
        instance_discovery=False,  # a non-Microsoft host: skip login.microsoftonline.com instance discovery
    )


# ------------------------------------------------------------------------------------------- TLS and ports


def test_tls_is_verified_against_the_written_ca(sandbox: Sandbox) -> None:
    assert sandbox.ca_path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert _ukg_get(sandbox).status_code == 200
    # the certificate names both 127.0.0.1 and localhost
    port = int(sandbox.urls.ukg.rsplit(":", 1)[1])
    ctx = ssl.create_default_context(cafile=str(sandbox.ca_path))
    for host in ("127.0.0.1", "localhost"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                der = tls.getpeercert(binary_form=True)
        assert der is not None
    cert = x509.load_der_x509_certificate(der)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    # without the sandbox CA, the system trust store must refuse it
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(sandbox.urls.ukg, timeout=5, verify=True)


def test_listeners_bind_to_loopback_only(sandbox: Sandbox) -> None:
    for url in (sandbox.urls.entra, sandbox.urls.ukg, sandbox.urls.d365):
        assert url.startswith("https://127.0.0.1:")
    for srv in sandbox._servers.values():
        assert srv._httpd.server_address[0] == "127.0.0.1"


def _free_port_triple() -> int:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base > 65000:
            continue
        socks = []
        try:
            for i in range(3):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    pytest.skip("no three consecutive free ports")


def test_explicit_port_means_three_consecutive_ports(make_sandbox: Callable[..., Sandbox]) -> None:
    base = _free_port_triple()
    sb = make_sandbox(port=base, employees=5)
    assert (sb.urls.entra, sb.urls.ukg, sb.urls.d365) == tuple(f"https://127.0.0.1:{base + i}" for i in range(3))
    assert sb.urls["ukg"] == sb.urls.ukg


def test_keep_alive_serves_several_requests_on_one_connection(sandbox: Sandbox) -> None:
    port = int(sandbox.urls.entra.rsplit(":", 1)[1])
    ctx = ssl.create_default_context(cafile=str(sandbox.ca_path))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    try:
        path = f"/{catalog.TENANT_ID}/v2.0/.well-known/openid-configuration"
        for _ in range(3):
            conn.request("GET", path)
            resp = conn.getresponse()
            assert resp.status == 200 and resp.getheader("Content-Length") is not None
            resp.read()
        assert conn.sock is not None  # the same socket all along
    finally:
        conn.close()
    assert sandbox.stats()["entra"] == 3


# ------------------------------------------------------------------------------------------- Entra + msal


def test_msal_acquires_a_token_from_the_sandbox_entra(sandbox: Sandbox) -> None:
    app = _msal_app(sandbox)
    scopes = [f"{sandbox.urls.d365}/.default"]
    result = app.acquire_token_for_client(scopes=scopes)
    assert result.get("token_source") == "identity_provider", result
    assert result["token_type"] == "Bearer" and result["expires_in"] == 3599
    assert sandbox.tokens.check(result["access_token"], sandbox.urls.d365)
    again = app.acquire_token_for_client(scopes=scopes)
    assert again["token_source"] == "cache" and again["access_token"] == result["access_token"]

    bad = _msal_app(sandbox, secret="not-the-secret").acquire_token_for_client(scopes=scopes)
    assert bad["error"] == "invalid_client" and bad["error_codes"] == [7000215]
    assert bad["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    assert catalog.CLIENT_SECRET not in str(bad)


def test_each_app_registration_gets_tokens_with_its_own_secret_only(sandbox: Sandbox) -> None:
    """Apps of one directory each have their own client id and secret; one app's secret is refused for another
    (AADSTS7000215, as for any wrong secret), and the refusals are kept for tests to read."""
    assert sandbox.entra is not None
    sandbox.entra.register_app(catalog.CLIENT_ID_2, catalog.CLIENT_SECRET_2)
    second = _token_post(sandbox, client_id=catalog.CLIENT_ID_2, client_secret=catalog.CLIENT_SECRET_2)
    assert second.status_code == 200, second.text
    assert sandbox.tokens.check(second.json()["access_token"], sandbox.urls.d365)
    assert _token_post(sandbox).status_code == 200  # the first app still has its own
    crossed = _token_post(sandbox, client_id=catalog.CLIENT_ID_2, client_secret=catalog.CLIENT_SECRET)
    assert crossed.status_code == 401 and crossed.json()["error_codes"] == [7000215]
    assert catalog.CLIENT_ID_2 in crossed.json()["error_description"]
    assert sandbox.tokens.issued_to() == {catalog.CLIENT_ID, catalog.CLIENT_ID_2}
    assert sandbox.entra.refusals == [(catalog.CLIENT_ID_2, 7000215)]


def test_a_sandbox_of_another_customer_has_its_own_app_and_config(make_sandbox: Callable[..., Sandbox]) -> None:
    other = make_sandbox(employees=10, client_id=catalog.CLIENT_ID_2, client_secret=catalog.CLIENT_SECRET_2)
    assert load_config(other.config_path).d365.client_id == catalog.CLIENT_ID_2
    assert other.env()["UKG2D365_D365_CLIENT_SECRET"] == catalog.CLIENT_SECRET_2
    assert other.env("globex")["UKG2D365_GLOBEX_D365_CLIENT_SECRET"] == catalog.CLIENT_SECRET_2
    refused = _token_post(other)  # the default app is not registered there
    assert refused.status_code == 400 and refused.json()["error_codes"] == [700016]


def test_discovery_document_points_back_at_the_sandbox(sandbox: Sandbox) -> None:
    s = _session(sandbox)
    for path in (
        f"/{catalog.TENANT_ID}/v2.0/.well-known/openid-configuration",
        f"/{catalog.TENANT_ID}/.well-known/openid-configuration",
    ):
        doc = s.get(sandbox.urls.entra + path, timeout=5).json()
        assert doc["token_endpoint"] == f"{sandbox.urls.entra}/{catalog.TENANT_ID}/oauth2/v2.0/token"
        assert doc["authorization_endpoint"].startswith(sandbox.urls.entra)
        assert doc["issuer"] == f"{sandbox.urls.entra}/{catalog.TENANT_ID}/v2.0"
    r = s.get(f"{sandbox.urls.entra}/not-a-tenant/v2.0/.well-known/openid-configuration", timeout=5)
    assert r.status_code == 400 and r.json()["error_codes"] == [90002]


@pytest.mark.parametrize(
    ("form", "status", "error", "code"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client", 7000215),
        ({"client_id": "11111111-2222-3333-4444-555555555555"}, 400, "unauthorized_client", 700016),
        ({"scope": "https://elsewhere.example/.default"}, 400, "invalid_resource", 500011),
        ({"tenant": "00000000-0000-0000-0000-000000000000"}, 400, "invalid_tenant", 90002),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
    ],
)
def test_token_errors_look_like_entra(
    sandbox: Sandbox, form: dict[str, str], status: int, error: str, code: int
) -> None:
    r = _token_post(sandbox, **form)
    assert r.status_code == status
    body = r.json()
    assert body["error"] == error and body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}:")
    assert {"timestamp", "trace_id", "correlation_id"} <= set(body)


def test_token_lifetime_is_configurable_and_revocation_rejects_tokens(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox(employees=5, token_lifetime=120)
    r = _token_post(sb)
    body = r.json()
    assert r.status_code == 200 and body["expires_in"] == body["ext_expires_in"] == 120
    token = body["access_token"]
    assert sb.tokens.check(token, sb.urls.d365)
    assert not sb.tokens.check(token, sb.urls.ukg)  # audience is the D365 URL only
    assert sb.tokens.revoke_all() == 1
    assert not sb.tokens.check(token, sb.urls.d365)
    # and over the admin API
    token2 = _token_post(sb).json()["access_token"]
    r = _session(sb).post(sb.urls.entra + "/_sandbox/revoke-tokens", timeout=5)
    assert r.json() == {"revoked": 1}
    assert not sb.tokens.check(token2, sb.urls.d365)


def test_d365_rejects_a_revoked_token(sandbox: Sandbox) -> None:
    token = _token_post(sandbox).json()["access_token"]
    s = _session(sandbox)
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    ok = s.get(f"{sandbox.urls.d365}/data/MainAccounts", headers=headers, timeout=10)
    assert ok.status_code == 200, ok.text[:300]
    sandbox.tokens.revoke_all()
    denied = s.get(f"{sandbox.urls.d365}/data/MainAccounts", headers=headers, timeout=10)
    assert denied.status_code == 401


# ------------------------------------------------------------------------------------------- faults


def test_ukg_429_with_retry_after_then_recovers(sandbox: Sandbox) -> None:
    sandbox.faults.add(FaultRule("ukg", "status", status=429, retry_after="7", path_regex="org-levels", count=2))
    for _ in range(2):
        r = _ukg_get(sandbox)
        assert r.status_code == 429 and r.headers["Retry-After"] == "7" and r.json() == {}
    assert _ukg_get(sandbox).status_code == 200
    assert sandbox.faults.rules() == []


def test_d365_429_uses_the_service_protection_error_shape(sandbox: Sandbox) -> None:
    date = "Wed, 21 Oct 2026 07:28:00 GMT"
    sandbox.faults.add(FaultRule("d365", "status", method="POST", path_regex=r"\$batch$", status=429, retry_after=date))
    s = _session(sandbox)
    r = s.post(f"{sandbox.urls.d365}/data/$batch", data=b"", timeout=5)
    assert r.status_code == 429 and r.headers["Retry-After"] == date
    assert r.json()["error"]["innererror"]["message"] == D365_THROTTLE_MESSAGE
    assert r.json()["error"]["message"] == "An error has occurred."
    sandbox.faults.add(FaultRule("d365", "status", status=503, count=None))
    for _ in range(2):
        r = s.get(f"{sandbox.urls.d365}/data/MainAccounts", timeout=5)
        assert r.status_code == 503 and "innererror" in r.json()["error"]
    sandbox.faults.clear()


def test_drop_after_processes_the_request_then_drops_it(sandbox: Sandbox) -> None:
    sandbox.faults.add(FaultRule("entra", "drop_after", method="POST", path_regex="/token$"))
    before = sandbox.tokens.issued_count
    with pytest.raises(requests.exceptions.ConnectionError):
        _token_post(sandbox)
    assert sandbox.tokens.issued_count == before + 1  # a token was issued: the client never saw it

    sandbox.faults.add(FaultRule("entra", "drop_before", method="POST", path_regex="/token$"))
    with pytest.raises(requests.exceptions.ConnectionError):
        _token_post(sandbox)
    assert sandbox.tokens.issued_count == before + 1  # not processed
    assert _token_post(sandbox).status_code == 200


def test_html_and_redirect_and_latency_faults(sandbox: Sandbox) -> None:
    sandbox.faults.add(FaultRule("ukg", "html"))
    r = _ukg_get(sandbox)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html") and b"<html>" in r.content

    sandbox.faults.add(FaultRule("ukg", "redirect"))
    r = _ukg_get(sandbox, allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].startswith("https://login.example.invalid/")

    sandbox.faults.add(FaultRule("ukg", "latency", latency_ms=300))
    started = time.monotonic()
    assert _ukg_get(sandbox).status_code == 200
    assert time.monotonic() - started >= 0.3

    sandbox.faults.set_latency("ukg", 200)
    started = time.monotonic()
    assert _ukg_get(sandbox).status_code == 200
    assert time.monotonic() - started >= 0.2
    sandbox.faults.set_latency("ukg", 0)


def test_fault_rules_are_validated() -> None:
    with pytest.raises(ValueError):
        FaultRule("sap", "status", status=500)
    with pytest.raises(ValueError):
        FaultRule("ukg", "explode")
    with pytest.raises(ValueError):
        FaultRule("ukg", "status")
    with pytest.raises(ValueError):
        FaultRule("ukg", "html", path_regex="(")


def test_admin_api_drives_faults_and_stats(sandbox: Sandbox) -> None:
    s = _session(sandbox)
    admin = sandbox.urls.entra + "/_sandbox"
    r = s.post(admin + "/faults", json={"service": "ukg", "action": "status", "status": 503, "count": None}, timeout=5)
    assert r.status_code == 201 and r.json()["status"] == 503
    assert _ukg_get(sandbox).status_code == 503
    assert _ukg_get(sandbox).status_code == 503
    assert [rule["service"] for rule in s.get(admin + "/faults", timeout=5).json()] == ["ukg"]
    assert s.delete(admin + "/faults", timeout=5).status_code == 204
    assert _ukg_get(sandbox).status_code == 200
    bad = s.post(admin + "/faults", json={"service": "ukg", "action": "nope"}, timeout=5)
    assert bad.status_code == 400
    stats = s.get(admin + "/stats", timeout=5).json()
    assert stats == sandbox.stats() == {"entra": 0, "ukg": 3, "d365": 0}  # admin calls are not counted
    r = s.post(admin + "/latency", json={"service": "d365", "latency_ms": 5}, timeout=5)
    assert r.json()["d365"] == 5 and sandbox.faults.latency_ms["d365"] == 5


# ------------------------------------------------------------------------------------------- config and env


def test_written_config_loads_and_points_at_the_sandbox(sandbox: Sandbox) -> None:
    text = sandbox.config_path.read_text(encoding="utf-8")
    assert text.startswith("# Written by the ukg2d365 sandbox")
    assert catalog.CLIENT_SECRET not in text and catalog.UKG_PASSWORD not in text
    cfg = load_config(sandbox.config_path)
    assert cfg.ukg.base_url == sandbox.urls.ukg and cfg.d365.base_url == sandbox.urls.d365
    assert cfg.d365.authority == f"{sandbox.urls.entra}/{catalog.TENANT_ID}"
    assert cfg.d365.scope == f"{sandbox.urls.d365}/.default"
    assert cfg.resolve(cfg.d365.ca_bundle) == sandbox.ca_path and cfg.resolve(cfg.ukg.ca_bundle) == sandbox.ca_path
    assert cfg.mapping.main_accounts == {a.ukg_account: a.d365_account for a in catalog.GL_ACCOUNTS}
    assert cfg.mapping.dimensions["Department"].create_in == "OperatingUnits"
    assert cfg.mapping.dimensions["Department"].operating_unit_type == "OMDepartment"
    assert cfg.mapping.dimensions["CostCenter"].source == "orgLevel1"
    assert cfg.employees.default_dimensions is None and cfg.mapping.ledger_format is None  # D365 decides
    assert cfg.ledger_path == sandbox.dir / "ukg2d365.db"
    assert cfg.ukg.pay_groups == ["BW"] and cfg.d365.legal_entity == catalog.LEGAL_ENTITY


def test_sandbox_env_fixture_sets_the_credentials(sandbox_env: dict[str, str]) -> None:
    assert set(sandbox_env) == {
        "UKG2D365_UKG_USERNAME",
        "UKG2D365_UKG_PASSWORD",
        "UKG2D365_UKG_CUSTOMER_API_KEY",
        "UKG2D365_UKG_USER_API_KEY",
        "UKG2D365_D365_CLIENT_SECRET",
    }
    assert os.environ["UKG2D365_D365_CLIENT_SECRET"] == catalog.CLIENT_SECRET


# ------------------------------------------------------------------------------------------- stop


def test_stop_closes_listeners_and_idle_connections(make_sandbox: Callable[..., Sandbox]) -> None:
    threads_before = set(threading.enumerate())
    sb = make_sandbox(employees=5)
    ports = [int(u.rsplit(":", 1)[1]) for u in (sb.urls.entra, sb.urls.ukg, sb.urls.d365)]
    assert sb._tls is not None
    s = _session(sb)
    r = s.get(f"{sb.urls.entra}/{catalog.TENANT_ID}/v2.0/.well-known/openid-configuration", timeout=5)
    assert r.status_code == 200  # leaves an idle keep-alive connection open
    sb.faults.add(FaultRule("ukg", "latency", latency_ms=30_000))
    slow = threading.Thread(target=lambda: _swallow(lambda: _ukg_get(sb)), daemon=True)
    slow.start()
    time.sleep(0.2)  # the slow request is now sleeping in a handler thread

    started = time.monotonic()
    sb.stop()
    assert time.monotonic() - started < 3
    slow.join(5)
    s.close()
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert set(threading.enumerate()) <= threads_before | {threading.current_thread()}
    sb.stop()  # twice is fine


def test_a_running_sandbox_hands_the_gil_over_promptly_and_stop_puts_the_interval_back(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    from ukg2d365.http import IO_SWITCH_INTERVAL

    before = sys.getswitchinterval()
    sb = make_sandbox(employees=5)
    assert sys.getswitchinterval() == pytest.approx(min(before, IO_SWITCH_INTERVAL), rel=0.05)
    sb.stop()
    assert sys.getswitchinterval() == pytest.approx(before, rel=0.05)


def _swallow(fn: Any) -> None:
    try:
        fn()
    except requests.RequestException:
        pass


def _banner(proc: subprocess.Popen[str], timeout: float = 20) -> list[str]:
    """What a running sandbox prints, up to its last export line."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("export UKG2D365_D365_CLIENT_SECRET="):
            break
    return lines


def test_serve_forever_cli_prints_exports_and_stops_on_sigterm(tmp_path: Path) -> None:
    code = "import sys; from ukg2d365.sandbox import serve_forever_cli; serve_forever_cli(sys.argv[1], 0, 12, 0)"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        lines = _banner(proc)
        text = "\n".join(lines)
        assert "Entra ID   https://127.0.0.1:" in text and str(tmp_path / "ukg2d365.yaml") in text
        assert "export UKG2D365_UKG_USERNAME=" in text and "export UKG2D365_CONFIG=" in text
        load_config(tmp_path / "ukg2d365.yaml")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert "sandbox stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_sandbox_command_offers_a_second_company_and_exports_a_config_path_any_shell_can_use(
        tmp_path: Path) -> None:
    """`ukg2d365 sandbox --dir run --companies 2`: the config of Several legal entities, and an absolute
    UKG2D365_CONFIG: the line is pasted into another shell, which may stand in another folder."""
    proc = subprocess.Popen([sys.executable, "-m", "ukg2d365", "sandbox", "--dir", "run", "--port", "0",
                             "--employees", "12", "--companies", "2"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = _banner(proc, timeout=30)
        assert any(line.startswith("  entities   UKG C0MP1 paid by USMF, C0MP2 by USPI") for line in lines), lines
        (export,) = [line for line in lines if line.startswith("export UKG2D365_CONFIG=")]
        assert export == f"export UKG2D365_CONFIG={tmp_path / 'run' / 'ukg2d365.yaml'}", lines
        config = load_config(tmp_path / "run" / "ukg2d365.yaml")
        assert config.legal_entities is not None and set(config.legal_entities.by_company) == {"C0MP1", "C0MP2"}
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
