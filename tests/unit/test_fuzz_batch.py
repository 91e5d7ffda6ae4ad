"""Fuzzing the $batch response parser: whatever D365 or a proxy sends back, the parser answers a
list of changeset results or a ProtocolError, never another exception, and a well-formed answer is read
exactly.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ukg2d365.d365.batch import ChangesetResult, parse_batch_response
from ukg2d365.errors import ProtocolError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID = (
    b"--batchresponse_1\r\n"
    b"Content-Type: multipart/mixed; boundary=changesetresponse_a\r\n\r\n"
    b"--changesetresponse_a\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    b"Content-ID: 1\r\n\r\n"
    b"HTTP/1.1 201 Created\r\nContent-Type: application/json; odata.metadata=minimal\r\n\r\n"
    b'{"LineNumber":1.0000000000000000,"DebitAmount":1234.10}\r\n'
    b"--changesetresponse_a\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    b"Content-ID: 2\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\r\n"
    b"--changesetresponse_a--\r\n"
    b"--batchresponse_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json; odata.metadata=minimal\r\n\r\n"
    b'{"error":{"code":"","message":"An error has occurred.","innererror":{"message":"Account does not exist."}}}'
    b"\r\n--batchresponse_1--\r\n"
)
VALID_TYPE = "multipart/mixed; boundary=batchresponse_1"


def parse_or_refuse(content_type: str, body: bytes) -> list[ChangesetResult] | None:
    """The contract: results (every property usable) or ProtocolError; anything else fails the test."""
    try:
        results = parse_batch_response(content_type, body)
    except ProtocolError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None
    assert results and all(isinstance(r, ChangesetResult) for r in results)
    for result in results:
        result.ok, result.status, result.failed, result.error_message  # noqa: B018
        for inner in result.responses:
            assert 100 <= inner.status <= 999
            if inner.error_message is not None:
                assert "\n" not in inner.error_message and len(inner.error_message) <= 300
    return results


def test_the_seed_response_parses() -> None:
    results = parse_or_refuse(VALID_TYPE, VALID)
    assert results is not None and [r.ok for r in results] == [True, False]


@FUZZ
@given(st.binary(max_size=2000), st.sampled_from([VALID_TYPE, "multipart/mixed; boundary=b", "text/html", ""]))
def test_random_bytes_are_parsed_or_refused(body: bytes, content_type: str) -> None:
    parse_or_refuse(content_type, body)


@FUZZ
@given(st.text(max_size=120))
@example("multipart/mixed; boundary=bä")  # non-ASCII boundary: latin-1 header text from requests
@example('multipart/mixed; boundary=""')
@example("multipart/mixed; boundary=\u2028")
def test_any_content_type_header_is_parsed_or_refused(content_type: str) -> None:
    parse_or_refuse(content_type, VALID)


MUTATIONS = st.sampled_from(["truncate", "delete", "insert", "replace", "duplicate", "lf", "cr"])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    body = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(MUTATIONS)
        at = draw(st.integers(0, len(body)))
        end = draw(st.integers(at, min(len(body), at + 200)))
        if kind == "truncate":
            del body[at:]
        elif kind == "delete":
            del body[at:end]
        elif kind == "insert":
            body[at:at] = draw(st.sampled_from([b"\r\n", b"--batchresponse_1", b"--changesetresponse_a--",
                                                 b"\r\n\r\n", b"HTTP/1.1 200 OK", b"{", b"\xff\xfe", b"NaN"])) \
                + draw(st.binary(max_size=8))
        elif kind == "replace" and body:
            body[min(at, len(body) - 1)] = draw(st.integers(0, 255))
        elif kind == "duplicate":
            body[at:at] = body[at:end]
        elif kind == "lf":
            body = bytearray(bytes(body).replace(b"\r\n", b"\n"))
        elif kind == "cr":
            body = bytearray(bytes(body).replace(b"\r\n", b"\r"))
    return bytes(body)


@FUZZ
@given(mutated())
def test_mutated_or_truncated_responses_are_parsed_or_refused(body: bytes) -> None:
    parse_or_refuse(VALID_TYPE, body)


def test_every_truncation_that_loses_the_closing_boundary_is_refused() -> None:
    # A connection cut anywhere before the final "--batchresponse_1--" leaves an incomplete answer: it must
    # never be read as a whole one (a lost changeset would look like "nothing to report").
    end = VALID.rindex(b"--batchresponse_1--") + len(b"--batchresponse_1--")
    for cut in range(end):
        assert parse_or_refuse(VALID_TYPE, VALID[:cut]) is None, cut
    assert parse_or_refuse(VALID_TYPE, VALID[:end]) is not None  # the final CRLF is optional


# ---------------------------------------------------------------- well-formed answers are read exactly


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.text(max_size=20)
    | st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-10**9, max_value=10**9),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
STATUSES = st.sampled_from([200, 201, 204, 400, 404, 409, 412, 429, 500, 503])


def _inner(status: int, body: Any, content_id: str | None) -> str:
    head = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    if content_id is not None:
        head += f"Content-ID: {content_id}\r\n"
    payload = "" if status == 204 else json.dumps({"error": {"message": "x"}, "value": body}, default=str)
    return (f"{head}\r\nHTTP/1.1 {status} Reason\r\nContent-Type: application/json\r\n\r\n{payload}\r\n")


@st.composite
def batch_answers(draw: st.DrawFn) -> tuple[str, bytes, list[list[int]]]:
    boundary = "batchresponse_" + draw(st.text("abcdef0123456789-", min_size=1, max_size=12))
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    changesets: list[list[int]] = []
    parts: list[str] = []
    for n in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            cs = f"changesetresponse_{n}"
            statuses = draw(st.lists(STATUSES, min_size=1, max_size=3))
            inner = "".join(f"--{cs}\r\n" + _inner(s, draw(JSON_VALUES), str(i + 1)) for i, s in enumerate(statuses))
            parts.append(f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={cs}\r\n\r\n{inner}--{cs}--\r\n")
        else:  # a failed changeset answered as one response
            statuses = [draw(STATUSES)]
            parts.append(f"--{boundary}\r\n" + _inner(statuses[0], draw(JSON_VALUES), None))
        changesets.append(statuses)
    text = "".join(parts) + f"--{boundary}--\r\n"
    quoted = draw(st.booleans())
    content_type = f'multipart/mixed; boundary="{boundary}"' if quoted else f"multipart/mixed; boundary={boundary}"
    return content_type, text.replace("\r\n", eol).encode(), changesets


@FUZZ
@given(batch_answers())
def test_well_formed_answers_are_read_exactly(answer: tuple[str, bytes, list[list[int]]]) -> None:
    content_type, body, changesets = answer
    results = parse_or_refuse(content_type, body)
    assert results is not None, body
    assert [[r.status for r in result.responses] for result in results] == changesets
    for result, statuses in zip(results, changesets, strict=True):
        assert result.ok == all(200 <= s < 300 for s in statuses)


# ---------------------------------------------------------------- the fast path agrees with the general one

_HEADER_NAME = st.text(st.sampled_from("ABCXYZabcxyz-_ "), min_size=1, max_size=12).filter(lambda s: s.strip())
_HEADER_VALUE = st.text(st.sampled_from("abc XYZ019:/=;,'()\t"), max_size=20)
_HEADERS = st.lists(st.tuples(_HEADER_NAME, _HEADER_VALUE), max_size=4)


@st.composite
def answer_parts(draw: Any) -> bytes:
    """One changeset answer part, mostly in the usual bodiless shape, sometimes bent out of it."""
    mime = [("Content-Type", draw(st.sampled_from(["application/http", "Application/HTTP", "text/plain"])))]
    if draw(st.booleans()):
        mime.append(("Content-ID", draw(st.sampled_from(["1", " 42 ", "", "a b"]))))
    mime += draw(_HEADERS)
    mime = draw(st.permutations(mime))
    status = draw(st.sampled_from(
        ["HTTP/1.1 204 No Content", "HTTP/1.1 201", "HTTP/2 429 Too Many ", "HTTP/2 429 Too Many", "HTTP/1.1 20x"]))
    headers = draw(_HEADERS)
    if draw(st.booleans()):
        headers.append(("Content-ID", draw(st.sampled_from(["7", ""]))))
    tail = draw(st.sampled_from(["", "\r\n", "\r\n\r\n", "\r\n{}", "\r\n  \r\n", "garbage\r\n"]))
    text = "".join(f"{n}:{v}\r\n" for n, v in mime) + "\r\n" + status + "\r\n"
    text += "".join(f"{n}:{v}\r\n" for n, v in headers) + tail
    return text.encode()


@given(answer_parts())
@FUZZ
@example(b"Content-Type: application/http\r\nContent-ID: 3\r\n\r\nHTTP/1.1 204 No Content\r\nOData-Version: 4.0\r\n")
def test_fast_path_reads_a_part_exactly_as_the_general_path(raw: bytes) -> None:
    from ukg2d365.d365 import batch

    fast = batch._plain_part(raw)
    if fast is None:
        return  # not the usual shape: only the general path reads it
    general = batch._http_part(*batch._headers_and_body(raw, "changeset response"))
    assert (fast.status, fast.reason, fast.content_id, fast.body, fast.text) == (
        general.status, general.reason, general.content_id, general.body, general.text)
    assert dict(fast.headers) == dict(general.headers)
