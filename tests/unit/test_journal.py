import hashlib
from decimal import Decimal

import pytest

from tests.helpers import gl, make_config
from ukg2d365.errors import DataError
from ukg2d365.journal import LineIds, PlannedLine, PlannedLines, PostingKey, build_journals, journal_description
from ukg2d365.ukg.records import parse_gl_line


def lines(*items):
    return [parse_gl_line(item, i) for i, item in enumerate(items, start=1)]


def test_summarized_journal_keeps_debit_and_credit_apart_and_balances():
    cfg = make_config()
    journals = build_journals(lines(
        gl("5000", Decimal("1000.10"), cc="110", dept="PROD", system_id=1),
        gl("5000", Decimal("200.20"), cc="110", dept="PROD", system_id=2),
        gl("2100", 0, Decimal("1200.30"), system_id=3),
    ), cfg)
    assert len(journals) == 1
    j = journals[0]
    assert j.problems == []
    assert [(ln.account, ln.debit, ln.credit) for ln in j.lines] == [
        ("211000--", Decimal("0.00"), Decimal("1200.30")),
        ("601500-CC110-PROD", Decimal("1200.30"), Decimal("0.00")),
    ]
    assert j.debit_total == j.credit_total == Decimal("1200.30")
    assert [ln.line_number for ln in j.lines] == [1, 2]
    assert j.accounts == {"601500", "211000"}
    assert j.dimension_values == {"CostCenter": {"CC110"}, "Department": {"PROD"}}


def test_unsummarized_journal_has_one_line_per_ukg_amount():
    cfg = make_config(summarize=False)
    j = build_journals(lines(
        gl("5000", Decimal("10.00"), cc="120", dept="QA", system_id=1),
        gl("5000", Decimal("5.00"), cc="120", dept="QA", system_id=2),
        gl("2100", 0, Decimal("15.00"), system_id=3),
    ), cfg)[0]
    assert [(ln.account, ln.debit) for ln in j.lines] == [("601500-120-QA", Decimal("10.00")),
                                                          ("601500-120-QA", Decimal("5.00")),
                                                          ("211000--", Decimal("0.00"))]
    assert j.lines[2].credit == Decimal("15.00")


def test_unbalanced_run_is_refused_with_both_totals():
    j = build_journals(lines(gl("5000", Decimal("100.00"), cc="110"), gl("2100", 0, Decimal("99.99"))),
                       make_config())[0]
    assert not j.postable
    assert any("debits 100.00 != credits 99.99" in p for p in j.problems)


def test_unmapped_account_is_refused_and_named():
    j = build_journals(lines(gl("9999", Decimal("5.00")), gl("2100", 0, Decimal("5.00"))), make_config())[0]
    assert not j.postable
    assert any("'9999'" not in p and "9999" in p and "mapping.main_accounts" in p for p in j.problems)


def test_code_with_delimiter_is_refused():
    j = build_journals(lines(gl("5000", Decimal("5.00"), cc="1-10"), gl("2100", 0, Decimal("5.00"))),
                       make_config())[0]
    assert any("delimiter" in p and "1-10" in p for p in j.problems)


def test_negative_debit_becomes_credit_and_totals_stay_balanced():
    j = build_journals(lines(gl("5000", Decimal("100.00"), cc="110", system_id=1),
                             gl("5000", Decimal("-30.00"), cc="110", system_id=2),
                             gl("2100", 0, Decimal("70.00"), system_id=3)), make_config(summarize=False))[0]
    assert j.problems == []
    assert [(ln.debit, ln.credit) for ln in j.lines] == [(Decimal("100.00"), Decimal("0.00")),
                                                         (Decimal("0.00"), Decimal("30.00")),
                                                         (Decimal("0.00"), Decimal("70.00"))]
    assert j.debit_total == j.credit_total == Decimal("100.00")
    assert all(ln.debit >= 0 and ln.credit >= 0 for ln in j.lines)


def test_runs_are_split_by_posting_key():
    js = build_journals(lines(
        gl("5000", 1, run="A", cc="110"), gl("2100", 0, 1, run="A"),
        gl("5000", 2, run="B", cc="110"), gl("2100", 0, 2, run="B"),
    ), make_config())
    assert [j.key.run_id for j in js] == ["A", "B"]


def test_incomplete_block_set_is_refused():
    j = build_journals(lines(gl("5000", 1, cc="110", blockId=1, totalNrOfBlocks=2),
                             gl("2100", 0, 1, blockId=1, totalNrOfBlocks=2)), make_config())[0]
    assert any("incomplete GL run" in p for p in j.problems)


def test_run_is_complete_with_total_distinct_block_ids_whatever_they_start_at():
    zero_based = build_journals(lines(gl("5000", 1, cc="110", blockId=0, totalNrOfBlocks=2, system_id=1),
                                      gl("2100", 0, 1, blockId=1, totalNrOfBlocks=2, system_id=2)), make_config())[0]
    assert not any("incomplete GL run" in p for p in zero_based.problems)
    too_many = build_journals(lines(gl("5000", 1, cc="110", blockId=0, totalNrOfBlocks=1, system_id=1),
                                    gl("2100", 0, 1, blockId=1, totalNrOfBlocks=1, system_id=2)), make_config())[0]
    assert any("incomplete GL run" in p for p in too_many.problems)


def test_a_null_side_next_to_an_amount_is_zero():
    (line,) = lines(gl("5000", None, Decimal("12.50")))
    assert line.debit == Decimal("0.00") and line.credit == Decimal("12.50")
    (missing,) = lines({k: v for k, v in gl("5000", Decimal("3.00")).items() if k != "creditAmt"})
    assert missing.credit == Decimal("0.00")


@pytest.mark.parametrize("item", [gl("5000", None, None, system_id=41),
                                  {k: v for k, v in gl("5000", system_id=41).items()
                                   if k not in ("debitAmt", "creditAmt")}])
def test_a_line_with_both_sides_null_or_missing_is_refused_by_name(item):
    with pytest.raises(DataError, match=r"GL run R1 line 41: debitAmt and creditAmt are both null or missing"):
        parse_gl_line(item, 1)


def test_gl_lines_carry_no_employee_so_an_employee_number_never_splits_a_posting():
    a, b = lines(gl("5000", 1, cc="110", system_id=1, employeeNumber="E1"),
                 gl("2100", 0, 1, system_id=2, employeeNumber="E2"))
    assert PostingKey.of(a) == PostingKey.of(b) and "E1" not in PostingKey.of(a).text


def test_marker_is_stable_short_and_in_description():
    key = PostingKey("C0MP1", "BW", parse_gl_line(gl("5000"), 1).period_end, "GL20261113BW01")
    assert key.marker == PostingKey("C0MP1", "BW", key.period_end, "GL20261113BW01").marker
    assert key.marker != PostingKey("C0MP1", "BW", key.period_end, "GL20261113BW02").marker
    description = journal_description(key)
    assert key.marker in description and len(description) <= 60


def test_bad_record_names_run_line_and_field():
    with pytest.raises(DataError, match=r"GL run R1 line 7: debitAmt '1,234.50' is not a plain number"):
        parse_gl_line(gl("5000", "1,234.50", system_id=7), 1)


def test_values_validated_once_per_run_are_still_refused_when_a_later_line_sends_them_as_another_type():
    assert parse_gl_line(gl("5000", 1, cc="1", run="1"), 1).run_id == "1"  # text: validated, remembered
    with pytest.raises(DataError, match="runId True is not text"):
        parse_gl_line(gl("5000", 1, cc="1", run=True), 2)  # True == 1 == "1"? never: a bool is not text
    with pytest.raises(DataError, match="orgLevel1 True is not text"):
        parse_gl_line(gl("5000", 1, cc=True, run="1"), 3)
    with pytest.raises(DataError, match="periodEndDate is missing"):
        parse_gl_line(gl("5000", 1, run="1", period=None), 4)
    with pytest.raises(DataError, match="is not text"):
        parse_gl_line(gl("5000", 1, run=["1"]), 5)  # unhashable: no cache, refused by name


def test_line_ids_find_every_repeat_exactly_across_sorted_runs(monkeypatch):
    monkeypatch.setattr(LineIds, "RUN", 4)  # several sorted runs, merged at the end
    ids = LineIds()
    for block, system_id in [(1, "7"), (1, "8"), (2, "7"), (1, "007"), (1, "9"), (1, "10"), (1, "11"),
                             (1, "12"), (1, "8"), (1, "-3"), (1, "x1"), (1, "x1"), (1, "4294967296"),
                             (1, "4294967296")]:
        ids.add(block, system_id)
    # 7 in another block, "007" (another spelling) and -3 are distinct; 8 came back after a full run;
    # a number past 32 bits and a text id are told apart as text
    assert sorted(ids.repeated()) == ["4294967296", "8", "x1"]
    assert LineIds().repeated() == []


def test_the_source_hash_keeps_its_format_so_a_stored_hash_still_matches_the_same_ukg_lines():
    items = [gl("5000", Decimal("1.10"), cc="110", system_id=1), gl("2100", 0, Decimal("1.10"), system_id=2)]
    journal = build_journals(lines(*items), make_config(summarize=False))[0]
    expected = hashlib.sha256(b"1|5000|1.10|0.00|110|||\n2|2100|0.00|1.10||||\n").hexdigest()
    assert journal.source_hash == expected
    assert journal.plan_hash == journal.lines.digest and len(journal.plan_hash) == 64


def test_planned_lines_spill_to_disk_past_the_threshold_and_read_back_in_order():
    lines = PlannedLines()  # a journal of many lines costs disk, not memory
    for i in range(1, 12001):
        lines.append(PlannedLine(i, f"6015{i % 7}-CC-", Decimal("1.10") * (i % 3), Decimal("0.00"), "Pay, \"x\""))
    assert len(lines) == 12000 and lines._file is not None and lines._memory == []
    again = list(lines)
    assert [ln.line_number for ln in again] == list(range(1, 12001))
    assert again[4] == PlannedLine(5, "60155-CC-", Decimal("2.20"), Decimal("0.00"), "Pay, \"x\"")
    assert list(lines) == again  # iterable again and again
    lines.append(PlannedLine(12001, "a", Decimal(1), Decimal(0), "t"))
    assert lines[-1].account == "a" and len(list(lines)) == 12001
