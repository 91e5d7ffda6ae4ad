"""Exactly-once delivery of one planned journal into D365 (used by post-payroll and replay).

Neither UKG nor D365 has an idempotency key, so this module provides one:

1. the plan is in the ledger before anything is sent (``planned``);
2. the posting is marked ``sending`` *before* the header request leaves, so a crash at any later point
   leaves a trace that forces recovery instead of a blind resend;
3. lines go in atomic ``$batch`` changesets. D365 numbers them itself by default (``LineNumber`` "isn't
   required for an insert": MicrosoftDocs/dynamics-365-unified-operations-public,
   articles/fin-ops-core/dev-itpro/data-entities/entity-general-journal-ledgerjournalline.md), so what
   D365 holds is told apart from the plan by *content* (display value, debit, credit, date, text), counted
   as a multiset; ``d365.line_numbers: client`` sends explicit numbers as well;
4. after an ambiguous write (timeout, dropped answer) the poster waits ``d365.settle_seconds``, since a
   request that timed out here may still run in D365, then looks the journal up by the marker in its
   Description, deletes what is surplus while it is unposted, and sends exactly what is missing;
5. every posting ends with a verify-and-repair pass: the journal(s) carrying the marker are read again,
   empty duplicate headers and surplus lines are deleted while unposted, the lines are compared with the
   plan once more, and every voucher must balance; only then is ``posted`` recorded.

Vouchers follow the journal name's ``NewVoucher`` (JournalNames, ntrtd/d365-agent
asset/client/src/NewVoucher.ts): with ``OneVoucher`` D365 gives every line one voucher; with
``BalanceSheet`` ("In connection with balance") it starts a new voucher each time the lines imported so
far balance, evaluated line by line as they arrive (MicrosoftDocs/dynamics-365-unified-operations-public
articles/fin-ops-core/dev-itpro/data-entities/tips-tricks-import-general-journal-entity.md), so the
changesets go one at a time, in plan order; with ``Manually`` this tool names the voucher itself (the
posting's marker: one balanced voucher per journal). Every voucher must balance on one date to post
(articles/finance/general-ledger/posting-fail-imbalance.md), which the final pass checks line by line.

The state machine itself is documented in :mod:`ukg2d365.ledger`.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ukg2d365.config import Config, D365Config
from ukg2d365.d365.batch import BatchOperation
from ukg2d365.d365.journals import (
    HEADERS,
    LINES,
    JournalNameSetup,
    VoucherTotals,
    find_journals,
    header_body,
    is_posted,
    journal_lines,
    journal_rows,
    line_body,
    line_number_key,
    match_lines,
    read_journal_name,
)
from ukg2d365.d365.odata import ODataClient, chunked, entity_path
from ukg2d365.errors import (
    AmbiguousWriteError,
    AuthError,
    ProtocolError,
    RemoteError,
    RemoteUnavailable,
    Ukg2d365Error,
)
from ukg2d365.http import ConcurrencyLimit, prompt_thread_switches
from ukg2d365.journal import PlannedLine
from ukg2d365.ledger import FAILED, POSTED, SENDING, Ledger, Posting

MAX_RECOVERIES = 3
REPAIR_ROUNDS = 3
# A plain POST may answer only this where $batch carries the whole Infolog.
GENERIC_ERROR = "An error has occurred."

Progress = Callable[[int], None]  # called with the number of lines just confirmed
ODATA_ROUTE = "OData $batch"
DMF_ROUTE = "DMF package"


def route_for(config: Config, line_count: int, *, dated: bool = False) -> str:
    """odata or dmf: ``d365.transport``, with auto choosing DMF from ``dmf.min_lines`` lines. The one place a
    route is chosen: post-payroll, replay and the preview ask here.

    A journal whose lines carry a DocumentDate or reverse (``dated``: an accrual) goes as OData whatever the
    transport: the package's data file carries TransDate only, and an accrual that did not reverse would book
    the month's cost twice."""
    if dated:
        return "odata"
    transport = config.d365.transport
    if transport == "auto":
        return "dmf" if line_count >= config.dmf.min_lines else "odata"
    return transport


def journal_route(config: Config, line_count: int, *, dated: bool = False) -> str:
    """How a journal of ``line_count`` lines travels to D365, in the words the preview shows: OData (a header
    POST, then its lines in atomic $batch changesets of ``d365.batch_size``) or a DMF package (one Data
    management import of the whole journal, flows/dmf_poster.py)."""
    return DMF_ROUTE if route_for(config, line_count, dated=dated) == "dmf" else ODATA_ROUTE


def posting_route(config: Config, posting: Posting) -> str:
    """The route of a stored posting: the one it took once an import is recorded, else the one chosen now."""
    return posting.route or route_for(config, posting.line_count,
                                      dated=bool(posting.reverse_date or posting.document_date))


@dataclass
class PostOutcome:
    key: str
    status: str  # posted | failed | uncertain
    journal_batch_number: str | None
    lines_sent: int
    recovered: bool = False
    error: str | None = None
    adopted: bool = False  # D365 already held the whole journal: recorded without writing


class JournalMismatch(Ukg2d365Error):
    """D365 holds something for this posting that recovery must not touch (a posted journal that differs)."""


class VoucherImbalance(Ukg2d365Error):
    """Every line landed, but some voucher of the journal does not balance: finance could not post it."""


class StoredPlan:
    """A posting's planned lines as the ledger holds them, read again in chunks each time they are walked, so a
    journal of any size is sent and compared in bounded memory; ``numbers`` narrows it to some lines."""

    def __init__(self, ledger: Ledger, key: str, count: int, numbers: Sequence[int] | None = None) -> None:
        self._ledger = ledger
        self.key = key
        self._count = count
        self._numbers = numbers  # ascending planned line numbers; None: every line

    def only(self, numbers: Sequence[int]) -> StoredPlan:
        return StoredPlan(self._ledger, self.key, len(numbers), numbers)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[PlannedLine]:
        lines = self._ledger.iter_plan(self.key)
        if self._numbers is None:
            return lines
        return _numbered(lines, self._numbers)


def _numbered(lines: Iterable[PlannedLine], numbers: Sequence[int]) -> Iterator[PlannedLine]:
    """The lines whose numbers are in ``numbers``; both in ascending line order, so one merge walk finds them."""
    wanted = iter(numbers)
    want = next(wanted, None)
    for line in lines:
        if want is None:
            return
        if line.line_number == want:
            yield line
            want = next(wanted, None)


@dataclass
class _Survey:
    """What D365 holds for a posting after duplicates and surplus lines were cleaned up."""

    journal_batch_number: str | None
    missing: StoredPlan  # the planned lines D365 lacks
    vouchers: VoucherTotals
    occupied: set[int]
    lines: int = 0  # D365's lines
    posted: bool = False
    repaired: bool = False  # something was deleted: read again before trusting the totals


@dataclass(frozen=True)
class _Wire:
    """What the lines of one send carry besides the plan: moved client numbers, an explicit voucher."""

    numbers: dict[int, int]
    voucher: str | None
    dates: dict[str, str] = field(default_factory=dict)  # DocumentDate, ReverseEntry/ReverseDate of every line


class JournalPoster:
    def __init__(
        self,
        odata: ODataClient,
        ledger: Ledger,
        cfg: D365Config,
        progress: Progress | None = None,
        limit: ConcurrencyLimit | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        journal_name: JournalNameSetup | None = None,
    ) -> None:
        self._limit = limit
        self._odata = odata
        self._ledger = ledger
        self._cfg = cfg
        self._progress = progress or (lambda n: None)
        self._sleep = sleep
        self._given_journal_name = journal_name
        self._journal_names: dict[str, JournalNameSetup] = {}
        # The legal entity of the posting being sent (dataAreaId, lower case): each posting names its own, so
        # one poster writes the journals of every entity of a run. One posting is sent at a time.
        self._area = cfg.data_area_id

    # ------------------------------------------------------------------ public

    @property
    def journal_name(self) -> JournalNameSetup:
        """The journal name in the current posting's legal entity, read once per entity per run."""
        if self._given_journal_name is not None:
            return self._given_journal_name
        setup = self._journal_names.get(self._area)
        if setup is None:
            setup = self._journal_names[self._area] = read_journal_name(self._odata, self._area,
                                                                        self._cfg.journal_name)
        return setup

    def post(self, posting: Posting) -> PostOutcome:
        """Deliver the posting's stored plan (``Ledger.save_plan``) exactly once."""
        key = posting.key
        self._area = posting.data_area_id or self._cfg.data_area_id
        lines = StoredPlan(self._ledger, key, posting.line_count)
        recovered = False
        sent = 0
        jbn = posting.journal_batch_number
        needs_lookup = posting.status in (SENDING, FAILED) or jbn is not None
        # A run that died while sending may have left requests on their way: let them land before looking.
        settle = posting.status == SENDING
        last = ""
        try:
            self.journal_name  # noqa: B018 - fails the posting before any write when the name is unusable
            # The lines are sent as the stored plan is read: a damaged block must fail the posting before the first.
            self._ledger.check_plan(key)
            for _round in range(MAX_RECOVERIES + 1):
                try:
                    occupied: set[int] = set()
                    if needs_lookup:
                        recovered = True
                        if settle:
                            self._settle(key)
                        survey = self._survey(posting, lines, jbn)
                        if survey.posted:
                            self._ledger.set_status(key, POSTED, journal_batch_number=survey.journal_batch_number)
                            return PostOutcome(key, POSTED, survey.journal_batch_number, sent, recovered)
                        jbn, missing, occupied = survey.journal_batch_number, survey.missing, survey.occupied
                        if jbn is not None and len(missing) < len(lines):
                            self._progress(len(lines) - len(missing))
                    else:
                        missing = lines
                    if jbn is None:
                        jbn = self._create_header(posting)
                        missing, occupied = lines, set()
                    sent += self._send_lines(key, jbn, missing, occupied)
                    self._verify_and_repair(posting, jbn, lines)
                    self._ledger.set_status(key, POSTED, journal_batch_number=jbn)
                    return PostOutcome(key, POSTED, jbn, sent, recovered)
                except AmbiguousWriteError as exc:
                    # The write may have landed, or may still land: never resend blindly, wait, then look.
                    self._ledger.audit("ambiguous", {"error": str(exc)}, key)
                    needs_lookup = settle = True
                    last = str(exc)
                    continue
            # Name the last cause: a dropped connection, an unreadable answer, client line numbers D365 already
            # holds each time... "kept dropping connections" said the first whatever happened.
            raise RemoteUnavailable(f"posting {key}: no certain answer from D365 after {MAX_RECOVERIES} recoveries "
                                    f"(the last: {last}); a rerun looks in D365 first and sends only what is "
                                    "missing")
        except (RemoteUnavailable, AuthError) as exc:
            record_interrupted(self._ledger, key, exc)
            raise
        except Ukg2d365Error as exc:
            record_failed(self._ledger, key, exc)
            return PostOutcome(key, FAILED, jbn, sent, recovered, error=str(exc))

    def adopt(self, posting: Posting, journal_batch_number: str) -> PostOutcome:
        """Record a journal D365 already holds in full (found by marker before planning): zero writes."""
        self._area = posting.data_area_id or self._cfg.data_area_id
        self._ledger.set_status(posting.key, POSTED, journal_batch_number=journal_batch_number)
        self._ledger.audit("adopted", {"journal_batch_number": journal_batch_number,
                                       "reason": "D365 already holds this pay run's journal, matching the plan"},
                           posting.key)
        return PostOutcome(posting.key, POSTED, journal_batch_number, 0, recovered=True, adopted=True)

    # ------------------------------------------------------------------ steps

    def _settle(self, key: str) -> None:
        seconds = self._cfg.settle_seconds
        if seconds > 0:
            self._ledger.audit("settle", {"seconds": seconds, "why": "a write may still land in D365"}, key)
            self._sleep(seconds)

    def _create_header(self, posting: Posting) -> str:
        body = header_body(self._area, self._cfg.journal_name, posting.description)
        # Write-ahead: from here on a crash leaves 'sending', which forces a lookup by marker.
        self._ledger.set_status(posting.key, SENDING, count_attempt=True)
        self._ledger.audit("request", {"op": "create header", "entity": HEADERS, "marker": posting.marker},
                           posting.key)
        try:
            try:
                created = self._odata.create(HEADERS, body)
            except RemoteError as exc:
                if not _only_generic(exc):
                    raise
                # The plain POST said only "An error has occurred." and was refused (nothing created); the
                # same request inside $batch answers the whole Infolog, and creates the header if it can.
                self._ledger.audit("answer", {"op": "create header", "ok": False, "error": str(exc),
                                              "next": "the same request inside $batch"}, posting.key)
                created = self._create_header_in_batch(posting, body)
        except ProtocolError as exc:
            raise AmbiguousWriteError(f"unreadable answer to the journal header request: {exc}") from None
        jbn = created.get("JournalBatchNumber") if isinstance(created, dict) else None
        if not jbn:
            raise RemoteError(f"D365 created a journal header for {posting.key} but returned no JournalBatchNumber")
        self._ledger.set_status(posting.key, SENDING, journal_batch_number=str(jbn))
        self._ledger.audit("answer", {"op": "create header", "journal_batch_number": jbn}, posting.key)
        return str(jbn)

    def _create_header_in_batch(self, posting: Posting, body: dict[str, Any]) -> dict[str, Any]:
        op = BatchOperation("POST", HEADERS, body, "1", prefer="return=representation")
        results = self._odata.batch([[op]])
        result = results[0] if results else None
        if result is None or not result.ok:
            message = result.error_message if result is not None else "D365 answered no changeset"
            raise RemoteError(f"D365 refused the journal header for {posting.key}: {message}")
        answer = result.responses[0].body if result.responses else None
        return answer if isinstance(answer, dict) else {}

    def _line_body(self, jbn: str, trans_date: str, line: PlannedLine, wire: _Wire) -> dict[str, Any]:
        number = wire.numbers.get(line.line_number, line.line_number) if self._cfg.line_numbers == "client" else None
        return line_body(self._area, jbn, trans_date, line, self._cfg.currency,
                         line_number=number, voucher=wire.voucher, extra=wire.dates)

    def _send_lines(self, key: str, jbn: str, lines: StoredPlan, occupied: set[int] | None = None) -> int:
        """Send lines in changesets of batch_size, up to the concurrency limit in flight at once.

        Each changeset is atomic, so a failure never leaves part of one behind and recovery can count what
        is there. Under ``BalanceSheet`` vouchers the changesets go one at a time, in plan order.
        """
        if not lines:
            return 0
        posting = self._ledger.get_posting(key)
        assert posting is not None
        numbers = client_numbers(lines, occupied or set()) if self._cfg.line_numbers == "client" else {}
        # New voucher = Manually: D365 takes the voucher as given. The marker makes the journal one voucher
        # on one date, which balances because the journal does.
        wire = _Wire(numbers, posting.marker if self.journal_name.explicit_voucher else None, line_dates(posting))
        size = self._cfg.batch_size
        chunks = chunked(lines, size)  # read from the ledger as they go out, never all at once
        limit = self._limit
        if limit is None or limit.maximum == 1 or len(lines) <= size or self.journal_name.sequential:
            for chunk in chunks:
                self._send_chunk(key, jbn, posting.trans_date, chunk, wire)
            return len(lines)
        errors: list[BaseException] = []
        sent = 0
        # The limit counts requests on the wire only (the client holds it around each exchange); twice as
        # many workers let one build its next body or read its answer while the others' requests are out.
        gate = _StopAfterFailure(limit, errors)
        queued = threading.BoundedSemaphore(2 * limit.maximum)
        with prompt_thread_switches(), \
                ThreadPoolExecutor(max_workers=2 * limit.maximum, thread_name_prefix="d365-batch") as pool:
            futures = []
            for chunk in chunks:
                queued.acquire()
                if errors:  # stop sending after the first failure; what is in flight finishes
                    queued.release()
                    break
                context = contextvars.copy_context()
                futures.append(pool.submit(context.run, self._send_chunk_queued, key, jbn, posting.trans_date,
                                           chunk, wire, gate, queued))
            for future in futures:
                sent += future.result()
        if errors:
            raise _most_serious(errors)
        return sent

    def _send_chunk_queued(
        self, key: str, jbn: str, trans_date: str, chunk: list[PlannedLine], wire: _Wire,
        gate: _StopAfterFailure, queued: threading.BoundedSemaphore,
    ) -> int:
        try:
            self._send_chunk(key, jbn, trans_date, chunk, wire, gate)
            return len(chunk)
        except _NotSent:
            return 0
        except Ukg2d365Error as exc:
            gate.errors.append(exc)
            return 0
        finally:
            queued.release()

    def _send_chunk(
        self, key: str, jbn: str, trans_date: str, chunk: list[PlannedLine], wire: _Wire,
        gate: _StopAfterFailure | None = None,
    ) -> None:
        ops = [
            BatchOperation("POST", LINES, self._line_body(jbn, trans_date, ln, wire), str(i + 1),
                           prefer="return=minimal")
            for i, ln in enumerate(chunk)
        ]
        first, last = chunk[0].line_number, chunk[-1].line_number
        self._ledger.audit("request", {"op": "lines", "journal_batch_number": jbn, "first_line": first,
                                       "last_line": last, "count": len(chunk)}, key)
        try:
            results = self._odata.batch([ops], gate=gate)
        except _NotSent:
            self._ledger.audit("answer", {"op": "lines", "first_line": first, "last_line": last, "ok": False,
                                          "error": "not sent: an earlier changeset failed"}, key)
            raise
        except ProtocolError as exc:
            # The request reached D365 but its answer is unreadable: the changeset may have been processed.
            raise AmbiguousWriteError(f"unreadable answer to lines {first}-{last} of journal {jbn}: {exc}") from None
        result = results[0] if results else None
        if result is None or not result.ok:
            message = result.error_message if result is not None else "D365 answered no changeset"
            self._ledger.audit("answer", {"op": "lines", "first_line": first, "last_line": last,
                                          "ok": False, "error": message}, key)
            if self._cfg.line_numbers == "client" and "already exists" in (message or ""):
                # Client numbers make a late copy of this changeset collide with its resend: whichever landed
                # first holds the numbers. Not a refusal of the lines: look at what D365 holds, then go on.
                raise AmbiguousWriteError(f"lines {first}-{last} of journal {jbn}: D365 already holds their line "
                                          f"numbers ({message})")
            if self._cfg.line_numbers == "client" and "LineNumber" in (message or ""):
                # An F&O that numbers journal lines itself refuses the client's numbers: say which setting fixes it.
                message = f"{message} (set d365.line_numbers: d365 to let D365 number the lines)"
            raise RemoteError(f"D365 refused lines {first}-{last} of journal {jbn}: {message}")
        self._ledger.audit("answer", {"op": "lines", "first_line": first, "last_line": last, "ok": True}, key)
        self._progress(len(chunk))

    def _verify_and_repair(self, posting: Posting, jbn: str, lines: StoredPlan) -> None:
        """Read back what D365 holds under the marker; repair while unposted; every voucher must balance."""
        for _round in range(REPAIR_ROUNDS):
            survey = self._survey(posting, lines, jbn)
            if survey.journal_batch_number is None:
                raise RemoteError(f"journal {jbn} for {posting.key} vanished from D365 while it was being written")
            if survey.posted:
                return  # posted in D365 meanwhile, and it matches: its vouchers balanced or it could not post
            if survey.repaired or survey.missing:
                self._send_lines(posting.key, jbn, survey.missing, survey.occupied)
                continue
            self._check_vouchers(posting, jbn, survey)
            return
        raise AmbiguousWriteError(f"journal {jbn} kept changing while it was verified")

    def _check_vouchers(self, posting: Posting, jbn: str, survey: _Survey) -> None:
        differences = survey.vouchers.differences()
        self._ledger.audit("verify", {"journal_batch_number": jbn, "lines": survey.lines,
                                      "vouchers": survey.vouchers.vouchers,
                                      "unbalanced": {f"{v}@{d}": str(x) for (v, d), x in differences.items()}},
                           posting.key)
        if differences:
            listed = ", ".join(f"{v or '(no voucher)'} on {d}: {x:+,}" for (v, d), x in sorted(differences.items()))
            raise VoucherImbalance(
                f"journal {jbn}: every line landed but {len(differences)} voucher(s) do not balance ({listed}); "
                f"journal name {self.journal_name.name} assigns vouchers {self.journal_name.new_voucher}",
                hint=f"fix the vouchers in D365 or delete unposted journal {jbn}, then run "
                     f"`ukg2d365 replay {posting.key}`",
            )

    # ------------------------------------------------------------------ recovery

    def _find_journals(self, marker: str) -> list[dict[str, Any]]:
        return find_journals(self._odata, self._area, [marker])[marker]

    def _survey(self, posting: Posting, lines: StoredPlan, jbn: str | None) -> _Survey:
        """Ask D365 what it holds under the marker; delete empty duplicates and surplus lines while unposted."""
        key = posting.key
        found = self._find_journals(posting.marker)
        chosen = self._choose(posting, found, jbn)
        self._ledger.audit("recover", {"marker": posting.marker, "found": len(found),
                                       "journal_batch_number": chosen and chosen.get("JournalBatchNumber")}, key)
        if chosen is None:
            if jbn is not None:
                self._ledger.forget_journal(key)
            return _Survey(None, lines, VoucherTotals(), set())
        number = str(chosen["JournalBatchNumber"])
        if number != jbn:
            self._ledger.set_status(key, SENDING, journal_batch_number=number)
        rows = journal_rows(self._odata, self._area, number)  # streamed: counted, not kept
        match = match_lines(lines, posting.trans_date, rows, by_number=self._cfg.line_numbers == "client",
                            reverse_date=posting.reverse_date)
        posted = is_posted(chosen)
        self._ledger.audit("recover lines", {"journal_batch_number": number, "present": match.matched,
                                             "planned": len(lines), "missing": len(match.missing),
                                             "surplus": len(match.surplus)}, key)
        if posted:
            if match.missing or match.surplus:
                raise JournalMismatch(
                    f"journal {number} in D365 does not match the plan for {key} ({match.matched} of "
                    f"{len(lines)} lines match, {len(match.surplus)} differ); it is already posted in D365, "
                    "so correct it there",
                    hint=f"compare with `ukg2d365 reconcile {posting.reconcile_options}`",
                )
            return _Survey(number, lines.only(()), match.vouchers, match.occupied, match.rows, posted=True)
        if match.surplus:
            self._delete_lines(key, number, match.surplus)
        return _Survey(number, lines.only(match.missing), match.vouchers, match.occupied, match.rows,
                       repaired=bool(match.surplus))

    def _choose(self, posting: Posting, found: list[dict[str, Any]], jbn: str | None) -> dict[str, Any] | None:
        """The one journal that is this posting's; empty unposted duplicates (a late header) are deleted."""
        if not found:
            return None
        numbers = ", ".join(sorted(str(h.get("JournalBatchNumber")) for h in found))
        posted = [h for h in found if is_posted(h)]
        if len(posted) > 1:
            raise JournalMismatch(
                f"{len(posted)} posted journals in D365 carry marker {posting.marker} ({numbers}): the pay run "
                "is booked more than once",
                hint=f"reverse the extra one in D365; see `ukg2d365 reconcile {posting.reconcile_options}`",
            )
        chosen = posted[0] if posted else next((h for h in found if str(h.get("JournalBatchNumber")) == jbn), None)
        others = [h for h in found if h is not chosen]
        area = self._area
        non_empty = [h for h in others if journal_lines(self._odata, area, str(h["JournalBatchNumber"]), top=1)]
        if chosen is None:
            # No number recorded (a crash before the header's answer): the one holding lines is ours.
            if len(non_empty) > 1:
                raise JournalMismatch(
                    f"{len(found)} journals in D365 carry marker {posting.marker} ({numbers}); delete the extra "
                    f"unposted ones in D365, then run `ukg2d365 replay {posting.key}`")
            chosen = non_empty[0] if non_empty else min(others, key=lambda h: str(h.get("JournalBatchNumber")))
            others = [h for h in others if h is not chosen]
            non_empty = [h for h in non_empty if h is not chosen]
        if non_empty:
            raise JournalMismatch(
                f"{len(found)} journals in D365 carry marker {posting.marker} ({numbers}); delete the extra "
                f"unposted ones in D365, then run `ukg2d365 replay {posting.key}`")
        for header in others:
            self._delete_empty_header(posting.key, str(header["JournalBatchNumber"]))
        return chosen

    def _delete_empty_header(self, key: str, number: str) -> None:
        self._ledger.audit("request", {"op": "delete empty duplicate journal", "journal_batch_number": number},
                           key)
        try:
            self._odata.delete(HEADERS, {"dataAreaId": self._area, "JournalBatchNumber": number})
        except ProtocolError as exc:
            raise AmbiguousWriteError(f"unreadable answer to deleting journal {number}: {exc}") from None

    def _delete_lines(self, key: str, jbn: str, rows: list[dict[str, Any]]) -> None:
        self._ledger.audit("request", {"op": "delete surplus lines", "journal_batch_number": jbn,
                                       "line_numbers": [str(r.get("LineNumber")) for r in rows[:50]],
                                       "count": len(rows)}, key)
        for chunk in chunked(rows, self._cfg.batch_size):
            ops = [
                BatchOperation("DELETE", entity_path(LINES, {"dataAreaId": self._area,
                                                             "JournalBatchNumber": jbn,
                                                             "LineNumber": line_number_key(r)}), None,
                               str(i + 1))
                for i, r in enumerate(chunk)
            ]
            try:
                results = self._odata.batch([ops])
            except ProtocolError as exc:
                raise AmbiguousWriteError(f"unreadable answer to deleting surplus lines of {jbn}: {exc}") from None
            result = results[0] if results else None
            if result is None or not result.ok:
                message = result.error_message if result is not None else "D365 answered no changeset"
                raise RemoteError(f"D365 refused to delete surplus lines of journal {jbn}: {message}")


def record_interrupted(ledger: Ledger, key: str, exc: Ukg2d365Error) -> None:
    """Outcome unknown or not attempted (unreachable, not allowed, still running): the posting stays 'sending',
    with what it recorded, so the next run recovers first."""
    ledger.set_status(key, SENDING, error=str(exc))
    ledger.audit("interrupted", {"error": str(exc)}, key)


def record_failed(ledger: Ledger, key: str, exc: Ukg2d365Error) -> None:
    """D365 refused it, or holds something recovery must not touch: failed, counted, named."""
    ledger.set_status(key, FAILED, error=str(exc), count_attempt=True)


def client_numbers(lines: Iterable[PlannedLine], occupied: set[int]) -> dict[int, int]:
    """Planned number -> number to send, moving a line whose planned number D365 already uses for another.
    ``lines`` is walked twice (the stored plan reads itself again)."""
    if not occupied:
        return {}
    top = max(max(occupied), max((ln.line_number for ln in lines), default=0))
    moved: dict[int, int] = {}
    for ln in lines:
        if ln.line_number in occupied:
            top += 1
            moved[ln.line_number] = top
    return moved


class _NotSent(Exception):
    """A changeset held back because another one failed first (not an error of its own)."""


class _StopAfterFailure:
    """The concurrency limit as a gate that turns requests away once any changeset of the journal failed."""

    def __init__(self, limit: ConcurrencyLimit, errors: list[BaseException]) -> None:
        self.limit = limit
        self.errors = errors

    def acquire(self) -> None:
        self.limit.acquire()
        if self.errors:
            self.limit.release(ok=False)
            raise _NotSent()

    def release(self, *, ok: bool = True) -> None:
        self.limit.release(ok=ok)


def _most_serious(errors: list[BaseException]) -> BaseException:
    """Stop the run on auth/availability; a refusal fails the posting; an ambiguous write means recover."""
    for kind in (AuthError, RemoteUnavailable, RemoteError, AmbiguousWriteError):
        for exc in errors:
            if isinstance(exc, kind):
                return exc
    return errors[0]


def _only_generic(exc: RemoteError) -> bool:
    """A plain write refused with nothing but the generic sentence (a 4xx, or a write's 500, which F&O rolls back)."""
    status = exc.status or 0
    return 400 <= status <= 500 and str(exc).rstrip().endswith(GENERIC_ERROR)


def line_dates(posting: Posting) -> dict[str, str]:
    """DocumentDate and ReverseEntry/ReverseDate of every line of a posting, when it has them.

    All three are fields of LedgerJournalLines (ReverseEntry a NoYes, ReverseDate and DocumentDate
    Edm.DateTimeOffset in the generated F&O client, ntrtd/d365-agent asset/client/src/LedgerJournalLines.ts);
    a date-only value is sent at 12:00:00Z like TransDate.
    """
    dates: dict[str, str] = {}
    if posting.document_date:
        dates["DocumentDate"] = f"{posting.document_date}T12:00:00Z"
    if posting.reverse_date:
        dates["ReverseEntry"] = "Yes"
        dates["ReverseDate"] = f"{posting.reverse_date}T12:00:00Z"
    return dates
