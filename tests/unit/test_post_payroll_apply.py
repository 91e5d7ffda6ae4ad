"""post_payroll.apply, the one apply of the CLI and the webhook: refusals are recorded also when nothing is sent."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.helpers import gl, make_config
from ukg2d365.flows.post_payroll import PayrollPlan, apply
from ukg2d365.flows.runtime import Context
from ukg2d365.journal import build_journals
from ukg2d365.ukg.records import parse_gl_line


def test_apply_with_only_refused_journals_audits_them_and_builds_no_d365_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = [gl("5000", Decimal("1.10"), cc="110"), gl("2100", 0, Decimal("1.10"), system_id=1)]
    [journal] = build_journals([parse_gl_line(x, i) for i, x in enumerate(items)], make_config(tmp_path))
    assert journal.problems  # UKG sent systemId 1 twice: refused
    monkeypatch.setattr(Context, "d365", property(lambda self: pytest.fail("a D365 client for nothing to send")))
    ctx = Context(make_config(tmp_path), ledger_path=tmp_path / "l.db")
    try:
        result = apply(ctx, PayrollPlan(refused=[journal]))
        trail = ctx.ledger.audit_trail(journal.key.text)
    finally:
        ctx.close()
    assert result.outcomes == [] and not result.ok  # a refusal is not a clean run
    assert [(e["kind"], e["detail"]["problems"]) for e in trail] == [("refused", journal.problems)]


def test_every_journal_is_planned_before_the_first_is_sent_so_a_run_killed_between_them_leaves_the_period_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ukg2d365.flows import post_payroll
    from ukg2d365.ledger import PLANNED, POSTED

    journals = []
    for run in ("R1", "R2"):  # two runs of one pay group and period
        items = [gl("5000", Decimal("1.10"), cc="110", run=run), gl("2100", 0, Decimal("1.10"), system_id=2, run=run)]
        journals += build_journals([parse_gl_line(x, i) for i, x in enumerate(items)], make_config(tmp_path))

    class KilledAfterTheFirst:
        def __init__(self, d365: object, ledger: object, *args: object) -> None:
            self.ledger = ledger

        def post(self, posting, route):  # type: ignore[no-untyped-def]
            self.ledger.set_status(posting.key, POSTED)  # type: ignore[attr-defined]
            raise KeyboardInterrupt  # the process is killed once the first journal is recorded posted

    monkeypatch.setattr(post_payroll, "make_poster", lambda ctx, progress: KilledAfterTheFirst(None, ctx.ledger))
    monkeypatch.setattr(Context, "d365", property(lambda self: None))
    ctx = Context(make_config(tmp_path), ledger_path=tmp_path / "l.db")
    try:
        with pytest.raises(KeyboardInterrupt):
            apply(ctx, PayrollPlan(to_post=journals))
        states = ctx.ledger.period_states("BW", journals[0].key.period_end.isoformat())
        assert sorted(states.values()) == [PLANNED, POSTED]
        assert not post_payroll.period_done(ctx.ledger, "BW", journals[0].key.period_end)
    finally:
        ctx.close()
