"""Paging with pages requested ahead: order kept, stops at the end, few wasted requests."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import responses

from ukg2d365.credentials import UkgCredentials
from ukg2d365.http import HttpClient, RetryBudget, RetryPolicy
from ukg2d365.ukg.client import UkgClient

BASE = "https://service4.ultipro.com"


def make(prefetch: int, page_size: int) -> UkgClient:
    http = HttpClient(system="UKG", base_url=BASE, timeout=10, ca_bundle=None, policy=RetryPolicy(max_attempts=1),
                      budget=RetryBudget(10), sleep=lambda s: None)
    client = UkgClient(http, UkgCredentials("u", "p", "ABCDE", None), page_size, "/payroll/v2/general-ledger")
    client.prefetch = prefetch
    return client


def serve(items: list[dict], page_size: int):
    def callback(request):
        q = parse_qs(urlsplit(request.url).query)
        page = int(q["page"][0])
        chunk = items[(page - 1) * page_size : page * page_size]
        return 200, {"Content-Type": "application/json"}, json.dumps(chunk)
    return callback


@responses.activate
def test_prefetched_pages_are_yielded_in_order_and_stop_at_the_short_page():
    items = [{"systemId": i} for i in range(23)]
    responses.add_callback(responses.GET, f"{BASE}/payroll/v2/general-ledger", callback=serve(items, 5))
    got = list(make(prefetch=4, page_size=5).gl_lines())
    assert got == items
    pages = sorted(int(parse_qs(urlsplit(c.request.url).query)["page"][0]) for c in responses.calls)
    assert pages[:5] == [1, 2, 3, 4, 5]
    assert len(pages) <= 5 + 3  # at most prefetch-1 requests past the end


@responses.activate
def test_a_short_first_page_makes_no_extra_request():
    responses.add_callback(responses.GET, f"{BASE}/payroll/v2/general-ledger", callback=serve([{"a": 1}], 5))
    assert list(make(prefetch=4, page_size=5).gl_lines()) == [{"a": 1}]
    assert len(responses.calls) == 1
