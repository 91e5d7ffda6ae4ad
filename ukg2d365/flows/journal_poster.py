"""Exactly-once delivery of one planned journal into D365 (used by post-payroll and replay).

Neither UKG nor D365 has an idempotency key, so this module provides one:

1. the plan is in the ledger before anything is sent (``planned``);
2. the posting is marked ``sending`` *before* the header request leaves, so a crash at any later point
   leaves a trace that forces recovery instead of a blind resend;
3. lines carry explicit ``LineNumber`` values and go in atomic ``$batch`` changesets, so after an
   ambiguous failure D365 can be asked exactly which lines it has;
4. recovery looks the journal up by the marker in its Description, compares its lines with the plan,
   sends only what is missing, or deletes a half-written *unposted* journal that does not match the
   plan and writes it again; a second copy is never created;
5. ``posted`` is recorded only after the journal's totals were read back from D365 and matched.

The state machine itself is documented in :mod:`ukg2d365.ledger`.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ukg2d365.config import D365Config
from ukg2d365.d365.batch import BatchOperation
from ukg2d365.d365.odata import ODataClient, filter_eq
from ukg2d365.errors import (
    AmbiguousWriteError,
    AuthError,
    ProtocolError,
    RemoteError,
    RemoteUnavailable,
    Ukg2d365Error,
)
from ukg2d365.http import ConcurrencyLimit, prompt_thread_switches
from ukg2d365.ledger import FAILED, POSTED, SENDING, Ledger, PlannedLine, Posting

HEADERS = "LedgerJournalHeaders"
LINES = "LedgerJournalLines"
MAX_RECOVERIES = 3

Progress = Callable[[int], None]  # called with the number of lines just confirmed


@dataclass
class PostOutcome:
    key: str
    status: str  # posted | failed | uncertain
    journal_batch_number: str | None
    lines_sent: int
    recovered: bool = False
    error: str | None = None


class JournalMismatch(Ukg2d365Error):
    """D365 holds something for this posting that recovery must not touch (a posted journal that differs)."""


class JournalPoster:
    def __init__(
        self,
        odata: ODataClient,
        ledger: Ledger,
        cfg: D365Config,
        progress: Progress | None = None,
        limit: ConcurrencyLimit | None = None,
    ) -> None:
        self._limit = limit
        self._odata = odata
        self._ledger = ledger
        self._cfg = cfg
        self._progress = progress or (lambda n: None)

    # ------------------------------------------------------------------ public

    def post(self, posting: Posting, lines: list[PlannedLine]) -> PostOutcome:
        key = posting.key
        recovered = False
        sent = 0
        jbn = posting.journal_batch_number
        needs_lookup = posting.status in (SENDING, FAILED) or jbn is not None
        try:
            for _round in range(MAX_RECOVERIES + 1):
                try:
                    if needs_lookup:
                        recovered = True
                        jbn, present = self._recover(posting, lines, jbn)
                        if jbn is not None and present is None:  # found posted and matching
                            self._ledger.set_status(key, POSTED, journal_batch_number=jbn)
                            return PostOutcome(key, POSTED, jbn, sent, recovered)
                    else:
                        present = set()
                    if jbn is None:
                        jbn = self._create_header(posting)
                        present = set()
                    missing = [ln for ln in lines if ln.line_number not in (present or set())]
                    if present:
                        self._progress(len(present))
                    sent += self._send_lines(key, jbn, missing)
                    self._verify(posting, jbn, lines)
                    self._ledger.set_status(key, POSTED, journal_batch_number=jbn)
                    return PostOutcome(key, POSTED, jbn, sent, recovered)
                except AmbiguousWriteError as exc:
                    # The write may have landed: never resend blindly, look first.
                    self._ledger.audit("ambiguous", {"error": str(exc)}, key)
                    needs_lookup = True
                    continue
            raise RemoteUnavailable(f"posting {key}: D365 kept dropping connections; giving up after "
                                    f"{MAX_RECOVERIES} recoveries")
        except (RemoteUnavailable, AuthError) as exc:
            # Outcome unknown or not attempted: stay 'sending' so the next run recovers first.
            self._ledger.set_status(key, SENDING, error=str(exc))
            self._ledger.audit("interrupted", {"error": str(exc)}, key)
            raise
        except Ukg2d365Error as exc:
            self._ledger.set_status(key, FAILED, error=str(exc), count_attempt=True)
            return PostOutcome(key, FAILED, jbn, sent, recovered, error=str(exc))

    # ------------------------------------------------------------------ steps

    def _create_header(self, posting: Posting) -> str:
        body = {
            "dataAreaId": self._cfg.legal_entity,
            "JournalName": self._cfg.journal_name,
            "Description": posting.description,
        }
        # Write-ahead: from here on a crash leaves 'sending', which forces a lookup by marker.
        self._ledger.set_status(posting.key, SENDING, count_attempt=True)
        self._ledger.audit("request", {"op": "create header", "entity": HEADERS, "marker": posting.marker},
                           posting.key)
        try:
            created = self._odata.create(HEADERS, body)
        except ProtocolError as exc:
            raise AmbiguousWriteError(f"unreadable answer to the journal header request: {exc}") from None
        jbn = created.get("JournalBatchNumber") if isinstance(created, dict) else None
        if not jbn:
            raise RemoteError(f"D365 created a journal header for {posting.key} but returned no JournalBatchNumber")
        self._ledger.set_status(posting.key, SENDING, journal_batch_number=str(jbn))
        self._ledger.audit("answer", {"op": "create header", "journal_batch_number": jbn}, posting.key)
        return str(jbn)

    def line_body(self, jbn: str, trans_date: str, line: PlannedLine) -> dict[str, Any]:
        return {
            "dataAreaId": self._cfg.legal_entity,
            "JournalBatchNumber": jbn,
            "LineNumber": Decimal(line.line_number),
            "TransDate": f"{trans_date}T12:00:00Z",
            "AccountType": "Ledger",
            "AccountDisplayValue": line.account,
            "DebitAmount": line.debit,
            "CreditAmount": line.credit,
            "CurrencyCode": self._cfg.currency,
            "Text": line.text,
        }

    def _send_lines(self, key: str, jbn: str, lines: list[PlannedLine]) -> int:
        """Send lines in changesets of batch_size, up to the concurrency limit in flight at once.

        Line numbers are explicit and each changeset is atomic, so changesets may land in any order and a
        failure in one never leaves a partial changeset behind: recovery can always tell what is there.
        """
        posting = self._ledger.get_posting(key)
        assert posting is not None
        size = self._cfg.batch_size
        chunks = [lines[i : i + size] for i in range(0, len(lines), size)]
        limit = self._limit
        if limit is None or limit.maximum == 1 or len(chunks) <= 1:
            for chunk in chunks:
                self._send_chunk(key, jbn, posting.trans_date, chunk)
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
                                           chunk, gate, queued))
            for future in futures:
                sent += future.result()
        if errors:
            raise _most_serious(errors)
        return sent

    def _send_chunk_queued(
        self, key: str, jbn: str, trans_date: str, chunk: list[PlannedLine], gate: _StopAfterFailure,
        queued: threading.BoundedSemaphore,
    ) -> int:
        try:
            self._send_chunk(key, jbn, trans_date, chunk, gate)
            return len(chunk)
        except _NotSent:
            return 0
        except Ukg2d365Error as exc:
            gate.errors.append(exc)
            return 0
        finally:
            queued.release()

    def _send_chunk(
        self, key: str, jbn: str, trans_date: str, chunk: list[PlannedLine], gate: _StopAfterFailure | None = None
    ) -> None:
        ops = [
            BatchOperation("POST", LINES, self.line_body(jbn, trans_date, ln), str(i + 1), prefer="return=minimal")
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
            raise RemoteError(f"D365 refused lines {first}-{last} of journal {jbn}: {message}")
        self._ledger.audit("answer", {"op": "lines", "first_line": first, "last_line": last, "ok": True}, key)
        self._progress(len(chunk))

    def _verify(self, posting: Posting, jbn: str, lines: list[PlannedLine]) -> None:
        header = self._odata.get(HEADERS, {"dataAreaId": self._cfg.legal_entity, "JournalBatchNumber": jbn})
        if header is None:
            raise RemoteError(f"journal {jbn} for {posting.key} vanished from D365 while it was being written")
        debit = _dec(header.get("JournalTotalDebit"))
        credit = _dec(header.get("JournalTotalCredit"))
        want_dr = sum((ln.debit for ln in lines), Decimal(0))
        want_cr = sum((ln.credit for ln in lines), Decimal(0))
        self._ledger.audit("verify", {"journal_batch_number": jbn, "debit": str(debit), "credit": str(credit),
                                      "expected_debit": str(want_dr), "expected_credit": str(want_cr)}, posting.key)
        if debit is None or credit is None:
            # Some environments do not compute totals on the entity: count the lines instead.
            self._recover_lines(posting, jbn, lines, verify_only=True)
            return
        if debit != want_dr or credit != want_cr:
            raise AmbiguousWriteError(
                f"journal {jbn} totals {debit:,}/{credit:,} differ from the plan {want_dr:,}/{want_cr:,}"
            )

    # ------------------------------------------------------------------ recovery

    def find_journals(self, marker: str) -> list[dict[str, Any]]:
        flt = f"{filter_eq('dataAreaId', self._cfg.legal_entity)} and Description eq '*{marker}*'"
        return list(self._odata.get_all(HEADERS, filter=flt, cross_company=True))

    def _recover(
        self, posting: Posting, lines: list[PlannedLine], jbn: str | None
    ) -> tuple[str | None, set[int] | None]:
        """Ask D365 what it holds. Returns (journal number or None, line numbers present).

        ``present is None`` means D365 already holds the whole journal, posted and matching.
        """
        key = posting.key
        header = None
        if jbn is not None:
            header = self._odata.get(HEADERS, {"dataAreaId": self._cfg.legal_entity, "JournalBatchNumber": jbn})
            if header is not None and posting.marker not in str(header.get("Description", "")):
                header = None  # the number was reused for something else: do not touch it
        if header is None:
            found = self.find_journals(posting.marker)
            if len(found) > 1:
                numbers = ", ".join(str(h.get("JournalBatchNumber")) for h in found)
                raise JournalMismatch(
                    f"{len(found)} journals in D365 carry marker {posting.marker} ({numbers}); delete the extra "
                    "unposted ones in D365, then run `ukg2d365 replay " + key + "`"
                )
            header = found[0] if found else None
        self._ledger.audit("recover", {"marker": posting.marker, "found": header is not None,
                                       "journal_batch_number": header and header.get("JournalBatchNumber")}, key)
        if header is None:
            if jbn is not None:
                self._ledger.forget_journal(key)
            return None, set()
        jbn = str(header["JournalBatchNumber"])
        self._ledger.set_status(key, SENDING, journal_batch_number=jbn)
        if str(header.get("IsPosted", "No")) == "Yes":
            present = self._recover_lines(posting, jbn, lines, verify_only=True)
            return jbn, None
        present = self._recover_lines(posting, jbn, lines, verify_only=False)
        return (jbn, present) if present is not None else (None, set())

    def _recover_lines(
        self, posting: Posting, jbn: str, lines: list[PlannedLine], *, verify_only: bool
    ) -> set[int] | None:
        """Compare D365's lines with the plan. Returns the matching line numbers present.

        When D365 holds a line the plan does not (or a different one), an unposted journal is deleted so it
        can be written again from scratch (returns None); a posted one is reported, never touched.
        """
        flt = f"{filter_eq('dataAreaId', self._cfg.legal_entity)} and {filter_eq('JournalBatchNumber', jbn)}"
        by_number = {ln.line_number: ln for ln in lines}
        present: set[int] = set()
        mismatches: list[str] = []
        for row in self._odata.get_all(
            LINES, filter=flt, cross_company=True,
            select=["LineNumber", "AccountDisplayValue", "DebitAmount", "CreditAmount"],
        ):
            number = int(Decimal(str(row.get("LineNumber"))))
            planned = by_number.get(number)
            if planned is None or not _same_line(planned, row):
                mismatches.append(str(number))
            else:
                present.add(number)
        complete = not mismatches and len(present) == len(lines)
        self._ledger.audit("recover lines", {"journal_batch_number": jbn, "present": len(present),
                                             "planned": len(lines), "mismatched": mismatches[:20]}, posting.key)
        if verify_only:
            if not complete:
                raise JournalMismatch(
                    f"journal {jbn} in D365 does not match the plan for {posting.key} "
                    f"({len(present)} of {len(lines)} lines match, {len(mismatches)} differ)"
                    + ("; it is already posted in D365, so correct it there" if mismatches else "")
                )
            return present
        if mismatches:
            self._ledger.audit("request", {"op": "delete unposted journal", "journal_batch_number": jbn,
                                           "reason": f"{len(mismatches)} lines differ from the plan"}, posting.key)
            self._odata.delete(HEADERS, {"dataAreaId": self._cfg.legal_entity, "JournalBatchNumber": jbn})
            self._ledger.forget_journal(posting.key)
            return None
        return present


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


def _dec(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


def _same_line(planned: PlannedLine, row: dict[str, Any]) -> bool:
    return (
        str(row.get("AccountDisplayValue")) == planned.account
        and _dec(row.get("DebitAmount")) == planned.debit
        and _dec(row.get("CreditAmount")) == planned.credit
    )
