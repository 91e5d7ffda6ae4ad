"""flows/gl_read.py: the one loop from raw UKG GL items to a JournalBuilder per pay run."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from tests.helpers import gl, make_config
from ukg2d365.flows.gl_read import GlFilter, read_gl
from ukg2d365.journal import PostingKey
from ukg2d365.mapping import Mapper

NOV = date(2026, 11, 13)


def test_lines_go_to_their_pay_runs_builder_and_the_selection_is_decided_once_per_run() -> None:
    cfg = make_config()
    items = [gl("5000", "10.00", run="R1"), gl("2100", 0, "10.00", run="R1", system_id=2),
             gl("5000", "7.00", run="R2", pay_group="WK"), gl("2100", 0, "7.00", run="R2", pay_group="WK",
                                                                 system_id=2)]
    asked: list[PostingKey] = []

    def wanted(key: PostingKey) -> bool:
        asked.append(key)
        return key.pay_group == "BW"

    read = read_gl(iter(items), cfg, Mapper(cfg.mapping), wanted=wanted)
    assert [k.run_id for k in asked] == ["R1", "R2"]  # four lines, two decisions
    assert read.lines_read == 4 and [k.run_id for k in read.keys_seen] == ["R1", "R2"]
    [journal] = read.journals()
    assert journal.key == PostingKey("C0MP1", "BW", NOV, "R1")
    assert journal.debit_total == journal.credit_total == Decimal("10.00") and not journal.problems


def test_a_bad_line_is_attributed_to_its_run_or_to_none_and_skipped_when_not_wanted() -> None:
    cfg = make_config()
    items = [gl("5000", "not money", run="R1"), {"debitAmt": "x"}, gl("5000", "x", run="R9", pay_group="WK"), 42]
    selected = GlFilter(pay_group="BW")
    read = read_gl(items, cfg, Mapper(cfg.mapping), wanted=selected.covers, may_want=selected.may_cover)
    assert read.lines_read == 4 and read.journals() == []
    assert set(read.errors_by_run) == {"R1", ""}  # R9 is another pay group: not this selection's business
    assert len(read.errors_by_run[""]) == 2  # no run id, and not even an object


def test_gl_filter_covers_companies_pay_group_periods_and_ranges() -> None:
    key = PostingKey("C0MP1", "BW", NOV, "R1")
    assert GlFilter().covers(key)
    assert not GlFilter(companies=frozenset({"OTHER"})).covers(key)
    assert not GlFilter(run_id="R2").covers(key)
    assert GlFilter(periods=frozenset({("BW", NOV)})).covers(key)
    assert not GlFilter(periods=frozenset({("WK", NOV)})).covers(key)
    assert not GlFilter(period_from=date(2026, 11, 14)).covers(key)
    assert GlFilter(period_to=NOV, pay_group="BW", period_end=NOV).covers(key)


def test_gl_filter_on_an_unreadable_item_tests_only_what_it_carries() -> None:
    selected = GlFilter(pay_group="BW", period_end=NOV)
    assert selected.may_cover({"payGroup": "BW", "periodEndDate": "2026-11-13T00:00:00"})
    assert selected.may_cover({"payGroup": None}) and selected.may_cover("not an object")
    assert not selected.may_cover({"payGroup": "WK"})
    assert not selected.may_cover({"payPeriodEndDate": "2026-11-20"})
    due = GlFilter(periods=frozenset({("BW", NOV)}))
    assert not due.may_cover({"payGroup": "BW", "periodEndDate": "2026-11-27"})
