"""Secrets: environment variables first, then the credential store; globally or per credential profile.

A config without ``credentials.profile`` uses the global secrets: ``UKG2D365_<SYSTEM>_<FIELD>``, then the store.
A config with ``credentials.profile: acme`` uses only that profile's: ``UKG2D365_ACME_<SYSTEM>_<FIELD>``, then
the store's entries of service ``ukg2d365:acme``; never the global ones nor another profile's. One worker
process has one environment and one store for every tenant it serves: a fallback would send one customer's
secret to another customer's D365 or UKG.

The store is ``keyring`` (service ``ukg2d365``, or ``ukg2d365:<profile>``; one entry per field such as
``ukg.password``). When the active keyring backend is a real OS keyring (Secret Service, KWallet, macOS
Keychain, Windows Credential Locker) it is used as is. A headless Linux server has none, so there the store is
:class:`EncryptedFileKeyring`: a JSON file whose values are AES-256-GCM encrypted under a key derived
with scrypt from a *master key* that cron or systemd can supply without a prompt:

1. ``UKG2D365_MASTER_KEY`` (the key itself), or
2. ``UKG2D365_MASTER_KEY_FILE`` (a file holding it), or
3. systemd ``LoadCredential=ukg2d365-master-key:/path`` (read from ``$CREDENTIALS_DIRECTORY``).

``UKG2D365_CREDENTIALS_BACKEND=file`` forces the encrypted file even where an OS keyring exists (a
desktop keyring is usually locked while cron runs); ``keyring`` forces the OS keyring.
Nothing is ever written to disk in plaintext, and no message or repr ever shows a secret.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import getpass
import json
import os
import re
import secrets
import shlex
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import keyring
import keyring.errors
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from keyring.backend import KeyringBackend
from keyring.compat import properties

from ukg2d365.config import PROFILE_PATTERN, PROFILE_RULE, Config
from ukg2d365.errors import CredentialError, UsageError

SERVICE = "ukg2d365"
ENV_PREFIX = "UKG2D365"
CREDENTIALS_FILE_ENV = "UKG2D365_CREDENTIALS_FILE"
BACKEND_ENV = "UKG2D365_CREDENTIALS_BACKEND"
MASTER_KEY_ENV = "UKG2D365_MASTER_KEY"
MASTER_KEY_FILE_ENV = "UKG2D365_MASTER_KEY_FILE"
SYSTEMD_CREDENTIAL_NAME = "ukg2d365-master-key"
DEFAULT_CREDENTIALS_FILE = "~/.config/ukg2d365/credentials.enc"
MIN_MASTER_KEY_LENGTH = 16
MASK = "••••••"

# scrypt cost: ~32 MiB and ~0.1 s per derivation, paid once per run. Stored in the file so it can be
# raised later without breaking existing files; bounded on read so a tampered file cannot make us
# allocate gigabytes.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1
_SCRYPT_MAX_N = 2**20
_FILE_FORMAT = "ukg2d365-credentials"
_FILE_VERSION = 1
# A known plaintext encrypted at file creation: lets us tell "wrong master key" apart from "damaged
# entry" and refuse to add entries under a different key than the ones already in the file.
_CHECK_PLAINTEXT = b"ukg2d365 master key check"
_CHECK_AAD = b"ukg2d365\x00check"


class PromptField(NamedTuple):
    """One secret the CLI asks for: ``credentials set <system>``."""

    field: str
    label: str
    secret: bool  # hidden input
    optional: bool  # Enter leaves it unset


_FIELDS: dict[str, tuple[PromptField, ...]] = {
    "ukg": (
        PromptField("username", "UKG web service account username", secret=False, optional=False),
        PromptField("password", "UKG web service account password", secret=True, optional=False),
        PromptField("customer_api_key", "UKG Customer API Key (5 characters)", secret=True, optional=False),
        PromptField("user_api_key", "UKG User API Key (12 characters, optional)", secret=True, optional=True),
    ),
    "d365": (PromptField("client_secret", "Entra ID app client secret", secret=True, optional=False),),
    # Apprise URLs and the heartbeat URL carry tokens (a webhook key, a mail password, a check's UUID).
    "notify": (
        PromptField("urls", "Apprise notification URLs (separated by spaces)", secret=True, optional=True),
        PromptField("heartbeat_url", "Heartbeat URL pinged after each successful run (optional)", secret=True,
                    optional=True),
    ),
}
SYSTEMS = tuple(_FIELDS)


def prompt_fields(system: str) -> list[PromptField]:
    """The fields ``credentials set <system>`` prompts for, in order."""
    return list(_fields(system))


def env_var(system: str, field: str, profile: str | None = None) -> str:
    """``UKG2D365_UKG_PASSWORD`` for ("ukg", "password"); ``UKG2D365_ACME_UKG_PASSWORD`` for profile acme."""
    return "_".join([ENV_PREFIX, *([profile] if profile else []), system, field]).upper()


def entry_name(system: str, field: str) -> str:
    """The keyring username under the service (``ukg2d365`` or ``ukg2d365:<profile>``): ``ukg.password``."""
    return f"{system}.{field}"


# ---------------------------------------------------------------- credential profiles (the rule: config.py)

def check_profile(name: str, source: str = "--profile") -> str:
    """The profile name, or UsageError naming ``source`` and the rule."""
    if not PROFILE_PATTERN.match(name):
        raise UsageError(f"{source} {name!r} is not a credential profile name", hint=PROFILE_RULE)
    return name


def service_name(profile: str | None) -> str:
    """The keyring service of a profile's entries: ``ukg2d365:acme``; ``ukg2d365`` for the global ones."""
    return SERVICE if profile is None else f"{SERVICE}:{profile}"


@dataclass(frozen=True)
class CredentialScope:
    """Whose secrets a run uses: the global ones (``profile`` None) or one credential profile's.

    ``config_path`` only shapes the command a message names (``ukg2d365 -c acme.yaml credentials set d365``).
    """

    profile: str | None = None
    config_path: Path | None = None

    def __post_init__(self) -> None:
        if self.profile is not None:
            check_profile(self.profile, "credentials.profile")

    @classmethod
    def of(cls, config: Config) -> CredentialScope:
        """The scope ``credentials.profile`` of a loaded config names."""
        return cls(config.credentials.profile, config.source_path)

    @property
    def service(self) -> str:
        return service_name(self.profile)

    def env_var(self, system: str, field: str) -> str:
        return env_var(system, field, self.profile)

    def describe(self) -> str:
        return "the global credentials" if self.profile is None else f"credential profile {self.profile}"

    def set_command(self, system: str) -> str:
        """The command that stores this scope's secrets of ``system``."""
        if self.profile is None:
            return f"ukg2d365 credentials set {system}"
        if self.config_path is not None:
            return f"ukg2d365 -c {shlex.quote(str(self.config_path))} credentials set {system}"
        return f"ukg2d365 credentials set {system} --profile {self.profile}"


GLOBAL = CredentialScope()


def mask(value: str | None) -> str:
    """Fixed-width bullets plus, for values of 10+ characters, the last 2 (never the length)."""
    if not value:
        return ""
    if len(value) >= 10:
        return MASK + value[-2:]
    return MASK


def _fields(system: str) -> tuple[PromptField, ...]:
    try:
        return _FIELDS[system]
    except KeyError:
        raise UsageError(f"unknown credential system {system!r}: use one of {', '.join(SYSTEMS)}") from None


# ---------------------------------------------------------------- resolved credentials


@dataclass(frozen=True, repr=False)
class UkgCredentials:
    username: str
    password: str
    customer_api_key: str
    user_api_key: str | None = None
    # Where they came from: a 401's diagnosis names this scope's variables, never a value.
    scope: CredentialScope = dataclasses.field(default=GLOBAL, compare=False)

    def __repr__(self) -> str:
        return (
            f"UkgCredentials(username={mask(self.username)!r}, password={mask(self.password)!r}, "
            f"customer_api_key={mask(self.customer_api_key)!r}, "
            f"user_api_key={mask(self.user_api_key) if self.user_api_key else None!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True, repr=False)
class D365Credentials:
    client_secret: str

    def __repr__(self) -> str:
        return f"D365Credentials(client_secret={mask(self.client_secret)!r})"

    __str__ = __repr__


def resolve_ukg(store: CredentialStore | None = None, *, scope: CredentialScope | None = None) -> UkgCredentials:
    """UKG credentials from the scope's env vars, else its store entries; CredentialError naming what is missing."""
    scope = _scope_of(store, scope)
    values = _resolve("ukg", store, scope)
    return UkgCredentials(
        username=values["username"],
        password=values["password"],
        customer_api_key=values["customer_api_key"],
        user_api_key=values.get("user_api_key"),
        scope=scope,
    )


def resolve_d365(store: CredentialStore | None = None, *, scope: CredentialScope | None = None) -> D365Credentials:
    """The D365 client secret from the scope's env var, else its store entry; CredentialError when missing."""
    scope = _scope_of(store, scope)
    return D365Credentials(client_secret=_resolve("d365", store, scope)["client_secret"])


def _scope_of(store: CredentialStore | None, scope: CredentialScope | None) -> CredentialScope:
    if store is not None and scope is not None and store.scope.profile != scope.profile:
        raise ValueError(f"a store of {store.scope.describe()} cannot resolve {scope.describe()}")
    return scope or (store.scope if store is not None else GLOBAL)


def _resolve(system: str, store: CredentialStore | None, scope: CredentialScope) -> dict[str, str]:
    values: dict[str, str] = {}
    for spec in _fields(system):
        value = _from_env(scope.env_var(system, spec.field))
        if value is None:
            # The store is opened only when env does not cover everything: a cron job configured
            # through env vars never needs a keyring or a master key.
            if store is None:
                store = CredentialStore(scope=scope)
            value = store.get(system, spec.field)
        if value:
            values[spec.field] = value
    missing = [s.field for s in _fields(system) if not s.optional and s.field not in values]
    if missing:
        raise _missing(system, missing, scope)
    return values


def missing_secrets(system: str, *, scope: CredentialScope = GLOBAL,
                    environ: Mapping[str, str] | None = None) -> CredentialError | None:
    """Presence only: the error a run of ``scope`` would stop with for want of ``system``'s secrets, or None.

    Nothing is decrypted (the encrypted file lists its entries without the master key) and nothing is sent:
    a worker asks this of every tenant when it starts. A store that cannot be opened is the error itself.
    """
    store = CredentialStore(environ=environ, scope=scope)
    missing = []
    try:
        for spec in _fields(system):
            if spec.optional or _from_env(scope.env_var(system, spec.field), environ) is not None:
                continue
            backend = store.backend
            if isinstance(backend, EncryptedFileKeyring):
                present = entry_name(system, spec.field) in backend.stored_names(scope.service)
            else:
                present = store.get(system, spec.field) is not None
            if not present:
                missing.append(spec.field)
    except CredentialError as exc:
        return exc
    return _missing(system, missing, scope) if missing else None


_LABELS = {"ukg": "UKG", "d365": "D365", "notify": "notification"}


def _missing(system: str, fields: list[str], scope: CredentialScope) -> CredentialError:
    label = _LABELS.get(system, system)
    names = [scope.env_var(system, f) for f in fields]
    if scope.profile is None:
        return CredentialError(
            f"{label} credentials missing: {', '.join(names)}",
            hint=f"set the environment variable(s) or run `{scope.set_command(system)}`",
        )
    words = ", ".join(f.replace("_", " ").replace("api", "API") for f in fields)
    return CredentialError(
        f"no {label} {words} for {scope.describe()}: run `{scope.set_command(system)}`",
        hint=f"or set {', '.join(names)}; a config with credentials.profile never uses the global "
        f"{env_var(system, fields[0])} nor the global stored secrets",
    )


def resolve_optional(
    system: str, field: str, *, environ: Mapping[str, str] | None = None, scope: CredentialScope = GLOBAL
) -> str | None:
    """An optional secret from the scope's env var, else its store entry; None when neither has it.

    The encrypted file is decrypted only when it holds the entry, so a run configured through env vars alone
    never needs a master key for a secret it does not use.
    """
    value = _from_env(scope.env_var(system, field), environ)
    if value is not None:
        return value
    store = CredentialStore(environ=environ, scope=scope)
    backend = store.backend
    if isinstance(backend, EncryptedFileKeyring) and entry_name(system, field) not in backend.stored_names(
            scope.service):
        return None
    return store.get(system, field)


def _from_env(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    # An empty variable counts as unset: systemd units and .env files often leave `NAME=` behind.
    value = (os.environ if environ is None else environ).get(name)
    return value or None


# ---------------------------------------------------------------- encrypted file backend


class MasterKeyMissing(CredentialError):
    """The encrypted file store is needed and no master key was supplied."""


def master_key_from_environment(environ: Mapping[str, str] | None = None) -> str | None:
    """The master key from env, a key file or systemd's credential directory (in that order)."""
    env = os.environ if environ is None else environ
    if env.get(MASTER_KEY_ENV):
        return _check_master_key(env[MASTER_KEY_ENV], MASTER_KEY_ENV)
    if env.get(MASTER_KEY_FILE_ENV):
        return _read_master_key_file(Path(env[MASTER_KEY_FILE_ENV]).expanduser(), MASTER_KEY_FILE_ENV)
    if env.get("CREDENTIALS_DIRECTORY"):
        path = Path(env["CREDENTIALS_DIRECTORY"]) / SYSTEMD_CREDENTIAL_NAME
        if path.exists():
            return _read_master_key_file(path, f"systemd credential {SYSTEMD_CREDENTIAL_NAME}")
    return None


def _read_master_key_file(path: Path, source: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CredentialError(f"master key file {path} not found (named by {source})") from None
    except PermissionError:
        raise CredentialError(
            f"cannot read master key file {path}: permission denied for user {_user()}",
            hint="the user that runs ukg2d365 must own it (mode 0600), or let systemd hand it over: "
            f"LoadCredential={SYSTEMD_CREDENTIAL_NAME}:{path}",
        ) from None
    except OSError as exc:
        raise CredentialError(f"cannot read master key file {path}: {exc.strerror or 'I/O error'}") from None
    except UnicodeDecodeError:
        raise CredentialError(f"cannot read master key file {path}: it is not text") from None
    # Editors and `echo` add a trailing newline; it is never part of the key.
    return _check_master_key(text.strip(), f"{source} ({path})")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _check_master_key(key: str, source: str) -> str:
    if len(key) < MIN_MASTER_KEY_LENGTH:
        raise CredentialError(
            f"the master key from {source} is shorter than {MIN_MASTER_KEY_LENGTH} characters",
            hint=_GENERATE_HINT,
        )
    return key


_GENERATE_HINT = "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
_SUPPLY_HINT = (
    f"supply it by one of: {MASTER_KEY_ENV}=<key>; {MASTER_KEY_FILE_ENV}=/path/to/keyfile (mode 0600); "
    f"or systemd LoadCredential={SYSTEMD_CREDENTIAL_NAME}:/path/to/keyfile"
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not a base64 string")
    return base64.b64decode(text, validate=True)


def display_path(path: Path) -> str:
    """``~/.config/...`` for paths under the home folder: shorter, and the same for every user."""
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


class EncryptedFileKeyring(KeyringBackend):
    """A keyring backend in one JSON file; every value AES-256-GCM encrypted, key from scrypt(master key).

    The entry names (``ukg.password``) are stored in clear so that ``credentials status`` can tell what
    is present without the master key; the values never are.
    """

    @properties.classproperty
    def priority(cls) -> float:
        # Not a candidate for keyring's own discovery: ukg2d365 chooses this backend explicitly, and
        # keyring must never pick it for other programs.
        raise RuntimeError("selected explicitly by ukg2d365")

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        master_key: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self._environ = os.environ if environ is None else environ
        if path is None:
            path = self._environ.get(CREDENTIALS_FILE_ENV) or DEFAULT_CREDENTIALS_FILE
        self.path = Path(path).expanduser()
        self._master_key = _check_master_key(master_key, "the master_key argument") if master_key else None
        self._derived: tuple[bytes, bytes] | None = None  # (salt, key), so scrypt runs once per run

    def __str__(self) -> str:
        return f"encrypted file {display_path(self.path)}"

    # ------------------------------------------------------------ keyring API

    def get_password(self, service: str, username: str) -> str | None:
        doc = self._load()
        if doc is None:
            return None
        entry = doc["entries"].get(service, {}).get(username)
        if entry is None:
            return None
        aesgcm = AESGCM(self._key(doc))
        plaintext = self._decrypt(aesgcm, entry, _aad(service, username))
        if plaintext is None:
            # The check value decrypted, so the key is right: this entry was altered or moved.
            raise self._damaged(f"entry {username} fails authentication")
        return plaintext.decode("utf-8")

    def set_password(self, service: str, username: str, password: str) -> None:
        self.set_passwords(service, {username: password})

    def delete_password(self, service: str, username: str) -> None:
        doc = self._load()
        if doc is None or username not in doc["entries"].get(service, {}):
            raise keyring.errors.PasswordDeleteError(f"{username} is not in {display_path(self.path)}")
        self._key(doc)  # only the holder of the master key may change the file
        del doc["entries"][service][username]
        if not doc["entries"][service]:
            del doc["entries"][service]
        self._write(doc)

    # ------------------------------------------------------------ extensions

    def set_passwords(self, service: str, values: Mapping[str, str]) -> None:
        """Store several entries with one atomic write (a `credentials set` is all or nothing)."""
        doc = self._load() or self._new_document()
        aesgcm = AESGCM(self._key(doc))
        entries = doc["entries"].setdefault(service, {})
        for username, password in values.items():
            self._validate_username(username)
            entries[username] = _encrypt(aesgcm, password.encode("utf-8"), _aad(service, username))
        self._write(doc)

    def stored_names(self, service: str) -> set[str]:
        """Entry names present in the file; needs no master key."""
        doc = self._load()
        return set(doc["entries"].get(service, {})) if doc else set()

    # ------------------------------------------------------------ internals

    def _master(self) -> str:
        key = self._master_key or master_key_from_environment(self._environ)
        if key is None:
            raise MasterKeyMissing(
                f"the credential store {display_path(self.path)} needs a master key and none is set",
                hint=_SUPPLY_HINT,
            )
        return key

    def _key(self, doc: dict[str, Any]) -> bytes:
        kdf = doc["kdf"]
        try:
            salt = _unb64(kdf["salt"])
            n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise self._damaged("bad kdf parameters") from None
        if self._derived is not None and self._derived[0] == salt:
            return self._derived[1]
        if kdf.get("name") != "scrypt" or not (2 <= n <= _SCRYPT_MAX_N and 1 <= r <= 32 and 1 <= p <= 16):
            raise self._damaged("unsupported kdf parameters")
        key = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(self._master().encode("utf-8"))
        if self._decrypt(AESGCM(key), doc["check"], _CHECK_AAD) != _CHECK_PLAINTEXT:
            raise CredentialError(
                f"cannot decrypt {display_path(self.path)} (wrong {MASTER_KEY_ENV}?)",
                hint="use the master key the file was written with, or delete the file and run "
                "`ukg2d365 credentials set` again",
            )
        self._derived = (salt, key)
        return key

    def _decrypt(self, aesgcm: AESGCM, entry: Any, aad: bytes) -> bytes | None:
        """The plaintext, or None when authentication fails (wrong key or altered ciphertext)."""
        try:
            nonce, ciphertext = _unb64(entry["nonce"]), _unb64(entry["ciphertext"])
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise self._damaged("bad entry") from None
        try:
            return aesgcm.decrypt(nonce, ciphertext, aad)
        except (InvalidTag, ValueError):
            return None

    def _damaged(self, why: str) -> CredentialError:
        return CredentialError(f"credential store {display_path(self.path)} is damaged: {why}")

    def _new_document(self) -> dict[str, Any]:
        salt = secrets.token_bytes(16)
        key = Scrypt(salt=salt, length=32, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P).derive(
            self._master().encode("utf-8")
        )
        self._derived = (salt, key)
        return {
            "format": _FILE_FORMAT,
            "version": _FILE_VERSION,
            "cipher": "AES-256-GCM",
            "kdf": {"name": "scrypt", "salt": _b64(salt), "n": _SCRYPT_N, "r": _SCRYPT_R, "p": _SCRYPT_P},
            "check": _encrypt(AESGCM(key), _CHECK_PLAINTEXT, _CHECK_AAD),
            "entries": {},
        }

    def _load(self) -> dict[str, Any] | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CredentialError(f"cannot read {display_path(self.path)}: {exc.strerror or exc}") from None
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise self._damaged("not JSON") from None
        if (
            not isinstance(doc, dict)
            or doc.get("format") != _FILE_FORMAT
            or not isinstance(doc.get("kdf"), dict)
            or not isinstance(doc.get("entries"), dict)
            or not all(isinstance(v, dict) for v in doc["entries"].values())
            or not isinstance(doc.get("check"), dict)
        ):
            raise self._damaged("not a ukg2d365 credentials file")
        if doc.get("version") != _FILE_VERSION:
            raise CredentialError(
                f"{display_path(self.path)} has format version {doc.get('version')!r}; "
                f"this ukg2d365 reads version {_FILE_VERSION}",
                hint="upgrade ukg2d365",
            )
        return doc

    def _write(self, doc: dict[str, Any]) -> None:
        parent = self.path.parent
        try:
            if not parent.exists():
                parent.mkdir(mode=0o700, parents=True)
                parent.chmod(0o700)  # mkdir's mode is filtered by the umask
            # mkstemp creates the file 0600 in the same folder, so os.replace is atomic and the file
            # is never readable by others, not even for a moment.
            fd, tmp = tempfile.mkstemp(prefix=".credentials-", suffix=".tmp", dir=parent)
        except OSError as exc:
            raise CredentialError(f"cannot write {display_path(self.path)}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(json.dumps(doc, indent=1, sort_keys=True).encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise CredentialError(f"cannot write {display_path(self.path)}: {exc.strerror or exc}") from None
        _fsync_dir(parent)


def _aad(service: str, username: str) -> bytes:
    # Binding each ciphertext to its entry name stops an attacker from swapping two encrypted values.
    return f"{service}\x00{username}".encode()


def _encrypt(aesgcm: AESGCM, plaintext: bytes, aad: bytes) -> dict[str, str]:
    nonce = secrets.token_bytes(12)  # random 96-bit nonce per value; a few dozen values per key
    return {"nonce": _b64(nonce), "ciphertext": _b64(aesgcm.encrypt(nonce, plaintext, aad))}


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------- backend selection

_NOT_OS_KEYRINGS = {
    "keyring.backends.fail.Keyring",
    "keyring.backends.null.Keyring",
    # keyrings.alt's file backends are plaintext, or prompt for a password (useless from cron).
    "keyrings.alt.file.PlaintextKeyring",
    "keyrings.alt.file.EncryptedKeyring",
}


def _qualname(backend: KeyringBackend) -> str:
    return f"{type(backend).__module__}.{type(backend).__name__}"


def _chained(backend: KeyringBackend) -> list[KeyringBackend]:
    from keyring.backends.chainer import ChainerBackend

    if isinstance(backend, ChainerBackend):
        return list(backend.backends)
    return [backend]


def is_os_keyring(backend: KeyringBackend) -> bool:
    """True for a usable OS keyring; False for fail/null/an empty chainer/plaintext backends."""
    if isinstance(backend, EncryptedFileKeyring):
        return False
    chain = _chained(backend)
    return bool(chain) and all(_qualname(b) not in _NOT_OS_KEYRINGS for b in chain)


def _os_keyring_name(backend: KeyringBackend) -> str:
    # keyring.backends.SecretService.Keyring -> "SecretService"; third-party plugins keep their class.
    names = []
    for b in _chained(backend):
        module = type(b).__module__
        names.append(module.rpartition(".")[2] if module.startswith("keyring.backends.") else _qualname(b))
    return ", ".join(names)


def select_backend(environ: Mapping[str, str] | None = None) -> KeyringBackend:
    """The OS keyring when there is a real one, else the encrypted file (see the module docstring)."""
    env = os.environ if environ is None else environ
    choice = (env.get(BACKEND_ENV) or "auto").strip().lower()
    if choice == "file":
        return EncryptedFileKeyring(environ=env)
    if choice not in ("auto", "keyring"):
        raise CredentialError(f"{BACKEND_ENV}={choice!r}: use auto, keyring or file")
    active = keyring.get_keyring()
    if is_os_keyring(active):
        return active
    if choice == "keyring":
        raise CredentialError(
            f"{BACKEND_ENV}=keyring but no OS keyring is available (keyring uses {_qualname(active)})",
            hint=f"unset {BACKEND_ENV} to use the encrypted file store",
        )
    return EncryptedFileKeyring(environ=env)


# ---------------------------------------------------------------- the store


class FieldStatus(NamedTuple):
    system: str
    field: str
    present: bool
    masked: str
    source: str  # 'env' | 'store' | 'missing'


class CredentialStore:
    """The secrets ``credentials set|status|delete`` manage, in the keyring under the scope's service.

    One scope per store: a profile's store reads and writes only service ``ukg2d365:<profile>``.
    """

    def __init__(
        self,
        backend: KeyringBackend | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        scope: CredentialScope = GLOBAL,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._backend = backend
        self.scope = scope
        self.service = scope.service

    @property
    def backend(self) -> KeyringBackend:
        # Chosen lazily: keyring's discovery talks to D-Bus, which a run driven by env vars never needs.
        if self._backend is None:
            self._backend = select_backend(self._environ)
        return self._backend

    def backend_description(self) -> str:
        backend = self.backend
        if isinstance(backend, EncryptedFileKeyring):
            return str(backend)
        return f"OS keyring: {_os_keyring_name(backend)}"

    def set(self, system: str, values: Mapping[str, str | None]) -> None:
        """Store the given fields of one system; an empty optional field removes the stored value."""
        specs = {s.field: s for s in _fields(system)}
        unknown = sorted(set(values) - set(specs))
        if unknown:
            raise UsageError(f"unknown {system} credential field(s): {', '.join(unknown)}")
        to_store: dict[str, str] = {}
        to_delete: list[str] = []
        for field, value in values.items():
            if value:
                to_store[entry_name(system, field)] = value
            elif specs[field].optional:
                to_delete.append(field)
            else:
                raise UsageError(f"{system} {field} must not be empty")
        backend = self.backend
        with _keyring_errors():
            if isinstance(backend, EncryptedFileKeyring):
                if to_store:
                    backend.set_passwords(self.service, to_store)
            else:
                for name, value in to_store.items():
                    backend.set_password(self.service, name, value)
        for field in to_delete:
            self._delete_entry(system, field)

    def get(self, system: str, field: str) -> str | None:
        """A value from the store only (env vars are the resolver's business); None when absent."""
        if field not in {s.field for s in _fields(system)}:
            raise UsageError(f"unknown {system} credential field {field!r}")
        with _keyring_errors():
            return self.backend.get_password(self.service, entry_name(system, field)) or None

    def delete(self, system: str) -> list[str]:
        """Remove every stored field of one system; returns the fields that were there."""
        return [s.field for s in _fields(system) if self._delete_entry(system, s.field)]

    def status(self) -> list[FieldStatus]:
        """Every field of every system: present or not, masked, and where it would come from."""
        rows = []
        for system in SYSTEMS:
            for spec in _fields(system):
                env_value = _from_env(self.scope.env_var(system, spec.field), self._environ)
                if env_value is not None:
                    rows.append(FieldStatus(system, spec.field, True, mask(env_value), "env"))
                    continue
                try:
                    value = self.get(system, spec.field)
                except MasterKeyMissing:
                    # Only the file store raises this, and without the master key it still knows which
                    # entries exist: report them as present, revealing nothing.
                    backend = self.backend
                    stored = (
                        backend.stored_names(self.service) if isinstance(backend, EncryptedFileKeyring) else set()
                    )
                    if entry_name(system, spec.field) in stored:
                        rows.append(FieldStatus(system, spec.field, True, MASK + " (locked)", "store"))
                        continue
                    value = None
                if value:
                    rows.append(FieldStatus(system, spec.field, True, mask(value), "store"))
                else:
                    rows.append(FieldStatus(system, spec.field, False, "", "missing"))
        return rows

    def ignored_global_env(self) -> list[tuple[str, str]]:
        """For a profile: (global variable that is set and never read here, the profile's own variable); names only."""
        if self.scope.profile is None:
            return []
        return [(env_var(system, spec.field), self.scope.env_var(system, spec.field))
                for system in SYSTEMS for spec in _fields(system)
                if _from_env(env_var(system, spec.field), self._environ) is not None]

    def _delete_entry(self, system: str, field: str) -> bool:
        name = entry_name(system, field)
        backend = self.backend
        if isinstance(backend, EncryptedFileKeyring) and name not in backend.stored_names(self.service):
            return False
        with _keyring_errors():
            try:
                backend.delete_password(self.service, name)
            except keyring.errors.PasswordDeleteError:
                return False
        return True


@contextmanager
def _keyring_errors() -> Iterator[None]:
    """Turns keyring's exceptions (locked collection, no D-Bus, ...) into a one-line CredentialError."""
    try:
        yield
    except keyring.errors.PasswordDeleteError:
        raise
    except keyring.errors.KeyringError as exc:
        detail = re.sub(r"\s+", " ", str(exc)).strip()[:200] or type(exc).__name__
        raise CredentialError(
            f"the OS keyring failed: {detail}",
            hint=f"set {BACKEND_ENV}=file to use the encrypted file store instead",
        ) from None
