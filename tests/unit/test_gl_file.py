"""UKG's GL export file as a source: the reader (ukg2d365/ukg/gl_file.py), every error it names, and file_source:."""

from __future__ import annotations

import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from ukg2d365.cli import app
from ukg2d365.config import FileSourceConfig, parse_config
from ukg2d365.errors import ConfigError, DataError, ExitStatus, UsageError
from ukg2d365.sandbox.data import UkgDataset
from ukg2d365.sandbox.gl_export import csv_file_source, export_gl, fixed_width_file_source
from ukg2d365.ukg.gl_file import GlFile
from ukg2d365.ukg.records import parse_gl_line

ROOT = Path(__file__).resolve().parents[2]
HEADER = "Run,Company,Pay Group,Period End,Account,Debit Amt,Credit Amt,CC\n"
COLUMNS = {"run_id": "Run", "company": "Company", "pay_group": "Pay Group", "period_end": "Period End",
           "account": "Account", "debit": "Debit Amt", "credit": "Credit Amt", "org_level1": "CC"}


def source(**overrides: Any) -> FileSourceConfig:
    data: dict[str, Any] = {"columns": dict(COLUMNS)}
    data.update(overrides)
    return FileSourceConfig.model_validate(data)


def write(tmp_path: Path, text: str | bytes, name: str = "gl.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def items(path: Path, cfg: FileSourceConfig | None = None) -> list[dict[str, Any]]:
    return list(GlFile(path, cfg or source()).items())


def refusal(path: Path, cfg: FileSourceConfig | None = None) -> str:
    with pytest.raises(DataError) as caught:
        GlFile(path, cfg or source()).check()
    return str(caught.value)


GOOD = HEADER + "R1,C1,BW,2026-11-13,5000,100.00,,110\nR1,C1,BW,2026-11-13,2100,,100.00,\n"


# ---------------------------------------------------------------------- rows -> UKG's GL items


def test_rows_become_the_items_ukgs_gl_endpoint_returns(tmp_path):
    rows = items(write(tmp_path, GOOD))
    assert rows[0] == {"runId": "R1", "coId": "C1", "payGroup": "BW", "periodEndDate": "2026-11-13",
                       "generalLedgerAccount": "5000", "orgLevel1": "110", "systemId": None,
                       "debitAmt": Decimal("100.00"), "creditAmt": None}
    line = parse_gl_line(rows[1], 2)
    assert (line.run_id, line.account, line.debit, line.credit) == ("R1", "2100", Decimal("0.00"), Decimal("100.00"))


@pytest.mark.parametrize("fmt", ["csv", "fixed_width"])
def test_a_sandbox_export_reads_back_as_the_very_lines_the_api_serves(tmp_path, fmt):
    dataset = UkgDataset(12)
    run = dataset.gl_runs[-1]
    path = tmp_path / "gl.txt"
    assert export_gl(dataset, run.run_id, path, fmt) == len(run)
    cfg = FileSourceConfig.model_validate(csv_file_source() if fmt == "csv" else fixed_width_file_source())
    from_file = [parse_gl_line(item, i) for i, item in enumerate(GlFile(path, cfg).items(), 1)]
    from_api = [parse_gl_line(item, i) for i, item in enumerate(run.items(0, len(run)), 1)]
    assert from_file == from_api


def test_a_utf8_bom_crlf_and_quoted_thousands_are_read(tmp_path):
    text = "\ufeff" + HEADER.replace("\n", "\r\n") + 'R1,C1,BW,2026-11-13,5000,"1,234.50",,110\r\n'
    [row] = items(write(tmp_path, text), source(thousands_separator=","))
    assert (row["runId"], row["debitAmt"]) == ("R1", Decimal("1234.50"))


@pytest.mark.parametrize(("written", "amount"), [
    ("-12.50", Decimal("-12.50")), ("12.50-", Decimal("-12.50")), ("(12.50)", Decimal("-12.50")),
    ("+7", Decimal("7.00")), (".5", Decimal("0.50")), ("0012.5", Decimal("12.50")),
])
def test_negative_and_sparse_amount_forms(tmp_path, written, amount):
    [row] = items(write(tmp_path, HEADER + f"R1,C1,BW,2026-11-13,5000,{written},,\n"))
    assert row["debitAmt"] == amount
    assert isinstance(row["debitAmt"], Decimal)


def test_decimal_comma_with_dot_thousands_in_a_semicolon_file(tmp_path):
    text = HEADER.replace(",", ";") + "R1;C1;BW;13.11.2026;5000;1.234,50;;\n"
    cfg = source(delimiter=";", decimal_separator=",", thousands_separator=".", date_format="%d.%m.%Y")
    [row] = items(write(tmp_path, text), cfg)
    assert (row["debitAmt"], row["periodEndDate"]) == (Decimal("1234.50"), "2026-11-13")


def test_one_signed_amount_column_puts_negatives_on_the_credit_side(tmp_path):
    text = "Run,Company,Pay Group,Period End,Account,Amount\nR1,C1,BW,2026-11-13,5000,10.00\n" \
           "R1,C1,BW,2026-11-13,2100,-10.00\n"
    columns = {k: v for k, v in COLUMNS.items() if k not in ("debit", "credit", "org_level1")} | {"amount": "Amount"}
    rows = items(write(tmp_path, text), source(amounts="signed", columns=columns))
    assert [(r["debitAmt"], r["creditAmt"]) for r in rows] == [(Decimal("10.00"), Decimal("0.00")),
                                                               (Decimal("0.00"), Decimal("10.00"))]


def test_columns_by_position_without_a_header(tmp_path):
    columns = {"run_id": 1, "company": 2, "pay_group": 3, "period_end": 4, "account": 5, "debit": 6, "credit": 7}
    [row] = items(write(tmp_path, "R1,C1,BW,2026-11-13,5000,5.00,\n"), source(header=False, columns=columns))
    assert (row["generalLedgerAccount"], row["debitAmt"]) == ("5000", Decimal("5.00"))


def test_constants_fill_what_the_file_lacks(tmp_path):
    columns = {k: v for k, v in COLUMNS.items() if k not in ("company", "pay_group")}
    text = "Run,Period End,Account,Debit Amt,Credit Amt,CC\nR1,2026-11-13,5000,1.00,,\n"
    [row] = items(write(tmp_path, text), source(columns=columns, constants={"company": "C9", "pay_group": "WK"}))
    assert (row["coId"], row["payGroup"]) == ("C9", "WK")


def test_fixed_width_with_implied_decimals_indicator_header_and_trailer(tmp_path):
    text = "HEADER 2026-11-14 10:32\nR1   2026111350000000012345D\nR1   2026111321000000012345C\nT0000000002\n"
    cfg = FileSourceConfig.model_validate({
        "format": "fixed_width", "header": True, "footer_lines": 1, "date_format": "%Y%m%d", "amounts": "indicator",
        "implied_decimals": 2, "constants": {"company": "C1", "pay_group": "BW"},
        "columns": {"run_id": {"start": 1, "length": 5}, "period_end": {"start": 6, "length": 8},
                    "account": {"start": 14, "length": 4}, "amount": {"start": 18, "length": 10},
                    "dc_indicator": {"start": 28, "length": 1}}})
    rows = items(write(tmp_path, text, "gl.txt"), cfg)
    assert [(r["generalLedgerAccount"], r["debitAmt"], r["creditAmt"]) for r in rows] == [
        ("5000", Decimal("123.45"), Decimal("0.00")), ("2100", Decimal("0.00"), Decimal("123.45"))]


# ---------------------------------------------------------------------- the run id of a file without one


NO_RUN = {k: v for k, v in COLUMNS.items() if k != "run_id"}


def test_a_file_without_run_ids_gets_one_from_its_content_not_its_name(tmp_path):
    a = GlFile(write(tmp_path, GOOD, "a.csv"), source(columns=NO_RUN))
    b = GlFile(write(tmp_path, GOOD.replace("\n", "\r\n"), "renamed.csv"), source(columns=NO_RUN))
    c = GlFile(write(tmp_path, GOOD.replace("100.00", "100.01"), "c.csv"), source(columns=NO_RUN))
    for file in (a, b, c):
        file.check()
    assert a.run_id == b.run_id != c.run_id
    assert a.run_id is not None and a.run_id.startswith("file-")
    assert {item["runId"] for item in a.items()} == {a.run_id}


def test_lines_skipped_before_the_header_do_not_change_the_run_id(tmp_path):
    first = GlFile(write(tmp_path, "exported 2026-11-14 10:32\n" + GOOD, "a.csv"), source(columns=NO_RUN, skip_lines=1))
    again = GlFile(write(tmp_path, "exported 2026-11-15 08:01\n" + GOOD, "b.csv"), source(columns=NO_RUN, skip_lines=1))
    first.check()
    again.check()
    assert first.run_id == again.run_id


def test_a_file_that_changes_between_the_two_readings_is_refused(tmp_path):
    path = write(tmp_path, GOOD)
    file = GlFile(path, source())
    file.check()
    path.write_text(GOOD.replace("100.00", "100.10"), encoding="utf-8")
    with pytest.raises(DataError, match="gl.csv changed while it was being read"):
        list(file.items())


def test_reading_streams_the_file_instead_of_holding_it(tmp_path):
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8") as handle:
        handle.write(HEADER)
        for i in range(8000):
            handle.write(f"R1,C1,BW,2026-11-13,{5000 + i % 7},{i % 997}.25,,CC{i % 13}\n")
    assert path.stat().st_size > 290_000
    file = GlFile(path, source())
    tracemalloc.start()
    try:
        file.check()
        count = sum(1 for _ in file.items())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 8000
    assert peak < 100_000, peak  # a third of the file: rows are read one at a time


# ---------------------------------------------------------------------- every error names file, line, column


@pytest.mark.parametrize(("row", "message"), [
    ("R1,C1,BW,2026-11-13,5000,\"12,3x\",,", "gl.csv: line 2, column debit ('Debit Amt'): '12,3x' is not an amount"),
    ("R1,C1,BW,13/11/2026,5000,1.00,,", "gl.csv: line 2, column period_end ('Period End'): '13/11/2026' is not a "
                                        "date in the format %Y-%m-%d"),
    ("R1,C1,BW,2026-11-13,,1.00,,", "gl.csv: line 2, column account ('Account'): is empty"),
    (",C1,BW,2026-11-13,5000,1.00,,", "gl.csv: line 2, column run_id ('Run'): is empty"),
    ("R1,C1,BW,2026-11-13,5000,,,", "gl.csv: line 2, column debit ('Debit Amt') and column credit ('Credit Amt'): "
                                    "both empty"),
    ("R1,C1,BW,2026-11-13,5000,1.005,,", "gl.csv: line 2, column debit ('Debit Amt'): '1.005': 1.005 has more than 2 "
                                         "decimal places"),
    ("R1,C1,BW,2026-11-13,5000,1e9,,", "column debit ('Debit Amt'): '1e9' is not an amount"),
    ("R1,C1,BW,2026-11-13,5000,$5.00,,", "column debit ('Debit Amt'): '$5.00' is not an amount"),
    ("R1,C1,BW,2026-11-13,5000", "gl.csv: line 2, column debit ('Debit Amt'): missing (the row has 5 fields)"),
])
def test_a_bad_value_is_named_by_file_line_column_and_value(tmp_path, row, message):
    assert message in refusal(write(tmp_path, HEADER + row + "\n"))


def test_bytes_the_encoding_cannot_read_are_named_by_line_and_column(tmp_path):
    path = write(tmp_path, HEADER.encode() + b"R1,C1,BW,2026-11-13,5000,1.00,,Caf\xe9\n")
    assert "line 2, column org_level1 ('CC'): bytes that are not utf-8 (set file_source.encoding)" in refusal(path)
    [row] = items(path, source(encoding="cp1252"))
    assert row["orgLevel1"] == "Café"


def test_a_wrong_indicator_is_named(tmp_path):
    cfg = FileSourceConfig.model_validate({
        "format": "fixed_width", "header": False, "amounts": "indicator", "date_format": "%Y%m%d",
        "constants": {"company": "C1", "pay_group": "BW"},
        "columns": {"run_id": {"start": 1, "length": 2}, "period_end": {"start": 3, "length": 8},
                    "account": {"start": 11, "length": 4}, "amount": {"start": 15, "length": 6},
                    "dc_indicator": {"start": 21, "length": 1}}})
    message = refusal(write(tmp_path, "R1202611135000010.00X\n", "gl.txt"), cfg)
    assert message.endswith("/gl.txt: line 1, column dc_indicator (positions 21-21): 'X' is neither a debit (D, DR) "
                            "nor a credit (C, CR) indicator (nothing from the file was posted; correct the rows (or "
                            "file_source: in the config) and run again)")


def test_many_bad_rows_are_counted_and_the_first_five_listed(tmp_path):
    rows = "".join(f"R1,C1,BW,2026-11-13,5000,x{i},,\n" for i in range(8))
    message = refusal(write(tmp_path, HEADER + rows + "R1,C1,BW,2026-11-13,5000,1.00,,\n"))
    assert "/gl.csv: 8 bad rows, the first 5 listed: line 2, column debit" in message
    assert "line 6," in message and "line 7," not in message
    assert "nothing from the file was posted" in message


def test_a_header_without_a_configured_column_is_refused_naming_what_it_has(tmp_path):
    message = refusal(write(tmp_path, HEADER.replace("Debit Amt", "Debit") + "R1,C1,BW,2026-11-13,5000,1,,\n"))
    assert "gl.csv: line 1: the header has no column 'Debit Amt' (file_source.columns.debit); it has: 'Run'" in message


def test_a_header_naming_a_column_twice_is_refused(tmp_path):
    message = refusal(write(tmp_path, HEADER.replace("CC", "Account") + "R1,C1,BW,2026-11-13,5000,1,,\n"))
    assert "the header has more than one column 'Account'" in message


def test_broken_csv_quoting_is_named_by_line(tmp_path):
    message = refusal(write(tmp_path, HEADER + 'R1,C1,BW,2026-11-13,5000,"1.00"x,,\n'))
    assert "/gl.csv: line 2: not valid CSV (',' expected after '\"')" in message


def test_a_file_without_rows_is_refused(tmp_path):
    assert "gl.csv: the file holds no GL rows" in refusal(write(tmp_path, HEADER))


def test_a_missing_file_or_a_folder_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="nope.csv: file not found"):
        GlFile(tmp_path / "nope.csv", source()).check()
    with pytest.raises(UsageError, match="is a folder"):
        GlFile(tmp_path, source()).check()


# ---------------------------------------------------------------------- file_source: in the config


BASE = (ROOT / "config.example.yaml").read_text()


def config_with(tmp_path: Path, file_source: dict[str, Any]) -> str:
    data = yaml.safe_load(BASE)
    data.pop("file_source", None)
    text = yaml.safe_dump(data, sort_keys=False) + yaml.safe_dump({"file_source": file_source}, sort_keys=False)
    with pytest.raises(ConfigError) as caught:
        parse_config(text, tmp_path / "c.yaml")
    return str(caught.value)


@pytest.mark.parametrize(("change", "message"), [
    ({"columns": {"account": "A", "debit": "D", "credit": "C", "pay_group": "P", "company": "X"}},
     "file_source: columns.period_end is required"),
    ({"amounts": "signed"}, "columns.amount is required with amounts: signed"),
    ({"constants": {"company": "C1"}}, "give columns.company or constants.company"),
    ({"format": "fixed_width"}, "columns.run_id: a fixed-width field is {start: N, length: N}"),
    ({"header": False}, "columns.run_id: 'Run' is a header name but header is false"),
    ({"encoding": "klingon"}, "'klingon' is not an encoding"),
    ({"date_format": "%m/%Y"}, "does not read a whole date back"),
    ({"decimal_separator": ",", "thousands_separator": ","}, "decimal_separator and thousands_separator are the same"),
    ({"typo": 1}, "file_source.typo: unknown key"),
])
def test_a_wrong_file_source_is_named_with_key_path_and_line(tmp_path, change, message):
    file_source: dict[str, Any] = {"columns": {**COLUMNS}}
    file_source.update(change)
    text = config_with(tmp_path, file_source)
    assert message in text
    assert "c.yaml: line " in text


def test_the_example_config_documents_both_sandbox_layouts():
    example = yaml.safe_load(BASE)
    assert FileSourceConfig.model_validate(example["file_source"]) == FileSourceConfig.model_validate(csv_file_source())
    lines = BASE.splitlines()
    start = lines.index("# file_source:   # the fixed-width layout of `ukg2d365 sandbox --export-gl RUN --gl-format "
                        "fixed_width`")
    block = []
    for line in lines[start + 1:]:
        if not line.startswith("#   "):
            break
        block.append(line[1:])
    fixed = FileSourceConfig.model_validate(yaml.safe_load("\n".join(block)))
    assert fixed == FileSourceConfig.model_validate(fixed_width_file_source())


# ---------------------------------------------------------------------- the CLI's usage errors


def test_from_file_with_due_is_a_usage_error_of_one_line(tmp_path):
    result = CliRunner().invoke(app, ["-c", str(tmp_path / "none.yaml"), "post-payroll", "--due", "--from-file",
                                      str(tmp_path / "gl.csv")])
    assert result.exit_code == ExitStatus.USAGE
    assert result.output.strip().splitlines() == [
        "error: --from-file cannot be combined with --due (--due asks UKG which periods closed; a file holds what it "
        "holds)"]


def test_the_sandbox_exports_a_run_for_the_file_route(tmp_path):
    run = UkgDataset(12).gl_runs[-1]
    target = tmp_path / "gl.csv"
    result = CliRunner().invoke(app, ["sandbox", "--employees", "12", "--export-gl", run.run_id, "--to", str(target)])
    assert result.exit_code == 0, result.output
    assert f"wrote GL run {run.run_id} ({len(run)} lines)" in result.output
    assert len(items(target, FileSourceConfig.model_validate(csv_file_source()))) == len(run)
    unknown = CliRunner().invoke(app, ["sandbox", "--employees", "12", "--export-gl", "NOPE", "--to", str(target)])
    assert unknown.exit_code == ExitStatus.USAGE
    assert "error: --export-gl NOPE: the sandbox has no such GL run (it has GL" in unknown.output
