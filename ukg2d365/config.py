"""The YAML configuration file: pydantic models, loading, and one-line errors that name key path and line.

Relative paths in the file (``ledger.path``, ``*.ca_bundle``) are resolved against the folder of the
config file, so a cron job gets the same files whatever its working directory is.
"""

from __future__ import annotations

import codecs
import os
import re
from datetime import date, datetime, timezone, tzinfo
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from ukg2d365.errors import ConfigError

DEFAULT_CONFIG_NAME = "ukg2d365.yaml"
CONFIG_ENV = "UKG2D365_CONFIG"

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
MICROSOFT_LOGIN_HOSTS = {
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.chinacloudapi.cn",
    "login.microsoft.com",
    "login.windows.net",
    "login.partner.microsoftonline.cn",
    "login.microsoftonline.de",
    "login-us.microsoftonline.com",
}
ORG_LEVEL_SOURCES = ("orgLevel1", "orgLevel2", "orgLevel3", "orgLevel4")
DELIMITERS = {
    "-": "Hyphen",
    ".": "Period",
    "_": "Underscore",
    "|": "Bar",
    "~": "Tilde",
    "--": "DoubleHyphen",
    "..": "DoublePeriod",
    "__": "DoubleUnderscore",
    "||": "DoubleBar",
    "~~": "DoubleTilde",
}
# ledger.tenant: kept to characters that read the same in a lock name, a log line and a URL.
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,99}$")
CURRENCY_PRECISION = {"JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "VND": 0, "BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3}


def is_loopback(host: str | None) -> bool:
    return (host or "").lower().strip("[]") in LOOPBACK_HOSTS or (host or "").startswith("127.")


def _check_https(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url.rstrip("/")
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return url.rstrip("/")
    raise ValueError(f"must be an https:// URL (plain http only for loopback), got {url!r}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class UkgConfig(_Section):
    # Optional: a customer who only sends UKG's GL export file (post-payroll/reconcile --from-file) has no UKG API
    # host to give; a command that reads the API refuses without it (Config.ukg_api_url).
    base_url: str | None = Field(default=None, description="Tenant host from UKG Pro's Web Services page")
    company_ids: list[str] = Field(default_factory=list, description="Optional filter on coId")
    page_size: int = Field(default=1000, ge=1, le=10000, description="per_Page")
    prefetch_pages: int = Field(default=4, ge=1, le=16, description="pages requested ahead of the one being read")
    gl_path: str = Field(default="/payroll/v2/general-ledger")
    pay_groups: list[str] = Field(default_factory=list, description="Pay groups that --due considers")
    timeout_seconds: float = Field(default=60, gt=0, le=600)
    ca_bundle: str | None = None

    @field_validator("base_url")
    @classmethod
    def _https(cls, v: str | None) -> str | None:
        return None if v is None else _check_https(v)

    @field_validator("gl_path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must start with '/'")
        return v.rstrip("/")


class D365Config(_Section):
    base_url: str
    tenant_id: str
    client_id: str
    authority_host: str = "https://login.microsoftonline.com"
    legal_entity: str = Field(min_length=1, max_length=4, description="dataAreaId")
    journal_name: str = "GenJrn"
    currency: str = Field(default="USD", min_length=3, max_length=3)
    batch_size: int = Field(default=500, ge=1, le=5000)
    max_in_flight: int = Field(default=4, ge=1, le=32)
    timeout_seconds: float = Field(default=120, gt=0, le=900)
    ca_bundle: str | None = None
    # d365: D365 numbers the lines itself ("isn't required for an insert", MicrosoftDocs/dynamics-365-unified-
    # operations-public articles/fin-ops-core/dev-itpro/data-entities/entity-general-journal-ledgerjournalline.md);
    # client: this tool sends LineNumber 1..n, for environments that accept it.
    line_numbers: Literal["d365", "client"] = "d365"
    # A request that timed out here may still run in D365 later: wait this long before looking at what landed.
    settle_seconds: float = Field(default=30, ge=0, le=900)
    # Employment start and end are Edm.DateTimeOffset on EmploymentsV2 (ntrtd/d365-agent
    # asset/client/src/EmploymentsV2.ts), instants in UTC: a UKG hire or termination date becomes local
    # midnight, or 23:59:59, of this IANA zone. Left at UTC, a Chicago hire would start at 18:00 the day before.
    time_zone: str = Field(default="UTC", description="IANA name, e.g. America/Chicago")
    # The route of journal lines. odata: LedgerJournalHeaders + LedgerJournalLines in $batch changesets, for
    # synchronous use; dmf: one Data management package per journal through the General journal entity, which
    # "should be used for all high volume import scenarios" (MicrosoftDocs/dynamics-365-unified-operations-public
    # articles/fin-ops-core/dev-itpro/data-entities/entity-general-journal.md) but needs a data project in D365;
    # auto: dmf from dmf.min_lines lines. odata by default: it needs no set-up in D365 beyond the app user.
    transport: Literal["odata", "dmf", "auto"] = "odata"

    @field_validator("time_zone")
    @classmethod
    def _iana(cls, v: str) -> str:
        if v == "UTC":
            return v
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not an IANA time zone name (e.g. America/Chicago, Europe/Berlin, UTC)") \
                from None
        return v

    @field_validator("base_url", "authority_host")
    @classmethod
    def _https(cls, v: str) -> str:
        return _check_https(v)

    @field_validator("currency")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper()

    @property
    def zone(self) -> tzinfo:
        # UTC needs no time zone database (Windows has none unless the tzdata package is installed).
        return timezone.utc if self.time_zone == "UTC" else ZoneInfo(self.time_zone)

    @property
    def data_area_id(self) -> str:
        """The company id as D365 writes dataAreaId, lower case (the recorded answers of a live F&O in
        NangoHQ/integration-templates integrations/microsoft-dynamics-365-finance-and-operations-cc/tests/
        list-legal-entities.test.json), for bodies, keys and filters; ``legal_entity`` keeps the configured
        spelling for what a person reads."""
        return self.legal_entity.lower()

    @property
    def scope(self) -> str:
        return f"{self.base_url.rstrip('/')}/.default"

    @property
    def authority(self) -> str:
        return f"{self.authority_host.rstrip('/')}/{self.tenant_id}"

    @property
    def authority_is_microsoft(self) -> bool:
        return (urlsplit(self.authority_host).hostname or "").lower() in MICROSOFT_LOGIN_HOSTS

    @property
    def currency_precision(self) -> int:
        return CURRENCY_PRECISION.get(self.currency, 2)


class DmfConfig(_Section):
    """The Data management package route (MicrosoftDocs/dynamics-365-unified-operations-public
    articles/fin-ops-core/dev-itpro/data-entities/data-management-api.md)."""

    min_lines: int = Field(default=5000, ge=1, description="d365.transport auto: DMF from this many journal lines")
    # The import data project in D365 (definitionGroupId of ImportFromPackage): Data management > Import,
    # one entity, General journal, source data format CSV-Unicode.
    definition_group: str = Field(default="UKG2D365 General journal", min_length=1, max_length=60)
    # The entity's name in the data project ("General journal"; AOT name LedgerJournalEntity): the staging
    # error file is asked for by it.
    entity_name: str = Field(default="General journal", min_length=1)
    # A package exported from the customer's own data project (Manifest.xml, PackageHeader.xml and the
    # entity's data file, whose header row gives the columns and their order); unset: the built-in template.
    package_template: str | None = None
    date_format: str = Field(default="%Y-%m-%d", description="TRANSDATE as the data project's source format reads it")
    poll_seconds: float = Field(default=2.0, gt=0, le=300, description="first wait between status polls")
    poll_max_seconds: float = Field(default=30.0, gt=0, le=900, description="cap of the growing wait between polls")
    timeout_minutes: float = Field(default=120, gt=0, le=1440,
                                   description="stop waiting (the execution goes on; a rerun picks it up)")

    @field_validator("date_format")
    @classmethod
    def _date_format(cls, v: str) -> str:
        text = date(2026, 1, 31).strftime(v)
        if "31" not in text or "26" not in text:
            raise ValueError(f"{v!r} must hold the day and the year (strftime codes, e.g. %Y-%m-%d or %d-%b-%Y)")
        return v


class HttpConfig(_Section):
    max_attempts: int = Field(default=6, ge=1, le=20, description="attempts per request, first included")
    backoff_base_seconds: float = Field(default=1.0, ge=0, le=60)
    backoff_max_seconds: float = Field(default=60.0, ge=0, le=3600)
    max_retry_after_seconds: float = Field(default=300.0, ge=0, le=3600)
    retry_budget_seconds: float = Field(default=900.0, ge=0, le=86400, description="total waiting per run")


JournalDate = Literal["period_end", "pay_date"]


class PayrollConfig(_Section):
    summarize: bool = True
    line_text: str = "Payroll {pay_group} {period_end}"
    lookback_days: int = Field(default=14, ge=0, le=366)
    negative_amounts: Literal["reverse", "refuse"] = "reverse"
    # TransDate of every line: the pay period's end (the labor's month) or its pay date (the cash's month),
    # both from UKG's paygroup-payperiods.
    posting_date: JournalDate = "period_end"
    # DocumentDate of every line (LedgerJournalLines has one); unset, none is sent and D365 leaves it empty.
    document_date: JournalDate | None = None

    @field_validator("line_text")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            v.format(pay_group="BW", period_end="2026-01-01", run_id="R", company="C", account="A")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"unknown placeholder {exc}; use {{pay_group}}, {{period_end}}, {{run_id}}, {{company}}, {{account}}"
            ) from None
        return v


MAX_DIMENSION_VALUE_LENGTH = 30  # D365 dimension values are at most 30 characters


class DimensionMapping(_Section):
    """Where one D365 dimension's value comes from: a UKG org level (``source``) or a constant (``value``)."""

    source: Literal["orgLevel1", "orgLevel2", "orgLevel3", "orgLevel4"] | None = None
    value: str | None = Field(default=None, description="the same D365 value on every line (a constant)")
    values: dict[str, str] = Field(default_factory=dict, description="UKG code -> D365 value recode")
    create_in: Literal["FinancialDimensionValues", "OperatingUnits"] = "FinancialDimensionValues"
    operating_unit_type: str | None = None

    @field_validator("values", mode="before")
    @classmethod
    def _strings_only(cls, v: Any) -> Any:
        return _require_string_map(v)

    @field_validator("value", mode="before")
    @classmethod
    def _constant_is_text(cls, v: Any) -> Any:
        if v is not None and not isinstance(v, str):
            raise ValueError(f"{v!r} must be a quoted string (write value: '{v}': YAML reads bare numbers as "
                             "numbers and drops leading zeros)")
        if isinstance(v, str):
            if not v:
                raise ValueError("is empty; leave the dimension out of mapping.dimensions to keep it blank")
            if v != v.strip() or any(ord(ch) < 32 or ord(ch) == 127 for ch in v):
                raise ValueError(f"{v!r} has leading or trailing spaces or control characters")
            if len(v) > MAX_DIMENSION_VALUE_LENGTH:
                raise ValueError(f"{v!r} is longer than D365's {MAX_DIMENSION_VALUE_LENGTH} characters")
        return v

    @model_validator(mode="after")
    def _one_origin(self) -> DimensionMapping:
        if (self.source is None) == (self.value is None):
            raise ValueError("give either source (a UKG org level: orgLevel1..orgLevel4) or value (a constant "
                             "D365 value, e.g. value: '001'), not both and not neither")
        if self.value is not None and self.values:
            raise ValueError("values (a recode of UKG codes) does not apply to a constant value")
        return self

    @property
    def constant(self) -> bool:
        return self.value is not None


class MappingConfig(_Section):
    # Optional guard: D365's active ledger dimension format is the truth (it is global and cumulative, see
    # MicrosoftDocs/dynamics-365-unified-operations-public articles/fin-ops-core/dev-itpro/financial/
    # financial-dimension-configuration-integration.md); when set, the run refuses unless it equals D365's.
    ledger_format: list[str] | None = None
    delimiter: str = "-"
    main_accounts: dict[str, str] = Field(default_factory=dict)
    unmapped_accounts: Literal["error", "passthrough"] = "error"
    dimensions: dict[str, DimensionMapping] = Field(default_factory=dict)

    @field_validator("main_accounts", mode="before")
    @classmethod
    def _strings_only(cls, v: Any) -> Any:
        return _require_string_map(v)

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, v: str) -> str:
        if v not in DELIMITERS:
            raise ValueError(f"must be one of {' '.join(repr(d) for d in DELIMITERS)} (D365 segment delimiters)")
        return v

    @model_validator(mode="after")
    def _format_matches_dimensions(self) -> MappingConfig:
        fmt = self.ledger_format
        if fmt is not None:
            if not fmt or fmt[0] != "MainAccount":
                raise ValueError("ledger_format must start with MainAccount (D365's ledger dimension format does)")
            if len(set(fmt)) != len(fmt):
                raise ValueError("ledger_format lists a dimension twice")
        if not self.main_accounts and self.unmapped_accounts == "error":
            raise ValueError(
                "main_accounts is empty: map at least one UKG account, or set unmapped_accounts: passthrough"
            )
        for name, dim in self.dimensions.items():
            if dim.value is not None and self.delimiter in dim.value:
                raise ValueError(f"dimensions.{name}: value {dim.value!r} contains the segment delimiter "
                                 f"{self.delimiter!r}; it would shift every segment")
            if dim.create_in == "OperatingUnits" and dim.operating_unit_type is None:
                guess = {"department": "OMDepartment", "costcenter": "OMCostCenter"}.get(name.lower())
                if guess is None:
                    raise ValueError(f"dimensions.{name}: create_in OperatingUnits needs operating_unit_type")
                dim.operating_unit_type = guess
        return self

    @property
    def delimiter_enum(self) -> str:
        return DELIMITERS[self.delimiter]


DATA_AREA_ID_MAX = 4  # LegalEntities.LegalEntityId / dataAreaId: at most four characters


def _check_data_area_id(where: str, value: str) -> str:
    if not value or len(value) > DATA_AREA_ID_MAX or not value.isalnum():
        raise ValueError(f"{where}: {value!r} is not a D365 legal entity id (dataAreaId: 1 to "
                         f"{DATA_AREA_ID_MAX} letters or digits, e.g. USMF)")
    return value


def _entity_map(v: Any, what: str, when_empty: str) -> Any:
    """A mapping of quoted codes to legal entity ids (dataAreaId), not empty."""
    _require_string_map(v)
    if isinstance(v, dict):
        if not v:
            raise ValueError(f"is empty: {when_empty}")
        for code, entity in v.items():
            _check_data_area_id(f"{what} {code!r}", entity)
    return v


class ByDimensionConfig(_Section):
    """Lines whose value of one D365 dimension belongs to another legal entity (a plant that is its own)."""

    dimension: str = Field(description="a D365 dimension of mapping.dimensions, e.g. CostCenter")
    values: dict[str, str] = Field(description="D365 dimension value -> dataAreaId bearing the cost")

    @field_validator("values", mode="before")
    @classmethod
    def _strings_only(cls, v: Any) -> Any:
        return _entity_map(v, "value", "name at least one dimension value and the legal entity that bears it")


class IntercompanyConfig(_Section):
    """The balancing lines between a paying and a bearing legal entity (D365 main accounts)."""

    due_from_account: str = Field(description="in the paying entity: receivable from the entity bearing the cost")
    due_to_account: str = Field(description="in the bearing entity: payable to the paying entity")
    # Constant dimension values on the intercompany lines (D365 dimension -> value); none by default.
    dimensions: dict[str, str] = Field(default_factory=dict)

    @field_validator("due_from_account", "due_to_account", mode="before")
    @classmethod
    def _account_is_text(cls, v: Any) -> Any:
        if v is not None and not isinstance(v, str):
            raise ValueError(f"{v!r} must be a quoted string (write '{v}': YAML reads bare numbers as numbers)")
        return v

    @field_validator("dimensions", mode="before")
    @classmethod
    def _strings_only(cls, v: Any) -> Any:
        return _require_string_map(v)


class LegalEntitiesConfig(_Section):
    """Several D365 legal entities: one journal per pay run per entity, intercompany lines generated.

    D365's general journal entity "doesn't support intercompany transactions" (MicrosoftDocs/
    dynamics-365-unified-operations-public articles/fin-ops-core/dev-itpro/data-entities/
    entity-general-journal.md), so this tool writes each entity's journal and the due-to / due-from lines.
    """

    by_company: dict[str, str] = Field(description="UKG company (the GL line's coId, else companyCode) -> "
                                                   "dataAreaId of the entity that pays")
    by_dimension: ByDimensionConfig | None = None
    intercompany: IntercompanyConfig | None = None

    @field_validator("by_company", mode="before")
    @classmethod
    def _strings_only(cls, v: Any) -> Any:
        return _entity_map(v, "company", "map every UKG company to the D365 legal entity that pays it")

    @model_validator(mode="after")
    def _intercompany_when_charged_elsewhere(self) -> LegalEntitiesConfig:
        if self.by_dimension is not None and self.intercompany is None:
            raise ValueError("by_dimension moves lines to another legal entity, which needs intercompany "
                             "(due_from_account, due_to_account) to balance each journal")
        return self

    def entities(self) -> set[str]:
        """Every legal entity named, upper case as configured."""
        named = set(self.by_company.values())
        if self.by_dimension is not None:
            named |= set(self.by_dimension.values.values())
        return {e.upper() for e in named}


Weekday = Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
WEEKDAYS: tuple[Weekday, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class AccrualsConfig(_Section):
    """Month-end accruals of the labor of a pay period that straddles the month-end (accrue-payroll)."""

    # The month's share of the period: its calendar days, or its workdays (the weekdays of ``workdays``).
    basis: Literal["calendar_days", "workdays"] = "calendar_days"
    workdays: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS[:5]))
    accounts: list[str] = Field(description="UKG generalLedgerAccount codes accrued (the expense accounts)")
    liability_account: str = Field(description="D365 main account credited (accrued payroll)")
    line_text: str = "Accrual {pay_group} {month_end}"

    @field_validator("accounts", mode="before")
    @classmethod
    def _codes_are_text(cls, v: Any) -> Any:
        if isinstance(v, list):
            for item in v:
                if not isinstance(item, str):
                    raise ValueError(f"{item!r} must be a quoted string (write '{item}': YAML reads bare numbers "
                                     "as numbers and drops leading zeros)")
        return v

    @field_validator("accounts")
    @classmethod
    def _some(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("is empty: name the UKG expense accounts to accrue")
        if len(set(v)) != len(v):
            raise ValueError("lists an account twice")
        return v

    @field_validator("liability_account", mode="before")
    @classmethod
    def _account_is_text(cls, v: Any) -> Any:
        if v is not None and not isinstance(v, str):
            raise ValueError(f"{v!r} must be a quoted string (write '{v}': YAML reads bare numbers as numbers)")
        return v

    @field_validator("workdays")
    @classmethod
    def _workdays(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("is empty: name the weekdays worked (Mon..Sun)")
        return v

    @field_validator("line_text")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            v.format(pay_group="BW", month_end="2026-01-31", legal_entity="USMF", account="A")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"unknown placeholder {exc}; use {{pay_group}}, {{month_end}}, {{legal_entity}}, "
                             "{account}") from None
        return v

    @property
    def weekday_numbers(self) -> frozenset[int]:
        return frozenset(WEEKDAYS.index(d) for d in self.workdays)


class EmployeesConfig(_Section):
    personnel_number: str = "employeeNumber"
    # Optional guard, like mapping.ledger_format: when set it must equal D365's active default dimension
    # format (workers' DimensionDisplayValue is built in D365's order whatever it says); [] sends no
    # default dimensions at all.
    default_dimensions: list[str] | None = None

    @field_validator("default_dimensions")
    @classmethod
    def _no_twice(cls, v: list[str] | None) -> list[str] | None:
        if v and len(set(v)) != len(v):
            raise ValueError("lists a dimension twice")
        if v and "MainAccount" in v:
            raise ValueError("names MainAccount, which D365's default dimension format never holds")
        return v


class LedgerConfig(_Section):
    # One of the two: a SQLite file (the embedded default, one cron host) or a PostgreSQL database shared by
    # hosts and tenants (postgresql://user@host:port/dbname; the password never in the URL).
    path: str = "ukg2d365.db"
    url: str | None = Field(default=None, description="postgresql://user@host:port/dbname")
    tenant: str | None = Field(default=None, description="scopes every ledger row [default: D365 host/legal entity]")
    lock_timeout_seconds: float = Field(default=0, ge=0, le=86400, description="wait for another run's lock")

    @field_validator("url")
    @classmethod
    def _postgresql(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql://user@host:port/dbname URL")
        if parts.password is not None:
            # The message never repeats the URL: it holds the password.
            raise ValueError("holds a password: remove it from the URL and set UKG2D365_LEDGER_PASSWORD "
                             "(or libpq's PGPASSWORD or ~/.pgpass)")
        return v

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, v: str | None) -> str | None:
        if v is not None and not TENANT_PATTERN.match(v):
            raise ValueError("use 1 to 100 letters, digits and . _ : / @ + -, starting with a letter or digit")
        return v

    @model_validator(mode="after")
    def _one_home(self) -> LedgerConfig:
        if self.url is not None and "path" in self.model_fields_set:
            raise ValueError("give path (a SQLite file) or url (PostgreSQL), not both")
        return self


# Cron expressions for the jobs `ukg2d365 worker` runs (read by croniter, as procrastinate's periodic tasks read
# them: 5 fields, an optional 6th for seconds); plain cron with one config needs none of this.
class ScheduleConfig(_Section):
    post_payroll_due: str | None = Field(default=None, description="post-payroll --due")
    sync_dimensions: str | None = Field(default=None, description="sync-dimensions")
    sync_employees: str | None = Field(default=None, description="sync-employees")
    accrue_payroll_due: str | None = Field(default=None, description="accrue-payroll --due")

    @field_validator("post_payroll_due", "sync_dimensions", "sync_employees", "accrue_payroll_due")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from croniter import croniter

        if not croniter.is_valid(v):
            raise ValueError(f"{v!r} is not a cron expression (minute hour day-of-month month day-of-week, "
                             "e.g. '0 6 * * *')")
        return v

    def jobs(self) -> dict[str, str]:
        """Job name -> cron expression, for the jobs that have one."""
        return {name: cron for name, cron in self.model_dump().items() if cron is not None}


class WebhooksConfig(_Section):
    secret_env: str = "UKG2D365_WEBHOOK_SECRET"
    signature_header: str = "X-UKG-Signature"
    signature_encoding: Literal["hex", "base64"] = "hex"
    signature_prefix: str = ""
    max_body_bytes: int = Field(default=262144, ge=1024, le=16 * 1024 * 1024)
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=1, le=65535)


class FixedWidthField(_Section):
    """Where a field sits on a fixed-width line: 1-based first character and length."""

    start: int = Field(ge=1, le=10000)
    length: int = Field(ge=1, le=1000)


# A CSV column by header name or by 1-based position, or a fixed-width field.
ColumnRef = StrictStr | StrictInt | FixedWidthField

AMOUNT_COLUMNS = {
    "debit_credit": ("debit", "credit"),  # two columns, either may be blank
    "signed": ("amount",),  # one column: positive debit, negative credit
    "indicator": ("amount", "dc_indicator"),  # one amount column and a D/C column
}


class FileColumns(_Section):
    """The GL export file's columns, by logical field (file_source.columns)."""

    run_id: ColumnRef | None = None
    company: ColumnRef | None = None
    pay_group: ColumnRef | None = None
    period_end: ColumnRef | None = None
    account: ColumnRef | None = None
    debit: ColumnRef | None = None
    credit: ColumnRef | None = None
    amount: ColumnRef | None = None
    dc_indicator: ColumnRef | None = None
    org_level1: ColumnRef | None = None
    org_level2: ColumnRef | None = None
    org_level3: ColumnRef | None = None
    org_level4: ColumnRef | None = None
    line_id: ColumnRef | None = None

    def mapped(self) -> dict[str, StrictStr | StrictInt | FixedWidthField]:
        """Every logical field that has a column, in declaration order."""
        return {name: ref for name, ref in self if ref is not None}


class FileConstants(_Section):
    """Values every row of the file shares when it has no column for them (file_source.constants)."""

    company: str | None = None
    pay_group: str | None = None


class FileSourceConfig(_Section):
    """UKG's GL export file (post-payroll --from-file, reconcile --from-file): its layout, as configured in
    UKG's GL export template; UKG publishes no standard layout, so every position and name is configuration."""

    format: Literal["csv", "fixed_width"] = "csv"
    encoding: str = "utf-8"
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quotechar: str = Field(default='"', min_length=1, max_length=1)
    header: bool = True
    skip_lines: int = Field(default=0, ge=0, le=1000)
    footer_lines: int = Field(default=0, ge=0, le=1000)
    date_format: str = "%Y-%m-%d"
    amounts: Literal["debit_credit", "signed", "indicator"] = "debit_credit"
    decimal_separator: Literal[".", ","] = "."
    thousands_separator: Literal["", ",", ".", " ", "'"] = ""
    implied_decimals: int = Field(default=0, ge=0, le=4)
    debit_indicators: list[str] = Field(default_factory=lambda: ["D", "DR"])
    credit_indicators: list[str] = Field(default_factory=lambda: ["C", "CR"])
    constants: FileConstants = Field(default_factory=FileConstants)
    columns: FileColumns

    # str_strip_whitespace would turn a tab delimiter into nothing
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"{v!r} is not an encoding Python knows (e.g. utf-8, cp1252, latin-1, utf-16)") from None
        return v

    @field_validator("date_format")
    @classmethod
    def _date_format(cls, v: str) -> str:
        probe = date(2026, 11, 13)
        try:
            back = datetime.strptime(probe.strftime(v), v).date()
        except ValueError:
            back = None
        if back != probe:
            raise ValueError(f"{v!r} does not read a whole date back (use strptime codes, e.g. %m/%d/%Y or %Y%m%d)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> FileSourceConfig:
        problems = self._column_problems() + self._amount_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _column_problems(self) -> list[str]:
        problems = [f"columns.{name} is required" for name in ("period_end", "account")
                    if getattr(self.columns, name) is None]
        for name in ("company", "pay_group"):
            column, constant = getattr(self.columns, name), getattr(self.constants, name)
            if (column is None) == (constant is None):
                problems.append(f"give columns.{name} or constants.{name} (a value every row shares), one of them")
        for name, ref in self.columns.mapped().items():
            if self.format == "fixed_width" and not isinstance(ref, FixedWidthField):
                problems.append(f"columns.{name}: a fixed-width field is {{start: N, length: N}}")
            elif self.format == "csv" and isinstance(ref, FixedWidthField):
                problems.append(f"columns.{name}: a CSV column is a header name or a 1-based position, not "
                                "{start, length}")
            elif isinstance(ref, int) and ref < 1:
                problems.append(f"columns.{name}: positions count from 1")
            elif isinstance(ref, str) and not self.header:
                problems.append(f"columns.{name}: {ref!r} is a header name but header is false; give the 1-based "
                                "position")
        if self.format == "csv" and self.delimiter == self.quotechar:
            problems.append("delimiter and quotechar are the same character")
        return problems

    def _amount_problems(self) -> list[str]:
        problems = []
        wanted = AMOUNT_COLUMNS[self.amounts]
        for name in ("debit", "credit", "amount", "dc_indicator"):
            mapped = getattr(self.columns, name) is not None
            if name in wanted and not mapped:
                problems.append(f"columns.{name} is required with amounts: {self.amounts}")
            elif name not in wanted and mapped:
                problems.append(f"columns.{name} does not apply to amounts: {self.amounts}")
        if self.decimal_separator == self.thousands_separator:
            problems.append("decimal_separator and thousands_separator are the same")
        debit = {v.strip().casefold() for v in self.debit_indicators}
        credit = {v.strip().casefold() for v in self.credit_indicators}
        if self.amounts == "indicator" and (not debit or not credit or "" in debit | credit or debit & credit):
            problems.append("debit_indicators and credit_indicators must be non-empty and share no value")
        return problems

    @property
    def run_id_derived(self) -> bool:
        """No run id column: the run id is a hash of the file's rows."""
        return self.columns.run_id is None
class NotifyConfig(_Section):
    """Alerts for unattended runs. The URLs themselves never live here: they carry tokens (ukg2d365.notify)."""

    # Also alert on a run that exited 0 but warned (a closed period older than payroll.lookback_days, ...).
    on_warning: bool = True
    # Where the heartbeat URL comes from, never the URL: "credentials" (UKG2D365_NOTIFY_HEARTBEAT_URL, else
    # `ukg2d365 credentials set notify`), "env:NAME" (that variable), or null for no heartbeat.
    heartbeat_url: str | None = "credentials"
    timeout_seconds: float = Field(default=10, gt=0, le=120, description="per delivery and heartbeat")

    @field_validator("heartbeat_url")
    @classmethod
    def _reference(cls, v: str | None) -> str | None:
        if v is None or v == "credentials" or re.fullmatch(r"env:[A-Za-z_][A-Za-z0-9_]*", v):
            return v
        if "://" in v:  # the value is not repeated: it holds a token
            raise ValueError("is a URL; heartbeat URLs carry a token, so this file only says where it comes from: "
                             "env:NAME (an environment variable) or credentials (`ukg2d365 credentials set notify`)")
        raise ValueError("use env:NAME (an environment variable) or credentials (`ukg2d365 credentials set notify`)")


# A credential profile: lower-case letters, digits and "_". The name becomes part of environment variable names
# (UKG2D365_ACME_D365_CLIENT_SECRET), where "acme-us" and "acme_us", or "Acme" and "acme", would name one variable
# and two profiles could read one secret. ukg2d365.credentials checks --profile against the same rule.
PROFILE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_]{0,39}$")
PROFILE_RULE = ("use 1 to 40 lower-case letters, digits and _ (the name becomes part of variable names such as "
                "UKG2D365_<PROFILE>_D365_CLIENT_SECRET)")


class CredentialsConfig(_Section):
    """Whose secrets this config uses; the secrets themselves never live in the file."""

    # None: the global ones (UKG2D365_D365_CLIENT_SECRET, ..., `ukg2d365 credentials set d365`). A name: only that
    # profile's (UKG2D365_<PROFILE>_D365_CLIENT_SECRET, ..., `ukg2d365 -c this.yaml credentials set d365`).
    profile: str | None = Field(default=None, description="credential profile [default: the global credentials]")

    @field_validator("profile")
    @classmethod
    def _profile(cls, v: str | None) -> str | None:
        if v is not None and not PROFILE_PATTERN.match(v):
            raise ValueError(PROFILE_RULE)
        return v


class Config(_Section):
    ukg: UkgConfig = Field(default_factory=UkgConfig)  # a GL-export-file-only customer may leave it out
    d365: D365Config
    payroll: PayrollConfig = Field(default_factory=PayrollConfig)
    mapping: MappingConfig
    employees: EmployeesConfig = Field(default_factory=EmployeesConfig)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    file_source: FileSourceConfig | None = None
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    credentials: CredentialsConfig = Field(default_factory=CredentialsConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    legal_entities: LegalEntitiesConfig | None = None
    accruals: AccrualsConfig | None = None
    dmf: DmfConfig = Field(default_factory=DmfConfig)

    source_path: Path | None = Field(default=None, exclude=True)

    def cross_problems(self) -> list[tuple[tuple[str, ...], str]]:
        """Problems between sections (key path, message): pydantic checks each section on its own."""
        entities = self.legal_entities
        if entities is None:
            return []
        problems: list[tuple[tuple[str, ...], str]] = []
        mapped = self.mapping.dimensions
        known = ", ".join(mapped) or "none"
        by_dimension = entities.by_dimension
        if by_dimension is not None and by_dimension.dimension not in mapped:
            problems.append((("legal_entities", "by_dimension", "dimension"),
                             f"{by_dimension.dimension} is not in mapping.dimensions ({known}); lines carry only "
                             "mapped dimensions"))
        if entities.intercompany is not None:
            for name, value in entities.intercompany.dimensions.items():
                path = ("legal_entities", "intercompany", "dimensions", name)
                if name not in mapped:
                    problems.append((path, f"not in mapping.dimensions ({known}); only mapped dimensions are "
                                           "in the ledger format checked before a run"))
                elif self.mapping.delimiter in value:
                    problems.append((path, f"value {value!r} contains the segment delimiter "
                                           f"{self.mapping.delimiter!r}"))
        return problems

    def ukg_api_url(self) -> str:
        """``ukg.base_url``, for a command that reads the UKG API; refused, named, when the config has none."""
        if self.ukg.base_url is None:
            where = f"{self.source_path}: " if self.source_path is not None else ""
            raise ConfigError(f"{where}ukg.base_url is not set, and this command reads the UKG API",
                              hint="set ukg.base_url to the tenant host from UKG Pro's Web Services page; without "
                                   "it only post-payroll and reconcile --from-file work")
        return self.ukg.base_url

    def entity_of_company(self, company: str) -> str | None:
        """The legal entity (as configured) paying a UKG company; None when legal_entities does not map it."""
        if self.legal_entities is None:
            return self.d365.legal_entity
        return self.legal_entities.by_company.get(company)

    def resolve(self, path: str | None) -> Path | None:
        """A path from the file, resolved against the config file's folder."""
        if path is None:
            return None
        p = Path(os.path.expanduser(path))
        if not p.is_absolute() and self.source_path is not None:
            p = self.source_path.parent / p
        return p

    @property
    def ledger_path(self) -> Path:
        resolved = self.resolve(self.ledger.path)
        assert resolved is not None
        return resolved

    @property
    def ledger_location(self) -> Path | str:
        """Where the ledger lives: the PostgreSQL URL (``ledger.url``) or the SQLite file."""
        return self.ledger.url if self.ledger.url is not None else self.ledger_path

    @property
    def ledger_tenant(self) -> str:
        """``ledger.tenant``, by default the D365 host and legal entity (``contoso.operations.dynamics.com/USMF``)."""
        if self.ledger.tenant is not None:
            return self.ledger.tenant
        host = urlsplit(self.d365.base_url).netloc.lower()
        return f"{host}/{self.d365.legal_entity.upper()}"[:100]


def _require_string_map(v: Any) -> Any:
    if isinstance(v, dict):
        for key, value in v.items():
            for what, item in (("key", key), ("value", value)):
                if not isinstance(item, str):
                    raise ValueError(
                        f"{what} {item!r} must be a quoted string (write '{item}': YAML reads bare numbers "
                        "as numbers and drops leading zeros)"
                    )
    return v


# ---------------------------------------------------------------- loading


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and remembers the line of every key path."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)  # type: ignore[arg-type]


def _key_lines(
    node: yaml.Node, prefix: tuple[Any, ...] = (), seen: set[int] | None = None
) -> dict[tuple[Any, ...], int]:
    # An alias (*name) shares its anchor's node: each node is walked once, or nested aliases (a
    # "billion laughs" file of a few lines) would take exponential time.
    seen = set() if seen is None else seen
    lines: dict[tuple[Any, ...], int] = {}
    if id(node) in seen:
        return lines
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = prefix + (key_node.value,)
            lines[path] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, path, seen))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = prefix + (i,)
            lines[path] = item.start_mark.line + 1
            lines.update(_key_lines(item, path, seen))
    return lines


USER_CONFIG = "~/.config/ukg2d365/config.yaml"
SYSTEM_CONFIG = "/etc/ukg2d365/ukg2d365.yaml"


def config_search_path() -> list[Path]:
    """Where a config is looked for when neither --config nor $UKG2D365_CONFIG names one, in this order."""
    return [Path(DEFAULT_CONFIG_NAME), Path(os.path.expanduser(USER_CONFIG)), Path(SYSTEM_CONFIG)]


def default_config_path() -> Path | None:
    """$UKG2D365_CONFIG, else the first file of the search path that exists; None when there is none."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    return next((p for p in config_search_path() if p.is_file()), None)


def example_config() -> str:
    """The commented starting config shipped in the package (the repository's config.example.yaml)."""
    return resources.files("ukg2d365").joinpath("config.example.yaml").read_text(encoding="utf-8")


def write_example_config(path: Path, *, force: bool = False) -> Path:
    """Write :func:`example_config` to ``path`` (mode 0600; a missing folder is created 0700).

    Refuses to overwrite an existing file unless ``force``; the file is replaced whole, never half-written.
    """
    path = Path(os.path.expanduser(path))
    if path.is_dir():
        raise ConfigError(f"{path} is a folder", hint="give a file name, e.g. --path /etc/ukg2d365/ukg2d365.yaml")
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; nothing was written", hint="edit it, or pass --force to replace it")
    try:
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(example_config())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
def key_line(path: Path, *keys: str) -> int | None:
    """The line of a key path (``key_line(p, "schedule", "sync_employees")``) in a YAML file, if it is there."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=_LineLoader)  # type: ignore[arg-type]
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return _key_lines(node).get(tuple(keys)) if node is not None else None




def declared_profile(path: Path | None) -> str | None:
    """``credentials.profile`` as a file that does not load as a config writes it; None when it names none.

    Whose alert channel a broken config's failure goes to: the value is returned as written (a wrong one is
    refused by its user), and a file that is not YAML at all names no profile.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) if path is not None else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return None
    section = data.get("credentials") if isinstance(data, dict) else None
    profile = section.get("profile") if isinstance(section, dict) else None
    return None if profile is None else str(profile)


def load_config(path: Path | str | None = None) -> Config:
    """Read, parse and validate the config file; raise ConfigError naming file, key path and line.

    Without a ``path``: ``$UKG2D365_CONFIG``, else ``./ukg2d365.yaml``, ``~/.config/ukg2d365/config.yaml``,
    ``/etc/ukg2d365/ukg2d365.yaml``, the first that exists.
    """
    cfg_path = Path(path) if path is not None else default_config_path()
    if cfg_path is None:
        raise ConfigError(
            "no config file: looked for " + ", ".join(str(p) for p in config_search_path()),
            hint=f"pass --config PATH, set {CONFIG_ENV}, or write one with `ukg2d365 init`",
        )
    try:
        text = cfg_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{cfg_path}: config file not found",
            hint=f"pass --config PATH, set {CONFIG_ENV}, or write one with `ukg2d365 init --path {cfg_path}`",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{cfg_path}: cannot read config file: {exc}") from None
    return parse_config(text, cfg_path)


def parse_config(text: str, cfg_path: Path) -> Config:
    try:
        node = yaml.compose(text, Loader=_LineLoader)  # type: ignore[arg-type]
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{cfg_path}:{where}: not valid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{cfg_path}: not valid YAML: nested too deeply") from None
    if data is None:
        raise ConfigError(f"{cfg_path}: the file is empty", hint="start from config.example.yaml")
    if not isinstance(data, dict):
        raise ConfigError(f"{cfg_path}: the top level must be a mapping of sections (ukg:, d365:, mapping:, ...)")
    lines = _key_lines(node) if node is not None else {}
    try:
        config = Config.model_validate(data)
    except RecursionError:
        raise ConfigError(f"{cfg_path}: a value is nested too deeply") from None
    except ValidationError as exc:
        raise ConfigError(_describe_validation_error(exc, cfg_path, lines)) from None
    problems = config.cross_problems()
    if problems:
        path, message = problems[0]
        line = lines.get(path) or lines.get(path[:-1])
        where = f" line {line}" if line else ""
        raise ConfigError(f"{cfg_path}:{where}: {'.'.join(path)}: {message}")
    config.source_path = cfg_path.resolve()
    return config


def _describe_validation_error(exc: ValidationError, cfg_path: Path, lines: dict[tuple[Any, ...], int]) -> str:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        line = None
        probe = loc
        while probe and line is None:
            line = lines.get(probe)
            probe = probe[:-1]
        key = ".".join(str(p) for p in loc) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against config.example.yaml)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        msg = re.sub(r"^Value error, ", "", msg)
        where = f" line {line}" if line else ""
        problems.append(f"{cfg_path}:{where}: {key}: {msg}")
    first = problems[0]
    if len(problems) > 1:
        first += f" (and {len(problems) - 1} more: " + "; ".join(p.split(": ", 1)[1] for p in problems[1:4]) + ")"
    return first
