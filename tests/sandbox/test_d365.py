"""The simulated D365 F&O OData service, driven through D365Service.handle() with no network."""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from ukg2d365.sandbox import catalog
from ukg2d365.sandbox.d365 import D365Service, D365State
from ukg2d365.sandbox.tokens import TokenRegistry
from ukg2d365.sandbox.types import SimRequest, SimResponse, dumps

BASE = "https://127.0.0.1:8445"
TRANS_DATE = "2024-03-15T00:00:00Z"


class Client:
    """Builds SimRequests like the HTTPS server does and decodes JSON answers with Decimal."""

    def __init__(self, service: D365Service, token: str | None) -> None:
        self.service = service
        self.token = token

    def request(self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
                token: str | None = None) -> SimResponse:
        split = urlsplit(url)
        raw = split.path + (f"?{split.query}" if split.query else "")
        hdrs = {k.lower(): v for k, v in (headers or {}).items()}
        bearer = token if token is not None else self.token
        if bearer:
            hdrs["authorization"] = f"Bearer {bearer}"
        if isinstance(body, bytes):
            data = body
        elif body is None:
            data = b""
        else:
            data = dumps(body)
            hdrs.setdefault("content-type", "application/json")
        req = SimRequest(method, unquote(split.path), raw, parse_qs(split.query, keep_blank_values=True), hdrs, data)
        return self.service.handle(req)

    def get(self, url: str, **kw: Any) -> SimResponse:
        return self.request("GET", url, **kw)

    def post(self, url: str, body: Any, **kw: Any) -> SimResponse:
        return self.request("POST", url, body, **kw)


def decode(response: SimResponse) -> Any:
    return json.loads(response.body, parse_float=Decimal)


def inner_message(response: SimResponse) -> str:
    body = decode(response)
    assert set(body) == {"error"}
    assert set(body["error"]["innererror"]) == {"message", "type", "stacktrace"}
    return str(body["error"]["innererror"]["message"])


@pytest.fixture
def tokens() -> TokenRegistry:
    return TokenRegistry()


@pytest.fixture
def state() -> D365State:
    # These tests write short display values ("601500-110-PROD"): a three-segment format keeps them readable.
    # The default formats (with dimensions UKG does not feed) are covered by test_dimension_contract.py.
    state = D365State.seeded()
    state.set_ledger_format(["MainAccount", "CostCenter", "Department"])
    state.set_default_dimension_format(["CostCenter", "Department"])
    return state


@pytest.fixture
def service(state: D365State, tokens: TokenRegistry) -> D365Service:
    return D365Service(state, tokens, BASE)


@pytest.fixture
def client(service: D365Service, tokens: TokenRegistry) -> Client:
    token, _ = tokens.issue(catalog.CLIENT_ID, BASE)
    return Client(service, token)


def new_journal(client: Client, **extra: Any) -> str:
    response = client.post("/data/LedgerJournalHeaders", {"JournalName": catalog.JOURNAL_NAME, **extra})
    assert response.status == 201, response.body
    return str(decode(response)["JournalBatchNumber"])


def line(batch: str, account: str = "601500-110-PROD", debit: str = "0", credit: str = "0", **extra: Any) -> dict:
    return {"dataAreaId": "usmf", "JournalBatchNumber": batch, "TransDate": TRANS_DATE, "CurrencyCode": "USD",
            "AccountType": "Ledger", "AccountDisplayValue": account, "DebitAmount": Decimal(debit),
            "CreditAmount": Decimal(credit), **extra}


# --- $batch helpers: an independent multipart writer/reader so the service's parser is really tested ---


def batch_body(items: list[Any]) -> tuple[bytes, str]:
    """items: a list of changesets (lists of (method, url, body)) or single (method, url, body) tuples."""
    boundary = "batch_4f2b"
    out: list[str] = []
    content_id = 0

    def http_part(method: str, url: str, body: Any) -> str:
        nonlocal content_id
        content_id += 1
        payload = dumps(body).decode() if body is not None else ""
        return ("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
                f"Content-ID: {content_id}\r\n\r\n{method} {url} HTTP/1.1\r\nOData-Version: 4.0\r\n"
                "Content-Type: application/json;odata.metadata=minimal\r\nAccept: application/json\r\n\r\n"
                f"{payload}\r\n")

    for n, item in enumerate(items):
        out.append(f"--{boundary}\r\n")
        if isinstance(item, list):
            cs = f"changeset_{n}"
            out.append(f"Content-Type: multipart/mixed; boundary={cs}\r\n\r\n")
            for op in item:
                out.append(f"--{cs}\r\n" + http_part(*op))
            out.append(f"--{cs}--\r\n")
        else:
            out.append(http_part(*item))
    out.append(f"--{boundary}--\r\n")
    return "".join(out).encode(), f"multipart/mixed; boundary={boundary}"


@dataclass
class Part:
    content_id: str | None
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body, parse_float=Decimal)


def _mime_split(text: str, boundary: str) -> list[str]:
    pieces = text.split(f"--{boundary}")
    assert pieces[-1].startswith("--"), "closing boundary missing"
    return [re.sub(r"^\r\n", "", p) for p in pieces[1:-1]]


def _headers(block: str) -> dict[str, str]:
    return {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in block.split("\r\n") if ln)}


def _http_part(text: str) -> Part:
    mime_head, http = text.split("\r\n\r\n", 1)
    status_and_headers, body = http.split("\r\n\r\n", 1)
    status_line, _, header_block = status_and_headers.partition("\r\n")
    assert status_line.startswith("HTTP/1.1 ")
    mime = _headers(mime_head)
    assert mime["content-type"] == "application/http"
    assert mime["content-transfer-encoding"] == "binary"
    return Part(mime.get("content-id"), int(status_line.split()[1]), _headers(header_block), body.rstrip("\r\n"))


def parse_batch(response: SimResponse) -> list[Part | list[Part]]:
    assert response.status == 200
    boundary = response.headers["Content-Type"].split("boundary=")[1]
    assert boundary.startswith("batchresponse_")
    out: list[Part | list[Part]] = []
    for piece in _mime_split(response.body.decode(), boundary):
        head = piece.split("\r\n\r\n", 1)[0]
        ctype = _headers(head)["content-type"]
        if ctype.startswith("multipart/mixed"):
            inner = ctype.split("boundary=")[1]
            assert inner.startswith("changesetresponse_")
            out.append([_http_part(p) for p in _mime_split(piece.split("\r\n\r\n", 1)[1], inner)])
        else:
            out.append(_http_part(piece))
    return out


def send_batch(client: Client, items: list[Any], prefer: str | None = None) -> SimResponse:
    body, ctype = batch_body(items)
    headers = {"Content-Type": ctype, **({"Prefer": prefer} if prefer else {})}
    return client.post("/data/$batch", body, headers=headers)


# --- authentication ----------------------------------------------------------------------------


def test_request_without_token_gets_401_with_empty_body(client: Client) -> None:
    response = client.get("/data/MainAccounts", token="")
    assert response.status == 401
    assert response.body == b""
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_token_gets_401(client: Client, tokens: TokenRegistry) -> None:
    assert client.get("/data/MainAccounts").status == 200
    tokens.revoke_all()
    response = client.get("/data/MainAccounts")
    assert response.status == 401
    assert response.body == b""


def test_token_for_another_resource_gets_401(client: Client, tokens: TokenRegistry) -> None:
    other, _ = tokens.issue(catalog.CLIENT_ID, "https://someone-else.operations.dynamics.com")
    assert client.get("/data/MainAccounts", token=other).status == 401


def test_unregistered_app_gets_401_even_with_a_valid_token(client: Client, service: D365Service) -> None:
    service.unregistered_app = True
    response = client.get("/data/MainAccounts")
    assert (response.status, response.body) == (401, b"")


# --- routing and reads ---------------------------------------------------------------------------


def test_entity_set_names_are_case_sensitive(client: Client) -> None:
    response = client.get("/data/mainaccounts")
    assert response.status == 404
    assert "No HTTP resource was found" in decode(response)["error"]["message"]


def test_keyed_get_returns_entity_or_404(client: Client) -> None:
    response = client.get("/data/MainAccounts(ChartOfAccounts='Shared',MainAccountId='601500')")
    assert response.status == 200
    body = decode(response)
    assert body["Name"] == "Salaries and wages"
    assert body["MainAccountType"] == "Expense"
    assert body["@odata.context"].endswith("$metadata#MainAccounts/$entity")
    missing = client.get("/data/MainAccounts(ChartOfAccounts='Shared',MainAccountId='999999')")
    assert missing.status == 404
    assert "error" in decode(missing)


def test_keyed_get_needs_every_key_property(client: Client) -> None:
    response = client.get("/data/MainAccounts(MainAccountId='601500')")
    assert response.status == 400
    assert "number of keys" in decode(response)["error"]["message"]


def test_seeded_configuration_entities(client: Client) -> None:
    formats = decode(client.get("/data/DimensionIntegrationFormats?$filter=IsActive eq "
                                "Microsoft.Dynamics.DataEntities.NoYes'Yes'"))["value"]
    by_type = {f["DimensionFormatType"]: f["FinancialDimensionFormat"] for f in formats}
    assert by_type == {"DataEntityLedgerDimensionFormat": "MainAccount-CostCenter-Department",
                       "DataEntityDefaultDimensionFormat": "CostCenter-Department"}
    params = decode(client.get("/data/DimensionParameters"))["value"]
    assert [(p["Key"], p["DimensionSegmentDelimiter"]) for p in params] == [(0, "Hyphen")]
    names = decode(client.get("/data/JournalNames"))["value"]
    assert [(n["dataAreaId"], n["Name"]) for n in names] == [("usmf", "GenJrn")]
    dims = {d["DimensionName"] for d in decode(client.get("/data/DimensionAttributes"))["value"]}
    assert {"CostCenter", "Department"} <= dims


def test_department_values_appear_in_financial_dimension_values(client: Client) -> None:
    response = client.get("/data/FinancialDimensionValues?$filter=FinancialDimension eq 'Department'")
    values = sorted(v["DimensionValue"] for v in decode(response)["value"])
    assert values == sorted(catalog.D365_EXISTING_DEPARTMENTS)
    keyed = client.get("/data/FinancialDimensionValues(FinancialDimension='Department',LegalEntityId='',"
                       "DimensionValue='PROD')")
    assert decode(keyed)["Description"] == "Production"


def test_filter_on_empty_legal_entity_returns_shared_values_only(client: Client) -> None:
    created = client.post("/data/FinancialDimensionValues",
                          {"FinancialDimension": "CostCenter", "LegalEntityId": "usmf", "DimensionValue": "777"})
    assert created.status == 201, created.body
    shared = decode(client.get("/data/FinancialDimensionValues?cross-company=true&$filter="
                               "LegalEntityId eq '' and FinancialDimension eq 'CostCenter'"))["value"]
    assert sorted(v["DimensionValue"] for v in shared) == sorted(catalog.D365_EXISTING_COST_CENTERS)
    both = decode(client.get("/data/FinancialDimensionValues?$filter=(LegalEntityId eq 'usmf' and "
                             "FinancialDimension eq 'CostCenter') or (LegalEntityId eq '' and "
                             "FinancialDimension eq 'CostCenter')"))["value"]
    assert "777" in {v["DimensionValue"] for v in both}
    assert len(both) == len(shared) + 1


def test_filter_with_escaped_quote_and_wildcard(client: Client) -> None:
    for number, last in (("W1", "O'Brien"), ("W2", "Obrien"), ("W3", "Smith")):
        assert client.post("/data/Workers", {"PersonnelNumber": number, "FirstName": "Pat",
                                             "LastName": last}).status == 201
    hits = decode(client.get("/data/Workers?$filter=LastName eq 'O''Brien'"))["value"]
    assert [w["PersonnelNumber"] for w in hits] == ["W1"]
    assert hits[0]["Name"] == "Pat O'Brien"
    hits = decode(client.get("/data/Workers?$filter=LastName eq 'o*'&$orderby=PersonnelNumber desc"))["value"]
    assert [w["PersonnelNumber"] for w in hits] == ["W2", "W1"]
    hits = decode(client.get("/data/Workers?$filter=not (LastName eq '*bri*')"))["value"]
    assert [w["PersonnelNumber"] for w in hits] == ["W3"]


def test_filter_compares_two_properties_nulls_dates_and_enum_members(client: Client) -> None:
    batch = new_journal(client)
    assert client.post("/data/LedgerJournalLines", line(batch, debit="10", Text="paid")).status == 201
    later = line(batch, credit="10", TransDate="2024-03-20T00:00:00Z")
    assert client.post("/data/LedgerJournalLines", later).status == 201

    def numbers(condition: str) -> list[int]:
        url = f"/data/LedgerJournalLines?$filter=JournalBatchNumber eq '{batch}' and {condition}"
        return [row["LineNumber"] for row in decode(client.get(url))["value"]]

    assert numbers("DebitAmount gt CreditAmount") == [1]
    assert numbers("Text eq null") == [2]  # F&O stores no null: an unset string is "", which equals null
    assert numbers("Text ne null") == [1]
    assert numbers("TransDate ge 2024-03-16") == [2]
    assert numbers("TransDate lt 2024-03-16T00:00:00Z") == [1]
    assert numbers("AccountType eq Microsoft.Dynamics.DataEntities.LedgerJournalAcType'Ledger'") == [1, 2]
    assert numbers("AccountType ne 'Ledger'") == []


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("Text eq 5", "Found operand types 'Edm.String' and 'Edm.Decimal' for operator kind 'Equal'"),
        ("TransDate gt 'x'",
         "Found operand types 'Edm.DateTimeOffset' and 'Edm.String' for operator kind 'GreaterThan'"),
        ("AccountType gt 'Ledger'", "Enum properties support only eq and ne"),
        ("AccountType eq Microsoft.Dynamics.DataEntities.NoYes'Yes'",
         "Found operand types 'Microsoft.Dynamics.DataEntities.LedgerJournalAcType' and "
         "'Microsoft.Dynamics.DataEntities.NoYes' for operator kind 'Equal'"),
        ("AccountType ne 1", "Found operand types 'Microsoft.Dynamics.DataEntities.LedgerJournalAcType' and "
                             "'Edm.Decimal' for operator kind 'NotEqual'"),
        ("AccountType eq 'Customer'", "The string 'Customer' is not a valid enumeration type constant"),
    ],
)
def test_filter_refuses_a_literal_of_another_type(client: Client, condition: str, expected: str) -> None:
    response = client.get(f"/data/LedgerJournalLines?$filter={condition}")
    assert response.status == 400
    assert expected in decode(response)["error"]["message"]


def test_filter_on_numbers_and_unknown_property(client: Client) -> None:
    batch = new_journal(client)
    for amount in ("10", "20", "30"):
        assert client.post("/data/LedgerJournalLines", line(batch, debit=amount)).status == 201
    rows = decode(client.get(f"/data/LedgerJournalLines?$filter=JournalBatchNumber eq '{batch}' and "
                             "DebitAmount ge 20 and LineNumber ne 3"))["value"]
    assert [r["LineNumber"] for r in rows] == [2]
    bad = client.get("/data/LedgerJournalLines?$filter=Amount eq 1")
    assert bad.status == 400
    assert "Could not find a property named 'Amount'" in decode(bad)["error"]["message"]
    assert client.get("/data/LedgerJournalLines?$filter=contains(Text,'x')").status == 400
    assert client.get("/data/LedgerJournalLines?$filter=DebitAmount eq 'x'").status == 400


def test_next_link_pages_through_everything(client: Client, service: D365Service) -> None:
    service.page_size = 4
    url: str | None = "/data/MainAccounts?$select=MainAccountId&$filter=MainAccountType eq " \
                      "Microsoft.Dynamics.DataEntities.DimensionLedgerAccountType'Expense' or " \
                      "MainAccountType eq Microsoft.Dynamics.DataEntities.DimensionLedgerAccountType'Liability'"
    seen: list[str] = []
    pages = 0
    while url:
        body = decode(client.get(url))
        pages += 1
        seen.extend(row["MainAccountId"] for row in body["value"])
        assert len(body["value"]) <= 4
        url = body.get("@odata.nextLink")
        if url:
            assert url.startswith(BASE + "/data/MainAccounts?")  # absolute, on the service's own host
            assert "$skip=" in url and "$filter=" in url
    assert pages == 3
    assert seen == [a.d365_account for a in catalog.GL_ACCOUNTS]


def test_top_is_honoured_across_pages(client: Client, service: D365Service) -> None:
    service.page_size = 3
    first = decode(client.get("/data/MainAccounts?$top=5&$count=true"))
    assert len(first["value"]) == 3
    assert first["@odata.count"] == 14
    second = decode(client.get(first["@odata.nextLink"].replace(BASE, "")))
    assert len(second["value"]) == 2
    assert "@odata.nextLink" not in second


def test_cross_company(client: Client, state: D365State) -> None:
    state.add_legal_entity("demf")
    new_journal(client)
    other = new_journal(client, dataAreaId="DEMF")  # dataAreaId is stored lower-case
    assert other.startswith("DEMF-")
    default_only = decode(client.get("/data/LedgerJournalHeaders"))["value"]
    assert {h["dataAreaId"] for h in default_only} == {"usmf"}
    everything = decode(client.get("/data/LedgerJournalHeaders?cross-company=true"))["value"]
    assert {h["dataAreaId"] for h in everything} == {"usmf", "demf"}
    key = f"/data/LedgerJournalHeaders(dataAreaId='demf',JournalBatchNumber='{other}')"
    assert client.get(key).status == 404
    assert client.get(key + "?cross-company=true").status == 200


def test_metadata_is_csdl_listing_entity_sets(client: Client) -> None:
    response = client.get("/data/$metadata")
    assert response.status == 200
    root = ET.fromstring(response.body)
    ns = {"edm": "http://docs.oasis-open.org/odata/ns/edm"}
    sets = {e.get("Name") for e in root.iterfind(".//edm:EntitySet", ns)}
    assert {"LedgerJournalHeaders", "LedgerJournalLines", "GeneralJournalAccountEntries"} <= sets
    line_type = root.find(".//edm:EntityType[@Name='LedgerJournalLine']", ns)
    assert line_type is not None
    keys = [k.get("Name") for k in line_type.iterfind("edm:Key/edm:PropertyRef", ns)]
    assert keys == ["dataAreaId", "JournalBatchNumber", "LineNumber"]


# --- journal headers ---------------------------------------------------------------------------------


def test_header_gets_batch_number_from_number_sequence(client: Client) -> None:
    first = client.post("/data/LedgerJournalHeaders", {"JournalName": "GenJrn"})
    assert first.status == 201
    body = decode(first)
    assert body["JournalBatchNumber"] == "USMF-000001"
    assert body["Description"] == "General journal"  # defaulted from the journal name
    assert (body["IsPosted"], body["PostingLayer"]) == ("No", "Current")
    assert (body["JournalTotalDebit"], body["JournalTotalCredit"]) == (0, 0)
    assert first.headers["Location"] == (
        f"{BASE}/data/LedgerJournalHeaders(dataAreaId='usmf',JournalBatchNumber='USMF-000001')")
    assert first.headers["OData-EntityId"] == first.headers["Location"]
    second = decode(client.post("/data/LedgerJournalHeaders", {"JournalName": "GenJrn", "Description": "run 42"}))
    assert (second["JournalBatchNumber"], second["Description"]) == ("USMF-000002", "run 42")


def test_header_needs_an_existing_journal_name(client: Client) -> None:
    missing = client.post("/data/LedgerJournalHeaders", {"Description": "x"})
    assert missing.status == 400
    assert "must be filled in" in inner_message(missing)
    unknown = client.post("/data/LedgerJournalHeaders", {"JournalName": "Nope"})
    assert unknown.status == 400
    assert "Journal name Nope does not exist" in inner_message(unknown)


def test_duplicate_key_reports_record_already_exists(client: Client) -> None:
    assert client.post("/data/LedgerJournalHeaders", {"JournalName": "GenJrn", "JournalBatchNumber": "X1"}).status \
        == 201
    again = client.post("/data/LedgerJournalHeaders", {"JournalName": "GenJrn", "JournalBatchNumber": "x1"})
    assert again.status == 400
    body = decode(again)
    assert body["error"]["message"] == "An error has occurred."
    assert body["error"]["innererror"]["type"] == \
        "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException"
    assert re.match(r"Write failed for table row of type 'LedgerJournalHeaderEntity'\. Infolog: Info: Cannot "
                    r"create a record in .*The record already exists\.", body["error"]["innererror"]["message"])


def test_header_totals_patch_and_delete_cascade(client: Client, state: D365State) -> None:
    batch = new_journal(client)
    client.post("/data/LedgerJournalLines", line(batch, debit="100.10"))
    client.post("/data/LedgerJournalLines", line(batch, account="211000", credit="100.10"))
    key = f"/data/LedgerJournalHeaders(dataAreaId='usmf',JournalBatchNumber='{batch}')"
    header = decode(client.get(key))
    assert (header["JournalTotalDebit"], header["JournalTotalCredit"]) == (Decimal("100.10"), Decimal("100.10"))
    assert client.request("PATCH", key, {"Description": "payroll BW 2024-03-15"}).status == 204
    assert decode(client.get(key))["Description"] == "payroll BW 2024-03-15"
    assert client.request("DELETE", key).status == 204
    assert client.get(key).status == 404
    assert state.lines(batch) == []
    assert client.request("DELETE", key).status == 404


def test_posted_journal_refuses_changes(client: Client, state: D365State) -> None:
    batch = new_journal(client)
    client.post("/data/LedgerJournalLines", line(batch, debit="5"))
    client.post("/data/LedgerJournalLines", line(batch, account="211000", credit="5"))
    state.post_journal(batch)
    header_key = f"/data/LedgerJournalHeaders(dataAreaId='usmf',JournalBatchNumber='{batch}')"
    line_key = f"/data/LedgerJournalLines(dataAreaId='usmf',JournalBatchNumber='{batch}',LineNumber=1)"
    assert decode(client.get(header_key))["IsPosted"] == "Yes"
    for response in (client.post("/data/LedgerJournalLines", line(batch, debit="1")),
                     client.request("PATCH", line_key, {"Text": "changed"}),
                     client.request("DELETE", line_key),
                     client.request("DELETE", header_key)):
        assert response.status == 400
        assert "posted" in inner_message(response)
    assert len(state.lines(batch)) == 2


# --- journal lines -------------------------------------------------------------------------------


def test_line_numbers_are_assigned_and_must_be_unique(client: Client) -> None:
    batch = new_journal(client)
    first = decode(client.post("/data/LedgerJournalLines", line(batch, debit="1")))
    assert first["LineNumber"] == 1
    assert first["Voucher"]  # defaulted from the journal name's voucher series
    explicit = client.post("/data/LedgerJournalLines", line(batch, debit="1", LineNumber=10))
    assert decode(explicit)["LineNumber"] == 10
    assert explicit.headers["Location"].endswith(f"JournalBatchNumber='{batch}',LineNumber=10)")
    assert decode(client.post("/data/LedgerJournalLines", line(batch, debit="1")))["LineNumber"] == 11
    duplicate = client.post("/data/LedgerJournalLines", line(batch, debit="1", LineNumber=10))
    assert duplicate.status == 400
    assert "The record already exists" in inner_message(duplicate)


def test_line_keeps_decimal_text_and_defaults(client: Client) -> None:
    batch = new_journal(client)
    response = client.post("/data/LedgerJournalLines", line(batch, debit="1234.10", Text="Payroll BW"))
    assert b'"DebitAmount":1234.10' in response.body
    body = decode(response)
    assert body["TransDate"] == "2024-03-15T12:00:00Z"  # date fields come back at noon UTC
    assert (body["CreditAmount"], body["OffsetAccountType"], body["Company"]) == (0, "Ledger", "usmf")
    assert body["Text"] == "Payroll BW"
    assert len(body) > 45  # every property, defaults filled


def test_line_keeps_reverse_entry_reverse_date_and_document_date(client: Client, state: D365State) -> None:
    # ReverseEntry (NoYes), ReverseDate and DocumentDate (Edm.DateTimeOffset) are properties of the entity:
    # ntrtd/d365-agent asset/client/src/LedgerJournalLines.ts (the generated F&O client) and the recorded
    # NangoHQ list-ledger-journal-lines answer; a month-end accrual reverses through them.
    batch = new_journal(client)
    body = decode(client.post("/data/LedgerJournalLines", line(
        batch, debit="5", ReverseEntry="Yes", ReverseDate="2024-04-01T12:00:00Z",
        DocumentDate="2024-03-31T12:00:00Z")))
    assert (body["ReverseEntry"], body["ReverseDate"], body["DocumentDate"]) == \
        ("Yes", "2024-04-01T12:00:00Z", "2024-03-31T12:00:00Z")
    (stored,) = state.lines(batch)
    assert (stored["ReverseEntry"], stored["ReverseDate"][:10]) == ("Yes", "2024-04-01")
    plain = decode(client.post("/data/LedgerJournalLines", line(batch, debit="5")))
    assert (plain["ReverseEntry"], plain["ReverseDate"][:4]) == ("No", "1900")  # unset: No and the empty date


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"AccountDisplayValue": "999999-110-PROD"}, "Main account 999999 does not exist"),
        ({"AccountDisplayValue": "601500-999-PROD"}, "Value '999' does not exist for dimension 'CostCenter'"),
        ({"AccountDisplayValue": "601500-110-QA"}, "Value 'QA' does not exist for dimension 'Department'"),
        ({"DebitAmount": Decimal("5"), "CreditAmount": Decimal("5")}, "not both"),
        ({"DebitAmount": Decimal("0")}, "Enter a debit amount or a credit amount"),
        ({"DebitAmount": Decimal("-5")}, "cannot be negative"),
        ({"JournalBatchNumber": "USMF-999999"}, "USMF-999999 does not exist"),
        ({"TransDate": None}, "TransDate"),
        ({"CurrencyCode": ""}, "Field 'Currency' must be filled in"),
        ({"AccountType": "Customer"}, "not a valid enumeration type constant"),
        ({"AccountDisplayValue": ""}, "Field 'Account' must be filled in"),
        ({"Bogus": "x"}, "The property 'Bogus' does not exist on type"),
        ({"DebitAmount": "5"}, "Cannot convert a primitive value to the expected type 'Edm.Decimal'"),
        ({"TransDate": "2024-03-15"}, "Cannot convert the literal '2024-03-15'"),
        ({"TransDate": 20240315}, "Cannot convert the literal '20240315' to the expected type 'Edm.DateTimeOffset'"),
        ({"CurrencyCode": "XYZ"}, "Currency code XYZ does not exist"),
        ({"Company": "usrt"}, "This entity doesn't support intercompany transactions"),
        ({"OffsetCompany": "USRT", "OffsetAccountDisplayValue": "211000"}, "doesn't support intercompany"),
        ({"AccountType": "Cust"}, "Account '601500-110-PROD' does not exist for account type Cust"),
        ({"OffsetAccountType": "Vend", "OffsetAccountDisplayValue": "V-100"},
         "Account 'V-100' does not exist for account type Vend"),
        ({"DefaultDimensionDisplayValue": "999-PROD"}, "Value '999' does not exist for dimension 'CostCenter'"),
        ({"DebitAmount": None}, "A null value was found for the property named 'DebitAmount', which has the "
                                "expected type 'Edm.Decimal[Nullable=False]'"),
        ({"DebitAmount": True}, "Cannot convert a primitive value to the expected type 'Edm.Decimal'"),
        ({"Text": 5}, "Cannot convert a primitive value to the expected type 'Edm.String'"),
        ({"ReverseEntry": True}, "expected type 'Microsoft.Dynamics.DataEntities.NoYes'"),
        ({"ReverseEntry": "Microsoft.Dynamics.DataEntities.NoYes'Maybe'"},
         "The string 'Microsoft.Dynamics.DataEntities.NoYes'Maybe'' is not a valid enumeration type constant"),
        ({"LedgerJournalHeader": {"JournalName": "GenJrn"}},
         "Deep insert through the navigation property 'LedgerJournalHeader' is not supported"),
    ],
)
def test_line_validation_failures(client: Client, state: D365State, overrides: dict, expected: str) -> None:
    batch = new_journal(client)
    body = line(batch, debit="5")
    body.update(overrides)
    if body["TransDate"] is None:
        del body["TransDate"]  # omitted: F&O's date is then empty
        expected = "Field 'Date' must be filled in"
    response = client.post("/data/LedgerJournalLines", body)
    assert response.status == 400, response.body
    assert expected in inner_message(response)
    assert state.lines(batch) == []


def test_line_body_is_read_as_the_odata_reader_reads_it(client: Client, state: D365State) -> None:
    """Nulls become the empty value, a qualified enum member its bare name, an integer a decimal; annotations
    are dropped; a default dimension is validated and stored without the segments past the format."""
    batch = new_journal(client)
    body = line(batch, Text=None, ReverseEntry=None, DefaultDimensionDisplayValue="110-PROD-XYZ",
                OffsetAccountType="Microsoft.Dynamics.DataEntities.LedgerJournalAcType'Ledger'")
    body["DebitAmount"] = 5
    body["@odata.type"] = "#Microsoft.Dynamics.DataEntities.LedgerJournalLine"
    body["LedgerJournalHeader@odata.bind"] = f"LedgerJournalHeaders(dataAreaId='usmf',JournalBatchNumber='{batch}')"
    response = client.post("/data/LedgerJournalLines", body)
    assert response.status == 201, response.body
    [stored] = state.lines(batch)
    assert (stored["Text"], stored["ReverseEntry"], stored["OffsetAccountType"]) == ("", "No", "Ledger")
    assert type(stored["DebitAmount"]) is Decimal and stored["DebitAmount"] == 5
    assert stored["DefaultDimensionDisplayValue"] == "110-PROD"
    assert not [name for name in stored if "@" in name]


def test_ieee754_compatible_body_may_send_a_decimal_as_a_string(client: Client, state: D365State) -> None:
    batch = new_journal(client)
    ieee754 = {"Content-Type": "application/json;IEEE754Compatible=true"}
    response = client.post("/data/LedgerJournalLines", {**line(batch), "DebitAmount": "12.50"}, headers=ieee754)
    assert response.status == 201, response.body
    assert [ln["DebitAmount"] for ln in state.lines(batch)] == [Decimal("12.50")]
    for text in ("NaN", "12,50"):
        bad = client.post("/data/LedgerJournalLines", {**line(batch), "DebitAmount": text}, headers=ieee754)
        assert bad.status == 400
        assert "Cannot convert a primitive value to the expected type 'Edm.Decimal'" in inner_message(bad)
    plain = client.post("/data/LedgerJournalLines", {**line(batch), "DebitAmount": "12.50"})
    assert "Cannot convert a primitive value to the expected type 'Edm.Decimal'" in inner_message(plain)
    assert len(state.lines(batch)) == 1


def test_int32_property_takes_a_json_integer_only(client: Client) -> None:
    created = client.post("/data/JournalNames", {"Name": "PAYJRN", "Description": "Payroll", "PostingLineLimit": 500})
    assert created.status == 201, created.body
    assert decode(created)["PostingLineLimit"] == 500
    for value in ("500", True, Decimal("1.5")):
        bad = client.post("/data/JournalNames", {"Name": "PAYJRN2", "PostingLineLimit": value})
        assert bad.status == 400
        assert "Cannot convert a primitive value to the expected type 'Edm.Int32'" in inner_message(bad)


def test_suspended_main_account_and_removed_main_account(client: Client, state: D365State) -> None:
    batch = new_journal(client)
    key = "/data/MainAccounts(ChartOfAccounts='Shared',MainAccountId='601510')"
    assert client.request("PATCH", key, {"IsSuspended": "Yes"}).status == 204
    response = client.post("/data/LedgerJournalLines", line(batch, account="601510-110-PROD", debit="1"))
    assert "suspended" in inner_message(response)
    state.remove_main_account("602100")
    response = client.post("/data/LedgerJournalLines", line(batch, account="602100-110-PROD", debit="1"))
    assert "Main account 602100 does not exist" in inner_message(response)


def test_extra_segments_are_dropped_and_missing_ones_blank(client: Client) -> None:
    batch = new_journal(client)
    extra = client.post("/data/LedgerJournalLines", line(batch, account="601500-110-PROD-XYZ", debit="1"))
    assert extra.status == 201
    assert decode(extra)["AccountDisplayValue"] == "601500-110-PROD"
    assert client.post("/data/LedgerJournalLines", line(batch, account="211000", credit="1")).status == 201
    assert client.post("/data/LedgerJournalLines", line(batch, account="211000--", credit="1")).status == 201
    assert client.post("/data/LedgerJournalLines", line(batch, account="601500--PROD", debit="1")).status == 201


def test_format_change_is_detected_by_the_split(client: Client, state: D365State) -> None:
    batch = new_journal(client)
    state.set_ledger_format(["MainAccount", "Department", "CostCenter"])
    formats = decode(client.get("/data/DimensionIntegrationFormats?$filter=DimensionFormatType eq "
                                "Microsoft.Dynamics.DataEntities.DimensionHierarchyType"
                                "'DataEntityLedgerDimensionFormat' and IsActive eq 'Yes'"))["value"]
    assert [f["FinancialDimensionFormat"] for f in formats] == ["MainAccount-Department-CostCenter"]
    old_order = client.post("/data/LedgerJournalLines", line(batch, account="601500-110-PROD", debit="1"))
    assert old_order.status == 400
    assert "Value '110' does not exist for dimension 'Department'" in inner_message(old_order)
    assert client.post("/data/LedgerJournalLines", line(batch, account="601500-PROD-110", debit="1")).status == 201


def test_delimiter_change_is_detected_by_the_split(client: Client, state: D365State) -> None:
    batch = new_journal(client)
    state.set_delimiter("Period")
    assert decode(client.get("/data/DimensionParameters(Key=0)"))["DimensionSegmentDelimiter"] == "Period"
    fmt = decode(client.get("/data/DimensionIntegrationFormats?$filter=IsActive eq 'Yes'"))["value"]
    assert "MainAccount.CostCenter.Department" in {f["FinancialDimensionFormat"] for f in fmt}
    hyphen = client.post("/data/LedgerJournalLines", line(batch, account="601500-110-PROD", debit="1"))
    assert "Main account 601500-110-PROD does not exist" in inner_message(hyphen)
    assert client.post("/data/LedgerJournalLines", line(batch, account="601500.110.PROD", debit="1")).status == 201


def test_no_active_ledger_format_fails_every_ledger_line(client: Client, state: D365State) -> None:
    batch = new_journal(client)
    state.set_ledger_format(None)
    response = client.post("/data/LedgerJournalLines", line(batch, debit="1"))
    assert "No active ledger dimension format" in inner_message(response)
    active = decode(client.get("/data/DimensionIntegrationFormats?$filter=IsActive eq 'Yes'"))["value"]
    assert [f["DimensionFormatType"] for f in active] == ["DataEntityDefaultDimensionFormat"]


# --- dimension values and operating units ----------------------------------------------------------


def test_custom_dimension_value_can_be_created_and_used(client: Client) -> None:
    created = client.post("/data/FinancialDimensionValues",
                          {"FinancialDimension": "CostCenter", "DimensionValue": "130", "Description": "Overhead"})
    assert created.status == 201
    assert decode(created)["LegalEntityId"] == ""  # shared
    assert created.headers["Location"].endswith(
        "FinancialDimensionValues(FinancialDimension='CostCenter',LegalEntityId='',DimensionValue='130')")
    batch = new_journal(client)
    assert client.post("/data/LedgerJournalLines", line(batch, account="601500-130-PROD", debit="1")).status == 201
    again = client.post("/data/FinancialDimensionValues", {"FinancialDimension": "CostCenter", "DimensionValue": "130"})
    assert "The record already exists" in inner_message(again)


def test_backed_dimension_values_must_be_created_as_operating_units(client: Client) -> None:
    refused = client.post("/data/FinancialDimensionValues", {"FinancialDimension": "Department",
                                                             "DimensionValue": "QA"})
    assert refused.status == 400
    assert "not a custom list" in inner_message(refused)
    unit = client.post("/data/OperatingUnits", {"OperatingUnitNumber": "QA", "Name": "Quality assurance",
                                                "OperatingUnitType": "OMDepartment"})
    assert unit.status == 201
    batch = new_journal(client)
    assert client.post("/data/LedgerJournalLines", line(batch, account="601500-110-QA", debit="1")).status == 201
    cost_center_unit = client.post("/data/OperatingUnits", {"OperatingUnitNumber": "LOG", "Name": "Logistics",
                                                            "OperatingUnitType": "OMCostCenter"})
    assert cost_center_unit.status == 201
    wrong_type = client.post("/data/LedgerJournalLines", line(batch, account="601500-110-LOG", debit="1"))
    assert "Value 'LOG' does not exist for dimension 'Department'" in inner_message(wrong_type)


# --- read-only entity and posting ----------------------------------------------------------------------


def test_general_journal_account_entries_are_read_only(client: Client, state: D365State) -> None:
    response = client.post("/data/GeneralJournalAccountEntries", {"Voucher": "V1"})
    assert response.status == 405
    assert "read-only" in decode(response)["error"]["message"]
    batch = new_journal(client)
    client.post("/data/LedgerJournalLines", line(batch, debit="42.50", Voucher="V1"))
    client.post("/data/LedgerJournalLines", line(batch, account="211000", credit="42.50", Voucher="V1"))
    state.post_journal(batch)
    entries = decode(client.get("/data/GeneralJournalAccountEntries?$filter=Voucher eq 'V1'"))["value"]
    assert sorted(e["AccountingCurrencyAmount"] for e in entries) == [Decimal("-42.50"), Decimal("42.50")]
    key = entries[0]["GeneralJournalAccountEntryRecId"]
    assert client.request("PATCH", f"/data/GeneralJournalAccountEntries({key})", {"Text": "x"}).status == 405
    assert client.request("DELETE", f"/data/GeneralJournalAccountEntries({key})").status == 405


def test_post_journal_refuses_an_unbalanced_voucher(client: Client, state: D365State) -> None:
    batch = new_journal(client)
    client.post("/data/LedgerJournalLines", line(batch, debit="10", Voucher="V9"))
    with pytest.raises(ValueError, match="do not balance"):
        state.post_journal(batch)


# --- $batch ----------------------------------------------------------------------------------------


def test_changeset_with_one_bad_line_writes_nothing(client: Client, state: D365State) -> None:
    batch = new_journal(client)
    url = f"{BASE}/data/LedgerJournalLines"
    changeset = [("POST", url, line(batch, debit="10")),
                 ("POST", url, line(batch, account="999999-110-PROD", debit="5")),
                 ("POST", url, line(batch, account="211000", credit="15"))]
    response = send_batch(client, [changeset])
    parts = parse_batch(response)
    assert len(parts) == 1 and isinstance(parts[0], list)
    (failed,) = parts[0]  # the rolled-back changeset answers with the failed operation only
    assert failed.status == 400
    assert failed.content_id == "2"
    assert "Main account 999999 does not exist" in failed.json()["error"]["innererror"]["message"]
    assert state.lines(batch) == []
    # the line numbers staged by the rolled-back changeset are free again
    assert decode(client.post("/data/LedgerJournalLines", line(batch, debit="1")))["LineNumber"] == 1


def test_batch_of_three_changesets_writes_every_line(client: Client, state: D365State) -> None:
    batch = new_journal(client)
    changesets = []
    for n in range(3):
        changesets.append([
            ("POST", "LedgerJournalLines", line(batch, debit="100.25", Voucher=f"V{n}")),
            ("POST", "/data/LedgerJournalLines", line(batch, account="211000", credit="60.00", Voucher=f"V{n}")),
            ("POST", f"{BASE}/data/LedgerJournalLines", line(batch, account="211100", credit="40.25",
                                                             Voucher=f"V{n}")),
        ])
    parts = parse_batch(send_batch(client, changesets))
    assert [len(p) for p in parts if isinstance(p, list)] == [3, 3, 3]
    statuses = [op.status for cs in parts if isinstance(cs, list) for op in cs]
    assert statuses == [201] * 9
    ids = [op.content_id for cs in parts if isinstance(cs, list) for op in cs]
    assert ids == [str(i) for i in range(1, 10)]
    first = parts[0][0]  # type: ignore[index]
    assert first.headers["location"].startswith(f"{BASE}/data/LedgerJournalLines(")
    assert first.json()["DebitAmount"] == Decimal("100.25")
    lines = state.lines(batch)
    assert [ln["LineNumber"] for ln in lines] == list(range(1, 10))
    header = decode(client.get(f"/data/LedgerJournalHeaders(dataAreaId='usmf',JournalBatchNumber='{batch}')"))
    assert header["JournalTotalDebit"] == header["JournalTotalCredit"] == Decimal("300.75")
    state.post_journal(batch)


def test_only_the_failing_changeset_is_rolled_back(client: Client, state: D365State) -> None:
    batch = new_journal(client)
    good = [("POST", "LedgerJournalLines", line(batch, debit="1"))]
    bad = [("POST", "LedgerJournalLines", line(batch, debit="1", CreditAmount=Decimal("1")))]
    response = send_batch(client, [good, bad, good], prefer="odata.continue-on-error")
    assert response.headers["Preference-Applied"] == "odata.continue-on-error"
    parts = parse_batch(response)
    assert [[p.status for p in cs] for cs in parts if isinstance(cs, list)] == [[201], [400], [201]]
    assert len(state.lines(batch)) == 2


@pytest.mark.parametrize("prefer", [None, "return=minimal", "odata.continue-on-error=false"])
def test_without_continue_on_error_the_batch_stops_after_the_first_failed_changeset(
        client: Client, state: D365State, prefer: str | None) -> None:
    # OData/WebApi src/Microsoft.AspNet.OData/Batch/DefaultODataBatchHandler.cs, ExecuteRequestMessagesAsync:
    # the loop breaks at the first unsuccessful response unless ContinueOnError is set
    batch = new_journal(client)
    good = [("POST", "LedgerJournalLines", line(batch, debit="1"))]
    bad = [("POST", "LedgerJournalLines", line(batch, debit="1", CreditAmount=Decimal("1")))]
    response = send_batch(client, [good, bad, good, good], prefer=prefer)
    assert "Preference-Applied" not in response.headers
    parts = parse_batch(response)
    assert [[p.status for p in cs] for cs in parts if isinstance(cs, list)] == [[201], [400]]
    assert len(state.lines(batch)) == 1  # the changesets after the failed one were not processed


def test_a_failed_single_request_also_stops_the_batch_without_continue_on_error(client: Client) -> None:
    parts = parse_batch(send_batch(client, [("GET", "Nope", None), ("GET", "JournalNames", None)]))
    assert [p.status for p in parts] == [404]  # type: ignore[union-attr]
    both = parse_batch(send_batch(client, [("GET", "Nope", None), ("GET", "JournalNames", None)],
                                  prefer="continue-on-error"))  # the OData 4.01 spelling
    assert [p.status for p in both] == [404, 200]  # type: ignore[union-attr]


def test_header_and_lines_in_one_changeset(client: Client, state: D365State) -> None:
    ops = [("POST", "LedgerJournalHeaders", {"JournalName": "GenJrn", "JournalBatchNumber": "PAY-1"}),
           ("POST", "LedgerJournalLines", line("PAY-1", debit="3")),
           ("PATCH", "$1", {"Description": "patched through a Content-ID reference"})]
    parts = parse_batch(send_batch(client, [ops]))
    assert [p.status for p in parts[0]] == [201, 201, 204]  # type: ignore[union-attr]
    (journal,) = state.journals()
    assert journal["Description"] == "patched through a Content-ID reference"
    assert len(journal["lines"]) == 1


def test_get_outside_changesets_in_a_batch(client: Client) -> None:
    parts = parse_batch(send_batch(client, [("GET", "MainAccounts?$top=2&$select=MainAccountId", None),
                                            ("GET", "Nope", None)]))
    assert isinstance(parts[0], Part) and isinstance(parts[1], Part)
    assert parts[0].status == 200
    assert len(parts[0].json()["value"]) == 2
    assert parts[1].status == 404


def test_batch_over_5000_operations_is_refused(client: Client, state: D365State) -> None:
    batch = new_journal(client)
    ops = [("POST", "LedgerJournalLines", line(batch, debit="1"))] * 5001
    response = send_batch(client, [ops[:2500], ops[2500:]])
    assert response.status == 400
    assert "5000" in decode(response)["error"]["message"]
    assert state.lines(batch) == []


def test_batch_needs_a_multipart_body(client: Client) -> None:
    response = client.post("/data/$batch", b"{}", headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert "error" in decode(response)


def test_a_5000_line_changeset_is_fast(client: Client, state: D365State) -> None:
    """Validation per line is O(1): a full-size changeset must not take long even with many lines stored."""
    batch = new_journal(client)
    accounts = [f"{a.d365_account}-110-PROD" if a.carries_org_levels else a.d365_account for a in catalog.GL_ACCOUNTS]
    ops = [("POST", "LedgerJournalLines", line(batch, account=accounts[i % 12], debit="1.01"))
           for i in range(5000)]
    for _ in range(2):
        body, ctype = batch_body([ops])
        started = time.perf_counter()
        response = client.post("/data/$batch", body, headers={"Content-Type": ctype})
        elapsed = time.perf_counter() - started
        assert [p.status for p in parse_batch(response)[0]][-1] == 201  # type: ignore[union-attr]
        assert elapsed < 10, f"5,000-line changeset took {elapsed:.1f}s"
    assert len(state.lines(batch)) == 10000


# --- employees -------------------------------------------------------------------------------------


def test_employee_hire_dimensions_and_termination(client: Client) -> None:
    hire = client.post("/data/EmployeesV2", {
        "PersonnelNumber": "000123", "EmploymentLegalEntityId": "usmf", "EmploymentId": "E1",
        "FirstName": "Ana", "LastName": "Diaz", "DimensionDisplayValue": "110-PROD",
        "EmploymentStartDate": "2023-01-09T00:00:00Z"})
    assert hire.status == 201, hire.body
    assert decode(hire)["Name"] == "Ana Diaz"
    worker = decode(client.get("/data/Workers('000123')"))
    assert worker["WorkerStatus"] == "Employed"
    emp_key = "/data/EmploymentsV2(PersonnelNumber='000123',LegalEntityId='usmf',EmploymentId='E1')"
    assert decode(client.get(emp_key))["DimensionDisplayValue"] == "110-PROD"
    bad = client.request("PATCH", emp_key, {"DimensionDisplayValue": "999-PROD"})
    assert "Value '999' does not exist for dimension 'CostCenter'" in inner_message(bad)
    assert client.request("PATCH", emp_key, {"DimensionDisplayValue": "120-FIN",
                                             "EmploymentEndDate": "2024-02-29T23:59:59Z"}).status == 204
    employee = decode(client.get("/data/EmployeesV2(PersonnelNumber='000123',EmploymentLegalEntityId='usmf',"
                                 "EmploymentId='E1')"))
    assert (employee["DimensionDisplayValue"], employee["EmploymentEndDate"]) == ("120-FIN", "2024-02-29T23:59:59Z")
    assert decode(client.get("/data/Workers('000123')"))["WorkerStatus"] == "Terminated"
    duplicate = client.post("/data/EmployeesV2", {"PersonnelNumber": "000123", "EmploymentId": "E1"})
    assert "The record already exists" in inner_message(duplicate)


# --- bookkeeping -------------------------------------------------------------------------------------


def test_request_count_per_entity_set(client: Client, state: D365State) -> None:
    client.get("/data/MainAccounts")
    client.get("/data/MainAccounts")
    batch = new_journal(client)
    send_batch(client, [[("POST", "LedgerJournalLines", line(batch, debit="1"))] * 3])
    assert state.request_count["MainAccounts"] == 2
    assert state.request_count["LedgerJournalHeaders"] == 1
    assert state.request_count["$batch"] == 1
    assert state.request_count["LedgerJournalLines"] == 3


def test_write_error_status_is_configurable(client: Client, service: D365Service) -> None:
    service.write_error_status = 500  # some F&O versions answer AxODataWriteException with 500
    response = client.post("/data/LedgerJournalHeaders", {"JournalName": "Nope"})
    assert response.status == 500
    assert "Journal name Nope does not exist" in inner_message(response)


def test_a_server_that_does_not_honour_continue_on_error_stops_anyway(client: Client, service: D365Service,
                                                                     state: D365State) -> None:
    # WebApi reads the preference only where its configuration enables it (DefaultODataBatchHandler.cs,
    # HasEnabledContinueOnErrorHeader); such a server stops at the first failure whatever the client prefers
    service.honor_continue_on_error = False
    batch = new_journal(client)
    good = [("POST", "LedgerJournalLines", line(batch, debit="1"))]
    bad = [("POST", "LedgerJournalLines", line(batch, debit="1", CreditAmount=Decimal("1")))]
    response = send_batch(client, [good, bad, good], prefer="odata.continue-on-error")
    assert "Preference-Applied" not in response.headers
    assert [[p.status for p in cs] for cs in parse_batch(response) if isinstance(cs, list)] == [[201], [400]]
    assert len(state.lines(batch)) == 1
