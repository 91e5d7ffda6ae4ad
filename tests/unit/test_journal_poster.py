"""Every transition of the posting state machine, against an in-memory D365 with injectable faults."""

from __future__ import annotations

import re
import sys
from decimal import Decimal
from typing import Any

import pytest

from tests.helpers import gl, make_config
from ukg2d365.d365.batch import ChangesetResult, InnerResponse
from ukg2d365.errors import AmbiguousWriteError, RemoteUnavailable
from ukg2d365.flows.journal_poster import JournalPoster
from ukg2d365.flows.post_payroll import posting_record
from ukg2d365.journal import build_journals
from ukg2d365.ledger import FAILED, POSTED, SENDING, Ledger
from ukg2d365.ukg.records import parse_gl_line


class FakeD365:
    """Just enough of ODataClient for the poster: headers, lines, marker search, $batch, faults."""

    def __init__(self) -> None:
        self.headers: dict[str, dict[str, Any]] = {}
        self.lines: dict[str, dict[int, dict[str, Any]]] = {}
        self.seq = 0
        self.faults: list[str] = []  # e.g. "create:drop_after", "batch:drop_after", "batch:fail", "batch:down"
        self.calls: list[str] = []

    def _fault(self, op: str) -> str | None:
        for f in self.faults:
            if f.startswith(op + ":"):
                self.faults.remove(f)
                return f.split(":", 1)[1]
        return None

    def create(self, entity_set: str, body: dict) -> dict:
        self.calls.append("create")
        fault = self._fault("create")
        if fault == "drop_before":
            raise AmbiguousWriteError("connection dropped")
        self.seq += 1
        jbn = f"usmf-{self.seq:06d}"
        self.headers[jbn] = dict(body, JournalBatchNumber=jbn, IsPosted="No")
        self.lines[jbn] = {}
        if fault == "drop_after":
            raise AmbiguousWriteError("connection dropped after sending")
        return self.headers[jbn]

    def batch(self, changesets, gate=None):
        if gate is not None:  # like the real client: held only while the request is "on the wire"
            gate.acquire()
            try:
                return self._batch(changesets)
            finally:
                gate.release(ok=True)
        return self._batch(changesets)

    def _batch(self, changesets):
        self.calls.append("batch")
        fault = self._fault("batch")
        if fault == "down":
            raise RemoteUnavailable("D365 unavailable")
        if fault == "fail":
            return [ChangesetResult([InnerResponse(400, "Bad Request", {}, {"error": {"innererror": {
                "message": "Account 999 does not exist"}}})])]
        for op in changesets[0]:
            body = op.body
            self.lines[body["JournalBatchNumber"]][int(body["LineNumber"])] = dict(body)
        if fault == "drop_after":
            raise AmbiguousWriteError("dropped after changeset")
        return [ChangesetResult([InnerResponse(201, "Created", {}, {}) for _ in changesets[0]])]

    def get(self, entity_set: str, key: dict):
        self.calls.append("get")
        h = self.headers.get(key["JournalBatchNumber"])
        if h is None:
            return None
        lines = self.lines[h["JournalBatchNumber"]].values()
        return dict(h, JournalTotalDebit=sum((ln["DebitAmount"] for ln in lines), Decimal(0)),
                    JournalTotalCredit=sum((ln["CreditAmount"] for ln in lines), Decimal(0)))

    def get_all(self, entity_set: str, *, filter: str = "", select=None, cross_company=False, top=None):
        self.calls.append("get_all " + entity_set)
        if entity_set == "LedgerJournalHeaders":
            marker = re.search(r"\*(U2D-\w+)\*", filter).group(1)
            return [h for h in self.headers.values() if marker in h["Description"]]
        jbn = re.search(r"JournalBatchNumber eq '([^']+)'", filter).group(1)
        return list(self.lines.get(jbn, {}).values())

    def delete(self, entity_set: str, key: dict) -> None:
        self.calls.append("delete")
        self.headers.pop(key["JournalBatchNumber"])
        self.lines.pop(key["JournalBatchNumber"])


@pytest.fixture()
def setup(tmp_path):
    cfg = make_config(tmp_path, summarize=False)
    items = [gl("5000", Decimal("10.00") + i, cc="110", dept="PROD", system_id=i) for i in range(7)]
    items.append(gl("2100", 0, sum((Decimal("10.00") + i for i in range(7)), Decimal(0)), system_id=99))
    journal = build_journals([parse_gl_line(x, n) for n, x in enumerate(items)], cfg)[0]
    ledger = Ledger(tmp_path / "ledger.db")
    ledger.start_run("test", {})
    fake = FakeD365()
    poster = JournalPoster(fake, ledger, cfg.d365)  # type: ignore[arg-type]

    def post():
        ledger.save_plan(posting_record(journal), journal.lines)
        return poster.post(ledger.get_posting(journal.key.text), journal.lines)

    return journal, ledger, fake, post


def only_copy(fake: FakeD365, journal) -> dict:
    assert len(fake.headers) == 1, "exactly one journal in D365"
    jbn = next(iter(fake.headers))
    got = sorted((n, ln["AccountDisplayValue"], ln["DebitAmount"], ln["CreditAmount"])
                 for n, ln in fake.lines[jbn].items())
    want = sorted((ln.line_number, ln.account, ln.debit, ln.credit) for ln in journal.lines)
    assert got == want
    return fake.headers[jbn]


def test_planned_to_posted_sends_header_batches_and_verifies(setup):
    journal, ledger, fake, post = setup
    outcome = post()
    assert outcome.status == POSTED and outcome.lines_sent == 8
    assert fake.calls == ["create", "batch", "batch", "batch", "get"]  # 8 lines in batches of 3
    only_copy(fake, journal)
    assert ledger.get_posting(journal.key.text).status == POSTED


def test_header_created_then_connection_dropped_adopts_it(setup):
    journal, ledger, fake, post = setup
    fake.faults = ["create:drop_after"]
    assert post().status == POSTED
    only_copy(fake, journal)


def test_changeset_processed_then_dropped_is_not_resent(setup):
    journal, ledger, fake, post = setup
    fake.faults = ["batch:drop_after"]
    outcome = post()
    assert outcome.status == POSTED and outcome.recovered
    only_copy(fake, journal)


def test_refused_changeset_marks_failed_then_replay_completes_once(setup):
    journal, ledger, fake, post = setup
    fake.faults = ["batch:fail"]
    first = post()
    assert first.status == FAILED and "Account 999 does not exist" in first.error
    assert ledger.get_posting(journal.key.text).status == FAILED
    second = post()  # replay / rerun
    assert second.status == POSTED
    only_copy(fake, journal)


def test_unavailable_mid_run_stays_sending_and_next_run_recovers(setup):
    journal, ledger, fake, post = setup
    calls = {"n": 0}
    real_batch = fake.batch

    def flaky(changesets, gate=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RemoteUnavailable("D365 unavailable")
        return real_batch(changesets, gate)

    fake.batch = flaky  # type: ignore[method-assign]
    with pytest.raises(RemoteUnavailable):
        post()
    assert ledger.get_posting(journal.key.text).status == SENDING
    assert post().status == POSTED
    only_copy(fake, journal)


def test_crash_after_header_before_record_is_found_by_marker(setup):
    journal, ledger, fake, post = setup
    # Simulate a process killed after D365 created the header but before the ledger recorded its number.
    ledger.save_plan(posting_record(journal), journal.lines)
    ledger.set_status(journal.key.text, SENDING)
    fake.create("LedgerJournalHeaders", {"Description": journal.description, "dataAreaId": "usmf"})
    fake.calls.clear()
    assert post().status == POSTED
    assert "create" not in fake.calls
    only_copy(fake, journal)


def test_half_written_journal_that_differs_is_deleted_and_rewritten(setup):
    journal, ledger, fake, post = setup
    ledger.save_plan(posting_record(journal), journal.lines)
    ledger.set_status(journal.key.text, SENDING)
    header = fake.create("LedgerJournalHeaders", {"Description": journal.description, "dataAreaId": "usmf"})
    fake.lines[header["JournalBatchNumber"]][1] = {"LineNumber": 1, "AccountDisplayValue": "601500-OLD-X",
                                                   "DebitAmount": Decimal("1.00"), "CreditAmount": Decimal("0")}
    assert post().status == POSTED
    assert "delete" in fake.calls
    only_copy(fake, journal)


def test_rerun_of_posted_journal_found_posted_in_d365_sends_nothing(setup):
    journal, ledger, fake, post = setup
    assert post().status == POSTED
    header = only_copy(fake, journal)
    header["IsPosted"] = "Yes"
    ledger.set_status(journal.key.text, FAILED, error="pretend")
    fake.calls.clear()
    assert post().status == POSTED
    assert not [c for c in fake.calls if c in ("create", "batch", "delete")]


def test_two_journals_with_the_same_marker_fail_without_writing(setup):
    journal, ledger, fake, post = setup
    ledger.save_plan(posting_record(journal), journal.lines)
    ledger.set_status(journal.key.text, SENDING)
    for _ in range(2):
        fake.create("LedgerJournalHeaders", {"Description": journal.description, "dataAreaId": "usmf"})
    outcome = post()
    assert outcome.status == FAILED and "2 journals in D365 carry marker" in outcome.error
    assert len(fake.headers) == 2


def test_concurrent_changesets_land_once_and_a_refusal_fails_the_posting(tmp_path):
    from ukg2d365.http import ConcurrencyLimit

    cfg = make_config(tmp_path, summarize=False)
    items = [gl("5000", Decimal("1.00"), cc="110", dept="PROD", system_id=i) for i in range(20)]
    items.append(gl("2100", 0, Decimal("20.00"), system_id=99))
    journal = build_journals([parse_gl_line(x, n) for n, x in enumerate(items)], cfg)[0]
    ledger = Ledger(tmp_path / "ledger.db")
    fake = FakeD365()
    limit = ConcurrencyLimit(3)
    poster = JournalPoster(fake, ledger, cfg.d365, limit=limit)  # type: ignore[arg-type]
    ledger.save_plan(posting_record(journal), journal.lines)
    fake.faults = ["batch:fail"]
    first = poster.post(ledger.get_posting(journal.key.text), journal.lines)
    assert first.status == FAILED
    second = poster.post(ledger.get_posting(journal.key.text), journal.lines)
    assert second.status == POSTED
    only_copy(fake, journal)
    assert limit.peak >= 1


def test_concurrency_limit_halves_on_throttle_and_regrows():
    from ukg2d365.http import ConcurrencyLimit

    limit = ConcurrencyLimit(4)
    limit.throttled()
    assert limit.current == 2
    limit.throttled()
    limit.throttled()
    assert limit.current == 1
    for _ in range(ConcurrencyLimit.REGROW_AFTER):
        limit.acquire()
        limit.release()
    assert limit.current == 2


class WireFake(FakeD365):
    """Each $batch spends a moment "on the wire" while holding the gate; counts how many are out at once."""

    def __init__(self, fail_call: int | None = None) -> None:
        super().__init__()
        import threading

        self.lock = threading.Lock()
        self.on_wire = 0
        self.most_on_wire = 0
        self.batches = 0
        self.fail_call = fail_call
        self.switch_intervals: set[float] = set()

    def batch(self, changesets, gate=None):
        import time

        assert gate is not None, "concurrent changesets go through the gate"
        gate.acquire()
        try:
            with self.lock:
                self.batches += 1
                call = self.batches
                self.switch_intervals.add(round(sys.getswitchinterval(), 4))
                self.on_wire += 1
                self.most_on_wire = max(self.most_on_wire, self.on_wire)
            time.sleep(0.02)
            with self.lock:
                self.on_wire -= 1
                if call == self.fail_call:
                    self.faults.append("batch:fail")
                return self._batch(changesets)
        finally:
            gate.release(ok=True)


def _many_lines_journal(tmp_path, count: int):
    cfg = make_config(tmp_path, summarize=False)  # batch_size 3
    items = [gl("5000", Decimal("1.00"), cc="110", dept="PROD", system_id=i) for i in range(count)]
    items.append(gl("2100", 0, Decimal(count), system_id=10_000))
    return cfg, build_journals([parse_gl_line(x, n) for n, x in enumerate(items)], cfg)[0]


def test_requests_on_the_wire_never_exceed_max_in_flight_and_reach_it(tmp_path):
    from ukg2d365.http import IO_SWITCH_INTERVAL, ConcurrencyLimit

    before = sys.getswitchinterval()
    cfg, journal = _many_lines_journal(tmp_path, 59)  # 60 lines: 20 changesets of 3
    ledger = Ledger(tmp_path / "ledger.db")
    fake = WireFake()
    limit = ConcurrencyLimit(3)
    poster = JournalPoster(fake, ledger, cfg.d365, limit=limit)  # type: ignore[arg-type]
    ledger.save_plan(posting_record(journal), journal.lines)
    assert poster.post(ledger.get_posting(journal.key.text), journal.lines).status == POSTED
    only_copy(fake, journal)
    assert fake.batches == 20
    assert fake.most_on_wire == 3 and limit.peak == 3
    # worker threads hand the GIL over promptly while changesets are out, and only then
    assert fake.switch_intervals == {round(min(before, IO_SWITCH_INTERVAL), 4)}
    assert sys.getswitchinterval() == pytest.approx(before, rel=0.05)


def test_after_a_refused_changeset_no_further_changeset_is_sent(tmp_path):
    from ukg2d365.http import ConcurrencyLimit

    cfg, journal = _many_lines_journal(tmp_path, 59)
    ledger = Ledger(tmp_path / "ledger.db")
    fake = WireFake(fail_call=2)
    poster = JournalPoster(fake, ledger, cfg.d365, limit=ConcurrencyLimit(2))  # type: ignore[arg-type]
    ledger.save_plan(posting_record(journal), journal.lines)
    outcome = poster.post(ledger.get_posting(journal.key.text), journal.lines)
    assert outcome.status == FAILED and "Account 999 does not exist" in (outcome.error or "")
    # the refusal stops the run: only what was already queued for the wire may follow it (2 x limit)
    assert fake.batches <= 2 + 2 * 2
