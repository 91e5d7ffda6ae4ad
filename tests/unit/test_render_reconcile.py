"""reconcile for an accountant: the stacked table fits 80 columns and never cuts an amount."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from decimal import Decimal

import pytest
from rich.console import Console

from ukg2d365.flows.reconcile import (
    DIFFERS,
    MATCH,
    MISSING,
    Amounts,
    JournalRef,
    LineDifference,
    ReconcileReport,
    ReconcileSelection,
    RunReconciliation,
)
from ukg2d365.journal import PostingKey
from ukg2d365.render import Output
from ukg2d365.render import reconcile as render

BIG = Decimal("2168268268.12")
WAGES = "601500--CC110-PLANT-ASSEMBLY--PRODUCTION-NORTHEAST"  # a long display value: it folds, amounts do not


def _report() -> ReconcileReport:
    key = PostingKey("C0MP1", "BW", date(2026, 11, 13), "GL20261113BW01")
    differs = RunReconciliation(
        key, key.marker, DIFFERS, Amounts(BIG, BIG), Amounts(BIG + 1, BIG), Amounts(BIG, BIG), "posted",
        [JournalRef("USMF-000123", False, 198)],
        [LineDifference(WAGES, DIFFERS, Amounts(Decimal("1234567.89")), Amounts(Decimal("1234568.89")),
                        Amounts(Decimal("1234567.89")))],
        ["something to say about this run that is long enough to need more than one line on a terminal"],
        legal_entity="USMF")
    missing_key = PostingKey("C0MP1", "BW", date(2026, 10, 30), "GL20261030BW01")
    missing = RunReconciliation(missing_key, missing_key.marker, MISSING, Amounts(BIG, BIG), Amounts(), None,
                                None, [], [], ["never posted"], legal_entity="USMF")
    matched_key = PostingKey("C0MP1", "BW", date(2026, 10, 16), "GL20261016BW01")
    matched = RunReconciliation(matched_key, matched_key.marker, MATCH, Amounts(BIG, BIG), Amounts(BIG, BIG),
                                Amounts(BIG, BIG), "posted", [JournalRef("USMF-000100", True, 198)], [], [],
                                legal_entity="USMF")
    return ReconcileReport(ReconcileSelection(pay_group="BW"), None, [differs, missing, matched])


def _table_at(width: int) -> str:
    out = Output()
    out.out = Console(width=width, file=io.StringIO(), highlight=False, color_system=None)
    render.show_table(out, _report())
    file = out.out.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


@pytest.mark.parametrize("width", [80, 120])
def test_the_stacked_table_fits_the_terminal_and_never_cuts_an_amount(width: int) -> None:
    text = _table_at(width)
    assert max(len(line) for line in text.splitlines()) <= width
    for amount in ("2,168,268,268.12", "2,168,268,269.12", "+1.00", "1,234,567.89", "1,234,568.89", "0.00",
                   "-2,168,268,268.12"):
        assert amount in text, amount
    assert "…" not in text
    assert "missing in D365" in text and "never posted" in text and "USMF-000123 (unposted)" in text
    # the account folds across lines, its differing side stays on one line with every amount
    assert any(" dr " in line and "1,234,567.89" in line and "1,234,568.89" in line and "+1.00" in line
               for line in text.splitlines())


def test_every_run_lists_its_totals_in_one_order_also_one_never_sent() -> None:
    labels = ("D365 - UKG", "Ledger sent", "UKG", "D365")  # longest first: "D365 - UKG" is not "D365"
    blocks = _table_at(80).split("\nBW ")[1:]
    assert len(blocks) == 3
    for block in blocks:
        totals = block.split("Account and dimensions")[0].splitlines()
        seen = [next(label for label in labels if line.strip().startswith(label)) for line in totals
                if line.strip().startswith(labels)]
        assert seen == ["UKG", "D365", "Ledger sent", "D365 - UKG"], block


def test_csv_and_json_carry_the_same_exact_amounts(capsys: pytest.CaptureFixture[str]) -> None:
    out = Output()
    out.use_format("csv")
    render.export(out, _report())
    out.close()
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["row"], r["verdict"]) for r in rows] == [("run", DIFFERS), ("line", DIFFERS), ("run", MISSING),
                                                         ("run", MATCH)]
    assert rows[0]["d365_debit"] == "2168268269.12" and rows[0]["difference_debit"] == "1.00"
    out = Output()
    out.use_format("json")
    render.export(out, _report())
    out.close()
    document = json.loads(capsys.readouterr().out)
    assert [r["verdict"] for r in document["runs"]] == [DIFFERS, MISSING, MATCH]
    assert document["runs"][0]["d365"] == {"debit": "2168268269.12", "credit": "2168268268.12"}
    assert document["runs"][0]["legal_entity"] == "USMF"
