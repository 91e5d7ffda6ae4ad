"""A Data management package holding one general journal, written to a temporary zip as its lines stream in.

A package is a zip of ``Manifest.xml`` (the data project: its entity, the data file, the source format and
the column map), ``PackageHeader.xml`` and the entity's data file (MicrosoftDocs/dynamics-365-unified-operations-
public articles/fin-ops-core/dev-itpro/data-entities/data-entities-data-packages.md). The columns are the
General journal entity's (LedgerJournalEntity, articles/fin-ops-core/dev-itpro/data-entities/
entity-general-journal.md); with set-based processing, its default, "the voucher number must be provided in the
imported file" and every line gets it "even if the voucher isn't balanced" (tips-tricks-import-general-journal-
entity.md), so the package names one balanced voucher per journal: the posting's marker, as on the OData route
with a journal name whose New voucher is Manually.

The built-in template writes ``CSV-Unicode`` (UTF-16 LE with a byte order mark, CRLF rows: what D365's
source data format of that name reads), every column mapped by name. A customer can export the package of their
own data project and name it in ``dmf.package_template``: its Manifest and PackageHeader are sent as they are and
its data file's header row gives the columns and their order; columns this tool does not fill stay empty.

Rows are encoded and deflated in chunks straight into a temporary file, so memory does not grow with the
journal; the file is deleted when the writer is closed.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from ukg2d365.errors import ConfigError

NAMESPACE = "http://schemas.microsoft.com/dynamics/2015/01/DataManagement"
MANIFEST = "Manifest.xml"
PACKAGE_HEADER = "PackageHeader.xml"
UNICODE_FORMAT = "CSV-Unicode"
# The built-in template's columns: the General journal entity's field names (entity-general-journal.md) plus TEXT,
# the line's description, which the OData route sends as Text.
BUILTIN_COLUMNS = (
    "JOURNALBATCHNUMBER", "LINENUMBER", "JOURNALNAME", "DESCRIPTION", "ACCOUNTTYPE", "ACCOUNTDISPLAYVALUE",
    "TRANSDATE", "VOUCHER", "CURRENCYCODE", "DEBITAMOUNT", "CREDITAMOUNT", "TEXT",
)
# Without these a journal could not be found (DESCRIPTION carries the marker), balanced or posted.
REQUIRED_COLUMNS = frozenset({"LINENUMBER", "JOURNALNAME", "DESCRIPTION", "ACCOUNTDISPLAYVALUE", "TRANSDATE",
                              "VOUCHER", "CURRENCYCODE", "DEBITAMOUNT", "CREDITAMOUNT"})
ROWS_PER_CHUNK = 2048
COMPRESS_LEVEL = 1  # deflate's fastest level: UTF-16 CSV still shrinks about tenfold


@dataclass(frozen=True)
class PackageTemplate:
    """What a package holds besides the rows: the two XML files, the data file's name, columns and encoding."""

    manifest: bytes
    header: bytes
    data_file: str
    columns: tuple[str, ...]
    encoding: str  # utf-16 (CSV-Unicode) or utf-8
    source: str  # "built-in" or the template's path, for messages

    @classmethod
    def builtin(cls, definition_group: str, entity_name: str) -> PackageTemplate:
        data_file = f"{entity_name}.csv"
        return cls(
            manifest=_builtin_manifest(definition_group, entity_name, data_file, BUILTIN_COLUMNS).encode("utf-8"),
            header=_builtin_header(definition_group).encode("utf-8"),
            data_file=data_file,
            columns=BUILTIN_COLUMNS,
            encoding="utf-16",
            source="built-in",
        )

    @classmethod
    def load(cls, path: Path, entity_name: str) -> PackageTemplate:
        """A package exported from the customer's data project; ConfigError naming what is wrong with it."""
        where = f"dmf.package_template {path}"
        try:
            with zipfile.ZipFile(path) as package:
                names = {n.casefold(): n for n in package.namelist()}
                manifest = _member(package, names, MANIFEST, where)
                header = _member(package, names, PACKAGE_HEADER, where)
                data_file, source_format = _entity_file(manifest, entity_name, where)
                stored = names.get(data_file.casefold())
                if stored is None:
                    raise ConfigError(f"{where}: the manifest names data file {data_file!r}, which the zip lacks")
                with package.open(stored) as raw:
                    first = raw.read(64 * 1024)
        except (OSError, zipfile.BadZipFile) as exc:
            raise ConfigError(f"{where}: not a readable zip ({exc})",
                              hint="export the package from your data project in D365 (Data management > "
                                   "Export) and point dmf.package_template at the downloaded zip") from None
        encoding = _encoding(source_format, where)
        columns = _header_columns(first, encoding, where)
        missing = sorted(REQUIRED_COLUMNS - set(columns))
        if missing:
            raise ConfigError(f"{where}: data file {data_file} has no column {', '.join(missing)}",
                              hint="map those fields of the General journal entity in your data project, export "
                                   "the package again")
        return cls(manifest, header, data_file, columns, encoding, str(path))


@dataclass(frozen=True)
class JournalFields:
    """What every row of one journal repeats (header values and the voucher)."""

    batch: str  # JOURNALBATCHNUMBER: a placeholder D365 replaces from the number sequence
    journal_name: str
    description: str
    voucher: str
    trans_date: str  # already in the data project's date format
    currency: str


@dataclass(frozen=True)
class Package:
    """A written package: the zip on disk, its size, its line count and its SHA-256 (for the audit trail)."""

    path: Path
    size: int
    lines: int
    sha256: str


Row = tuple[int, str, str, str, str]  # line number, account display value, debit, credit, text


class PackageWriter:
    """Writes one journal's package into a temporary zip, row by row; ``finish`` closes it, ``close`` deletes it."""

    def __init__(self, template: PackageTemplate, fields: JournalFields, folder: Path | None = None) -> None:
        self._template = template
        fd, name = tempfile.mkstemp(prefix="ukg2d365-dmf-", suffix=".zip", dir=folder)
        os.close(fd)
        self.path = Path(name)
        self._zip = zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL)
        self._zip.writestr(MANIFEST, template.manifest)
        self._zip.writestr(PACKAGE_HEADER, template.header)
        self._data: IO[bytes] | None = self._zip.open(template.data_file, "w", force_zip64=True)
        self._encoding = "utf-16-le" if template.encoding == "utf-16" else "utf-8"
        self._pending: list[str] = [",".join(_quoted(c) for c in template.columns) + "\r\n"]
        self._format, self._fields = _row_format(template.columns, fields)
        self.lines = 0
        if template.encoding == "utf-16":
            self._data.write(b"\xff\xfe")  # the byte order mark CSV-Unicode expects

    def add(self, rows: Iterable[Row]) -> None:
        """Append rows (line number, account, debit, credit, text); amounts as plain decimal text."""
        fmt, pick, quoted = self._format, self._fields, _quoted_cell
        pending = self._pending
        for number, account, debit, credit, text in rows:
            pending.append(fmt % pick((number, quoted(account), debit, credit, quoted(text))))
            if len(pending) >= ROWS_PER_CHUNK:
                self._flush()
            self.lines += 1

    def finish(self) -> Package:
        self._flush()
        if self._data is not None:
            self._data.close()
            self._data = None
        self._zip.close()
        digest = hashlib.sha256()
        with open(self.path, "rb") as done:
            for block in iter(lambda: done.read(1 << 20), b""):
                digest.update(block)
        return Package(self.path, self.path.stat().st_size, self.lines, digest.hexdigest())

    def close(self) -> None:
        """Delete the file (also when the writer failed half-way)."""
        try:
            if self._data is not None:
                self._data.close()
                self._data = None
            self._zip.close()
        finally:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> PackageWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _flush(self) -> None:
        if self._pending and self._data is not None:
            self._data.write("".join(self._pending).encode(self._encoding))
            self._pending.clear()


def read_rows(path: Path) -> tuple[PackageTemplate, list[dict[str, str]]]:
    """A package's rows by column name (for tests and the sandbox; holds the whole file)."""
    import csv
    import io

    with zipfile.ZipFile(path) as package:
        manifest = package.read(MANIFEST)
        header = package.read(PACKAGE_HEADER)
        data_file, source_format = _entity_file(manifest, None, str(path))
        encoding = _encoding(source_format, str(path))
        text = package.read(data_file).decode("utf-16" if encoding == "utf-16" else "utf-8-sig")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = tuple(c.upper() for c in (reader.fieldnames or []))
    rows = [{k.upper(): v for k, v in row.items()} for row in reader]
    return PackageTemplate(manifest, header, data_file, columns, encoding, str(path)), rows


# ---------------------------------------------------------------------------- internals


_CONSTANTS = {
    "JOURNALBATCHNUMBER": "batch", "JOURNALNAME": "journal_name", "DESCRIPTION": "description",
    "VOUCHER": "voucher", "TRANSDATE": "trans_date", "CURRENCYCODE": "currency",
}
_PER_LINE = {"LINENUMBER": 0, "ACCOUNTDISPLAYVALUE": 1, "DEBITAMOUNT": 2, "CREDITAMOUNT": 3, "TEXT": 4}


def _row_format(columns: tuple[str, ...], fields: JournalFields) -> tuple[str, Callable[[Row], tuple[Any, ...]]]:
    """One row as a %-template (constants baked in, quoted, % doubled) and what picks a row's fields for it, in
    the template's column order: %-formatting a tuple costs a third of str.format with names, a million times."""
    parts = []
    order: list[int] = []
    for column in columns:
        if column in _PER_LINE:
            parts.append("%s")
            order.append(_PER_LINE[column])
        elif column in _CONSTANTS:
            parts.append(_quoted(str(getattr(fields, _CONSTANTS[column]))).replace("%", "%%"))
        elif column == "ACCOUNTTYPE":
            parts.append("Ledger")
        else:
            parts.append("")
    pick: Callable[[Row], tuple[Any, ...]] = (lambda row: ()) if not order else \
        (lambda row: (row[order[0]],)) if len(order) == 1 else itemgetter(*order)
    return ",".join(parts) + "\r\n", pick


def _quoted(value: str) -> str:
    if '"' in value or "," in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


# A journal repeats a few hundred accounts and texts: each is quoted once, not once a line.
_quoted_cell = functools.lru_cache(maxsize=65536)(_quoted)


def _builtin_manifest(group: str, entity: str, data_file: str, columns: tuple[str, ...]) -> str:
    # The shape of a manifest D365 exports (root DataManagementPackageManifest in the DataManagement namespace,
    # one DataManagementPackageEntityData with an explicit EntityMapList): public DMF import scripts report that
    # a manifest without the column map stages nothing.
    maps = "".join(
        "<EntityMap><ArrayIndex>0</ArrayIndex>"
        f"<EntityField>{c}</EntityField>"
        '<EntityFieldConversionList i:nil="true" />'
        "<IsAutoDefault>false</IsAutoDefault><IsAutoGenerated>false</IsAutoGenerated>"
        "<IsDefaultValueEqualNull>false</IsDefaultValueEqualNull><UseTextQualifier>false</UseTextQualifier>"
        f"<XMLField>{c}</XMLField></EntityMap>"
        for c in columns
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\r\n'
        f'<DataManagementPackageManifest xmlns:i="http://www.w3.org/2001/XMLSchema-instance" xmlns="{NAMESPACE}">'
        f"<DefinitionGroupName>{escape(group)}</DefinitionGroupName>"
        "<Description>ukg2d365 payroll general journal</Description>"
        "<PackageEntityList><DataManagementPackageEntityData>"
        "<DefaultRefreshType>FullPush</DefaultRefreshType><Disable>false</Disable>"
        f"<EntityMapList>{maps}</EntityMapList>"
        f"<EntityName>{escape(entity)}</EntityName>"
        "<ExecutionUnit>1</ExecutionUnit>"
        f"<InputFilePath>{escape(data_file)}</InputFilePath>"
        "<LevelInExecutionUnit>1</LevelInExecutionUnit><SequenceInLevel>1</SequenceInLevel>"
        "<SkipStaging>false</SkipStaging>"
        f"<SourceFormat>{UNICODE_FORMAT}</SourceFormat>"
        "</DataManagementPackageEntityData></PackageEntityList>"
        "</DataManagementPackageManifest>"
    )


def _builtin_header(group: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\r\n'
        f'<DataManagementPackageHeader xmlns:i="http://www.w3.org/2001/XMLSchema-instance" xmlns="{NAMESPACE}">'
        f"<Description>{escape(group)}</Description>"
        "<ManifestType>Microsoft.Dynamics.AX.Framework.Tools.DataManagement.Serialization."
        "DataManagementPackageManifest</ManifestType>"
        "<PackageType>DefinitionGroup</PackageType><PackageVersion>2</PackageVersion>"
        "</DataManagementPackageHeader>"
    )


def _member(package: zipfile.ZipFile, names: dict[str, str], name: str, where: str) -> bytes:
    stored = names.get(name.casefold())
    if stored is None:
        raise ConfigError(f"{where}: the zip has no {name}; is it a package exported from a data project?")
    return package.read(stored)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _entity_file(manifest: bytes, entity_name: str | None, where: str) -> tuple[str, str]:
    """(data file, source format) of the manifest's entity named entity_name (or its only entity)."""
    try:
        root = ElementTree.fromstring(manifest)  # noqa: S314 - a file the customer exported from their own D365
    except ElementTree.ParseError as exc:
        raise ConfigError(f"{where}: {MANIFEST} is not valid XML ({exc})") from None
    entities = []
    for node in root.iter():
        if _local(node.tag) != "DataManagementPackageEntityData":
            continue
        values = {_local(child.tag): (child.text or "").strip() for child in node}
        entities.append(values)
    if entity_name is not None:
        chosen = [e for e in entities if e.get("EntityName", "").casefold() == entity_name.casefold()]
    else:
        chosen = entities[:1]
    if len(chosen) != 1:
        listed = ", ".join(e.get("EntityName", "?") for e in entities) or "none"
        raise ConfigError(f"{where}: {MANIFEST} must hold the entity {entity_name!r} once (it holds: {listed})",
                          hint="set dmf.entity_name to the entity's name in your data project")
    entity = chosen[0]
    data_file = entity.get("InputFilePath") or f"{entity.get('EntityName', 'data')}.csv"
    return os.path.basename(data_file.replace("\\", "/")), entity.get("SourceFormat", "")


def _encoding(source_format: str, where: str) -> str:
    if "csv" not in source_format.casefold():
        raise ConfigError(f"{where}: source data format {source_format or '(none)'!r} is not a CSV format",
                          hint=f"give the data project a CSV source data format ({UNICODE_FORMAT} is safest), "
                               "export the package again")
    return "utf-16" if "unicode" in source_format.casefold() else "utf-8"


def _header_columns(first: bytes, encoding: str, where: str) -> tuple[str, ...]:
    codec = "utf-16" if encoding == "utf-16" else "utf-8-sig"
    try:
        text = first.decode(codec, errors="strict" if len(first) < 64 * 1024 else "ignore")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: the data file is not {codec} text as its source format says") from None
    line = text.splitlines()[0] if text else ""
    columns = tuple(c.strip().strip('"').upper() for c in line.split(","))
    if not line or not all(columns):
        raise ConfigError(f"{where}: the data file has no header row of column names")
    return columns
