"""Does D365 know these main accounts and dimension values? Cached in the ledger, asked only on a miss.

sync-dimensions fills the cache with everything it reads, so a nightly post-payroll normally costs no
reference request at all; a value the cache does not know is looked up in D365 (a few `or` filters per
request) before a journal that uses it is sent. A journal that would reference an unknown value is
refused up front, instead of failing half-way through its lines.
"""

from __future__ import annotations

from collections.abc import Iterable

from ukg2d365.config import Config
from ukg2d365.d365.odata import ODataClient, filter_eq, odata_literal
from ukg2d365.ledger import Ledger

MAIN_ACCOUNT = "main_account"  # reference_values.kind
DIMENSION = "dimension"
CHUNK = 20  # values per $filter: keeps URLs far below gateway limits


class ReferenceData:
    def __init__(self, odata: ODataClient, ledger: Ledger, config: Config) -> None:
        self._odata = odata
        self._ledger = ledger
        self._config = config

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
                le = odata_literal(self._config.d365.legal_entity)
                flt = (f"{filter_eq('FinancialDimension', name)} and (LegalEntityId eq '' or LegalEntityId eq {le})"
                       " and (" + " or ".join(filter_eq("DimensionValue", v) for v in chunk) + ")")
                rows = self._odata.get_all("FinancialDimensionValues", filter=flt, select=["DimensionValue"],
                                           cross_company=True)
                found.update(str(r.get("DimensionValue")) for r in rows)
        self._ledger.remember_values(DIMENSION, name, found & unknown)
        return unknown - found


def _chunks(values: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(values), CHUNK):
        yield values[i : i + CHUNK]
