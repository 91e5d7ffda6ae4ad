"""The route of a journal's lines (flows/journal_poster.py: route_for, journal_route, posting_route)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from tests.helpers import make_config
from ukg2d365.flows.journal_poster import DMF_ROUTE, ODATA_ROUTE, journal_route, posting_route, route_for
from ukg2d365.ledger import Posting


def _config(transport: str, min_lines: int = 5000):  # type: ignore[no-untyped-def]
    cfg = make_config()
    return cfg.model_copy(update={"d365": cfg.d365.model_copy(update={"transport": transport}),
                                  "dmf": cfg.dmf.model_copy(update={"min_lines": min_lines})})


def test_transport_chooses_the_route_and_auto_takes_dmf_from_min_lines() -> None:
    assert route_for(_config("odata"), 1_000_000) == "odata"
    assert route_for(_config("dmf"), 2) == "dmf"
    assert [route_for(_config("auto", 5000), n) for n in (4999, 5000)] == ["odata", "dmf"]
    assert journal_route(_config("auto", 5000), 5000) == DMF_ROUTE
    assert journal_route(_config("auto", 5000), 10) == ODATA_ROUTE


def test_a_journal_with_a_document_date_or_a_reversal_goes_as_odata_whatever_the_transport() -> None:
    # The package's data file carries TransDate only: an accrual sent that way would never reverse.
    assert route_for(_config("dmf"), 100_000, dated=True) == "odata"
    assert journal_route(_config("dmf"), 100_000, dated=True) == ODATA_ROUTE


def test_a_stored_posting_keeps_the_route_its_import_took() -> None:
    fields = {f.name: None for f in dataclasses.fields(Posting)}
    base = Posting(**{**fields, "key": "K", "line_count": 10, "debit_total": Decimal(0),
                      "credit_total": Decimal(0), "kind": "pay_run"})
    assert posting_route(_config("odata"), dataclasses.replace(base, route="dmf")) == "dmf"  # an import under way
    assert posting_route(_config("dmf"), base) == "dmf"
    assert posting_route(_config("dmf"), dataclasses.replace(base, reverse_date="2026-07-01")) == "odata"
