"""The customer's own dimension formats, end to end against the sandbox in its default.

The sandbox D365's active ledger format holds five dimensions, of which UKG feeds two (CostCenter from
orgLevel1, Department from orgLevel2); the other three are blank segments, delimiters kept, as in a
recorded live value (see tests/sandbox/test_d365.py).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.world import World, d365_totals, expected_display, ukg_totals
from ukg2d365.errors import ExitStatus
from ukg2d365.sandbox import catalog

pytestmark = pytest.mark.e2e

UNFED = ("BusinessUnit", "Project", "Region")


def edit_config(world: World, edit: Any) -> None:
    data = yaml.safe_load(world.config_path.read_text())
    edit(data)
    path = world.config_path.with_name("edited.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    world.config_path = path


def segments(display: str) -> dict[str, str]:
    parts = display.split(catalog.DELIMITER)
    assert len(parts) == len(catalog.LEDGER_FORMAT), display
    return dict(zip(catalog.LEDGER_FORMAT, parts, strict=True))


def test_the_sandbox_default_has_five_ledger_dimensions_of_which_ukg_feeds_two(world: World) -> None:
    assert world.d365.ledger_format == catalog.LEDGER_FORMAT
    dims = catalog.LEDGER_FORMAT[1:]
    assert len(dims) == 5 and [d for d in dims if d not in UNFED] == ["CostCenter", "Department"]


def test_post_payroll_posts_one_journal_whose_display_values_leave_the_unfed_dimensions_blank(world: World) -> None:
    run = world.latest_run()
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    [journal] = world.journals()
    assert d365_totals(journal) == ukg_totals(run)
    fed_somewhere = False
    for line in journal["lines"]:
        seg = segments(line["AccountDisplayValue"])
        assert all(seg[name] == "" for name in UNFED), line["AccountDisplayValue"]
        fed_somewhere = fed_somewhere or bool(seg["CostCenter"] and seg["Department"])
    assert fed_somewhere  # the fed segments do carry UKG's codes
    item = run.items(0, 1)[0]
    assert expected_display(item).count(catalog.DELIMITER) == 5


def test_sync_employees_sends_worker_default_dimensions_in_d365s_default_format(world: World) -> None:
    world.cli("sync-employees")
    rows = list(world.d365.tables["EmploymentsV2"].values())
    displays = [r["DimensionDisplayValue"] for r in rows if r.get("DimensionDisplayValue")]
    assert displays
    for display in displays:
        parts = display.split(catalog.DELIMITER)
        assert len(parts) == len(catalog.DEFAULT_DIMENSION_FORMAT), display
        seg = dict(zip(catalog.DEFAULT_DIMENSION_FORMAT, parts, strict=True))
        assert seg["BusinessUnit"] == "" and seg["Project"] == "" and seg["CostCenter"], display


def test_a_constant_dimension_is_created_once_and_carried_by_every_line(world: World) -> None:
    edit_config(world, lambda c: c["mapping"]["dimensions"].update({"BusinessUnit": {"value": "001"}}))
    world.cli("sync-dimensions")
    values = [r for r in world.d365.tables["FinancialDimensionValues"].values()
              if r["FinancialDimension"] == "BusinessUnit"]
    assert [r["DimensionValue"] for r in values] == ["001"]
    run = world.latest_run()
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    [journal] = world.journals()
    assert {segments(line["AccountDisplayValue"])["BusinessUnit"] for line in journal["lines"]} == {"001"}
    world.cli("sync-dimensions")  # a rerun creates nothing twice
    assert len([r for r in world.d365.tables["FinancialDimensionValues"].values()
                if r["FinancialDimension"] == "BusinessUnit"]) == 1


def test_a_ledger_format_guard_that_differs_from_d365_refuses_naming_both(world: World) -> None:
    edit_config(world, lambda c: c["mapping"].update({"ledger_format": ["MainAccount", "CostCenter", "Department"]}))
    run = world.latest_run()
    result = world.cli("post-payroll", "--run-id", run.run_id, "--yes", expect=ExitStatus.USAGE)
    text = " ".join(result.output.split())
    assert "MainAccount - BusinessUnit - CostCenter - Project - Department - Region" in text
    assert "mapping.ledger_format is MainAccount - CostCenter - Department" in text
    assert world.journals() == []


def test_a_matching_guard_posts(world: World) -> None:
    edit_config(world, lambda c: c["mapping"].update({"ledger_format": list(catalog.LEDGER_FORMAT)}))
    world.cli("post-payroll", "--run-id", world.latest_run().run_id, "--yes")
    assert len(world.journals()) == 1


def test_a_mapped_dimension_missing_from_d365s_format_stops_before_any_write(world: World) -> None:
    world.d365.set_ledger_format(["MainAccount", "CostCenter", "BusinessUnit"])
    result = world.cli("post-payroll", "--run-id", world.latest_run().run_id, "--yes", expect=ExitStatus.USAGE)
    assert "mapping.dimensions names Department" in " ".join(result.output.split())
    assert world.journals() == []


def test_ping_shows_the_format_check_on_a_line_of_its_own(world: World) -> None:
    events = world.json_events("ping")
    [check] = [e for e in events if e.get("event") == "check" and e["system"] == "D365 formats"]
    assert check["ok"] is True
    assert "UKG feeds MainAccount, CostCenter, Department; blank: BusinessUnit, Project, Region" in check["detail"]
    guard = {"default_dimensions": ["CostCenter", "Department"]}
    edit_config(world, lambda c: c.setdefault("employees", {}).update(guard))
    events = world.json_events("ping", expect=ExitStatus.RECORDS_FAILED)
    [check] = [e for e in events if e.get("event") == "check" and e["system"] == "D365 formats"]
    assert check["ok"] is False and "employees.default_dimensions is CostCenter - Department" in check["detail"]


def test_sync_employees_stops_when_d365s_default_format_changed_since_the_cache(world: World) -> None:
    world.cli("ping")  # fills the cache with today's formats
    world.d365.set_default_dimension_format(["Department", "CostCenter"])
    result = world.cli("sync-employees", expect=ExitStatus.USAGE)
    assert "changed since the last run" in result.output
    assert world.d365.request_count["$batch"] == 0
    world.cli("sync-employees")  # the cache now holds D365's order
    displays = {r["DimensionDisplayValue"] for r in world.d365.tables["EmploymentsV2"].values()
                if r.get("DimensionDisplayValue")}
    assert displays and all(d.count(catalog.DELIMITER) == 1 for d in displays)
