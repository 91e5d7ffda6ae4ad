"""Does D365 know these main accounts and dimension values? Cached in the ledger, asked only on a miss.

sync-dimensions fills the cache with everything it reads, so a nightly post-payroll normally costs no
reference request at all; a value the cache does not know is looked up in D365 (a few `or` filters per
request) before a journal that uses it is sent. A journal that would reference an unknown value is
refused up front, instead of failing half-way through its lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ukg2d365.config import Config, MappingConfig
from ukg2d365.d365.odata import ODataClient, filter_eq, odata_literal
from ukg2d365.ledger import Ledger
from ukg2d365.mapping import DimensionFormats

MAIN_ACCOUNT = "main_account"  # reference_values.kind
DIMENSION = "dimension"
FORMAT = "dimension_format"  # reference_values.kind; name 'ledger' or 'default', one value: the names as JSON
LEDGER_FORMAT_TYPE = "DataEntityLedgerDimensionFormat"
DEFAULT_FORMAT_TYPE = "DataEntityDefaultDimensionFormat"
FORMAT_SEPARATORS = ("-", ".", "_", "|", "~", ",")
CHUNK = 20  # values per $filter: keeps URLs far below gateway limits


class ReferenceData:
    def __init__(self, odata: ODataClient, ledger: Ledger, config: Config) -> None:
        self._odata = odata
        self._ledger = ledger
        self._config = config

    def dimension_formats(self, *, fresh: bool) -> DimensionFormats:
        """D365's active ledger and default dimension formats (``()`` where none is active).

        ``fresh`` reads DimensionIntegrationFormats and refreshes the cache (ping, sync-dimensions,
        post-payroll: every run that writes journal lines builds them in today's order); otherwise the
        cache answers and D365 is asked only when the cache has never seen a format.
        """
        if not fresh:
            cached = {name: self._ledger.known_values(FORMAT, name) for name in ("ledger", "default")}
            if all(len(values) == 1 for values in cached.values()):
                ledger, default = (tuple(json.loads(next(iter(cached[n])))) for n in ("ledger", "default"))
                return DimensionFormats(ledger, default)
        rows = list(self._odata.get_all("DimensionIntegrationFormats"))
        formats = DimensionFormats(active_format(rows, LEDGER_FORMAT_TYPE), active_format(rows, DEFAULT_FORMAT_TYPE))
        for name, names in (("ledger", formats.ledger), ("default", formats.default)):
            encoded = json.dumps(list(names))
            if self._ledger.known_values(FORMAT, name) != {encoded}:
                self._ledger.forget_values(FORMAT, name)
                self._ledger.remember_values(FORMAT, name, [encoded])
        return formats

    def missing_main_accounts(self, accounts: Iterable[str]) -> set[str]:
        wanted = set(accounts)
        unknown = wanted - self._ledger.known_values(MAIN_ACCOUNT, "")
        if not unknown:
            return set()
        found: set[str] = set()
        for chunk in _chunks(sorted(unknown)):
            flt = " or ".join(filter_eq("MainAccountId", v) for v in chunk)
            for row in self._odata.get_all("MainAccounts", filter=flt, select=["MainAccountId"]):
                found.add(str(row.get("MainAccountId")))
        self._ledger.remember_values(MAIN_ACCOUNT, "", found & unknown)
        return unknown - found

    def missing_dimension_values(self, name: str, values: Iterable[str]) -> set[str]:
        wanted = {v for v in values if v}
        unknown = wanted - self._ledger.known_values(DIMENSION, name)
        if not unknown:
            return set()
        dim = self._config.mapping.dimensions[name]
        found: set[str] = set()
        for chunk in _chunks(sorted(unknown)):
            if dim.create_in == "OperatingUnits":
                ou_type = f"Microsoft.Dynamics.DataEntities.OmOperatingUnitType'{dim.operating_unit_type}'"
                flt = f"OperatingUnitType eq {ou_type} and (" + " or ".join(
                    filter_eq("OperatingUnitNumber", v) for v in chunk) + ")"
                rows = self._odata.get_all("OperatingUnits", filter=flt, select=["OperatingUnitNumber"])
                found.update(str(r.get("OperatingUnitNumber")) for r in rows)
            else:
                le = odata_literal(self._config.d365.data_area_id)
                flt = (f"{filter_eq('FinancialDimension', name)} and (LegalEntityId eq '' or LegalEntityId eq {le})"
                       " and (" + " or ".join(filter_eq("DimensionValue", v) for v in chunk) + ")")
                rows = self._odata.get_all("FinancialDimensionValues", filter=flt, select=["DimensionValue"],
                                           cross_company=True)
                found.update(str(r.get("DimensionValue")) for r in rows)
        self._ledger.remember_values(DIMENSION, name, found & unknown)
        return unknown - found


WHERE_FORMAT = ("General ledger > Chart of accounts > Dimensions > Financial dimension configuration for "
                "integrating applications")


def _shown(names: Iterable[str]) -> str:
    return " - ".join(names) or "(none)"


def ledger_format_problems(formats: DimensionFormats, mapping: MappingConfig) -> list[str]:
    """What stops journal lines from being built in D365's ledger format. No I/O.

    Dimensions of the format that the mapping does not feed are no problem (they stay blank); a mapped
    dimension the format lacks is, since its values would be dropped from every line.
    """
    have = formats.ledger
    if not have:
        return [f"no active ledger dimension format in D365; activate one that starts with MainAccount "
                f"({WHERE_FORMAT})"]
    if have[0] != "MainAccount":
        return [f"D365's active ledger dimension format {_shown(have)} does not start with MainAccount "
                f"({WHERE_FORMAT})"]
    problems: list[str] = []
    guard = mapping.ledger_format
    if guard is not None and tuple(guard) != have:
        problems.append(f"D365's active ledger dimension format is {_shown(have)} but mapping.ledger_format is "
                        f"{_shown(guard)}; make them equal, or remove mapping.ledger_format to follow D365 "
                        f"({WHERE_FORMAT})")
    absent = [name for name in mapping.dimensions if name not in have]
    if absent:
        problems.append(f"mapping.dimensions names {', '.join(absent)}, which D365's active ledger dimension "
                        f"format {_shown(have)} does not hold; add it there ({WHERE_FORMAT}) or remove it "
                        "from mapping.dimensions")
    return problems


def default_format_problems(formats: DimensionFormats, config: Config) -> list[str]:
    """What stops workers' DimensionDisplayValue from being built in D365's default format. No I/O."""
    guard = config.employees.default_dimensions
    if not guard:
        return []  # no guard (follow D365), or [] (send no default dimensions)
    if not formats.default:
        return [f"no active default dimension format in D365; activate {_shown(guard)} ({WHERE_FORMAT})"]
    if tuple(guard) != formats.default:
        return [f"D365's active default dimension format is {_shown(formats.default)} but "
                f"employees.default_dimensions is {_shown(guard)}; make them equal, or remove "
                f"employees.default_dimensions to follow D365 ({WHERE_FORMAT})"]
    return []


def format_summary(formats: DimensionFormats, mapping: MappingConfig) -> str:
    """ping's line: D365's formats, which dimensions UKG feeds and which stay blank."""
    fed = formats.fed(mapping)
    blank = formats.blank(mapping)
    text = (f"ledger format {_shown(formats.ledger)}: UKG feeds MainAccount"
            + (f", {', '.join(fed)}" if fed else "")
            + (f"; blank: {', '.join(blank)}" if blank else ""))
    if formats.default:
        dfed = formats.fed(mapping, ledger=False)
        dblank = formats.blank(mapping, ledger=False)
        text += (f"; default format {_shown(formats.default)}: fed {', '.join(dfed) or 'none'}"
                 + (f", blank: {', '.join(dblank)}" if dblank else ""))
    else:
        text += "; no active default dimension format"
    return text


def split_format(text: str) -> tuple[str, ...]:
    """D365 shows a format as 'MainAccount-CostCenter-Department', names joined by the segment delimiter."""
    for sep in FORMAT_SEPARATORS:
        if sep in text:
            return tuple(part.strip() for part in text.split(sep) if part.strip())
    return (text.strip(),) if text.strip() else ()


def active_format(rows: Iterable[Mapping[str, Any]], format_type: str) -> tuple[str, ...]:
    """The names of the active format of this DimensionFormatType; () when none is active."""
    for row in rows:
        if str(row.get("DimensionFormatType")) == format_type and str(row.get("IsActive")) == "Yes":
            return split_format(str(row.get("FinancialDimensionFormat") or ""))
    return ()


def _chunks(values: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(values), CHUNK):
        yield values[i : i + CHUNK]
