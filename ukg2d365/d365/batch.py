"""OData v4 ``$batch`` bodies for D365 F&O: build the multipart/mixed request, parse the response. Pure.

Every operation goes in a changeset, because a changeset is atomic in F&O: all of it is written or none.
The whole ``$batch`` answers HTTP 200 even when a changeset failed, so the caller must look at every
:class:`ChangesetResult`. A failed changeset is answered with a single error response (not one per
operation), which is why a result holds a list of responses that may be shorter than its changeset.

A server may also stop at the first failed changeset and answer only the changesets up to it, unless the
request prefers ``odata.continue-on-error`` (OData/WebApi ``src/Microsoft.AspNet.OData/Batch/
DefaultODataBatchHandler.cs``, ``ExecuteRequestMessagesAsync``: ``break`` when a response failed and
``ContinueOnError`` is false). The changesets after that answer were not processed: a
:class:`ChangesetResult` with ``processed=False`` says so, and they are safe to send again.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ukg2d365.errors import ProtocolError
from ukg2d365.http import dumps_json

__all__ = [
    "MAX_BATCH_OPERATIONS",
    "NOT_PROCESSED",
    "BatchOperation",
    "ChangesetResult",
    "InnerResponse",
    "build_batch",
    "odata_error_message",
    "parse_batch_response",
]

MAX_BATCH_OPERATIONS = 5000  # F&O's documented limit per $batch
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE", "MERGE"})
# A whole OData error (every Infolog line, its details) fits easily; a runaway body (an HTML stack trace
# in a message) must not flood the terminal and the audit log.
ERROR_MESSAGE_LIMIT = 2000
GENERIC_MESSAGES = frozenset({"an error has occurred."})  # F&O's outer message when the Infolog says why
NOT_PROCESSED = ("not processed: D365 stopped the $batch at an earlier failed changeset "
                 "(nothing of this one was written; safe to send again)")
CRLF = "\r\n"
JSON_CONTENT_TYPE = "application/json;odata.metadata=minimal"


@dataclass(frozen=True)
class BatchOperation:
    """One write inside a changeset; ``url`` is relative to ``/data/`` (``LedgerJournalLines``)."""

    method: str
    url: str
    body: Mapping[str, Any] | None = None
    content_id: str | int | None = None
    # "return=minimal": the server may answer 204 without echoing the entity (OData v4 Prefer header);
    # a server that ignores it answers 201 with the body, which works the same for us.
    prefer: str | None = None


@dataclass(frozen=True)
class InnerResponse:
    status: int
    reason: str
    headers: Mapping[str, str]  # lower-case names
    body: Any  # decoded JSON (numbers as Decimal) or None
    content_id: str | None = None
    text: str = ""  # the raw body, for non-JSON errors

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error_message(self) -> str | None:
        if self.ok:
            return None
        return odata_error_message(self.body, self.status, self.reason)


@dataclass(frozen=True)
class ChangesetResult:
    responses: list[InnerResponse] = field(default_factory=list)
    # False: the answer stopped before this changeset, so the server did not process it (resendable).
    processed: bool = True
    operations: int = 0  # how many operations the request's changeset held; 0 when not known

    @classmethod
    def unprocessed(cls, operations: int = 0) -> ChangesetResult:
        return cls([], processed=False, operations=operations)

    @property
    def ok(self) -> bool:
        return self.processed and bool(self.responses) and all(r.ok for r in self.responses)

    @property
    def failed(self) -> InnerResponse | None:
        return next((r for r in self.responses if not r.ok), None)

    @property
    def status(self) -> int | None:
        """The first failing status, else the first status."""
        failed = self.failed
        if failed is not None:
            return failed.status
        return self.responses[0].status if self.responses else None

    @property
    def error_message(self) -> str | None:
        if not self.processed:
            return NOT_PROCESSED
        failed = self.failed
        if failed is not None:
            message = failed.error_message or ""
            # In a changeset of several operations, say which one D365 refused: all of it was rolled back,
            # but only that operation needs mending.
            if self.operations > 1 and failed.content_id:
                return f"operation Content-ID {failed.content_id} of {self.operations}: {message}"
            return message
        return None if self.responses else "empty changeset response"


# ---------------------------------------------------------------- errors


def odata_error_message(body: Any, status: int, reason: str = "") -> str:
    """The whole OData error on one line: ``error.message``, every Infolog line, ``target`` and ``details``.

    F&O puts the Infolog in ``error.innererror.message`` (one or several lines, sometimes nested in
    ``internalexception``) and often answers the outer message "An error has occurred.", which is then
    left out. OData v4 JSON errors may carry ``target`` and ``details`` (each with its own ``message`` and
    ``target``), kept here as well (OData JSON Format 4.0, "Error Response"). The stack trace is not kept.
    """
    lines: list[str] = []
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        outer = _lines(error.get("message"))
        inner = _infolog_lines(error.get("innererror"))
        if not (inner and " ".join(outer).casefold() in GENERIC_MESSAGES):
            lines.extend(outer)
        lines.extend(line for line in inner if line not in lines)
        target = error.get("target")
        if isinstance(target, str) and target.strip():
            lines.append(f"target {target.strip()}")
        details = error.get("details")
        if isinstance(details, list):
            for detail in details:
                text = _detail(detail)
                if text and text not in lines:
                    lines.append(text)
    message = " | ".join(lines)
    if not message:
        return f"HTTP {status} {reason}".strip()
    if len(message) > ERROR_MESSAGE_LIMIT:
        message = message[: ERROR_MESSAGE_LIMIT - 3].rstrip() + "..."
    return message


def _lines(text: Any) -> list[str]:
    """The non-blank lines of a message, blanks inside each line collapsed."""
    if not isinstance(text, str):
        return []
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def _infolog_lines(inner: Any, depth: int = 0) -> list[str]:
    if not isinstance(inner, Mapping) or depth > 5:
        return []
    return _lines(inner.get("message")) + _infolog_lines(inner.get("internalexception"), depth + 1)


def _detail(detail: Any) -> str:
    if not isinstance(detail, Mapping):
        return ""
    message = " ".join(_lines(detail.get("message")))
    target = detail.get("target")
    if isinstance(target, str) and target.strip():
        return f"{message} (target {target.strip()})" if message else f"target {target.strip()}"
    return message


# ---------------------------------------------------------------- building


def build_batch(
    base_url: str, changesets: Sequence[Sequence[BatchOperation]], boundary: str | None = None
) -> tuple[str, bytes]:
    """The Content-Type and body of a ``POST /data/$batch`` with one changeset per group."""
    if not changesets:
        raise ValueError("a $batch needs at least one changeset")
    total = sum(len(cs) for cs in changesets)
    if total > MAX_BATCH_OPERATIONS:
        raise ValueError(f"a $batch holds at most {MAX_BATCH_OPERATIONS} operations, got {total}")
    batch_boundary = boundary or f"batch_{uuid.uuid4()}"
    data_root = base_url.rstrip("/") + "/data/"
    out: list[str] = []
    requests: dict[tuple[str, str, str | None, bool], str] = {}  # a changeset repeats one request shape
    next_id = 1
    for changeset in changesets:
        if not changeset:
            raise ValueError("empty changeset")
        cs_boundary = f"changeset_{uuid.uuid4()}"
        out.append(f"--{batch_boundary}\r\nContent-Type: multipart/mixed; boundary={cs_boundary}\r\n\r\n")
        part_start = f"--{cs_boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
        for op in changeset:
            content_id = str(op.content_id) if op.content_id is not None else str(next_id)
            next_id += 1
            if _BLANKS.search(content_id):
                raise ValueError(f"invalid Content-ID {content_id!r}")
            shape = (op.method, op.url, op.prefer, op.body is None)
            request = requests.get(shape)
            if request is None:
                request = requests[shape] = _request_head(op, data_root)
            body = "" if op.body is None else dumps_json(op.body)
            out.append(f"{part_start}Content-ID: {content_id}\r\n\r\n{request}{body}\r\n")
        out.append(f"--{cs_boundary}--\r\n")
    out.append(f"--{batch_boundary}--\r\n")
    return f"multipart/mixed; boundary={batch_boundary}", "".join(out).encode("utf-8")


_BLANKS = re.compile(r"[ \r\n\t]")


def _request_head(op: BatchOperation, data_root: str) -> str:
    """An operation's request line and headers up to the blank line before its body (checked once per shape)."""
    method = op.method.upper()
    if method not in WRITE_METHODS:
        raise ValueError(f"{op.method} cannot go in a changeset (writes only)")
    if not op.url or _BLANKS.search(op.url):
        raise ValueError(f"invalid operation URL {op.url!r}")
    # "$1/..." refers to an earlier operation of the same changeset by its Content-ID.
    target = op.url if op.url.startswith("$") else data_root + op.url.lstrip("/")
    lines = [
        f"{method} {target} HTTP/1.1",
        "OData-Version: 4.0",
        "OData-MaxVersion: 4.0",
        f"Accept: {JSON_CONTENT_TYPE}",
    ]
    if op.prefer:
        lines.append(f"Prefer: {op.prefer}")
    if op.body is not None:
        lines.append(f"Content-Type: {JSON_CONTENT_TYPE}")
    return CRLF.join(lines) + CRLF + CRLF


# ---------------------------------------------------------------- parsing


def parse_batch_response(content_type: str, body: bytes) -> list[ChangesetResult]:
    """One ChangesetResult per top-level part of a ``$batch`` response, in order."""
    boundary = _boundary(content_type)
    results: list[ChangesetResult] = []
    for headers, part_body in _split_multipart(body, boundary, "$batch response"):
        part_type = headers.get("content-type", "")
        if part_type.lower().startswith("multipart/mixed"):
            inner_boundary = _boundary(part_type)
            responses = [
                _plain_part(raw) or _http_part(*_headers_and_body(raw, "changeset response"))
                for raw in _part_slices(part_body, inner_boundary, "changeset response")
            ]
            results.append(ChangesetResult(responses))
        elif part_type.lower().startswith("application/http"):
            # A failed changeset is answered as one response for the whole changeset.
            results.append(ChangesetResult([_http_part(headers, part_body)]))
        else:
            raise ProtocolError(f"D365 $batch response part has unexpected Content-Type {part_type or '(none)'}")
    if not results:
        raise ProtocolError("D365 $batch response has no parts")
    return results


def _boundary(content_type: str) -> str:
    match = re.search(r"""boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))""", content_type, re.IGNORECASE)
    if not match:
        raise ProtocolError(f"D365 $batch response has no multipart boundary (Content-Type {content_type!r})")
    boundary = match.group(1) or match.group(2)
    if not boundary.isascii() or len(boundary) > 70:  # RFC 2046: 1 to 70 ASCII characters
        raise ProtocolError(f"D365 $batch response has an invalid multipart boundary {boundary!r}")
    return boundary


def _split_multipart(body: bytes, boundary: str, what: str) -> Iterable[tuple[dict[str, str], bytes]]:
    return [_headers_and_body(raw, what) for raw in _part_slices(body, boundary, what)]


def _part_slices(body: bytes, boundary: str, what: str) -> list[bytes]:
    """The raw parts between the delimiter lines: headers, blank line and body, not yet parsed."""
    delimiters = _delimiter_lines(body, b"--" + boundary.encode("ascii"))
    if not delimiters:
        raise ProtocolError(f"D365 {what} has no part with boundary {boundary}")
    if not delimiters[-1][2]:
        raise ProtocolError(f"D365 {what} is truncated (no closing boundary)")
    parts: list[bytes] = []
    for (_, end, closing), (following_start, _, _) in zip(delimiters, delimiters[1:], strict=False):
        if closing:
            break  # anything after the close delimiter is epilogue
        parts.append(body[end:following_start])
    return parts


def _delimiter_lines(body: bytes, delimiter: bytes) -> list[tuple[int, int, bool]]:
    """(start, end, is_close) of each delimiter line: the line break before it and after it included.

    A delimiter counts only at the start of the body or of a line, followed by optional "--", blanks and a
    line end (or the end of the body). bytes.find keeps this linear on large answers (a regex that may start
    at every position was the slowest step of reading a 500-line changeset's answer).
    """
    found: list[tuple[int, int, bool]] = []
    size = len(body)
    index = body.find(delimiter)
    while index != -1:
        if index == 0 or body[index - 1] == 0x0A:  # at the start of a line
            after = index + len(delimiter)
            closing = body.startswith(b"--", after)
            j = after + 2 if closing else after
            while j < size and body[j] in (0x20, 0x09):
                j += 1
            if j == size or body[j] == 0x0A or body.startswith(b"\r\n", j):
                start = index
                if index >= 1:
                    start = index - 2 if index >= 2 and body[index - 2] == 0x0D else index - 1
                end = j if j == size else j + (2 if body[j] == 0x0D else 1)
                found.append((start, end, closing))
        index = body.find(delimiter, index + 1)
    return found


_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")
_STATUS_LINE = re.compile(r"HTTP/\d(?:\.\d)?\s+(\d{3})(?:\s+(.*))?")


def _headers_and_body(raw: bytes, what: str) -> tuple[dict[str, str], bytes]:
    cut = raw.find(b"\r\n\r\n")  # the usual CRLF case first: a $batch answer can hold thousands of parts
    if cut >= 0:
        head, rest = raw[:cut], raw[cut + 4 :]
    else:
        match = _BLANK_LINE.search(raw)
        if match is None:
            head, rest = raw, b""
            if not raw.strip():
                raise ProtocolError(f"D365 {what} has an empty part")
        else:
            head, rest = raw[: match.start()], raw[match.end() :]
    return _parse_headers(head, what), rest


_MALFORMED_LINE = re.compile(r"^(?![ \t]*\r?$)[^:\r\n]*\r?$", re.M)  # a non-blank line without a colon
_HEADER_LINE = re.compile(r"^([^:\r\n]+):([^\r\n]*)", re.M)


def _parse_headers(head: bytes, what: str) -> dict[str, str]:
    text = head.decode("utf-8", errors="replace")
    # One regex pass in C instead of a Python loop: a $batch answer carries two header blocks per line.
    if _MALFORMED_LINE.search(text):
        raise ProtocolError(f"D365 {what} has a malformed header line")
    return {name.strip().lower(): value.strip() for name, value in _HEADER_LINE.findall(text)}


# A changeset answer part in its usual shape, matched in one pass in C: CRLF line ends, a colon on every
# header line, and no body (F&O answers each write of a changeset with 204 under Prefer: return=minimal).
# A 500-line changeset has 500 of these; parsing each through the general path below cost 3x more. Any
# other shape (a body, bare LF, odd header lines) goes the general way, so the two agree on every input.
_PLAIN_PART = re.compile(
    rb"((?:[^:\r\n]+:[^\r\n]*\r\n)+)\r\n"  # the part's MIME headers, a blank line
    rb"HTTP/\d(?:\.\d)?[ \t]+(\d{3})(?:[ \t]+([^\r\n]*))?\r\n"  # the status line
    rb"((?:[^:\r\n]+:[^\r\n]*\r\n)*)"  # the response headers
    rb"(?:\r\n[ \t\r\n]*)?"  # at most a blank line after them: no body
)
_MIME_FIELD = re.compile(rb"^[ \t]*(content-type|content-id)[ \t]*:([^\r\n]*)", re.IGNORECASE | re.MULTILINE)


def _plain_part(raw: bytes) -> InnerResponse | None:
    match = _PLAIN_PART.fullmatch(raw)
    if match is None:
        return None
    fields = {name.lower(): value.strip() for name, value in _MIME_FIELD.findall(match.group(1))}
    content_id = fields.get(b"content-id")
    if not fields.get(b"content-type", b"").lower().startswith(b"application/http") or not content_id:
        return None  # the general path raises, or finds the Content-ID among the response headers
    return InnerResponse(
        status=int(match.group(2)),
        reason=(match.group(3) or b"").decode("latin-1").strip(),
        headers=_LazyHeaders(match.group(4)),
        body=None,
        content_id=content_id.decode("utf-8", errors="replace"),
    )


class _LazyHeaders(Mapping[str, str]):
    """Response headers parsed on first use: the poster reads only the status of a 500-part answer."""

    __slots__ = ("_raw", "_parsed")

    def __init__(self, raw: bytes) -> None:
        self._raw = raw
        self._parsed: dict[str, str] | None = None

    def _headers(self) -> dict[str, str]:
        if self._parsed is None:
            self._parsed = _parse_headers(self._raw, "$batch inner response")
        return self._parsed

    def __getitem__(self, name: str) -> str:
        return self._headers()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._headers())

    def __len__(self) -> int:
        return len(self._headers())

    def __repr__(self) -> str:
        return repr(self._headers())


def _http_part(part_headers: Mapping[str, str], raw: bytes) -> InnerResponse:
    if not part_headers.get("content-type", "").lower().startswith("application/http"):
        raise ProtocolError("D365 changeset response part is not application/http")
    first_end = _LINE_END.search(raw)
    status_line = (raw[: first_end.start()] if first_end else raw).decode("latin-1").strip()
    match = _STATUS_LINE.fullmatch(status_line)
    if match is None:
        raise ProtocolError("D365 $batch inner response has no HTTP status line")
    rest = raw[first_end.end() :] if first_end else b""
    headers: dict[str, str]
    if not rest.strip(b" \t"):  # a bare status line: no headers, no body (the CRLF went to the delimiter)
        headers, body = {}, b""
    elif rest.startswith(b"\r\n") or rest.startswith(b"\n"):
        headers = {}
        body = rest[2:] if rest.startswith(b"\r\n") else rest[1:]
    else:
        headers, body = _headers_and_body(rest, "$batch inner response")
    text = body.decode("utf-8", errors="replace").strip()
    parsed: Any = None
    if text and ("json" in headers.get("content-type", "").lower() or text[:1] in "{["):
        try:
            parsed = json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
        except ValueError:
            raise ProtocolError(
                f"D365 $batch inner response (HTTP {match.group(1)}) has truncated or invalid JSON"
            ) from None
    content_id = part_headers.get("content-id") or headers.get("content-id")
    return InnerResponse(
        status=int(match.group(1)),
        reason=(match.group(2) or "").strip(),
        headers=headers,
        body=parsed,
        content_id=content_id,
        text=text,
    )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")
