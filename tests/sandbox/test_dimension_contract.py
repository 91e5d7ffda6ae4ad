"""Contract: the sandbox D365's dimension formats and display values, against public recordings and docs.

Follows
- MicrosoftDocs/dynamics-365-unified-operations-public
  articles/fin-ops-core/dev-itpro/financial/financial-dimension-configuration-integration.md:
  the ledger format is global and cumulative, unused dimensions are left blank, a value with fewer
  segments gets blanks for the rest ("605140-001-02-") and an extra segment is dropped;
- NangoHQ/integration-templates
  integrations/microsoft-dynamics-365-finance-and-operations-cc/tests/list-ledger-journal-lines.test.json:
  a live LedgerJournalLines answer keeps the display values as sent (OffsetAccountDisplayValue "100100",
  main account only; DefaultDimensionDisplayValue "") next to the dimension properties;
- the live shape "51040302--81--JD-" (main account and five dimensions, three blank) that a real
  integration posts to F&O.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.sandbox.test_d365 import Client, decode, inner_message, line, new_journal
from ukg2d365.sandbox import catalog
from ukg2d365.sandbox.d365 import D365Service, D365State
from ukg2d365.sandbox.tokens import TokenRegistry

BASE = "https://127.0.0.1:8445"


@pytest.fixture
def state() -> D365State:
    return D365State.seeded()  # the default, as `make demo` and the e2e tests meet it


@pytest.fixture
def client(state: D365State) -> Client:
    tokens = TokenRegistry()
    token, _ = tokens.issue(catalog.CLIENT_ID, BASE)
    return Client(D365Service(state, tokens, BASE), token)


def active(client: Client) -> dict[str, Any]:
    rows = decode(client.get("/data/DimensionIntegrationFormats?$filter=IsActive eq 'Yes'"))["value"]
    return {r["DimensionFormatType"]: r for r in rows}


def test_the_default_formats_hold_dimensions_ukg_does_not_feed(client: Client) -> None:
    formats = active(client)
    ledger = formats["DataEntityLedgerDimensionFormat"]
    assert set(ledger) >= {"DimensionFormatName", "DimensionFormatType", "FinancialDimensionFormat", "IsActive"}
    names = ledger["FinancialDimensionFormat"].split("-")
    assert names[0] == "MainAccount" and len(names) == 6  # five dimensions, like 51040302--81--JD-
    assert {"BusinessUnit", "Project", "Region"} <= set(names)  # none of them fed by UKG's org levels
    default = formats["DataEntityDefaultDimensionFormat"]["FinancialDimensionFormat"].split("-")
    assert "MainAccount" not in default and "BusinessUnit" in default


def test_a_value_with_blank_segments_is_accepted_and_read_back_as_sent(client: Client) -> None:
    batch = new_journal(client)
    display = "601500--110--PROD-"  # the recorded shape: blanks between and after, delimiters kept
    created = client.post("/data/LedgerJournalLines", line(batch, account=display, debit="1"))
    assert created.status == 201, created.body
    body = decode(created)
    assert body["AccountDisplayValue"] == display
    assert body["DefaultDimensionDisplayValue"] == ""  # as recorded when none is sent


def test_fewer_segments_mean_blanks_and_main_account_only_is_a_value(client: Client) -> None:
    batch = new_journal(client)
    assert client.post("/data/LedgerJournalLines", line(batch, account="601500--110", debit="1")).status == 201
    only_main = client.post("/data/LedgerJournalLines", line(batch, account="211000", credit="1"))
    assert only_main.status == 201 and decode(only_main)["AccountDisplayValue"] == "211000"  # cf. "100100"


def test_segments_are_read_by_position(client: Client) -> None:
    batch = new_journal(client)
    shifted = client.post("/data/LedgerJournalLines", line(batch, account="601500-110-PROD", debit="1"))
    assert shifted.status == 400
    assert "Value '110' does not exist for dimension 'BusinessUnit'" in inner_message(shifted)


def test_an_extra_segment_is_dropped(client: Client) -> None:
    batch = new_journal(client)
    extra = client.post("/data/LedgerJournalLines", line(batch, account="601500--110--PROD--XYZ", debit="1"))
    assert extra.status == 201 and decode(extra)["AccountDisplayValue"] == "601500--110--PROD-"
