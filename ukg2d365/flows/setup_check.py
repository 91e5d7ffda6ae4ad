"""Is D365 set up so that journal lines can be built? Ledger dimension format (D365's, see reference), delimiter."""

from __future__ import annotations

from ukg2d365.flows.reference import ReferenceData, ledger_format_problems
from ukg2d365.flows.runtime import Context

WHERE_DELIMITER = "General ledger > Ledger setup > General ledger parameters (chart of accounts delimiter)"


def delimiter_problems(ctx: Context) -> list[str]:
    """D365's segment delimiter must be mapping.delimiter: display values are split on it."""
    params = list(ctx.d365.get_all("DimensionParameters"))
    if not params:
        return []
    delimiter = str(params[0].get("DimensionSegmentDelimiter"))
    mapping = ctx.config.mapping
    if delimiter == mapping.delimiter_enum:
        return []
    return [f"D365's segment delimiter is {delimiter} but mapping.delimiter is {mapping.delimiter!r} "
            f"({mapping.delimiter_enum}); fix one ({WHERE_DELIMITER})"]


def check_d365_setup(ctx: Context) -> list[str]:
    """Problems that would make every journal line fail, each naming where in D365 to fix it.

    D365's active ledger format is read afresh (and cached); dimensions it holds that UKG does not feed
    are no problem, they are left blank.
    """
    formats = ReferenceData(ctx.d365, ctx.ledger, ctx.config).dimension_formats(fresh=True)
    return ledger_format_problems(formats, ctx.config.mapping) + delimiter_problems(ctx)
