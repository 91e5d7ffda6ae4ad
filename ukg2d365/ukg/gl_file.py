"""UKG's GL export file (CSV or fixed width) as a source of the raw GL items the API yields. No network.

Customers whose GL leaves UKG Pro as a file (the GL export template, delivered by SFTP) have no API to
read; UKG publishes no standard layout for that file (its fields are configured per customer), so the
layout is configuration (``file_source:``). Each row becomes the dict the GL endpoint returns (``runId``,
``coId``, ``payGroup``, ``periodEndDate``, ``generalLedgerAccount``, ``debitAmt``, ``creditAmt``,
``orgLevel1``..``orgLevel4``, ``systemId``), so validation (``parse_gl_line``), planning, exactly-once and
reconcile are the API route's code.

The file is streamed twice, never held in memory: :meth:`GlFile.check` reads every row and names each bad
one by line and column (a file with any bad row is refused whole), and hashes the rows when the layout has
no run id column (the run id is then that hash: content, not name, so a renamed copy is the same run);
:meth:`GlFile.items` reads it again and yields the items, refusing a file that changed in between.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from ukg2d365.config import FileSourceConfig, FixedWidthField
from ukg2d365.errors import DataError, UsageError
from ukg2d365.money import AmountError, parse_amount

MAX_BAD_ROWS_LISTED = 5
DERIVED_RUN_PREFIX = "file-"
# Lone surrogates are what the decoder's "surrogateescape" handler leaves for bytes the encoding cannot read:
# found per field, they name the line and the column instead of failing the whole file at an unknown place.
_UNDECODABLE = re.compile("[\udc80-\udcff]")
# UKG's own field names for each logical field, as the GL endpoint writes them (ukg-api's GL v2 item).
ITEM_FIELDS = {
    "run_id": "runId", "company": "coId", "pay_group": "payGroup", "period_end": "periodEndDate",
    "account": "generalLedgerAccount", "org_level1": "orgLevel1", "org_level2": "orgLevel2",
    "org_level3": "orgLevel3", "org_level4": "orgLevel4", "line_id": "systemId",
}
REQUIRED = ("run_id", "company", "pay_group", "period_end", "account")


class RowProblem(ValueError):
    """One bad value; the caller adds the file, the line and, from ``column``, the column's label."""

    def __init__(self, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column


@dataclass
class FileCheck:
    """What :meth:`GlFile.check` found: the rows, the hash of their content, the bad ones."""

    rows: int = 0
    digest: str = ""
    bad_rows: int = 0
    listed: list[str] = field(default_factory=list)  # "line 17, column debit ('Debit Amt'): ..."


@dataclass(frozen=True)
class _Column:
    """One logical field's place in the file, resolved against the header, and how errors name it."""

    name: str
    label: str  # "column debit ('Debit Amt')", "column debit (field 7)", "column debit (positions 79-93)"
    read: Callable[[Any], str | None]  # a record (list of CSV fields, or a line) -> the raw text, None if absent


class AmountParser:
    """Amounts as the file writes them -> exact Decimal, never float: the configured decimal and thousands
    separators, an implied decimal point (fixed width's 12345 for 123.45), and a minus sign in front, at the end
    (``123.45-``) or parentheses (``(123.45)``)."""

    def __init__(self, source: FileSourceConfig, precision: int) -> None:
        dec = re.escape(source.decimal_separator)
        thousands = re.escape(source.thousands_separator)
        whole = rf"(?:\d{{1,3}}(?:{thousands}\d{{3}})+|\d+)" if thousands else r"\d+"
        fraction = "" if source.implied_decimals else rf"(?:{dec}\d*)?"
        self._shape = re.compile(rf"^{whole}{fraction}$|^{dec}\d+$" if not source.implied_decimals else
                                 rf"^{whole}$")
        self._decimal = source.decimal_separator
        self._thousands = source.thousands_separator
        self._implied = source.implied_decimals
        self._precision = precision

    def __call__(self, text: str) -> Decimal:
        value = text.strip()
        negative = False
        if value.startswith("(") and value.endswith(")"):
            negative, value = True, value[1:-1].strip()
        elif value.endswith("-"):
            negative, value = True, value[:-1].rstrip()
        elif value[:1] in ("-", "+"):
            negative, value = value[0] == "-", value[1:].lstrip()
        if not self._shape.match(value):
            raise RowProblem(f"{text!r} is not an amount")
        if self._thousands:
            value = value.replace(self._thousands, "")
        number = Decimal(value.replace(self._decimal, "."))
        if self._implied:
            number = number.scaleb(-self._implied)
        try:
            return parse_amount(-number if negative else number, self._precision)
        except AmountError as exc:
            raise RowProblem(f"{text!r}: {exc}") from None


class GlFile:
    """One GL export file read through ``file_source:``; ``name`` is how messages call it (the path as given)."""

    def __init__(self, path: Path, source: FileSourceConfig, precision: int = 2) -> None:
        self.path = path
        self.name = str(path)
        self.source = source
        self._amount = AmountParser(source, precision)
        self._debit_marks = {v.strip().casefold() for v in source.debit_indicators}
        self._credit_marks = {v.strip().casefold() for v in source.credit_indicators}
        self.checked: FileCheck | None = None
        self._dates: dict[str, str] = {}  # a file's rows share a handful of period ends

    @property
    def run_id(self) -> str | None:
        """The run id every row gets when the layout has no run id column (after :meth:`check`)."""
        if not self.source.run_id_derived or self.checked is None:
            return None
        return DERIVED_RUN_PREFIX + self.checked.digest[:12]

    # ------------------------------------------------------------------ the two passes

    def check(self) -> FileCheck:
        """Read every row; DataError naming the bad rows (the first few, and how many) when any is bad."""
        result = FileCheck()
        digest = hashlib.sha256()
        for line, fields in self._rows(digest):
            result.rows += 1
            problems = fields.get("", [])
            if problems:
                result.bad_rows += 1
                if len(result.listed) < MAX_BAD_ROWS_LISTED:
                    result.listed.append(f"line {line}, " + "; ".join(problems))
        result.digest = digest.hexdigest()
        if result.bad_rows:
            raise DataError(self._bad_rows_message(result), hint="nothing from the file was posted; correct the "
                            "rows (or file_source: in the config) and run again")
        if not result.rows:
            raise DataError(f"{self.name}: the file holds no GL rows", hint="is the transfer complete?")
        self.checked = result
        return result

    def items(self) -> Iterator[dict[str, Any]]:
        """The rows as UKG's GL items, in file order; the file is checked first when it was not."""
        checked = self.checked or self.check()
        run_id = self.run_id
        digest = hashlib.sha256()
        rows = 0
        for line, fields in self._rows(digest):
            rows += 1
            if fields.get(""):
                raise self._changed(f"line {line} is bad now")
            item: dict[str, Any] = {ITEM_FIELDS[name]: value for name, value in fields.items()
                                    if name in ITEM_FIELDS}
            if run_id is not None:
                item["runId"] = run_id
            item.setdefault("systemId", None)
            item["debitAmt"] = fields["debit"]
            item["creditAmt"] = fields["credit"]
            yield item
        if rows != checked.rows or digest.hexdigest() != checked.digest:
            raise self._changed("its rows differ from the first reading")

    def _changed(self, detail: str) -> DataError:
        return DataError(f"{self.name} changed while it was being read ({detail})",
                         hint="nothing was posted; run again once the file is complete")

    def _bad_rows_message(self, result: FileCheck) -> str:
        listed = "; ".join(result.listed)
        if result.bad_rows == 1:
            return f"{self.name}: {listed}"
        more = f", the first {len(result.listed)} listed" if result.bad_rows > len(result.listed) else ""
        return f"{self.name}: {result.bad_rows} bad rows{more}: {listed}"

    # ------------------------------------------------------------------ rows

    def _rows(self, digest: Any) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number, converted fields) per data row; a bad row's problems under the key ``""``."""
        with self._open() as handle:
            records = self._records(handle)
            columns = self._columns(records)
            for line, record, content in self._without_footer(records):
                digest.update(content.encode("utf-8", "surrogateescape") + b"\n")
                yield line, self._convert(record, columns, undecodable=bool(_UNDECODABLE.search(content)))

    def _open(self) -> IO[str]:
        encoding = self.source.encoding
        if codecs.lookup(encoding).name == "utf-8":
            encoding = "utf-8-sig"  # a BOM (what Windows tools write first) is not part of the first column
        try:
            return open(self.path, encoding=encoding, errors="surrogateescape", newline="")  # noqa: SIM115
        except FileNotFoundError:
            raise UsageError(f"{self.name}: file not found") from None
        except IsADirectoryError:
            raise UsageError(f"{self.name} is a folder, not a GL export file") from None
        except OSError as exc:
            raise UsageError(f"{self.name}: cannot read the file ({exc.strerror or exc})") from None

    def _records(self, handle: IO[str]) -> Iterator[tuple[int, Any, str]]:
        """(first line number, record, content to hash) of every non-blank record after ``skip_lines``."""
        for _ in range(self.source.skip_lines):
            if not handle.readline():
                return
        offset = self.source.skip_lines
        if self.source.format == "fixed_width":
            for number, text in enumerate(handle, start=offset + 1):
                line = text.rstrip("\r\n").lstrip("\ufeff") if number == 1 else text.rstrip("\r\n")
                if line.strip():
                    yield number, line, line.rstrip()
            return
        reader = csv.reader(handle, delimiter=self.source.delimiter, quotechar=self.source.quotechar, strict=True)
        while True:
            first = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise DataError(f"{self.name}: line {offset + first}: not valid CSV ({exc})",
                                hint="nothing from the file was posted") from None
            if any(value.strip() for value in row):
                yield offset + first, row, "\x1f".join(value.strip() for value in row)

    def _without_footer(self, records: Iterator[tuple[int, Any, str]]) -> Iterator[tuple[int, Any, str]]:
        """The records less the last ``footer_lines`` (a trailer with counts or control totals)."""
        held: deque[tuple[int, Any, str]] = deque()
        for record in records:
            held.append(record)
            if len(held) > self.source.footer_lines:
                yield held.popleft()

    # ------------------------------------------------------------------ columns

    def _columns(self, records: Iterator[tuple[int, Any, str]]) -> list[_Column]:
        """Each mapped field's reader; a header (when configured) is read here, and a named column it lacks
        is refused before any row is."""
        mapped = self.source.columns.mapped()
        if self.source.format == "fixed_width":
            if self.source.header:
                next(records, None)
            return [self._fixed(name, ref) for name, ref in mapped.items() if isinstance(ref, FixedWidthField)]
        positions: dict[str, int] = {}
        if self.source.header:
            header = next(records, None)
            if header is None:
                return []
            positions = self._header_positions(header[0], header[1], mapped)
        columns = []
        for name, ref in mapped.items():
            if isinstance(ref, str):
                columns.append(self._csv(name, positions[name], f"column {name} ({ref!r})"))
            elif isinstance(ref, int):
                columns.append(self._csv(name, ref - 1, f"column {name} (field {ref})"))
        return columns

    def _header_positions(self, line: int, header: list[str], mapped: dict[str, Any]) -> dict[str, int]:
        names = [value.strip().lstrip("\ufeff").strip().casefold() for value in header]
        positions = {}
        for name, ref in mapped.items():
            if not isinstance(ref, str):
                continue
            found = [i for i, value in enumerate(names) if value == ref.casefold()]
            if len(found) != 1:
                what = "has no column" if not found else "has more than one column"
                raise DataError(f"{self.name}: line {line}: the header {what} {ref!r} (file_source.columns.{name}); "
                                f"it has: {', '.join(repr(v.strip()) for v in header)}",
                                hint="nothing from the file was posted; fix file_source.columns or the export template")
            positions[name] = found[0]
        return positions

    @staticmethod
    def _csv(name: str, index: int, label: str) -> _Column:
        return _Column(name, label, lambda row: row[index] if index < len(row) else None)

    @staticmethod
    def _fixed(name: str, ref: FixedWidthField) -> _Column:
        start, stop = ref.start - 1, ref.start - 1 + ref.length
        return _Column(name, f"column {name} (positions {ref.start}-{stop})", lambda line: line[start:stop])

    # ------------------------------------------------------------------ values

    def _convert(self, record: Any, columns: list[_Column], *, undecodable: bool) -> dict[str, Any]:
        """The row's fields as UKG's item values (text stripped, amounts Decimal, the date ISO); problems, each
        naming its column, under the key ``""``. ``undecodable``: the record holds bytes the encoding cannot read."""
        fields: dict[str, Any] = {"company": self.source.constants.company,
                                  "pay_group": self.source.constants.pay_group}
        problems: list[str] = []
        raw: dict[str, str] = {}
        labels: dict[str, str] = {}
        for column in columns:
            labels[column.name] = column.label
            text = column.read(record)
            if text is None:
                problems.append(f"{column.label}: missing (the row has {len(record)} fields)")
                continue
            if undecodable and _UNDECODABLE.search(text):
                problems.append(f"{column.label}: bytes that are not {self.source.encoding} (set file_source.encoding)")
                continue
            raw[column.name] = text.strip()
        for name, text in raw.items():
            try:
                fields[name] = self._value(name, text)
            except RowProblem as exc:
                problems.append(f"{labels[name]}: {exc}")
        try:
            fields["debit"], fields["credit"] = self._sides(raw, fields)
        except RowProblem as exc:
            problems.append(f"{labels[exc.column]}: {exc}" if exc.column else str(exc).format(**labels))
        problems += [f"{labels[name]}: is empty" for name in REQUIRED
                     if name in raw and not raw[name]]
        if problems:
            fields[""] = problems
        return fields

    def _value(self, name: str, text: str) -> Any:
        if name == "period_end":
            return self._date(text) if text else ""
        if name in ("amount", "debit", "credit"):
            return self._amount(text) if text else None
        return text

    def _date(self, text: str) -> str:
        known = self._dates.get(text)
        if known is not None:
            return known
        try:
            day = datetime.strptime(text, self.source.date_format).date().isoformat()
        except ValueError:
            raise RowProblem(f"{text!r} is not a date in the format {self.source.date_format}") from None
        if len(self._dates) < 1000:
            self._dates[text] = day
        return day

    def _sides(self, raw: dict[str, str], fields: dict[str, Any]) -> tuple[Decimal | None, Decimal | None]:
        """(debit, credit) under the configured amount convention. A RowProblem names its column, or (debit
        and credit both empty) holds ``{debit}`` and ``{credit}`` for their labels."""
        convention = self.source.amounts
        if convention == "debit_credit":
            if "debit" in raw and "credit" in raw and not raw["debit"] and not raw["credit"]:
                raise RowProblem("{debit} and {credit}: both empty")
            return fields.get("debit"), fields.get("credit")
        amount = fields.get("amount")
        if "amount" in raw and not raw["amount"]:
            raise RowProblem("is empty", "amount")
        if not isinstance(amount, Decimal):
            return None, None  # its problem is already named
        zero = amount * 0
        if convention == "signed":
            return (amount, zero) if amount >= 0 else (zero, -amount)
        mark = raw.get("dc_indicator", "").casefold()
        if mark in self._debit_marks:
            return amount, zero
        if mark in self._credit_marks:
            return zero, amount
        debit = ", ".join(self.source.debit_indicators)
        credit = ", ".join(self.source.credit_indicators)
        raise RowProblem(f"{raw.get('dc_indicator', '')!r} is neither a debit ({debit}) nor a credit ({credit}) "
                         "indicator", "dc_indicator")
