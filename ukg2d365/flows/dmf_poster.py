"""Exactly-once delivery of one planned journal through D365's Data management package API.

The route Microsoft recommends for high volumes: the General journal entity "should be used for all high volume
import scenarios" (MicrosoftDocs/dynamics-365-unified-operations-public articles/fin-ops-core/dev-itpro/
data-entities/entity-general-journal.md). One package per journal, one import at a time, one legal entity per
import (data-management-api.md: ImportFromPackage "must not be called in parallel threads"):

1. the package is written from the stored plan as it is read (a temporary zip, deleted after the upload), then
   uploaded to the blob D365 hands out (GetAzureWriteUrl; the SAS URL is never recorded);
2. the execution id is committed to the ledger (the posting is ``sending``) *before* ImportFromPackage is called;
   a run that dies after that point, or whose ImportFromPackage answer was lost, polls that execution next
   time instead of importing again;
3. the status is polled with growing waits until it leaves NotRun/Executing. Anything but Succeeded is a
   failure (PartiallySucceeded too): GetExecutionErrors and the staging error file name the refused lines;
4. the journal is found by the marker in its Description and verified by its totals: one journal, the plan's
   line count, JournalTotalDebit/JournalTotalCredit equal to the plan's, and no line outside the plan's one
   voucher. Only then is ``posted`` recorded. A journal that differs (lines missing or surplus, for example
   after a partly successful import whose cause was fixed) is completed or repaired by the OData poster's
   recovery, which compares by content and never books a line twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

from ukg2d365.config import Config
from ukg2d365.d365.dmf import UNKNOWN, DmfClient, ExecutionReport
from ukg2d365.d365.journals import HEADERS, LINES
from ukg2d365.d365.odata import ODataClient, filter_eq
from ukg2d365.d365.package import JournalFields, PackageTemplate, PackageWriter
from ukg2d365.errors import AmbiguousWriteError, AuthError, RemoteError, RemoteUnavailable, Ukg2d365Error
from ukg2d365.flows.journal_poster import (
    JournalMismatch,
    JournalPoster,
    PostOutcome,
    record_failed,
    record_interrupted,
)
from ukg2d365.flows.runtime import Context
from ukg2d365.ledger import FAILED, POSTED, SENDING, Ledger, Posting

Progress = Callable[[int], None]
HEADER_FIELDS = ["dataAreaId", "JournalBatchNumber", "Description", "IsPosted", "JournalTotalDebit",
                 "JournalTotalCredit"]


class DmfPoster:
    def __init__(self, odata: ODataClient, dmf: DmfClient, ledger: Ledger, config: Config,
                 fallback: JournalPoster, progress: Progress | None = None) -> None:
        self._odata = odata
        self._dmf = dmf
        self._ledger = ledger
        self._config = config
        self._fallback = fallback
        self._progress = progress or (lambda n: None)
        self._template: PackageTemplate | None = None

    @property
    def template(self) -> PackageTemplate:
        """The customer's exported package (dmf.package_template) or the built-in one; read once per run."""
        if self._template is None:
            dmf = self._config.dmf
            path = self._config.resolve(dmf.package_template)
            self._template = PackageTemplate.load(path, dmf.entity_name) if path is not None else \
                PackageTemplate.builtin(dmf.definition_group, dmf.entity_name)
        return self._template

    def legal_entity(self, posting: Posting) -> str:
        """The posting's legal entity (each journal of a run names its own), else d365.legal_entity: one legal
        entity per ImportFromPackage call."""
        return posting.legal_entity or self._config.d365.legal_entity

    def _area(self, posting: Posting) -> str:
        return posting.data_area_id or self._config.d365.data_area_id

    # ------------------------------------------------------------------ public

    def post(self, posting: Posting) -> PostOutcome:
        key = posting.key
        try:
            self.template  # noqa: B018 - a broken template fails before anything is sent
            status = None
            execution = posting.execution_id
            if execution is not None:
                # A previous run queued this import: its outcome decides; never a second import beside it.
                self._ledger.audit("dmf.resume", {"execution_id": execution}, key)
                status = self._await(key, execution)
            if status is None or status == UNKNOWN:
                if self._find(posting):
                    return self._repair(posting, "D365 already holds a journal with this marker")
                execution = self._import(posting)
                status = self._await(key, execution)
            assert execution is not None
            if status == UNKNOWN:
                raise RemoteError(f"D365 does not know import {execution} of {key}, which it accepted")
            if status != "Succeeded":
                return self._failed(posting, execution, status)
            return self._verify(posting)
        except (RemoteUnavailable, AuthError) as exc:
            record_interrupted(self._ledger, key, exc)  # the execution id stays recorded for the next run
            raise
        except Ukg2d365Error as exc:
            record_failed(self._ledger, key, exc)
            return PostOutcome(key, FAILED, posting.journal_batch_number, 0, error=str(exc))

    # ------------------------------------------------------------------ steps

    def _import(self, posting: Posting) -> str:
        key = posting.key
        execution = f"{posting.marker}-{uuid.uuid4().hex[:12]}"
        cfg = self._config
        fields = JournalFields(
            batch=posting.marker, journal_name=cfg.d365.journal_name, description=posting.description,
            voucher=posting.marker, trans_date=date.fromisoformat(posting.trans_date).strftime(cfg.dmf.date_format),
            currency=cfg.d365.currency,
        )
        with PackageWriter(self.template, fields) as writer:
            writer.add(self._ledger.plan_rows(key))
            package = writer.finish()
            self._ledger.audit("dmf.package", {"lines": package.lines, "bytes": package.size,
                                               "sha256": package.sha256, "template": self.template.source}, key)
            target = self._dmf.write_url(f"{execution}.zip")
            self._dmf.upload(target, package.path)
        self._ledger.audit("dmf.uploaded", {"blob_id": target.blob_id, "blob": str(target.url)}, key)
        legal_entity = self.legal_entity(posting)
        self._ledger.set_execution(key, execution)  # write-ahead: before the import can exist in D365
        self._ledger.audit("request", {"op": "ImportFromPackage", "execution_id": execution,
                                       "definition_group": cfg.dmf.definition_group,
                                       "legal_entity": legal_entity, "lines": package.lines}, key)
        try:
            answered = self._dmf.import_package(target.url, definition_group=cfg.dmf.definition_group,
                                                execution_id=execution, legal_entity=legal_entity)
        except AmbiguousWriteError as exc:
            # It may have been queued: the execution id is recorded, so polling it tells.
            self._ledger.audit("ambiguous", {"error": str(exc), "execution_id": execution}, key)
            return execution
        except RemoteError:
            self._ledger.set_execution(key, None)  # refused: nothing was queued under this id
            raise
        self._ledger.audit("answer", {"op": "ImportFromPackage", "execution_id": answered}, key)
        if answered != execution:
            self._ledger.set_execution(key, answered)
        return answered

    def _await(self, key: str, execution: str) -> str:
        dmf = self._config.dmf
        seen: list[str] = []

        def on_poll(status: str) -> None:
            if not seen or seen[-1] != status:
                self._ledger.audit("dmf.status", {"execution_id": execution, "status": status}, key)
            seen.append(status)

        status = self._dmf.wait(execution, first=dmf.poll_seconds, cap=dmf.poll_max_seconds,
                                timeout=dmf.timeout_minutes * 60, unknown_for=self._config.d365.settle_seconds,
                                on_poll=on_poll)
        return status

    def _failed(self, posting: Posting, execution: str, status: str) -> PostOutcome:
        key = posting.key
        report = self._dmf.report(execution, status, self._config.dmf.entity_name)
        self._ledger.audit("dmf.errors", {"execution_id": execution, "status": status, "messages": report.messages,
                                          "refused_rows": report.refused_rows,
                                          "lines": {str(n): m for n, m in report.line_errors.items()}}, key)
        found = self._find(posting)
        message = _describe(posting, execution, report, found)
        # The execution is over: the next run looks at D365 by marker (and completes a partial journal) instead
        # of polling an execution that will not change.
        self._ledger.set_execution(key, None)
        number = str(found[0]["JournalBatchNumber"]) if len(found) == 1 else None
        self._ledger.set_status(key, FAILED, journal_batch_number=number, error=message, count_attempt=True)
        return PostOutcome(key, FAILED, number, 0, error=message)

    def _find(self, posting: Posting) -> list[dict[str, Any]]:
        flt = f"{filter_eq('dataAreaId', self._area(posting))} and Description eq '*{posting.marker}*'"
        return list(self._odata.get_all(HEADERS, filter=flt, cross_company=True, select=HEADER_FIELDS))

    def _verify(self, posting: Posting) -> PostOutcome:
        """One journal carrying the marker, with the plan's line count, totals and single voucher."""
        key = posting.key
        found = self._find(posting)
        if len(found) != 1:
            if not found:
                raise RemoteError(f"D365 reports import of {key} Succeeded, but no journal carries marker "
                                  f"{posting.marker}")
            return self._repair(posting, f"{len(found)} journals carry the marker")
        header = found[0]
        number = str(header["JournalBatchNumber"])
        area = filter_eq("dataAreaId", self._area(posting))
        lines = f"{area} and {filter_eq('JournalBatchNumber', number)}"
        count = self._odata.count(LINES, filter=lines, cross_company=True)
        other = self._odata.count(LINES, filter=f"{lines} and Voucher ne '{posting.marker}'", cross_company=True)
        debit, credit = _dec(header.get("JournalTotalDebit")), _dec(header.get("JournalTotalCredit"))
        facts = {"journal_batch_number": number, "lines": count, "planned": posting.line_count,
                 "debit": str(debit), "credit": str(credit), "other_vouchers": other}
        self._ledger.audit("verify", facts, key)
        if count != posting.line_count or other or debit != posting.debit_total or credit != posting.credit_total:
            return self._repair(posting, f"journal {number} differs from the plan ({count} of {posting.line_count} "
                                         f"lines, debit {debit}, credit {credit})")
        self._progress(count)
        self._ledger.set_status(key, POSTED, journal_batch_number=number)
        return PostOutcome(key, POSTED, number, posting.line_count)

    def _repair(self, posting: Posting, why: str) -> PostOutcome:
        """Hand a journal that exists but is not exactly the plan to the OData poster's recovery (by content)."""
        self._ledger.audit("dmf.repair", {"why": why, "route": "odata recovery"}, posting.key)
        self._ledger.set_execution(posting.key, None)
        self._ledger.set_status(posting.key, SENDING)
        current = self._ledger.get_posting(posting.key)
        assert current is not None
        return self._fallback.post(current)


def _describe(posting: Posting, execution: str, report: ExecutionReport, found: list[dict[str, Any]]) -> str:
    named = "; ".join(f"line {n}: {m}" for n, m in sorted(report.line_errors.items()))
    parts = [f"D365 import {execution} ended {report.status}"]
    if report.refused_rows:
        refused = f"{report.refused_rows} of {posting.line_count} line(s) refused"
        parts.append(refused + (f" ({named})" if named else ""))
    if report.messages:
        parts.append("; ".join(report.messages[:5]))
    if found and report.status == "PartiallySucceeded":
        numbers = ", ".join(str(h.get("JournalBatchNumber")) for h in found)
        parts.append(f"journal {numbers} holds the other lines, unposted: fix the cause, then `ukg2d365 replay "
                     f"{posting.key}` completes it (never a second copy)")
    elif not found:
        parts.append("nothing was written to D365")
    return "; ".join(parts)


def _dec(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None else None
    except ArithmeticError:
        return None


class RoutedPoster:
    """The poster for each posting's route: DMF when chosen or when an import is already under way, else OData."""

    def __init__(self, odata_poster: JournalPoster, dmf_poster: Callable[[], DmfPoster]) -> None:
        self.odata = odata_poster
        self._dmf_factory = dmf_poster
        self._dmf: DmfPoster | None = None

    def post(self, posting: Posting, route: str) -> PostOutcome:
        if route == "dmf" or posting.execution_id is not None:
            if self._dmf is None:
                self._dmf = self._dmf_factory()
            return self._dmf.post(posting)
        return self.odata.post(posting)

    def adopt(self, posting: Posting, journal_batch_number: str) -> PostOutcome:
        return self.odata.adopt(posting, journal_batch_number)


def make_poster(ctx: Context, progress: Progress | None) -> RoutedPoster:
    """The routed poster of a run (``ctx``: the run's Context)."""
    odata = JournalPoster(ctx.d365, ctx.ledger, ctx.config.d365, progress, ctx.d365_limit)
    return RoutedPoster(odata, lambda: DmfPoster(ctx.d365, ctx.dmf, ctx.ledger, ctx.config, odata, progress))


__all__ = ["DmfPoster", "JournalMismatch", "RoutedPoster", "make_poster"]
