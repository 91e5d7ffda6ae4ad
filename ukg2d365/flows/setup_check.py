"""Is D365 set up the way the config says? Ledger dimension format, delimiter, main accounts."""

from __future__ import annotations

from typing import Any

from ukg2d365.flows.runtime import Context

LEDGER_FORMAT_TYPE = "DataEntityLedgerDimensionFormat"
DEFAULT_FORMAT_TYPE = "DataEntityDefaultDimensionFormat"
WHERE_FORMAT = ("General ledger > Chart of accounts > Dimensions > Financial dimension configuration for "
                "integrating applications")
WHERE_DELIMITER = "General ledger > Ledger setup > General ledger parameters (chart of accounts delimiter)"


def _split_format(text: str) -> list[str]:
    """D365 shows formats as 'MainAccount-CostCenter-Department'; any single delimiter character splits it."""
    for sep in ("-", ".", "_", "|", "~", ","):
        if sep in text:
            return [part.strip() for part in text.split(sep) if part.strip()]
    return [text.strip()] if text.strip() else []


def active_format(rows: list[dict[str, Any]], format_type: str) -> list[str] | None:
    for row in rows:
        if str(row.get("DimensionFormatType")) == format_type and str(row.get("IsActive")) == "Yes":
            return _split_format(str(row.get("FinancialDimensionFormat") or ""))
    return None


def check_d365_setup(ctx: Context) -> list[str]:
    """Problems that would make every journal line fail, each naming where in D365 to fix it."""
    problems: list[str] = []
    rows = list(ctx.d365.get_all("DimensionIntegrationFormats"))
    want = list(ctx.config.mapping.ledger_format)
    have = active_format(rows, LEDGER_FORMAT_TYPE)
    if have is None:
        problems.append(f"no active ledger dimension format in D365; activate {' - '.join(want)} in {WHERE_FORMAT}")
    elif have != want:
        problems.append(
            f"D365's active ledger dimension format is {' - '.join(have)} but mapping.ledger_format is "
            f"{' - '.join(want)}; change one of them ({WHERE_FORMAT})"
        )
    params = list(ctx.d365.get_all("DimensionParameters"))
    if params:
        delimiter = str(params[0].get("DimensionSegmentDelimiter"))
        if delimiter != ctx.config.mapping.delimiter_enum:
            problems.append(
                f"D365's segment delimiter is {delimiter} but mapping.delimiter is "
                f"{ctx.config.mapping.delimiter!r} ({ctx.config.mapping.delimiter_enum}); fix one ({WHERE_DELIMITER})"
            )
    return problems
