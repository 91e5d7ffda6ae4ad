"""Is D365 set up so that journal lines can be built? Read the dimension formats and the segment delimiter; list
the problems, each naming where in D365 (or the config) to fix it. No ledger: the cache of the formats and the
audit of a refusal live in ``ukg2d365.flows.reference``; the journal name is read by
``ukg2d365.d365.journals.read_journal_name``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ukg2d365.config import Config, MappingConfig
from ukg2d365.d365.odata import ODataClient
from ukg2d365.errors import ExitStatus, Ukg2d365Error
from ukg2d365.mapping import DimensionFormats

FORMATS = "DimensionIntegrationFormats"
PARAMETERS = "DimensionParameters"
LEDGER_FORMAT_TYPE = "DataEntityLedgerDimensionFormat"
DEFAULT_FORMAT_TYPE = "DataEntityDefaultDimensionFormat"
FORMAT_SEPARATORS = ("-", ".", "_", "|", "~", ",")
WHERE_FORMAT = ("General ledger > Chart of accounts > Dimensions > Financial dimension configuration for "
                "integrating applications")
WHERE_DELIMITER = "General ledger > Ledger setup > General ledger parameters (chart of accounts delimiter)"


class SetupError(Ukg2d365Error):
    """D365 is not set up the way the config says (dimension format, delimiter); nothing was sent.

    Exit 2, like a configuration error: the fix is in the config file or in D365's setup, never in a
    record, so `replay` (exit 1's remedy) cannot help, and a cron wrapper must not retry blindly.
    """

    exit_status = ExitStatus.USAGE


# ---------------------------------------------------------------------- reads


def read_dimension_formats(odata: ODataClient) -> DimensionFormats:
    """D365's active ledger and default dimension formats (``()`` where none is active)."""
    rows = list(odata.get_all(FORMATS))
    return DimensionFormats(active_format(rows, LEDGER_FORMAT_TYPE), active_format(rows, DEFAULT_FORMAT_TYPE))


def read_delimiter(odata: ODataClient) -> str | None:
    """D365's segment delimiter as its enum member (``Hyphen``); None when D365 answers no parameters."""
    params = list(odata.get_all(PARAMETERS))
    return str(params[0].get("DimensionSegmentDelimiter")) if params else None


def split_format(text: str) -> tuple[str, ...]:
    """D365 shows a format as 'MainAccount-CostCenter-Department', names joined by the segment delimiter."""
    for sep in FORMAT_SEPARATORS:
        if sep in text:
            return tuple(part.strip() for part in text.split(sep) if part.strip())
    return (text.strip(),) if text.strip() else ()


def active_format(rows: Iterable[Mapping[str, Any]], format_type: str) -> tuple[str, ...]:
    """The names of the active format of this DimensionFormatType; () when none is active."""
    for row in rows:
        if str(row.get("DimensionFormatType")) == format_type and str(row.get("IsActive")) == "Yes":
            return split_format(str(row.get("FinancialDimensionFormat") or ""))
    return ()


# ---------------------------------------------------------------------- problems


def setup_problems(
    odata: ODataClient,
    config: Config,
    formats: DimensionFormats,
    *,
    ledger_format: bool = True,
    default_format: bool = False,
    delimiter: bool = True,
    planned: DimensionFormats | None = None,
) -> list[str]:
    """Everything that would make every line fail, for the checks a command needs, in one list.

    ``ledger_format``: journal lines (AccountDisplayValue); ``default_format``: workers' DimensionDisplayValue,
    and with ``planned`` (the format the values were built in) a default format D365 changed meanwhile;
    ``delimiter``: reads D365's segment delimiter. Dimensions D365 holds that UKG does not feed are no problem.
    """
    problems: list[str] = []
    if ledger_format:
        problems += ledger_format_problems(formats, config.mapping)
    if default_format:
        problems += default_format_problems(formats, config)
        if planned is not None and formats.default != planned.default and config.employees.default_dimensions != []:
            problems.append(f"D365's active default dimension format changed since the last run "
                            f"({_shown(planned.default)} -> {_shown(formats.default)}); nothing was sent: run "
                            "sync-employees again to build DimensionDisplayValue in it")
    if delimiter:
        problems += delimiter_problems(odata, config.mapping)
    return problems


def delimiter_problems(odata: ODataClient, mapping: MappingConfig) -> list[str]:
    """D365's segment delimiter must be mapping.delimiter: display values are split on it."""
    delimiter = read_delimiter(odata)
    if delimiter is None or delimiter == mapping.delimiter_enum:
        return []
    return [f"D365's segment delimiter is {delimiter} but mapping.delimiter is {mapping.delimiter!r} "
            f"({mapping.delimiter_enum}); fix one ({WHERE_DELIMITER})"]


def ledger_format_problems(formats: DimensionFormats, mapping: MappingConfig) -> list[str]:
    """What stops journal lines from being built in D365's ledger format. No I/O.

    Dimensions of the format that the mapping does not feed are no problem (they stay blank); a mapped
    dimension the format lacks is, since its values would be dropped from every line.
    """
    have = formats.ledger
    if not have:
        return [f"no active ledger dimension format in D365; activate one that starts with MainAccount "
                f"({WHERE_FORMAT})"]
    if have[0] != "MainAccount":
        return [f"D365's active ledger dimension format {_shown(have)} does not start with MainAccount "
                f"({WHERE_FORMAT})"]
    problems: list[str] = []
    guard = mapping.ledger_format
    if guard is not None and tuple(guard) != have:
        problems.append(f"D365's active ledger dimension format is {_shown(have)} but mapping.ledger_format is "
                        f"{_shown(guard)}; make them equal, or remove mapping.ledger_format to follow D365 "
                        f"({WHERE_FORMAT})")
    absent = [name for name in mapping.dimensions if name not in have]
    if absent:
        problems.append(f"mapping.dimensions names {', '.join(absent)}, which D365's active ledger dimension "
                        f"format {_shown(have)} does not hold; add it there ({WHERE_FORMAT}) or remove it "
                        "from mapping.dimensions")
    return problems


def default_format_problems(formats: DimensionFormats, config: Config) -> list[str]:
    """What stops workers' DimensionDisplayValue from being built in D365's default format. No I/O."""
    guard = config.employees.default_dimensions
    if not guard:
        return []  # no guard (follow D365), or [] (send no default dimensions)
    if not formats.default:
        return [f"no active default dimension format in D365; activate {_shown(guard)} ({WHERE_FORMAT})"]
    if tuple(guard) != formats.default:
        return [f"D365's active default dimension format is {_shown(formats.default)} but "
                f"employees.default_dimensions is {_shown(guard)}; make them equal, or remove "
                f"employees.default_dimensions to follow D365 ({WHERE_FORMAT})"]
    return []


def format_summary(formats: DimensionFormats, mapping: MappingConfig) -> str:
    """ping's line: D365's formats, which dimensions UKG feeds and which stay blank."""
    fed = formats.fed(mapping)
    blank = formats.blank(mapping)
    text = (f"ledger format {_shown(formats.ledger)}: UKG feeds MainAccount"
            + (f", {', '.join(fed)}" if fed else "")
            + (f"; blank: {', '.join(blank)}" if blank else ""))
    if formats.default:
        dfed = formats.fed(mapping, ledger=False)
        dblank = formats.blank(mapping, ledger=False)
        text += (f"; default format {_shown(formats.default)}: fed {', '.join(dfed) or 'none'}"
                 + (f", blank: {', '.join(dblank)}" if dblank else ""))
    else:
        text += "; no active default dimension format"
    return text


def _shown(names: Iterable[str]) -> str:
    return " - ".join(names) or "(none)"
