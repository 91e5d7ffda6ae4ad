"""The DMF package writer: a zip D365's General journal import reads, written as lines stream in."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from ukg2d365.d365.package import (
    BUILTIN_COLUMNS,
    JournalFields,
    PackageTemplate,
    PackageWriter,
    read_rows,
)
from ukg2d365.errors import ConfigError

FIELDS = JournalFields(batch="U2D-ABC", journal_name="GenJrn", description="Payroll BW, 2026 [U2D-ABC]",
                       voucher="U2D-ABC", trans_date="2026-01-31", currency="USD")


def _write(template: PackageTemplate, rows: list[tuple[int, str, str, str, str]], folder: Path) -> Path:
    writer = PackageWriter(template, FIELDS, folder)
    writer.add(rows)
    package = writer.finish()
    assert package.lines == len(rows) and package.size == package.path.stat().st_size
    return package.path


def test_builtin_package_holds_manifest_header_and_unicode_csv_with_crlf_rows(tmp_path: Path) -> None:
    path = _write(PackageTemplate.builtin("UKG2D365 General journal", "General journal"),
                  [(1, "601500-CC1", "10.00", "0.00", "Pay, with comma"), (2, "201000-", "0.00", "10.00", 'say "x"')],
                  tmp_path)
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["General journal.csv", "Manifest.xml", "PackageHeader.xml"]
        raw = z.read("General journal.csv")
        manifest = z.read("Manifest.xml").decode()
        header = z.read("PackageHeader.xml").decode()
    assert raw.startswith(b"\xff\xfe")  # CSV-Unicode: UTF-16 LE with a byte order mark
    text = raw.decode("utf-16")
    assert text.count("\r\n") == 3 and "\n" not in text.replace("\r\n", "")
    assert "<DefinitionGroupName>UKG2D365 General journal</DefinitionGroupName>" in manifest
    assert "<SourceFormat>CSV-Unicode</SourceFormat>" in manifest and "<XMLField>VOUCHER</XMLField>" in manifest
    assert "<PackageType>DefinitionGroup</PackageType>" in header
    _, rows = read_rows(path)
    assert [r["TEXT"] for r in rows] == ["Pay, with comma", 'say "x"']
    assert rows[0]["DESCRIPTION"] == "Payroll BW, 2026 [U2D-ABC]" and rows[1]["VOUCHER"] == "U2D-ABC"
    assert rows[0]["ACCOUNTTYPE"] == "Ledger" and rows[1]["CREDITAMOUNT"] == "10.00"
    assert tuple(rows[0]) == BUILTIN_COLUMNS


def test_writer_deletes_its_file_on_close_also_after_a_failure(tmp_path: Path) -> None:
    writer = PackageWriter(PackageTemplate.builtin("G", "General journal"), FIELDS, tmp_path)
    with pytest.raises(ValueError), writer:
        writer.add([(1, "a", "1", "0", "t")])
        raise ValueError("boom")
    assert list(tmp_path.iterdir()) == []


def _customer_zip(path: Path, data_header: str, source_format: str = "CSV-Unicode") -> Path:
    manifest = (
        '<?xml version="1.0" encoding="utf-8"?><DataManagementPackageManifest '
        'xmlns="http://schemas.microsoft.com/dynamics/2015/01/DataManagement"><DefinitionGroupName>GL import'
        '</DefinitionGroupName><PackageEntityList><DataManagementPackageEntityData><EntityName>General journal'
        f'</EntityName><InputFilePath>General journal.csv</InputFilePath><SourceFormat>{source_format}'
        '</SourceFormat></DataManagementPackageEntityData></PackageEntityList></DataManagementPackageManifest>'
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("Manifest.xml", manifest)
        z.writestr("PackageHeader.xml", "<DataManagementPackageHeader/>")
        z.writestr("General journal.csv", (data_header + "\r\n").encode("utf-16"))
    return path


def test_customer_template_keeps_its_xml_and_column_order_and_leaves_unknown_columns_empty(tmp_path: Path) -> None:
    columns = ("VOUCHER,TRANSDATE,ACCOUNTDISPLAYVALUE,DEBITAMOUNT,CREDITAMOUNT,CURRENCYCODE,LINENUMBER,"
               "JOURNALNAME,DESCRIPTION,POSTINGLAYER")
    template = PackageTemplate.load(_customer_zip(tmp_path / "t.zip", columns), "General journal")
    assert template.columns == tuple(columns.split(","))
    path = _write(template, [(7, "601500-", "5.00", "0", "t")], tmp_path)
    got, rows = read_rows(path)
    assert got.manifest == template.manifest
    assert rows == [{"VOUCHER": "U2D-ABC", "TRANSDATE": "2026-01-31", "ACCOUNTDISPLAYVALUE": "601500-",
                     "DEBITAMOUNT": "5.00", "CREDITAMOUNT": "0", "CURRENCYCODE": "USD", "LINENUMBER": "7",
                     "JOURNALNAME": "GenJrn", "DESCRIPTION": "Payroll BW, 2026 [U2D-ABC]", "POSTINGLAYER": ""}]


def test_customer_template_without_a_required_column_or_in_excel_format_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="has no column DESCRIPTION, VOUCHER"):
        PackageTemplate.load(_customer_zip(tmp_path / "a.zip", "LINENUMBER,JOURNALNAME,ACCOUNTDISPLAYVALUE,"
                                           "TRANSDATE,CURRENCYCODE,DEBITAMOUNT,CREDITAMOUNT"), "General journal")
    with pytest.raises(ConfigError, match="'Excel' is not a CSV format"):
        PackageTemplate.load(_customer_zip(tmp_path / "b.zip", "X", "Excel"), "General journal")
    with pytest.raises(ConfigError, match="must hold the entity 'Journal lines' once"):
        PackageTemplate.load(_customer_zip(tmp_path / "c.zip", "X"), "Journal lines")
    (tmp_path / "d.zip").write_text("not a zip")
    with pytest.raises(ConfigError, match="not a readable zip"):
        PackageTemplate.load(tmp_path / "d.zip", "General journal")
