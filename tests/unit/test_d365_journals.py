"""d365/journals.py: the one search by marker, the one read of a journal's lines, the line bodies."""

from __future__ import annotations

import re
import tracemalloc
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from ukg2d365.d365.journals import (
    LINE_FIELDS,
    MARKERS_PER_QUERY,
    find_journals,
    journal_lines,
    line_body,
    line_number_key,
    match_lines,
)
from ukg2d365.d365.odata import chunked
from ukg2d365.journal import PlannedLine


class FakeOData:
    """Answers LedgerJournalHeaders by the ``*marker*`` wildcards of the filter, without case, as D365 does."""

    def __init__(self, headers: list[dict[str, Any]]) -> None:
        self.headers = headers
        self.queries: list[dict[str, Any]] = []

    def get_all(self, entity_set: str, **options: Any) -> list[dict[str, Any]]:
        self.queries.append(dict(options, entity_set=entity_set))
        if entity_set == "LedgerJournalLines":
            return [{"LineNumber": 1}]
        wanted = [m.casefold() for m in re.findall(r"Description eq '\*([^*]+)\*'", options["filter"])]
        return [h for h in self.headers if any(m in h["Description"].casefold() for m in wanted)]


def test_find_journals_asks_a_few_markers_per_query_and_assigns_each_header_to_its_marker() -> None:
    markers = [f"U2D-{n:012d}" for n in range(MARKERS_PER_QUERY + 3)]
    odata = FakeOData([{"JournalBatchNumber": "J1", "Description": f"Payroll [{markers[0]}]"},
                       {"JournalBatchNumber": "J2", "Description": f"Payroll [{markers[-1].lower()}]"},
                       {"JournalBatchNumber": "J3", "Description": f"Payroll again [{markers[0]}]"}])
    found = find_journals(odata, "usmf", markers)  # type: ignore[arg-type]
    assert len(odata.queries) == 2
    assert all(q["cross_company"] and q["filter"].startswith("dataAreaId eq 'usmf' and (") for q in odata.queries)
    assert [h["JournalBatchNumber"] for h in found[markers[0]]] == ["J1", "J3"]
    assert [h["JournalBatchNumber"] for h in found[markers[-1]]] == ["J2"]  # D365's wildcard ignores case
    assert found[markers[1]] == []
    assert set(found) == set(markers)


def test_find_journals_without_markers_asks_nothing() -> None:
    odata = FakeOData([])
    assert find_journals(odata, "usmf", []) == {}  # type: ignore[arg-type]
    assert odata.queries == []


def test_journal_lines_reads_one_journal_of_the_legal_entity_with_the_line_fields() -> None:
    odata = FakeOData([])
    journal_lines(odata, "usmf", "USMF-000001", top=1)  # type: ignore[arg-type]
    [query] = odata.queries
    assert query["filter"] == "dataAreaId eq 'usmf' and JournalBatchNumber eq 'USMF-000001'"
    assert query["select"] == LINE_FIELDS and query["top"] == 1 and query["cross_company"]


def test_line_body_carries_a_line_number_only_when_the_client_numbers_lines() -> None:
    line = PlannedLine(3, "601500-110", Decimal("5.00"), Decimal("0.00"), "Payroll")
    body = line_body("usmf", "J1", "2026-11-13", line, "USD")
    assert body["TransDate"] == "2026-11-13T12:00:00Z" and body["CurrencyCode"] == "USD"
    assert "LineNumber" not in body and "Voucher" not in body
    numbered = line_body("usmf", "J1", "2026-11-13", line, "USD", line_number=7, voucher="U2D-X")
    assert numbered["LineNumber"] == Decimal(7) and numbered["Voucher"] == "U2D-X"


def test_line_number_key_drops_the_scale_d365_answers_with() -> None:
    assert line_number_key({"LineNumber": Decimal("3.0000000000000000")}) == 3
    assert line_number_key({"LineNumber": "2.5"}) == Decimal("2.5")


def test_chunked_slices_ids_for_queries_and_refuses_an_empty_size() -> None:
    assert list(chunked([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]
    assert list(chunked([], 25)) == []
    with pytest.raises(ValueError):
        list(chunked([1], 0))


def test_chunked_takes_a_stream_as_it_slices_it() -> None:
    taken: list[int] = []

    def stream() -> Iterator[int]:
        for n in range(5):
            taken.append(n)
            yield n

    chunks = chunked(stream(), 2)
    assert next(chunks) == [0, 1] and taken == [0, 1]  # nothing read ahead of the slice asked for
    assert list(chunks) == [[2, 3], [4]]


def _row(number: int, account: str, debit: str = "0", credit: str = "0", voucher: str = "V1") -> dict[str, Any]:
    return {"LineNumber": Decimal(number), "AccountDisplayValue": account, "DebitAmount": Decimal(debit),
            "CreditAmount": Decimal(credit), "TransDate": "2026-11-13T12:00:00Z", "Text": "t", "Voucher": voucher}


def test_matching_reads_d365_rows_once_as_they_stream_and_walks_the_plan_again() -> None:
    planned = [PlannedLine(1, "601500-110", Decimal("5.00"), Decimal(0), "t"),
               PlannedLine(2, "200100", Decimal(0), Decimal("5.00"), "t")]
    rows = iter([_row(2, "200100", credit="5"), _row(1, "601500-110", debit="5.0000000000000000")])
    match = match_lines(planned, "2026-11-13", rows, by_number=False)
    assert list(match.missing) == [] and match.surplus == [] and match.matched == 2 and match.rows == 2
    assert next(rows, None) is None
    assert match.vouchers.differences() == {} and match.vouchers.vouchers == 1
    one_shot = match_lines(iter(planned), "2026-11-13", [_row(1, "601500-110", debit="5")], by_number=False)
    assert list(one_shot.missing) == [2]  # a one-shot plan is walked twice all the same


def test_out_of_order_rows_still_make_the_later_copy_the_surplus_and_client_numbers_pair_first() -> None:
    a = PlannedLine(1, "601500-110", Decimal("5.00"), Decimal(0), "t")
    b = PlannedLine(2, "601500-110", Decimal("5.00"), Decimal(0), "t")
    rows = [_row(9, "601500-110", debit="5"), _row(3, "601500-110", debit="5"), _row(2, "601500-110", debit="5")]
    by_content = match_lines([a, b], "2026-11-13", rows, by_number=False)
    assert [r["LineNumber"] for r in by_content.surplus] == [9] and list(by_content.missing) == []
    by_number = match_lines([a, b], "2026-11-13", rows, by_number=True)
    # row 2 pairs with planned line 2 by its number; of 3 and 9 the earlier takes line 1, the later is surplus
    assert [r["LineNumber"] for r in by_number.surplus] == [9] and by_number.occupied == {2, 3}


def test_a_row_without_a_whole_line_number_is_ordered_with_the_others() -> None:
    a = PlannedLine(1, "601500-110", Decimal("5.00"), Decimal(0), "t")
    rows = [_row(9, "601500-110", debit="5"), dict(_row(0, "601500-110", debit="5"), LineNumber=Decimal("2.5"))]
    match = match_lines([a], "2026-11-13", rows, by_number=False)
    assert [r["LineNumber"] for r in match.surplus] == [9] and match.matched == 1
    no_number = match_lines([a], "2026-11-13", [_row(3, "601500-110", debit="5"),
                                                dict(_row(0, "601500-110", debit="5"), LineNumber=None)],
                            by_number=False)
    assert [r["LineNumber"] for r in no_number.surplus] == [3]  # no number sorts first, as line 0


def test_voucher_totals_name_the_voucher_that_does_not_balance() -> None:
    planned = [PlannedLine(1, "601500-110", Decimal("5.00"), Decimal(0), "t")]
    rows = [_row(1, "601500-110", debit="5", voucher="V1"), _row(2, "200100", credit="4", voucher="V2")]
    match = match_lines(planned, "2026-11-13", rows, by_number=False)
    assert match.vouchers.differences() == {("V1", "2026-11-13"): Decimal(5), ("V2", "2026-11-13"): Decimal(-4)}
    assert len(match.surplus) == 1


def test_matching_a_large_journal_keeps_digests_not_the_rows() -> None:
    lines = 50_000
    planned = [PlannedLine(n, f"601500-{n % 700:03d}", Decimal(n % 997) + Decimal("0.01"), Decimal(0), "t")
               for n in range(1, lines + 1)]

    def rows() -> Iterator[dict[str, Any]]:  # what D365 pages: a dict of 7 fields per line
        for ln in planned:
            yield _row(ln.line_number, ln.account, debit=str(ln.debit))

    tracemalloc.start()
    try:
        match = match_lines(planned, "2026-11-13", rows(), by_number=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert match.matched == lines and not match.surplus
    # Held whole, the rows alone take 31 MB (and the old match held them, sorted, besides the plan's keys); the
    # match keeps the plan's digests counted and 24 bytes per D365 row: ~200 bytes a line, ~10 MB here.
    assert peak < 14 * 2**20, f"{peak / 2**20:.1f} MB"
def test_an_accrual_line_matches_only_a_d365_line_reversing_on_its_day_while_pay_runs_match_as_before() -> None:
    from ukg2d365.d365.journals import match_lines

    line = PlannedLine(1, "601500-110", Decimal("5.00"), Decimal(0), "Accrual")
    # How D365 answers a line that does not reverse: ReverseEntry No and the empty date 1900-01-01
    # (tests/sandbox/test_live_contract.py::test_line_answers_like_list_ledger_journal_lines_recording).
    plain = {"LineNumber": Decimal(1), "AccountDisplayValue": "601500-110", "DebitAmount": Decimal("5"),
             "CreditAmount": Decimal(0), "TransDate": "2026-06-30T12:00:00Z", "Text": "Accrual",
             "ReverseEntry": "No", "ReverseDate": "1900-01-01T12:00:00Z"}
    reversing = dict(plain, ReverseEntry="Yes", ReverseDate="2026-07-01T12:00:00Z")
    assert match_lines([line], "2026-06-30", [reversing], by_number=False, reverse_date="2026-07-01").matched == 1
    for wrong in (plain, dict(reversing, ReverseDate="2026-07-02T12:00:00Z"), dict(plain, ReverseDate="2026-07-01")):
        missed = match_lines([line], "2026-06-30", [wrong], by_number=False, reverse_date="2026-07-01")
        assert (missed.matched, [r["LineNumber"] for r in missed.surplus]) == (0, [wrong["LineNumber"]])
    numbered = match_lines([line], "2026-06-30", [plain], by_number=True, reverse_date="2026-07-01")
    assert numbered.matched == 0 and numbered.occupied == set()  # its own number does not make it the same line
    for row in (plain, reversing):  # a pay run's lines carry no reversal: matched as before, whatever D365 says
        assert match_lines([line], "2026-06-30", [row], by_number=False).matched == 1
    assert {"ReverseEntry", "ReverseDate"} <= set(LINE_FIELDS)  # read wherever lines are read
