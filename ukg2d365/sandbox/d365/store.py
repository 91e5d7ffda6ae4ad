"""What the simulated F&O holds (`D365State`) and a changeset's staged writes over it (`Txn`)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from ukg2d365.sandbox import catalog
from ukg2d365.sandbox.d365.schema import DELIMITERS, ENUMS, SPECS, ZERO, EntitySpec
from ukg2d365.sandbox.d365.values import collation_key, parse_dto


@dataclass(frozen=True)
class DimensionBacking:
    """Where a financial dimension's values come from."""

    kind: str  # "main" (MainAccounts), "custom" (FinancialDimensionValues) or "operating_unit"
    operating_unit_type: str = ""  # for kind "operating_unit", e.g. OMDepartment


RowKey = tuple[Any, ...]
JournalKey = tuple[Any, Any]
# Entity sets whose rows decide whether a display value is valid (or describe the dimension setup).
_DIMENSION_SETUP_SETS = frozenset({
    "MainAccounts", "FinancialDimensionValues", "OperatingUnits", "DimensionAttributes",
    "DimensionIntegrationFormats", "DimensionParameters"})
DISPLAY_VALUE_CACHE_SIZE = 8192  # D365State._display_values starts over when full


class D365State:
    """Everything the simulated F&O holds. One re-entrant lock guards it; the service takes it per request
    (and for the whole of a changeset), so concurrent requests from the HTTPS server are serialised."""

    def __init__(self, default_company: str = catalog.LEGAL_ENTITY, clock: Callable[[], float] = time.time) -> None:
        self.lock = threading.RLock()
        self.default_company = default_company.lower()
        self.clock = clock
        self.legal_entities: set[str] = {self.default_company}
        self.tables: dict[str, dict[RowKey, dict[str, Any]]] = {name: {} for name in SPECS}
        self.request_count: Counter[str] = Counter()
        self.dimensions: dict[str, DimensionBacking] = {"MainAccount": DimensionBacking("main")}
        self._chart_of_accounts = catalog.CHART_OF_ACCOUNTS
        # Display values that passed validation against the committed dimension setup: (value, legal entity,
        # ledger?) -> stored form. Emptied by _dimension_setup_changed whenever anything the check reads may
        # change (main accounts, dimension values, operating units, dimensions, formats, delimiter, chart of
        # accounts, legal entities); a changeset that stages such rows does not use it (Txn.dimension_rows).
        self._display_values: dict[tuple[str, str, bool], str] = {}
        self._delimiter_enum = "Hyphen"
        self._ledger_format: list[str] | None = None
        self._default_format: list[str] | None = None
        self._format_names: dict[tuple[str, str], list[str]] = {}
        self._sequences: Counter[str] = Counter()
        # secondary indexes, maintained when a transaction commits
        self._lines_by_journal: dict[JournalKey, dict[RowKey, dict[str, Any]]] = {}
        self._max_line: dict[JournalKey, Decimal] = {}
        # For the journal name's NewVoucher: debit minus credit of each journal's lines, and the voucher (and
        # whether it had an offset account) of the line created last.
        self._journal_balance: dict[JournalKey, Decimal] = {}
        self._last_voucher: dict[JournalKey, tuple[str, bool]] = {}
        self._employments_by_worker: dict[Any, set[RowKey]] = {}
        # A mode: refuse a LineNumber sent by the client, as peer code reports some F&O environments do
        # (Microsoft only says LineNumber "isn't required for an insert": MicrosoftDocs/dynamics-365-unified-
        # operations-public articles/fin-ops-core/dev-itpro/data-entities/entity-general-journal-ledgerjournalline.md).
        self.refuse_client_line_numbers = False
        self.set_legal_entity_time_zone(self.default_company, catalog.LEGAL_ENTITY_TIME_ZONE)

    # ---- construction ----

    @classmethod
    def seeded(cls, legal_entity: str = catalog.LEGAL_ENTITY, clock: Callable[[], float] = time.time) -> D365State:
        """The sandbox company: mapped main accounts, CostCenter (custom list) and Department (departments)
        dimensions, some of their values, dimensions UKG does not feed, active ledger and default dimension
        formats holding all of them, and GenJrn."""
        state = cls(legal_entity, clock)
        for i, acct in enumerate(catalog.GL_ACCOUNTS):
            state.add_main_account(acct.d365_account, acct.name, acct.main_account_type, rec_id=22565421000 + i)
        for j, (acct_id, name, acct_type) in enumerate(catalog.D365_EXTRA_MAIN_ACCOUNTS):
            state.add_main_account(acct_id, name, acct_type, rec_id=22565422000 + j)
        state._insert("DimensionAttributes", {"DimensionName": "MainAccount", "ReportColumnName": "MainAccount",
                                              "UseValuesFrom": "Main accounts"})
        state.add_custom_dimension("CostCenter")
        state.add_operating_unit_dimension("Department", "OMDepartment", "Departments")
        for name in catalog.UNFED_DIMENSIONS:
            state.add_custom_dimension(name)
        descriptions = {cc.code: cc.description for cc in catalog.COST_CENTERS}
        for code in catalog.D365_EXISTING_COST_CENTERS:
            state._insert("FinancialDimensionValues", {
                "FinancialDimension": "CostCenter", "LegalEntityId": "", "DimensionValue": code,
                "Description": descriptions[code]})
        names = {d.code: d.description for d in catalog.DEPARTMENTS}
        for code in catalog.D365_EXISTING_DEPARTMENTS:
            state._insert("OperatingUnits", {
                "OperatingUnitNumber": code, "OperatingUnitType": "OMDepartment", "Name": names[code],
                "NameAlias": names[code], "PartyNumber": state.next_number("PartyNumber", "", "{n:06d}")})
        state._insert("DimensionParameters", {"Key": 0, "DimensionSegmentDelimiter": "Hyphen"})
        state.set_delimiter({v: k for k, v in DELIMITERS.items()}[catalog.DELIMITER])
        state.set_ledger_format(list(catalog.LEDGER_FORMAT))
        state.set_default_dimension_format(list(catalog.DEFAULT_DIMENSION_FORMAT))
        state.add_journal_name(state.default_company, catalog.JOURNAL_NAME, "General journal")
        return state

    @property
    def chart_of_accounts(self) -> str:
        return self._chart_of_accounts

    @chart_of_accounts.setter
    def chart_of_accounts(self, value: str) -> None:
        with self.lock:
            self._chart_of_accounts = value
            self._dimension_setup_changed()

    def _dimension_setup_changed(self) -> None:
        self._display_values.clear()

    def _insert(self, set_name: str, values: dict[str, Any]) -> dict[str, Any]:
        spec = SPECS[set_name]
        rec = spec.default_record()
        rec.update(values)
        with self.lock:
            self._apply(set_name, key_of(spec, rec), rec)
        return rec

    # ---- reconfiguration (tests, demo) ----

    def add_main_account(self, main_account_id: str, name: str, account_type: str = "Expense",
                         rec_id: int | None = None) -> None:
        with self.lock:
            self._insert("MainAccounts", {
                "ChartOfAccounts": self.chart_of_accounts, "MainAccountId": main_account_id, "Name": name,
                "MainAccountType": account_type, "IsSuspended": "No", "ChartOfAccountsRecId": 5637144576,
                "MainAccountRecId": rec_id or 22565423000 + len(self.tables["MainAccounts"])})

    def remove_main_account(self, main_account_id: str) -> None:
        with self.lock:
            self._apply("MainAccounts", (collation_key(self.chart_of_accounts), collation_key(main_account_id)), None)

    def add_legal_entity(self, data_area_id: str, journal_name: str = catalog.JOURNAL_NAME) -> None:
        """A second company, with its own journal name and number sequence (for cross-company tests)."""
        with self.lock:
            self.legal_entities.add(data_area_id.lower())
            self._dimension_setup_changed()
            self.add_journal_name(data_area_id.lower(), journal_name, "General journal")
            self.set_legal_entity_time_zone(data_area_id, catalog.LEGAL_ENTITY_TIME_ZONE)

    def set_legal_entity_time_zone(self, data_area_id: str, time_zone: str) -> None:
        """The company's LegalEntities row (its id lower case, as F&O answers it) with this TimeZone member."""
        if time_zone not in ENUMS["Timezone"]:
            raise ValueError(f"unknown Timezone member {time_zone!r}")
        area = data_area_id.lower()
        self._insert("LegalEntities", {"LegalEntityId": area, "Name": area.upper(), "NameAlias": area.upper(),
                                       "TimeZone": time_zone, "LanguageId": "en-US"})

    def add_journal_name(self, data_area_id: str, name: str, description: str,
                         new_voucher: str = "BalanceSheet") -> None:
        self._insert("JournalNames", {
            "dataAreaId": data_area_id.lower(), "Name": name, "Description": description, "Type": "Daily",
            "VoucherSeriesCode": "GNJL", "NewVoucher": new_voucher, "PostingLayer": "Current",
            "DetailLevel": "Summary"})

    def set_new_voucher(self, setting: str, journal_name: str = catalog.JOURNAL_NAME,
                        legal_entity: str | None = None) -> None:
        """Change a journal name's New voucher (BalanceSheet | Manually | OneVoucher), as a user would in F&O."""
        if setting not in ENUMS["NewVoucher"]:
            raise ValueError(f"unknown NewVoucher {setting!r}")
        with self.lock:
            key = (collation_key(legal_entity or self.default_company), collation_key(journal_name))
            row = self.tables["JournalNames"].get(key)
            if row is None:
                raise ValueError(f"no journal name {journal_name} in {legal_entity or self.default_company}")
            self._apply("JournalNames", key, {**row, "NewVoucher": setting})

    def add_custom_dimension(self, name: str) -> None:
        """A custom-list financial dimension: its values live in FinancialDimensionValues."""
        self._add_dimension(name, DimensionBacking("custom"), "< Custom list >")

    def add_operating_unit_dimension(self, name: str, operating_unit_type: str, use_values_from: str) -> None:
        """An entity-backed dimension whose values are OperatingUnits of one type (e.g. Departments)."""
        if operating_unit_type not in ENUMS["OmOperatingUnitType"]:
            raise ValueError(f"unknown OmOperatingUnitType {operating_unit_type!r}")
        self._add_dimension(name, DimensionBacking("operating_unit", operating_unit_type), use_values_from)

    def _add_dimension(self, name: str, backing: DimensionBacking, use_values_from: str) -> None:
        with self.lock:
            self.dimensions[name] = backing
            self._dimension_setup_changed()
            self._insert("DimensionAttributes", {"DimensionName": name, "ReportColumnName": name,
                                                 "UseValuesFrom": use_values_from})

    def set_ledger_format(self, names: list[str] | None) -> None:
        """Make `names` the active ledger dimension format; None or [] leaves no active format."""
        self._set_format("LedgerDimensionFormat", "DataEntityLedgerDimensionFormat", names, main_account=True)

    def set_default_dimension_format(self, names: list[str] | None) -> None:
        self._set_format("DefaultDimensionFormat", "DataEntityDefaultDimensionFormat", names, main_account=False)

    def _set_format(self, format_name: str, format_type: str, names: list[str] | None, main_account: bool) -> None:
        names = list(names or [])
        if names:
            if main_account and names[0] != "MainAccount":
                raise ValueError("a ledger dimension format starts with MainAccount")
            dims = names[1:] if main_account else names
            unknown = [n for n in dims if n not in self.dimensions or n == "MainAccount"]
            if unknown:
                raise ValueError(f"not a usable financial dimension here: {', '.join(unknown)}")
            if len(set(names)) != len(names):
                raise ValueError("a dimension format lists a dimension twice")
        with self.lock:
            # only one format of a type is active at a time
            for key, rec in list(self.tables["DimensionIntegrationFormats"].items()):
                if rec["DimensionFormatType"] == format_type:
                    self._apply("DimensionIntegrationFormats", key, {**rec, "IsActive": "No"})
            if names:
                self._format_names[(format_name, format_type)] = names
                self._insert("DimensionIntegrationFormats", {
                    "DimensionFormatName": format_name, "DimensionFormatType": format_type,
                    "FinancialDimensionFormat": self.delimiter.join(names), "IsActive": "Yes"})
            if main_account:
                self._ledger_format = names or None
            else:
                self._default_format = names or None
            self._dimension_setup_changed()

    @property
    def delimiter(self) -> str:
        return DELIMITERS[self._delimiter_enum]

    @property
    def ledger_format(self) -> list[str] | None:
        return list(self._ledger_format) if self._ledger_format else None

    def set_delimiter(self, enum_name: str) -> None:
        """Change DimensionParameters.DimensionSegmentDelimiter (Hyphen, Period, Underscore, ...)."""
        if enum_name not in DELIMITERS:
            raise ValueError(f"unknown DimensionSegmentDelimiter {enum_name!r}")
        with self.lock:
            self._delimiter_enum = enum_name
            self._dimension_setup_changed()
            self._insert("DimensionParameters", {"Key": 0, "DimensionSegmentDelimiter": enum_name})
            # FinancialDimensionFormat is shown with the configured delimiter between the dimension names
            # ("MainAccount-CostCenter-Department"), the form integration peers split with that delimiter
            for key, rec in list(self.tables["DimensionIntegrationFormats"].items()):
                names = self._format_names[(rec["DimensionFormatName"], rec["DimensionFormatType"])]
                self._apply("DimensionIntegrationFormats", key,
                            {**rec, "FinancialDimensionFormat": self.delimiter.join(names)})

    def next_number(self, sequence: str, scope: str, pattern: str) -> str:
        """Next value of a number sequence (not rolled back with a failed changeset, like F&O's)."""
        with self.lock:
            self._sequences[f"{sequence}/{scope}"] += 1
            return pattern.format(n=self._sequences[f"{sequence}/{scope}"], scope=scope.upper())

    # ---- inspection (tests, demo) ----

    def entities(self, set_name: str) -> list[dict[str, Any]]:
        """Copies of the stored rows of one entity set (raw storage, no computed fields)."""
        with self.lock:
            return [dict(rec) for rec in self.tables[set_name].values()]

    def journals(self, legal_entity: str | None = None) -> list[dict[str, Any]]:
        """Journal headers (with computed totals) and their lines under "lines", in creation order."""
        with self.lock:
            out = []
            for rec in self.tables["LedgerJournalHeaders"].values():
                if legal_entity is not None and rec["dataAreaId"] != legal_entity.lower():
                    continue
                header = self.header_view(rec)
                header["lines"] = [dict(line) for line in self._journal_lines(journal_key(rec)).values()]
                out.append(header)
            return out

    def lines(self, journal_batch_number: str, legal_entity: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            jkey = (collation_key(legal_entity or self.default_company), collation_key(journal_batch_number))
            return [dict(line) for line in self._journal_lines(jkey).values()]

    def header_view(self, rec: dict[str, Any]) -> dict[str, Any]:
        """The header as F&O answers it: JournalTotalDebit/Credit summed from its lines."""
        debit = credit = Decimal("0")
        for line in self._journal_lines(journal_key(rec)).values():
            debit += line["DebitAmount"]
            credit += line["CreditAmount"]
        return {**rec, "JournalTotalDebit": debit, "JournalTotalCredit": credit}

    def _journal_lines(self, jkey: JournalKey) -> dict[RowKey, dict[str, Any]]:
        return self._lines_by_journal.get(jkey, {})

    def post_journal(self, journal_batch_number: str, legal_entity: str | None = None) -> str:
        """Post a journal as a user would in F&O: checks each voucher balances and has one date, marks the
        header posted and writes GeneralJournalAccountEntries. Returns the GL journal number."""
        with self.lock:
            area = (legal_entity or self.default_company).lower()
            hkey = (collation_key(area), collation_key(journal_batch_number))
            header = self.tables["LedgerJournalHeaders"].get(hkey)
            if header is None:
                raise ValueError(f"Journal {journal_batch_number} does not exist in {area}.")
            if header["IsPosted"] == "Yes":
                raise ValueError(f"Journal {journal_batch_number} is already posted.")
            lines = list(self._journal_lines(hkey).values())
            if not lines:
                raise ValueError(f"Journal {journal_batch_number} has no lines.")
            vouchers: dict[str, tuple[str, Decimal]] = {}
            for line in lines:
                date, balance = vouchers.get(line["Voucher"], (line["TransDate"], Decimal("0")))
                if date != line["TransDate"]:
                    raise ValueError(f"Voucher {line['Voucher']}: all lines of a voucher must have the same date.")
                vouchers[line["Voucher"]] = (date, balance + line["DebitAmount"] - line["CreditAmount"])
            for voucher, (_, balance) in vouchers.items():
                if balance != 0:
                    raise ValueError(f"The transactions on voucher {voucher} do not balance ({balance}).")
            gl_number = self.next_number("GeneralJournalNumber", "", "{n:08d}")
            for line in lines:
                self._write_gl_entry(header, line, gl_number)
            self._apply("LedgerJournalHeaders", hkey, {**header, "IsPosted": "Yes"})
            return gl_number

    def _write_gl_entry(self, header: dict[str, Any], line: dict[str, Any], gl_number: str) -> None:
        amount = line["DebitAmount"] - line["CreditAmount"]
        display = line["AccountDisplayValue"]
        self._insert("GeneralJournalAccountEntries", {
            "GeneralJournalAccountEntryRecId": 5637200000 + len(self.tables["GeneralJournalAccountEntries"]),
            "JournalNumber": gl_number, "Voucher": line["Voucher"], "AccountingDate": line["TransDate"],
            "PostingLayer": header["PostingLayer"], "LedgerAccount": display, "AccountDisplayValue": display,
            "TransactionCurrencyCode": line["CurrencyCode"], "TransactionCurrencyAmount": amount,
            "TransactionCurrencyDebitAmount": line["DebitAmount"],
            "TransactionCurrencyCreditAmount": line["CreditAmount"], "AccountingCurrencyAmount": amount,
            "ReportingCurrencyAmount": amount, "Description": line["Text"], "PostingType": "LedgerJournal",
            "JournalCategory": "GeneralJournal", "IsCredit": "Yes" if amount < 0 else "No",
            "DocumentDate": line["DocumentDate"], "DocumentNumber": line["Document"],
            "LedgerName": header["dataAreaId"].upper(), "DataArea": header["dataAreaId"]})

    # ---- storage primitives ----

    def _apply(self, set_name: str, key: RowKey, rec: dict[str, Any] | None) -> None:
        """Write one row to storage and keep the secondary indexes in step (caller holds the lock)."""
        table = self.tables[set_name]
        old = table.get(key)
        if set_name in _DIMENSION_SETUP_SETS:
            self._dimension_setup_changed()
        if rec is None:
            table.pop(key, None)
        else:
            table[key] = rec
        if set_name == "LedgerJournalLines":
            jkey = key[:2]
            if rec is None:
                lines = self._lines_by_journal.get(jkey)
                if lines is not None:
                    lines.pop(key, None)
            else:
                self._lines_by_journal.setdefault(jkey, {})[key] = rec
                self._max_line[jkey] = max(self._max_line.get(jkey, ZERO), rec["LineNumber"])
            self._journal_balance[jkey] = self._journal_balance.get(jkey, ZERO) + _net(rec) - _net(old)
        elif set_name == "LedgerJournalHeaders" and rec is None:
            self._lines_by_journal.pop(key, None)
            self._max_line.pop(key, None)
            self._journal_balance.pop(key, None)
            self._last_voucher.pop(key, None)
        elif set_name == "EmploymentsV2":
            worker = key[0]
            if rec is None and old is not None:
                self._employments_by_worker.get(worker, set()).discard(key)
            elif rec is not None:
                self._employments_by_worker.setdefault(worker, set()).add(key)

    def worker_status(self, worker: dict[str, Any], extra: Iterable[dict[str, Any]] = ()) -> str:
        """Employed while an employment is open, Terminated once all have ended, else what was stored."""
        employments = [self.tables["EmploymentsV2"][k]
                       for k in self._employments_by_worker.get(collation_key(worker["PersonnelNumber"]), ())]
        employments.extend(extra)
        if not employments:
            return str(worker["WorkerStatus"])
        now = datetime.fromtimestamp(self.clock(), timezone.utc)
        for emp in employments:
            end = parse_dto(emp["EmploymentEndDate"])
            if end is None or end.year <= 1900 or end > now:
                return "Employed"
        return "Terminated"


def _net(line: dict[str, Any] | None) -> Decimal:
    """Debit minus credit of a journal line (zero for none)."""
    return ZERO if line is None else line["DebitAmount"] - line["CreditAmount"]


def key_of(spec: EntitySpec, rec: dict[str, Any]) -> RowKey:
    return tuple([collation_key(rec[k]) for k in spec.keys])


def journal_key(rec: dict[str, Any]) -> JournalKey:
    area, number = rec["dataAreaId"], rec["JournalBatchNumber"]
    # collation_key inlined: this runs twice per journal line written
    return (area.casefold() if isinstance(area, str) else area,
            number.casefold() if isinstance(number, str) else number)


class Txn:
    """A changeset's writes, staged over the committed state and applied only at commit.

    Reads see staged rows first, so a line can reference a header created earlier in the same
    changeset. Nothing is copied up front: a rolled-back changeset just drops this object.
    """

    def __init__(self, state: D365State) -> None:
        self.state = state
        self.staged: dict[str, dict[RowKey, dict[str, Any] | None]] = {}
        self.max_line: dict[JournalKey, Decimal] = {}
        self.balance_delta: dict[JournalKey, Decimal] = {}
        self.last_voucher: dict[JournalKey, tuple[str, bool]] = {}
        self.dimension_rows = False  # staged a row of _DIMENSION_SETUP_SETS: display values are checked afresh

    def get(self, set_name: str, key: RowKey) -> dict[str, Any] | None:
        staged = self.staged.get(set_name)
        if staged is not None and key in staged:
            return staged[key]
        return self.state.tables[set_name].get(key)

    def put(self, set_name: str, key: RowKey, rec: dict[str, Any]) -> None:
        if set_name == "LedgerJournalLines":
            jkey = key[:2]
            self.balance_delta[jkey] = self.balance_delta.get(jkey, ZERO) + _net(rec) - _net(self.get(set_name, key))
            self.max_line[jkey] = max(self.next_line_base(jkey), rec["LineNumber"])
        elif set_name in _DIMENSION_SETUP_SETS:
            self.dimension_rows = True
        self.staged.setdefault(set_name, {})[key] = rec

    def delete(self, set_name: str, key: RowKey) -> None:
        if set_name == "LedgerJournalLines":
            jkey = key[:2]
            self.balance_delta[jkey] = self.balance_delta.get(jkey, ZERO) - _net(self.get(set_name, key))
        self.staged.setdefault(set_name, {})[key] = None
        if set_name in _DIMENSION_SETUP_SETS:
            self.dimension_rows = True

    def journal_balance(self, jkey: JournalKey) -> Decimal:
        """Debit minus credit of the journal's lines, staged ones included."""
        return self.state._journal_balance.get(jkey, ZERO) + self.balance_delta.get(jkey, ZERO)

    def last_line_voucher(self, jkey: JournalKey) -> tuple[str, bool] | None:
        return self.last_voucher.get(jkey) or self.state._last_voucher.get(jkey)

    def next_line_base(self, jkey: JournalKey) -> Decimal:
        if jkey in self.max_line:
            return self.max_line[jkey]
        return self.state._max_line.get(jkey, ZERO)

    def journal_line_keys(self, jkey: JournalKey) -> list[RowKey]:
        keys = dict.fromkeys(self.state._journal_lines(jkey))
        for key, rec in self.staged.get("LedgerJournalLines", {}).items():
            if key[:2] == jkey:
                if rec is None:
                    keys.pop(key, None)
                else:
                    keys[key] = None
        return [k for k in keys if self.get("LedgerJournalLines", k) is not None]

    def staged_employments(self, worker_key: Any) -> list[dict[str, Any]]:
        return [rec for key, rec in self.staged.get("EmploymentsV2", {}).items()
                if rec is not None and key[0] == worker_key]

    def commit(self) -> None:
        for set_name, rows in self.staged.items():
            for key, rec in rows.items():
                self.state._apply(set_name, key, rec)
        self.state._last_voucher.update(self.last_voucher)
