"""D365's dimension formats in the ledger's reference cache: read fresh where lines are written, cached else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import make_config
from ukg2d365.d365.setup import SetupError
from ukg2d365.errors import ExitStatus
from ukg2d365.flows.reference import ReferenceData
from ukg2d365.ledger import Ledger
from ukg2d365.mapping import DimensionFormats


class FakeOData:
    """Answers DimensionIntegrationFormats like D365 (names joined by the delimiter) and counts the reads."""

    def __init__(self, ledger: str, default: str) -> None:
        self.rows = {"ledger": ledger, "default": default}
        self.reads = 0

    def get_all(self, entity: str, **_: Any) -> list[dict[str, Any]]:
        assert entity == "DimensionIntegrationFormats"
        self.reads += 1
        return [
            {"DimensionFormatName": "Old", "DimensionFormatType": "DataEntityLedgerDimensionFormat",
             "FinancialDimensionFormat": "MainAccount-Department", "IsActive": "No"},
            {"DimensionFormatName": "L", "DimensionFormatType": "DataEntityLedgerDimensionFormat",
             "FinancialDimensionFormat": self.rows["ledger"], "IsActive": "Yes"},
            {"DimensionFormatName": "D", "DimensionFormatType": "DataEntityDefaultDimensionFormat",
             "FinancialDimensionFormat": self.rows["default"], "IsActive": "Yes"},
        ]


def test_formats_are_cached_and_a_fresh_read_replaces_them(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    odata = FakeOData("MainAccount-BusinessUnit-CostCenter", "BusinessUnit-CostCenter")
    ref = ReferenceData(odata, ledger, make_config())  # type: ignore[arg-type]
    first = ref.dimension_formats(fresh=False)  # nothing cached yet: D365 is asked
    assert first == DimensionFormats(("MainAccount", "BusinessUnit", "CostCenter"), ("BusinessUnit", "CostCenter"))
    assert ref.dimension_formats(fresh=False) == first and odata.reads == 1  # the cache answers
    odata.rows["ledger"] = "MainAccount-CostCenter-Project"
    changed = ref.dimension_formats(fresh=True)
    assert changed.ledger == ("MainAccount", "CostCenter", "Project") and odata.reads == 2
    reopened = ReferenceData(odata, Ledger(tmp_path / "l.db"), make_config())  # type: ignore[arg-type]
    assert reopened.dimension_formats(fresh=False) == changed and odata.reads == 2  # one value, the new one
    ledger.close()


class FakeSetup(FakeOData):
    """Formats as FakeOData, plus DimensionParameters' segment delimiter."""

    def __init__(self, ledger: str, default: str, delimiter: str) -> None:
        super().__init__(ledger, default)
        self.delimiter = delimiter

    def get_all(self, entity: str, **options: Any) -> list[dict[str, Any]]:
        if entity == "DimensionParameters":
            return [{"DimensionSegmentDelimiter": self.delimiter}]
        return super().get_all(entity, **options)


def test_require_setup_audits_every_problem_and_refuses_with_exit_2(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    audited: list[tuple[str, dict[str, Any]]] = []
    ledger.audit = lambda kind, detail, key=None: audited.append((kind, detail))  # type: ignore[method-assign]
    odata = FakeSetup("MainAccount-CostCenter", "CostCenter", "Dot")
    ref = ReferenceData(odata, ledger, make_config())  # type: ignore[arg-type]
    with pytest.raises(SetupError) as raised:
        ref.require_setup("sync-dimensions")
    assert raised.value.exit_status == ExitStatus.USAGE
    assert "but mapping.ledger_format is MainAccount - CostCenter - Department" in str(raised.value)
    assert "mapping.dimensions names Department" in str(raised.value)
    assert "segment delimiter is Dot but mapping.delimiter is '-'" in str(raised.value)
    assert [kind for kind, _ in audited] == ["setup.problem"] * 3
    assert {detail["command"] for _, detail in audited} == {"sync-dimensions"}
    ledger.close()


def test_require_setup_checks_only_what_the_command_needs(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    odata = FakeSetup("MainAccount-CostCenter-Department", "CostCenter", "Dot")
    ref = ReferenceData(odata, ledger, make_config())  # type: ignore[arg-type]
    # post-payroll builds lines in D365's ledger format and reads no delimiter: a fit format is enough.
    formats = ref.require_setup("post-payroll", delimiter=False)
    assert formats.ledger == ("MainAccount", "CostCenter", "Department")
    with pytest.raises(SetupError, match="segment delimiter"):
        ref.require_setup("sync-employees", ledger_format=False, default_format=True, planned=formats)
    ledger.close()
