"""UKG Pro REST client: auth headers, paging generators, JSON decoded with Decimal.

Reads only. Every request carries HTTP Basic (web service account), ``US-Customer-Api-Key`` and, only
when configured, ``US-User-Api-Key`` (UKG documents it for SOAP; some tenants' gateways want it on REST
too). Retries, Retry-After and host pinning are :class:`~ukg2d365.http.HttpClient`'s business; this
module turns UKG's answers into records or into one-line errors that say what to check.
"""

from __future__ import annotations

import base64
import re
import time
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any

import requests

from ukg2d365.credentials import UkgCredentials
from ukg2d365.errors import AuthError, ProtocolError, RemoteError, Ukg2d365Error
from ukg2d365.http import HttpClient, decode_json, prompt_thread_switches, redact

SYSTEM = "UKG"
ORG_LEVELS_PATH = "/configuration/v1/org-levels"
EMPLOYMENT_DETAILS_PATH = "/personnel/v1/employment-details"
DEMOGRAPHIC_DETAILS_PATH = "/personnel/v1/employee-demographic-details"
PAY_PERIODS_PATH = "/payroll/v1/paygroup-payperiods"

# The web service ("View" role) each path family needs, named in the hint when UKG refuses a key. The GL
# endpoint's own permission is not published; it lives under /payroll, so Payroll Integration is the guess.
_PERMISSIONS = (
    ("/configuration/", "Company Configuration Integration"),
    ("/payroll/", "Payroll Integration"),
    ("/personnel/", "Personnel Integration"),
)
_CUSTOMER_KEY = re.compile(r"[A-Za-z0-9]{5}")
_USER_KEY = re.compile(r"[A-Za-z0-9]{12}")


@dataclass(frozen=True)
class PingResult:
    """The outcome of :meth:`UkgClient.ping`; ``error`` keeps the exception for the exit status."""

    host: str
    latency_ms: int
    ok: bool
    detail: str
    error: Ukg2d365Error | None = None


class UkgClient:
    """Read-only access to the UKG Pro endpoints the flows need."""

    def __init__(self, http: HttpClient, creds: UkgCredentials, page_size: int, gl_path: str) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self._http = http
        self._creds = creds
        self.page_size = page_size
        self.prefetch = 1  # pages requested ahead once page 1 came back full
        self.gl_path = "/" + gl_path.strip("/")

    def __repr__(self) -> str:
        return f"UkgClient(host={self.host!r}, gl_path={self.gl_path!r}, page_size={self.page_size})"

    @property
    def host(self) -> str:
        return self._http.host

    # ------------------------------------------------------------ endpoints

    def gl_lines(self, run_id: str | None = None) -> Iterator[dict[str, Any]]:
        """GL distribution lines (``GeneralLedgerRunDetailsV2``), of one run when ``run_id`` is given."""
        params = {"runId": run_id} if run_id else {}
        return self._paged(self.gl_path, params)

    def org_levels(self) -> list[dict[str, Any]]:
        """Every org level (one call: the endpoint takes no paging parameters)."""
        return self._items(self._get(ORG_LEVELS_PATH, {}), ORG_LEVELS_PATH)

    def employment_details(self, changed_since: date | None = None) -> Iterator[dict[str, Any]]:
        """Employment details, only those changed after midnight of ``changed_since`` when given."""
        params: dict[str, str] = {}
        if changed_since is not None:
            # UKG's date filter syntax: the value ">MM-DD-YYYY" means "greater than".
            params["dateTimeChanged"] = ">" + changed_since.strftime("%m-%d-%Y")
        return self._paged(EMPLOYMENT_DETAILS_PATH, params)

    def demographic_details(self) -> Iterator[dict[str, Any]]:
        return self._paged(DEMOGRAPHIC_DETAILS_PATH, {})

    def pay_periods(self, pay_group: str | None = None) -> Iterator[dict[str, Any]]:
        """Pay periods (``isPeriodClosed`` tells which can be posted), of one pay group when given."""
        params = {"payGroup": pay_group} if pay_group else {}
        return self._paged(PAY_PERIODS_PATH, params)

    def ping(self) -> PingResult:
        """One cheap authenticated read; on failure the detail says what to check."""
        started = time.monotonic()
        try:
            levels = self.org_levels()
        except Ukg2d365Error as exc:
            return PingResult(self.host, _elapsed_ms(started), False, str(exc), exc)
        return PingResult(
            self.host, _elapsed_ms(started), True, f"authenticated; {len(levels)} org level(s) readable"
        )

    # ------------------------------------------------------------ paging and checks

    def _paged(self, path: str, params: Mapping[str, str]) -> Iterator[dict[str, Any]]:
        """Yield items page by page: ``page`` from 1, ``per_Page``; stop on an empty or short page.

        UKG does not document end of data; every known client stops on an empty page, and a short page
        saves one request. A server that ignores ``page`` would repeat the same full page forever, so an
        identical page is refused. When page 1 is full, up to ``prefetch`` further pages are requested
        ahead (UKG publishes no page count, so at most ``prefetch - 1`` requests past the end are wasted);
        items are still yielded strictly in page order. The threads only fetch: pages are decoded here, on the
        thread that consumes their items, so the objects of a million lines are made and freed on one core
        (decoding on the fetching threads cost a third more CPU).
        """
        first, previous = self._page_items(path, params, 1)
        yield from first
        if len(first) < self.page_size:
            return
        del first  # the first page's items are not kept while the others stream past
        depth = max(1, self.prefetch)
        with prompt_thread_switches(), ThreadPoolExecutor(max_workers=depth, thread_name_prefix="ukg-page") as pool:
            in_flight: deque[Future[requests.Response | None]] = deque()
            next_page = 2
            for _ in range(depth):
                in_flight.append(pool.submit(self._page, path, params, next_page))
                next_page += 1
            try:
                while in_flight:
                    response = in_flight.popleft().result()
                    items = self._items(response, path)
                    body = response.content if response is not None else b""
                    del response
                    if not items:
                        return
                    # Compare the raw bytes: items holding NaN never compare equal to themselves.
                    if body == previous:
                        raise ProtocolError(
                            f"UKG {path} returned the same page twice in a row (paging ignored?)"
                        )
                    previous = body
                    if len(items) >= self.page_size:
                        # Refill before the caller works through this page, so `depth` requests stay in
                        # flight while it does (refilling after it left the pipe idle for that long).
                        in_flight.append(pool.submit(self._page, path, params, next_page))
                        next_page += 1
                    yield from items
                    if len(items) < self.page_size:
                        return
            finally:
                for future in in_flight:
                    future.cancel()

    def _page_items(self, path: str, params: Mapping[str, str], page: int) -> tuple[list[dict[str, Any]], bytes]:
        """One page's items and its raw body (to spot a server that ignores ``page``: comparing the bytes of
        two pages is exact and costs next to nothing, where hashing each page cost 0.5 us a line)."""
        response = self._page(path, params, page)
        body = response.content if response is not None else b""
        return self._items(response, path), body

    def _page(self, path: str, params: Mapping[str, str], page: int) -> requests.Response | None:
        query = {**params, "page": str(page), "per_Page": str(self.page_size)}
        return self._get(path, query, page=page)

    def _get(self, path: str, params: Mapping[str, str], *, page: int = 1) -> requests.Response | None:
        """GET with the auth headers; None means "past the last page" (see the 404 note below)."""
        # Headers are built per request, not kept on the instance, so no dump of the client's
        # attributes (a debugger, a traceback with locals) shows a key in clear.
        response = self._http.request("GET", path, params=params, headers=_auth_headers(self._creds))
        status = response.status_code
        if 200 <= status < 300:
            return None if status == 204 else response
        if status == 404 and page > 1:
            # Some UKG list endpoints document 404 for "no records"; after a full page it means the
            # data ended exactly on a page boundary, not that the endpoint vanished.
            return None
        raise self._error(response, path, params)

    def _items(self, response: requests.Response | None, path: str) -> list[dict[str, Any]]:
        if response is None:
            return []
        body = decode_json(response, SYSTEM, keep_nonfinite=True)
        if not isinstance(body, list):
            kind = "JSON object" if isinstance(body, dict) else f"JSON {type(body).__name__}"
            raise ProtocolError(
                f"UKG {path} answered a {kind} where a JSON array was expected (HTTP {response.status_code})",
                status=response.status_code,
            )
        for item in body:
            if not isinstance(item, dict):
                raise ProtocolError(
                    f"UKG {path} answered an array holding {type(item).__name__} items, not objects",
                    status=response.status_code,
                )
        return body

    def _error(self, response: requests.Response, path: str, params: Mapping[str, str]) -> Ukg2d365Error:
        status = response.status_code
        if status == 401:
            return AuthError(f"UKG answered 401 for {path}: {self.diagnose_401()}")
        if status == 403:
            service = _permission_for(path)
            return AuthError(
                f"UKG refused {path} (HTTP 403): the web service account lacks the permission",
                hint=f'give it the "View" role for the "{service}" web service in Service Account '
                "Administration",
            )
        if status == 404 and path == self.gl_path:
            run = f"no GL run {params['runId']!r}, or " if params.get("runId") else ""
            return RemoteError(
                f"UKG {path} answered 404 Not Found: {run}this tenant serves the general ledger elsewhere",
                status=404,
                hint="check ukg.gl_path in the config (default /payroll/v2/general-ledger)",
            )
        if status == 404:
            return RemoteError(
                f"UKG {path} answered 404 Not Found (endpoint not available on this tenant?)",
                status=404,
                hint="check ukg.base_url",
            )
        return RemoteError(f"UKG {path} answered HTTP {status}{_body_excerpt(response)}", status=status)

    def diagnose_401(self) -> str:
        """What to check after a 401: names headers and env vars, never a value.

        UKG answers a missing or wrong header with a bare 401 and an empty body, so the only help we
        can give is what we sent and what looks malformed.
        """
        creds = self._creds
        var = creds.scope.env_var  # with a credential profile, its own variables: UKG2D365_ACME_UKG_PASSWORD
        sent = ["Authorization (Basic)", "US-Customer-Api-Key"]
        problems: list[str] = []
        if creds.username != creds.username.strip():
            problems.append(f"{var('ukg', 'username')} has leading/trailing spaces")
        key = creds.customer_api_key
        if not _CUSTOMER_KEY.fullmatch(key):
            shape = f"{len(key)} characters" if key.isalnum() else "contains characters other than A-Z, 0-9"
            problems.append(
                f"US-Customer-Api-Key is not 5 alphanumeric characters ({shape}); copy the Customer API Key "
                f"from the top of Service Account Administration into {var('ukg', 'customer_api_key')}"
            )
        if creds.user_api_key:
            sent.append("US-User-Api-Key")
            if not _USER_KEY.fullmatch(creds.user_api_key):
                problems.append("US-User-Api-Key is not 12 alphanumeric characters")
        else:
            problems.append(
                f"US-User-Api-Key was not sent ({var('ukg', 'user_api_key')} is not configured); "
                "set it if this tenant requires the web service account's User API Key"
            )
        advice = (
            f"check {var('ukg', 'password')} / web service account (active, password not expired), and that "
            "US-Customer-Api-Key (5 chars) and US-User-Api-Key are set"
        )
        return f"sent {', '.join(sent)}; " + "; ".join([*problems, advice])


def _auth_headers(creds: UkgCredentials) -> dict[str, str]:
    # UTF-8 per RFC 7617; identical to requests' latin-1 for the ASCII passwords UKG generates.
    token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode("ascii")
    headers = {
        "Authorization": f"Basic {token}",
        "US-Customer-Api-Key": creds.customer_api_key,
        "Accept": "application/json",
    }
    if creds.user_api_key:
        headers["US-User-Api-Key"] = creds.user_api_key
    return headers


def _permission_for(path: str) -> str:
    for prefix, service in _PERMISSIONS:
        if path.startswith(prefix):
            return service
    return "matching"


def _body_excerpt(response: requests.Response, limit: int = 160) -> str:
    """A short, redacted, single-line excerpt of an error body (UKG's are small JSON objects)."""
    try:
        text = response.content.decode("utf-8", errors="replace")
    except (requests.RequestException, OSError):
        return ""
    text = re.sub(r"\s+", " ", redact(text)).strip()
    if not text or text.lstrip().startswith("<"):
        return ""  # an HTML error page says nothing useful in one line
    return f": {text[:limit]}"


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
