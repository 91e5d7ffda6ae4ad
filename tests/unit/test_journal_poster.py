"""Every transition of the posting state machine, against an in-memory D365 with injectable faults."""

from __future__ import annotations

import re
import sqlite3
import sys
from decimal import Decimal
from typing import Any

import pytest

from tests.helpers import gl, make_config
from ukg2d365.d365.batch import ChangesetResult, InnerResponse
from ukg2d365.errors import AmbiguousWriteError, RemoteError, RemoteUnavailable
from ukg2d365.flows.journal_poster import JournalPoster
from ukg2d365.flows.post_payroll import posting_record
from ukg2d365.journal import build_journals
from ukg2d365.ledger import FAILED, POSTED, SENDING, Ledger
from ukg2d365.ukg.records import parse_gl_line


class FakeD365:
    """Just enough of ODataClient for the poster: headers, lines, marker search, $batch, faults.

    Like F&O it numbers lines itself when the client sends no LineNumber (``refuse_numbers`` refuses client
    ones) and fills each line's Voucher from the journal name's NewVoucher setting.
    """

    def __init__(self, new_voucher: str = "BalanceSheet", refuse_numbers: bool = False) -> None:
        self.headers: dict[str, dict[str, Any]] = {}
        self.lines: dict[str, dict[int, dict[str, Any]]] = {}
        self.seq = 0
        self.voucher_seq = 0
        self.new_voucher = new_voucher
        self.refuse_numbers = refuse_numbers
        self.faults: list[str] = []  # e.g. "create:drop_after", "batch:drop_after", "batch:fail", "batch:down"
        self.calls: list[str] = []
        self.late: list[Any] = []  # writes D365 runs only after the client gave up waiting (see land_late)

    def _fault(self, op: str) -> str | None:
        for f in self.faults:
            if f.startswith(op + ":"):
                self.faults.remove(f)
                return f.split(":", 1)[1]
        return None

    def land_late(self) -> None:
        """The writes whose answers timed out run now, as a busy AOS would minutes later."""
        late, self.late = self.late, []
        for work in late:
            work()

    def get_journal_name(self) -> dict:
        return {"dataAreaId": "usmf", "Name": "GenJrn", "NewVoucher": self.new_voucher,
                "VoucherSeriesCode": "GNJL"}

    def _new_header(self, body: dict) -> dict:
        self.seq += 1
        jbn = f"USMF-{self.seq:06d}"
        self.headers[jbn] = dict(body, JournalBatchNumber=jbn, IsPosted="No")
        self.lines[jbn] = {}
        return self.headers[jbn]

    def create(self, entity_set: str, body: dict) -> dict:
        self.calls.append("create")
        fault = self._fault("create")
        if fault == "drop_before":
            raise AmbiguousWriteError("connection dropped")
        if fault == "generic":
            raise RemoteError("D365 POST LedgerJournalHeaders failed (HTTP 400): An error has occurred.",
                              status=400)
        if fault == "late":
            self.late.append(lambda: self._new_header(body))
            raise AmbiguousWriteError("read timed out")
        header = self._new_header(body)
        if fault == "drop_after":
            raise AmbiguousWriteError("connection dropped after sending")
        return header

    def batch(self, changesets, gate=None):
        if gate is not None:  # like the real client: held only while the request is "on the wire"
            gate.acquire()
            try:
                return self._batch(changesets)
            finally:
                gate.release(ok=True)
        return self._batch(changesets)

    def _voucher(self, jbn: str, body: dict) -> str:
        if self.new_voucher == "Manually":
            return body["Voucher"]
        existing = list(self.lines[jbn].values())
        if self.new_voucher == "OneVoucher" and existing:
            return existing[0]["Voucher"]
        if self.new_voucher == "BalanceSheet" and existing:
            last = existing[-1]["Voucher"]
            open_balance = sum((ln["DebitAmount"] - ln["CreditAmount"] for ln in existing if ln["Voucher"] == last),
                               Decimal(0))
            if open_balance != 0:
                return last
        self.voucher_seq += 1
        return f"GNJL{self.voucher_seq:06d}"

    def _apply(self, ops) -> list[InnerResponse]:
        answers = []
        for op in ops:
            if op.method == "DELETE":
                m = re.search(r"JournalBatchNumber='([^']+)',LineNumber=(\d+)", op.url.replace("%27", "'"))
                self.lines[m.group(1)].pop(int(m.group(2)))
                answers.append(InnerResponse(204, "No Content", {}, None))
                continue
            if op.url == "LedgerJournalHeaders":
                answers.append(InnerResponse(201, "Created", {}, self._new_header(op.body)))
                continue
            body = dict(op.body)
            jbn = body["JournalBatchNumber"]
            if "LineNumber" in body:
                if self.refuse_numbers:
                    raise _Refused("Field 'Line number' cannot be set: D365 assigns it.")
                number = int(body["LineNumber"])
                if number in self.lines[jbn]:
                    raise _Refused(f"Line {number} already exists.")
            else:
                number = max(self.lines[jbn], default=0) + 1
            if self.new_voucher == "Manually" and not body.get("Voucher"):
                raise _Refused("Field 'Voucher' must be filled in.")
            body["LineNumber"] = Decimal(number)
            body["Voucher"] = self._voucher(jbn, body)
            self.lines[jbn][number] = body
            answers.append(InnerResponse(201, "Created", {}, {}))
        return answers

    def _batch(self, changesets):
        self.calls.append("batch")
        fault = self._fault("batch")
        if fault == "down":
            raise RemoteUnavailable("D365 unavailable")
        if fault == "fail":
            return [ChangesetResult([InnerResponse(400, "Bad Request", {}, {"error": {"innererror": {
                "message": "Account 999 does not exist"}}})])]
        if fault == "late":
            self.late.append(lambda: self._apply(changesets[0]))
            raise AmbiguousWriteError("read timed out")
        snapshot = {j: dict(lines) for j, lines in self.lines.items()}, dict(self.headers)
        try:
            answers = self._apply(changesets[0])
        except _Refused as exc:  # a changeset is atomic: nothing of it stays
            self.lines, self.headers = snapshot
            return [ChangesetResult([InnerResponse(400, "Bad Request", {}, {"error": {"innererror": {
                "message": str(exc)}}})])]
        if fault == "drop_after":
            raise AmbiguousWriteError("dropped after changeset")
        return [ChangesetResult(answers)]

    def get(self, entity_set: str, key: dict):
        self.calls.append("get " + entity_set)
        if entity_set == "JournalNames":
            return self.get_journal_name() if key["Name"] == "GenJrn" else None
        h = self.headers.get(key["JournalBatchNumber"])
        if h is None:
            return None
        return dict(h)

    def get_all(self, entity_set: str, *, filter: str = "", select=None, cross_company=False, top=None):
        self.calls.append("get_all " + entity_set)
        if entity_set == "LedgerJournalHeaders":
            markers = re.findall(r"\*(U2D-\w+)\*", filter)
            return [dict(h) for h in self.headers.values() if any(m in h["Description"] for m in markers)]
        jbn = re.search(r"JournalBatchNumber eq '([^']+)'", filter).group(1)
        rows = [dict(ln) for _, ln in sorted(self.lines.get(jbn, {}).items())]
        return rows[:top] if top is not None else rows

    def delete(self, entity_set: str, key: dict) -> None:
        self.calls.append("delete")
        self.headers.pop(key["JournalBatchNumber"])
        self.lines.pop(key["JournalBatchNumber"])


class _Refused(Exception):
    pass


def d365_cfg(cfg, line_numbers: str = "d365", settle: float = 7.0):
    return cfg.d365.model_copy(update={"line_numbers": line_numbers, "settle_seconds": settle})


class Setup:
    def __init__(self, tmp_path, line_numbers: str, fake: FakeD365 | None = None, journal=None, limit=None) -> None:
        cfg = make_config(tmp_path, summarize=False)
        if journal is None:
            items = [gl("5000", Decimal("10.00") + i, cc="110", dept="PROD", system_id=i) for i in range(7)]
            items.append(gl("2100", 0, sum((Decimal("10.00") + i for i in range(7)), Decimal(0)), system_id=99))
            journal = build_journals([parse_gl_line(x, n) for n, x in enumerate(items)], cfg)[0]
        self.journal = journal
        self.ledger = Ledger(tmp_path / "ledger.db")
        self.ledger.start_run("test", {})
        self.fake = fake or FakeD365()
        self.slept: list[float] = []
        self.poster = JournalPoster(self.fake, self.ledger, d365_cfg(cfg, line_numbers),  # type: ignore[arg-type]
                                    limit=limit, sleep=self.slept.append)

    def post(self):
        self.ledger.save_plan(posting_record(self.journal), self.journal.lines)
        return self.poster.post(self.ledger.get_posting(self.journal.key.text))

    def __iter__(self):  # journal, ledger, fake, post: the shape the older tests unpack
        return iter((self.journal, self.ledger, self.fake, self.post))


@pytest.fixture(params=["d365", "client"])
def setup(request, tmp_path):
    return Setup(tmp_path, request.param)


def only_copy(fake: FakeD365, journal) -> dict:
    """Exactly one journal in D365, holding each planned line exactly once (by content), in balanced vouchers."""
    assert len(fake.headers) == 1, f"exactly one journal in D365, found {sorted(fake.headers)}"
    jbn = next(iter(fake.headers))
    got = sorted((ln["AccountDisplayValue"], ln["DebitAmount"], ln["CreditAmount"], ln["Text"])
                 for ln in fake.lines[jbn].values())
    want = sorted((ln.account, ln.debit, ln.credit, ln.text) for ln in journal.lines)
    assert got == want
    balance: dict[str, Decimal] = {}
    for ln in fake.lines[jbn].values():
        balance[ln["Voucher"]] = balance.get(ln["Voucher"], Decimal(0)) + ln["DebitAmount"] - ln["CreditAmount"]
    assert all(v == 0 for v in balance.values()), balance
    return fake.headers[jbn]


def test_planned_to_posted_sends_header_batches_and_verifies(setup):
    journal, ledger, fake, post = setup
    outcome = post()
    assert outcome.status == POSTED and outcome.lines_sent == 8
    # the journal name first, then 8 lines in batches of 3, then the verify pass reads what landed
    assert fake.calls == ["get JournalNames", "create", "batch", "batch", "batch",
                          "get_all LedgerJournalHeaders", "get_all LedgerJournalLines"]
    only_copy(fake, journal)
    assert ledger.get_posting(journal.key.text).status == POSTED
    assert setup.slept == []  # nothing ambiguous: no waiting


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


def test_half_written_journal_with_a_foreign_line_loses_that_line_and_gets_the_missing_ones(setup):
    journal, ledger, fake, post = setup
    ledger.save_plan(posting_record(journal), journal.lines)
    ledger.set_status(journal.key.text, SENDING)
    header = fake.create("LedgerJournalHeaders", {"Description": journal.description, "dataAreaId": "usmf"})
    jbn = header["JournalBatchNumber"]
    fake.lines[jbn][1] = {"LineNumber": Decimal(1), "AccountDisplayValue": "601500-OLD-X", "Voucher": "GNJL000001",
                          "DebitAmount": Decimal("1.00"), "CreditAmount": Decimal("0"), "Text": "old"}
    assert post().status == POSTED
    assert setup.slept == [7.0]  # the previous run died mid-send: its requests may still land
    assert list(fake.headers) == [jbn]  # the same journal, repaired: the foreign line deleted, the plan sent
    assert all(ln["AccountDisplayValue"] != "601500-OLD-X" for ln in fake.lines[jbn].values())
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
    for jbn in fake.lines:  # both hold a line: neither is an empty leftover that may be deleted
        fake.lines[jbn][1] = {"LineNumber": Decimal(1), "AccountDisplayValue": "601500-110-PROD", "Text": "x",
                              "DebitAmount": Decimal("10.00"), "CreditAmount": Decimal(0), "Voucher": "V"}
    outcome = post()
    assert outcome.status == FAILED and "2 journals in D365 carry marker" in outcome.error
    assert len(fake.headers) == 2 and "batch" not in fake.calls and "delete" not in fake.calls


def test_concurrent_changesets_land_once_and_a_refusal_fails_the_posting(tmp_path):
    from ukg2d365.http import ConcurrencyLimit

    cfg = make_config(tmp_path, summarize=False)
    items = [gl("5000", Decimal("1.00"), cc="110", dept="PROD", system_id=i) for i in range(20)]
    items.append(gl("2100", 0, Decimal("20.00"), system_id=99))
    journal = build_journals([parse_gl_line(x, n) for n, x in enumerate(items)], cfg)[0]
    ledger = Ledger(tmp_path / "ledger.db")
    fake = FakeD365("OneVoucher")  # one voucher whatever the order: changesets may go side by side
    limit = ConcurrencyLimit(3)
    poster = JournalPoster(fake, ledger, cfg.d365, limit=limit)  # type: ignore[arg-type]
    ledger.save_plan(posting_record(journal), journal.lines)
    fake.faults = ["batch:fail"]
    first = poster.post(ledger.get_posting(journal.key.text))
    assert first.status == FAILED
    second = poster.post(ledger.get_posting(journal.key.text))
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
        super().__init__("OneVoucher")
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
    assert poster.post(ledger.get_posting(journal.key.text)).status == POSTED
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
    outcome = poster.post(ledger.get_posting(journal.key.text))
    assert outcome.status == FAILED and "Account 999 does not exist" in (outcome.error or "")
    # the refusal stops the run: only what was already queued for the wire may follow it (2 x limit)
    assert fake.batches <= 2 + 2 * 2


# ---------------------------------------------------------------------- D365's line numbers, late writes


def test_by_default_no_line_number_is_sent_and_d365_numbers_the_lines(tmp_path):
    world = Setup(tmp_path, "d365", FakeD365(refuse_numbers=True))
    assert world.post().status == POSTED
    jbn = next(iter(world.fake.headers))
    assert sorted(world.fake.lines[jbn]) == list(range(1, 9))
    only_copy(world.fake, world.journal)


def test_client_line_numbers_are_refused_where_d365_numbers_lines_itself(tmp_path):
    world = Setup(tmp_path, "client", FakeD365(refuse_numbers=True))
    outcome = world.post()
    assert outcome.status == FAILED and "D365 assigns it" in (outcome.error or "")


@pytest.mark.parametrize("line_numbers", ["d365", "client"])
def test_header_answered_late_lands_during_the_settle_wait_and_is_adopted(tmp_path, line_numbers):
    world = Setup(tmp_path, line_numbers)
    world.fake.faults = ["create:late"]
    world.poster._sleep = lambda s: (world.slept.append(s), world.fake.land_late())  # lands while we wait
    assert world.post().status == POSTED
    assert world.slept == [7.0] and world.fake.calls.count("create") == 1
    only_copy(world.fake, world.journal)


@pytest.mark.parametrize("line_numbers", ["d365", "client"])
def test_header_landing_after_a_second_one_was_created_is_deleted_while_empty(tmp_path, line_numbers):
    world = Setup(tmp_path, line_numbers)
    world.fake.faults = ["create:late"]
    real_batch = world.fake._batch

    def batch_then_land(changesets):  # the late header lands while the second one is being filled
        world.fake.land_late()
        return real_batch(changesets)

    world.fake._batch = batch_then_land  # type: ignore[method-assign]
    outcome = world.post()
    assert outcome.status == POSTED
    assert world.fake.calls.count("create") == 2 and "delete" in world.fake.calls  # the empty late one
    assert list(world.fake.headers) == [outcome.journal_batch_number]
    only_copy(world.fake, world.journal)


def test_changeset_processed_after_the_client_gave_up_leaves_no_line_twice(tmp_path):
    world = Setup(tmp_path, "d365")
    world.fake.faults = ["batch:late"]
    real_batch = world.fake._batch
    sent = {"n": 0}

    def batch_then_land(changesets):  # the timed-out changeset runs after its lines were sent again
        sent["n"] += 1
        answer = real_batch(changesets)
        if sent["n"] == 3:
            world.fake.land_late()
        return answer

    world.fake._batch = batch_then_land  # type: ignore[method-assign]
    outcome = world.post()
    assert outcome.status == POSTED and world.slept == [7.0]
    jbn = outcome.journal_batch_number
    assert len(world.fake.lines[jbn]) == 8  # the late copy of 3 lines was deleted as surplus
    only_copy(world.fake, world.journal)
    audit = [e for e in world.ledger.audit_trail(world.journal.key.text) if e["kind"] == "request"]
    assert any(e["detail"].get("op") == "delete surplus lines" and e["detail"]["count"] == 3 for e in audit)


def test_matching_is_by_content_counted_as_a_multiset():
    from ukg2d365.d365.journals import match_lines
    from ukg2d365.journal import PlannedLine

    a = PlannedLine(1, "601500-110", Decimal("5.00"), Decimal(0), "t")
    b = PlannedLine(2, "601500-110", Decimal("5.00"), Decimal(0), "t")  # the same content as a
    c = PlannedLine(3, "200100", Decimal(0), Decimal("10.00"), "t")
    row = {"LineNumber": Decimal(7), "AccountDisplayValue": "601500-110", "DebitAmount": Decimal("5"),
           "CreditAmount": Decimal("0.000000"), "TransDate": "2026-11-13T12:00:00Z", "Text": "t"}
    match = match_lines([a, b, c], "2026-11-13", [row], by_number=False)
    assert list(match.missing) == [2, 3] and match.surplus == [] and match.matched == 1
    twice = match_lines([a, c], "2026-11-13", [row, dict(row, LineNumber=Decimal(9))], by_number=False)
    assert [r["LineNumber"] for r in twice.surplus] == [Decimal(9)]  # the later copy is the surplus one
    other_day = match_lines([a], "2026-11-13", [dict(row, TransDate="2026-11-14T12:00:00Z")], by_number=False)
    assert list(other_day.missing) == [1] and len(other_day.surplus) == 1


def test_client_numbers_move_a_missing_line_off_a_number_d365_already_uses():
    from ukg2d365.flows.journal_poster import client_numbers
    from ukg2d365.journal import PlannedLine

    lines = [PlannedLine(n, "A", Decimal(1), Decimal(0), "") for n in (2, 3)]
    assert client_numbers(lines, {1, 2}) == {2: 4}
    assert client_numbers(lines, set()) == {}


# ---------------------------------------------------------------------- vouchers


@pytest.mark.parametrize("new_voucher", ["OneVoucher", "BalanceSheet", "Manually"])
@pytest.mark.parametrize("line_numbers", ["d365", "client"])
def test_every_voucher_balances_under_each_new_voucher_setting(tmp_path, new_voucher, line_numbers):
    world = Setup(tmp_path, line_numbers, FakeD365(new_voucher))
    assert world.post().status == POSTED
    only_copy(world.fake, world.journal)
    vouchers = {ln["Voucher"] for ln in next(iter(world.fake.lines.values())).values()}
    if new_voucher == "Manually":
        assert vouchers == {world.journal.key.marker}  # named by us: one voucher per journal
    else:
        assert len(vouchers) >= 1 and all(v.startswith("GNJL") for v in vouchers)


def test_balance_sheet_vouchers_send_changesets_one_at_a_time_in_plan_order(tmp_path):
    from ukg2d365.http import ConcurrencyLimit

    cfg, journal = _many_lines_journal(tmp_path, 29)
    import threading

    fake = FakeD365("BalanceSheet")
    threads: set[str] = set()
    real_batch = fake._batch
    fake._batch = lambda cs: (threads.add(threading.current_thread().name), real_batch(cs))[1]  # type: ignore
    world = Setup(tmp_path, "d365", fake, journal, limit=ConcurrencyLimit(3))
    assert world.post().status == POSTED
    assert threads == {threading.current_thread().name}  # no worker threads: the running balance is the plan's
    rows = [ln for _, ln in sorted(next(iter(fake.lines.values())).items())]
    assert [r["AccountDisplayValue"] for r in rows] == [ln.account for ln in journal.lines]
    only_copy(fake, journal)


def test_unbalanced_vouchers_are_reported_with_their_differences_and_not_recorded_posted(tmp_path):
    class OneVoucherPerLine(FakeD365):
        def _voucher(self, jbn, body):
            self.voucher_seq += 1
            return f"GNJL{self.voucher_seq:06d}"

    world = Setup(tmp_path, "d365", OneVoucherPerLine("OneVoucher"))
    outcome = world.post()
    assert outcome.status == FAILED
    assert "8 voucher(s) do not balance" in outcome.error and "GNJL000001 on 2026-11-13: +10.00" in outcome.error
    assert world.ledger.get_posting(world.journal.key.text).status == FAILED


def test_a_missing_journal_name_fails_before_any_write(tmp_path):
    world = Setup(tmp_path, "d365")
    world.fake.get_journal_name = lambda: None  # type: ignore[method-assign]
    world.fake.get = lambda entity_set, key: None  # type: ignore[method-assign]
    outcome = world.post()
    assert outcome.status == FAILED and "journal name GenJrn does not exist" in outcome.error
    assert "create" not in world.fake.calls and "batch" not in world.fake.calls


def test_a_stored_plan_damaged_in_its_last_block_fails_the_posting_before_any_write(tmp_path, monkeypatch):
    """OData sends the plan as it reads it: the whole stored plan is checked first, so a block damaged far down
    the plan never leaves half a journal in D365."""
    monkeypatch.setattr("ukg2d365.journal.BLOCK_CHARS", 100)  # two lines a block
    world = Setup(tmp_path, "d365")
    world.ledger.save_plan(posting_record(world.journal), world.journal.lines)
    key = world.journal.key.text
    db = sqlite3.connect(tmp_path / "ledger.db")
    try:
        last = db.execute("SELECT MAX(first_line) FROM plan_chunks").fetchone()[0]
        assert last > 1
        db.execute("UPDATE plan_chunks SET records = REPLACE(records, '.', ',') WHERE first_line = ?", (last,))
        db.commit()
    finally:
        db.close()
    outcome = world.poster.post(world.ledger.get_posting(key))
    assert outcome.status == FAILED and f"stored plan of {key} is damaged from line {last} on" in outcome.error
    assert "create" not in world.fake.calls and "batch" not in world.fake.calls


def test_header_refused_with_only_the_generic_message_is_created_inside_batch(tmp_path):
    world = Setup(tmp_path, "d365")
    world.fake.faults = ["create:generic"]
    outcome = world.post()
    assert outcome.status == POSTED
    only_copy(world.fake, world.journal)
    answers = [e["detail"] for e in world.ledger.audit_trail(world.journal.key.text) if e["kind"] == "answer"]
    assert answers[0]["next"] == "the same request inside $batch"


def test_giving_up_after_the_recoveries_names_the_last_cause_and_leaves_the_posting_for_the_rerun(tmp_path):
    s = Setup(tmp_path, "client")
    s.fake.faults = ["create:drop_before"] * 3 + ["create:late"]  # the header answered late, four times running
    with pytest.raises(RemoteUnavailable) as raised:
        s.post()
    assert str(raised.value) == (f"posting {s.journal.key.text}: no certain answer from D365 after 3 recoveries "
                                 "(the last: read timed out); a rerun looks in D365 first and sends only what is "
                                 "missing")
    assert s.ledger.get_posting(s.journal.key.text).status == SENDING
    s.fake.land_late()  # the late header lands: the rerun adopts it and fills it, one journal
    assert s.post().status == POSTED
    only_copy(s.fake, s.journal)
