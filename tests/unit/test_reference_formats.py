"""D365's dimension formats in the ledger's reference cache: read fresh where lines are written, cached else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers import make_config
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
