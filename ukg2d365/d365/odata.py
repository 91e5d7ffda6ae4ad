"""D365 F&O OData client: paged reads, keyed CRUD, ``$batch``, and errors a user can act on.

Retries, host pinning and TLS are the HttpClient's job; this module adds what is specific to F&O:
the ``/data/`` root, key predicates, ``cross-company``, nextLinks resolved against the service root and
pinned to the configured host, one token refresh after a 401, ``$batch`` answers that stop early, and the
whole error (every Infolog line of ``error.innererror``, ``target``, ``details``).
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import requests

from ukg2d365.d365.auth import TokenProvider
from ukg2d365.d365.batch import (
    BatchOperation,
    ChangesetResult,
    build_batch,
    odata_error_message,
    parse_batch_response,
)
from ukg2d365.errors import AuthError, ProtocolError, RemoteError
from ukg2d365.http import HttpClient, decode_json

__all__ = [
    "D365Ping",
    "ODataClient",
    "RawLiteral",
    "chunked",
    "entity_path",
    "enum_literal",
    "filter_eq",
    "key_predicate",
    "odata_literal",
]

SYSTEM = "D365"
DATA_ROOT = "/data/"
ENUM_NAMESPACE = "Microsoft.Dynamics.DataEntities"
PING_ENTITY_SET = "LedgerJournalHeaders"
ODATA_HEADERS = {
    "Accept": "application/json;odata.metadata=minimal",
    "OData-Version": "4.0",
    "OData-MaxVersion": "4.0",
}
_ENTITY_SET = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Characters left readable in the query string; everything else (space, &, #, +, %) is escaped.
_QUERY_SAFE = "'(),:*/$@"
_KEY_SAFE = "()=,'"
# OData v4.0 spelling of the preference (v4.01 also accepts "continue-on-error"); OData/WebApi reads it.
CONTINUE_ON_ERROR = "odata.continue-on-error"
REGISTRATION_HINT = (
    "D365 refused the token: is the app registered under "
    "System administration > Setup > Microsoft Entra ID applications?"
)


# ---------------------------------------------------------------- literals


class RawLiteral(str):
    """Text that odata_literal passes through unquoted (enum literals, expressions already built)."""


def enum_literal(enum_type: str, member: str) -> RawLiteral:
    """``Microsoft.Dynamics.DataEntities.NoYes'Yes'``: how F&O wants enums in $filter."""
    if not _IDENTIFIER.fullmatch(enum_type) or not _IDENTIFIER.fullmatch(member):
        raise ValueError(f"invalid enum {enum_type}.{member}")
    return RawLiteral(f"{ENUM_NAMESPACE}.{enum_type}'{member}'")


def odata_literal(value: Any) -> str:
    """An OData v4 URL literal: strings quoted with ' doubled, numbers bare, dates as DateTimeOffset."""
    if isinstance(value, RawLiteral):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} has no OData literal")
        return format(value, "f")
    if isinstance(value, float):
        raise TypeError("refusing a float literal: use Decimal")
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a datetime literal needs a time zone (F&O stores DateTimeOffset in UTC)")
        utc = value.astimezone(timezone.utc)
        text = utc.isoformat(timespec="microseconds" if utc.microsecond else "seconds")
        return text.replace("+00:00", "Z")
    if isinstance(value, date):
        # F&O models dates as Edm.DateTimeOffset, so a date is midnight UTC.
        return f"{value.isoformat()}T00:00:00Z"
    raise TypeError(f"no OData literal for {type(value).__name__}")


def key_predicate(key: Mapping[str, Any]) -> str:
    """``(dataAreaId='usmf',JournalBatchNumber='00012')`` from a dict of key fields."""
    if not key:
        raise ValueError("an entity key needs at least one field")
    parts = []
    for name, value in key.items():
        if not _IDENTIFIER.fullmatch(name):
            raise ValueError(f"invalid key field name {name!r}")
        parts.append(f"{name}={odata_literal(value)}")
    return "(" + ",".join(parts) + ")"


def filter_eq(field: str, value: Any) -> str:
    """``field eq <literal>``."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_/]*", field):
        raise ValueError(f"invalid field name {field!r}")
    return f"{field} eq {odata_literal(value)}"


T = TypeVar("T")


def chunked(values: Iterable[T], size: int) -> Iterator[list[T]]:
    """``values`` in consecutive slices of at most ``size``: ids per ``$filter``, operations per ``$batch``.

    A filter of ``or`` terms grows with every id, and proxies commonly refuse URLs past 2,048 characters, so
    reads ask for a few ids per request; writes go ``d365.batch_size`` operations per request. ``values`` is
    consumed as the slices are taken, so a stream of lines is never held whole.
    """
    if size < 1:
        raise ValueError("size must be >= 1")
    items = iter(values)
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def entity_path(entity_set: str, key: Mapping[str, Any] | None = None) -> str:
    """Path below /data/ for an entity set or one entity, with the key predicate URL-encoded."""
    if not _ENTITY_SET.fullmatch(entity_set):
        raise ValueError(f"invalid entity set name {entity_set!r}")
    if key is None:
        return entity_set
    return entity_set + quote(key_predicate(key), safe=_KEY_SAFE)


def _query(options: Mapping[str, str | None]) -> str:
    pairs = [f"{name}={quote(value, safe=_QUERY_SAFE)}" for name, value in options.items() if value is not None]
    return "?" + "&".join(pairs) if pairs else ""


# ---------------------------------------------------------------- client


@dataclass(frozen=True)
class D365Ping:
    host: str
    latency_ms: int
    entity_set: str


class Gate(Protocol):
    """Admission to the wire: ``acquire`` blocks (or raises to cancel), ``release`` says how it went."""

    def acquire(self) -> None: ...

    def release(self, *, ok: bool = True) -> None: ...


class ODataClient:
    """CRUD, paged reads and $batch on ``<d365.base_url>/data/``."""

    def __init__(self, http: HttpClient, tokens: TokenProvider) -> None:
        self.http = http
        self.tokens = tokens
        # The token is attached per attempt, after HttpClient has checked the host.
        http.auth = tokens.apply

    # -- reads

    def get_all(
        self,
        entity_set: str,
        *,
        filter: str | None = None,
        select: Sequence[str] | str | None = None,
        cross_company: bool = False,
        top: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every entity matching the query, following @odata.nextLink page by page."""
        if top is not None and top < 0:
            raise ValueError("top must be >= 0")
        options: dict[str, str | None] = {
            "cross-company": "true" if cross_company else None,
            "$filter": filter,
            "$select": None if select is None else select if isinstance(select, str) else ",".join(select),
            "$top": str(top) if top is not None else None,
        }
        url = DATA_ROOT + entity_path(entity_set) + _query(options)
        seen: set[str] = set()
        yielded = 0
        while True:
            response = self._send("GET", url, entity_set)
            self._raise_for_status(response, "GET", entity_set)
            page = decode_json(response, SYSTEM)
            if not isinstance(page, Mapping) or not isinstance(page.get("value"), list):
                raise ProtocolError(f"D365 GET {entity_set}: the answer has no 'value' list")
            for entity in page["value"]:
                if top is not None and yielded >= top:
                    return
                if not isinstance(entity, dict):
                    raise ProtocolError(f"D365 GET {entity_set}: the 'value' list holds {type(entity).__name__} "
                                        "items, not entities")
                yield entity
                yielded += 1
            next_link = page.get("@odata.nextLink")
            if not next_link or (top is not None and yielded >= top):
                return
            if not isinstance(next_link, str):
                raise ProtocolError(f"D365 GET {entity_set}: @odata.nextLink is not a URL")
            url = self._next_url(next_link)
            if url in seen:
                raise ProtocolError(f"D365 GET {entity_set}: @odata.nextLink repeats a page (server loop)")
            seen.add(url)

    def count(self, entity_set: str, *, filter: str | None = None, cross_company: bool = False) -> int:
        """How many entities match (``/$count``, answered as plain text): a journal's lines without reading them."""
        options = {"cross-company": "true" if cross_company else None, "$filter": filter}
        url = DATA_ROOT + entity_path(entity_set) + "/$count" + _query(options)
        response = self._send("GET", url, entity_set)
        self._raise_for_status(response, "GET", entity_set)
        text = response.text.strip().lstrip("\ufeff")
        if not text.isdigit():
            raise ProtocolError(f"D365 GET {entity_set}/$count answered {text[:40]!r}, not a number")
        return int(text)

    def get(self, entity_set: str, key: Mapping[str, Any], *, cross_company: bool | None = None) -> dict | None:
        """One entity by key, or None when D365 answers 404."""
        url = self._entity_url(entity_set, key, cross_company)
        response = self._send("GET", url, entity_set)
        if response.status_code == 404:
            response.close()
            return None
        self._raise_for_status(response, "GET", entity_set)
        entity = decode_json(response, SYSTEM)
        if not isinstance(entity, dict):
            raise ProtocolError(f"D365 GET {entity_set}: the answer is not an entity")
        return entity

    # -- writes

    def create(self, entity_set: str, body: Mapping[str, Any]) -> dict:
        """POST an entity; return it as D365 stored it (with number-sequence keys filled in)."""
        response = self._send("POST", DATA_ROOT + entity_path(entity_set), entity_set, json=body)
        self._raise_for_status(response, "POST", entity_set)
        if response.status_code == 204 or not response.content:
            return {}
        created = decode_json(response, SYSTEM)
        if not isinstance(created, dict):
            raise ProtocolError(f"D365 POST {entity_set}: the answer is not an entity")
        return created

    def update(
        self,
        entity_set: str,
        key: Mapping[str, Any],
        body: Mapping[str, Any],
        *,
        cross_company: bool | None = None,
    ) -> None:
        """PATCH the given fields of one entity (D365 answers 204)."""
        url = self._entity_url(entity_set, key, cross_company)
        response = self._send("PATCH", url, entity_set, json=body)
        self._raise_for_status(response, "PATCH", entity_set)
        response.close()

    def delete(self, entity_set: str, key: Mapping[str, Any], *, cross_company: bool | None = None) -> None:
        url = self._entity_url(entity_set, key, cross_company)
        response = self._send("DELETE", url, entity_set)
        self._raise_for_status(response, "DELETE", entity_set)
        response.close()

    def batch(
        self, changesets: Sequence[Sequence[BatchOperation]], *, gate: Gate | None = None
    ) -> list[ChangesetResult]:
        """POST /data/$batch, one atomic changeset per group; one result per changeset, in order.

        The overall answer is 200 even when changesets failed: check every result's ``ok``. A batch of
        several changesets asks D365 to go on after a failed one; a server that stops anyway answers only
        the changesets up to the failure, and the rest (not processed, so safe) is sent again in a new
        ``$batch`` until every changeset has an answer. ``gate`` (a :class:`~ukg2d365.http.ConcurrencyLimit`,
        say) is held only while the request is on the wire, so building the body and reading the answer
        never count against the requests in flight.
        """
        results: list[ChangesetResult | None] = [None] * len(changesets)
        pending = list(range(len(changesets)))
        attempt = 1
        while pending:
            answered = self._batch_once([changesets[i] for i in pending], gate)
            throttled: list[int] = []
            unprocessed: list[int] = []
            for index, result in zip(pending, answered, strict=True):
                results[index] = replace(result, operations=len(changesets[index]))
                if not result.processed:
                    unprocessed.append(index)
                # A changeset answered 429/503 inside the batch was not processed: send it again later.
                elif not result.ok and result.status in (429, 503):
                    throttled.append(index)
            resend = unprocessed
            if throttled and attempt < self.http.policy.max_attempts:
                first = results[throttled[0]]
                retry_after = first.failed.headers.get("retry-after") if first is not None and first.failed else None
                self.http.pause(retry_after, attempt, f"{len(throttled)} changeset(s) throttled inside $batch")
                attempt += 1
                resend = sorted(throttled + unprocessed)
            if len(unprocessed) == len(pending):
                break  # no progress (cannot happen: _batch_once answers at least one): keep them unprocessed
            pending = resend
        return [r for r in results if r is not None]

    def _batch_once(self, changesets: Sequence[Sequence[BatchOperation]], gate: Gate | None) -> list[ChangesetResult]:
        content_type, body = build_batch(self.http.base_url, changesets)
        headers = {"Content-Type": content_type, "Accept": "multipart/mixed"}
        if len(changesets) > 1:
            # Without it a server may stop at the first failed changeset (OData v4.0 Part 1, 8.2.8.3
            # "Preference odata.continue-on-error"); one changeset has nothing after it to go on to.
            headers["Prefer"] = CONTINUE_ON_ERROR
        if gate is None:
            response = self._send("POST", DATA_ROOT + "$batch", "$batch", data=body, headers=headers)
        else:
            gate.acquire()
            throttled = True
            try:
                response = self._send("POST", DATA_ROOT + "$batch", "$batch", data=body, headers=headers)
                throttled = response.status_code == 429
            finally:
                gate.release(ok=not throttled)
        self._raise_for_status(response, "POST", "$batch")
        results = parse_batch_response(response.headers.get("Content-Type", ""), response.content)
        if len(results) > len(changesets):
            raise ProtocolError(
                f"D365 $batch answered {len(results)} changeset result(s) for {len(changesets)} changeset(s)"
            )
        # A shorter answer ends at a failure (the server did not go on): what follows was not processed. It
        # is not "nothing was written": the changesets answered before it were.
        if len(results) < len(changesets) and results[-1].ok:
            raise ProtocolError(
                f"D365 $batch answered {len(results)} of {len(changesets)} changeset(s) and the last answered "
                "one succeeded: the answer is cut short, not stopped at a failure"
            )
        return results + [ChangesetResult.unprocessed() for _ in changesets[len(results):]]

    # -- actions

    def action(self, bound_to: str, name: str, body: Mapping[str, Any], *, idempotent: bool = False) -> Any:
        """POST an OData action bound to an entity set (``/data/<set>/Microsoft.Dynamics.DataEntities.<name>``)
        and return its ``value``. ``idempotent`` for actions that only read (a status), so a lost answer is
        asked again instead of being an ambiguous write."""
        if not _ENTITY_SET.fullmatch(bound_to) or not _IDENTIFIER.fullmatch(name):
            raise ValueError(f"invalid action {bound_to}/{name}")
        path = f"{DATA_ROOT}{bound_to}/{ENUM_NAMESPACE}.{name}"
        response = self._send("POST", path, name, json=body, idempotent=idempotent)
        self._raise_for_status(response, "POST", name)
        if response.status_code == 204 or not response.content:
            return None
        answer = decode_json(response, SYSTEM)
        if not isinstance(answer, Mapping) or "value" not in answer:
            raise ProtocolError(f"D365 {name}: the answer has no 'value'")
        return answer["value"]

    # -- ping

    def ping(self) -> D365Ping:
        """A cheap authenticated read, for `ukg2d365 ping`."""
        started = time.monotonic()
        for _ in self.get_all(PING_ENTITY_SET, top=1):
            break
        return D365Ping(self.http.host, int((time.monotonic() - started) * 1000), PING_ENTITY_SET)

    # -- internals

    def _next_url(self, next_link: str) -> str:
        """Where a nextLink points: relative links against the service root, every link on base_url's host.

        OData resolves a relative URL in a payload against the service root the context URL names
        (``<base_url>/data/$metadata#...``), so ``Set?$skiptoken=1`` means ``/data/Set?...``, not ``/Set``.
        An absolute link is rewritten onto base_url (proxies write internal ports) or refused when it names
        another host, so the token never leaves the configured one.
        """
        parts = urlsplit(next_link)
        if parts.scheme or parts.netloc:
            return self.http.rewrite_to_base(next_link)
        return urljoin(self.http.base_url.rstrip("/") + DATA_ROOT, next_link)

    def _entity_url(self, entity_set: str, key: Mapping[str, Any], cross_company: bool | None) -> str:
        # A keyed request for another company than the app user's default one answers 404 unless
        # cross-company is on, so it is on whenever the key names the company.
        if cross_company is None:
            cross_company = "dataAreaId" in key
        return DATA_ROOT + entity_path(entity_set, key) + _query({"cross-company": "true" if cross_company else None})

    def _send(
        self,
        method: str,
        url: str,
        entity_set: str,
        *,
        json: Mapping[str, Any] | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> requests.Response:
        all_headers = {**ODATA_HEADERS, **(headers or {})}
        response = self.http.request(method, url, json=json, data=data, headers=all_headers, idempotent=idempotent)
        if response.status_code == 401:
            # The token may have been revoked or expired early; a 401 means nothing was processed.
            response.close()
            self.tokens.invalidate()
            response = self.http.request(method, url, json=json, data=data, headers=all_headers,
                                         idempotent=idempotent)
            if response.status_code == 401:
                response.close()
                raise AuthError(REGISTRATION_HINT, hint=f"client_id {self.tokens.cfg.client_id}")
        if response.status_code == 403:
            detail = self._error_detail(response)
            raise AuthError(
                f"D365 denied {method} {entity_set} (HTTP 403){': ' + detail if detail else ''}",
                hint="give the app's user (Microsoft Entra ID applications > User ID) a role that allows it",
            )
        return response

    def _raise_for_status(self, response: requests.Response, method: str, entity_set: str) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        content_type = response.headers.get("Content-Type", "").lower()
        if response.content and "json" not in content_type:
            raise ProtocolError(
                f"D365 {method} {entity_set} answered HTTP {status} with HTML/text instead of JSON "
                "(a maintenance page or proxy?)",
                status=status,
            )
        detail = self._error_detail(response) or f"HTTP {status} {response.reason or ''}".strip()
        raise RemoteError(f"D365 {method} {entity_set} failed (HTTP {status}): {detail}", status=status)

    @staticmethod
    def _error_detail(response: requests.Response) -> str:
        if not response.content or "json" not in response.headers.get("Content-Type", "").lower():
            return ""
        try:
            body = decode_json(response, SYSTEM)
        except ProtocolError:
            return ""
        return odata_error_message(body, response.status_code, response.reason or "")
