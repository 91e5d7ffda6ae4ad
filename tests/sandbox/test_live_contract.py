"""Contract: the sandbox D365 answers as a live F&O answered, recording by recording.

Each test names the recording it follows, in NangoHQ/integration-templates
``integrations/microsoft-dynamics-365-finance-and-operations-cc/tests/``: the property names of the live
answer, and the formats of its values (dates at ``T12:00:00Z``, an empty date as ``1900-01-01T12:00:00Z``,
lower-case ``dataAreaId``, number-sequence journal batch numbers and vouchers such as ``DAT-000003`` and
``DAT-000001``). The property lists below are what those recordings hold (facts, not code).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from tests.sandbox.test_d365 import Client, decode
from ukg2d365.sandbox import catalog
from ukg2d365.sandbox.d365 import D365Service, D365State
from ukg2d365.sandbox.tokens import TokenRegistry

BASE = "https://127.0.0.1:8445"
NUMBER_SEQUENCE = re.compile(r"^[A-Z0-9]+-\d{6}$")  # "DAT-000029", "DAT-000001"
NOON = re.compile(r"^\d{4}-\d{2}-\d{2}T12:00:00Z$")
ANNOTATIONS = {"@odata.etag", "@odata.context"}

# create-ledger-journal.test.json and list-ledger-journals.test.json
RECORDED_HEADER = {"dataAreaId", "JournalBatchNumber", "AccountingCurrency", "JournalName", "IntegrationKey",
                   "Description", "PostingLayer", "IsPosted", "JournalTotalCredit", "JournalTotalDebit"}
# list-ledger-journal-lines.test.json: the entity's own properties, in the order recorded, up to OffsetText
# (the properties after it, ShiftID .. OrigExchRate, are country-specific extensions the sandbox leaves out)
RECORDED_LINE_CORE = [
    "dataAreaId", "JournalBatchNumber", "LineNumber", "ReverseEntry", "ItemSalesTaxGroup", "CashDiscountDate",
    "Voucher", "Text", "OffsetAccountType", "IsWithholdingCalculationEnabled", "ReverseDate", "TransDate",
    "DefaultDimensionDisplayValue", "PaymentReference", "Document", "CashDiscountAmount", "ExchRate",
    "ChineseVoucherType", "DebitAmount", "SalesTaxCode", "DocumentDate", "OffsetAccountDisplayValue",
    "AccountDisplayValue", "CashDiscount", "OffsetDefaultDimensionDisplayValue", "OffsetFinTagDisplayValue",
    "SalesTaxGroup", "AccountType", "Invoice", "DueDate", "ReportingCurrencyExchRate", "FinTagDisplayValue",
    "PaymentMethod", "PaymentId", "PostingProfile", "ExchRateSecond", "CreditAmount", "OverrideSalesTax",
    "OffsetCompany", "Quantity", "ItemWithholdingTaxGroupCode", "TaxExemptNumber",
    "ReportingCurrencyExchRateSecondary", "CurrencyCode", "Company", "ChineseVoucher", "DiscountPercentage",
    "OffsetText",
]
# list-main-accounts.test.json, less NatureCode_BR (a Brazilian extension)
RECORDED_MAIN_ACCOUNT = {
    "MainAccountId", "Name", "ChartOfAccounts", "MainAccountCategory", "ActiveFrom", "ActiveTo", "MainAccountRecId",
    "SRUCode", "MainAccountType", "ReportingExchangeAdjustmentRateType", "User", "Closing",
    "AccountCategoryDescription", "ForeignCurrencyRevaluation", "InflationAdjustment", "OffsetAccountDisplayValue",
    "ParentMainAccountId", "FinancialReportingCurrencyTranslationType", "DefaultCurrency", "DebitCreditDefault",
    "MandatoryPaymentReference", "Monetary", "BalanceControl", "OpeningAccountId", "ValidatePostingType",
    "RepomoType", "ExchangeAdjustmentRateType", "IsSuspended", "AdjustmentMethod", "PostingType",
    "ChartOfAccountsRecId", "ValidateCurrency", "ReportingAccountType", "FinancialReportingExchangeRateType",
    "DefaultConsolidationAccount", "DoNotAllowManualEntry", "DebitCreditRequirement", "ValidateUser",
}


@pytest.fixture
def state() -> D365State:
    return D365State.seeded()


@pytest.fixture
def client(state: D365State) -> Client:
    tokens = TokenRegistry()
    token, _ = tokens.issue(catalog.CLIENT_ID, BASE)
    return Client(D365Service(state, tokens, BASE), token)


def create_header(client: Client, **body: Any) -> dict[str, Any]:
    response = client.post("/data/LedgerJournalHeaders", {"JournalName": catalog.JOURNAL_NAME, **body})
    assert response.status == 201, response.body
    return dict(decode(response))


def ledger_line(batch: str, account: str, *, debit: str = "0", credit: str = "0", **extra: Any) -> dict[str, Any]:
    return {"dataAreaId": "usmf", "JournalBatchNumber": batch, "TransDate": "2026-06-26T12:00:00Z",
            "AccountType": "Ledger", "AccountDisplayValue": account, "DebitAmount": Decimal(debit),
            "CreditAmount": Decimal(credit), "CurrencyCode": "USD", **extra}


def lines_of(client: Client, batch: str) -> list[dict[str, Any]]:
    # the recorded request: $filter on dataAreaId and JournalBatchNumber, $top=100, cross-company=true
    url = (f"/data/LedgerJournalLines?$filter=dataAreaId eq 'usmf' and JournalBatchNumber eq '{batch}'"
           "&$top=100&cross-company=true")
    response = client.get(url)
    assert response.status == 200, response.body
    return sorted(decode(response)["value"], key=lambda r: r["LineNumber"])


# --------------------------------------------------------------------------------- recordings


def test_header_create_answers_like_create_ledger_journal_recording(client: Client) -> None:
    # the company sent in upper case: D365 answers dataAreaId in lower case, as every recording shows ("dat")
    body = create_header(client, dataAreaId="USMF")
    assert set(body) - ANNOTATIONS == RECORDED_HEADER
    assert body["@odata.context"] == f"{BASE}/data/$metadata#LedgerJournalHeaders/$entity"
    assert body["dataAreaId"] == "usmf"
    assert NUMBER_SEQUENCE.match(body["JournalBatchNumber"]) and body["JournalBatchNumber"].startswith("USMF-")
    # defaulted from the journal name, as "Description": "Expense journal" was; nothing posted, nothing summed
    assert body["Description"] == "General journal"
    assert (body["IsPosted"], body["PostingLayer"], body["AccountingCurrency"]) == ("No", "Current", "")
    assert body["JournalTotalDebit"] == body["JournalTotalCredit"] == 0


def test_header_list_answers_like_list_ledger_journals_recording(client: Client) -> None:
    create_header(client)
    response = client.get("/data/LedgerJournalHeaders?$skip=0&$top=100")  # the recorded request
    page = decode(response)
    assert page["@odata.context"] == f"{BASE}/data/$metadata#LedgerJournalHeaders"
    (row,) = page["value"]
    assert set(row) - ANNOTATIONS == RECORDED_HEADER and row["@odata.etag"].startswith('W/"')


def test_line_answers_like_list_ledger_journal_lines_recording(client: Client) -> None:
    batch = create_header(client)["JournalBatchNumber"]
    # no LineNumber, no Voucher: D365 assigns both
    posted = client.post("/data/LedgerJournalLines", ledger_line(batch, "601500--110--PROD-", debit="50000"))
    assert posted.status == 201, posted.body
    (row,) = lines_of(client, batch)
    props = [p for p in row if p not in ANNOTATIONS]
    assert set(props) <= set(RECORDED_LINE_CORE) and set(RECORDED_LINE_CORE) <= set(props)
    assert row["LineNumber"] == 1
    assert NUMBER_SEQUENCE.match(row["Voucher"]), row["Voucher"]  # "Voucher": "DAT-000001"
    assert row["TransDate"] == "2026-06-26T12:00:00Z" and NOON.match(row["TransDate"])
    for empty_date in ("CashDiscountDate", "ReverseDate", "DocumentDate"):
        assert row[empty_date] == "1900-01-01T12:00:00Z"
    assert (row["ExchRate"], row["ReportingCurrencyExchRate"]) == (100, 0)
    assert (row["dataAreaId"], row["Company"]) == ("usmf", "usmf")
    assert (row["ReverseEntry"], row["OverrideSalesTax"], row["Text"]) == ("No", "No", "")


def test_line_with_an_offset_account_names_the_offset_company_like_the_recording(client: Client) -> None:
    batch = create_header(client)["JournalBatchNumber"]
    body = ledger_line(batch, "601500", debit="50000", OffsetAccountType="Ledger", OffsetAccountDisplayValue="211000")
    assert client.post("/data/LedgerJournalLines", body).status == 201
    (row,) = lines_of(client, batch)
    assert (row["OffsetAccountDisplayValue"], row["OffsetCompany"], row["Company"]) == ("211000", "usmf", "usmf")


def test_main_accounts_answer_like_list_main_accounts_recording(client: Client) -> None:
    rows = decode(client.get("/data/MainAccounts?$top=100"))["value"]
    assert rows
    for row in rows:
        assert set(row) - ANNOTATIONS == RECORDED_MAIN_ACCOUNT
        assert row["ActiveFrom"] == row["ActiveTo"] == "1900-01-01T12:00:00Z"
        assert (row["Closing"], row["RepomoType"], row["FinancialReportingCurrencyTranslationType"]) == (
            "None", "NotApplicable", "WeightedAverage")
        assert row["MainAccountCategory"] == "" and isinstance(row["MainAccountRecId"], int)


def test_company_ids_are_compared_without_case(client: Client) -> None:
    batch = create_header(client, dataAreaId="UsMf")["JournalBatchNumber"]
    assert client.get(f"/data/LedgerJournalHeaders(dataAreaId='USMF',JournalBatchNumber='{batch}')").status == 200
    rows = decode(client.get("/data/LedgerJournalHeaders?$filter=dataAreaId eq 'USMF'"))["value"]
    assert [r["dataAreaId"] for r in rows] == ["usmf"]
    line = ledger_line(batch, "601500", debit="1", dataAreaId="USMF", Company="USMF")
    assert client.post("/data/LedgerJournalLines", line).status == 201


# --------------------------------------------------------------------------------- vouchers


def post_lines(client: Client, batch: str, amounts: list[str], **extra: Any) -> list[str]:
    """Post lines (positive: debit, negative: credit) one by one; the vouchers D365 gave them, in order."""
    for amount in amounts:
        value = Decimal(amount)
        body = ledger_line(batch, "601500" if value > 0 else "211000", debit=str(max(value, Decimal(0))),
                           credit=str(max(-value, Decimal(0))), **extra)
        response = client.post("/data/LedgerJournalLines", body)
        assert response.status == 201, response.body
    return [r["Voucher"] for r in lines_of(client, batch)]


def test_balance_sheet_starts_a_new_voucher_each_time_the_lines_so_far_balance(client: Client) -> None:
    # "In connection of balance": MicrosoftDocs/dynamics-365-unified-operations-public articles/fin-ops-core/
    # fin-ops/data-entities/tips-tricks-import-general-journal-entity.md
    batch = create_header(client)["JournalBatchNumber"]
    vouchers = post_lines(client, batch, ["10", "-4", "-6", "5", "-5", "7", "-7"])
    assert vouchers[0] == vouchers[1] == vouchers[2]
    assert vouchers[3] == vouchers[4] != vouchers[2]
    assert vouchers[5] == vouchers[6] != vouchers[4]
    assert len(set(vouchers)) == 3


def test_balance_sheet_gives_the_line_after_an_offset_account_a_new_voucher(client: Client) -> None:
    batch = create_header(client)["JournalBatchNumber"]
    body = ledger_line(batch, "601500", debit="3", OffsetAccountType="Ledger", OffsetAccountDisplayValue="211000")
    assert client.post("/data/LedgerJournalLines", body).status == 201
    vouchers = post_lines(client, batch, ["8", "-8"])
    assert vouchers[0] != vouchers[1] == vouchers[2]


def test_one_voucher_gives_every_line_of_the_journal_one_voucher(client: Client, state: D365State) -> None:
    state.set_new_voucher("OneVoucher")
    first = create_header(client)["JournalBatchNumber"]
    second = create_header(client)["JournalBatchNumber"]
    one = post_lines(client, first, ["10", "-10", "5", "-5"])
    other = post_lines(client, second, ["1", "-1"])
    assert len(set(one)) == 1 and len(set(other)) == 1 and one[0] != other[0]


def test_manually_needs_the_voucher_from_the_client_and_keeps_it(client: Client, state: D365State) -> None:
    state.set_new_voucher("Manually")
    batch = create_header(client)["JournalBatchNumber"]
    refused = client.post("/data/LedgerJournalLines", ledger_line(batch, "601500", debit="1"))
    assert refused.status == 400 and "Voucher" in decode(refused)["error"]["innererror"]["message"]
    assert post_lines(client, batch, ["2", "-2"], Voucher="PAY-1") == ["PAY-1", "PAY-1"]
    assert state.lines(batch) and len(state.lines(batch)) == 2


def test_journal_name_new_voucher_is_readable_and_unknown_settings_are_refused(client: Client,
                                                                              state: D365State) -> None:
    state.set_new_voucher("OneVoucher")
    row = decode(client.get(f"/data/JournalNames(dataAreaId='usmf',Name='{catalog.JOURNAL_NAME}')"))
    assert (row["NewVoucher"], row["VoucherSeriesCode"]) == ("OneVoucher", "GNJL")
    with pytest.raises(ValueError):
        state.set_new_voucher("EveryLine")


def test_vouchers_of_a_balanced_journal_balance_and_it_posts(client: Client, state: D365State) -> None:
    for setting in ("BalanceSheet", "OneVoucher"):
        state.set_new_voucher(setting)
        batch = create_header(client)["JournalBatchNumber"]
        post_lines(client, batch, ["100.10", "-60", "-40.10", "3", "-3"])
        state.post_journal(batch)  # refuses a voucher that does not balance


# --------------------------------------------------------------------------------- modes


def test_line_numbers_are_assigned_by_d365_and_a_mode_refuses_client_ones(client: Client,
                                                                          state: D365State) -> None:
    batch = create_header(client)["JournalBatchNumber"]
    assert post_lines(client, batch, ["1", "-1"])
    assert [r["LineNumber"] for r in lines_of(client, batch)] == [1, 2]
    state.refuse_client_line_numbers = True
    refused = client.post("/data/LedgerJournalLines", ledger_line(batch, "601500", debit="1", LineNumber=7))
    assert refused.status == 400
    assert "LineNumber" in decode(refused)["error"]["innererror"]["message"]
    assert client.post("/data/LedgerJournalLines", ledger_line(batch, "601500", debit="1")).status == 201
    assert [r["LineNumber"] for r in lines_of(client, batch)] == [1, 2, 3]


def test_relative_next_links_mode_answers_links_relative_to_the_service_root(state: D365State) -> None:
    tokens = TokenRegistry()
    token, _ = tokens.issue(catalog.CLIENT_ID, BASE)
    service = D365Service(state, tokens, BASE, page_size=2)
    client = Client(service, token)
    absolute = decode(client.get("/data/MainAccounts"))["@odata.nextLink"]
    assert absolute.startswith(f"{BASE}/data/MainAccounts?")
    service.relative_next_links = True
    link = decode(client.get("/data/MainAccounts"))["@odata.nextLink"]
    assert link.startswith("MainAccounts?") and "$skip=2" in link
    second = decode(client.get("/data/" + link))
    assert len(second["value"]) == 2
