"""Entra ID client-credentials tokens for D365 F&O, through one msal ConfidentialClientApplication.

msal keeps tokens in an in-memory cache and renews them 5 minutes before expiry, so
:meth:`TokenProvider.token` asks msal on every request instead of keeping a token of its own;
long runs then never hit the "401 after an hour" failure. The app is built lazily because msal
fetches the authority's OpenID configuration in its constructor, and that network failure
belongs to the first request, not to wiring.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import msal
import requests
from msal.exceptions import MsalServiceError

from ukg2d365.config import D365Config
from ukg2d365.errors import AuthError, ConfigError, ProtocolError, RemoteUnavailable, ServingPageError
from ukg2d365.http import describe_transport_error, redact

__all__ = ["TokenProvider", "diagnose_entra_error"]

AUTH_CONNECT_TIMEOUT = 10.0
AUTH_READ_TIMEOUT_CAP = 60.0
_AADSTS = re.compile(r"AADSTS(\d+)")
# Entra says "try again later" with these; they are outages, not wrong credentials.
_TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error"})

# msal logs a token answer that is not JSON with logger.exception before re-raising it (msal/oauth2cli/
# oauth2.py, _obtain_token). With no handler configured, Python's logging.lastResort prints that record,
# traceback and answer body included, on stderr. The library-logger convention (the logging HOWTO's
# "Configuring Logging for a Library") is a NullHandler: the failure reaches the user as our one line.
logging.getLogger("msal").addHandler(logging.NullHandler())


class ConfidentialApp(Protocol):
    """The part of msal.ConfidentialClientApplication we use (tests pass a fake)."""

    def acquire_token_for_client(self, scopes: list[str]) -> dict[str, Any]: ...

    def remove_tokens_for_client(self) -> None: ...


AppFactory = Callable[..., ConfidentialApp]


class _AuthorityHttp:
    """The http_client msal calls: the run's Session, with our CA bundle, timeouts and no redirects.

    msal sends requests without a timeout when given a Session, and following a redirect could carry
    the client secret (in a 307/308 POST body) to another host, so both are pinned here.
    """

    def __init__(self, session: requests.Session, verify: bool | str, timeout: float) -> None:
        self._session = session
        self._verify = verify
        self._timeout = (min(AUTH_CONNECT_TIMEOUT, timeout), min(AUTH_READ_TIMEOUT_CAP, timeout))

    def get(self, url: str, params: Any = None, headers: Any = None, **kwargs: Any) -> requests.Response:
        return self._session.get(url, params=params, headers=headers, **self._settings(kwargs))

    def post(
        self, url: str, params: Any = None, data: Any = None, headers: Any = None, **kwargs: Any
    ) -> requests.Response:
        return self._session.post(url, params=params, data=data, headers=headers, **self._settings(kwargs))

    def close(self) -> None:
        """The Session belongs to the run, not to msal."""

    def _settings(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs.setdefault("timeout", self._timeout)
        kwargs["verify"] = self._verify
        kwargs["allow_redirects"] = False
        return kwargs


class TokenProvider:
    """Bearer tokens for D365 from Entra ID, with one-line diagnoses of what went wrong."""

    def __init__(
        self,
        cfg: D365Config,
        client_secret: str,
        http_session: requests.Session,
        app_factory: AppFactory | None = None,
        *,
        set_secret: str = "ukg2d365 credentials set d365",
    ) -> None:
        if urlsplit(cfg.authority).scheme != "https":
            raise ConfigError(
                f"d365.authority_host must be an https:// URL, got {cfg.authority_host}",
                hint="msal refuses plain http authorities, even on loopback",
            )
        self.cfg = cfg
        self._secret = client_secret
        self._set_secret = set_secret  # the command storing this run's secret (its credential profile's)
        # The caller sets http_session.verify to the resolved CA bundle (config paths are relative to the
        # config file, which D365Config alone cannot resolve). Verification is never turned off here.
        verify = http_session.verify if isinstance(http_session.verify, str) and http_session.verify else True
        self._http = _AuthorityHttp(http_session, verify, cfg.timeout_seconds)
        self._factory: AppFactory = app_factory or msal.ConfidentialClientApplication
        self._app: ConfidentialApp | None = None
        self._lock = threading.Lock()
        self.authority_host = urlsplit(cfg.authority).hostname or cfg.authority_host

    def __repr__(self) -> str:  # never show the secret, even in a debugger or a log of locals
        return f"TokenProvider(authority={self.cfg.authority!r}, client_id={self.cfg.client_id!r})"

    def token(self) -> str:
        """An access token for ``<d365.base_url>/.default`` (msal serves it from cache when still fresh)."""
        app = self._application()
        try:
            result = app.acquire_token_for_client(scopes=[self.cfg.scope])
        except requests.exceptions.RequestException as exc:
            raise self._unreachable(exc) from None
        except MsalServiceError as exc:
            raise RemoteUnavailable(
                f"Entra ID authority {self.authority_host} failed the token request ({_first_line(exc)})",
                hint="try again later",
            ) from None
        except ValueError:
            raise ServingPageError(
                f"Entra ID authority {self.authority_host} answered the token request with something "
                "that is not JSON (a proxy or login page?)",
                hint="check d365.authority_host and the proxy settings; try again later",
            ) from None
        except Exception as exc:  # noqa: BLE001 - msal parses the remote's answer: any shape must be one line
            raise ProtocolError(
                f"Entra ID authority {self.authority_host} answered the token request with JSON that is not a "
                f"token response ({type(exc).__name__} in msal)",
                hint="check d365.authority_host and the proxy settings",
            ) from None
        token = result.get("access_token") if isinstance(result, Mapping) else None
        if isinstance(token, str) and token:
            return token
        raise self._refusal(result if isinstance(result, Mapping) else {})

    def invalidate(self) -> None:
        """Drop msal's cached app tokens, so the next token() asks Entra ID for a new one."""
        with self._lock:
            app = self._app
        if app is None:
            return
        try:
            app.remove_tokens_for_client()
        except Exception:  # noqa: BLE001 - an alias lookup can fail offline; a new app has an empty cache
            with self._lock:
                self._app = None

    def apply(self, prepared: requests.PreparedRequest) -> None:
        """HttpClient auth hook: a fresh Authorization header on every attempt."""
        prepared.headers["Authorization"] = f"Bearer {self.token()}"

    # -- internals

    def _application(self) -> ConfidentialApp:
        with self._lock:
            if self._app is None:
                self._app = self._build()
            return self._app

    def _build(self) -> ConfidentialApp:
        kwargs: dict[str, Any] = {
            "client_id": self.cfg.client_id,
            "authority": self.cfg.authority,
            "client_credential": self._secret,
            "http_client": self._http,
        }
        if not self.cfg.authority_is_microsoft:
            # Otherwise msal asks login.microsoftonline.com whether this host is a known authority.
            kwargs["instance_discovery"] = False
            kwargs["validate_authority"] = False
        try:
            return self._factory(**kwargs)
        except requests.exceptions.RequestException as exc:
            raise self._unreachable(exc) from None
        except (ValueError, RuntimeError, MsalServiceError) as exc:
            raise self._discovery_failed(_chain_text(exc)) from None

    def _unreachable(self, exc: requests.exceptions.RequestException) -> RemoteUnavailable:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        reason = f"HTTP {status}" if status else describe_transport_error(exc)
        return RemoteUnavailable(
            f"cannot reach the Entra ID authority {self.authority_host}: {reason}",
            hint="check d365.authority_host, the proxy settings and the network",
        )

    def _discovery_failed(self, text: str) -> AuthError | ProtocolError:
        code = _aadsts(text)
        if code == "90002":
            return AuthError(
                f"Entra ID tenant {self.cfg.tenant_id} not found (AADSTS90002)",
                hint="check d365.tenant_id (the Directory (tenant) ID of the app registration)",
            )
        status = re.search(r"HTTP status: (\d+)", text)
        if status:
            return AuthError(
                f"Entra ID authority {self.authority_host} refused the OpenID configuration request for "
                f"tenant {self.cfg.tenant_id} (HTTP {status.group(1)})",
                hint="check d365.tenant_id and d365.authority_host",
            )
        return ProtocolError(
            f"cannot read the OpenID configuration of {self.cfg.authority} "
            "(expected JSON at <authority>/v2.0/.well-known/openid-configuration)",
            hint="check d365.authority_host and d365.tenant_id",
        )

    def _refusal(self, result: Mapping[str, Any]) -> AuthError | RemoteUnavailable:
        error = str(result.get("error") or "unknown_error")
        description = str(result.get("error_description") or "")
        if error in _TRANSIENT_ERRORS:
            return RemoteUnavailable(
                f"Entra ID authority {self.authority_host} is unavailable ({error})", hint="try again later"
            )
        message, hint = diagnose_entra_error(error, description, self.cfg, set_secret=self._set_secret)
        return AuthError(message, hint=hint)


def diagnose_entra_error(error: str, description: str, cfg: D365Config, *,
                         set_secret: str = "ukg2d365 credentials set d365") -> tuple[str, str | None]:
    """One line (and a hint) from an Entra error response, keyed on its AADSTS code; never the secret.

    ``set_secret`` is the command that stores the secret this run used (with a credential profile, that profile's).
    """
    code = _aadsts(description)
    known: dict[str, tuple[str, str]] = {
        "7000215": (
            "Entra ID rejected the client secret (AADSTS7000215: invalid secret)",
            f"store the secret's Value, not its Secret ID: {set_secret}",
        ),
        "7000222": (
            "the D365 client secret has expired (AADSTS7000222)",
            f"create a new secret on the app registration and run: {set_secret}",
        ),
        "700016": (
            f"application {cfg.client_id} was not found in tenant {cfg.tenant_id} (AADSTS700016)",
            "check d365.client_id and d365.tenant_id against the app registration",
        ),
        "90002": (
            f"Entra ID tenant {cfg.tenant_id} not found (AADSTS90002)",
            "check d365.tenant_id",
        ),
        "500011": (
            f"resource {cfg.base_url} was not found in tenant {cfg.tenant_id} (AADSTS500011)",
            "check d365.base_url: it must be the environment URL, without a trailing slash or /data",
        ),
        "7000112": (
            f"application {cfg.client_id} is disabled in tenant {cfg.tenant_id} (AADSTS7000112)",
            "ask the Entra ID administrator to enable the app registration",
        ),
        "53003": (
            "Entra ID Conditional Access blocked the token request (AADSTS53003)",
            "ask the Entra ID administrator to exclude this service principal or its location",
        ),
    }
    if code in known:
        return known[code]
    detail = _first_line_of(description)
    label = f"{error}: {detail}" if detail else error
    return (
        f"Entra ID refused the token request ({label})",
        "check d365.tenant_id, d365.client_id and the secret",
    )


def _aadsts(text: str) -> str | None:
    match = _AADSTS.search(text)
    return match.group(1) if match else None


def _first_line_of(text: str, limit: int = 200) -> str:
    line = redact(text).strip().splitlines()[0] if text.strip() else ""
    # Entra appends "Trace ID: ... Correlation ID: ... Timestamp: ..." which only helps Microsoft support.
    line = re.split(r"\s+Trace ID:", line)[0]
    return line[:limit]


def _chain_text(exc: BaseException) -> str:
    """Text of an exception and those it replaced: msal re-raises discovery failures without the status."""
    texts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(texts) < 5:
        texts.append(str(current))
        current = current.__cause__ or current.__context__
    return " | ".join(texts)


def _first_line(exc: BaseException) -> str:
    return _first_line_of(str(exc)) or type(exc).__name__
