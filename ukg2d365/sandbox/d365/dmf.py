"""The sandbox D365's Data management package API, its blob storage, and the cost model of a real F&O.

Modelled on MicrosoftDocs/dynamics-365-unified-operations-public articles/fin-ops-core/dev-itpro/data-entities/
data-management-api.md: ``GetAzureWriteUrl`` answers a JSON string with BlobId and a BlobUrl carrying a SAS
(here ``https://localhost:<d365 port>/dmf-blob/<name>?...&sig=...``: another host name than the OData service,
so a client that sent its bearer token there would be caught); ``PUT`` of the package with ``x-ms-blob-type:
BlockBlob``; ``ImportFromPackage`` queues an execution that runs in a background thread (NotRun, Executing, then
Succeeded, PartiallySucceeded or Failed); ``GetExecutionSummaryStatus`` answers ``Unknown`` for an id it never
saw; ``GetExecutionErrors`` and ``GetImportStagingErrorFileUrl`` report refusals. Two imports at once are
refused, as ImportFromPackage "must not be called in parallel threads. Otherwise, it will fail."

The import reads the package as D365's General journal entity does with set-based processing (entity-general-
journal.md, tips-tricks-import-general-journal-entity.md): rows grouped by JOURNALBATCHNUMBER into new journals
numbered from the number sequence (a placeholder batch number that matches an existing unposted journal adds to
it), the VOUCHER of the file kept even when unbalanced, LINENUMBER as given. A row whose account does not
validate is refused at staging (named in the staging error file); the others are imported:
PartiallySucceeded. A journal name that does not exist fails the target step: Failed, nothing written.

The cost model (off unless given; ``make bench`` turns it on). Defaults are assumptions, stated with sources:

* OData journal lines: ``odata_line_ms`` per line, serial inside a ``$batch`` request (F&O runs a changeset's
  operations one after another in one transaction), at most ``max_changesets`` requests at once; past that
  the request is answered 429 with ``Retry-After`` (resource-based service protection answers 429 with
  Retry-After: articles/fin-ops-core/dev-itpro/data-entities/service-protection-api-limits.md). Assumed 5 ms a
  line ("milliseconds per line": each line runs the journal line's validation and insert logic) and 4 at once.
* DMF imports: ``dmf_fixed_ms`` per execution (the batch job is queued and picked up, the package unpacked and
  staged) plus ``dmf_line_us`` per line (set-based: staging to target in set operations). Assumed 5 s and 20 us:
  consistent with entity-general-journal.md's "3,000 rows imports in less than 30 seconds if it uses existing
  dimension combinations".
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

from ukg2d365.sandbox.types import SimRequest, SimResponse

ACTION_PREFIX = "DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities."
BLOB_PREFIX = "/dmf-blob/"
ERROR_PREFIX = "/dmf-blob/errors/"


@dataclass
class CostModel:
    """What a real F&O spends; zero (off) by default so the e2e tests stay fast."""

    odata_line_ms: float = 0.0
    max_changesets: int = 0  # 0: no limit
    retry_after_s: int = 1
    dmf_fixed_ms: float = 0.0
    dmf_line_us: float = 0.0
    _slots: threading.Semaphore | None = field(default=None, repr=False)

    BENCH_DEFAULTS = {"odata_line_ms": 5.0, "max_changesets": 4, "dmf_fixed_ms": 5000.0, "dmf_line_us": 20.0}

    def __post_init__(self) -> None:
        if self.max_changesets > 0:
            self._slots = threading.Semaphore(self.max_changesets)

    @contextmanager
    def odata_request(self, operations: int) -> Iterator[bool]:
        """Yields False when every slot is taken (the caller answers 429); else spends the lines' time."""
        if self._slots is not None and not self._slots.acquire(blocking=False):
            yield False
            return
        try:
            if self.odata_line_ms > 0 and operations:
                time.sleep(operations * self.odata_line_ms / 1000.0)
            yield True
        finally:
            if self._slots is not None:
                self._slots.release()

    def dmf_seconds(self, lines: int) -> float:
        return (self.dmf_fixed_ms / 1000.0) + lines * self.dmf_line_us / 1e6


@dataclass
class Execution:
    execution_id: str
    package: str  # blob name
    definition_group: str
    legal_entity: str
    status: str = "NotRun"
    errors: list[str] = field(default_factory=list)
    error_file: str | None = None  # blob name of the staging error file
    journals: list[str] = field(default_factory=list)
    lines: int = 0


# (legal entity, rows, refused accounts) -> (journal numbers written, staging refusals [(row, message)], rows
# read); raises ValueError on a target failure (nothing written). Rows are dicts by upper-case column name.
# Supplied by the D365 service: Entities.import_journal_rows, which owns the journals' rules.
Refusals = list[tuple[dict[str, str], str]]
Importer = Callable[[str, Iterator[dict[str, str]], set[str]], tuple[list[str], Refusals, int]]


class DmfRoom:
    """The package actions and the blob endpoint. Thread-safe; executions run in their own threads."""

    def __init__(self, base_url: str, importer: Importer, cost: CostModel | None = None) -> None:
        parts = urlsplit(base_url)
        self.blob_base = f"{parts.scheme}://localhost:{parts.port}"
        self._importer = importer
        self.cost = cost or CostModel()
        self._lock = threading.Lock()
        self.blobs: dict[str, bytes] = {}
        self.executions: dict[str, Execution] = {}
        self._sigs: dict[str, str] = {}  # blob name -> its SAS signature
        self.import_calls = 0
        self.blob_requests_with_token = 0  # a client that sent its D365 token to blob storage
        self._importing = threading.Lock()
        # Faults for the tests: accounts refused at staging (PartiallySucceeded) and a target step that fails.
        self.refuse_accounts: set[str] = set()
        self.fail_target = False
        self.hold = threading.Event()  # cleared: executions wait at Executing until set again
        self.hold.set()

    # ------------------------------------------------------------------ blob storage

    def handles_blob(self, path: str) -> bool:
        return path.startswith(BLOB_PREFIX)

    def blob(self, req: SimRequest) -> SimResponse:
        name = req.path[len(BLOB_PREFIX):]
        if req.header("authorization"):
            self.blob_requests_with_token += 1
        with self._lock:
            sig = self._sigs.get(name)
        if sig is None or req.arg("sig") != sig:
            return _blob_error(403, "AuthenticationFailed", "Server failed to authenticate the request.")
        method = req.method.upper()
        if method == "PUT":
            if (req.header("x-ms-blob-type") or "") != "BlockBlob":
                return _blob_error(400, "MissingRequiredHeader", "x-ms-blob-type is required.")
            with self._lock:
                self.blobs[name] = req.body
            return SimResponse.empty(201)
        if method == "GET":
            with self._lock:
                data = self.blobs.get(name)
            if data is None:
                return _blob_error(404, "BlobNotFound", "The specified blob does not exist.")
            return SimResponse(200, data, {"Content-Type": "application/octet-stream"})
        return _blob_error(405, "UnsupportedHttpVerb", f"{method} is not supported.")

    def _sas_url(self, name: str) -> str:
        sig = uuid.uuid4().hex
        with self._lock:
            self._sigs[name] = sig
        return f"{self.blob_base}{BLOB_PREFIX}{name}?sv=2020-08-04&sr=b&sp=rw&se=2099-01-01&sig={sig}"

    # ------------------------------------------------------------------ actions

    def handles_action(self, rest: str) -> bool:
        return rest.startswith(ACTION_PREFIX)

    def action(self, rest: str, body: dict[str, Any]) -> tuple[int, Any]:
        """(status, value or error message) for one action."""
        name = rest[len(ACTION_PREFIX):]
        handler = getattr(self, f"_{name}", None)
        if handler is None:
            return 404, f"Action {name} is not defined."
        result: tuple[int, Any] = handler(body)
        return result

    def _GetAzureWriteUrl(self, body: dict[str, Any]) -> tuple[int, Any]:  # noqa: N802 - the action's name
        name = str(body.get("uniqueFileName") or "")
        if not name:
            return 400, "uniqueFileName is required."
        blob = f"{uuid.uuid4().hex}/{name}"
        return 200, json.dumps({"BlobId": "{" + str(uuid.uuid4()).upper() + "}", "BlobUrl": self._sas_url(blob)})

    def _ImportFromPackage(self, body: dict[str, Any]) -> tuple[int, Any]:  # noqa: N802
        with self._lock:
            self.import_calls += 1
        url = urlsplit(str(body.get("packageUrl") or ""))
        name = url.path[len(BLOB_PREFIX):] if url.path.startswith(BLOB_PREFIX) else ""
        with self._lock:
            sig_ok = name in self._sigs and f"sig={self._sigs[name]}" in url.query
            present = name in self.blobs
        if not sig_ok or not present:
            return 400, "The package could not be read from the given URL."
        execution_id = str(body.get("executionId") or "") or f"Import-{uuid.uuid4()}"
        if not self._importing.acquire(blocking=False):
            return 400, "Another import is being started: ImportFromPackage cannot run in parallel."
        try:
            with self._lock:
                if execution_id in self.executions:
                    return 400, f"Execution {execution_id} already exists."
                run = Execution(execution_id, name, str(body.get("definitionGroupId") or ""),
                                str(body.get("legalEntityId") or ""))
                self.executions[execution_id] = run
        finally:
            self._importing.release()
        threading.Thread(target=self._run, args=(run,), name=f"dmf-{execution_id}", daemon=True).start()
        return 200, execution_id

    def _GetExecutionSummaryStatus(self, body: dict[str, Any]) -> tuple[int, Any]:  # noqa: N802
        with self._lock:
            run = self.executions.get(str(body.get("executionId") or ""))
        return 200, run.status if run is not None else "Unknown"

    def _GetExecutionErrors(self, body: dict[str, Any]) -> tuple[int, Any]:  # noqa: N802
        with self._lock:
            run = self.executions.get(str(body.get("executionId") or ""))
        return 200, json.dumps(run.errors if run is not None else [])

    def _GetImportStagingErrorFileUrl(self, body: dict[str, Any]) -> tuple[int, Any]:  # noqa: N802
        with self._lock:
            run = self.executions.get(str(body.get("executionId") or ""))
        if run is None or run.error_file is None:
            return 200, ""
        return 200, self._sas_url(run.error_file)

    # ------------------------------------------------------------------ the execution

    def _run(self, run: Execution) -> None:
        run.status = "Executing"
        started = time.monotonic()
        try:
            with self._lock:
                data = self.blobs[run.package]
            if self.fail_target:
                run.lines = sum(1 for _ in _package_rows(data))
                raise ValueError("the journal name of the package does not exist in the target legal entity")
            journals, refused, run.lines = self._importer(run.legal_entity, _package_rows(data),
                                                          set(self.refuse_accounts))
        except (ValueError, KeyError, zipfile.BadZipFile) as exc:
            self._wait_cost(started, run.lines)
            run.errors = [f"Target step failed: {exc}"]
            run.status = "Failed"
            return
        self._wait_cost(started, run.lines)
        run.journals = journals
        if refused:
            run.errors = [f"{len(refused)} record(s) failed at staging"]
            run.error_file = f"errors/{run.execution_id}.csv"
            with self._lock:
                self.blobs[run.error_file] = _error_file(refused)
        run.status = "PartiallySucceeded" if refused and journals else "Failed" if refused else "Succeeded"

    def _wait_cost(self, started: float, lines: int) -> None:
        remaining = self.cost.dmf_seconds(lines) - (time.monotonic() - started)
        if remaining > 0:
            time.sleep(remaining)
        self.hold.wait()


def _package_rows(data: bytes) -> Iterator[dict[str, str]]:
    """The rows of the package's data file by upper-case column, as the manifest's source format reads them."""
    with zipfile.ZipFile(io.BytesIO(data)) as package:
        names = {n.casefold(): n for n in package.namelist()}
        manifest = ElementTree.fromstring(package.read(names["manifest.xml"]))  # noqa: S314 - our own client's
        entity = next(n for n in manifest.iter() if n.tag.rsplit("}", 1)[-1] == "DataManagementPackageEntityData")
        values = {c.tag.rsplit("}", 1)[-1]: (c.text or "") for c in entity}
        data_file = names[values["InputFilePath"].casefold()]
        encoding = "utf-16" if "unicode" in values.get("SourceFormat", "").casefold() else "utf-8-sig"
        with package.open(data_file) as raw:
            text = io.TextIOWrapper(raw, encoding=encoding, newline="")
            reader = csv.reader(text)
            header = [c.upper() for c in next(reader)]
            for row in reader:
                yield dict(zip(header, row, strict=False))


def _error_file(refused: list[tuple[dict[str, str], str]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["LINENUMBER", "ACCOUNTDISPLAYVALUE", "ERROR"])
    for row, message in refused:
        writer.writerow([row.get("LINENUMBER", ""), row.get("ACCOUNTDISPLAYVALUE", ""), message])
    return out.getvalue().encode("utf-16")


def _blob_error(status: int, code: str, message: str) -> SimResponse:
    body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return SimResponse(status, body.encode(), {"Content-Type": "application/xml"})
