"""status for people: the runs and postings tables read on an 80-column terminal, amounts and journals whole."""

from __future__ import annotations

import io
import json
from decimal import Decimal

from rich.console import Console

from ukg2d365.flows.history import StatusReport
from ukg2d365.ledger.postings import Posting
from ukg2d365.render import Output
from ukg2d365.render import ledger as render

KEYS = {"USMF": "C0MP1/BW/2026-11-27/GL20261127BW01", "USPM": "C0MP1/BW/2026-11-27/GL20261127BW01/@USPM",
        "USPI": "C0MP2/BW/2026-11-27/GL20261127BW01"}


def _posting(entity: str, number: str, total: str) -> Posting:
    return Posting(KEYS[entity], "C0MP1", "BW", "2026-11-27", "GL20261127BW01", None, "U2D-KAGD2XGS4MXI", "", "posted",
                   number, "h", "s", 4740, 103, Decimal(total), Decimal(total), "2026-11-27", 1, None,
                   "2026-12-06T22:44:08", "2026-12-06T22:44:09", "2026-12-06T22:44:09", 3, legal_entity=entity)


def _report() -> StatusReport:
    summary = {"already_posted": 0, "d365_concurrency": 1, "d365_requests": 17, "failed": 0, "lines": 206,
               "post_seconds": 0.056, "posted": 3, "read_seconds": 0.788, "refused": 0, "to_post": 3}
    verdicts = {"exit_code": 0, "runs": 3, "verdicts": {"amount differs": 0, "match": 3, "missing in D365": 0}}
    runs = [{"id": 4, "command": "reconcile", "started_at": "2026-12-06T22:44:10.1+00:00", "user": "finance",
             "host": "close-laptop", "exit_code": 0, "summary": json.dumps(verdicts)},
            {"id": 3, "command": "post-payroll", "started_at": "2026-12-06T22:44:08.1+00:00", "user": "ukg2d365",
             "host": "batch-host-01.example.com", "exit_code": 0, "summary": json.dumps(summary)}]
    postings = [_posting("USMF", "USMF-000001", "1536045.17"), _posting("USPM", "USPM-000001", "268195.23"),
                _posting("USPI", "USPI-000001", "1638319.51")]
    return StatusReport({"posted": 3, "sending": 0, "planned": 0, "failed": 0}, runs, [], [], postings,
                        is_posted={"USMF-000001": False, "USPM-000001": False, "USPI-000001": True})


def _status_at(width: int) -> str:
    out = Output()
    out.out = Console(width=width, file=io.StringIO(), highlight=False, color_system=None)
    render.status(out, _report())
    file = out.out.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def test_status_fits_80_columns_with_every_journal_number_amount_and_state_whole():
    text = _status_at(80)
    assert max(map(len, text.splitlines())) <= 80
    for number, total in (("USMF-000001", "1,536,045.17"), ("USPM-000001", "268,195.23"),
                          ("USPI-000001", "1,638,319.51")):
        (row,) = [line for line in text.splitlines() if number in line]
        assert total in row and "posted" in row  # one line holds the journal, its total and its states
    assert "USPM" in text and "USPI" in text


def test_a_runs_summary_says_what_happened_not_every_internal_counter():
    text = " ".join(_status_at(80).split())
    assert "posted 3" in text and "lines 206" in text and "match 3" in text
    for internal in ("d365_concurrency", "post_seconds", "read_seconds", "d365_requests", "'amount differs'",
                     "already_posted 0"):
        assert internal not in text


def test_a_wide_terminal_keeps_every_column_of_the_postings_table():
    text = _status_at(160)
    header = next(line for line in text.splitlines() if "IsPosted" in line)
    for title in ("Key", "Entity", "Ledger", "Journal", "Lines", "Debit", "Credit", "Updated (UTC)"):
        assert title in header
    assert any(KEYS["USPM"] in line for line in text.splitlines())  # a key is never folded when there is room


def test_status_json_gives_each_runs_summary_and_arguments_as_objects(capsys) -> None:
    report = _report()
    report.runs[1]["args"] = json.dumps({"due": True, "run_id": None})
    render.status(Output(json_mode=True), report)
    (event,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    reconcile, posting = event["runs"]
    assert reconcile["summary"]["verdicts"]["match"] == 3 and posting["summary"]["posted"] == 3
    assert posting["args"] == {"due": True, "run_id": None}  # not a JSON text inside the JSON


def test_audit_without_a_key_lists_postings_readably_at_80_columns() -> None:
    out = Output()
    out.out = Console(width=80, file=io.StringIO(), highlight=False, color_system=None)
    render.recent_postings(out, _report().recent)
    text = out.out.file.getvalue()
    assert max(map(len, text.splitlines())) <= 80
    for number, total in (("USMF-000001", "1,536,045.17"), ("USPI-000001", "1,638,319.51")):
        (row,) = [line for line in text.splitlines() if number in line]
        assert total in row and "posted" in row


def test_a_tenants_last_failure_is_one_line_cut_at_a_word_and_never_shows_a_credential(tmp_path) -> None:
    from typer.testing import CliRunner

    from tests.helpers import CONFIG_YAML
    from ukg2d365.cli import app
    from ukg2d365.ledger import Ledger

    folder = tmp_path / "tenants"
    folder.mkdir()
    (folder / "acme.yaml").write_text(CONFIG_YAML.format(summarize="true") + "ledger: {path: acme.db, tenant: acme}\n",
                                      encoding="utf-8")
    ledger = Ledger(folder / "acme.db", "acme")
    ledger.start_run("post-payroll --due", {})
    ledger.finish_run(70, {"error": "internal error (this is a bug): ConnectionError: https://svc:hunter2@proxy."
                                    "example.com/token (Bearer eyJhbGciOi.eyJzdWIiOi.c2ln)\n  retried with\n"
                                    + "word " * 60})
    ledger.start_run("post-payroll --due", {})  # a later success: the failure is still the one shown
    ledger.finish_run(0, {"posted": 1})
    ledger.close()
    result = CliRunner().invoke(app, ["status", "--tenants", str(folder)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    [line] = [ln for ln in result.output.splitlines() if ln.startswith("last failure")]
    assert "hunter2" not in line and "eyJ" not in line and "[redacted" in line
    assert line.startswith("last failure acme: post-payroll --due exit 70 at ") and line.endswith(" word…")
    assert len(line.split(" on ", 1)[1].split(": ", 1)[1]) <= render.FAILURE_WIDTH
