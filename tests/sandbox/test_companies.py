"""The legal-entity sandbox (companies=2): a second UKG company, a cost center borne by a third entity."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from ukg2d365.sandbox import catalog
from ukg2d365.sandbox.data import UkgDataset


def test_two_company_dataset_pays_the_riverside_plant_from_the_second_company():
    ds = UkgDataset(60, companies=2)
    run = ds.gl_runs[-1]
    lines = run.items(0, len(run))
    balance: dict[str, Decimal] = defaultdict(Decimal)
    bearing: set[str] = set()
    for line in lines:
        assert line["companyCode"] == catalog.COMPANY_CODES[line["coId"]]
        balance[line["coId"]] += line["debitAmt"] - line["creditAmt"]
        if line["orgLevel1"] == catalog.BEARING_COST_CENTER:
            bearing.add(line["coId"])
        if line["location"]:
            assert (line["coId"] == catalog.UKG_CO_ID_2) == (line["location"] == catalog.SECOND_COMPANY_LOCATION)
    assert set(balance) == {catalog.UKG_CO_ID, catalog.UKG_CO_ID_2}
    assert all(v == 0 for v in balance.values())  # each company's lines balance on their own
    assert bearing == {catalog.UKG_CO_ID}  # only the first company charges the third entity's cost center


def test_default_dataset_stays_one_company():
    ds = UkgDataset(60)
    run = ds.gl_runs[-1]
    assert {line["coId"] for line in run.items(0, len(run))} == {catalog.UKG_CO_ID}
