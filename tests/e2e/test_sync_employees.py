"""sync-employees: mapping, change detection, the per-employee plan, and the command against the sandbox."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests.world import worker_display
from ukg2d365.cli import app
from ukg2d365.config import Config, parse_config
from ukg2d365.errors import ExitStatus
from ukg2d365.flows.runtime import Context
from ukg2d365.flows.sync_employees import (
    CREATE,
    IGNORED,
    LAST_SYNC_SETTING,
    SKIPPED,
    TERMINATE,
    UNCHANGED,
    UPDATE,
    D365Employment,
    PersonName,
    RecordProblem,
    SyncedEmployee,
    Targets,
    changed_since,
    changed_targets,
    d365_employment,
    employment_target,
    map_employments,
    plan_employee,
    plan_employees,
)
from ukg2d365.ledger import Ledger
from ukg2d365.mapping import DimensionFormats, Mapper
from ukg2d365.sandbox import Sandbox

CONFIG_YAML = """
ukg:
  base_url: https://service4.ultipro.com
  company_ids: {companies}
d365:
  base_url: https://contoso.operations.dynamics.com
  tenant_id: t
  client_id: c
  legal_entity: usmf
mapping:
  ledger_format: [MainAccount, CostCenter, Department]
  delimiter: "-"
  main_accounts: {{"5000": "601500"}}
  dimensions:
    CostCenter: {{source: orgLevel1, values: {{"110": "CC110"}}}}
    Department: {{source: orgLevel2, create_in: OperatingUnits}}
employees:
  personnel_number: employeeNumber
  default_dimensions: [Department, CostCenter]
"""
TODAY = dt.date(2026, 11, 26)
LE = "usmf"


def config(companies: str = "[]") -> Config:
    return parse_config(CONFIG_YAML.format(companies=companies), Path("/nonexistent/ukg2d365.yaml"))


def employment(number: str = "100001", **fields: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "companyID": "C0MP1", "employeeID": f"EE{number}", "employeeNumber": number,
        "orgLevel1Code": "120", "orgLevel2Code": "PROD", "orgLevel3Code": "", "orgLevel4Code": "",
        "originalHireDate": "2010-01-04T00:00:00", "lastHireDate": "2015-03-02T00:00:00",
        "dateOfTermination": None, "employeeStatusCode": "A",
    }
    raw.update(fields)
    return raw


def target(number: str = "100001", **fields: Any):  # type: ignore[no-untyped-def]
    cfg = config()
    return employment_target(employment(number, **fields), cfg, Mapper(cfg.mapping, DimensionFormats.configured(
        cfg.mapping, cfg.employees.default_dimensions)))


def d365(number: str = "100001", *, display: str = "PROD-120", end: str = "2154-12-31T23:59:59Z",
         start: str = "2015-03-02T00:00:00Z", employment_id: str = "E000001") -> D365Employment:
    return d365_employment({"PersonnelNumber": number, "EmploymentLegalEntityId": LE, "EmploymentId": employment_id,
                            "EmploymentStartDate": start, "EmploymentEndDate": end, "DimensionDisplayValue": display})


def plan_one(t: Any, existing: list[D365Employment], *, missing: dict[str, set[str]] | None = None,
             name: PersonName | None = PersonName("Ada", "", "Lovelace"), known: str | None = None) -> Any:
    return plan_employee(t, existing, legal_entity=LE, missing_values=missing or {}, name=name,
                         known_employment_id=known, today=TODAY)


# ---------------------------------------------------------------------- mapping


def test_target_maps_org_levels_into_the_default_dimension_order_with_recodes() -> None:
    t = target(orgLevel1Code="110", orgLevel2Code="QA")
    assert t.personnel_number == "100001" and t.join_key == ("C0MP1", "EE100001")
    assert t.dimensions == (("Department", "QA"), ("CostCenter", "CC110"))
    assert t.display == "QA-CC110"


def test_last_hire_date_wins_over_original_hire_date() -> None:
    assert target().start_date == dt.date(2015, 3, 2)
    assert target(lastHireDate=None).start_date == dt.date(2010, 1, 4)


def test_termination_date_sets_the_end_and_a_stale_one_before_a_rehire_does_not() -> None:
    assert target(dateOfTermination="2026-11-20T00:00:00", employeeStatusCode="T").end_date == dt.date(2026, 11, 20)
    assert target(dateOfTermination="2012-06-30T00:00:00").end_date is None


def test_blank_org_level_leaves_its_segment_empty() -> None:
    assert target(orgLevel2Code="").display == "-120"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"employeeNumber": ""}, "employeeNumber is missing"),
        ({"employeeID": None}, "employeeID is missing"),
        ({"lastHireDate": None, "originalHireDate": None}, "neither lastHireDate nor originalHireDate"),
        ({"lastHireDate": "yesterday"}, "lastHireDate 'yesterday' is not a date"),
        ({"employeeStatusCode": "T"}, "dateOfTermination is empty"),
        ({"orgLevel1Code": "12-0"}, "orgLevel1 '12-0' has no valid CostCenter value"),
    ],
)
def test_malformed_records_are_refused_with_the_reason(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(RecordProblem) as info:
        target(**fields)
    assert reason in info.value.reason


def test_map_employments_refuses_every_copy_of_a_duplicated_personnel_number_and_keeps_the_rest() -> None:
    raws = [employment("1"), employment("2", companyID="A"), employment("2", companyID="B"),
            employment("3", employeeNumber=None)]
    mapped = map_employments(raws, config())
    assert [t.personnel_number for t in mapped.targets] == ["1"]
    assert {(a.personnel_number, a.kind) for a in mapped.skipped} == {
        ("2", SKIPPED), ("(UKG employee id EE3)", SKIPPED)}
    assert mapped.records_read == 4


def test_company_filter_applies_to_employment_records() -> None:
    mapped = map_employments([employment("1", companyID="C0MP1"), employment("2", companyID="OTHER")],
                             config('["C0MP1"]'))
    assert [t.personnel_number for t in mapped.targets] == ["1"]


# ---------------------------------------------------------------------- change detection


def test_hash_covers_the_synced_fields_only() -> None:
    base = target()
    assert base.payload_hash(LE) == target().payload_hash(LE)
    assert base.payload_hash(LE) != target(orgLevel1Code="130").payload_hash(LE)
    assert base.payload_hash(LE) != target(dateOfTermination="2026-11-20").payload_hash(LE)
    assert base.payload_hash(LE) != base.payload_hash("othr")
    # fields that are not sent (job title, supervisor) do not make an employee "changed"
    assert base.payload_hash(LE) == target(jobTitle="Boss", supervisorID="X").payload_hash(LE)


def test_employee_whose_hash_matches_the_ledger_is_unchanged_without_looking_at_d365() -> None:
    same, moved = target("1"), target("2")
    synced = {"1": SyncedEmployee("1", same.payload_hash(LE), "t", "E1"),
              "2": SyncedEmployee("2", target("2", orgLevel1Code="999").payload_hash(LE), "t", "E2")}
    changed, unchanged = changed_targets([same, moved], synced, LE)
    assert [t.personnel_number for t in changed] == ["2"]
    assert [(a.personnel_number, a.kind, a.remember) for a in unchanged] == [("1", UNCHANGED, False)]


def test_sync_table_round_trip_keeps_a_known_employment_id(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    ledger.record_employee_sync("1", "h1", "E1")
    ledger.record_employee_sync("1", "h2", None)
    row = ledger.synced_employees(["1", "2"])
    assert list(row) == ["1"] and (row["1"].payload_hash, row["1"].employment_id) == ("h2", "E1")
    assert ledger.count_synced_employees() == 1
    ledger.close()


def test_watermark_starts_a_day_before_the_last_clean_sync_and_since_overrides(tmp_path: Path) -> None:
    ctx = Context(config(), ledger_path=tmp_path / "l.db")
    assert changed_since(ctx, None) is None
    ctx.ledger.set_setting(LAST_SYNC_SETTING, "2026-11-20T07:00:00.000+00:00")
    assert changed_since(ctx, None) == dt.date(2026, 11, 19)
    assert changed_since(ctx, dt.date(2026, 1, 1)) == dt.date(2026, 1, 1)
    ctx.close()


# ---------------------------------------------------------------------- the per-employee plan


def test_new_employee_is_created_with_names_start_date_and_default_dimension() -> None:
    action = plan_one(target(), [], name=PersonName("Ada", "B", "Lovelace"))
    assert action.kind == CREATE
    assert action.body == {"PersonnelNumber": "100001", "EmploymentLegalEntityId": LE, "FirstName": "Ada",
                           "MiddleName": "B", "LastName": "Lovelace", "EmploymentStartDate": "2015-03-02T00:00:00Z",
                           "DimensionDisplayValue": "PROD-120"}


def test_new_employee_without_a_demographic_record_is_skipped() -> None:
    action = plan_one(target(), [], name=None)
    assert (action.kind, action.reason) == (SKIPPED, "no last name in UKG employee-demographic-details")


def test_employee_terminated_before_ever_reaching_d365_is_not_created() -> None:
    action = plan_one(target(dateOfTermination="2026-10-01", employeeStatusCode="T"), [])
    assert action.kind == IGNORED and action.remember


def test_cost_center_transfer_patches_the_employment_default_dimension() -> None:
    action = plan_one(target(orgLevel1Code="130"), [d365()])
    assert action.kind == UPDATE
    assert action.body == {"DimensionDisplayValue": "PROD-130"}
    assert action.key == {"PersonnelNumber": "100001", "LegalEntityId": LE, "EmploymentId": "E000001"}
    assert "PROD-120 -> PROD-130" in action.reason


def test_termination_patches_the_employment_end_date() -> None:
    action = plan_one(target(dateOfTermination="2026-11-20", employeeStatusCode="T"), [d365()])
    # d365.time_zone is UTC here: the end of 2026-11-20 is its last second in UTC
    assert action.kind == TERMINATE and action.body == {"EmploymentEndDate": "2026-11-20T23:59:59Z"}


def test_employee_d365_already_matches_is_remembered_without_a_write() -> None:
    action = plan_one(target(), [d365(display="prod-120")])
    assert (action.kind, action.remember, action.employment_id) == (UNCHANGED, True, "E000001")


def test_org_level_without_a_d365_value_skips_the_employee_by_number() -> None:
    action = plan_one(target(orgLevel1Code="999"), [d365()], missing={"CostCenter": {"999"}})
    assert action.kind == SKIPPED and action.personnel_number == "100001"
    assert "no D365 value for CostCenter '999'" in action.reason


def test_rehire_and_reinstatement_are_left_to_a_person() -> None:
    ended = d365(end="2014-12-31T00:00:00Z", start="2010-01-04T00:00:00Z")
    assert "rehired in UKG on 2015-03-02" in plan_one(target(), [ended]).reason
    ended_late = d365(end="2026-11-20T00:00:00Z")
    action = plan_one(target(), [ended_late])
    assert action.kind == SKIPPED and "undo the termination" in action.reason


def test_the_known_employment_is_preferred_over_another_of_the_same_worker() -> None:
    older = d365(employment_id="E1", start="2001-01-01T00:00:00Z", end="2002-01-01T00:00:00Z")
    current = d365(employment_id="E2", display="PROD-110")
    action = plan_one(target(orgLevel1Code="130"), [older, current], known="E2")
    assert action.key is not None and action.key["EmploymentId"] == "E2"
    other_company = D365Employment("100001", "othr", "E9", None, None, "")
    assert plan_one(target(), [other_company]).kind == CREATE


def test_plan_employees_puts_it_together() -> None:
    targets = Targets([target("1"), target("2", orgLevel1Code="130"), target("3")], [], 3)
    synced = {"1": SyncedEmployee("1", targets.targets[0].payload_hash(LE), "t", "E1")}
    existing = {"2": [d365("2")]}
    plan = plan_employees(targets, synced, existing, {}, {("C0MP1", "EE3"): PersonName("C", "", "D")},
                          legal_entity=LE, today=TODAY)
    assert plan.counts() == {CREATE: 1, UPDATE: 1, TERMINATE: 0, UNCHANGED: 1, IGNORED: 0, SKIPPED: 0}
    assert [a.personnel_number for a in plan.writes] == ["2", "3"]


# ---------------------------------------------------------------------- e2e against the sandbox

runner = CliRunner()


def invoke(sandbox: Sandbox, *args: str) -> Any:
    return runner.invoke(app, ["-c", str(sandbox.config_path), *args])


def employments(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {e["PersonnelNumber"]: dict(e) for e in sandbox.d365.state.tables["EmploymentsV2"].values()}


def prepared(sandbox: Sandbox) -> None:
    """Dimensions first, then a first full employee sync (the steady state the mutations start from)."""
    assert invoke(sandbox, "sync-dimensions").exit_code == 0
    first = invoke(sandbox, "sync-employees")
    assert first.exit_code == 0, first.output


@pytest.mark.e2e
def test_first_sync_creates_every_current_employee_and_a_rerun_sends_nothing(
    sandbox: Sandbox, sandbox_env: dict[str, str]
) -> None:
    prepared(sandbox)
    dataset = sandbox.dataset
    in_d365 = employments(sandbox)
    expected = {e.employee_number for e in dataset.employees
                if e.termination_date is None or e.termination_date >= dataset.today}
    assert set(in_d365) == expected
    sample = dataset.employees[0]
    row = in_d365[sample.employee_number]
    assert row["DimensionDisplayValue"] == worker_display(sample.cost_center, sample.department)
    assert row["EmploymentStartDate"] == f"{sample.hire_date.isoformat()}T00:00:00Z"
    worker = next(w for w in sandbox.d365.state.tables["Workers"].values()
                  if w["PersonnelNumber"] == sample.employee_number)
    assert (worker["FirstName"], worker["LastName"]) == (sample.first_name, sample.last_name)

    batches = sandbox.d365.state.request_count["$batch"]
    again = invoke(sandbox, "sync-employees", "--since", "2000-01-01")  # re-reads everyone: hashes match
    assert again.exit_code == 0, again.output
    assert "nothing to send" in again.output
    assert sandbox.d365.state.request_count["$batch"] == batches
    assert employments(sandbox) == in_d365


@pytest.mark.e2e
def test_hire_termination_and_transfer_reach_d365_in_one_run_and_a_second_run_writes_nothing(
    sandbox: Sandbox, sandbox_env: dict[str, str]
) -> None:
    prepared(sandbox)
    dataset = sandbox.dataset
    leaver, mover = dataset.employees[4], dataset.employees[5]
    assert leaver.termination_date is None and mover.termination_date is None
    new_cc = next(cc for cc in ("220", "320") if cc != mover.cost_center)
    hired = dataset.hire("Ada", "Lovelace", cost_center="320", department="SALES")
    dataset.terminate(leaver.employee_number, dataset.today - dt.timedelta(days=1))
    dataset.transfer(mover.employee_number, new_cc, "PROD")

    result = invoke(sandbox, "--json", "sync-employees")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    sent = {(e["personnel_number"], e["kind"]) for e in events if e["event"] == "employee" and e["status"] == "sent"}
    assert sent == {(hired.employee_number, CREATE), (leaver.employee_number, TERMINATE),
                    (mover.employee_number, UPDATE)}
    rows = employments(sandbox)
    assert rows[hired.employee_number]["DimensionDisplayValue"] == worker_display("320", "SALES")
    assert rows[leaver.employee_number]["EmploymentEndDate"] == \
        f"{(dataset.today - dt.timedelta(days=1)).isoformat()}T23:59:59Z"
    assert rows[mover.employee_number]["DimensionDisplayValue"] == worker_display(new_cc, "PROD")

    batches = sandbox.d365.state.request_count["$batch"]
    second = invoke(sandbox, "--json", "sync-employees")
    assert second.exit_code == 0, second.output
    summary = json.loads(second.output.splitlines()[-1])
    assert summary["event"] == "summary" and summary["create"] + summary["update"] + summary["terminate"] == 0
    assert sandbox.d365.state.request_count["$batch"] == batches
    assert employments(sandbox) == rows


@pytest.mark.e2e
def test_employee_in_an_unknown_cost_center_is_reported_and_the_others_proceed(
    sandbox: Sandbox, sandbox_env: dict[str, str]
) -> None:
    prepared(sandbox)
    dataset = sandbox.dataset
    stray, mover = dataset.employees[6], dataset.employees[7]
    stray_before = worker_display(stray.cost_center, stray.department)
    dataset.transfer(stray.employee_number, "999", "PROD")  # 999 exists neither in UKG org levels nor D365
    new_cc = next(cc for cc in ("220", "320") if cc != mover.cost_center)
    dataset.transfer(mover.employee_number, new_cc, "QA")
    result = invoke(sandbox, "sync-employees")
    assert result.exit_code == ExitStatus.RECORDS_FAILED, result.output
    text = " ".join(result.output.split())
    assert stray.employee_number in text and "no D365 value for CostCenter '999'" in text
    rows = employments(sandbox)
    assert rows[mover.employee_number]["DimensionDisplayValue"] == worker_display(new_cc, "QA")
    assert rows[stray.employee_number]["DimensionDisplayValue"] == stray_before

    # once the value exists in D365 the employee goes through on the next run (it was not forgotten)
    sandbox.d365.state._insert("FinancialDimensionValues", {
        "FinancialDimension": "CostCenter", "LegalEntityId": "", "DimensionValue": "999", "Description": "New"})
    retry = invoke(sandbox, "sync-employees")
    assert retry.exit_code == 0, retry.output
    assert employments(sandbox)[stray.employee_number]["DimensionDisplayValue"] == worker_display("999", "PROD")


@pytest.mark.e2e
def test_dry_run_sends_nothing_and_remembers_nothing(sandbox: Sandbox, sandbox_env: dict[str, str]) -> None:
    assert invoke(sandbox, "sync-dimensions").exit_code == 0
    batches = sandbox.d365.state.request_count["$batch"]
    result = invoke(sandbox, "sync-employees", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run: would send" in " ".join(result.output.split())
    assert employments(sandbox) == {}
    assert sandbox.d365.state.request_count["$batch"] == batches
    ledger = Ledger(sandbox.dir / "ukg2d365.db")
    try:
        assert ledger.count_synced_employees() == 0
        assert ledger.get_setting(LAST_SYNC_SETTING) is None
    finally:
        ledger.close()


@pytest.mark.e2e
def test_default_dimensions_guard_that_differs_from_d365_stops_before_any_write(
    sandbox: Sandbox, sandbox_env: dict[str, str]
) -> None:
    data = yaml.safe_load(sandbox.config_path.read_text())
    data.setdefault("employees", {})["default_dimensions"] = ["Department", "CostCenter"]
    guarded = sandbox.config_path.with_name("guarded.yaml")
    guarded.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["-c", str(guarded), "sync-employees"])
    assert result.exit_code == ExitStatus.USAGE, result.output
    text = " ".join(result.output.split())
    assert "Department - CostCenter" in text and "BusinessUnit - CostCenter - Department - Project" in text
    assert sandbox.d365.state.request_count["$batch"] == 0
