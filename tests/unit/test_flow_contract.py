"""Every command's flow has the same two steps: ``read_and_plan(ctx, selection)`` and ``apply(ctx, plan, progress)``."""

from __future__ import annotations

import dataclasses
import inspect
from types import ModuleType

import pytest

from ukg2d365.flows import accrue_payroll, post_payroll, reconcile, replay, sync_dimensions, sync_employees

SELECTIONS = {
    accrue_payroll: accrue_payroll.AccrualSelection,
    post_payroll: post_payroll.Selection,
    reconcile: reconcile.ReconcileSelection,
    replay: replay.ReplaySelection,
    sync_dimensions: sync_dimensions.DimensionSelection,
    sync_employees: sync_employees.EmployeeSelection,
}


@pytest.mark.parametrize("flow", list(SELECTIONS), ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_each_flow_takes_a_frozen_selection_and_applies_a_plan_with_optional_progress(flow: ModuleType) -> None:
    read = list(inspect.signature(flow.read_and_plan).parameters.values())
    assert [p.name for p in read[:2]] == ["ctx", "selection"]
    assert all(p.kind is p.KEYWORD_ONLY for p in read[2:])  # anything more (today) is for tests only
    assert read[1].annotation == SELECTIONS[flow].__name__
    selection = SELECTIONS[flow]()  # every field has a default: an empty selection can be built
    assert dataclasses.is_dataclass(selection)
    with pytest.raises(dataclasses.FrozenInstanceError):
        selection.__setattr__("anything", 1)
    applied = list(inspect.signature(flow.apply).parameters.values())
    assert applied[0].name == "ctx" and len(applied) == 3
    assert applied[2].name == "progress" and applied[2].default is None
