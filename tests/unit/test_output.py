"""Output habits: one export mechanism (Rows -> table, CSV, one JSON document), timestamps, help, completion."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pytest
from rich.console import Console
from typer.testing import CliRunner

from ukg2d365.cli import app
from ukg2d365.errors import UsageError
from ukg2d365.render import Column, Output, Rows

COMMANDS = ["ping", "post-payroll", "replay", "accrue-payroll", "status", "audit", "sandbox", "sync-dimensions",
            "sync-employees", "reconcile", "report", "init", "worker", "credentials", "webhook", "credentials set",
            "credentials status", "credentials delete", "webhook serve"]


def _rows() -> Rows:
    rows = Rows("lines", "Lines", [Column("account", "Account"), Column("debit", "Debit", "money"),
                                   Column("count", "Lines", "count")])
    rows.add(account="601500--110--PROD-", debit=Decimal("1234.50"), count=3)
    rows.add(account="211000-----", debit=Decimal("0.00"), count=1)
    return rows


def test_csv_export_has_a_header_row_and_plain_decimals(capsys: pytest.CaptureFixture[str]) -> None:
    out = Output()
    out.use_format("csv")
    out.export(_rows())
    out.say("for people: on stderr while exporting")
    out.close()
    captured = capsys.readouterr()
    records = list(csv.DictReader(io.StringIO(captured.out)))
    assert records == [{"account": "601500--110--PROD-", "debit": "1234.50", "count": "3"},
                       {"account": "211000-----", "debit": "0.00", "count": "1"}]
    assert "for people" in captured.err and "for people" not in captured.out


def test_json_export_is_one_document_with_the_facts_and_the_rows(capsys: pytest.CaptureFixture[str]) -> None:
    out = Output()
    out.use_format("json")
    out.export(_rows(), command="x", dry_run=True)
    out.summary("done", lines=2)
    out.close()
    [line] = capsys.readouterr().out.splitlines()  # one document, on one line
    document = json.loads(line)
    assert document["command"] == "x" and document["dry_run"] is True
    assert document["lines"][0] == {"account": "601500--110--PROD-", "debit": "1234.50", "count": 3}
    assert document["summary"] == {"message": "done", "lines": 2}


def test_table_shows_amounts_with_separators_and_says_how_many_more(capsys: pytest.CaptureFixture[str]) -> None:
    out = Output()
    out.table(_rows().table(limit=1, more="--all shows them"))
    text = capsys.readouterr().out
    assert "1,234.50" in text and "... 1 more (--all shows them)" in text


def test_a_narrow_table_folds_text_but_never_cuts_an_amount_or_a_count() -> None:
    rows = Rows("postings", "Recent postings", [Column("key", "Key"), Column("marker", "Marker"),
                                                Column("debit", "Debit", "money"), Column("credit", "Credit", "money"),
                                                Column("lines", "Lines", "count")])
    rows.add(key="C0MP1/BW/2026-11-27/GL20261127BW01", marker="U2D-KAGD2XGS4MXI", debit=Decimal("2174364.68"),
             credit=Decimal("2174364.68"), lines=1234567)
    out = Output()
    out.out = Console(width=60, file=io.StringIO(), highlight=False, color_system=None)
    out.table(rows.table())
    text = out.out.file.getvalue()
    assert text.count("2,174,364.68") == 2 and "1234567" in text
    assert max(len(line) for line in text.splitlines()) <= 60


def test_every_json_event_carries_its_time(capsys: pytest.CaptureFixture[str]) -> None:
    out = Output(json_mode=True)
    out.event("plan", key="K", amount=Decimal("1.10"))
    out.summary("ok")
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events] == ["plan", "summary"]
    assert all(e["at"].endswith("+00:00") and "T" in e["at"] for e in events)
    assert events[0]["amount"] == "1.10"


def test_json_and_csv_together_are_a_usage_error() -> None:
    with pytest.raises(UsageError, match="both ask for stdout"):
        Output(json_mode=True).use_format("csv")
    with pytest.raises(UsageError, match="use table, csv or json"):
        Output().use_format("xml")


def test_an_error_appears_once_and_the_export_is_not_written() -> None:
    result = CliRunner().invoke(app, ["--json", "--ledger", "/nonexistent/ledger.db", "audit", "--format", "json"])
    assert result.exit_code == 2
    assert result.stdout == ""  # no half document
    [line] = result.stderr.splitlines()
    record = json.loads(line)
    assert record["level"] == "error" and "no ledger at" in record["message"] and record["exit_code"] == 2


def test_dash_h_is_help_for_the_app_and_every_command() -> None:
    runner = CliRunner()
    assert "Commands:" in runner.invoke(app, ["-h"]).output
    for name in COMMANDS:
        result = runner.invoke(app, [*name.split(), "-h"], terminal_width=200)
        assert result.exit_code == 0 and "Usage:" in result.output, name


@pytest.mark.parametrize("name", COMMANDS)
def test_every_help_has_examples(name: str) -> None:
    result = CliRunner().invoke(app, [*name.split(), "--help"], terminal_width=200)
    assert "Examples:" in result.output
    examples = result.output.split("Examples:")[1]
    assert f"ukg2d365 {name}" in examples or f"ukg2d365 --json {name}" in examples


def test_the_app_help_has_examples() -> None:
    result = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert "Examples:" in result.output and "ukg2d365 post-payroll --due --dry-run" in result.output


def test_shell_completion_is_on() -> None:
    result = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert "--install-completion" in result.output and "--show-completion" in result.output


def _plan(lines: int):  # type: ignore[no-untyped-def]
    """One balanced journal of ``lines`` planned lines (not summarized): past 5,000 they spill to a temporary file."""
    from tests.helpers import gl, make_config
    from ukg2d365.flows.post_payroll import PayrollPlan
    from ukg2d365.journal import build_journals
    from ukg2d365.ukg.records import parse_gl_line

    items = [gl("5000", Decimal("1.10"), cc="110", system_id=i) for i in range(1, lines)]
    items.append(gl("2100", 0, Decimal("1.10") * (lines - 1), system_id=lines))
    journals = build_journals([parse_gl_line(x, i) for i, x in enumerate(items)], make_config(summarize=False))
    return PayrollPlan(to_post=journals)


def test_post_payroll_holds_no_record_per_line_and_exports_every_line_as_it_is_read(
        capsys: pytest.CaptureFixture[str]) -> None:
    from ukg2d365.render.payroll import payroll_export

    plan = _plan(3)
    for fmt in ("table", "csv", "json"):  # without --format a million-line journal is not held as rows either
        out = Output()
        out.use_format(fmt)
        payroll_export(out, plan, dry_run=True)
        assert out.wants_export == (fmt != "table") and len(out._export or []) == 0  # no line held as a record
        out.close()
        written = capsys.readouterr().out
        if fmt == "csv":
            assert [(r["line"], r["account"], r["status"]) for r in csv.DictReader(io.StringIO(written))] == \
                [("1", "601500-CC110-", "would post"), ("2", "601500-CC110-", "would post"),
                 ("3", "211000--", "would post")]
        elif fmt == "json":
            assert [line["debit"] for line in json.loads(written)["lines"]] == ["1.10", "1.10", "0.00"]
    quiet_json = Output(json_mode=True)  # --json events, no export
    payroll_export(quiet_json, plan, dry_run=True)
    assert not quiet_json.wants_export and len(quiet_json._export or []) == 0


def _peak(work) -> int:  # type: ignore[no-untyped-def]
    """The most memory ``work()`` allocated at once, in bytes."""
    import tracemalloc

    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_large_journals_export_takes_no_more_memory_than_reading_its_lines_once(fmt: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """20,000 lines, spilled to disk: the export is written as the lines are read back, never held as a record
    per line (~1.1 kB each) nor as its text; it took 22 MB for the CSV and 55 MB for the JSON, against 4 MB to
    read the lines."""
    from ukg2d365.render.payroll import payroll_export

    plan = _plan(20_000)
    target = tmp_path / f"lines.{fmt}"
    out = Output()
    out.use_format(fmt, destination=target)

    def export() -> None:
        payroll_export(out, plan, dry_run=True)
        out.close()

    reading = _peak(lambda: sum(1 for _ in plan.to_post[0].lines))
    exporting = _peak(export)
    assert exporting < reading + 1_000_000, (reading, exporting)
    if fmt == "csv":
        assert sum(1 for _ in target.open(encoding="utf-8")) == 20_001
    else:
        assert len(json.loads(target.read_text(encoding="utf-8"))["lines"]) == 20_000


@pytest.mark.parametrize("count", [0, 1, 1023, 1024, 1025, 2048])
def test_the_streamed_json_document_is_json_dumps_of_the_whole_document_to_the_byte(count: int) -> None:
    from datetime import date

    from ukg2d365.render import jsonable, write_json

    document = {"command": "post-payroll", "dry_run": True, "when": date(2026, 11, 13), "none": None,
                "journals": [{"debit": Decimal("1234.50"), "text": "Zürich \"payroll\""}], "summary": {"n": 1}}
    items = [{"line": i, "debit": str(Decimal(i) / 100), "text": "Lohn für Zürich"} for i in range(count)]
    for name, records in (("lines", items), (None, [])):
        stream = io.StringIO()
        write_json(stream, document, name, iter(records))
        whole = {**document, name: records} if name else document
        assert stream.getvalue() == json.dumps(jsonable(whole)) + "\n"
