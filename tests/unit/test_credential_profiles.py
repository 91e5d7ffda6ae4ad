"""Credential profiles: a config's ``credentials.profile`` reads only that profile's secrets.

One worker process serves many tenants with one environment and one store: a profile that fell back to the
global secrets, or to another profile's, would send one customer's secret to another customer's system.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from ukg2d365 import notify
from ukg2d365.cli import app
from ukg2d365.config import NotifyConfig, load_config
from ukg2d365.credentials import (
    SYSTEMS,
    CredentialScope,
    CredentialStore,
    EncryptedFileKeyring,
    env_var,
    prompt_fields,
    resolve_d365,
    resolve_optional,
    resolve_ukg,
)
from ukg2d365.errors import ConfigError, CredentialError, UsageError

ROOT = Path(__file__).resolve().parents[2]
MASTER = "correct horse battery staple 42"
ACME = CredentialScope("acme")
GLOBEX = CredentialScope("globex")
ACME_SECRET = "acme~client~secret~0123456789ac"
GLOBEX_SECRET = "globex~client~secret~0123456789gx"
GLOBAL_SECRET = "global~client~secret~0123456789gl"
UKG = {"username": "svc-acme", "password": "acme-ukg-pass-0001", "customer_api_key": "ACME1", "user_api_key": None}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Nothing of the developer's environment, and the file store in tmp_path under a known master key."""
    import os

    for name in list(os.environ):
        if name.startswith("UKG2D365_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)
    path = tmp_path / "store" / "credentials.enc"
    monkeypatch.setenv("UKG2D365_CREDENTIALS_BACKEND", "file")
    monkeypatch.setenv("UKG2D365_CREDENTIALS_FILE", str(path))
    monkeypatch.setenv("UKG2D365_MASTER_KEY", MASTER)
    return path


def store(scope: CredentialScope = CredentialScope()) -> CredentialStore:
    return CredentialStore(scope=scope)


# ---------------------------------------------------------------- resolution order and isolation


def test_a_profiled_config_never_uses_a_global_env_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UKG2D365_D365_CLIENT_SECRET", GLOBAL_SECRET)
    store().set("d365", {"client_secret": "global-stored-secret-000"})
    assert resolve_d365().client_secret == GLOBAL_SECRET  # no profile: today's behaviour

    scope = CredentialScope("acme", Path("/etc/ukg2d365/tenants/acme.yaml"))
    with pytest.raises(CredentialError) as caught:
        resolve_d365(scope=scope)
    message = str(caught.value)
    assert message.startswith("no D365 client secret for credential profile acme: run "
                              "`ukg2d365 -c /etc/ukg2d365/tenants/acme.yaml credentials set d365`")
    assert "UKG2D365_ACME_D365_CLIENT_SECRET" in message
    assert "never uses the global UKG2D365_D365_CLIENT_SECRET" in message
    assert GLOBAL_SECRET not in message and "global-stored-secret" not in message


def test_the_profiles_env_var_wins_over_its_store_and_the_global_ones_are_ignored(
        monkeypatch: pytest.MonkeyPatch) -> None:
    store(ACME).set("d365", {"client_secret": ACME_SECRET})
    monkeypatch.setenv("UKG2D365_D365_CLIENT_SECRET", GLOBAL_SECRET)
    assert resolve_d365(scope=ACME).client_secret == ACME_SECRET  # the store's, not the global variable
    monkeypatch.setenv("UKG2D365_ACME_D365_CLIENT_SECRET", "acme-from-env-0000000")
    assert resolve_d365(scope=ACME).client_secret == "acme-from-env-0000000"
    monkeypatch.setenv("UKG2D365_ACME_D365_CLIENT_SECRET", "")  # empty counts as unset, as globally
    assert resolve_d365(scope=ACME).client_secret == ACME_SECRET


def test_two_profiles_never_see_each_others_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    store(ACME).set("d365", {"client_secret": ACME_SECRET})
    store(ACME).set("ukg", UKG)
    monkeypatch.setenv("UKG2D365_GLOBEX_D365_CLIENT_SECRET", GLOBEX_SECRET)
    assert resolve_d365(scope=ACME).client_secret == ACME_SECRET
    assert resolve_d365(scope=GLOBEX).client_secret == GLOBEX_SECRET
    assert resolve_ukg(scope=ACME).password == UKG["password"]
    with pytest.raises(CredentialError, match=r"^no UKG username, password, customer API key for credential "
                                              r"profile globex: run `ukg2d365 credentials set ukg --profile globex`"):
        resolve_ukg(scope=GLOBEX)  # acme has UKG secrets; globex has none of its own
    assert store(GLOBEX).get("d365", "client_secret") is None  # globex's env var is not acme's store either
    monkeypatch.delenv("UKG2D365_GLOBEX_D365_CLIENT_SECRET")
    store(GLOBEX).set("d365", {"client_secret": GLOBEX_SECRET})
    assert store(ACME).delete("d365") == ["client_secret"]
    with pytest.raises(CredentialError, match="no D365 client secret for credential profile acme"):
        resolve_d365(scope=ACME)  # globex's stored secret is still there, and never acme's
    assert resolve_ukg(scope=ACME).username == "svc-acme"  # deleting acme's d365 left its ukg alone


def test_the_global_scope_never_reads_a_profiles_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    store(ACME).set("d365", {"client_secret": ACME_SECRET})
    monkeypatch.setenv("UKG2D365_ACME_D365_CLIENT_SECRET", ACME_SECRET)
    with pytest.raises(CredentialError, match=r"D365 credentials missing: UKG2D365_D365_CLIENT_SECRET"):
        resolve_d365()


def test_every_profiles_variables_differ_from_the_global_ones_and_each_others() -> None:
    profiles = [None, "acme", "acme_us", "a", "ukg", "d365", "notify", "acme_ukg", "ukg_user", "0x"]
    names = [(p, s, f.field) for p in profiles for s in SYSTEMS for f in prompt_fields(s)]
    variables = [env_var(s, f, p) for p, s, f in names]
    assert len(set(variables)) == len(variables)
    assert env_var("d365", "client_secret", "acme_us") == "UKG2D365_ACME_US_D365_CLIENT_SECRET"


@pytest.mark.parametrize("name", ["Acme", "acme-us", "acme.us", "", "_acme", "a" * 41, "acme us"])
def test_profile_names_that_could_meet_in_a_variable_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is not a credential profile name"):
        CredentialScope(name)
    data = yaml.safe_load((ROOT / "config.example.yaml").read_text(encoding="utf-8"))
    data["credentials"] = {"profile": name}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"credentials.profile: use 1 to 40 lower-case letters, digits and _"):
        load_config(path)


def test_notification_urls_and_heartbeat_come_from_the_profile_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UKG2D365_NOTIFY_URLS", "json://global.example/alerts")
    monkeypatch.setenv("UKG2D365_NOTIFY_HEARTBEAT_URL", "https://hc.example/global")
    cfg = NotifyConfig()
    assert notify.notify_urls(scope=ACME) == [] and notify.heartbeat_url(cfg, scope=ACME) is None
    assert notify.notifier(cfg, scope=ACME).where_urls_come_from() == (
        "UKG2D365_ACME_NOTIFY_URLS or run `ukg2d365 credentials set notify --profile acme`")

    store(ACME).set("notify", {"urls": "json://acme.example/a json://acme.example/b",
                               "heartbeat_url": "https://hc.example/acme"})
    monkeypatch.setenv("UKG2D365_GLOBEX_NOTIFY_URLS", "json://globex.example/alerts")
    acme, globex = notify.notifier(cfg, scope=ACME), notify.notifier(cfg, scope=GLOBEX)
    assert acme.urls == ["json://acme.example/a", "json://acme.example/b"]
    assert acme.heartbeat == "https://hc.example/acme"
    assert globex.urls == ["json://globex.example/alerts"] and globex.heartbeat is None
    assert notify.notify_urls() == ["json://global.example/alerts"]  # the global scope: as before
    # notify.heartbeat_url: env:NAME is the config's own explicit choice, whatever its profile
    monkeypatch.setenv("HC_ACME", "https://hc.example/acme-nightly")
    assert notify.heartbeat_url(NotifyConfig(heartbeat_url="env:HC_ACME"), scope=ACME) == \
        "https://hc.example/acme-nightly"


def test_an_optional_secret_of_a_profile_needs_no_master_key_when_the_file_lacks_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    store().set("notify", {"urls": "json://global.example/alerts"})
    monkeypatch.delenv("UKG2D365_MASTER_KEY")
    assert resolve_optional("notify", "urls", scope=ACME) is None  # the file holds no entry of acme's


# ---------------------------------------------------------------- the stores on disk and in the OS keyring


def test_the_file_store_keeps_profiles_apart_in_one_file_under_the_master_key(clean_env: Path) -> None:
    store().set("d365", {"client_secret": GLOBAL_SECRET})
    store(ACME).set("d365", {"client_secret": ACME_SECRET})
    store(GLOBEX).set("d365", {"client_secret": GLOBEX_SECRET})
    assert [p.name for p in clean_env.parent.iterdir()] == ["credentials.enc"]  # one file, no temp file left
    doc = json.loads(clean_env.read_bytes())
    assert doc["cipher"] == "AES-256-GCM" and doc["kdf"]["name"] == "scrypt"
    assert set(doc["entries"]) == {"ukg2d365", "ukg2d365:acme", "ukg2d365:globex"}
    assert all(set(e) == {"d365.client_secret"} for e in doc["entries"].values())
    raw = clean_env.read_bytes()
    for secret in (GLOBAL_SECRET, ACME_SECRET, GLOBEX_SECRET):
        assert secret.encode() not in raw and base64.b64encode(secret.encode()) not in raw

    # Each value is bound to its profile: acme's ciphertext moved under globex fails authentication.
    doc["entries"]["ukg2d365:globex"]["d365.client_secret"] = doc["entries"]["ukg2d365:acme"]["d365.client_secret"]
    clean_env.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(CredentialError, match="damaged: entry d365.client_secret fails authentication"):
        resolve_d365(scope=GLOBEX)
    assert resolve_d365(scope=ACME).client_secret == ACME_SECRET

    # The same master key guards every profile: the wrong one opens none of them.
    wrong = CredentialStore(EncryptedFileKeyring(clean_env, master_key="an entirely different key"), scope=ACME)
    with pytest.raises(CredentialError, match="cannot decrypt"):
        wrong.get("d365", "client_secret")


def test_status_without_the_master_key_tells_the_profiles_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    store(ACME).set("d365", {"client_secret": ACME_SECRET})
    monkeypatch.delenv("UKG2D365_MASTER_KEY")
    acme = {(r.system, r.field): r for r in store(ACME).status()}
    globex = {(r.system, r.field): r for r in store(GLOBEX).status()}
    assert acme[("d365", "client_secret")].source == "store"
    assert globex[("d365", "client_secret")].source == "missing"


class RecordingKeyring:
    """An OS keyring stand-in (Secret Service) that records the service and username of every entry."""

    __module__ = "keyring.backends.SecretService"

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], str] = {}

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def delete_password(self, service: str, username: str) -> None:
        del self.entries[(service, username)]


def test_the_os_keyring_names_each_profiles_service_apart() -> None:
    backend: Any = RecordingKeyring()
    CredentialStore(backend).set("d365", {"client_secret": GLOBAL_SECRET})
    CredentialStore(backend, scope=ACME).set("d365", {"client_secret": ACME_SECRET})
    assert backend.entries == {("ukg2d365", "d365.client_secret"): GLOBAL_SECRET,
                               ("ukg2d365:acme", "d365.client_secret"): ACME_SECRET}
    assert resolve_d365(CredentialStore(backend, scope=ACME)).client_secret == ACME_SECRET
    assert CredentialStore(backend, scope=GLOBEX).get("d365", "client_secret") is None
    assert CredentialStore(backend, scope=ACME).delete("d365") == ["client_secret"]
    assert backend.entries == {("ukg2d365", "d365.client_secret"): GLOBAL_SECRET}


# ---------------------------------------------------------------- the credentials commands


def tenant_config(tmp_path: Path, name: str, profile: str | None) -> Path:
    data = yaml.safe_load((ROOT / "config.example.yaml").read_text(encoding="utf-8"))
    data["credentials"] = {"profile": profile}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_credentials_set_with_a_config_stores_under_its_profile(tmp_path: Path) -> None:
    runner = CliRunner()
    acme = tenant_config(tmp_path, "acme", "acme")
    result = runner.invoke(app, ["-c", str(acme), "credentials", "set", "d365"], input=ACME_SECRET + "\n")
    assert result.exit_code == 0, result.output
    assert "stored d365 credentials in encrypted file" in result.output
    assert "credential profile acme" in result.output and ACME_SECRET not in result.output
    result = runner.invoke(app, ["-c", str(acme), "credentials", "set", "d365", "--profile", "globex"],
                           input=GLOBEX_SECRET + "\n")
    assert result.exit_code == 0, result.output
    plain = tenant_config(tmp_path, "plain", None)
    assert runner.invoke(app, ["-c", str(plain), "credentials", "set", "d365"],
                         input=GLOBAL_SECRET + "\n").exit_code == 0
    assert resolve_d365(scope=ACME).client_secret == ACME_SECRET
    assert resolve_d365(scope=GLOBEX).client_secret == GLOBEX_SECRET
    assert resolve_d365().client_secret == GLOBAL_SECRET

    deleted = runner.invoke(app, ["-c", str(acme), "credentials", "delete", "d365"])
    assert deleted.exit_code == 0 and "deleted 1 stored d365 secret(s) of credential profile acme" in deleted.output
    assert resolve_d365().client_secret == GLOBAL_SECRET and store(ACME).get("d365", "client_secret") is None


def test_credentials_status_of_a_profile_names_it_and_the_global_variables_it_ignores(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    acme = tenant_config(tmp_path, "acme", "acme")
    monkeypatch.setenv("UKG2D365_D365_CLIENT_SECRET", GLOBAL_SECRET)
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["-c", str(acme), "credentials", "status"])
    assert result.exit_code == 2
    assert ("UKG2D365_D365_CLIENT_SECRET is set but not used: credential profile acme reads "
            "UKG2D365_ACME_D365_CLIENT_SECRET") in result.output
    assert "credentials set ukg|d365`" in result.output and f"-c {acme}" in result.output
    assert GLOBAL_SECRET not in result.output and GLOBAL_SECRET[-2:] not in result.output


def test_a_credentials_command_with_a_broken_config_stores_nothing(tmp_path: Path, clean_env: Path) -> None:
    broken = tmp_path / "acme.yaml"
    broken.write_text("credentials:\n  profile: Acme\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["-c", str(broken), "credentials", "set", "d365"], input=ACME_SECRET + "\n")
    assert result.exit_code == 2 and not clean_env.exists()
    bad = CliRunner().invoke(app, ["credentials", "set", "d365", "--profile", "Acme"], input=ACME_SECRET + "\n")
    assert bad.exit_code == 2 and "--profile 'Acme' is not a credential profile name" in bad.output
    assert not clean_env.exists()


def test_the_worker_says_which_credentials_each_tenant_uses_when_it_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ukg2d365.flows.scheduled import Tenant
    from ukg2d365.render import Output
    from ukg2d365.render.worker import worker_started

    tenants = [Tenant(path, load_config(path)) for path in (tenant_config(tmp_path, "acme", "acme"),
                                                              tenant_config(tmp_path, "plain", None))]
    worker_started(Output(json_mode=True), tenants, "w1", 0, "postgresql://db/ukg2d365")
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e.get("credential_profile") for e in events if e["event"] == "tenant"] == ["acme", None]


def test_an_alert_of_a_profiled_run_names_the_profiles_command_for_a_new_secret() -> None:
    report = notify.RunReport("post-payroll --due", 3, error="Entra ID rejected the client secret")
    scope = CredentialScope("acme", Path("/etc/ukg2d365/tenants/acme.yaml"))
    _, body = notify.compose(report, scope)
    assert "store a new secret with `ukg2d365 -c /etc/ukg2d365/tenants/acme.yaml credentials set ukg` (or d365)" \
        in body
