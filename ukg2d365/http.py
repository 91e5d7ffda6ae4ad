"""One place for HTTP: sessions, timeouts, TLS, retry/backoff (429 Retry-After), host pinning, redaction.

Both remote clients go through :class:`HttpClient`. The rules that keep a payroll run safe live here:

* credentials are only ever attached to URLs on the configured host (nextLinks and redirects cannot
  carry a token elsewhere);
* a write is retried only when the server said it did not process it (429/503) or the request never
  left this machine; anything else that leaves the outcome unknown raises :class:`AmbiguousWriteError`;
* every wait is charged to one run-wide :class:`RetryBudget`, so a throttled run ends (exit 4)
  instead of hanging a cron slot for hours;
* the retry loop is tenacity's (https://github.com/jd/tenacity): our rules are its retry, wait and stop
  hooks (:meth:`HttpClient._retrying`);
* JSON is decoded with ``Decimal`` so amounts never pass through float.
"""

from __future__ import annotations

import json
import random
import re
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO, Protocol
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
import tenacity
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from ukg2d365 import __version__
from ukg2d365.errors import AmbiguousWriteError, ProtocolError, RemoteUnavailable, ServingPageError

__all__ = [
    "HttpClient",
    "RetryBudget",
    "RetryPolicy",
    "build_session",
    "decode_json",
    "describe_transport_error",
    "dumps_json",
    "redact",
    "safe_location",
]

USER_AGENT = f"ukg2d365/{__version__}"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The server promises it did not process these, so even a write may be sent again.
NOT_PROCESSED_STATUSES = frozenset({429, 503})
# A read can be repeated after any of these; a write cannot (the backend may have committed).
TRANSIENT_READ_STATUSES = frozenset({500, 502, 504})
# A gateway gave up waiting for the backend: the write may have been committed behind it.
AMBIGUOUS_WRITE_STATUSES = frozenset({502, 504})
CONNECT_TIMEOUT_CAP = 10.0
DEFAULT_PORTS = {"https": 443, "http": 80}

Auth = Callable[[requests.PreparedRequest], None]
EventSink = Callable[[dict[str, Any]], None]


# ---------------------------------------------------------------- policy and budget


class HttpSettings(Protocol):
    """The retry settings a policy is built from; config.HttpConfig has them, and http.py need not import it."""

    max_attempts: int
    backoff_base_seconds: float
    backoff_max_seconds: float
    max_retry_after_seconds: float
    retry_budget_seconds: float


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_retry_after: float = 300.0
    budget_seconds: float = 900.0

    @classmethod
    def from_config(cls, cfg: HttpSettings) -> RetryPolicy:
        return cls(
            max_attempts=cfg.max_attempts,
            backoff_base=cfg.backoff_base_seconds,
            backoff_max=cfg.backoff_max_seconds,
            max_retry_after=cfg.max_retry_after_seconds,
            budget_seconds=cfg.retry_budget_seconds,
        )

    def backoff(self, attempt: int, rng: Callable[[], float]) -> float:
        """Exponential backoff with full jitter for the wait after failed attempt number ``attempt``."""
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return ceiling * rng()


class RetryBudget:
    """Seconds spent waiting for retries in the whole run, shared by every client and thread."""

    def __init__(self, budget_seconds: float) -> None:
        self.budget_seconds = budget_seconds
        self._waited = 0.0
        self._lock = threading.Lock()

    @property
    def waited(self) -> float:
        with self._lock:
            return self._waited

    HINT = "the remote system is throttling or down; try again later or raise http.retry_budget_seconds"

    def try_spend(self, seconds: float) -> bool:
        """Charge a wait if the budget can pay for it; False (and nothing charged) if it cannot.

        Check and charge happen under one lock: two threads cannot both take the last seconds.
        """
        with self._lock:
            if self._waited + seconds > self.budget_seconds:
                return False
            self._waited += seconds
            return True

    def spend(self, seconds: float) -> None:
        """Charge a wait; raise RemoteUnavailable (and charge nothing) if it would exceed the budget."""
        if not self.try_spend(seconds):
            raise RemoteUnavailable(
                f"retry budget exhausted: waited {self.waited:.1f}s of {self.budget_seconds:g}s "
                f"this run and the next wait is {seconds:.1f}s",
                hint=self.HINT,
            )


# ---------------------------------------------------------------- redaction


_REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?im)^(\s*(?:proxy-)?authorization\s*:\s*).*$"), r"\1[redacted]"),
    (re.compile(r"(?i)(['\"]?(?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)[^'\",}\r\n]+"), r"\1[redacted]"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]+=*"), r"\1 [redacted]"),
    (
        re.compile(
            r"(?i)\b(client_secret|client_assertion|password|passwd|pwd|secret|access_token|refresh_token"
            r"|id_token|api_key|apikey|us-customer-api-key|customer-api-key|user-api-key)"
            r"(['\"]?\s*[:=]\s*['\"]?)[^&\s'\",}]+"
        ),
        r"\1\2[redacted]",
    ),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]+):[^@\s/]*@"), r"\1:[redacted]@"),
    (re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"), "[redacted-jwt]"),
    # An Azure shared access signature (a DMF blob URL): its sig= authorizes whoever holds the URL.
    (re.compile(r"(?i)([?&]sig=)[^&\s'\",}]+"), r"\1[redacted]"),
]


def redact(text: str) -> str:
    """Remove credentials (Authorization values, bearer tokens, secrets, URL passwords, JWTs) from text."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


# ---------------------------------------------------------------- JSON


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def _nonfinite(name: str) -> Decimal:
    return Decimal(name)  # NaN / Infinity / -Infinity: kept, so the record that carries it is refused by name


def decode_json(response: requests.Response, system: str, *, keep_nonfinite: bool = False) -> Any:
    """Decode a JSON body with Decimal numbers; anything else is a ProtocolError naming system and path.

    ``keep_nonfinite`` decodes NaN/Infinity (not JSON, but some serializers emit them) as Decimal so a
    record-level check can refuse the one record instead of the whole page.
    """
    where = _where(response.url or (response.request.url if response.request else "") or "")
    content_type = response.headers.get("Content-Type", "")
    if "json" not in content_type.lower():
        shown = content_type.split(";")[0].strip() or "no Content-Type"
        raise ServingPageError(
            f"{system} {where} answered HTML/text instead of JSON ({shown}, HTTP {response.status_code}) "
            "(a maintenance page or proxy?)",
            status=response.status_code,
        )
    try:
        text = response.content.decode("utf-8-sig")
        return json.loads(text, parse_float=Decimal,
                          parse_constant=_nonfinite if keep_nonfinite else _refuse_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        truncated = isinstance(exc, json.JSONDecodeError) and exc.pos >= len(exc.doc.rstrip())
        reason = "truncated" if truncated else "invalid"
        raise ProtocolError(
            f"{system} {where} answered {reason} JSON (HTTP {response.status_code}): {_short(exc)}",
            status=response.status_code,
        ) from None


def dumps_json(value: Any) -> str:
    """Serialize to JSON with Decimal written exactly (never through float); floats are refused."""
    if type(value) is dict:
        flat = _dumps_flat(value)  # a journal line: one flat object of text and amounts, 100,000 per run
        if flat is not None:
            return flat
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts)


_encode_string = json.encoder.encode_basestring  # the C encoder; json.dumps per string is ~10x slower


def _encode(value: Any, out: list[str]) -> None:
    kind = type(value)  # exact types first: they are nearly every value and the cheapest test
    if kind is str:
        out.append(_encode_string(value))
    elif kind is Decimal:
        out.append(_decimal_text(value))
    elif value is None:
        out.append("null")
    elif kind is bool:
        out.append("true" if value else "false")
    elif isinstance(value, (str, int, Decimal, float)):
        out.append(_scalar_text(value))
    elif isinstance(value, Mapping):
        _encode_object(value, out)
    elif isinstance(value, (list, tuple)):
        _encode_array(value, out)
    elif isinstance(value, (date, datetime)):
        raise TypeError("format dates explicitly before serializing (D365 and UKG differ on the format)")
    else:
        raise TypeError(f"cannot serialize {type(value).__name__} to JSON")


def _scalar_text(value: str | int | Decimal | float) -> str:
    """A subclass of str, int or Decimal (an enum, say) as its base value; a float is refused."""
    if isinstance(value, str):
        return _encode_string(str(value))
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, Decimal):
        return _decimal_text(value)
    raise TypeError("refusing to serialize a float: money and quantities must be Decimal")


def _encode_object(value: Mapping[Any, Any], out: list[str]) -> None:
    out.append("{")
    first = True
    for key, item in value.items():
        if type(key) is not str:
            raise TypeError(f"JSON object keys must be strings, got {type(key).__name__}")
        if not first:
            out.append(",")
        first = False
        out.append(_encode_string(key))
        out.append(":")
        _encode(item, out)
    out.append("}")


def _encode_array(value: list[Any] | tuple[Any, ...], out: list[str]) -> None:
    out.append("[")
    for i, item in enumerate(value):
        if i:
            out.append(",")
        _encode(item, out)
    out.append("]")


def _dumps_flat(value: dict[Any, Any]) -> str | None:
    parts = []
    for key, item in value.items():
        kind = type(item)
        if type(key) is not str or (kind is not str and kind is not Decimal):
            return None  # anything else takes the general path (and its checks)
        text = _encode_string(item) if kind is str else _decimal_text(item)
        parts.append(f"{_encode_string(key)}:{text}")
    return "{" + ",".join(parts) + "}"


def _decimal_text(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError(f"refusing to serialize {value} as a JSON number")
    text = str(value)
    # str() switches to exponent notation for some values (Decimal('1E+2'), Decimal('0E-8')); a plain
    # fixed-point literal is friendlier to .NET decimal parsers and is still exact.
    if "E" in text or "e" in text:
        text = format(value, "f")
    return text


# ---------------------------------------------------------------- URLs


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = (parts.scheme or "").lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        port = -1
    return scheme, host, port


def _where(url: str) -> str:
    """host + path for messages: never the query string (it may hold a filter with names or a key)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{host}{parts.path or '/'}"


def safe_location(url: str) -> str:
    """The host of a URL for a message, without user info, path or query."""
    return urlsplit(url).hostname or "?"


def _short(exc: BaseException, limit: int = 200) -> str:
    text = redact(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:limit]


# ---------------------------------------------------------------- session


BODY_READ = 1 << 20  # bytes per read of an answer's body


def read_body(response: requests.Response) -> None:
    """Read the whole body now, a megabyte at a time, where ``Response.content`` reads 10 KB at a time: a UKG page
    of 1,000 GL lines (~700 KB) took 70 trips through urllib3's read path, each taking the GIL from the thread
    that decodes the page before. The body is kept as requests keeps it (``content``, ``text``, ``json()``)."""
    response._content = b"".join(response.iter_content(BODY_READ))  # what Response.content itself sets


def build_session() -> requests.Session:
    """A Session with a connection pool big enough for parallel batches and our User-Agent."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


# ---------------------------------------------------------------- client


class _Retry(Exception):
    """Internal: this attempt failed in a way that may be retried."""

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


class _StopWhenBudgetCannotPay(tenacity.stop.stop_base):
    """Stop when the run's budget cannot pay for the wait tenacity has just computed; else charge it.

    Like tenacity's ``stop_before_delay`` but for a budget shared by every request and thread of the run
    rather than one call's elapsed time; the check and the charge are one step (:meth:`RetryBudget.try_spend`).
    """

    def __init__(self, budget: RetryBudget) -> None:
        self.budget = budget

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return not self.budget.try_spend(retry_state.upcoming_sleep)


class HttpClient:
    """Requests to one configured origin, with retries, host pinning and per-attempt authentication."""

    def __init__(
        self,
        *,
        system: str,
        base_url: str,
        timeout: float,
        ca_bundle: str | None,
        policy: RetryPolicy,
        budget: RetryBudget,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        auth: Auth | None = None,
        rng: Callable[[], float] = random.random,
        on_event: EventSink | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.system = system
        self.base_url = base_url.rstrip("/")
        scheme, host, port = _origin(self.base_url)
        if scheme not in DEFAULT_PORTS or not host:
            raise ValueError(f"{system} base_url must be an absolute http(s) URL")
        self._origin = (scheme, host, port)
        self.host = host
        self.timeout = timeout
        self.ca_bundle = ca_bundle
        self.policy = policy
        self.budget = budget
        self.session = session if session is not None else build_session()
        self.auth = auth
        self._sleep = sleep
        self._rng = rng
        self._on_event = on_event
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._settings: dict[str, Any] | None = None

    def _environment_settings(self, url: str) -> dict[str, Any]:
        """Proxies and CA from the environment (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE), read once: every
        request goes to the one origin, and requests scans the whole environment for it each time (a few
        hundred microseconds a request, a thousand requests a run)."""
        if self._settings is None:
            verify: bool | str = self.ca_bundle or True
            # stream: _attempt reads the body itself (read_body), still inside its error handling
            self._settings = dict(self.session.merge_environment_settings(url, {}, True, verify, None))
        return self._settings

    def url_for(self, path_or_url: str) -> str:
        """Absolute URL for a path (joined to base_url) or an absolute URL on the configured origin."""
        if "://" in path_or_url or path_or_url.startswith("//"):
            if _origin(path_or_url) != self._origin:
                raise ProtocolError(
                    f"{self.system}: refusing to send credentials to {safe_location(path_or_url)} "
                    f"(configured host is {self.host})"
                )
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def rewrite_to_base(self, url: str) -> str:
        """An OData nextLink on the configured host, with scheme/host/port replaced by base_url's.

        Servers behind a proxy often write their internal scheme or port into nextLinks; the path and
        query are what matter. A link to any other host is refused so a token never leaves the host.
        """
        parts = urlsplit(url)
        if not parts.scheme and not parts.netloc:
            return self.url_for(url)
        if (parts.hostname or "").lower() != self.host:
            raise ProtocolError(
                f"{self.system}: refusing to send credentials to {safe_location(url)} "
                f"(a nextLink left the configured host {self.host})"
            )
        base = urlsplit(self.base_url)
        return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))

    # -- requests

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: bytes | str | BinaryIO | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> requests.Response:
        """Send with retries; return any non-3xx response that is not retried (2xx, 4xx, a write's 500).

        ``data`` may be an open binary file: it is streamed, from its start again on every attempt."""
        method = method.upper()
        url = self.url_for(path_or_url)  # before any credential is attached
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        body: bytes | str | BinaryIO | None = data
        all_headers = dict(headers or {})
        if json is not None:
            body = dumps_json(json).encode("utf-8")
            all_headers.setdefault("Content-Type", "application/json; charset=utf-8")
        for attempt in self._retrying(_where(url)):
            with attempt:
                number = attempt.retry_state.attempt_number
                return self._attempt(method, url, params, body, all_headers, idempotent, number)
        raise AssertionError("unreachable: tenacity either returns, raises or calls retry_error_callback")

    def _retrying(self, where: str) -> tenacity.Retrying:
        """The retry loop of one request, in tenacity's terms; each hook carries one of our rules.

        * ``retry``: only a :class:`_Retry` is tried again. Write safety is decided before that, where the
          answer is classified (:meth:`_classify_response`, :meth:`_exception_outcome`): a write becomes a
          ``_Retry`` only when the server said it did not process it (429/503) or it never left this
          machine; every other failure (AmbiguousWriteError, ProtocolError, TLS) is re-raised by tenacity
          untouched, on the first attempt.
        * ``wait``: the server's Retry-After when it sent one (capped, no jitter), else our exponential
          backoff with full jitter (:meth:`RetryPolicy.backoff`).
        * ``stop``: the attempts are used up, or the run-wide :class:`RetryBudget` cannot pay for the next
          wait. tenacity computes the wait before it asks ``stop`` (``RetryCallState.upcoming_sleep``), so
          the budget is charged there, atomically, and only when the attempt limit has not stopped us.
        * ``retry_error_callback``: giving up is RemoteUnavailable (exit 4) naming the last problem; never
          tenacity's RetryError.
        * ``sleep``: the injected sleep, so tests and the sandbox never really wait.
        """
        policy = self.policy

        def give_up(state: tenacity.RetryCallState) -> None:
            problem = _retry_reason(state)
            if state.attempt_number >= policy.max_attempts:
                raise RemoteUnavailable(
                    f"{self.system} {where}: {problem} after {state.attempt_number} attempt(s) "
                    f"({self.budget.waited:.1f}s waited this run)",
                    hint=f"{self.system} is down or throttling; try again later",
                )
            raise RemoteUnavailable(
                f"{self.system} {where}: {problem} after {state.attempt_number} attempt(s); "
                f"retry budget exhausted ({self.budget.waited:.1f}s waited this run, "
                f"next wait {state.upcoming_sleep:.1f}s)",
                hint=RetryBudget.HINT,
            )

        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Retry),
            wait=self._wait_for,
            # stop_any asks its conditions in order and stops at the first yes: the budget is not
            # charged for a wait that the attempt limit already ruled out.
            stop=tenacity.stop_after_attempt(policy.max_attempts) | _StopWhenBudgetCannotPay(self.budget),
            retry_error_callback=give_up,
            sleep=self._sleep,
        )

    def _wait_for(self, state: tenacity.RetryCallState) -> float:
        """tenacity's wait hook: Retry-After if the failed attempt carried one, else backoff with jitter."""
        failure = state.outcome.exception() if state.outcome is not None else None
        if isinstance(failure, _Retry) and failure.wait is not None:
            return failure.wait
        return self.policy.backoff(state.attempt_number, self._rng)

    def pause(self, retry_after: str | None, attempt: int, what: str) -> None:
        """Wait before resending something the server said it did not process (e.g. a throttled changeset).

        Honours a Retry-After value (no jitter) or falls back to our backoff; charged to the run's budget.
        """
        wait = self._retry_after(retry_after)
        if wait is None:
            wait = self.policy.backoff(attempt, self._rng)
        try:
            self.budget.spend(wait)
        except RemoteUnavailable as exc:
            raise RemoteUnavailable(f"{self.system}: {what}; retry budget exhausted", hint=exc.hint) from None
        self._emit({"system": self.system, "throttled": True, "what": what, "wait_s": round(wait, 3)})
        self._sleep(wait)

    def _attempt(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        body: bytes | str | BinaryIO | None,
        headers: dict[str, str],
        idempotent: bool,
        attempt: int,
    ) -> requests.Response:
        if body is not None and not isinstance(body, (bytes, str)):
            body.seek(0)  # a file body is read again from its start on every attempt
        prepared = self.session.prepare_request(
            requests.Request(method, url, params=params, data=body, headers=headers)
        )
        if self.auth is not None:
            self.auth(prepared)  # every attempt: a retry after a long wait gets a fresh token
        settings = self._environment_settings(prepared.url or url)
        started = time.monotonic()
        event: dict[str, Any] = {"system": self.system, "method": method, "path": urlsplit(url).path}
        try:
            response = self.session.send(
                prepared,
                timeout=(min(CONNECT_TIMEOUT_CAP, self.timeout), self.timeout),
                allow_redirects=False,
                **settings,
            )
            read_body(response)
        except requests.exceptions.RequestException as exc:
            event.update(error=type(exc).__name__, elapsed_ms=_ms(started), attempt=attempt)
            self._emit(event)
            raise self._exception_outcome(exc, method, url, idempotent) from None
        event.update(status=response.status_code, elapsed_ms=_ms(started), attempt=attempt)
        self._emit(event)
        return self._classify_response(response, method, url, idempotent)

    def _classify_response(
        self, response: requests.Response, method: str, url: str, idempotent: bool
    ) -> requests.Response:
        status = response.status_code
        if 300 <= status < 400:
            location = response.headers.get("Location")
            response.close()
            # A relative Location ("/adfs/ls/...") is on the same host; name that host, not "?".
            target = safe_location(urljoin(url, location)) if location else "an unnamed location"
            raise ServingPageError(
                f"{self.system} {_where(url)} redirected to {target} (a login page?)",
                status=status,
                hint=f"check the base URL for {self.system}",
            )
        if status in NOT_PROCESSED_STATUSES:
            wait = self._retry_after(response.headers.get("Retry-After"))
            response.close()
            raise _Retry(f"HTTP {status}", wait)
        if status in AMBIGUOUS_WRITE_STATUSES and not idempotent:
            response.close()
            raise AmbiguousWriteError(
                f"{self.system} {method} {_where(url)} got HTTP {status} from a gateway: the write may "
                "or may not have been processed",
                hint="look at the target system before sending it again",
            )
        if status in TRANSIENT_READ_STATUSES and idempotent:
            response.close()
            raise _Retry(f"HTTP {status}")
        return response

    def _exception_outcome(
        self, exc: requests.exceptions.RequestException, method: str, url: str, idempotent: bool
    ) -> Exception:
        """What a transport failure means: retry it, or the error to raise."""
        where = _where(url)
        if isinstance(exc, requests.exceptions.SSLError):
            # Not retried: a certificate problem does not go away by waiting.
            return RemoteUnavailable(
                f"{self.system} {where}: TLS handshake failed: {_tls_reason(exc)}",
                hint="if the server uses a private CA, set ca_bundle for this system",
            )
        if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidHeader)):
            return ProtocolError(f"{self.system} {where}: invalid request: {_short(exc)}")
        reason = describe_transport_error(exc)
        if idempotent or _never_sent(exc):
            return _Retry(reason)
        return AmbiguousWriteError(
            f"{self.system} {method} {where}: {reason} after the request was sent; the write may or may "
            "not have been processed",
            hint="look at the target system before sending it again",
        )

    def _retry_after(self, value: str | None) -> float | None:
        """Seconds the server asked us to wait (floor 0, capped), or None to use our own backoff."""
        if value is None or not value.strip():
            return None
        value = value.strip()
        seconds: float | None
        if re.fullmatch(r"\d+(\.\d+)?", value):
            seconds = float(value)  # a wait time, not money
        else:
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            seconds = (when - self._clock()).total_seconds()
        return min(max(0.0, seconds), self.policy.max_retry_after)

    def _emit(self, event: dict[str, Any]) -> None:
        if self._on_event is not None:
            self._on_event(event)


def _retry_reason(state: tenacity.RetryCallState) -> str:
    failure = state.outcome.exception() if state.outcome is not None else None
    return failure.reason if isinstance(failure, _Retry) else "request failed"


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _causes(exc: BaseException) -> list[BaseException]:
    """exc and everything it wraps (requests nests urllib3's MaxRetryError(reason=...) in args)."""
    seen: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        nested_all = (current.__cause__, current.__context__, getattr(current, "reason", None), *current.args)
        for nested in nested_all:
            if isinstance(nested, BaseException):
                stack.append(nested)
    return seen


def _never_sent(exc: requests.exceptions.RequestException) -> bool:
    """True when the request provably never reached the server (so a write may be sent again)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return False
    if not isinstance(exc, requests.exceptions.ConnectionError):
        return False
    return any(isinstance(c, (urllib3.exceptions.NewConnectionError, ConnectionRefusedError)) for c in _causes(exc))


def _tls_reason(exc: requests.exceptions.RequestException) -> str:
    """What the TLS library said, without requests' wrapper text (which repeats the URL and its query)."""
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError) and cause.reason:
            return str(cause.reason).lower().replace("_", " ")
    return _short(exc, 160)


def describe_transport_error(exc: requests.exceptions.RequestException) -> str:
    """A short human reason for a transport failure, free of URLs and secrets."""
    causes = _causes(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed (certificate not trusted? set ca_bundle for a private CA)"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "no answer within the read timeout"
    if any(isinstance(c, urllib3.exceptions.NameResolutionError) for c in causes):
        return "host name not found (DNS)"
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return "connection refused"
    if any(isinstance(c, urllib3.exceptions.NewConnectionError) for c in causes):
        return "cannot connect"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection dropped while reading the answer"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "connection dropped"
    return f"request failed ({type(exc).__name__})"


# How long a thread may keep the GIL while another one wants it: CPython's default is 5 ms.
IO_SWITCH_INTERVAL = 0.0005


@contextmanager
def prompt_thread_switches(interval: float = IO_SWITCH_INTERVAL) -> Iterator[None]:
    """Hand the GIL over sooner while worker threads mix network waits with CPU work.

    When a response arrives while another thread builds or parses a 500-line changeset, the woken thread
    waits for the GIL up to the switch interval, several times per request. At CPython's 5 ms default that
    added ~20 % to a 100,000-line run's wall time on the benchmark (0.5 ms costs a few more switches).
    Process-wide, so the previous interval is put back on the way out; it is never raised here.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, interval))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


class ConcurrencyLimit:
    """How many requests may be in flight at once; halved when the server throttles (429), regrown slowly.

    D365's service protection answers 429 when an integration pushes too hard; backing off the
    parallelism (not just waiting) is what Microsoft's guidance asks of a well-behaved client.
    """

    REGROW_AFTER = 20  # successful requests without a 429 before one more slot is given back

    def __init__(self, maximum: int) -> None:
        self.maximum = max(1, maximum)
        self.current = self.maximum
        self.peak = 0
        self.throttles = 0
        self._in_flight = 0
        self._since_throttle = 0
        self._cond = threading.Condition()

    def acquire(self) -> None:
        with self._cond:
            while self._in_flight >= self.current:
                self._cond.wait()
            self._in_flight += 1
            self.peak = max(self.peak, self._in_flight)

    def release(self, *, ok: bool = True) -> None:
        with self._cond:
            self._in_flight -= 1
            if ok:
                self._since_throttle += 1
                if self._since_throttle >= self.REGROW_AFTER and self.current < self.maximum:
                    self.current += 1
                    self._since_throttle = 0
            self._cond.notify_all()

    def throttled(self) -> None:
        with self._cond:
            self.throttles += 1
            self._since_throttle = 0
            self.current = max(1, self.current // 2)
