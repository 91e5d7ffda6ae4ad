"""A changeset throttled inside a 200 $batch answer was not processed: it is sent again after Retry-After."""

from __future__ import annotations

import requests
import responses

from tests.unit.test_d365_odata import FakeApp
from ukg2d365.config import D365Config
from ukg2d365.d365.auth import TokenProvider
from ukg2d365.d365.batch import BatchOperation
from ukg2d365.d365.odata import ODataClient
from ukg2d365.http import HttpClient, RetryBudget, RetryPolicy

BASE = "https://contoso.operations.dynamics.com"


def part(status: str, extra: str = "", body: str = "{}") -> str:
    return ("--changesetresponse_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
            f"Content-ID: 1\r\n\r\nHTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}\r\n{body}\r\n"
            "--changesetresponse_1--\r\n")


def batch_body(status: str, extra: str = "") -> str:
    return ("--batchresponse_9\r\nContent-Type: multipart/mixed; boundary=changesetresponse_1\r\n\r\n"
            + part(status, extra) + "--batchresponse_9--\r\n")


def make_client(waits: list[float]) -> ODataClient:
    cfg = D365Config(base_url=BASE, tenant_id="t", client_id="c", legal_entity="usmf")
    tokens = TokenProvider(cfg, "secret", requests.Session(), app_factory=lambda **_: FakeApp())
    policy = RetryPolicy(max_attempts=3, backoff_base=1, backoff_max=4, max_retry_after=60, budget_seconds=100)
    http = HttpClient(system="D365", base_url=BASE, timeout=30, ca_bundle=None, policy=policy,
                      budget=RetryBudget(100), sleep=waits.append)
    return ODataClient(http, tokens)


@responses.activate
def test_changeset_throttled_inside_batch_is_resent_after_retry_after():
    waits: list[float] = []
    client = make_client(waits)
    ct = "multipart/mixed; boundary=batchresponse_9"
    responses.add(responses.POST, f"{BASE}/data/$batch", body=batch_body("429 Too Many Requests", "Retry-After: 7\r\n"),
                  content_type=ct)
    responses.add(responses.POST, f"{BASE}/data/$batch", body=batch_body("201 Created"), content_type=ct)
    results = client.batch([[BatchOperation("POST", "LedgerJournalLines", {"a": 1}, "1")]])
    assert results[0].ok
    assert waits == [7.0]
    assert len(responses.calls) == 2


@responses.activate
def test_changeset_refused_with_400_is_not_resent():
    waits: list[float] = []
    client = make_client(waits)
    ct = "multipart/mixed; boundary=batchresponse_9"
    responses.add(responses.POST, f"{BASE}/data/$batch", body=batch_body("400 Bad Request"), content_type=ct)
    results = client.batch([[BatchOperation("POST", "LedgerJournalLines", {"a": 1}, "1")]])
    assert not results[0].ok and results[0].status == 400
    assert waits == [] and len(responses.calls) == 1


def test_header_line_without_a_colon_in_a_batch_answer_is_a_protocol_error():
    import pytest

    from ukg2d365.d365.batch import parse_batch_response
    from ukg2d365.errors import ProtocolError

    body = batch_body("201 Created").replace("Content-Transfer-Encoding: binary", "garbage line", 1)
    with pytest.raises(ProtocolError, match="malformed header line"):
        parse_batch_response("multipart/mixed; boundary=batchresponse_9", body.encode())
