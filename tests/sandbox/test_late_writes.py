"""Late writes: a request the client gave up on still runs in D365, after the client's timeout.

The ``latency`` fault already is one: the server thread sleeps first, then handles the request as usual and
only then finds the client gone, so the write lands although nobody reads its answer. That is what a busy
AOS does to a request whose client timed out (a header POST answered after the client timeout, then
landing beside the header recovery created).
"""

from __future__ import annotations

import time

import pytest
import requests

from tests.sandbox.test_d365 import batch_body
from ukg2d365.sandbox import FaultRule, Sandbox, catalog


def _session(sb: Sandbox) -> requests.Session:
    s = requests.Session()
    s.verify = str(sb.ca_path)
    s.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment replaces verify=
    token, _ = sb.tokens.issue(catalog.CLIENT_ID, sb.urls.d365)
    s.headers["Authorization"] = f"Bearer {token}"
    return s


def _wait(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the late write never landed"
        time.sleep(0.02)


def test_a_header_post_the_client_timed_out_on_lands_afterwards(sandbox: Sandbox) -> None:
    sandbox.faults.add(FaultRule("d365", "latency", method="POST", path_regex=r"LedgerJournalHeaders$",
                                 latency_ms=1200))
    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        _session(sandbox).post(f"{sandbox.urls.d365}/data/LedgerJournalHeaders",
                               json={"JournalName": catalog.JOURNAL_NAME}, timeout=0.3)
    assert sandbox.d365.state.journals() == []  # nothing yet when the client gives up
    _wait(lambda: bool(sandbox.d365.state.journals()))
    assert time.monotonic() - started >= 1.1
    assert len(sandbox.d365.state.journals()) == 1


def test_a_changeset_the_client_timed_out_on_is_committed_afterwards(sandbox: Sandbox) -> None:
    s = _session(sandbox)
    header = s.post(f"{sandbox.urls.d365}/data/LedgerJournalHeaders", json={"JournalName": catalog.JOURNAL_NAME},
                    timeout=10).json()
    batch = header["JournalBatchNumber"]
    line = {"JournalBatchNumber": batch, "TransDate": "2026-06-26T12:00:00Z", "AccountType": "Ledger",
            "AccountDisplayValue": "601500", "DebitAmount": 5, "CurrencyCode": "USD"}
    body, ctype = batch_body([[("POST", "LedgerJournalLines", line), ("POST", "LedgerJournalLines", line)]])
    sandbox.faults.add(FaultRule("d365", "latency", method="POST", path_regex=r"\$batch$", latency_ms=1000))
    with pytest.raises(requests.exceptions.Timeout):
        s.post(f"{sandbox.urls.d365}/data/$batch", data=body, headers={"Content-Type": ctype}, timeout=0.3)
    assert sandbox.d365.state.lines(batch) == []
    _wait(lambda: len(sandbox.d365.state.lines(batch)) == 2)  # the whole changeset, once
    time.sleep(0.2)
    assert len(sandbox.d365.state.lines(batch)) == 2
