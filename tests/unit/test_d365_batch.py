"""$batch: multipart/mixed request bodies and response parsing (pure)."""

from __future__ import annotations

import email
import re
from decimal import Decimal

import pytest

from ukg2d365.d365.batch import (
    BatchOperation,
    ChangesetResult,
    build_batch,
    odata_error_message,
    parse_batch_response,
)
from ukg2d365.errors import ProtocolError

BASE = "https://contoso.operations.dynamics.com"


def _line(amount: str, content_id: int | None = None) -> BatchOperation:
    body = {"dataAreaId": "usmf", "JournalBatchNumber": "00012", "DebitAmount": Decimal(amount)}
    return BatchOperation("POST", "LedgerJournalLines", body, content_id)


# ---------------------------------------------------------------- building


def test_build_batch_writes_one_changeset_per_group_with_crlf_and_absolute_inner_urls() -> None:
    content_type, body = build_batch(BASE, [[_line("1.00"), _line("2.00")], [_line("3.00")]], boundary="batch_T")
    assert content_type == "multipart/mixed; boundary=batch_T"
    text = body.decode()
    assert text.startswith("--batch_T\r\nContent-Type: multipart/mixed; boundary=changeset_")
    assert text.endswith("--batch_T--\r\n")
    assert "\n" not in text.replace("\r\n", "")
    changeset_boundaries = re.findall(r"boundary=(changeset_[0-9a-f-]+)", text)
    assert len(changeset_boundaries) == 2 and len(set(changeset_boundaries)) == 2
    for cs in changeset_boundaries:
        assert f"--{cs}--\r\n" in text
    assert text.count(f"POST {BASE}/data/LedgerJournalLines HTTP/1.1\r\n") == 3
    assert text.count("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n") == 3
    assert re.findall(r"Content-ID: (\S+)", text) == ["1", "2", "3"]


def test_build_batch_serializes_decimal_amounts_exactly() -> None:
    _, body = build_batch(BASE, [[_line("1234.10"), _line("0.005")]])
    text = body.decode()
    assert '"DebitAmount":1234.10}' in text
    assert '"DebitAmount":0.005}' in text
    assert "1234.1}" not in text


def test_build_batch_keeps_caller_content_ids_and_content_id_references() -> None:
    header = BatchOperation("POST", "LedgerJournalHeaders", {"JournalName": "GenJrn"}, "h1")
    patch = BatchOperation("PATCH", "$h1", {"Description": "x"}, "h2")
    _, body = build_batch(BASE, [[header, patch]])
    text = body.decode()
    assert "Content-ID: h1\r\n" in text and "Content-ID: h2\r\n" in text
    assert "PATCH $h1 HTTP/1.1\r\n" in text


def test_build_batch_delete_has_no_body() -> None:
    _, body = build_batch(BASE, [[BatchOperation("DELETE", "LedgerJournalLines(LineNumber=1)", None, 1)]])
    text = body.decode()
    assert "DELETE " in text and "Content-Type: application/json" not in text


@pytest.mark.parametrize(
    "changesets",
    [
        [],
        [[]],
        [[BatchOperation("GET", "LedgerJournalLines", None, 1)]],
        [[BatchOperation("POST", "Lines\r\nX-Evil: 1", {}, 1)]],
        [[_line("1")] * 5001],
    ],
)
def test_build_batch_refuses_invalid_batches(changesets: list[list[BatchOperation]]) -> None:
    with pytest.raises(ValueError):
        build_batch(BASE, changesets)


def test_build_batch_refuses_float_amounts() -> None:
    with pytest.raises(TypeError):
        build_batch(BASE, [[BatchOperation("POST", "LedgerJournalLines", {"DebitAmount": 1.1}, 1)]])


def test_built_batch_is_valid_mime_for_an_independent_parser() -> None:
    content_type, body = build_batch(BASE, [[_line("5.50"), _line("6.60")], [_line("7.70")]])
    message = email.message_from_bytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    changesets = message.get_payload()
    assert isinstance(changesets, list) and len(changesets) == 2
    operations = changesets[0].get_payload()
    assert [op.get_content_type() for op in operations] == ["application/http", "application/http"]
    inner = operations[0].get_payload()
    assert inner.startswith(f"POST {BASE}/data/LedgerJournalLines HTTP/1.1")
    assert inner.rstrip().endswith('"DebitAmount":5.50}')


# ---------------------------------------------------------------- parsing


SUCCESS = (
    "--batchresponse_1\r\n"
    "Content-Type: multipart/mixed; boundary=changesetresponse_a\r\n"
    "\r\n"
    "--changesetresponse_a\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "Content-ID: 1\r\n"
    "\r\n"
    "HTTP/1.1 201 Created\r\n"
    "Location: https://contoso/data/LedgerJournalLines(dataAreaId='usmf',JournalBatchNumber='00012',LineNumber=1)\r\n"
    "Content-Type: application/json; odata.metadata=minimal\r\n"
    "OData-Version: 4.0\r\n"
    "\r\n"
    '{"@odata.etag":"W/\\"1\\"","LineNumber":1.0000000000000000,"DebitAmount":1234.10}\r\n'
    "--changesetresponse_a\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "Content-ID: 2\r\n"
    "\r\n"
    "HTTP/1.1 204 No Content\r\n"
    "\r\n"
    "\r\n"
    "--changesetresponse_a--\r\n"
    "--batchresponse_1\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 500 Internal Server Error\r\n"
    "Content-Type: application/json; odata.metadata=minimal; odata.streaming=true\r\n"
    "OData-Version: 4.0\r\n"
    "\r\n"
    '{"error":{"code":"","message":"An error has occurred.","innererror":{"message":"Write failed for table '
    "row of type 'LedgerJournalLineEntity'. Infolog: Error: Account 601500-BOGUS does not exist.\\r\\n"
    'at line two","type":"Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException",'
    '"stacktrace":"   at X"}}}\r\n'
    "--batchresponse_1--\r\n"
)


def test_parse_batch_response_detects_a_failed_changeset_with_its_innererror_message() -> None:
    results = parse_batch_response("multipart/mixed; boundary=batchresponse_1", SUCCESS.encode())
    assert len(results) == 2
    first, second = results
    assert first.ok
    assert [r.status for r in first.responses] == [201, 204]
    assert [r.content_id for r in first.responses] == ["1", "2"]
    assert first.responses[0].body["DebitAmount"] == Decimal("1234.10")
    assert str(first.responses[0].body["DebitAmount"]) == "1234.10"
    assert first.responses[1].body is None
    assert first.error_message is None
    assert not second.ok
    assert second.status == 500
    assert second.error_message == (
        "Write failed for table row of type 'LedgerJournalLineEntity'. "
        "Infolog: Error: Account 601500-BOGUS does not exist. | at line two"
    )


def test_parse_batch_response_accepts_lf_line_endings_and_quoted_boundary() -> None:
    lf = SUCCESS.replace("\r\n", "\n")
    results = parse_batch_response('multipart/mixed; boundary="batchresponse_1"', lf.encode())
    assert [r.ok for r in results] == [True, False]
    assert results[0].responses[0].headers["content-type"].startswith("application/json")


def test_parse_batch_response_inner_failure_inside_a_changeset_is_not_ok() -> None:
    body = (
        "--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n"
        "--c\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\n"
        'HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\r\n{"error":{"message":"Bad field"}}\r\n'
        "--c--\r\n--b--\r\n"
    )
    (result,) = parse_batch_response("multipart/mixed; boundary=b", body.encode())
    assert not result.ok
    assert result.error_message == "Bad field"
    assert result.failed is not None and result.failed.content_id == "1" and result.status == 400


def test_parse_batch_response_preamble_and_epilogue_are_ignored() -> None:
    body = (
        "this is a preamble\r\n--b\r\nContent-Type: application/http\r\n\r\n"
        "HTTP/1.1 204 No Content\r\n\r\n\r\n--b--\r\nepilogue"
    )
    (result,) = parse_batch_response("multipart/mixed; boundary=b", body.encode())
    assert result.ok


def test_inner_429_reports_its_status_and_headers() -> None:
    body = (
        "--b\r\nContent-Type: application/http\r\n\r\n"
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\n\r\n\r\n--b--\r\n"
    )
    (result,) = parse_batch_response("multipart/mixed; boundary=b", body.encode())
    assert result.status == 429
    assert result.failed is not None and result.failed.headers["retry-after"] == "7"
    assert result.error_message == "HTTP 429 Too Many Requests"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"{}"),  # no boundary
        ("multipart/mixed; boundary=b", b"--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"),
        ("multipart/mixed; boundary=b", b"nothing here"),
        ("multipart/mixed; boundary=b", b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n"),
        ("multipart/mixed; boundary=b", b"--b\r\nContent-Type: application/http\r\n\r\nnot http\r\n--b--\r\n"),
        (
            "multipart/mixed; boundary=b",
            b"--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 201 Created\r\n"
            b'Content-Type: application/json\r\n\r\n{"Debit": 1.\r\n--b--\r\n',
        ),
        ("multipart/mixed; boundary=b", b"--b--\r\n"),
    ],
)
def test_parse_batch_response_refuses_malformed_responses(content_type: str, body: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_batch_response(content_type, body)


def test_nested_changeset_missing_close_delimiter_is_truncated() -> None:
    body = (
        "--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n"
        "--c\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\r\n"
        "--b--\r\n"
    )
    with pytest.raises(ProtocolError, match="truncated"):
        parse_batch_response("multipart/mixed; boundary=b", body.encode())


# ---------------------------------------------------------------- error messages


def test_error_message_prefers_innererror_then_error_then_status() -> None:
    inner = {"error": {"message": "An error has occurred.", "innererror": {"message": "Infolog: bad"}}}
    assert odata_error_message(inner, 500) == "Infolog: bad"
    assert odata_error_message({"error": {"message": "Outer only"}}, 400) == "Outer only"
    assert odata_error_message({"error": {"message": "x", "innererror": {"message": "  "}}}, 400) == "x"
    assert odata_error_message(None, 502, "Bad Gateway") == "HTTP 502 Bad Gateway"


def test_error_message_keeps_every_infolog_line_on_one_line_and_caps_a_runaway_body() -> None:
    infolog = "Write failed.\r\nInfolog: Error: Account 1 does not exist.\nError: Voucher GJ-1 is not balanced."
    message = odata_error_message({"error": {"message": "An error has occurred.", "innererror": {"message": infolog,
                                   "stacktrace": "at X.Y()"}}}, 500)
    assert message == ("Write failed. | Infolog: Error: Account 1 does not exist. | "
                       "Error: Voucher GJ-1 is not balanced.")
    long = "Write failed: " + "x" * 5000
    capped = odata_error_message({"error": {"innererror": {"message": long}}}, 500)
    assert len(capped) == 2000 and capped.endswith("...")


def test_error_message_keeps_target_details_and_nested_internal_exceptions() -> None:
    body = {"error": {
        "code": "BadRequest", "message": "The request is invalid.", "target": "LedgerJournalLines",
        "details": [{"code": "", "message": "DebitAmount must not be negative", "target": "DebitAmount"},
                    {"code": "", "message": "CurrencyCode is required"}],
        "innererror": {"message": "Write failed.", "internalexception": {"message": "Field check failed."}},
    }}
    assert odata_error_message(body, 400) == (
        "The request is invalid. | Write failed. | Field check failed. | target LedgerJournalLines | "
        "DebitAmount must not be negative (target DebitAmount) | CurrencyCode is required"
    )


def test_failed_changeset_of_several_operations_names_the_refused_content_id() -> None:
    body = (
        "--b\r\nContent-Type: application/http\r\nContent-ID: 7\r\n\r\n"
        'HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\r\n{"error":{"message":"Bad field"}}\r\n'
        "--b--\r\n"
    )
    (parsed,) = parse_batch_response("multipart/mixed; boundary=b", body.encode())
    assert parsed.error_message == "Bad field"  # the size of the request's changeset is not known here
    several = ChangesetResult(parsed.responses, operations=5)
    assert several.error_message == "operation Content-ID 7 of 5: Bad field"


def test_unprocessed_changeset_is_not_ok_and_says_it_is_safe_to_resend() -> None:
    result = ChangesetResult.unprocessed()
    assert not result.ok and not result.processed and result.status is None
    assert result.error_message is not None and "safe to send again" in result.error_message


def test_empty_changeset_result_is_not_ok() -> None:
    assert not ChangesetResult([]).ok
