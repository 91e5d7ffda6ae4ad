"""reconcile's pure comparison: one test per verdict, plus the ledger and selection rules."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from ukg2d365.errors import UsageError
from ukg2d365.flows.reconcile import (
    DIFFERS,
    DUPLICATE,
    EXTRA,
    MATCH,
    MISSING,
    Amounts,
    ReconcileReport,
    ReconcileSelection,
    RunReconciliation,
    compare_run,
    sum_by_account,
)
from ukg2d365.journal import PostingKey

WAGES = "601500-110-PROD"
OVERTIME = "601600-110-PROD"
PAYABLE = "210000--"


def amounts(debit: str = "0", credit: str = "0") -> Amounts:
    return Amounts(Decimal(debit), Decimal(credit))


UKG = {WAGES: amounts("1000.00"), OVERTIME: amounts("250.50"), PAYABLE: amounts(credit="1250.50")}


def test_sum_by_account_adds_each_side_separately():
    totals = sum_by_account([(WAGES, Decimal("10.00"), Decimal("0")), (WAGES, Decimal("0"), Decimal("3.00")),
                             (WAGES, Decimal("5.00"), Decimal("0"))])
    assert totals == {WAGES: amounts("15.00", "3.00")}


def test_d365_equal_to_ukg_and_ledger_matches():
    result = compare_run(UKG, dict(UKG), [dict(UKG)])
    assert result.verdict == MATCH
    assert result.differences == []
    assert result.notes == []


def test_amounts_equal_at_different_scales_match():
    d365 = {account: Amounts(a.debit.quantize(Decimal("0.000001")), a.credit.quantize(Decimal("0.000001")))
            for account, a in UKG.items()}
    assert compare_run(UKG, dict(UKG), [d365]).verdict == MATCH


def test_changed_line_amount_in_d365_is_amount_differs_with_the_difference():
    d365 = dict(UKG, **{WAGES: amounts("1001.00")})
    result = compare_run(UKG, dict(UKG), [d365])
    assert result.verdict == DIFFERS
    [row] = result.differences
    assert row.account == WAGES and row.verdict == DIFFERS
    assert row.difference == amounts("1.00")
    assert row.ledger == UKG[WAGES]


def test_deleted_line_in_d365_is_missing():
    d365 = {k: v for k, v in UKG.items() if k != OVERTIME}
    result = compare_run(UKG, dict(UKG), [d365])
    assert result.verdict == MISSING
    assert [(r.account, r.verdict) for r in result.differences] == [(OVERTIME, MISSING)]
    assert result.differences[0].difference == amounts("-250.50")


def test_one_side_of_an_account_deleted_is_missing_not_amount_differs():
    ukg = {WAGES: amounts("100.00", "30.00"), PAYABLE: amounts(credit="70.00")}
    d365 = {WAGES: amounts("100.00"), PAYABLE: amounts(credit="70.00")}
    assert compare_run(ukg, dict(ukg), [d365]).verdict == MISSING


def test_never_posted_run_is_missing_in_d365():
    result = compare_run(UKG, None, [])
    assert result.verdict == MISSING
    assert {r.verdict for r in result.differences} == {MISSING}


def test_posted_journal_deleted_from_d365_is_missing():
    assert compare_run(UKG, dict(UKG), []).verdict == MISSING


def test_line_added_by_hand_is_extra_in_d365():
    d365 = dict(UKG, **{"601700-110-PROD": amounts("5.00")})
    result = compare_run(UKG, dict(UKG), [d365])
    assert result.verdict == EXTRA
    assert [(r.account, r.verdict) for r in result.differences] == [("601700-110-PROD", EXTRA)]


def test_journal_the_ledger_never_sent_is_extra_even_when_it_equals_ukg():
    result = compare_run(UKG, None, [dict(UKG)])
    assert result.verdict == EXTRA
    assert result.differences == []
    assert any("never sent" in note for note in result.notes)


def test_two_journals_with_one_marker_are_a_duplicate_and_d365_shows_their_sum():
    header_only: dict[str, Amounts] = {}
    assert compare_run(UKG, dict(UKG), [dict(UKG), header_only]).verdict == DUPLICATE
    result = compare_run(UKG, dict(UKG), [dict(UKG), dict(UKG)])
    assert result.verdict == DUPLICATE
    assert {r.account: r.difference for r in result.differences} == UKG


def test_duplicate_outranks_every_other_verdict():
    assert compare_run(UKG, None, [{}, {WAGES: amounts("1.00")}]).verdict == DUPLICATE


def test_missing_outranks_extra_and_amount_differs():
    d365 = {WAGES: amounts("999.00"), PAYABLE: amounts(credit="1250.50"), "601700-110-PROD": amounts("1.00")}
    result = compare_run(UKG, dict(UKG), [d365])
    assert {r.verdict for r in result.differences} == {MISSING, EXTRA, DIFFERS}
    assert result.verdict == MISSING


def test_ukg_changed_since_posting_is_amount_differs_with_a_note():
    sent = dict(UKG)
    ukg_now = dict(UKG, **{WAGES: amounts("1100.00"), PAYABLE: amounts(credit="1350.50")})
    result = compare_run(ukg_now, sent, [dict(sent)])
    assert result.verdict == DIFFERS
    assert result.ukg_changed
    assert {r.verdict for r in result.differences} == {DIFFERS}
    assert any("UKG changed since posting" in note for note in result.notes)


def test_same_ukg_source_with_other_accounts_blames_the_mapping():
    ukg_now = {"601999-110-PROD" if k == WAGES else k: v for k, v in UKG.items()}
    result = compare_run(ukg_now, dict(UKG), [dict(UKG)], ukg_source_unchanged=True)
    assert result.verdict == DIFFERS
    assert any("mapping changed since posting" in note for note in result.notes)
    assert not any("UKG changed" in note for note in result.notes)


def test_ukg_run_gone_but_d365_holds_what_was_sent_is_amount_differs():
    result = compare_run(None, dict(UKG), [dict(UKG)])
    assert result.verdict == DIFFERS
    assert any("UKG returns no GL lines" in note for note in result.notes)
    from_file = compare_run(None, dict(UKG), [dict(UKG)], source_file="gl.csv")
    assert "gl.csv holds no GL lines for this run" in from_file.notes


def test_from_file_without_another_selection_is_explicit_but_names_no_run():
    selection = ReconcileSelection(from_file=Path("gl.csv"))
    assert selection.explicit and not selection.names_runs
    assert not ReconcileReport(selection, None).ok  # a file holding no run proves nothing


def test_d365_differs_from_what_the_ledger_sent_even_when_it_equals_ukg():
    sent = {k: v for k, v in UKG.items() if k != OVERTIME}  # the ledger never sent overtime
    result = compare_run(UKG, sent, [dict(UKG)])
    assert result.verdict == EXTRA
    assert [(r.account, r.verdict) for r in result.differences] == [(OVERTIME, EXTRA)]


def _run(verdict: str) -> RunReconciliation:
    key = PostingKey("C0MP1", "BW", date(2026, 5, 15), "GL1")
    return RunReconciliation(key, key.marker, verdict, Amounts(), Amounts(), None, None, [], [], [])


def test_report_is_ok_only_when_every_run_matches():
    selection = ReconcileSelection(pay_group="BW")
    assert ReconcileReport(selection, None, [_run(MATCH), _run(MATCH)]).ok
    assert not ReconcileReport(selection, None, [_run(MATCH), _run(DIFFERS)]).ok


def test_explicit_selection_that_finds_nothing_is_not_ok_but_an_empty_default_window_is():
    assert not ReconcileReport(ReconcileSelection(run_id="NOPE"), None).ok
    assert ReconcileReport(ReconcileSelection(), date(2026, 1, 1)).ok


def test_period_end_cannot_be_combined_with_a_range():
    with pytest.raises(UsageError):
        ReconcileSelection(period_end=date(2026, 5, 15), period_from=date(2026, 5, 1)).validate()
    with pytest.raises(UsageError):
        ReconcileSelection(period_from=date(2026, 6, 1), period_to=date(2026, 5, 1)).validate()


def test_selection_covers_run_id_pay_group_and_period_range():
    key = PostingKey("C0MP1", "BW", date(2026, 5, 15), "GL1")
    assert ReconcileSelection(run_id="GL1").covers(key, set())
    assert not ReconcileSelection(run_id="GL2").covers(key, set())
    assert not ReconcileSelection(pay_group="WK").covers(key, set())
    assert ReconcileSelection(period_from=date(2026, 5, 1), period_to=date(2026, 5, 31)).covers(key, set())
    assert not ReconcileSelection(period_from=date(2026, 5, 16)).covers(key, set())
    assert not ReconcileSelection(period_to=date(2026, 5, 14)).covers(key, set())
    assert not ReconcileSelection(pay_group="BW").covers(key, {"OTHER"})
