"""payroll.posting_date / document_date end to end: the pay date from UKG's paygroup-payperiods on every line."""

from __future__ import annotations

import pytest
import yaml

from tests.world import World

pytestmark = pytest.mark.e2e


def configure_payroll(world: World, **payroll: str) -> None:
    config = yaml.safe_load(world.config_path.read_text())
    config.setdefault("payroll", {}).update(payroll)
    world.config_path.write_text(yaml.safe_dump(config))


def test_posting_date_pay_date_puts_the_pay_date_on_every_line(world: World) -> None:
    run = world.latest_run()
    period = world.sandbox.dataset.period(run.pay_group, run.period_end)
    assert period.pay_date != period.period_end
    configure_payroll(world, posting_date="pay_date", document_date="period_end")
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    (journal,) = world.journals()
    assert journal["lines"]
    assert {line["TransDate"][:10] for line in journal["lines"]} == {period.pay_date.isoformat()}
    assert {line["DocumentDate"][:10] for line in journal["lines"]} == {period.period_end.isoformat()}
    assert "1 already posted" in world.cli("post-payroll", "--run-id", run.run_id, "--yes").output
    assert len(world.journals()) == 1


def test_by_default_the_period_end_is_the_posting_date_and_no_document_date_is_sent(world: World) -> None:
    run = world.latest_run()
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    (journal,) = world.journals()
    assert {line["TransDate"][:10] for line in journal["lines"]} == {run.period_end.isoformat()}
    assert {line["DocumentDate"][:4] for line in journal["lines"]} == {"1900"}  # D365's empty date
