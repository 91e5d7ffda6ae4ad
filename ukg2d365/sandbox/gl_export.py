"""A sandbox GL run written as UKG's GL export file, in two layouts, with the ``file_source:`` that reads each.

UKG Pro's GL export file is laid out by each customer's GL export template, and no standard layout is
published (Mosaic Consulting, https://mosaic-cg.com/blog/posts/ukg-pro-general-ledger-gl-deciphered: the export
file is configured per customer), so these layouts are plausible examples, not UKG's: a CSV as spreadsheet-minded
templates write it (a UTF-8 BOM, CRLF, US dates, amounts with thousands separators) and a fixed-width file as
mainframe-era GL imports take it (a header record, a trailer with the count, one amount with a D/C indicator
and two implied decimals). Values are the GL endpoint's for the same run, so a journal posted from the file can
be compared with one posted from the API.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from ukg2d365.errors import UsageError
from ukg2d365.sandbox.data import GlRun, UkgDataset

FORMATS = ("csv", "fixed_width")
CSV_HEADER = ["Company", "Pay Group", "Period End", "Run ID", "Line ID", "GL Account", "Description",
              "Org Level 1", "Org Level 2", "Debit Amt", "Credit Amt"]
_CHUNK = 5000

# (logical field, first position, length) of the fixed-width data record; position 1 holds the record type.
FIXED_FIELDS = (("company", 2, 5), ("pay_group", 7, 4), ("period_end", 11, 8), ("run_id", 19, 20),
                ("line_id", 39, 10), ("account", 49, 10), ("org_level1", 59, 10), ("org_level2", 69, 10),
                ("dc_indicator", 79, 1), ("amount", 80, 15))


def csv_file_source() -> dict[str, Any]:
    """The ``file_source:`` that reads :func:`export_gl`'s CSV layout."""
    return {
        "format": "csv",
        "date_format": "%m/%d/%Y",
        "thousands_separator": ",",
        "columns": {"company": "Company", "pay_group": "Pay Group", "period_end": "Period End", "run_id": "Run ID",
                    "line_id": "Line ID", "account": "GL Account", "org_level1": "Org Level 1",
                    "org_level2": "Org Level 2", "debit": "Debit Amt", "credit": "Credit Amt"},
    }


def fixed_width_file_source() -> dict[str, Any]:
    """The ``file_source:`` that reads :func:`export_gl`'s fixed-width layout."""
    return {
        "format": "fixed_width",
        "header": True,
        "footer_lines": 1,
        "date_format": "%Y%m%d",
        "amounts": "indicator",
        "implied_decimals": 2,
        "columns": {name: {"start": start, "length": length} for name, start, length in FIXED_FIELDS},
    }


def export_gl(dataset: UkgDataset, run_id: str, path: Path, fmt: str = "csv") -> int:
    """Write GL run ``run_id`` to ``path`` in layout ``fmt``; the number of GL lines written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown GL export layout {fmt!r}: use {' or '.join(FORMATS)}")
    run = dataset.gl_run(run_id)
    if fmt == "csv":
        return _write_csv(run, path)
    return _write_fixed_width(run, path)


def export_for_cli(run_id: str, path: Path, fmt: str, employees: int, companies: int = 1) -> str:
    """``ukg2d365 sandbox --export-gl``: the sandbox's generated data (the same for the same --employees and
    --companies on the same day) written as a GL export file; the line to print."""
    if fmt not in FORMATS:
        raise UsageError(f"--gl-format {fmt!r}: use {' or '.join(FORMATS)}")
    dataset = UkgDataset(employees, companies=companies)
    try:
        count = export_gl(dataset, run_id, path, fmt)
    except KeyError:
        runs = ", ".join(r.run_id for r in dataset.gl_runs)
        raise UsageError(f"--export-gl {run_id}: the sandbox has no such GL run", hint=f"it has {runs}") from None
    except OSError as exc:
        raise UsageError(f"--to {path}: cannot write the file ({exc.strerror or exc})") from None
    reader = "the sandbox's ukg2d365.yaml reads it" if fmt == "csv" else \
        "read it with the fixed-width file_source: of config.example.yaml"
    return f"wrote GL run {run_id} ({count} lines) to {path} as a {fmt} GL export file; {reader}"


def _items(run: GlRun) -> Iterator[dict[str, Any]]:
    for start in range(0, len(run), _CHUNK):
        yield from run.items(start, start + _CHUNK)


def _period_end(item: dict[str, Any]) -> dt.date:
    return dt.date.fromisoformat(str(item.get("periodEndDate") or item["payPeriodEndDate"])[:10])


def _write_csv(run: GlRun, path: Path) -> int:
    count = 0
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)  # CRLF line ends, quotes where a value holds a comma
        writer.writerow(CSV_HEADER)
        for item in _items(run):
            writer.writerow([item["coId"], item["payGroup"], f"{_period_end(item):%m/%d/%Y}", item["runId"],
                             item["systemId"], item["generalLedgerAccount"], item.get("description", ""),
                             item["orgLevel1"], item["orgLevel2"], _grouped(item["debitAmt"]),
                             _grouped(item["creditAmt"])])
            count += 1
    return count


def _grouped(amount: Decimal | None) -> str:
    return "" if amount is None or amount == 0 else f"{amount:,.2f}"


def _write_fixed_width(run: GlRun, path: Path) -> int:
    count = 0
    with path.open("w", encoding="ascii", newline="\n") as handle:
        handle.write(f"H{run.run_id:<20}{dt.date.today():%Y%m%d}GL EXPORT\n")
        for item in _items(run):
            debit, credit = Decimal(item["debitAmt"] or 0), Decimal(item["creditAmt"] or 0)
            mark, amount = ("C", credit) if credit and not debit else ("D", debit)
            values = {"company": item["coId"], "pay_group": item["payGroup"],
                      "period_end": f"{_period_end(item):%Y%m%d}", "run_id": item["runId"],
                      "line_id": str(item["systemId"]), "account": item["generalLedgerAccount"],
                      "org_level1": item["orgLevel1"], "org_level2": item["orgLevel2"], "dc_indicator": mark,
                      "amount": f"{int(amount * 100):015d}"}
            handle.write("L" + "".join(f"{values[name]:<{length}}"[:length] for name, _, length in FIXED_FIELDS)
                         + "\n")
            count += 1
        handle.write(f"T{count:010d}\n")
    return count
