"""Display values in D365's own dimension formats: positional, blanks kept, constants, optional guards."""

from __future__ import annotations

from typing import Any

import pytest

from ukg2d365.config import Config, EmployeesConfig, MappingConfig
from ukg2d365.d365.setup import (
    active_format,
    default_format_problems,
    format_summary,
    ledger_format_problems,
    split_format,
)
from ukg2d365.mapping import DimensionFormats, Mapper, positional_display

# The shape of a recorded live value, main account and five dimensions of which two are fed:
# "51040302--81--JD-" (see tests/sandbox/test_d365.py for where it was recorded).
LEDGER = ("MainAccount", "BusinessUnit", "CostCenter", "Project", "Department", "Region")
DEFAULT = ("BusinessUnit", "CostCenter", "Department", "Project")


def mapping(**extra: Any) -> MappingConfig:
    dims: dict[str, Any] = {"CostCenter": {"source": "orgLevel1"}, "Department": {"source": "orgLevel2"}}
    dims.update(extra.pop("dimensions", {}))
    return MappingConfig.model_validate({"main_accounts": {"5000": "601500"}, "dimensions": dims, **extra})


def levels(codes: dict[str, str]) -> Any:
    return lambda source: codes.get(source, "")


def test_unfed_dimensions_are_blank_segments_in_d365_order_with_trailing_delimiters_kept() -> None:
    m = Mapper(mapping(), DimensionFormats(LEDGER, DEFAULT))
    account = m.ledger_account("5000", levels({"orgLevel1": "81", "orgLevel2": "JD"}))
    assert account.display == "601500--81--JD-"  # same shape as the recorded 51040302--81--JD-
    assert account.dimensions == (("CostCenter", "81"), ("Department", "JD"))
    assert m.dimension_order == ("CostCenter", "Department")


def test_the_order_is_d365s_not_the_configs() -> None:
    cfg = mapping(dimensions={"Department": {"source": "orgLevel2"}, "CostCenter": {"source": "orgLevel1"}})
    flipped = Mapper(cfg, DimensionFormats(("MainAccount", "Department", "CostCenter")))
    assert flipped.ledger_account("5000", levels({"orgLevel1": "CC", "orgLevel2": "DP"})).display == "601500-DP-CC"


def test_a_line_without_org_level_codes_keeps_every_segment() -> None:
    m = Mapper(mapping(), DimensionFormats(LEDGER))
    assert m.ledger_account("5000", levels({})).display == "601500-----"


def test_a_constant_dimension_is_on_every_line_and_validated() -> None:
    cfg = mapping(dimensions={"BusinessUnit": {"value": "001"}})
    m = Mapper(cfg, DimensionFormats(LEDGER, DEFAULT))
    assert m.ledger_account("5000", levels({"orgLevel1": "81"})).display == "601500-001-81---"
    assert m.default_dimension_display({"BusinessUnit": "001", "Department": "JD"}) == "001--JD-"
    with pytest.raises(ValueError, match="must be a quoted string"):
        mapping(dimensions={"BusinessUnit": {"value": 1}})
    with pytest.raises(ValueError, match="give either source"):
        mapping(dimensions={"BusinessUnit": {"value": "001", "source": "orgLevel3"}})
    with pytest.raises(ValueError, match="does not apply to a constant"):
        mapping(dimensions={"BusinessUnit": {"value": "001", "values": {"A": "B"}}})


def test_configured_formats_without_d365_are_the_guard_else_the_mapping() -> None:
    assert DimensionFormats.configured(mapping()).ledger == ("MainAccount", "CostCenter", "Department")
    guarded = mapping(ledger_format=list(LEDGER))
    assert DimensionFormats.configured(guarded, ["Department"]) == DimensionFormats(LEDGER, ("Department",))


def test_positional_display_joins_every_position() -> None:
    assert positional_display(("A", "B", "C"), {"B": "x"}, "|") == "|x|"
    assert positional_display((), {"B": "x"}, "-") == ""


def test_the_format_text_is_split_on_the_delimiter_d365_shows() -> None:
    rows = [
        {"DimensionFormatType": "DataEntityLedgerDimensionFormat", "IsActive": "No",
         "FinancialDimensionFormat": "MainAccount-CostCenter"},
        {"DimensionFormatType": "DataEntityLedgerDimensionFormat", "IsActive": "Yes",
         "FinancialDimensionFormat": "MainAccount.BusinessUnit.CostCenter"},
    ]
    assert active_format(rows, "DataEntityLedgerDimensionFormat") == ("MainAccount", "BusinessUnit", "CostCenter")
    assert active_format(rows, "DataEntityDefaultDimensionFormat") == ()
    assert split_format("CostCenter") == ("CostCenter",)


def test_more_dimensions_in_d365_than_ukg_feeds_is_no_problem() -> None:
    assert ledger_format_problems(DimensionFormats(LEDGER), mapping()) == []


def test_a_guard_that_differs_from_d365_names_both() -> None:
    cfg = mapping(ledger_format=["MainAccount", "CostCenter", "Department"])
    [problem] = ledger_format_problems(DimensionFormats(LEDGER), cfg)
    assert "D365's active ledger dimension format is MainAccount - BusinessUnit - CostCenter" in problem
    assert "but mapping.ledger_format is MainAccount - CostCenter - Department" in problem
    assert ledger_format_problems(DimensionFormats(LEDGER), mapping(ledger_format=list(LEDGER))) == []


def test_a_mapped_dimension_d365s_format_lacks_is_refused_not_dropped() -> None:
    [problem] = ledger_format_problems(DimensionFormats(("MainAccount", "CostCenter")), mapping())
    assert "mapping.dimensions names Department" in problem
    assert "no active ledger dimension format" in ledger_format_problems(DimensionFormats(()), mapping())[0]


def test_default_dimensions_guard() -> None:
    # A whole Config is not needed: the guard reads only mapping and employees.
    guarded = Config.model_construct(mapping=mapping(),
                                     employees=EmployeesConfig(default_dimensions=["CostCenter", "Department"]))
    [problem] = default_format_problems(DimensionFormats(LEDGER, DEFAULT), guarded)
    assert "default dimension format is BusinessUnit - CostCenter - Department - Project" in problem
    assert "employees.default_dimensions is CostCenter - Department" in problem
    unguarded = Config.model_construct(mapping=mapping(), employees=EmployeesConfig())
    assert default_format_problems(DimensionFormats(LEDGER, DEFAULT), unguarded) == []


def test_summary_names_fed_and_blank_dimensions() -> None:
    text = format_summary(DimensionFormats(LEDGER, DEFAULT), mapping())
    assert text.startswith("ledger format MainAccount - BusinessUnit - CostCenter - Project - Department - Region")
    assert "UKG feeds MainAccount, CostCenter, Department; blank: BusinessUnit, Project, Region" in text
    assert "default format BusinessUnit - CostCenter - Department - Project: fed CostCenter, Department" in text
