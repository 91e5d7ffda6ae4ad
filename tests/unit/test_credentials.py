"""Credentials: env before store, the encrypted file backend, and that no secret ever leaks."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import keyring.backends.fail
import keyring.backends.null
import pytest

from ukg2d365 import credentials
from ukg2d365.credentials import (
    CredentialStore,
    D365Credentials,
    EncryptedFileKeyring,
    UkgCredentials,
    mask,
    prompt_fields,
    resolve_d365,
    resolve_ukg,
)
from ukg2d365.errors import CredentialError, UsageError

MASTER = "correct horse battery staple 42"
PASSWORD = "S3cr3t-Pa55word!zz"
CUSTOMER_KEY = "AB1C2"
USER_KEY = "USERKEY12345"
CLIENT_SECRET = "azure~client~secret~value~0123456789ab"

ALL_ENV = [
    "UKG2D365_UKG_USERNAME",
    "UKG2D365_UKG_PASSWORD",
    "UKG2D365_UKG_CUSTOMER_API_KEY",
    "UKG2D365_UKG_USER_API_KEY",
    "UKG2D365_D365_CLIENT_SECRET",
    "UKG2D365_MASTER_KEY",
    "UKG2D365_MASTER_KEY_FILE",
    "UKG2D365_CREDENTIALS_FILE",
    "UKG2D365_CREDENTIALS_BACKEND",
    "CREDENTIALS_DIRECTORY",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ALL_ENV:
        monkeypatch.delenv(name, raising=False)
    # Belt and braces: even a default store in these tests lands in tmp_path, never a real keyring.
    monkeypatch.setenv("UKG2D365_CREDENTIALS_BACKEND", "file")
    monkeypatch.setenv("UKG2D365_CREDENTIALS_FILE", str(tmp_path / "default" / "credentials.enc"))


@pytest.fixture
def cred_file(tmp_path: Path) -> Path:
    return tmp_path / "cfg" / "ukg2d365" / "credentials.enc"


def file_store(path: Path, master_key: str | None = None) -> CredentialStore:
    return CredentialStore(EncryptedFileKeyring(path, master_key=master_key))


def fill_ukg(store: CredentialStore, user_key: str | None = USER_KEY) -> None:
    store.set(
        "ukg",
        {
            "username": "svc-gl-export",
            "password": PASSWORD,
            "customer_api_key": CUSTOMER_KEY,
            "user_api_key": user_key,
        },
    )


# ---------------------------------------------------------------- resolution order


def test_env_vars_win_over_the_store(monkeypatch: pytest.MonkeyPatch, cred_file: Path) -> None:
    monkeypatch.setenv("UKG2D365_MASTER_KEY", MASTER)
    store = file_store(cred_file)
    fill_ukg(store)
    monkeypatch.setenv("UKG2D365_UKG_PASSWORD", "from-env-password")

    creds = resolve_ukg(store)

    assert creds.password == "from-env-password"
    assert creds.username == "svc-gl-export"  # not in env: from the store
    assert creds.user_api_key == USER_KEY
    sources = {(r.system, r.field): r.source for r in store.status()}
    assert sources[("ukg", "password")] == "env"
    assert sources[("ukg", "username")] == "store"
    assert sources[("d365", "client_secret")] == "missing"


def test_env_only_needs_no_store_and_no_master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UKG2D365_UKG_USERNAME", "svc")
    monkeypatch.setenv("UKG2D365_UKG_PASSWORD", PASSWORD)
    monkeypatch.setenv("UKG2D365_UKG_CUSTOMER_API_KEY", CUSTOMER_KEY)
    monkeypatch.setenv("UKG2D365_D365_CLIENT_SECRET", CLIENT_SECRET)
    # No master key anywhere, and the optional user key is absent: still fine.
    creds = resolve_ukg()
    assert creds == UkgCredentials("svc", PASSWORD, CUSTOMER_KEY, None)
    assert resolve_d365() == D365Credentials(CLIENT_SECRET)


def test_missing_credentials_name_the_env_var_and_the_command_not_the_value(
    monkeypatch: pytest.MonkeyPatch, cred_file: Path
) -> None:
    monkeypatch.setenv("UKG2D365_MASTER_KEY", MASTER)
    monkeypatch.setenv("UKG2D365_UKG_USERNAME", "svc-visible-name")
    monkeypatch.setenv("UKG2D365_UKG_CUSTOMER_API_KEY", CUSTOMER_KEY)
    with pytest.raises(CredentialError) as err:
        resolve_ukg(file_store(cred_file))
    message = str(err.value)
    assert "UKG2D365_UKG_PASSWORD" in message
    assert "ukg2d365 credentials set ukg" in message
    assert "UKG2D365_UKG_USERNAME" not in message  # present, so not reported
    assert CUSTOMER_KEY not in message and "svc-visible-name" not in message

    with pytest.raises(CredentialError, match="UKG2D365_D365_CLIENT_SECRET.*credentials set d365"):
        resolve_d365(file_store(cred_file))


def test_empty_env_var_counts_as_unset(monkeypatch: pytest.MonkeyPatch, cred_file: Path) -> None:
    monkeypatch.setenv("UKG2D365_MASTER_KEY", MASTER)
    store = file_store(cred_file)
    store.set("d365", {"client_secret": CLIENT_SECRET})
    monkeypatch.setenv("UKG2D365_D365_CLIENT_SECRET", "")
    assert resolve_d365(store).client_secret == CLIENT_SECRET


# ---------------------------------------------------------------- encrypted file store


def test_file_store_roundtrip_with_master_key_from_env(
    monkeypatch: pytest.MonkeyPatch, cred_file: Path
) -> None:
    monkeypatch.setenv("UKG2D365_MASTER_KEY", MASTER)
    fill_ukg(file_store(cred_file))
    file_store(cred_file).set("d365", {"client_secret": CLIENT_SECRET})

    fresh = file_store(cred_file)  # a new process: derives the key again from the salt in the file
    assert resolve_ukg(fresh) == UkgCredentials("svc-gl-export", PASSWORD, CUSTOMER_KEY, USER_KEY)
    assert resolve_d365(fresh).client_secret == CLIENT_SECRET


def test_file_store_roundtrip_with_master_key_file(
    monkeypatch: pytest.MonkeyPatch, cred_file: Path, tmp_path: Path
) -> None:
    key_file = tmp_path / "master.key"
    key_file.write_text(MASTER + "\n")  # trailing newline from `echo` is not part of the key
    monkeypatch.setenv("UKG2D365_MASTER_KEY_FILE", str(key_file))
    fill_ukg(file_store(cred_file))

    monkeypatch.delenv("UKG2D365_MASTER_KEY_FILE")
    monkeypatch.setenv("UKG2D365_MASTER_KEY", MASTER)  # same key, other channel
    assert file_store(cred_file).get("ukg", "password") == PASSWORD


def test_master_key_from_systemd_credentials_directory(
    monkeypatch: pytest.MonkeyPatch, cred_file: Path, tmp_path: Path
) -> None:
    creds_dir = tmp_path / "run-credentials"
    creds_dir.mkdir()
    (creds_dir / "ukg2d365-master-key").write_text(MASTER)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds_dir))
    fill_ukg(file_store(cred_file))
    assert file_store(cred_file).get("ukg", "customer_api_key") == CUSTOMER_KEY


def test_env_master_key_takes_precedence_over_key_file(
    monkeypatch: pytest.MonkeyPatch, cred_file: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv("UKG2D365_MASTER_KEY_FILE", str(tmp_path / "does-not-exist"))
    monkeypatch.setenv("UKG2D365_MASTER_KEY", MASTER)
    fill_ukg(file_store(cred_file))
    assert file_store(cred_file, master_key=MASTER).get("ukg", "password") == PASSWORD


def test_wrong_master_key_says_cannot_decrypt(monkeypatch: pytest.MonkeyPatch, cred_file: Path) -> None:
    monkeypatch.setenv("UKG2D365_MASTER_KEY", MASTER)
    fill_ukg(file_store(cred_file))
    monkeypatch.setenv("UKG2D365_MASTER_KEY", "an entirely different master key")

    with pytest.raises(CredentialError, match=r"cannot decrypt .*wrong UKG2D365_MASTER_KEY\?") as err:
        file_store(cred_file).get("ukg", "password")
    assert MASTER not in str(err.value) and "different" not in str(err.value)
    # Writing under another key is refused too, so a file never mixes keys.
    before = cred_file.read_bytes()
    with pytest.raises(CredentialError, match="cannot decrypt"):
        file_store(cred_file).set("d365", {"client_secret": CLIENT_SECRET})
    assert cred_file.read_bytes() == before


def test_no_master_key_explains_the_three_ways(monkeypatch: pytest.MonkeyPatch, cred_file: Path) -> None:
    with pytest.raises(CredentialError) as err:
        fill_ukg(file_store(cred_file))
    message = str(err.value)
    assert "UKG2D365_MASTER_KEY=" in message
    assert "UKG2D365_MASTER_KEY_FILE=" in message
    assert "LoadCredential=ukg2d365-master-key" in message
    assert not cred_file.exists()


def test_no_file_yet_means_missing_not_a_master_key_error(cred_file: Path) -> None:
    with pytest.raises(CredentialError, match="UKG2D365_UKG_USERNAME"):
        resolve_ukg(file_store(cred_file))


def test_short_master_key_is_refused(monkeypatch: pytest.MonkeyPatch, cred_file: Path) -> None:
    monkeypatch.setenv("UKG2D365_MASTER_KEY", "short")
    with pytest.raises(CredentialError, match="shorter than 16 characters"):
        file_store(cred_file).set("d365", {"client_secret": CLIENT_SECRET})


def test_file_is_0600_in_a_0700_folder_and_no_temp_file_is_left(
    monkeypatch: pytest.MonkeyPatch, cred_file: Path
) -> None:
    monkeypatch.setenv("UKG2D365_MASTER_KEY", MASTER)
    old_umask = os.umask(0o022)  # a permissive umask must not widen the modes
    try:
        fill_ukg(file_store(cred_file))
        file_store(cred_file).set("d365", {"client_secret": CLIENT_SECRET})
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(cred_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cred_file.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in cred_file.parent.iterdir()) == ["credentials.enc"]


def test_ciphertext_contains_no_plaintext(monkeypatch: pytest.MonkeyPatch, cred_file: Path) -> None:
    monkeypatch.setenv("UKG2D365_MASTER_KEY", MASTER)
    fill_ukg(file_store(cred_file))
    file_store(cred_file).set("d365", {"client_secret": CLIENT_SECRET})

    raw = cred_file.read_bytes()
    for secret in (PASSWORD, CUSTOMER_KEY, USER_KEY, CLIENT_SECRET, MASTER, "svc-gl-export"):
        assert secret.encode() not in raw
        assert secret.encode("utf-16-le") not in raw
    doc = json.loads(raw)
    assert doc["cipher"] == "AES-256-GCM" and doc["kdf"]["name"] == "scrypt"


def test_each_file_gets_its_own_salt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("UKG2D365_MASTER_KEY", MASTER)
    a, b = tmp_path / "a.enc", tmp_path / "b.enc"
    file_store(a).set("d365", {"client_secret": CLIENT_SECRET})
    file_store(b).set("d365", {"client_secret": CLIENT_SECRET})
    assert json.loads(a.read_bytes())["kdf"]["salt"] != json.loads(b.read_bytes())["kdf"]["salt"]


def test_swapped_ciphertexts_are_detected(monkeypatch: pytest.MonkeyPatch, cred_file: Path) -> None:
    monkeypatch.setenv("UKG2D365_MASTER_KEY", MASTER)
    fill_ukg(file_store(cred_file))
    doc = json.loads(cred_file.read_bytes())
    entries = doc["entries"]["ukg2d365"]
    entries["ukg.password"], entries["ukg.username"] = entries["ukg.username"], entries["ukg.password"]
    cred_file.write_text(json.dumps(doc))
    with pytest.raises(CredentialError, match="damaged"):
        file_store(cred_file).get("ukg", "password")


def test_damaged_file_is_a_credential_error(monkeypatch: pytest.MonkeyPatch, cred_file: Path) -> None:
    monkeypatch.setenv("UKG2D365_MASTER_KEY", MASTER)
    cred_file.parent.mkdir(parents=True)
    cred_file.write_text("{not json")
    with pytest.raises(CredentialError, match="damaged"):
        file_store(cred_file).get("ukg", "password")


def test_default_path_honours_credentials_file_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "creds.enc"
    monkeypatch.setenv("UKG2D365_CREDENTIALS_FILE", str(target))
    monkeypatch.setenv("UKG2D365_MASTER_KEY", MASTER)
    store = CredentialStore()
    store.set("d365", {"client_secret": CLIENT_SECRET})
    assert target.exists()
    assert store.backend_description() == f"encrypted file {target}"


def test_default_file_path_is_shown_with_tilde(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("UKG2D365_CREDENTIALS_FILE")
    monkeypatch.setenv("HOME", str(tmp_path))
    store = CredentialStore()
    assert store.backend_description() == "encrypted file ~/.config/ukg2d365/credentials.enc"


# ---------------------------------------------------------------- store operations


def test_set_delete_and_optional_field_removal(monkeypatch: pytest.MonkeyPatch, cred_file: Path) -> None:
    monkeypatch.setenv("UKG2D365_MASTER_KEY", MASTER)
    store = file_store(cred_file)
    fill_ukg(store)
    store.set("ukg", {"user_api_key": None})  # Enter at the optional prompt removes it
    assert store.get("ukg", "user_api_key") is None
    assert store.get("ukg", "password") == PASSWORD  # other fields untouched

    assert store.delete("ukg") == ["username", "password", "customer_api_key"]
    assert store.delete("ukg") == []
    assert store.get("ukg", "password") is None


def test_set_rejects_unknown_fields_and_empty_required_values(
    monkeypatch: pytest.MonkeyPatch, cred_file: Path
) -> None:
    monkeypatch.setenv("UKG2D365_MASTER_KEY", MASTER)
    store = file_store(cred_file)
    with pytest.raises(UsageError, match="unknown ukg credential field"):
        store.set("ukg", {"pasword": "x"})
    with pytest.raises(UsageError, match="must not be empty"):
        store.set("ukg", {"password": ""})
    with pytest.raises(UsageError, match="unknown credential system"):
        store.set("adp", {"password": "x"})


def test_status_masks_values_and_names_sources(monkeypatch: pytest.MonkeyPatch, cred_file: Path) -> None:
    monkeypatch.setenv("UKG2D365_MASTER_KEY", MASTER)
    store = file_store(cred_file)
    fill_ukg(store, user_key=None)
    monkeypatch.setenv("UKG2D365_D365_CLIENT_SECRET", CLIENT_SECRET)

    rows = {(r.system, r.field): r for r in store.status()}
    assert rows[("ukg", "password")] == ("ukg", "password", True, "••••••zz", "store")
    assert rows[("ukg", "customer_api_key")].masked == "••••••"  # short: nothing revealed
    assert rows[("ukg", "user_api_key")] == ("ukg", "user_api_key", False, "", "missing")
    assert rows[("d365", "client_secret")] == ("d365", "client_secret", True, "••••••ab", "env")
    text = repr(store.status())
    for secret in (PASSWORD, CUSTOMER_KEY, CLIENT_SECRET):
        assert secret not in text


def test_status_without_master_key_shows_presence_but_nothing_else(
    monkeypatch: pytest.MonkeyPatch, cred_file: Path
) -> None:
    file_store(cred_file, master_key=MASTER).set("d365", {"client_secret": CLIENT_SECRET})
    rows = {(r.system, r.field): r for r in file_store(cred_file).status()}
    assert rows[("d365", "client_secret")].present is True
    assert rows[("d365", "client_secret")].source == "store"
    assert "ab" not in rows[("d365", "client_secret")].masked
    assert rows[("ukg", "password")].source == "missing"


# ---------------------------------------------------------------- masking and prompts


def test_repr_masks_every_value() -> None:
    ukg = UkgCredentials("svc-gl-export", PASSWORD, CUSTOMER_KEY, USER_KEY)
    d365 = D365Credentials(CLIENT_SECRET)
    for text in (repr(ukg), str(ukg), f"{ukg}", repr(d365), str(d365), repr([ukg, d365])):
        for secret in (PASSWORD, CUSTOMER_KEY, USER_KEY, CLIENT_SECRET, "svc-gl-export"):
            assert secret not in text
    assert "user_api_key=None" in repr(UkgCredentials("u", "p", "k", None))


def test_mask_reveals_at_most_the_last_two_characters() -> None:
    assert mask("0123456789ab01") == "••••••01"
    assert mask("AB1C2") == "••••••"
    assert mask("") == ""
    assert mask(None) == ""
    assert len(mask("x" * 10)) == len(mask("x" * 200))  # the length is not revealed


def test_prompt_fields() -> None:
    ukg = prompt_fields("ukg")
    assert [f.field for f in ukg] == ["username", "password", "customer_api_key", "user_api_key"]
    assert [f.optional for f in ukg] == [False, False, False, True]
    assert all(f.secret for f in ukg[1:])
    assert prompt_fields("d365") == [
        credentials.PromptField("client_secret", "Entra ID app client secret", secret=True, optional=False)
    ]


# ---------------------------------------------------------------- backend selection


def test_no_os_keyring_falls_back_to_the_encrypted_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UKG2D365_CREDENTIALS_BACKEND")
    monkeypatch.setattr(credentials.keyring, "get_keyring", lambda: keyring.backends.fail.Keyring())
    assert isinstance(credentials.select_backend(), EncryptedFileKeyring)
    monkeypatch.setattr(credentials.keyring, "get_keyring", lambda: keyring.backends.null.Keyring())
    assert isinstance(credentials.select_backend(), EncryptedFileKeyring)


def test_a_real_os_keyring_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    # Deliberately not a KeyringBackend subclass: subclasses register themselves in keyring's global
    # discovery list, which would leak into every later test.
    class FakeSecretService:
        def get_password(self, service: str, username: str) -> str | None:
            return None

    FakeSecretService.__module__ = "keyring.backends.SecretService"
    fake: Any = FakeSecretService()
    monkeypatch.delenv("UKG2D365_CREDENTIALS_BACKEND")
    monkeypatch.setattr(credentials.keyring, "get_keyring", lambda: fake)
    store = CredentialStore()
    assert store.backend is fake
    assert store.backend_description() == "OS keyring: SecretService"


def test_forcing_keyring_without_one_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UKG2D365_CREDENTIALS_BACKEND", "keyring")
    monkeypatch.setattr(credentials.keyring, "get_keyring", lambda: keyring.backends.fail.Keyring())
    with pytest.raises(CredentialError, match="no OS keyring"):
        credentials.select_backend()


def test_keyring_errors_become_credential_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    store = CredentialStore(keyring.backends.fail.Keyring())
    with pytest.raises(CredentialError, match="OS keyring failed"):
        store.get("ukg", "password")


def test_our_backend_is_never_picked_by_keyring_discovery() -> None:
    assert EncryptedFileKeyring not in set(keyring.backend.KeyringBackend.get_viable_backends())


def test_a_master_key_file_the_user_cannot_read_says_who_and_how_to_fix_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key_file = tmp_path / "master.key"
    key_file.write_text(MASTER)
    original = Path.read_text

    def denied(self: Path, *args: Any, **kwargs: Any) -> str:
        if self == key_file:  # root reads any file: the refusal a service user meets is simulated
            raise PermissionError(13, "Permission denied", str(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(CredentialError) as caught:
        credentials.master_key_from_environment({"UKG2D365_MASTER_KEY_FILE": str(key_file)})
    message = str(caught.value)
    assert message.startswith(f"cannot read master key file {key_file}: permission denied for user ")
    assert "must own it (mode 0600)" in message and "LoadCredential=ukg2d365-master-key:" in message
    assert "PermissionError" not in message
