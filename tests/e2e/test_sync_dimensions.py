"""sync-dimensions: the pure plan, apply's failure isolation, and the command against the sandbox."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ukg2d365.cli import app
from ukg2d365.config import Config, parse_config
from ukg2d365.d365.batch import ChangesetResult, InnerResponse
from ukg2d365.errors import AmbiguousWriteError, ExitStatus
from ukg2d365.flows.reference import DIMENSION, MAIN_ACCOUNT
from ukg2d365.flows.runtime import Context
from ukg2d365.flows.sync_dimensions import (
    DimensionPlan,
    DimensionValue,
    apply,
    create_operation,
    plan_dimensions,
)
from ukg2d365.ledger import Ledger
from ukg2d365.sandbox import Sandbox, catalog

CONFIG_YAML = """
ukg:
  base_url: https://service4.ultipro.com
d365:
  base_url: https://contoso.operations.dynamics.com
  tenant_id: t
  client_id: c
  legal_entity: usmf
  batch_size: 2
mapping:
  ledger_format: [MainAccount, CostCenter, Department]
  delimiter: "-"
  main_accounts: {"5000": "601500"}
  dimensions:
    CostCenter: {source: orgLevel1, values: {"110": "CC110", "111": "CC110"}}
    Department: {source: orgLevel2, create_in: OperatingUnits}
"""


def config(tmp_path: Path | None = None) -> Config:
    return parse_config(CONFIG_YAML, (tmp_path or Path("/nonexistent")) / "ukg2d365.yaml")


def org(level: Any, code: Any, description: str = "", active: bool = True) -> dict[str, Any]:
    return {"level": level, "code": code, "description": description or f"unit {code}", "isActive": active}


def values(plan_list: list[DimensionValue]) -> list[tuple[str, str]]:
    return [(v.dimension, v.value) for v in plan_list]


# ---------------------------------------------------------------------- plan


def test_plan_creates_only_what_d365_lacks() -> None:
    plan = plan_dimensions(
        [org(1, "120"), org(1, "130"), org(2, "PROD"), org(2, "QA")],
        {"CostCenter": {"120"}, "Department": {"PROD"}},
        config(),
    )
    assert values(plan.to_create) == [("CostCenter", "130"), ("Department", "QA")]
    assert values(plan.present) == [("CostCenter", "120"), ("Department", "PROD")]
    assert plan.skipped == [] and not plan.problems


def test_plan_applies_the_values_recode_and_merges_codes_recoded_onto_one_value() -> None:
    plan = plan_dimensions([org(1, "110", "Assembly"), org(1, "111", "Assembly 2")], {}, config())
    assert len(plan.to_create) == 1
    created = plan.to_create[0]
    assert (created.value, created.ukg_codes, created.description) == ("CC110", ("110", "111"), "Assembly")


def test_value_present_in_another_case_is_not_created_again() -> None:
    plan = plan_dimensions([org(2, "PROD")], {"Department": {"prod"}}, config())
    assert plan.to_create == [] and values(plan.present) == [("Department", "PROD")]


def test_inactive_ukg_code_is_reported_not_created_and_is_not_a_failure() -> None:
    plan = plan_dimensions([org(1, "390", active=False)], {}, config())
    assert plan.to_create == []
    assert [(s.code, s.reason) for s in plan.skipped] == [("390", "inactive in UKG: not created")]
    assert not plan.problems


def test_inactive_code_already_in_d365_is_simply_present() -> None:
    plan = plan_dimensions([org(1, "120", active=False)], {"CostCenter": {"120"}}, config())
    assert values(plan.present) == [("CostCenter", "120")] and plan.skipped == []


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("12-0", "segment delimiter"),
        ("X" * 31, "30 characters"),
        (" 120", "leading or trailing spaces"),
        ("", "without a code"),
        (None, "without a code"),
    ],
)
def test_invalid_codes_are_skipped_with_the_reason(code: Any, reason: str) -> None:
    plan = plan_dimensions([org(1, code)], {}, config())
    assert plan.to_create == []
    assert len(plan.skipped) == 1 and reason in plan.skipped[0].reason
    assert plan.problems


def test_org_levels_not_mapped_to_a_dimension_are_ignored_and_level_types_are_tolerated() -> None:
    plan = plan_dimensions([org(3, "X"), org("1", "130"), org(Decimal("2"), "QA"), org(True, "Z")], {}, config())
    assert values(plan.to_create) == [("CostCenter", "130"), ("Department", "QA")]
    assert plan.org_levels_read == 4


def test_create_operation_bodies() -> None:
    cc = DimensionValue("CostCenter", "130", "Plant overhead", ("130",), "FinancialDimensionValues")
    op = create_operation(cc)
    assert (op.method, op.url) == ("POST", "FinancialDimensionValues")
    assert op.body == {"FinancialDimension": "CostCenter", "DimensionValue": "130", "Description": "Plant overhead",
                       "LegalEntityId": ""}
    dept = DimensionValue("Department", "QA", "Quality", ("QA",), "OperatingUnits", "OMDepartment")
    op = create_operation(dept)
    assert (op.method, op.url) == ("POST", "OperatingUnits")
    assert op.body == {"OperatingUnitNumber": "QA", "Name": "Quality", "OperatingUnitType": "OMDepartment"}


# ---------------------------------------------------------------------- apply (fake D365)


class FakeOData:
    def __init__(self, fail: set[str] | None = None, ambiguous: bool = False,
                 present_after: dict[str, list[dict[str, Any]]] | None = None) -> None:
        self.fail = fail or set()
        self.ambiguous = ambiguous
        self.present_after = present_after or {}
        self.batches: list[list[list[Any]]] = []

    def batch(self, changesets: list[list[Any]]) -> list[ChangesetResult]:
        self.batches.append(changesets)
        if self.ambiguous:
            raise AmbiguousWriteError("D365 POST $batch: read timed out")
        results = []
        for (op,) in changesets:
            value = op.body.get("DimensionValue") or op.body.get("OperatingUnitNumber")
            if value in self.fail:
                body = {"error": {"code": "", "message": "An error has occurred.",
                                  "innererror": {"message": f"Write failed: value {value} refused"}}}
                results.append(ChangesetResult([InnerResponse(400, "Bad Request", {}, body)]))
            else:
                results.append(ChangesetResult([InnerResponse(201, "Created", {}, dict(op.body))]))
        return results

    def get_all(self, entity_set: str, **kwargs: Any) -> list[dict[str, Any]]:
        return self.present_after.get(entity_set, [])


def fake_context(tmp_path: Path, odata: FakeOData) -> Context:
    ctx = Context(config(tmp_path), ledger_path=tmp_path / "ledger.db")
    ctx.d365 = odata  # type: ignore[assignment]  # cached_property: an instance attribute wins
    return ctx


def test_one_refused_value_does_not_stop_the_others(tmp_path: Path) -> None:
    plan = plan_dimensions([org(1, "130"), org(1, "140"), org(1, "150")], {}, config())
    odata = FakeOData(fail={"140"})
    ctx = fake_context(tmp_path, odata)
    result = apply(ctx, plan)
    assert [(o.value.value, o.created) for o in result.outcomes] == [("130", True), ("140", False), ("150", True)]
    assert "value 140 refused" in (result.failed[0].error or "")
    # batch_size 2, one operation per changeset
    assert [len(b) for b in odata.batches] == [2, 1] and all(len(cs) == 1 for b in odata.batches for cs in b)
    assert ctx.ledger.known_values(DIMENSION, "CostCenter") == {"130", "150"}
    assert not result.ok
    ctx.close()


def test_unanswered_batch_is_checked_against_d365_before_anything_is_resent(tmp_path: Path) -> None:
    plan = plan_dimensions([org(1, "130"), org(1, "140")], {}, config())
    odata = FakeOData(ambiguous=True, present_after={"FinancialDimensionValues": [{"DimensionValue": "130"}]})
    ctx = fake_context(tmp_path, odata)
    result = apply(ctx, plan)
    assert [(o.value.value, o.created) for o in result.outcomes] == [("130", True), ("140", False)]
    assert "rerun sync-dimensions" in (result.failed[0].error or "")
    assert len(odata.batches) == 1
    ctx.close()


def test_plan_with_nothing_to_create_sends_nothing(tmp_path: Path) -> None:
    odata = FakeOData()
    ctx = fake_context(tmp_path, odata)
    result = apply(ctx, DimensionPlan())
    assert result.ok and odata.batches == []
    ctx.close()


def test_apply_audits_values_already_present_and_inactive_ones(tmp_path: Path) -> None:
    plan = plan_dimensions([org(1, "120"), org(1, "390", active=False)], {"CostCenter": {"120"}}, config())
    ctx = fake_context(tmp_path, FakeOData())
    apply(ctx, plan)
    present = ctx.ledger.audit_trail("dimension:CostCenter:120")
    skipped = ctx.ledger.audit_trail("dimension:CostCenter:390")
    assert [e["kind"] for e in present] == ["dimension.present"]
    assert [e["kind"] for e in skipped] == ["dimension.skipped"]
    ctx.close()


# ---------------------------------------------------------------------- e2e against the sandbox

runner = CliRunner()


def invoke(sandbox: Sandbox, *args: str) -> Any:
    return runner.invoke(app, ["-c", str(sandbox.config_path), *args])


def d365_values(sandbox: Sandbox) -> dict[str, set[str]]:
    state = sandbox.d365.state
    return {
        "CostCenter": {r["DimensionValue"] for r in state.tables["FinancialDimensionValues"].values()
                       if r["FinancialDimension"] == "CostCenter"},
        "Department": {r["OperatingUnitNumber"] for r in state.tables["OperatingUnits"].values()
                       if r["OperatingUnitType"] == "OMDepartment"},
    }


ACTIVE_CCS = {c.code for c in catalog.COST_CENTERS if c.is_active}
DEPARTMENTS = {d.code for d in catalog.DEPARTMENTS}


@pytest.mark.e2e
def test_first_sync_creates_exactly_the_missing_values_and_a_second_creates_nothing(
    sandbox: Sandbox, sandbox_env: dict[str, str]
) -> None:
    before = d365_values(sandbox)
    assert before["CostCenter"] == set(catalog.D365_EXISTING_COST_CENTERS)

    first = invoke(sandbox, "sync-dimensions")
    assert first.exit_code == 0, first.output
    after = d365_values(sandbox)
    assert after == {"CostCenter": ACTIVE_CCS, "Department": DEPARTMENTS}  # 390 is inactive: not created
    created = (len(ACTIVE_CCS) - len(before["CostCenter"])) + (len(DEPARTMENTS) - len(before["Department"]))
    assert f"created {created} dimension value(s)" in first.output
    assert "390" in first.output and "inactive in UKG" in first.output
    shared = [r for r in sandbox.d365.state.tables["FinancialDimensionValues"].values()
              if r["DimensionValue"] == "130"]
    assert shared[0]["LegalEntityId"] == "" and shared[0]["Description"] == "Springfield plant overhead"

    batches = sandbox.d365.state.request_count["$batch"]
    second = invoke(sandbox, "sync-dimensions")
    assert second.exit_code == 0, second.output
    assert "nothing to create: 0 dimension value(s)" in second.output
    assert sandbox.d365.state.request_count["$batch"] == batches
    assert d365_values(sandbox) == after
    # nothing to create, yet the run still records why 390 was left out, as the first run did
    trail = json.loads(invoke(sandbox, "audit", "dimension:CostCenter:390", "--format", "json").stdout)
    skips = [e for e in trail["events"] if e["kind"] == "dimension.skipped"]
    assert [e["run"] for e in skips] == sorted({e["run"] for e in skips}) and len(skips) == 2
    assert skips[-1]["detail"]["reason"] == "inactive in UKG: not created"


@pytest.mark.e2e
def test_sync_fills_the_reference_cache_post_payroll_reads(sandbox: Sandbox, sandbox_env: dict[str, str]) -> None:
    result = invoke(sandbox, "sync-dimensions")
    assert result.exit_code == 0, result.output
    ledger = Ledger(sandbox.dir / "ukg2d365.db")
    try:
        assert ledger.known_values(DIMENSION, "CostCenter") == ACTIVE_CCS
        assert ledger.known_values(DIMENSION, "Department") == DEPARTMENTS
        assert ledger.known_values(MAIN_ACCOUNT, "") == {a.d365_account for a in catalog.GL_ACCOUNTS}
    finally:
        ledger.close()


@pytest.mark.e2e
def test_dry_run_shows_the_plan_and_creates_nothing(sandbox: Sandbox, sandbox_env: dict[str, str]) -> None:
    before = d365_values(sandbox)
    result = invoke(sandbox, "--json", "sync-dimensions", "--dry-run")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    plan = [e for e in events if e["event"] == "plan"]
    would = {(e["dimension"], e["value"]) for e in plan if e["status"] == "would create"}
    assert would == {("CostCenter", c) for c in ACTIVE_CCS - before["CostCenter"]} | {
        ("Department", d) for d in DEPARTMENTS - before["Department"]}
    assert {(e["dimension"], e["value"]) for e in plan if e["status"] == "present"} == {
        ("CostCenter", c) for c in before["CostCenter"]} | {("Department", d) for d in before["Department"]}
    assert [(e["code"], e["reason"]) for e in plan if e["status"] == "skipped"] == [
        ("390", "inactive in UKG: not created")]
    assert events[-1]["event"] == "summary" and events[-1]["to_create"] == len(would)
    assert d365_values(sandbox) == before
    assert sandbox.d365.state.request_count["$batch"] == 0


@pytest.mark.e2e
def test_a_mapped_dimension_missing_from_d365s_format_is_detected_before_any_write(
    sandbox: Sandbox, sandbox_env: dict[str, str]
) -> None:
    # D365's order is followed whatever it is; a mapped dimension it lacks would be dropped from every line.
    sandbox.d365.state.set_ledger_format(["MainAccount", "CostCenter", "BusinessUnit"])
    before = d365_values(sandbox)
    result = invoke(sandbox, "sync-dimensions")
    assert result.exit_code == ExitStatus.USAGE, result.output
    text = " ".join(result.output.split())
    assert "mapping.dimensions names Department" in text and "MainAccount - CostCenter - BusinessUnit" in text
    assert "Financial dimension configuration for integrating applications" in text
    assert d365_values(sandbox) == before
    assert sandbox.d365.state.request_count["$batch"] == 0
    assert sandbox.stats()["ukg"] == 0  # nothing read from UKG either: the setup check comes first


@pytest.mark.e2e
def test_delimiter_mismatch_names_where_to_fix_it(sandbox: Sandbox, sandbox_env: dict[str, str]) -> None:
    sandbox.d365.state.set_delimiter("Period")
    result = invoke(sandbox, "sync-dimensions")
    assert result.exit_code == ExitStatus.USAGE, result.output
    text = " ".join(result.output.split())
    assert "Period" in text and "General ledger parameters" in text
    assert sandbox.d365.state.request_count["$batch"] == 0


@pytest.mark.e2e
def test_missing_main_account_is_listed_and_values_are_still_created(
    sandbox: Sandbox, sandbox_env: dict[str, str]
) -> None:
    sandbox.d365.state.remove_main_account("601500")
    result = invoke(sandbox, "sync-dimensions")
    assert result.exit_code == ExitStatus.RECORDS_FAILED, result.output
    text = " ".join(result.output.split())
    assert "not in D365: 601500" in text and "1 main account(s) missing" in text
    assert d365_values(sandbox) == {"CostCenter": ACTIVE_CCS, "Department": DEPARTMENTS}
