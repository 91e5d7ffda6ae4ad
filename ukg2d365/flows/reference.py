"""Does D365 know these main accounts and dimension values? Cached in the ledger, asked only on a miss.

sync-dimensions fills the cache with everything it reads, so a nightly post-payroll normally costs no
reference request at all; a value the cache does not know is looked up in D365 (a few `or` filters per
request) before a journal that uses it is sent. A journal that would reference an unknown value is
refused up front, instead of failing half-way through its lines.

The set-up check every writing command runs first (``ReferenceData.require_setup``) lives here too, since it
reads D365's formats through this cache; what it checks is ``ukg2d365.d365.setup``'s.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from ukg2d365.config import Config
from ukg2d365.d365.odata import ODataClient, chunked, enum_literal, filter_eq, odata_literal
from ukg2d365.d365.setup import SetupError, read_dimension_formats, setup_problems
from ukg2d365.ledger import Ledger
from ukg2d365.mapping import DimensionFormats

MAIN_ACCOUNT = "main_account"  # reference_values.kind
DIMENSION = "dimension"
FORMAT = "dimension_format"  # reference_values.kind; name 'ledger' or 'default', one value: the names as JSON
CHUNK = 20  # values per $filter: keeps URLs far below gateway limits
MAIN_ACCOUNTS = "MainAccounts"
FINANCIAL_DIMENSION_VALUES = "FinancialDimensionValues"
OPERATING_UNITS = "OperatingUnits"


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
        formats = read_dimension_formats(self._odata)
        for name, names in (("ledger", formats.ledger), ("default", formats.default)):
            encoded = json.dumps(list(names))
            if self._ledger.known_values(FORMAT, name) != {encoded}:
                self._ledger.forget_values(FORMAT, name)
                self._ledger.remember_values(FORMAT, name, [encoded])
        return formats

    def require_setup(
        self,
        command: str,
        *,
        fresh: bool = True,
        ledger_format: bool = True,
        default_format: bool = False,
        delimiter: bool = True,
        planned: DimensionFormats | None = None,
    ) -> DimensionFormats:
        """D365's formats once the set-up checks a command needs pass; else SetupError, every problem audited.

        The checks are :func:`ukg2d365.d365.setup.setup_problems`'s; read fresh by default, since a customer may
        change the global format for another integration and a line built in yesterday's order would put
        values into the wrong dimensions.
        """
        formats = self.dimension_formats(fresh=fresh)
        problems = setup_problems(self._odata, self._config, formats, ledger_format=ledger_format,
                                  default_format=default_format, delimiter=delimiter, planned=planned)
        if problems:
            for problem in problems:
                self._ledger.audit("setup.problem", {"command": command, "problem": problem})
            raise SetupError("; ".join(problems))
        return formats

    def missing_main_accounts(self, accounts: Iterable[str]) -> set[str]:
        wanted = set(accounts)
        unknown = wanted - self._ledger.known_values(MAIN_ACCOUNT, "")
        if not unknown:
            return set()
        found = read_main_accounts(self._odata, sorted(unknown))
        self._ledger.remember_values(MAIN_ACCOUNT, "", found & unknown)
        return unknown - found

    def missing_dimension_values(self, name: str, values: Iterable[str], legal_entity: str | None = None) -> set[str]:
        """Values of dimension ``name`` D365 does not hold for the legal entity (shared values count for all).

        ``legal_entity`` defaults to d365.legal_entity. Values found for another entity are cached under
        ``name@entity``: the default entity's cache may hold values only it owns, so it never answers for another.
        """
        area = (legal_entity or self._config.d365.legal_entity).lower()
        cache_name = name if area == self._config.d365.data_area_id else f"{name}@{area}"
        wanted = {v for v in values if v}
        unknown = wanted - self._ledger.known_values(DIMENSION, cache_name)
        if not unknown:
            return set()
        found = read_dimension_values(self._odata, self._config, name, sorted(unknown), legal_entity=area)
        self._ledger.remember_values(DIMENSION, cache_name, found & unknown)
        return unknown - found


def read_main_accounts(odata: ODataClient, accounts: Sequence[str]) -> set[str]:
    """Which of these MainAccountIds D365 has, CHUNK ids per request."""
    found: set[str] = set()
    for chunk in chunked(accounts, CHUNK):
        flt = " or ".join(filter_eq("MainAccountId", v) for v in chunk)
        for row in odata.get_all(MAIN_ACCOUNTS, filter=flt, select=["MainAccountId"]):
            found.add(str(row.get("MainAccountId")))
    return found


def read_dimension_values(
    odata: ODataClient, config: Config, name: str, values: Sequence[str] | None = None,
    legal_entity: str | None = None,
) -> set[str]:
    """D365's values of one mapped dimension; of ``values`` only (CHUNK per request) when given.

    A custom dimension's values are FinancialDimensionValues of the legal entity (default d365.legal_entity)
    or shared (an empty LegalEntityId); an operating unit dimension's are the OperatingUnits of its type.
    """
    dim = config.mapping.dimensions[name]
    entity: str
    if dim.create_in == OPERATING_UNITS:
        assert dim.operating_unit_type is not None  # the config validator fills it in
        entity, field, cross_company = OPERATING_UNITS, "OperatingUnitNumber", False
        base = f"OperatingUnitType eq {enum_literal('OmOperatingUnitType', dim.operating_unit_type)}"
    else:
        entity, field, cross_company = FINANCIAL_DIMENSION_VALUES, "DimensionValue", True
        le = odata_literal((legal_entity or config.d365.legal_entity).lower())
        base = f"{filter_eq('FinancialDimension', name)} and (LegalEntityId eq '' or LegalEntityId eq {le})"
    if values is None:
        filters = [base]
    else:
        filters = [f"{base} and (" + " or ".join(filter_eq(field, v) for v in chunk) + ")"
                   for chunk in chunked(values, CHUNK)]
    found: set[str] = set()
    for flt in filters:
        for row in odata.get_all(entity, filter=flt, select=[field], cross_company=cross_company):
            if row.get(field):
                found.add(str(row.get(field)))
    return found
