"""D365's Data management package API: a writable blob, the upload, the import, its status and its errors.

The actions are OData actions bound to ``DataManagementDefinitionGroups`` (MicrosoftDocs/dynamics-365-unified-
operations-public articles/fin-ops-core/dev-itpro/data-entities/data-management-api.md):

* ``GetAzureWriteUrl {uniqueFileName}`` answers a JSON *string* holding ``BlobId`` and ``BlobUrl``; the URL
  carries a shared access signature (SAS), so whoever holds it may write there. It is a secret here: kept in a
  :class:`SasUrl` whose ``str``/``repr`` show host and path only, never put in the ledger, an audit row or a
  message, and only ever sent to the blob host (with ``x-ms-blob-type: BlockBlob``, no bearer token).
* ``ImportFromPackage {packageUrl, definitionGroupId, executionId, execute, overwrite, legalEntityId}`` queues the
  import of one legal entity and answers the execution id. It "must not be called in parallel threads", so the
  caller sends one at a time.
* ``GetExecutionSummaryStatus {executionId}``: Unknown, NotRun, Executing, then Succeeded, PartiallySucceeded,
  Failed or Canceled. Public DMF scripts report a 400 "... were not found" while the execution record is not
  created yet: read as Unknown.
* ``GetExecutionErrors {executionId}`` ("a set of error messages in a JSON list") and
  ``GetImportStagingErrorFileUrl {executionId, entityName}`` (the file of input records refused before staging;
  an empty string when there is none).
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ukg2d365.d365.odata import ODataClient
from ukg2d365.errors import AmbiguousWriteError, ProtocolError, RemoteError, RemoteUnavailable
from ukg2d365.http import HttpClient, redact

BOUND_TO = "DataManagementDefinitionGroups"
TERMINAL = ("Succeeded", "PartiallySucceeded", "Failed", "Canceled")
RUNNING = ("NotRun", "Executing")
UNKNOWN = "Unknown"
ERROR_FILE_MAX_BYTES = 4 * 1024 * 1024  # enough to name the refused lines; a bigger file is read this far
NAMED_ERRORS = 20


class SasUrl:
    """A URL with a shared access signature. ``str``/``repr`` hide the query; ``reveal()`` is for the wire."""

    __slots__ = ("_url",)

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ProtocolError(f"D365 answered a blob URL that is not an http(s) URL ({parts.scheme or 'none'})")
        self._url = url

    def reveal(self) -> str:
        return self._url

    @property
    def origin(self) -> str:
        parts = urlsplit(self._url)
        return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"

    def __str__(self) -> str:
        parts = urlsplit(self._url)
        return f"{parts.scheme}://{parts.hostname}{parts.path}" + ("?[SAS redacted]" if parts.query else "")

    __repr__ = __str__

    def scrub(self, text: str) -> str:
        """Text with this URL (and any SAS signature) removed: for a remote's message that echoes it."""
        return redact(text.replace(self._url, str(self)))


@dataclass(frozen=True)
class BlobTarget:
    blob_id: str
    url: SasUrl


@dataclass
class ExecutionReport:
    """Why an import did not succeed: D365's execution errors and the refused input rows, by line."""

    status: str
    messages: list[str] = field(default_factory=list)
    line_errors: dict[int, str] = field(default_factory=dict)  # LINENUMBER -> message (at most NAMED_ERRORS)
    refused_rows: int = 0  # rows in the staging error file (all of them, also past NAMED_ERRORS)


class DmfStillRunning(RemoteUnavailable):
    """The execution is still running when the wait ends; it goes on in D365 and a rerun picks it up."""


BlobHttp = Callable[[str], HttpClient]  # an HttpClient for a blob URL's origin (no D365 token on it)


class DmfClient:
    """The package API over an :class:`ODataClient`; blob transfers through their own, token-less HttpClient."""

    def __init__(self, odata: ODataClient, blob_http: BlobHttp, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._odata = odata
        self._blob_http = blob_http
        self._sleep = sleep
        self._clock = clock

    # ------------------------------------------------------------------ import

    def write_url(self, unique_file_name: str) -> BlobTarget:
        """A writable blob for the package (GetAzureWriteUrl)."""
        value = self._odata.action(BOUND_TO, "GetAzureWriteUrl", {"uniqueFileName": unique_file_name})
        try:
            info = json.loads(value) if isinstance(value, str) else value
            blob_id, blob_url = str(info["BlobId"]), str(info["BlobUrl"])
        except (ValueError, TypeError, KeyError):
            raise ProtocolError("D365 GetAzureWriteUrl: the answer holds no BlobId and BlobUrl") from None
        return BlobTarget(blob_id, SasUrl(blob_url))

    def upload(self, target: BlobTarget, path: Path) -> None:
        """PUT the package to the blob, streamed from disk (Azure Put Blob: ``x-ms-blob-type: BlockBlob``).

        Writing a blob again replaces it, so an upload whose answer was lost is simply sent again.
        """
        url = target.url
        http = self._blob_http(url.origin)
        headers = {"x-ms-blob-type": "BlockBlob", "Content-Type": "application/zip"}
        try:
            with open(path, "rb") as body:
                response = http.request("PUT", url.reveal(), data=body, headers=headers, idempotent=True)
        except (RemoteError, RemoteUnavailable) as exc:
            raise type(exc)(url.scrub(str(exc))) from None
        with response:
            if not 200 <= response.status_code < 300:
                detail = url.scrub(response.text[:300]) if response.content else ""
                raise RemoteError(f"blob storage refused the package upload to {url} (HTTP {response.status_code})"
                                  + (f": {detail}" if detail else ""), status=response.status_code)

    def import_package(self, url: SasUrl, *, definition_group: str, execution_id: str, legal_entity: str,
                       execute: bool = True, overwrite: bool = True) -> str:
        """Queue the import (ImportFromPackage); the execution id D365 answers.

        ``overwrite`` "must always be set to False when a composite entity is used"; General journal is not one.
        A lost answer raises AmbiguousWriteError: the caller polls the execution id it recorded beforehand.
        """
        body = {"packageUrl": url.reveal(), "definitionGroupId": definition_group, "executionId": execution_id,
                "execute": execute, "overwrite": overwrite, "legalEntityId": legal_entity}
        try:
            value = self._odata.action(BOUND_TO, "ImportFromPackage", body)
        except RemoteError as exc:
            raise RemoteError(url.scrub(str(exc)), status=exc.status, hint=exc.hint) from None
        except AmbiguousWriteError as exc:
            raise AmbiguousWriteError(url.scrub(str(exc)), hint=exc.hint) from None
        if isinstance(value, dict):  # some versions nest it ({"value": {"value": id}} for ExportToPackage)
            value = value.get("value")
        return str(value or execution_id)

    # ------------------------------------------------------------------ status

    def status(self, execution_id: str) -> str:
        """The execution's summary status; Unknown when D365 has no such execution (yet)."""
        try:
            value = self._odata.action(BOUND_TO, "GetExecutionSummaryStatus", {"executionId": execution_id},
                                       idempotent=True)
        except RemoteError as exc:
            if exc.status in (400, 404) and "not found" in str(exc).lower():
                return UNKNOWN
            raise
        return str(value or UNKNOWN)

    def wait(self, execution_id: str, *, first: float, cap: float, timeout: float, unknown_for: float,
             on_poll: Callable[[str], None] | None = None) -> str:
        """Poll until the execution leaves NotRun/Executing; the waits grow x1.5 from ``first`` to ``cap``.

        Returns a terminal status, or Unknown when D365 still does not know the execution after ``unknown_for``
        seconds (the import never arrived). Raises :class:`DmfStillRunning` after ``timeout`` seconds.
        """
        started = self._clock()
        wait = first
        while True:
            status = self.status(execution_id)
            if on_poll is not None:
                on_poll(status)
            elapsed = self._clock() - started
            if status in TERMINAL:
                return status
            if status not in RUNNING and elapsed >= unknown_for:
                return UNKNOWN if status == UNKNOWN else status
            if elapsed + wait > timeout:
                raise DmfStillRunning(
                    f"D365 import {execution_id} is still {status} after {elapsed / 60:.0f} min",
                    hint="it goes on in D365 (Data management > Job history); run the same command again later: "
                         "it waits for this execution instead of importing again",
                )
            self._sleep(wait)
            wait = min(wait * 1.5, cap)

    # ------------------------------------------------------------------ errors

    def report(self, execution_id: str, status: str, entity_name: str) -> ExecutionReport:
        """GetExecutionErrors and the staging error file, the refused rows named by their LINENUMBER."""
        report = ExecutionReport(status)
        try:
            report.messages = self.execution_errors(execution_id)
        except (RemoteError, ProtocolError) as exc:
            report.messages = [f"GetExecutionErrors failed: {exc}"]
        try:
            url = self.staging_error_file_url(execution_id, entity_name)
            if url is not None:
                report.refused_rows, report.line_errors = self._read_error_file(url)
        except (RemoteError, ProtocolError) as exc:
            report.messages.append(f"the staging error file could not be read: {exc}")
        return report

    def execution_errors(self, execution_id: str) -> list[str]:
        value = self._odata.action(BOUND_TO, "GetExecutionErrors", {"executionId": execution_id}, idempotent=True)
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else []
            except ValueError:
                return [value]
        items = value if isinstance(value, list) else [value] if value else []
        return [_message(item) for item in items][:NAMED_ERRORS]

    def staging_error_file_url(self, execution_id: str, entity_name: str) -> SasUrl | None:
        value = self._odata.action(BOUND_TO, "GetImportStagingErrorFileUrl",
                                   {"executionId": execution_id, "entityName": entity_name}, idempotent=True)
        return SasUrl(str(value)) if value else None

    def _read_error_file(self, url: SasUrl) -> tuple[int, dict[int, str]]:
        http = self._blob_http(url.origin)
        try:
            response = http.request("GET", url.reveal())
        except (RemoteError, RemoteUnavailable) as exc:
            raise RemoteError(url.scrub(str(exc))) from None
        with response:
            if response.status_code != 200:
                raise RemoteError(f"blob storage answered HTTP {response.status_code} for the error file {url}")
            raw = response.content[:ERROR_FILE_MAX_BYTES]
        return parse_error_file(raw)


def parse_error_file(raw: bytes) -> tuple[int, dict[int, str]]:
    """(rows, LINENUMBER -> message) of a staging error file: CSV, UTF-16 or UTF-8, an error column by name."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = raw.decode("utf-16", errors="ignore")
    else:
        text = raw.decode("utf-8-sig", errors="replace")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = reader.fieldnames or []
    number_field = next((f for f in fields if f.strip().upper() == "LINENUMBER"), None)
    error_fields = [f for f in fields if "error" in f.casefold() or "message" in f.casefold()]
    rows = 0
    named: dict[int, str] = {}
    for row in reader:
        rows += 1
        if len(named) >= NAMED_ERRORS or number_field is None:
            continue
        number = _line_number(row.get(number_field))
        if number is None:
            continue
        message = "; ".join(str(row.get(f) or "").strip() for f in error_fields if row.get(f)) or "refused"
        named[number] = message
    return rows, named


def _line_number(text: str | None) -> int | None:
    """A staging error file's LINENUMBER ("12" or D365's real "12.0000"); None for anything else (never float:
    "inf" would raise where "abc" is skipped)."""
    try:
        number = Decimal((text or "").strip())
    except InvalidOperation:
        return None
    if not number.is_finite() or number != number.to_integral_value() or number < 1:
        return None
    return int(number)


def _message(item: Any) -> str:
    if isinstance(item, dict):
        for key in ("ErrorMessage", "Message", "message", "error"):
            if item.get(key):
                return str(item[key])
        return json.dumps(item, default=str)[:300]
    return str(item)
