"""Create, update and delete rules per entity set, applied to a transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from ukg2d365.sandbox.d365.errors import ODataError, duplicate_error, not_found, write_error
from ukg2d365.sandbox.d365.schema import (
    EMPLOYEE_OWN_FIELDS,
    EMPLOYEE_TO_EMPLOYMENT,
    EMPLOYEE_TYPES,
    EMPLOYEE_WORKER_FIELDS,
    EMPTY_DATE,
    EMPTY_DATES,
    KNOWN_CURRENCIES,
    NEVER,
    SPECS,
    ZERO,
    EntitySpec,
    type_default,
)
from ukg2d365.sandbox.d365.store import (
    DISPLAY_VALUE_CACHE_SIZE,
    D365State,
    DimensionBacking,
    JournalKey,
    RowKey,
    Txn,
    journal_key,
    key_of,
)
from ukg2d365.sandbox.d365.values import coerce_body, collation_key, render_dto


def _person_name(rec: dict[str, Any]) -> str:
    return " ".join(p for p in (rec["FirstName"], rec["MiddleName"], rec["LastName"]) if p)


def _update_person(worker: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A worker with new person fields; the name follows first/last name unless it was given too."""
    out = {**worker, **values}
    if "Name" not in values and any(k in values for k in ("FirstName", "MiddleName", "LastName")):
        out["Name"] = _person_name(out)
    return out


def _dmf_date(text: str) -> str:
    """A package's date-only TRANSDATE (ISO, the sandbox data project's format) as the entity stores dates."""
    return f"{text}T12:00:00Z" if len(text) == 10 else text


def _check_line_values(spec: EntitySpec, rec: dict[str, Any], area: str) -> None:
    """A journal line's date, currency, amounts and companies, checked before its accounts."""
    if rec["TransDate"] in EMPTY_DATES:
        raise write_error(spec, "Error: Field 'Date' must be filled in.")
    if not rec["CurrencyCode"]:
        raise write_error(spec, "Error: Field 'Currency' must be filled in.")
    if rec["CurrencyCode"].upper() not in KNOWN_CURRENCIES:
        raise write_error(spec, f"Error: Currency code {rec['CurrencyCode']} does not exist.")
    _check_amounts(spec, rec["DebitAmount"], rec["CreditAmount"])
    if (rec["Company"] and collation_key(rec["Company"]) != collation_key(area)) or (
            rec["OffsetCompany"] and collation_key(rec["OffsetCompany"]) != collation_key(area)):
        raise write_error(spec, "Error: This entity doesn't support intercompany transactions.")


def _check_amounts(spec: EntitySpec, debit: Decimal, credit: Decimal) -> None:
    """One of debit and credit, positive; the other zero."""
    if debit < ZERO or credit < ZERO:  # a Decimal zero: cheaper to compare with than the int 0
        raise write_error(spec, "Error: Debit and credit amounts cannot be negative.")
    if debit != ZERO and credit != ZERO:
        raise write_error(spec, "Error: A line can have a debit amount or a credit amount, not both.")
    if debit == ZERO and credit == ZERO:
        raise write_error(spec, "Error: Enter a debit amount or a credit amount.")


class Entities:
    """Create/update/delete rules per entity set, applied to a transaction."""

    def __init__(self, state: D365State) -> None:
        self.state = state

    # ---- shared helpers ----

    def _company(self, spec: EntitySpec, value: str | None) -> str:
        area = (value or self.state.default_company).lower()
        if area not in self.state.legal_entities:
            raise write_error(spec, f"Error: Company '{area}' does not exist.")
        return area

    def _required(self, spec: EntitySpec, rec: dict[str, Any], *props: str) -> None:
        for prop in props:
            value = rec[prop]
            if value == "" or value in EMPTY_DATES:
                raise write_error(spec, f"Error: Field '{prop}' must be filled in.")

    def _insert(self, txn: Txn, spec: EntitySpec, rec: dict[str, Any]) -> dict[str, Any]:
        key = key_of(spec, rec)
        if txn.get(spec.name, key) is not None:
            raise duplicate_error(spec, rec)
        txn.put(spec.name, key, rec)
        return rec

    def _existing(self, txn: Txn, spec: EntitySpec, key: RowKey) -> dict[str, Any]:
        rec = txn.get(spec.name, key)
        if rec is None:
            raise not_found(spec.name)
        return rec

    def _merge(self, spec: EntitySpec, current: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        for k in spec.keys:
            if k in values and collation_key(values[k]) != collation_key(current[k]):
                raise write_error(spec, f"Error: The key field '{k}' cannot be changed.")
        return {**current, **{k: v for k, v in values.items() if k not in spec.keys}}

    # ---- dimensions ----

    def validate_display_value(self, spec: EntitySpec, txn: Txn, value: str, legal_entity: str,
                               ledger: bool) -> str:
        """Split a display value like F&O's import does and check every segment; returns the stored form."""
        # A value already found valid against the same committed setup is valid again (see
        # D365State._display_values); only successes are remembered, so errors are always worked out afresh.
        cache = None if txn.dimension_rows else self.state._display_values
        cache_key = (value, legal_entity, ledger)
        if cache is not None:
            stored = cache.get(cache_key)
            if stored is not None:
                return stored
        stored = self._validate_display_value(spec, txn, value, legal_entity, ledger)
        if cache is not None:
            if len(cache) >= DISPLAY_VALUE_CACHE_SIZE:
                cache.clear()
            cache[cache_key] = stored
        return stored

    def _validate_display_value(self, spec: EntitySpec, txn: Txn, value: str, legal_entity: str,
                                ledger: bool) -> str:
        fmt = self.state._ledger_format if ledger else self.state._default_format
        kind = "ledger" if ledger else "default"
        if not fmt:
            raise write_error(spec, f"Error: No active {kind} dimension format is set up in Financial dimension "
                                    "configuration for integrating applications.")
        delimiter = self.state.delimiter
        segments = value.split(delimiter)
        # extra segments beyond the format are silently dropped; missing trailing ones are blank
        kept = segments[: len(fmt)]
        segments = kept + [""] * (len(fmt) - len(kept))
        for name, segment in zip(fmt, segments, strict=True):
            backing = self.state.dimensions[name]
            if backing.kind == "main":
                self._check_main_account(spec, txn, segment, value)
            elif segment:
                self._check_dimension_value(spec, txn, name, backing, segment, legal_entity)
        return delimiter.join(kept)

    def _check_main_account(self, spec: EntitySpec, txn: Txn, main_account: str, display: str) -> None:
        if not main_account:
            raise write_error(spec, f"Error: The main account segment of '{display}' is empty.",
                              "Error: Account number for transaction type Ledger journal does not exist.")
        acct = txn.get("MainAccounts", (collation_key(self.state.chart_of_accounts), collation_key(main_account)))
        if acct is None:
            raise write_error(spec, f"Error: Main account {main_account} does not exist.",
                              "Error: Account number for transaction type Ledger journal does not exist.")
        if acct["IsSuspended"] == "Yes":
            raise write_error(spec, f"Error: Main account {main_account} is suspended.")

    def _check_dimension_value(self, spec: EntitySpec, txn: Txn, name: str, backing: DimensionBacking,
                               value: str, legal_entity: str) -> None:
        if backing.kind == "custom":
            dimension, member = collation_key(name), collation_key(value)
            rec = (txn.get("FinancialDimensionValues", (dimension, "", member))
                   or txn.get("FinancialDimensionValues", (dimension, collation_key(legal_entity), member)))
        else:
            unit = txn.get("OperatingUnits", (collation_key(value),))
            rec = unit if unit is not None and unit["OperatingUnitType"] == backing.operating_unit_type else None
        if rec is None:
            raise write_error(spec, f"Error: Value '{value}' does not exist for dimension '{name}'.")
        if rec.get("IsSuspended") == "Yes":
            raise write_error(spec, f"Error: Value '{value}' of dimension '{name}' is suspended.")

    # ---- LedgerJournalHeaders ----

    def create_LedgerJournalHeaders(self, txn: Txn, spec: EntitySpec, values: dict[str, Any]) -> dict[str, Any]:
        rec = spec.default_record()
        rec.update(values)
        rec["dataAreaId"] = self._company(spec, values.get("dataAreaId"))
        self._required(spec, rec, "JournalName")
        journal_name = txn.get("JournalNames", (collation_key(rec["dataAreaId"]), collation_key(rec["JournalName"])))
        if journal_name is None:
            raise write_error(spec, f"Error: Journal name {rec['JournalName']} does not exist.")
        rec["JournalName"] = journal_name["Name"]
        if not rec["JournalBatchNumber"]:
            rec["JournalBatchNumber"] = self.state.next_number(
                "JournalBatchNumber", rec["dataAreaId"], "{scope}-{n:06d}")
        if "Description" not in values:
            rec["Description"] = journal_name["Description"]
        if "PostingLayer" not in values:
            rec["PostingLayer"] = journal_name["PostingLayer"]
        # AccountingCurrency stays as sent: a live create answers "AccountingCurrency": "" (NangoHQ/integration-
        # templates integrations/microsoft-dynamics-365-finance-and-operations-cc/tests/create-ledger-journal.test.json)
        rec["IsPosted"] = "No"
        rec["JournalTotalDebit"] = rec["JournalTotalCredit"] = Decimal("0")
        return self._insert(txn, spec, rec)

    def update_LedgerJournalHeaders(self, txn: Txn, spec: EntitySpec, key: RowKey,
                                    values: dict[str, Any]) -> dict[str, Any]:
        current = self._existing(txn, spec, key)
        self._refuse_posted(spec, current)
        if values.get("IsPosted", "No") != "No":
            raise write_error(spec, "Error: A journal cannot be posted by updating IsPosted.")
        if "JournalName" in values and collation_key(values["JournalName"]) != collation_key(current["JournalName"]):
            raise write_error(spec, "Error: The journal name of an existing journal cannot be changed.")
        values = {k: v for k, v in values.items() if k not in ("JournalTotalDebit", "JournalTotalCredit")}
        rec = self._merge(spec, current, values)
        txn.put(spec.name, key, rec)
        return rec

    def delete_LedgerJournalHeaders(self, txn: Txn, spec: EntitySpec, key: RowKey) -> None:
        current = self._existing(txn, spec, key)
        self._refuse_posted(spec, current)
        for line_key in txn.journal_line_keys(key[:2]):
            txn.delete("LedgerJournalLines", line_key)
        txn.delete(spec.name, key)

    def _refuse_posted(self, spec: EntitySpec, header: dict[str, Any]) -> None:
        if header["IsPosted"] == "Yes":
            raise write_error(spec, f"Error: Journal {header['JournalBatchNumber']} is posted and cannot be "
                                    "changed.")

    # ---- LedgerJournalLines ----

    def create_LedgerJournalLines(self, txn: Txn, spec: EntitySpec, values: dict[str, Any]) -> dict[str, Any]:
        rec = spec.default_record()
        rec.update(values)
        area = rec["dataAreaId"] = self._company(spec, values.get("dataAreaId"))
        header = self._line_header(txn, spec, rec)
        rec["JournalBatchNumber"] = header["JournalBatchNumber"]
        jkey = journal_key(rec)
        if self.state.refuse_client_line_numbers and "LineNumber" in values:
            raise write_error(spec, "Error: The field 'LineNumber' cannot be set: the line number of a journal "
                                    "line is assigned by the system.")
        if "LineNumber" not in values or rec["LineNumber"] == 0:
            rec["LineNumber"] = txn.next_line_base(jkey) + 1
        elif rec["LineNumber"] < 0:
            raise write_error(spec, "Error: The line number cannot be negative.")
        key = (*jkey, collation_key(rec["LineNumber"]))  # = key_of(spec, rec)
        if txn.get(spec.name, key) is not None:
            raise duplicate_error(spec, rec)
        self._validate_line(txn, spec, rec, values, area)
        rec["Voucher"] = self._voucher(txn, spec, header, jkey, rec, area)
        rec["Company"] = rec["Company"] or area
        if rec["OffsetAccountDisplayValue"]:
            rec["OffsetCompany"] = rec["OffsetCompany"] or area
        # the key fields and the transaction are unchanged since the duplicate check above
        txn.put(spec.name, key, rec)
        return rec

    def _line_header(self, txn: Txn, spec: EntitySpec, rec: dict[str, Any]) -> dict[str, Any]:
        if not rec["JournalBatchNumber"]:
            raise write_error(spec, "Error: Field 'Journal batch number' must be filled in.")
        header = txn.get("LedgerJournalHeaders", journal_key(rec))
        if header is None:
            raise write_error(spec, f"Error: Journal batch number {rec['JournalBatchNumber']} does not exist in "
                                    f"company {rec['dataAreaId']}. Lines must reference an existing, unposted "
                                    "journal header.")
        if header["IsPosted"] == "Yes":
            raise write_error(spec, f"Error: Journal {header['JournalBatchNumber']} is posted; its lines cannot "
                                    "be changed.")
        return header

    def _validate_line(self, txn: Txn, spec: EntitySpec, rec: dict[str, Any], given: dict[str, Any],
                       area: str) -> None:
        """Check a line as F&O does on write; the display values `given` are replaced by their stored form."""
        _check_line_values(spec, rec, area)
        if not rec["AccountDisplayValue"]:
            raise write_error(spec, "Error: Field 'Account' must be filled in.")
        for type_prop, value_prop in (("AccountType", "AccountDisplayValue"),
                                      ("OffsetAccountType", "OffsetAccountDisplayValue")):
            if rec[value_prop] and (value_prop in given or type_prop in given):
                rec[value_prop] = self._ledger_account(txn, spec, rec[type_prop], rec[value_prop], area)
        for prop in ("DefaultDimensionDisplayValue", "OffsetDefaultDimensionDisplayValue"):
            if rec[prop] and prop in given:
                rec[prop] = self.validate_display_value(spec, txn, rec[prop], area, ledger=False)

    def _ledger_account(self, txn: Txn, spec: EntitySpec, account_type: str, display: str, area: str) -> str:
        """The stored form of a line's (offset) account: only Ledger accounts exist in the sandbox."""
        if account_type != "Ledger":
            raise write_error(spec, f"Error: Account '{display}' does not exist for account type {account_type}.")
        return self.validate_display_value(spec, txn, display, area, ledger=True)

    def _voucher(self, txn: Txn, spec: EntitySpec, header: dict[str, Any], jkey: JournalKey,
                 rec: dict[str, Any], area: str) -> str:
        """The line's voucher, by the journal name's New voucher setting (JournalNames.NewVoucher, whose members
        ntrtd/d365-agent asset/client/src/NewVoucher.ts lists: BalanceSheet, Manually, OneVoucher).

        Row by row, as MicrosoftDocs/dynamics-365-unified-operations-public articles/fin-ops-core/fin-ops/
        data-entities/tips-tricks-import-general-journal-entity.md describes an import that is not set-based:
        "One voucher only" gives the journal one voucher; "In connection of balance" gives the first line a new
        voucher, then a new one whenever the lines imported so far balance (or the previous line carried an
        offset account); Manually takes the voucher the line brings. A voucher the client sends is kept.
        """
        given = rec["Voucher"]
        has_offset = bool(rec["OffsetAccountDisplayValue"])
        if given:
            voucher = given
        else:
            name = txn.get("JournalNames", (collation_key(area), collation_key(header["JournalName"])))
            setting = name["NewVoucher"] if name is not None else "BalanceSheet"
            last = txn.last_line_voucher(jkey)
            if setting == "Manually":
                raise write_error(spec, "Error: Field 'Voucher' must be filled in: the journal name "
                                        f"{header['JournalName']} assigns vouchers manually.")
            if last is not None and (setting == "OneVoucher" or (not last[1] and txn.journal_balance(jkey) != 0)):
                voucher = last[0]
            else:
                # the recorded shape: "Voucher": "DAT-000001" next to "JournalBatchNumber": "DAT-000003"
                # (NangoHQ/integration-templates ... tests/list-ledger-journal-lines.test.json)
                voucher = self.state.next_number("Voucher", area, "{scope}-{n:06d}")
        txn.last_voucher[jkey] = (voucher, has_offset)
        return voucher

    def update_LedgerJournalLines(self, txn: Txn, spec: EntitySpec, key: RowKey,
                                  values: dict[str, Any]) -> dict[str, Any]:
        current = self._existing(txn, spec, key)
        self._line_header(txn, spec, current)
        rec = self._merge(spec, current, values)
        self._validate_line(txn, spec, rec, values, current["dataAreaId"])
        txn.put(spec.name, key, rec)
        return rec

    def delete_LedgerJournalLines(self, txn: Txn, spec: EntitySpec, key: RowKey) -> None:
        current = self._existing(txn, spec, key)
        self._line_header(txn, spec, current)
        txn.delete(spec.name, key)

    # ---- FinancialDimensionValues ----

    def create_FinancialDimensionValues(self, txn: Txn, spec: EntitySpec,
                                        values: dict[str, Any]) -> dict[str, Any]:
        rec = spec.default_record()
        rec.update(values)
        self._required(spec, rec, "FinancialDimension", "DimensionValue")
        name = next((n for n in self.state.dimensions if n.casefold() == rec["FinancialDimension"].casefold()), None)
        if name is None or name == "MainAccount":
            raise write_error(spec, f"Error: Financial dimension {rec['FinancialDimension']} does not exist.")
        rec["FinancialDimension"] = name
        backing = self.state.dimensions[name]
        if backing.kind != "custom":
            raise write_error(
                spec, f"Error: The financial dimension {name} is not a custom list. Its values come from "
                      f"{backing.operating_unit_type} operating units; create them there.")
        if rec["LegalEntityId"]:
            rec["LegalEntityId"] = self._company(spec, rec["LegalEntityId"])
        if len(rec["DimensionValue"]) > 30:
            raise write_error(spec, "Error: The dimension value cannot be longer than 30 characters.")
        return self._insert(txn, spec, rec)

    # ---- OperatingUnits ----

    def create_OperatingUnits(self, txn: Txn, spec: EntitySpec, values: dict[str, Any]) -> dict[str, Any]:
        rec = spec.default_record()
        rec.update(values)
        if rec["OperatingUnitType"] == "None":
            raise write_error(spec, "Error: Field 'Operating unit type' must be filled in.")
        self._required(spec, rec, "Name")
        if not rec["OperatingUnitNumber"]:
            rec["OperatingUnitNumber"] = self.state.next_number("OperatingUnitNumber", "", "{n:06d}")
        if not rec["PartyNumber"]:
            rec["PartyNumber"] = self.state.next_number("PartyNumber", "", "{n:06d}")
        return self._insert(txn, spec, rec)

    # ---- MainAccounts ----

    def create_MainAccounts(self, txn: Txn, spec: EntitySpec, values: dict[str, Any]) -> dict[str, Any]:
        rec = spec.default_record()
        rec.update(values)
        rec["ChartOfAccounts"] = rec["ChartOfAccounts"] or self.state.chart_of_accounts
        self._required(spec, rec, "MainAccountId")
        if not rec["MainAccountRecId"]:
            rec["MainAccountRecId"] = 22565424000 + len(self.state.tables["MainAccounts"])
        return self._insert(txn, spec, rec)

    # ---- workers and employments ----

    def create_Workers(self, txn: Txn, spec: EntitySpec, values: dict[str, Any]) -> dict[str, Any]:
        rec = spec.default_record()
        rec.update(values)
        self._worker_defaults(rec)
        return self._insert(txn, spec, rec)

    def _worker_defaults(self, rec: dict[str, Any]) -> None:
        if not rec["PersonnelNumber"]:
            rec["PersonnelNumber"] = self.state.next_number("PersonnelNumber", "", "{n:06d}")
        if not rec["Name"]:
            rec["Name"] = _person_name(rec)
        if not rec["PartyNumber"]:
            rec["PartyNumber"] = self.state.next_number("PartyNumber", "", "{n:06d}")

    def delete_Workers(self, txn: Txn, spec: EntitySpec, key: RowKey) -> None:
        self._existing(txn, spec, key)
        if self.state._employments_by_worker.get(key[0]) or txn.staged_employments(key[0]):
            raise write_error(spec, "Error: The worker has employments and cannot be deleted.")
        txn.delete(spec.name, key)

    def create_EmploymentsV2(self, txn: Txn, spec: EntitySpec, values: dict[str, Any]) -> dict[str, Any]:
        rec = spec.default_record()
        rec.update(values)
        return self._insert(txn, spec, self._employment(txn, spec, rec, values))

    def _employment(self, txn: Txn, spec: EntitySpec, rec: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
        self._required(spec, rec, "PersonnelNumber")
        worker = txn.get("Workers", (collation_key(rec["PersonnelNumber"]),))
        if worker is None:
            raise write_error(spec, f"Error: Worker {rec['PersonnelNumber']} does not exist.")
        rec["PersonnelNumber"] = worker["PersonnelNumber"]
        rec["LegalEntityId"] = self._company(spec, rec["LegalEntityId"] or None)
        if not rec["EmploymentId"]:
            rec["EmploymentId"] = self.state.next_number("EmploymentId", "", "E{n:06d}")
        if "EmploymentStartDate" not in given:
            now = datetime.fromtimestamp(self.state.clock(), timezone.utc)
            rec["EmploymentStartDate"] = render_dto(now.replace(hour=0, minute=0, second=0, microsecond=0))
        if "EmploymentEndDate" not in given or rec["EmploymentEndDate"] == EMPTY_DATE:
            rec["EmploymentEndDate"] = NEVER
        if rec["DimensionDisplayValue"]:
            rec["DimensionDisplayValue"] = self.validate_display_value(
                spec, txn, rec["DimensionDisplayValue"], rec["LegalEntityId"], ledger=False)
        return rec

    def update_EmploymentsV2(self, txn: Txn, spec: EntitySpec, key: RowKey, values: dict[str, Any]) -> dict[str, Any]:
        current = self._existing(txn, spec, key)
        rec = self._merge(spec, current, values)
        if values.get("DimensionDisplayValue"):
            rec["DimensionDisplayValue"] = self.validate_display_value(
                spec, txn, rec["DimensionDisplayValue"], rec["LegalEntityId"], ledger=False)
        if rec["EmploymentEndDate"] == EMPTY_DATE:
            rec["EmploymentEndDate"] = NEVER
        txn.put(spec.name, key, rec)
        return rec

    def delete_EmploymentsV2(self, txn: Txn, spec: EntitySpec, key: RowKey) -> None:
        self._existing(txn, spec, key)
        txn.delete(spec.name, key)
        if txn.get("EmployeesV2", key) is not None:
            txn.delete("EmployeesV2", key)

    def _split_employee(self, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        employment = {EMPLOYEE_TO_EMPLOYMENT[k]: v for k, v in values.items() if k in EMPLOYEE_TO_EMPLOYMENT}
        worker = {k: v for k, v in values.items() if k in EMPLOYEE_WORKER_FIELDS}
        own = {k: v for k, v in values.items() if k in EMPLOYEE_OWN_FIELDS}
        return employment, worker, own

    def create_EmployeesV2(self, txn: Txn, spec: EntitySpec, values: dict[str, Any]) -> dict[str, Any]:
        employment, worker_values, own = self._split_employee(values)
        if not values.get("PersonnelNumber"):
            raise write_error(spec, "Error: Field 'Personnel number' must be filled in.")
        workers = SPECS["Workers"]
        worker_key = (collation_key(values["PersonnelNumber"]),)
        worker = txn.get("Workers", worker_key)
        if worker is None:
            worker = workers.default_record()
            worker.update(worker_values)
            worker["PersonnelNumber"] = values["PersonnelNumber"]
            worker["WorkerType"] = "Employee"
            self._worker_defaults(worker)
        else:
            worker = _update_person(worker, worker_values)
        txn.put("Workers", worker_key, worker)
        emp_spec = SPECS["EmploymentsV2"]
        emp = emp_spec.default_record()
        emp.update(employment)
        emp["WorkerType"] = "Employee"
        emp = self._employment(txn, spec, emp, employment)
        emp_key = key_of(emp_spec, emp)
        if txn.get("EmploymentsV2", emp_key) is not None:
            raise duplicate_error(spec, {"PersonnelNumber": emp["PersonnelNumber"],
                                         "EmploymentLegalEntityId": emp["LegalEntityId"],
                                         "EmploymentId": emp["EmploymentId"]})
        txn.put("EmploymentsV2", emp_key, emp)
        txn.put("EmployeesV2", emp_key, own)
        return self.compose_employee(txn.get, emp)

    def update_EmployeesV2(self, txn: Txn, spec: EntitySpec, key: RowKey, values: dict[str, Any]) -> dict[str, Any]:
        emp = txn.get("EmploymentsV2", key)
        if emp is None:
            raise not_found(spec.name)
        employment, worker_values, own = self._split_employee(values)
        if employment:
            self.update_EmploymentsV2(txn, spec, key, employment)
        worker_key = (key[0],)
        worker = txn.get("Workers", worker_key)
        if worker_values and worker is not None:
            txn.put("Workers", worker_key, _update_person(worker, worker_values))
        if own:
            txn.put("EmployeesV2", key, {**(txn.get("EmployeesV2", key) or {}), **own})
        return self.compose_employee(txn.get, txn.get("EmploymentsV2", key) or emp)

    def delete_EmployeesV2(self, txn: Txn, spec: EntitySpec, key: RowKey) -> None:
        self.delete_EmploymentsV2(txn, SPECS["EmploymentsV2"], key)

    def compose_employee(self, get: Callable[[str, RowKey], dict[str, Any] | None],
                         emp: dict[str, Any]) -> dict[str, Any]:
        """The EmployeesV2 row of one employment: employment fields, the worker's person fields, own fields."""
        worker = get("Workers", (collation_key(emp["PersonnelNumber"]),)) or {}
        own = get("EmployeesV2", key_of(SPECS["EmploymentsV2"], emp)) or {}
        out: dict[str, Any] = {}
        for prop, code in EMPLOYEE_TYPES.items():
            if prop in EMPLOYEE_TO_EMPLOYMENT:
                out[prop] = emp[EMPLOYEE_TO_EMPLOYMENT[prop]]
            elif prop in EMPLOYEE_WORKER_FIELDS:
                out[prop] = worker.get(prop, type_default(code))
            else:
                out[prop] = own.get(prop, type_default(code))
        return out

    # ---- the General journal entity's package import (sandbox/d365/dmf.py) ----

    def import_journal_rows(self, legal_entity: str, rows: Iterable[dict[str, str]],
                            refuse_accounts: set[str]) -> tuple[list[str], list[tuple[dict[str, str], str]], int]:
        """The General journal entity's set-based import of package rows: rows grouped by JOURNALBATCHNUMBER
        into new journals, the file's VOUCHER and LINENUMBER kept, a row whose values do not validate refused
        at staging. A journal name that does not exist fails the whole target step (ValueError, nothing
        written). Returns the journal numbers written, the refusals and the rows read."""
        refused: list[tuple[dict[str, str], str]] = []
        batches: dict[str, str] = {}
        count = 0
        with self.state.lock:
            txn = Txn(self.state)
            refuse_numbers, self.state.refuse_client_line_numbers = self.state.refuse_client_line_numbers, False
            try:
                for row in rows:
                    count += 1
                    account = row.get("ACCOUNTDISPLAYVALUE", "")
                    if account in refuse_accounts:
                        refused.append((row, f"Account {account} is not valid for the legal entity."))
                        continue
                    number = batches.get(row.get("JOURNALBATCHNUMBER", ""))
                    if number is None:
                        number = batches[row.get("JOURNALBATCHNUMBER", "")] = self._import_header(txn, legal_entity,
                                                                                                  row)
                    try:
                        self._import_line(txn, legal_entity, number, row)
                    except ODataError as err:
                        refused.append((row, str(err)))
            finally:
                self.state.refuse_client_line_numbers = refuse_numbers
            txn.commit()
        return list(batches.values()), refused, count

    def _import_header(self, txn: Txn, legal_entity: str, row: dict[str, str]) -> str:
        try:
            header = self.create_LedgerJournalHeaders(txn, SPECS["LedgerJournalHeaders"], {
                "dataAreaId": legal_entity, "JournalName": row.get("JOURNALNAME", ""),
                "Description": row.get("DESCRIPTION", "")})
        except ODataError as err:
            raise ValueError(err.message) from None
        return str(header["JournalBatchNumber"])

    def _import_line(self, txn: Txn, legal_entity: str, number: str, row: dict[str, str]) -> None:
        spec = SPECS["LedgerJournalLines"]
        values = {"dataAreaId": legal_entity, "JournalBatchNumber": number,
                  "LineNumber": row.get("LINENUMBER", ""), "AccountType": "Ledger",
                  "AccountDisplayValue": row.get("ACCOUNTDISPLAYVALUE", ""),
                  "TransDate": _dmf_date(row.get("TRANSDATE", "")),
                  "Voucher": row.get("VOUCHER", ""), "CurrencyCode": row.get("CURRENCYCODE", ""),
                  "DebitAmount": row.get("DEBITAMOUNT") or "0",
                  "CreditAmount": row.get("CREDITAMOUNT") or "0", "Text": row.get("TEXT", "")}
        self.create(txn, spec, coerce_body(spec, values, True))

    # ---- generic ----

    def create(self, txn: Txn, spec: EntitySpec, values: dict[str, Any]) -> dict[str, Any]:
        custom = getattr(self, f"create_{spec.name}", None)
        if custom is not None:
            return custom(txn, spec, values)  # type: ignore[no-any-return]
        rec = spec.default_record()
        rec.update(values)
        if spec.company:
            rec["dataAreaId"] = self._company(spec, values.get("dataAreaId"))
        self._required(spec, rec, *[k for k in spec.keys if spec.types[k] == "s" and k != "LegalEntityId"])
        return self._insert(txn, spec, rec)

    def update(self, txn: Txn, spec: EntitySpec, key: RowKey, values: dict[str, Any]) -> dict[str, Any]:
        custom = getattr(self, f"update_{spec.name}", None)
        if custom is not None:
            return custom(txn, spec, key, values)  # type: ignore[no-any-return]
        rec = self._merge(spec, self._existing(txn, spec, key), values)
        txn.put(spec.name, key, rec)
        return rec

    def delete(self, txn: Txn, spec: EntitySpec, key: RowKey) -> None:
        custom = getattr(self, f"delete_{spec.name}", None)
        if custom is not None:
            custom(txn, spec, key)
            return
        self._existing(txn, spec, key)
        txn.delete(spec.name, key)
