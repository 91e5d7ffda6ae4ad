"""`D365Service`: turns a `SimRequest` for `/data/...` into a `SimResponse`, as F&O's OData endpoint."""

from __future__ import annotations

import base64
import functools
import re
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit
from xml.sax.saxutils import quoteattr

from ukg2d365.sandbox.d365.batch import BatchPart, parse_multipart, render_part
from ukg2d365.sandbox.d365.dmf import CostModel, DmfRoom
from ukg2d365.sandbox.d365.entities import Entities
from ukg2d365.sandbox.d365.errors import ODataError, no_route, not_found, odata_error
from ukg2d365.sandbox.d365.query import FilterParser, parse_key, sort_key
from ukg2d365.sandbox.d365.schema import (
    DEFAULT_PAGE_SIZE,
    ENUMS,
    JSON_CONTENT_TYPE,
    MAX_BATCH_OPERATIONS,
    NAMESPACE,
    ODATA_HEADERS,
    SPECS,
    EntitySpec,
)
from ukg2d365.sandbox.d365.store import D365State, RowKey, Txn, journal_key
from ukg2d365.sandbox.d365.values import coerce_body, collation_key, key_predicate, parse_json_body
from ukg2d365.sandbox.tokens import TokenRegistry
from ukg2d365.sandbox.types import SimRequest, SimResponse, dumps


@dataclass(frozen=True)
class _Target:
    spec: EntitySpec
    key: dict[str, Any] | None  # typed key values from the URL, or None for the collection
    suffix: str  # what followed the entity segment, e.g. "/$count"


_BARE_TARGETS = {name: _Target(spec, None, "") for name, spec in SPECS.items()}


class D365Service:
    """The F&O OData endpoint under /data. `handle()` is safe to call from many threads."""

    def __init__(self, state: D365State, tokens: TokenRegistry, base_url: str, *, page_size: int = DEFAULT_PAGE_SIZE,
                 unregistered_app: bool = False, write_error_status: int = 400,
                 max_batch_operations: int = MAX_BATCH_OPERATIONS, cost: CostModel | None = None) -> None:
        self.state = state
        self.tokens = tokens
        self.base_url = base_url.rstrip("/")
        self._data_url = self.base_url + "/data/"
        self.page_size = page_size  # server-driven page size (F&O: 10,000); tests set it small
        self.unregistered_app = unregistered_app  # app missing from "Microsoft Entra ID applications"
        self.write_error_status = write_error_status  # F&O answers 400 (some versions 500) for write failures
        self.max_batch_operations = max_batch_operations
        # A mode: @odata.nextLink relative to the service root ("LedgerJournalLines?$skip=2"), which OData v4
        # allows and the client must resolve against /data/, not the host.
        self.relative_next_links = False
        # WebApi honours Prefer: odata.continue-on-error only where its configuration enables the header
        # (DefaultODataBatchHandler.ProcessBatchAsync: HasEnabledContinueOnErrorHeader): False models a server
        # that stops at the first failed changeset whatever the request prefers.
        self.honor_continue_on_error = True
        self.entities = Entities(state)
        self.cost = cost or CostModel()
        self.dmf = DmfRoom(self.base_url, self.entities.import_journal_rows, self.cost)

    # ---- entry point ----

    def handle(self, req: SimRequest) -> SimResponse:
        if self.dmf.handles_blob(req.path):  # blob storage: its own host name, authorized by the SAS alone
            return self.dmf.blob(req)
        if not self._authorized(req):
            return SimResponse.empty(401, {
                "WWW-Authenticate": f'Bearer error="invalid_token", resource_id="{self.base_url}"'})
        try:
            return self._route(req)
        except ODataError as err:
            return self._error_response(err)

    def _authorized(self, req: SimRequest) -> bool:
        auth = req.header("authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not self.tokens.check(token.strip(), self.base_url):
            return False
        # F&O accepts the token but knows no user for an app that is not registered: 401, empty body
        return not self.unregistered_app

    def _error_response(self, err: ODataError) -> SimResponse:
        status = err.status if err.status is not None else self.write_error_status
        return self._json(status, err.body())

    def _json(self, status: int, value: Any, headers: dict[str, str] | None = None) -> SimResponse:
        hdrs = {"Content-Type": JSON_CONTENT_TYPE, **ODATA_HEADERS, **(headers or {})}
        return SimResponse(status, dumps(value), hdrs)

    def _route(self, req: SimRequest) -> SimResponse:
        path = req.path
        if path in ("/data", "/data/"):
            return self._service_document()
        if not path.startswith("/data/"):
            raise no_route(self.base_url + req.raw_path)
        rest = path[len("/data/"):]
        if rest == "$metadata":
            self._count("$metadata")
            return SimResponse(200, self._metadata().encode(), {"Content-Type": "application/xml", **ODATA_HEADERS})
        if rest == "$batch":
            if req.method.upper() != "POST":
                raise odata_error("$batch accepts only POST.", 405)
            self._count("$batch")
            return self._gated_batch(req)
        if self.dmf.handles_action(rest):
            return self._dmf_action(req, rest)
        return self._operation(req, None)

    def _gated_batch(self, req: SimRequest) -> SimResponse:
        """A $batch through the cost model: its writes take their time, and past the requests D365 runs at
        once the answer is 429 with Retry-After (service-protection-api-limits.md)."""
        writes = req.body.count(b"\r\nPOST ") + req.body.count(b"\r\nPATCH ") + req.body.count(b"\r\nDELETE ")
        with self.cost.odata_request(writes) as admitted:
            if not admitted:
                return self._json(429, {"error": {"code": "", "message": "Too many requests."}},
                                  {"Retry-After": str(self.cost.retry_after_s)})
            return self._batch(req)

    def _dmf_action(self, req: SimRequest, rest: str) -> SimResponse:
        if req.method.upper() != "POST":
            raise odata_error("An action accepts only POST.", 405)
        self._count(rest.rsplit(".", 1)[-1])
        status, value = self.dmf.action(rest, parse_json_body(req.body) if req.body else {})
        if status != 200:
            raise odata_error(str(value), status)
        return self._json(200, {"@odata.context": f"{self.base_url}/data/$metadata#Edm.String", "value": value})

    def _count(self, name: str) -> None:
        with self.state.lock:
            self.state.request_count[name] += 1

    def _target(self, rest: str, raw: str) -> _Target:
        """`LedgerJournalLines(dataAreaId='usmf',JournalBatchNumber='X',LineNumber=1)` -> spec + key."""
        bare = _BARE_TARGETS.get(rest)
        if bare is not None:  # the bare set name (every POST): no key, no suffix
            return bare
        i = 0
        while i < len(rest) and rest[i] not in "(/":
            i += 1
        name = rest[:i]
        spec = SPECS.get(name)  # exact match: entity set names are case-sensitive
        if spec is None:
            raise no_route(raw)
        key_text = None
        if i < len(rest) and rest[i] == "(":
            j, in_quote = i + 1, False
            while j < len(rest):
                ch = rest[j]
                if ch == "'":
                    in_quote = not in_quote  # '' inside a literal toggles twice
                elif ch == ")" and not in_quote:
                    break
                j += 1
            if j >= len(rest):
                raise odata_error(f"Bad key predicate in '{rest}'.")
            key_text = rest[i + 1:j]
            i = j + 1
        key = parse_key(spec, key_text) if key_text is not None else None
        return _Target(spec, key, rest[i:])

    # ---- one operation (standalone or inside a changeset) ----

    def _operation(self, req: SimRequest, txn: Txn | None) -> SimResponse:
        target = self._target(req.path[len("/data/"):], self.base_url + req.raw_path)
        method = req.method.upper()
        if txn is None:
            self._count(target.spec.name)
        else:  # inside a changeset, which holds the lock already
            self.state.request_count[target.spec.name] += 1
        if target.suffix and not (target.suffix == "/$count" and target.key is None and method == "GET"):
            raise not_found(target.suffix.strip("/"))
        if method == "GET":
            if txn is not None:
                raise odata_error("A GET request cannot be part of a change set.")
            return self._read(req, target)
        if method not in ("POST", "PATCH", "PUT", "DELETE"):
            raise odata_error(f"The HTTP method '{method}' is not allowed here.", 405)
        if not target.spec.writable:
            raise odata_error(f"The entity set '{target.spec.name}' is read-only: {method} is not allowed.", 405)
        if (method == "POST") == (target.key is not None):
            raise odata_error(f"{method} is not allowed on this resource.", 405)
        if txn is not None:
            return self._write(req, target, method, txn)
        with self.state.lock:
            own = Txn(self.state)
            response = self._write(req, target, method, own)
            own.commit()
            return response

    def _company_filtered(self, req: SimRequest, spec: EntitySpec) -> bool:
        return spec.company and (req.arg("cross-company") or "").lower() != "true"

    def _key_tuple(self, req: SimRequest, target: _Target) -> RowKey:
        assert target.key is not None
        key = tuple(collation_key(target.key[k]) for k in target.spec.keys)
        if self._company_filtered(req, target.spec) and key[0] != collation_key(self.state.default_company):
            raise not_found(target.spec.name)  # another company is invisible without cross-company=true
        return key

    def _write(self, req: SimRequest, target: _Target, method: str, txn: Txn) -> SimResponse:
        spec = target.spec
        ieee754 = _ieee754(req.headers.get("content-type") or "")  # header names are lower-case already
        prefer = (req.headers.get("prefer") or "").lower()
        if method == "DELETE":
            self.entities.delete(txn, spec, self._key_tuple(req, target))
            return SimResponse.empty(204, dict(ODATA_HEADERS))
        values = coerce_body(spec, parse_json_body(req.body), ieee754)
        if method == "POST":
            rec = self.entities.create(txn, spec, values)
            minimal = "return=minimal" in prefer
            view = rec if minimal else self._view(spec, rec, txn)  # the key is all a minimal answer needs
            predicate = key_predicate(spec, view)
            if not _URL_SAFE_RE.fullmatch(predicate):  # quote() would change nothing in a safe predicate
                predicate = quote(predicate, safe=_URL_SAFE)
            location = f"{self._data_url}{spec.name}({predicate})"
            if minimal:
                return SimResponse(204, b"", {**ODATA_HEADERS, "Location": location, "OData-EntityId": location,
                                              "Preference-Applied": "return=minimal"})
            return self._json(201, self._entity_body(spec, view), {"Location": location, "OData-EntityId": location})
        rec = self.entities.update(txn, spec, self._key_tuple(req, target), values)
        if "return=representation" in prefer:
            return self._json(200, self._entity_body(spec, self._view(spec, rec, txn)))
        return SimResponse.empty(204, dict(ODATA_HEADERS))

    def _view(self, spec: EntitySpec, rec: dict[str, Any], txn: Txn | None) -> dict[str, Any]:
        """What a client reads for a stored row: computed fields added."""
        if spec.name == "LedgerJournalHeaders":
            if txn is None:
                return self.state.header_view(rec)
            debit = credit = Decimal("0")
            for key in txn.journal_line_keys(journal_key(rec)):
                line = txn.get("LedgerJournalLines", key) or {}
                debit += line.get("DebitAmount", Decimal("0"))
                credit += line.get("CreditAmount", Decimal("0"))
            return {**rec, "JournalTotalDebit": debit, "JournalTotalCredit": credit}
        if spec.name == "Workers":
            extra = txn.staged_employments(collation_key(rec["PersonnelNumber"])) if txn is not None else []
            return {**rec, "WorkerStatus": self.state.worker_status(rec, extra)}
        return rec

    def _entity_body(self, spec: EntitySpec, rec: dict[str, Any], select: list[str] | None = None) -> dict[str, Any]:
        out = {"@odata.context": f"{self.base_url}/data/$metadata#{spec.name}/$entity"}
        out.update(self._row(rec, select))
        return out

    @staticmethod
    def _row(rec: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
        # a weak ETag derived from the row's values: it changes whenever the row does
        tag = base64.b64encode(f"'1,{zlib.crc32(repr(tuple(rec.values())).encode())}'".encode()).decode()
        out: dict[str, Any] = {"@odata.etag": f'W/"{tag}"'}
        if select is None:
            out.update(rec)
        else:
            out.update((p, rec[p]) for p in select)
        return out

    # ---- reads ----

    def _rows(self, spec: EntitySpec) -> Iterator[dict[str, Any]]:
        """Every row of a set as clients see it (caller holds the lock)."""
        state = self.state
        if spec.name == "LedgerJournalHeaders":
            yield from (state.header_view(r) for r in state.tables[spec.name].values())
        elif spec.name == "Workers":
            yield from ({**r, "WorkerStatus": state.worker_status(r)} for r in state.tables[spec.name].values())
        elif spec.name == "EmployeesV2":
            get = self._committed_get
            yield from (self.entities.compose_employee(get, emp) for emp in state.tables["EmploymentsV2"].values())
        elif spec.name == "FinancialDimensionValues":
            yield from state.tables[spec.name].values()
            # values of entity-backed dimensions show up here too, derived from their backing entity
            backed = {n: b for n, b in state.dimensions.items() if b.kind == "operating_unit"}
            for unit in state.tables["OperatingUnits"].values():
                for name, backing in backed.items():
                    if unit["OperatingUnitType"] == backing.operating_unit_type:
                        yield self._backed_value(name, unit)
        else:
            yield from state.tables[spec.name].values()

    def _committed_get(self, set_name: str, key: RowKey) -> dict[str, Any] | None:
        return self.state.tables[set_name].get(key)

    @staticmethod
    def _backed_value(name: str, unit: dict[str, Any]) -> dict[str, Any]:
        rec = SPECS["FinancialDimensionValues"].default_record()
        rec.update({"FinancialDimension": name, "LegalEntityId": "", "DimensionValue": unit["OperatingUnitNumber"],
                    "Description": unit["Name"], "Owner": unit["PartyNumber"]})
        return rec

    def _get_one(self, spec: EntitySpec, key: RowKey) -> dict[str, Any] | None:
        state = self.state
        if spec.name == "EmployeesV2":
            emp = state.tables["EmploymentsV2"].get(key)
            return None if emp is None else self.entities.compose_employee(self._committed_get, emp)
        rec = state.tables[spec.name].get(key)
        if rec is None and spec.name == "FinancialDimensionValues":
            backing = next((b for n, b in state.dimensions.items() if n.casefold() == key[0]), None)
            unit = state.tables["OperatingUnits"].get((key[2],))
            if (backing is not None and backing.kind == "operating_unit" and key[1] == "" and unit is not None
                    and unit["OperatingUnitType"] == backing.operating_unit_type):
                name = next(n for n in state.dimensions if n.casefold() == key[0])
                return self._backed_value(name, unit)
        return None if rec is None else self._view(spec, rec, None)

    def _read(self, req: SimRequest, target: _Target) -> SimResponse:
        spec = target.spec
        select = self._select(req, spec)
        expand = self._expand(req, spec)
        with self.state.lock:
            if target.key is not None:
                rec = self._get_one(spec, self._key_tuple(req, target))
                if rec is None:
                    raise not_found(spec.name)
                body = self._entity_body(spec, rec, select)
                if expand:
                    lines = self.state._journal_lines(journal_key(rec)).values()
                    body[expand] = [self._row(line, None) for line in lines]
                return self._json(200, body)
            rows = self._query(req, spec)
            if target.suffix == "/$count":
                return SimResponse(200, str(len(rows)).encode(), {"Content-Type": "text/plain", **ODATA_HEADERS})
            return self._page(req, spec, rows, select, expand)

    def _select(self, req: SimRequest, spec: EntitySpec) -> list[str] | None:
        text = req.arg("$select")
        if not text:
            return None
        props = [p.strip() for p in text.split(",") if p.strip()]
        for prop in props:
            if prop != "*" and prop not in spec.types:
                raise odata_error(f"The query specified in the URI is not valid. Could not find a property named "
                                  f"'{prop}' on type '{NAMESPACE}.{spec.type_name}'.")
        return None if "*" in props else props

    def _expand(self, req: SimRequest, spec: EntitySpec) -> str | None:
        text = (req.arg("$expand") or "").strip()
        if not text:
            return None
        if spec.name == "LedgerJournalHeaders" and text == "LedgerJournalLine":
            return text
        raise odata_error(f"The query specified in the URI is not valid. $expand={text} is not supported by the "
                          "sandbox (only LedgerJournalHeaders?$expand=LedgerJournalLine).")

    def _query(self, req: SimRequest, spec: EntitySpec) -> list[dict[str, Any]]:
        rows: Iterable[dict[str, Any]] = self._rows(spec)
        if self._company_filtered(req, spec):
            company = collation_key(self.state.default_company)
            rows = (r for r in rows if collation_key(r["dataAreaId"]) == company)
        text = req.arg("$filter")
        if text:
            pred = FilterParser(spec, text).parse()
            rows = (r for r in rows if pred(r))
        result = list(rows)
        order = req.arg("$orderby")
        if order:
            # stable sorts from the last key to the first give a multi-key order
            for prop, descending in reversed(self._orderby(spec, order)):
                result.sort(key=sort_key(prop), reverse=descending)
        return result

    @staticmethod
    def _orderby(spec: EntitySpec, text: str) -> list[tuple[str, bool]]:
        out = []
        for item in text.split(","):
            parts = item.split()
            if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("asc", "desc")):
                raise odata_error(f"The query specified in the URI is not valid. Bad $orderby '{text}'.")
            if parts[0] not in spec.types:
                raise odata_error(f"The query specified in the URI is not valid. Could not find a property named "
                                  f"'{parts[0]}' on type '{NAMESPACE}.{spec.type_name}'.")
            out.append((parts[0], len(parts) == 2 and parts[1] == "desc"))
        return out

    @staticmethod
    def _int_option(req: SimRequest, name: str) -> int | None:
        text = req.arg(name)
        if text is None:
            return None
        if not text.isdigit():
            raise odata_error(f"Invalid value '{text}' for {name} query option found. The {name} query option "
                              "requires a non-negative integer value.")
        return int(text)

    def _page(self, req: SimRequest, spec: EntitySpec, rows: list[dict[str, Any]], select: list[str] | None,
              expand: str | None) -> SimResponse:
        skip = self._int_option(req, "$skip") or 0
        top = self._int_option(req, "$top")
        wanted = len(rows) - skip if top is None else min(top, max(len(rows) - skip, 0))
        size = max(self.page_size, 1)
        page = rows[skip: skip + min(size, max(wanted, 0))]
        context = f"{self.base_url}/data/$metadata#{spec.name}" + (f"({','.join(select)})" if select else "")
        body: dict[str, Any] = {"@odata.context": context}
        if (req.arg("$count") or "").lower() == "true":
            body["@odata.count"] = len(rows)
        values = []
        for rec in page:
            row = self._row(rec, select)
            if expand:
                row[expand] = [self._row(line, None)
                               for line in self.state._journal_lines(journal_key(rec)).values()]
            values.append(row)
        body["value"] = values
        if len(page) < wanted:
            query = {k: v for k, v in req.query.items() if k not in ("$skip", "$top")}
            query["$skip"] = [str(skip + len(page))]
            if top is not None:
                query["$top"] = [str(top - len(page))]
            root = "" if self.relative_next_links else f"{self.base_url}/data/"
            body["@odata.nextLink"] = (f"{root}{spec.name}?"
                                       + urlencode(query, doseq=True, quote_via=quote, safe=_URL_SAFE))
        return self._json(200, body)

    # ---- $batch ----

    def _batch(self, req: SimRequest) -> SimResponse:
        items = parse_multipart(req.body, req.header("content-type") or "")
        count = sum(len(item) if isinstance(item, list) else 1 for item in items)
        if count > self.max_batch_operations:
            raise odata_error(
                "The current batch message contains too many operations. Only batch messages with a maximum "
                f"number of '{self.max_batch_operations}' operations are allowed.")
        # Without Prefer: odata.continue-on-error the batch stops after the first failed request or changeset
        # and answers only up to it, as OData/WebApi src/Microsoft.AspNet.OData/Batch/DefaultODataBatchHandler.cs
        # ExecuteRequestMessagesAsync does ("break" when a response failed and ContinueOnError is false).
        go_on = self.honor_continue_on_error and _continue_on_error(req.header("prefer") or "")
        boundary = f"batchresponse_{uuid.uuid4()}"
        out: list[str] = []
        for item in items:
            out.append(f"--{boundary}\r\n")
            if isinstance(item, list):
                text, ok = self._changeset(req, item)
                out.append(text)
            else:
                response = self._single(req, item)
                ok = response.status < 400
                out.append(render_part(item.content_id, response))
            if not ok and not go_on:
                break
        out.append(f"--{boundary}--\r\n")
        applied = {"Preference-Applied": "odata.continue-on-error"} if go_on else {}
        return SimResponse(200, "".join(out).encode(), {
            "Content-Type": f"multipart/mixed; boundary={boundary}", **ODATA_HEADERS, **applied})

    def _inner_request(self, outer: SimRequest, part: BatchPart, refs: dict[str, str]) -> SimRequest:
        url = part.url
        if url.startswith("$"):
            ref, _, after = url[1:].partition("/")
            if ref not in refs:
                raise odata_error(f"The Content-ID reference '${ref}' does not refer to an earlier operation in the "
                                  "change set.")
            if after:
                raise odata_error("Navigation after a Content-ID reference is not supported by the sandbox.")
            url = refs[ref]
        headers = dict(part.headers)
        headers.setdefault("authorization", outer.headers.get("authorization") or "")
        if url.startswith(self._data_url) and "?" not in url and "%" not in url:
            # The usual inner request ("POST https://host/data/LedgerJournalLines"): nothing to decode.
            path = url[len(self.base_url):]
            return SimRequest(part.method, path, path, {}, headers, part.body)
        split = urlsplit(url)
        path = split.path if split.scheme or url.startswith("/") else "/data/" + split.path
        raw = path + (f"?{split.query}" if split.query else "")
        return SimRequest(part.method, unquote(path), raw, parse_qs(split.query, keep_blank_values=True), headers,
                          part.body)

    def _single(self, outer: SimRequest, part: BatchPart) -> SimResponse:
        try:
            return self._operation(self._inner_request(outer, part, {}), None)
        except ODataError as err:
            return self._error_response(err)

    def _changeset(self, outer: SimRequest, parts: list[BatchPart]) -> tuple[str, bool]:
        """All or nothing: stage every operation, commit only if all succeeded (under one lock).
        Returns the rendered answer and whether the changeset was committed."""
        boundary = f"changesetresponse_{uuid.uuid4()}"
        responses: list[tuple[str | None, SimResponse]] = []
        refs: dict[str, str] = {}
        with self.state.lock:
            txn = Txn(self.state)
            for part in parts:
                try:
                    response = self._operation(self._inner_request(outer, part, refs), txn)
                except ODataError as err:
                    # the whole changeset is rolled back and answered by the one failed operation
                    failed = render_part(part.content_id, self._error_response(err))
                    return (f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n--{boundary}\r\n{failed}"
                            f"--{boundary}--\r\n"), False
                if part.content_id and "OData-EntityId" in response.headers:
                    refs[part.content_id] = response.headers["OData-EntityId"]
                responses.append((part.content_id, response))
            txn.commit()
        body = [f"Content-Type: multipart/mixed; boundary={boundary}\r\n\r\n"]
        for content_id, response in responses:
            body.append(f"--{boundary}\r\n")
            body.append(render_part(content_id, response))
        body.append(f"--{boundary}--\r\n")
        return "".join(body), True

    # ---- service document and $metadata ----

    def _service_document(self) -> SimResponse:
        return self._json(200, {"@odata.context": f"{self.base_url}/data/$metadata", "value": [
            {"name": name, "kind": "EntitySet", "url": name} for name in SPECS]})

    def _metadata(self) -> str:
        lines = ['<?xml version="1.0" encoding="utf-8"?>',
                 '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">',
                 "<edmx:DataServices>",
                 f'<Schema Namespace="{NAMESPACE}" xmlns="http://docs.oasis-open.org/odata/ns/edm">']
        for spec in SPECS.values():
            lines.append(f'<EntityType Name="{spec.type_name}">')
            lines.append("<Key>" + "".join(f'<PropertyRef Name="{k}" />' for k in spec.keys) + "</Key>")
            for prop, code in spec.types.items():
                nullable = "false" if prop in spec.keys or code in ("d", "i", "l", "t", "D") else "true"
                lines.append(f'<Property Name="{prop}" Type="{spec.edm(prop)}" Nullable="{nullable}" />')
            lines.append("</EntityType>")
        for enum, members in ENUMS.items():
            lines.append(f'<EnumType Name="{enum}">')
            lines.extend(f'<Member Name={quoteattr(m)} Value="{i}" />' for i, m in enumerate(members))
            lines.append("</EnumType>")
        lines.append('<EntityContainer Name="Resources">')
        lines.extend(f'<EntitySet Name="{s.name}" EntityType="{NAMESPACE}.{s.type_name}" />' for s in SPECS.values())
        lines.extend(["</EntityContainer>", "</Schema>", "</edmx:DataServices>", "</edmx:Edmx>"])
        return "\n".join(lines)


_URL_SAFE = "$'(),*:=-._~/"


def _continue_on_error(prefer: str) -> bool:
    """Prefer: odata.continue-on-error (OData 4.0) or continue-on-error (4.01), not set to false."""
    for item in prefer.split(","):
        name, _, value = item.strip().partition("=")
        if name.strip().lower() in ("odata.continue-on-error", "continue-on-error"):
            return value.strip().lower() != "false"
    return False


# Text that quote(text, safe=_URL_SAFE) returns unchanged: ASCII letters, digits, "_.-~" and _URL_SAFE.
_URL_SAFE_RE = re.compile(r"[A-Za-z0-9_.~$'(),*:=/-]*")


@functools.lru_cache(maxsize=64)  # the operations of a changeset repeat one Content-Type
def _ieee754(content_type: str) -> bool:
    """IEEE754Compatible=true: Edm.Decimal values may travel as JSON strings."""
    return "ieee754compatible=true" in content_type.lower().replace(" ", "")
