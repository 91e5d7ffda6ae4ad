"""Month-end accrual journals: the key, one journal per legal entity, the problems of a source run, --due's month."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import CONFIG_YAML, gl
from ukg2d365.accruals import AccrualRules, Share, SourceRun, accrual_journals
from ukg2d365.config import Config, parse_config
from ukg2d365.errors import UsageError
from ukg2d365.flows.accrue_payroll import AccrualSelection, PayPeriod, due_month_end
from ukg2d365.flows.post_payroll import posting_record
from ukg2d365.journal import AccrualKey, JournalRouter, PostingKey
from ukg2d365.ledger import POSTED, Ledger
from ukg2d365.mapping import Mapper
from ukg2d365.ukg.records import parse_gl_line

D = Decimal
MONTH_END = date(2026, 11, 30)
ENTITIES = """
legal_entities:
  by_company: {"C0MP1": "USMF"}
  by_dimension: {dimension: CostCenter, values: {"130": "USPM"}}
  intercompany: {due_from_account: "133100", due_to_account: "233100"}
accruals:
  accounts: ["5000"]
  liability_account: "211900"
"""


def config(extra: str = ENTITIES) -> Config:
    return parse_config(CONFIG_YAML.format(summarize="true") + extra, Path("/nonexistent/c.yaml"))


def source_runs(cfg: Config, *items: dict) -> list[SourceRun]:
    router = JournalRouter(cfg, Mapper(cfg.mapping))
    for i, item in enumerate(items, start=1):
        router.add(parse_gl_line(item, i))
    return [SourceRun(key.run_id, builder.finish_by_entity(), builder.ledger_accounts())
            for key, builder in sorted(router.builders.items())]


def rules(cfg: Config) -> AccrualRules:
    assert cfg.accruals is not None
    return AccrualRules(frozenset(cfg.accruals.accounts), "211900", Mapper(cfg.mapping).display_of("211900"),
                        cfg.accruals.line_text)


def test_an_accrual_key_names_pay_group_entity_and_month_and_never_equals_a_pay_runs():
    key = AccrualKey.for_month("BW", "usmf", MONTH_END)
    assert key.text == "accrual/BW/USMF/2026-11-30" and key.kind == "accrual" and key.month_end == MONTH_END
    pay_run = PostingKey("accrual", "BW", MONTH_END, "USMF")  # even a company named "accrual"
    assert pay_run.text != key.text and pay_run.marker != key.marker
    assert key.marker.startswith("U2D-") and len(key.marker) == len(pay_run.marker)
    assert key.reconcile_options == "--pay-group BW --period-end 2026-11-30"


def test_each_entity_accrues_the_share_of_the_labor_it_bears_balanced_by_its_own_liability():
    cfg = config()
    runs = source_runs(cfg, gl("5000", "140.00", cc="110", dept="PROD"),
                       gl("5000", "70.00", cc="130", dept="PROD", system_id=2),
                       gl("2100", 0, "210.00", system_id=3))
    planned = accrual_journals("BW", MONTH_END, Share(4, 14), runs, rules(cfg))
    assert planned.problems == []
    usmf, uspm = planned.journals
    assert [(ln.account, ln.debit, ln.credit) for ln in usmf.lines] == [
        ("601500-CC110-PROD", D("40.00"), D("0.00")), ("211900--", D("0.00"), D("40.00"))]
    # the intercompany lines of the run (133100, 233100) book no UKG account: nothing of them is accrued
    assert [(ln.account, ln.debit, ln.credit) for ln in uspm.lines] == [
        ("601500-130-PROD", D("20.00"), D("0.00")), ("211900--", D("0.00"), D("20.00"))]
    assert (usmf.key.text, uspm.key.text) == ("accrual/BW/USMF/2026-11-30", "accrual/BW/USPM/2026-11-30")
    for journal in (usmf, uspm):
        assert journal.balanced and journal.postable
        assert journal.reverse_date == date(2026, 12, 1) and journal.trans_date == MONTH_END
        assert journal.accounts == {"601500", "211900"} and journal.source_runs == ("R1",)
        assert [ln.text for ln in journal.lines] == ["Accrual BW 2026-11-30"] * 2
    assert uspm.dimension_values == {"CostCenter": {"130"}, "Department": {"PROD"}}
    assert posting_record(usmf).kind == "accrual" and posting_record(usmf).run_id == "R1"


def test_a_problem_of_the_source_run_refuses_every_accrual_journal():
    cfg = config()
    runs = source_runs(cfg, gl("5000", "140.00", cc="110"), gl("5000", "70.00", cc="130", system_id=2),
                       gl("2100", 0, "200.00", system_id=3))
    planned = accrual_journals("BW", MONTH_END, Share(4, 14), runs, rules(cfg))
    assert planned.problems and planned.problems[0].startswith("UKG run R1: unbalanced in UKG")
    assert len(planned.journals) == 2
    assert all(not j.postable and j.problems == planned.problems for j in planned.journals)


def test_line_text_names_the_ukg_account_or_the_liability_account():
    cfg = config(ENTITIES.replace('liability_account: "211900"',
                                  'liability_account: "211900"\n  line_text: "{account} {legal_entity} {month_end}"'))
    runs = source_runs(cfg, gl("5000", "14.00", cc="110"), gl("2100", 0, "14.00", system_id=2))
    (journal,) = accrual_journals("BW", MONTH_END, Share(4, 14), runs, rules(cfg)).journals
    assert [ln.text for ln in journal.lines] == ["5000 USMF 2026-11-30", "211900 USMF 2026-11-30"]


@pytest.mark.parametrize(("selection", "message"), [
    (AccrualSelection(), "needs --month-end DATE or --due"),
    (AccrualSelection(MONTH_END, due=True), "not both"),
    (AccrualSelection(date(2026, 11, 29)), "not the last day of a month"),
])
def test_a_selection_names_one_month_end_or_due(selection, message):
    with pytest.raises(UsageError, match=message):
        selection.validate()


def bw(start: date, end: date) -> PayPeriod:
    return PayPeriod("BW", start, end, closed=True)


def test_due_is_the_latest_month_end_in_the_window_a_period_straddles_and_not_yet_accrued(tmp_path):
    cfg = config()
    ctx = SimpleNamespace(config=cfg.model_copy(update={"payroll": cfg.payroll.model_copy(
        update={"lookback_days": 45})}), ledger=Ledger(tmp_path / "l.db"))
    periods = [bw(date(2026, 10, 24), date(2026, 11, 6)), bw(date(2026, 11, 28), date(2026, 12, 11))]
    today = date(2026, 12, 10)  # the window holds Oct 31 and Nov 30
    assert due_month_end(ctx, "BW", today, periods) == MONTH_END

    runs = source_runs(cfg, gl("5000", "14.00", cc="110"), gl("2100", 0, "14.00", system_id=2))
    (journal,) = accrual_journals("BW", MONTH_END, Share(3, 14), runs, rules(cfg)).journals
    ctx.ledger.save_plan(posting_record(journal), journal.lines)
    assert due_month_end(ctx, "BW", today, periods) == MONTH_END  # planned, not posted: still due
    ctx.ledger.set_status(journal.key.text, POSTED)
    assert due_month_end(ctx, "BW", today, periods) == date(2026, 10, 31)  # the latest one not yet accrued
    assert due_month_end(ctx, "BW", today, periods[1:]) is None  # Oct 31: no period straddles it
    assert due_month_end(ctx, "BW", date(2026, 12, 20), periods) is None  # Nov 30 accrued, Oct 31 out of window
