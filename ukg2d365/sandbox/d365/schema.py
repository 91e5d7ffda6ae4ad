"""Entity sets of the simulated F&O: their properties and EDM types, enums, keys and type defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

NAMESPACE = "Microsoft.Dynamics.DataEntities"
AX_WRITE_EXCEPTION = "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException"
ODATA_EXCEPTION = "Microsoft.OData.ODataException"
PATH_EXCEPTION = "Microsoft.OData.UriParser.ODataUnrecognizedPathException"
MAX_BATCH_OPERATIONS = 5000
DEFAULT_PAGE_SIZE = 10000
EMPTY_DATE = "1900-01-01T00:00:00Z"  # how F&O renders an empty utcdatetime
# An empty date-only field is answered at noon like any other date: "CashDiscountDate": "1900-01-01T12:00:00Z" in
# NangoHQ/integration-templates integrations/microsoft-dynamics-365-finance-and-operations-cc/tests/
# list-ledger-journal-lines.test.json.
EMPTY_DAY = "1900-01-01T12:00:00Z"
EMPTY_DATES = frozenset({EMPTY_DATE, EMPTY_DAY})
NEVER = "2154-12-31T23:59:59Z"  # DateTimeUtil::maxValue(): an employment with no end
JSON_CONTENT_TYPE = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"
ODATA_HEADERS = {"OData-Version": "4.0"}

DELIMITERS: dict[str, str] = {
    "Hyphen": "-",
    "Period": ".",
    "Underscore": "_",
    "Bar": "|",
    "Tilde": "~",
    "DoubleHyphen": "--",
    "DoublePeriod": "..",
    "DoubleUnderscore": "__",
    "DoubleBar": "||",
    "DoubleTilde": "~~",
}

# Enum members. The first member is the default an unset property gets. Members of enums the
# reference lists are exact; the others (never written by the tool) are a plausible minimum.
ENUMS: dict[str, tuple[str, ...]] = {
    "NoYes": ("No", "Yes"),
    "LedgerJournalAcType": (
        "Ledger", "Cust", "Vend", "Project", "FixedAssets", "Bank", "FixedAssets_RU", "Employee_RU",
        "RDeferrals", "RCash",
    ),
    "CurrentOperationsTax": (
        "Current", "Operations", "Tax", "WarehouseCur_RU", "CustomLayer1", "CustomLayer2", "CustomLayer3",
        "CustomLayer4", "CustomLayer5", "CustomLayer6", "CustomLayer7", "None",
    ),
    "DimensionLedgerAccountType": (
        "Blank", "ProfitAndLoss", "Revenue", "Expense", "BalanceSheet", "Asset", "Liability", "Equity",
        "Total", "Reporting", "Common_CN",
    ),
    "OmOperatingUnitType": (
        "None", "OMDepartment", "OMCostCenter", "OMValueStream", "OMBusinessUnit", "OMAnyOU", "OMBranch",
        "OMRentalLocation", "OMRegion", "OMBranchFM", "OMRentalLocationFM", "OMRegionFM", "RetailChannel",
    ),
    "HcmWorkerStatus": ("Pending", "Employed", "Terminated"),
    "HcmEmploymentType": ("Employee", "Contractor"),
    "HcmWorkerRelationType": ("Employee", "Contractor", "Both"),
    "DimensionSegmentDelimiter": tuple(DELIMITERS),
    "DimensionHierarchyType": (
        "AccountStructure", "DataEntityDefaultDimensionFormat", "DataEntityLedgerDimensionFormat",
        "DataEntityBudgetDimensionFormat", "DataEntityBudgetPlanningDimensionFormat",
    ),
    "DebCredProposal": ("None", "Debit", "Credit"),
    "FieldControl": ("Optional", "Mandatory", "List", "Table"),
    # the first members of these three are the values NangoHQ/integration-templates
    # integrations/microsoft-dynamics-365-finance-and-operations-cc/tests/list-main-accounts.test.json records
    "RepomoTypeMx": ("NotApplicable", "Monetary", "NonMonetary"),
    "DimensionLedgerAccountReportingType": ("None", "Debit", "Credit"),
    "LedgerClosing": ("None", "Closing"),
    "FinancialReportingTranslationType": ("WeightedAverage", "Current", "Historical"),
    "LedgerPostingType": ("None", "LedgerJournal", "Payroll", "Bank", "Tax", "CustBalance"),
    "AdjustmentMethodMx": ("None", "Inflation", "Repomo"),
    "HcmUnitOfNotice": ("Days", "Weeks", "Months", "Years"),
    "HcmPersonMaritalStatus": ("None", "Single", "Married", "Divorced", "Widowed", "Cohabiting"),
    "LedgerJournalType": ("Daily", "Payment", "Payroll", "Allocation", "Approval", "Periodic"),
    "NewVoucher": ("BalanceSheet", "Manually", "OneVoucher"),
    "DetailSummary": ("Detail", "Summary"),
    "LedgerTransType": ("None", "GeneralJournal", "Payroll", "Bank"),
    # A few members of F&O's Timezone enum, spelled as in ntrtd/d365-agent asset/client/src/Timezone.ts.
    "Timezone": (
        "GMT_COORDINATEDUNIVERSALTIME", "GMTMINUS0500EASTERNTIME", "GMTMINUS0600CENTRALTIME",
        "GMTMINUS0700MOUNTAINTIME", "GMTMINUS0800PACIFICTIME", "GMT_DUBLIN_EDINBURGH_LISBON_LONDON",
        "GMTPLUS0100_AMSTERDAM_BERLIN_BERN_ROME", "GMTPLUS0900OSAKA_SAPPORO_TOKYO",
    ),
}

# Compact property type codes: s String, d Decimal, i Int32, l Int64, t DateTimeOffset,
# D a date-only field exposed as DateTimeOffset (F&O answers these as YYYY-MM-DDT12:00:00Z),
# e:Enum an enum of the Microsoft.Dynamics.DataEntities namespace.
_EDM = {"s": "Edm.String", "d": "Edm.Decimal", "i": "Edm.Int32", "l": "Edm.Int64", "t": "Edm.DateTimeOffset",
        "D": "Edm.DateTimeOffset"}


def _props(text: str) -> dict[str, str]:
    """'Name type; Name2 type' -> ordered {name: type code}."""
    out: dict[str, str] = {}
    for item in text.split(";"):
        item = item.strip()
        if item:
            name, code = item.split()
            out[name] = code
    return out


@dataclass(frozen=True)
class EntitySpec:
    name: str  # entity set, e.g. LedgerJournalLines
    type_name: str  # entity type, e.g. LedgerJournalLine
    aot: str  # AOT entity name used in Infolog messages
    table: str  # "label (table)" used in "Cannot create a record in ..." messages
    keys: tuple[str, ...]
    types: dict[str, str]
    company: bool = False  # has dataAreaId: company-specific, filtered without cross-company=true
    writable: bool = True
    navigation: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)

    def default_record(self) -> dict[str, Any]:
        # Every default is immutable (str, Decimal, int), so one template per entity can be copied.
        template = _DEFAULT_TEMPLATES.get(id(self))
        if template is None:
            template = {name: type_default(code) for name, code in self.types.items()}
            template.update(self.defaults)
            _DEFAULT_TEMPLATES[id(self)] = template
        return dict(template)

    def edm(self, prop: str) -> str:
        code = self.types[prop]
        return f"{NAMESPACE}.{code[2:]}" if code.startswith("e:") else _EDM[code]


_DEFAULT_TEMPLATES: dict[int, dict[str, Any]] = {}


def type_default(code: str) -> Any:
    if code == "s":
        return ""  # X++ strings are never null: F&O answers "" for an unset string
    if code == "d":
        return Decimal("0")
    if code in ("i", "l"):
        return 0
    if code == "t":
        return EMPTY_DATE
    if code == "D":
        return EMPTY_DAY
    return ENUMS[code[2:]][0]


_LINE_TYPES = _props("""
dataAreaId s; JournalBatchNumber s; LineNumber d; ReverseEntry e:NoYes; ItemSalesTaxGroup s;
CashDiscountDate D; Voucher s; Text s; OffsetAccountType e:LedgerJournalAcType;
IsWithholdingCalculationEnabled e:NoYes; ReverseDate D; TransDate D; DefaultDimensionDisplayValue s;
PaymentReference s; Document s; CashDiscountAmount d; ExchRate d; ChineseVoucherType s; DebitAmount d;
SalesTaxCode s; DocumentDate D; OffsetAccountDisplayValue s; AccountDisplayValue s; CashDiscount s;
OffsetDefaultDimensionDisplayValue s; OffsetFinTagDisplayValue s; SalesTaxGroup s;
AccountType e:LedgerJournalAcType; Invoice s; DueDate D; ReportingCurrencyExchRate d; FinTagDisplayValue s;
PaymentMethod s; PaymentId s; PostingProfile s; ExchRateSecond d; CreditAmount d; OverrideSalesTax e:NoYes;
OffsetCompany s; Quantity d; ItemWithholdingTaxGroupCode s; TaxExemptNumber s;
ReportingCurrencyExchRateSecondary d; CurrencyCode s; Company s; ChineseVoucher s; DiscountPercentage d;
OffsetText s
""")

_MAIN_ACCOUNT_TYPES = _props("""
ChartOfAccounts s; MainAccountId s; ActiveFrom D; AccountCategoryDescription s;
ForeignCurrencyRevaluation e:NoYes; BalanceControl e:DebCredProposal; DebitCreditRequirement e:DebCredProposal;
User s; MainAccountRecId l; DoNotAllowManualEntry e:NoYes; RepomoType e:RepomoTypeMx;
MainAccountType e:DimensionLedgerAccountType; ValidateUser e:FieldControl; FinancialReportingExchangeRateType s;
OffsetAccountDisplayValue s; ReportingAccountType e:DimensionLedgerAccountReportingType; MainAccountCategory s;
ChartOfAccountsRecId l; OpeningAccountId s; IsSuspended e:NoYes; ActiveTo D; InflationAdjustment e:NoYes;
Closing e:LedgerClosing; ValidateCurrency e:FieldControl; Name s; SRUCode s; DebitCreditDefault e:DebCredProposal;
ExchangeAdjustmentRateType s; FinancialReportingCurrencyTranslationType e:FinancialReportingTranslationType;
DefaultCurrency s; DefaultConsolidationAccount s; MandatoryPaymentReference e:NoYes;
PostingType e:LedgerPostingType; ReportingExchangeAdjustmentRateType s; ParentMainAccountId s;
AdjustmentMethod e:AdjustmentMethodMx; Monetary e:NoYes; ValidatePostingType e:FieldControl
""")

EMPLOYEE_TYPES = _props("""
PersonnelNumber s; EmploymentLegalEntityId s; EmploymentId s; MilitaryServiceStartDate t; EmploymentStartDate t;
EmploymentNoticeWorkerQuantity i; LastName s; ExpatriateRulingValidTo t; AddressValidTo t;
NameSequenceDisplayAs s; DimensionDisplayValue s; PersonDetailsValidFrom t; TerminationReasonCodeId s;
MilitaryServiceEndDate t; LastNamePrefix s; SummaryValidFrom t; VeteranStatusId s; TerminationDate t;
EmploymentEndDate t; PersonDetailsValidTo t; MiddleName s; EmploymentNoticeEmployerQuantity i;
AddressValidFrom t; AddressDistrictName s; ExpatriateRulingValidFrom t; SummaryValidTo t; PartyNumber s;
Name s; NameAlias s; StartDate t; EmploymentNoticeEmployerUnit e:HcmUnitOfNotice; PhoneticMiddleName s;
PhoneticLastName s; EmploymentDetailsExpiration t; FirstName s; AdjustedWorkerStartDate t;
EmploymentNoticeWorkerUnit e:HcmUnitOfNotice; EmploymentDetailsEffective t;
MaritalStatus e:HcmPersonMaritalStatus; PhoneticFirstName s; CalendarDataAreaId s
""")

_WORKER_TYPES = _props("""
PersonnelNumber s; WorkerStatus e:HcmWorkerStatus; PersonUserValidFrom t; MilitaryServiceStartDate t;
LastName s; PersonUserValidTo t; ExpatriateRulingValidTo t; AddressValidTo t; NameSequenceDisplayAs s;
PersonDetailsValidFrom t; MilitaryServiceEndDate t; WorkerType e:HcmWorkerRelationType; LastNamePrefix s;
SummaryValidFrom t; VeteranStatusId s; PersonDetailsValidTo t; MiddleName s; AddressValidFrom t;
AddressDistrictName s; ExpatriateRulingValidFrom t; SummaryValidTo t; PartyNumber s; Name s; NameAlias s;
PhoneticMiddleName s; PhoneticLastName s; FirstName s; MaritalStatus e:HcmPersonMaritalStatus;
PhoneticFirstName s
""")

SPECS: dict[str, EntitySpec] = {
    spec.name: spec
    for spec in [
        EntitySpec(
            "LedgerJournalHeaders", "LedgerJournalHeader", "LedgerJournalHeaderEntity",
            "Journal table (LedgerJournalTable)", ("dataAreaId", "JournalBatchNumber"),
            _props("dataAreaId s; JournalBatchNumber s; AccountingCurrency s; JournalName s; IntegrationKey s;"
                   "Description s; PostingLayer e:CurrentOperationsTax; IsPosted e:NoYes;"
                   "JournalTotalCredit d; JournalTotalDebit d"),
            company=True, navigation=("LegalEntity", "LedgerJournalLine"),
        ),
        EntitySpec(
            "LedgerJournalLines", "LedgerJournalLine", "LedgerJournalLineEntity",
            "Journal lines (LedgerJournalTrans)", ("dataAreaId", "JournalBatchNumber", "LineNumber"),
            _LINE_TYPES, company=True, navigation=("LedgerJournalHeader", "LegalEntity"),
            # as recorded (list-ledger-journal-lines.test.json): ExchRate 100, ReportingCurrencyExchRate 0
            defaults={"ExchRate": Decimal("100")},
        ),
        EntitySpec(
            "MainAccounts", "MainAccount", "MainAccountEntity", "Main accounts (MainAccount)",
            ("ChartOfAccounts", "MainAccountId"), _MAIN_ACCOUNT_TYPES,
        ),
        EntitySpec(
            "DimensionAttributes", "DimensionAttribute", "DimensionAttributeEntity", "Dimensions (DimensionAttribute)",
            ("DimensionName",),
            _props("DimensionName s; ReportColumnName s; UseValuesFrom s; DimensionValueMask s;"
                   "CopyValuesOnCreate e:NoYes; GiveDerivedDimensionsPrecedence e:NoYes; BalancingDimension_PSN l;"
                   "IsBalancing_PSN e:NoYes"),
            writable=False,
        ),
        EntitySpec(
            "DimensionIntegrationFormats", "DimensionIntegrationFormat", "DimensionIntegrationFormatEntity",
            "Dimension formats (DimensionHierarchy)", ("DimensionFormatName", "DimensionFormatType"),
            _props("DimensionFormatName s; DimensionFormatType e:DimensionHierarchyType; FinancialDimensionFormat s;"
                   "IsActive e:NoYes"),
            writable=False,
        ),
        EntitySpec(
            "DimensionParameters", "DimensionParameter", "DimensionParametersEntity",
            "Dimension parameters (DimensionParameters)", ("Key",),
            _props("Key i; DimensionSegmentDelimiter e:DimensionSegmentDelimiter"), writable=False,
        ),
        EntitySpec(
            "FinancialDimensionValues", "FinancialDimensionValue", "FinancialDimensionValueEntity",
            "Financial dimension values (DimensionFinancialTag)",
            ("FinancialDimension", "LegalEntityId", "DimensionValue"),
            _props("FinancialDimension s; LegalEntityId s; DimensionValue s; GroupDimension s; IsSuspended e:NoYes;"
                   "IsBlockedForManualEntry e:NoYes; IsTotal e:NoYes; Description s; ActiveFrom D; ActiveTo D;"
                   "Owner s; IsBalancing_PSN e:NoYes"),
        ),
        EntitySpec(
            "OperatingUnits", "OperatingUnit", "OMOperatingUnitEntity", "Operating units (OMOperatingUnit)",
            ("OperatingUnitNumber",),
            _props("OperatingUnitNumber s; OperatingUnitType e:OmOperatingUnitType; AddressValidFrom t; NameAlias s;"
                   "PartyNumber s; Name s; PhoneticName s; AddressDistrictName s; AddressValidTo t;"
                   "ManagerPersonnelNumber s; ManagerName s"),
        ),
        EntitySpec(
            "JournalNames", "JournalName", "LedgerJournalNameEntity", "Journal names (LedgerJournalName)",
            ("dataAreaId", "Name"),
            _props("dataAreaId s; Name s; Description s; Type e:LedgerJournalType; VoucherSeriesCode s;"
                   "NewVoucher e:NewVoucher; VoucherAllocationAtPosting e:NoYes; PostingLayer e:CurrentOperationsTax;"
                   "DefaultFinancialDimensionDisplayValue s; OffsetAccountType e:LedgerJournalAcType;"
                   "OffsetAccountDisplayValue s; Currency s; IsApprovalActive e:NoYes;"
                   "IsWorkflowApprovalActive e:NoYes; WorkflowId s; PostingLineLimit i;"
                   "DeleteLinesAfterPosting e:NoYes; DetailLevel e:DetailSummary; PrivateForUserGroup s"),
            company=True,
        ),
        EntitySpec(
            "EmployeesV2", "EmployeeV2", "HcmEmployeeV2Entity", "Employment (HcmEmployment)",
            ("PersonnelNumber", "EmploymentLegalEntityId", "EmploymentId"), EMPLOYEE_TYPES,
            navigation=("Worker",),
        ),
        EntitySpec(
            "EmploymentsV2", "EmploymentV2", "HcmEmploymentV2Entity", "Employment (HcmEmployment)",
            ("PersonnelNumber", "LegalEntityId", "EmploymentId"),
            _props("PersonnelNumber s; LegalEntityId s; EmploymentId s; DimensionDisplayValue s;"
                   "RegulatoryEstablishmentId s; EmploymentStartDate t; WorkerType e:HcmEmploymentType;"
                   "EmploymentEndDate t; CalendarId s; CalendarLegalEntityId s"),
            navigation=("Worker",),
        ),
        EntitySpec(
            "Workers", "Worker", "HcmWorkerEntity", "Workers (HcmWorker)", ("PersonnelNumber",), _WORKER_TYPES,
            navigation=("EmploymentV2",),
        ),
        # Read-only here; a few of its properties, as a live F&O answers them (NangoHQ/integration-templates
        # integrations/microsoft-dynamics-365-finance-and-operations-cc/tests/legal-entities.test.json):
        # LegalEntityId lower case, TimeZone a Timezone enum member.
        EntitySpec(
            "LegalEntities", "LegalEntity", "OMLegalEntity", "Legal entities (CompanyInfo)", ("LegalEntityId",),
            _props("LegalEntityId s; Name s; NameAlias s; TimeZone e:Timezone; LanguageId s;"
                   "AddressCountryRegionId s"),
            writable=False,
        ),
        EntitySpec(
            "GeneralJournalAccountEntries", "GeneralJournalAccountEntry", "GeneralJournalAccountEntryEntity",
            "General journal account entry (GeneralJournalAccountEntry)", ("GeneralJournalAccountEntryRecId",),
            _props("GeneralJournalAccountEntryRecId l; JournalNumber s; Voucher s; AccountingDate D;"
                   "PostingLayer e:CurrentOperationsTax; LedgerAccount s; AccountDisplayValue s;"
                   "TransactionCurrencyCode s; TransactionCurrencyAmount d; TransactionCurrencyDebitAmount d;"
                   "TransactionCurrencyCreditAmount d; AccountingCurrencyAmount d; ReportingCurrencyAmount d;"
                   "Description s; Quantity d; PostingType e:LedgerPostingType; JournalCategory e:LedgerTransType;"
                   "IsCorrection e:NoYes; IsCredit e:NoYes; AcknowledgementDate D; DocumentDate D; DocumentNumber s;"
                   "LedgerName s; DataArea s"),
            writable=False,
        ),
    ]
}

# EmployeesV2 is a view over a worker and one of their employments (F&O's HcmEmployeeV2Entity joins
# HcmWorker, DirPerson and HcmEmployment). The sandbox stores the worker in Workers, the employment in
# EmploymentsV2 and the remaining EmployeesV2-only fields in its own table, and joins them on read, so
# that a hire through EmployeesV2 and a termination through EmploymentsV2 see the same employment.
EMPLOYEE_TO_EMPLOYMENT = {
    "PersonnelNumber": "PersonnelNumber",
    "EmploymentLegalEntityId": "LegalEntityId",
    "EmploymentId": "EmploymentId",
    "DimensionDisplayValue": "DimensionDisplayValue",
    "EmploymentStartDate": "EmploymentStartDate",
    "EmploymentEndDate": "EmploymentEndDate",
}
EMPLOYEE_WORKER_FIELDS = tuple(
    p for p in EMPLOYEE_TYPES if p in _WORKER_TYPES and p not in EMPLOYEE_TO_EMPLOYMENT
)
EMPLOYEE_OWN_FIELDS = tuple(
    p for p in EMPLOYEE_TYPES if p not in EMPLOYEE_TO_EMPLOYMENT and p not in EMPLOYEE_WORKER_FIELDS
)

ZERO = Decimal("0")
KNOWN_CURRENCIES = frozenset({"USD", "CAD", "EUR", "GBP", "MXN", "JPY", "CHF", "AUD", "CNY", "INR", "BRL", "DKK"})
