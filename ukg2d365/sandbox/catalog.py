"""The sandbox's fixed catalogue: the company both simulators agree on.

A mid-sized manufacturer: two plants and a head office. UKG org level 1 is the cost center, org level 2
the department. The UKG GL accounts map to D365 main accounts through the config the sandbox writes.
Everything here is fake; the credentials are throwaway values that only the local sandbox accepts.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- identities -------------------------------------------------------------------------------
TENANT_ID = "5a1e0c0a-5a1d-4b0c-9d0e-000000000365"
CLIENT_ID = "0d365c11-e7a1-4c0d-8a5b-0000000000a1"
CLIENT_SECRET = "sandbox-client-secret-not-for-production"
# A second app registration: another customer's, for a second sandbox (``Sandbox(client_id=..., client_secret=...)``)
# or a second app in one Entra tenant (``EntraService.register_app``).
CLIENT_ID_2 = "0d365c11-e7a1-4c0d-8a5b-0000000000b2"
CLIENT_SECRET_2 = "sandbox-second-app-secret-not-for-production"
UKG_USERNAME = "svc-ukg2d365"
UKG_PASSWORD = "sandbox-ukg-password"
UKG_CUSTOMER_API_KEY = "C0MP1"
UKG_USER_API_KEY = "SANDBOXUSR01"

LEGAL_ENTITY = "usmf"
LEGAL_ENTITY_TIME_ZONE = "GMT_COORDINATEDUNIVERSALTIME"  # LegalEntities.TimeZone: the sandbox config's UTC
JOURNAL_NAME = "GenJrn"
CURRENCY = "USD"
CHART_OF_ACCOUNTS = "Shared"

UKG_CO_ID = "C0MP1"
UKG_COMPANY_CODE = "MFG"
PAY_GROUP = "BW"  # bi-weekly

# With ``companies=2`` (the legal-entity sandbox) the Riverside plant (PLT2) is a second UKG company paid by
# a second D365 legal entity, and the Springfield plant overhead cost center belongs to a third legal entity
# that bears its cost: one pay run of two companies makes three journals, with intercompany lines.
UKG_CO_ID_2 = "C0MP2"
UKG_COMPANY_CODE_2 = "RVS"
SECOND_COMPANY_LOCATION = "PLT2"
COMPANY_CODES = {UKG_CO_ID: UKG_COMPANY_CODE, UKG_CO_ID_2: UKG_COMPANY_CODE_2}
LEGAL_ENTITY_2 = "uspi"  # pays UKG company C0MP2
LEGAL_ENTITY_3 = "uspm"  # bears cost center BEARING_COST_CENTER
BEARING_COST_CENTER = "130"
DUE_FROM_ACCOUNT = "133100"  # intercompany receivable (in the paying entity)
DUE_TO_ACCOUNT = "233100"  # intercompany payable (in the bearing entity)
ACCRUED_PAYROLL_ACCOUNT = "211900"  # accruals.liability_account

# D365's formats are global and cumulative: they hold dimensions of other integrations too. As in the live
# value "51040302--81--JD-", five dimensions follow the main account and UKG feeds two of them
# (CostCenter, Department); BusinessUnit, Project and Region stay blank.
LEDGER_FORMAT = ["MainAccount", "BusinessUnit", "CostCenter", "Project", "Department", "Region"]
DEFAULT_DIMENSION_FORMAT = ["BusinessUnit", "CostCenter", "Department", "Project"]
UNFED_DIMENSIONS = ("BusinessUnit", "Project", "Region")  # custom-list dimensions UKG has no org level for
DELIMITER = "-"  # DimensionParameters.DimensionSegmentDelimiter = Hyphen


@dataclass(frozen=True)
class OrgUnit:
    code: str
    description: str
    location: str  # PLT1 | PLT2 | HQ
    is_active: bool = True


# org level 1: cost centers (a custom D365 dimension, values in FinancialDimensionValues)
COST_CENTERS = [
    OrgUnit("110", "Springfield assembly", "PLT1"),
    OrgUnit("120", "Springfield machining", "PLT1"),
    OrgUnit("130", "Springfield plant overhead", "PLT1"),
    OrgUnit("210", "Riverside assembly", "PLT2"),
    OrgUnit("220", "Riverside paint shop", "PLT2"),
    OrgUnit("230", "Riverside plant overhead", "PLT2"),
    OrgUnit("310", "Head office administration", "HQ"),
    OrgUnit("320", "Head office sales", "HQ"),
    OrgUnit("390", "Closed: legacy tooling", "PLT1", is_active=False),
]
# org level 2: departments (entity-backed D365 dimension: OperatingUnits of type OMDepartment)
DEPARTMENTS = [
    OrgUnit("PROD", "Production", "PLT1"),
    OrgUnit("MAINT", "Maintenance", "PLT1"),
    OrgUnit("QA", "Quality assurance", "PLT1"),
    OrgUnit("LOG", "Logistics", "PLT2"),
    OrgUnit("FIN", "Finance", "HQ"),
    OrgUnit("HR", "Human resources", "HQ"),
    OrgUnit("IT", "Information technology", "HQ"),
    OrgUnit("SALES", "Sales", "HQ"),
]
# D365 starts with only some of them, so sync-dimensions has work to do
D365_EXISTING_COST_CENTERS = ["110", "120", "210", "310"]
D365_EXISTING_DEPARTMENTS = ["PROD", "FIN", "HR"]


@dataclass(frozen=True)
class GlAccount:
    ukg_account: str  # UKG generalLedgerAccount
    d365_account: str  # D365 MainAccountId
    name: str
    side: str  # "debit" | "credit"
    main_account_type: str  # D365 DimensionLedgerAccountType
    carries_org_levels: bool  # expense lines carry cost center/department; liabilities do not


# Twelve GL lines per employee per pay run: six expense debits, six liability credits.
GL_ACCOUNTS = [
    GlAccount("5000", "601500", "Salaries and wages", "debit", "Expense", True),
    GlAccount("5010", "601510", "Overtime wages", "debit", "Expense", True),
    GlAccount("5100", "602100", "Employer FICA", "debit", "Expense", True),
    GlAccount("5110", "602110", "Employer FUTA/SUTA", "debit", "Expense", True),
    GlAccount("5200", "603200", "Health benefits, employer share", "debit", "Expense", True),
    GlAccount("5210", "603210", "401(k) employer match", "debit", "Expense", True),
    GlAccount("2100", "211000", "Net pay clearing", "credit", "Liability", False),
    GlAccount("2110", "211100", "Federal income tax withheld", "credit", "Liability", False),
    GlAccount("2120", "211200", "FICA payable", "credit", "Liability", False),
    GlAccount("2130", "211300", "State income tax withheld", "credit", "Liability", False),
    GlAccount("2140", "211400", "Benefits payable", "credit", "Liability", False),
    GlAccount("2150", "211500", "Unemployment tax payable", "credit", "Liability", False),
]
# Main accounts that exist in D365 from the start (all of the mapped ones, plus unrelated ones)
D365_EXTRA_MAIN_ACCOUNTS = [("110110", "Bank operating account", "Asset"), ("401100", "Sales revenue", "Revenue")]
# Main accounts of the legal-entity and accrual set-ups (added to D365 with them)
D365_ENTITY_MAIN_ACCOUNTS = [(DUE_FROM_ACCOUNT, "Intercompany receivable", "Asset"),
                             (DUE_TO_ACCOUNT, "Intercompany payable", "Liability"),
                             (ACCRUED_PAYROLL_ACCOUNT, "Accrued payroll", "Liability")]
