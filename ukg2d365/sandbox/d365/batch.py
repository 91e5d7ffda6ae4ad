"""OData v4 `$batch` bodies (multipart/mixed): parsing requests and changesets, rendering answers."""

from __future__ import annotations

import functools
import http
import re
from dataclasses import dataclass

from ukg2d365.sandbox.d365.errors import odata_error
from ukg2d365.sandbox.types import SimResponse


@dataclass(slots=True)
class BatchPart:
    method: str
    url: str
    headers: dict[str, str]  # may be shared by parts with the same request head: never mutated
    body: bytes
    content_id: str | None


# The blank line ending a header block is `\r?\n\r?\n`. Searching for its core `\n\r?\n` (and taking a "\r"
# just before it) finds the same first match, but lets the regex engine scan for the literal "\n"
# instead of trying the optional "\r" at every position of the part.
_BLANK_LINE_CORE = re.compile(r"\n\r?\n")


def _boundary(content_type: str) -> str | None:
    m = re.search(r'boundary=("?)([^";]+)\1', content_type, re.I)
    return m.group(2).strip() if m else None


def _parse_headers(block: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.splitlines():
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return headers


def _split_multipart(text: str, boundary: str) -> list[str]:
    delimiter = "--" + boundary
    pieces = text.split(delimiter)
    if len(pieces) < 3 or not pieces[-1].startswith("--"):
        raise odata_error(f"The multipart body is missing its closing boundary '--{boundary}--'.")
    parts = []
    for piece in pieces[1:-1]:
        # the CRLF before a delimiter belongs to the delimiter, and so does the one after it
        if piece.startswith("\r\n"):
            piece = piece[2:]
        else:
            piece = _PART_LEAD.sub("", piece, count=1)
        if piece.endswith("\r\n"):
            piece = piece[:-2]
        elif piece.endswith("\n"):
            piece = piece[:-1]
        parts.append(piece)
    return parts


_PART_LEAD = re.compile(r"^[ \t]*\r?\n")


def parse_multipart(body: bytes, content_type: str) -> list[BatchPart | list[BatchPart]]:
    """An OData v4 $batch body: top-level requests and changesets (lists of requests)."""
    boundary = _boundary(content_type)
    if not content_type.lower().startswith("multipart/mixed") or not boundary:
        raise odata_error("The $batch request must have Content-Type multipart/mixed with a boundary.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise odata_error("The $batch body is not valid UTF-8.") from None
    items: list[BatchPart | list[BatchPart]] = []
    for part in _split_multipart(text, boundary):
        head, _, rest = _partition_blank(part)
        headers = _parse_headers(head)
        ctype = headers.get("content-type", "")
        if ctype.lower().startswith("multipart/mixed"):
            inner = _boundary(ctype)
            if not inner:
                raise odata_error("A change set has no boundary.")
            changeset = []
            for op in _split_multipart(rest, inner):
                op_head, _, op_rest = _partition_blank(op)
                changeset.append(_parse_http_part(_parse_headers(op_head), op_rest, in_changeset=True))
            items.append(changeset)
        else:
            items.append(_parse_http_part(headers, rest, in_changeset=False))
    return items


def _partition_blank(text: str) -> tuple[str, str, str]:
    """Split at the first blank line: (head, the line break(s), rest); (text, "", "") without one."""
    m = _BLANK_LINE_CORE.search(text)
    if not m:
        return text, "", ""
    start, end = m.start(), m.end()
    if start and text[start - 1] == "\r":
        start -= 1
    return text[:start], text[start:end], text[end:]


def _parse_http_part(headers: dict[str, str], text: str, in_changeset: bool) -> BatchPart:
    if not headers.get("content-type", "").lower().startswith("application/http"):
        raise odata_error("Each batch part must have Content-Type application/http.")
    head, _, body = _partition_blank(text)
    # The operations of a changeset usually share one request line and header block (POST to the same
    # set, same headers): parse each distinct block once, but keep no long one a hostile client may send.
    if len(head) <= 4096:
        method, url, part_headers = _request_head(head)  # the headers dict is shared: read-only
    else:
        method, url, part_headers = _parse_request_head(head)
    if in_changeset and method == "GET":
        raise odata_error("A GET request cannot be part of a change set.")
    return BatchPart(method, url, part_headers, body.rstrip("\r\n").encode(), headers.get("content-id"))


def _parse_request_head(head: str) -> tuple[str, str, dict[str, str]]:
    """`POST url HTTP/1.1` and the headers after it -> (method, url, headers)."""
    lines = head.splitlines()
    request_line = lines[0].split() if lines else []
    if len(request_line) < 2:
        raise odata_error(f"Bad request line in a batch part: '{lines[0]}'.")
    return request_line[0].upper(), request_line[1], _parse_headers("\n".join(lines[1:]))


_request_head = functools.lru_cache(maxsize=256)(_parse_request_head)


def render_part(content_id: str | None, response: SimResponse) -> str:
    mime = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    if content_id:
        mime += f"Content-ID: {content_id}\r\n"
    headers = "".join([f"{k}: {v}\r\n" for k, v in response.headers.items()])
    return f"{mime}\r\n{_status_line(response.status)}{headers}\r\n{response.body.decode()}\r\n"


@functools.cache  # a handful of statuses; HTTPStatus(...).phrase is slow per part
def _status_line(status: int) -> str:
    return f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
