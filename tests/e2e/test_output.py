"""What a finance user sees: an exportable preview, questions on stderr, quiet success, unwrapped pipes."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections import Counter
from decimal import Decimal

import pytest

from ukg2d365.cli import app
from ukg2d365.sandbox.faults import FaultRule

pytestmark = pytest.mark.e2e
CLI_APP = sys.modules["ukg2d365.cli.app"]  # the module (the package's `app` attribute is the Typer app)


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.sandbox(employees=600)
def test_a_198_account_dry_run_exported_as_csv_has_198_rows_equal_to_the_journal_later_posted(world):
    run = world.latest_run()
    preview = world.cli("post-payroll", "--run-id", run.run_id, "--dry-run", "--format", "csv")
    rows = _csv(preview.stdout)
    assert len(rows) == 198 and len({r["account"] for r in rows}) == 198
    assert {r["status"] for r in rows} == {"would post"}
    assert world.journals() == []  # a dry run writes nothing

    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    [journal] = world.journals()
    assert len(journal["lines"]) == 198
    planned = Counter((r["account"], Decimal(r["debit"]), Decimal(r["credit"]), r["text"]) for r in rows)
    held = Counter((ln["AccountDisplayValue"], Decimal(str(ln["DebitAmount"])), Decimal(str(ln["CreditAmount"])),
                    ln["Text"]) for ln in journal["lines"])
    assert planned == held
    assert sum(Decimal(r["debit"]) for r in rows) == Decimal(str(journal["JournalTotalDebit"]))
    assert sum(Decimal(r["credit"]) for r in rows) == Decimal(str(journal["JournalTotalCredit"]))
    # the header facts the preview showed are what D365 holds
    facts = {(r["legal_entity"].lower(), r["journal_name"], r["trans_date"], r["currency"], r["description"])
             for r in rows}
    assert facts == {(journal["dataAreaId"], journal["JournalName"], journal["lines"][0]["TransDate"][:10],
                      journal["lines"][0]["CurrencyCode"], journal["Description"])}
    assert all("," not in r["debit"] for r in rows)  # plain decimals, no thousands separators


def test_the_preview_shows_each_journals_header_facts(world):
    run = world.latest_run()
    text = world.cli("post-payroll", "--run-id", run.run_id, "--dry-run").stdout
    for label, value in (("Legal entity", "USMF"), ("Journal name", "GenJrn"), ("TransDate", str(run.period_end)),
                         ("Currency", "USD"), ("Route", "OData $batch"),
                         ("Line text", f"Payroll BW {run.period_end}")):
        assert any(label in line and value in line for line in text.splitlines()), (label, text)
    document = json.loads(world.cli("post-payroll", "--run-id", run.run_id, "--dry-run", "--format", "json").stdout)
    [journal] = document["journals"]
    assert (journal["legal_entity"], journal["journal_name"], journal["trans_date"], journal["currency"],
            journal["route"]) == ("USMF", "GenJrn", str(run.period_end), "USD", "OData $batch")
    assert len(document["lines"]) == journal["lines"] and document["summary"]["message"].startswith("dry run")


def test_all_shows_every_account_where_the_preview_stops_at_40(world):
    run = world.latest_run()
    short = world.cli("post-payroll", "--run-id", run.run_id, "--dry-run").stdout
    everything = world.cli("post-payroll", "--run-id", run.run_id, "--dry-run", "--all").stdout
    accounts = {r["account"] for r in _csv(world.cli("post-payroll", "--run-id", run.run_id, "--dry-run",
                                                     "--format", "csv").stdout)}
    assert len(accounts) > 40
    assert "more accounts" in short and "--all shows every one" in short
    assert "more accounts" not in everything and all(a in everything for a in accounts)


def test_the_question_goes_to_stderr_so_a_redirected_preview_never_looks_hung(world, monkeypatch):
    monkeypatch.setattr(CLI_APP, "stdin_is_terminal", lambda: True)
    run = world.latest_run()
    result = world.runner.invoke(app, ["-c", str(world.config_path), "post-payroll", "--run-id", run.run_id],
                                 input="n\n")
    assert result.exit_code == 0, result.output
    assert "Create 1 journal(s)" in result.stderr and "left unposted" in result.stderr
    assert "Create 1 journal(s)" not in result.stdout
    assert "Legal entity" in result.stdout  # the confirmation shows the header facts first
    assert "nothing posted (not confirmed)" in result.stdout
    assert world.journals() == []


def test_syncs_and_replay_ask_on_a_terminal_never_when_not_interactive_and_not_with_yes(world, monkeypatch):
    ds = world.sandbox.dataset
    ds.add_org_level(1, "777", "New cost center")
    terminal = {"on": True}
    monkeypatch.setattr(CLI_APP, "stdin_is_terminal", lambda: terminal["on"])
    base = ["-c", str(world.config_path)]

    declined = world.runner.invoke(app, [*base, "sync-dimensions"], input="n\n")
    assert "Create 1 dimension value(s) (CostCenter) in D365?" in declined.stderr
    assert "nothing created (not confirmed)" in declined.stdout
    assert "777" not in dimension_values(world)
    assert world.runner.invoke(app, [*base, "sync-dimensions", "--yes"]).exit_code == 0
    assert "777" in dimension_values(world)

    declined = world.runner.invoke(app, [*base, "sync-employees"], input="n\n")
    assert "Send " in declined.stderr and "change(s) to D365" in declined.stderr
    assert "nothing sent (not confirmed)" in declined.stdout

    run = world.latest_run()
    _fail_posting(world, run)
    world.sandbox.faults.clear()
    declined = world.runner.invoke(app, [*base, "replay", "--failed"], input="n\n")
    assert "Replay 1 posting(s)" in declined.stderr and "nothing replayed (not confirmed)" in declined.stdout

    terminal["on"] = False  # cron: no terminal, no question, the work is done
    replayed = world.runner.invoke(app, [*base, "replay", "--failed"])
    assert replayed.exit_code == 0 and "Replay" not in replayed.stderr
    assert len(world.journals()) == 1


def test_quiet_is_silent_on_success(world):
    run = world.latest_run()
    result = world.runner.invoke(app, ["-c", str(world.config_path), "-q", "post-payroll", "--run-id",
                                          run.run_id, "--yes"])
    assert result.exit_code == 0
    assert result.stdout == "" and result.stderr == ""
    assert len(world.journals()) == 1


def test_piped_output_is_not_wrapped_at_80_columns(world, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    run = world.latest_run()
    result = world.cli("post-payroll", "--run-id", run.run_id, "--dry-run")
    summary = [line for line in result.stdout.splitlines() if line.startswith("dry run: would post 1 journal(s)")]
    assert summary and len(summary[0]) > 80 and summary[0].endswith("UKG lines read")


def dimension_values(world) -> set[str]:
    return {str(row["DimensionValue"]) for row in world.d365.entities("FinancialDimensionValues")}


def test_status_shows_d365_is_posted_of_the_recent_journals_with_one_read(world):
    run = world.latest_run()
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    [journal] = world.journals()
    number = journal["JournalBatchNumber"]
    reads = world.d365.request_count["LedgerJournalHeaders"]
    before = _status_row(world, number)
    assert world.d365.request_count["LedgerJournalHeaders"] == reads + 1  # one cheap read
    assert before["IsPosted"] == "No"
    assert "not posted yet (IsPosted No)" in world.outputs[-1]
    world.d365.post_journal(number)  # finance posts it, by hand or by the batch job
    assert _status_row(world, number)["IsPosted"] == "Yes"
    [event] = world.json_events("status")
    assert [p["in_d365"] for p in event["recent"]] == ["Yes"] and event["is_posted_unknown"] is None


def test_status_still_works_when_d365_cannot_be_asked_and_says_is_posted_is_unknown(world, monkeypatch, tmp_path):
    run = world.latest_run()
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    [journal] = world.journals()
    number = journal["JournalBatchNumber"]
    world.sandbox.faults.add(FaultRule("d365", "status", method="GET", path_regex="LedgerJournalHeaders",
                                       status=503, count=None))
    assert _status_row(world, number)["IsPosted"] == "unknown"
    assert "IsPosted in D365 unknown: " in world.outputs[-1] and "503" in world.outputs[-1]
    world.sandbox.faults.clear()
    monkeypatch.delenv("UKG2D365_D365_CLIENT_SECRET")  # no credentials for D365 anywhere
    monkeypatch.setenv("UKG2D365_CREDENTIALS_BACKEND", "file")
    monkeypatch.setenv("UKG2D365_CREDENTIALS_FILE", str(tmp_path / "none.enc"))
    assert _status_row(world, number)["IsPosted"] == "unknown"
    ledger = world.config_path.parent / "ukg2d365.db"
    result = world.runner.invoke(app, ["--ledger", str(ledger), "-c", str(tmp_path / "none.yaml"), "status"],
                                 terminal_width=200)
    assert result.exit_code == 0 and "IsPosted in D365 unknown: no config" in result.stdout


def _status_row(world, number: str) -> dict[str, str]:
    """The postings table's row of journal ``number``, by column title."""
    text = world.cli("status").stdout
    lines = [line for line in text.splitlines() if line.startswith("┃") or line.startswith("│")]
    header = next(line for line in lines if "IsPosted" in line)
    titles = [cell.strip() for cell in header.strip("┃").split("┃")]
    row = next(line for line in lines if number in line)
    return dict(zip(titles, (cell.strip() for cell in row.strip("│").split("│")), strict=True))


def test_syncs_and_replay_export_with_the_same_format_flag(world):
    world.sandbox.dataset.add_org_level(1, "777", "New cost center")
    dimensions = _csv(world.cli("sync-dimensions", "--dry-run", "--format", "csv").stdout)
    assert {"status", "dimension", "value", "ukg_codes", "entity_set"} <= set(dimensions[0])
    assert {(r["status"], r["dimension"], r["value"]) for r in dimensions} >= {("would create", "CostCenter", "777")}
    assert any(r["status"] == "present" for r in dimensions)
    employees = _csv(world.cli("sync-employees", "--dry-run", "--format", "csv").stdout)
    assert employees and {r["status"] for r in employees} <= {"would send", "skipped", "ignored"}
    run = world.latest_run()
    _fail_posting(world, run)
    world.sandbox.faults.clear()
    document = json.loads(world.cli("replay", "--failed", "--dry-run", "--format", "json").stdout)
    [posting] = document["postings"]
    assert posting["outcome"] == "would replay" and posting["key"].endswith(run.run_id)
    assert document["summary"]["message"].startswith("dry run: would replay 1")
    replayed = _csv(world.cli("replay", "--failed", "--format", "csv").stdout)
    assert [(r["outcome"], r["journal_batch_number"]) for r in replayed] == \
        [("created, unposted", world.journals()[0]["JournalBatchNumber"])]


def _fail_posting(world, run) -> None:
    """D365 down past a short retry budget: the posting stays for replay (exit 4)."""
    fast = "http:\n  max_attempts: 2\n  backoff_base_seconds: 0\n"
    world.config_path.write_text(world.config_path.read_text() + fast)
    world.sandbox.faults.add(FaultRule("d365", "status", method="POST", path_regex=r"\$batch$", status=503,
                                       count=None))
    world.cli("post-payroll", "--run-id", run.run_id, "--yes", expect=4)


def _with_stdout_closed_by_its_reader(world, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as `ukg2d365 ... | head -0`: the reader has gone before the first line is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "ukg2d365", "-c", str(world.config_path), *args],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write_end)


def test_a_reader_that_leaves_early_changes_nothing_the_run_posts_once_and_exits_0(world):
    posting = _with_stdout_closed_by_its_reader(world, "post-payroll", "--due", "--yes")
    assert (posting.returncode, posting.stderr) == (0, "")  # no "internal error (this is a bug): BrokenPipeError"
    (journal,) = world.journals()
    (status,) = world.json_events("status", "--offline")
    (recorded,) = status["recent"]
    assert (recorded["status"], recorded["line_count"]) == ("posted", len(journal["lines"]))
    events = world.json_events("post-payroll", "--due", "--yes")
    assert [e["message"] for e in events if e["event"] == "summary"][0].startswith("nothing new to post")
    for args in (("--json", "status"), ("status",), ("audit",), ("--json", "ping")):
        done = _with_stdout_closed_by_its_reader(world, *args)
        assert (done.returncode, done.stderr) == (0, ""), args


def _tenant(world, folder, name: str):  # type: ignore[no-untyped-def]
    """A tenant config of a worker's folder: the sandbox's, with its own tenant name and SQLite ledger."""
    import yaml

    data = yaml.safe_load(world.config_path.read_text(encoding="utf-8"))
    data["ledger"] = {"path": str(folder / f"{name}.db"), "tenant": name}
    for section in ("ukg", "d365"):
        if "ca_bundle" in data.get(section, {}):
            data[section]["ca_bundle"] = str((world.config_path.parent / data[section]["ca_bundle"]).resolve())
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_status_tenants_shows_the_error_of_each_tenants_last_failed_run_on_one_line(world, tmp_path, monkeypatch):
    folder = tmp_path / "tenants"
    folder.mkdir()
    acme, globex = _tenant(world, folder, "acme"), _tenant(world, folder, "globex")
    world.cli("-c", str(globex), "post-payroll", "--due", "--yes")
    monkeypatch.setenv("UKG2D365_D365_CLIENT_SECRET", "rotated-and-forgotten-secret")
    failed = world.cli("-c", str(acme), "post-payroll", "--due", "--yes", expect=3)
    error = " ".join(failed.output.split()).split("error: ", 1)[1]
    assert "AADSTS7000215" in error

    result = world.runner.invoke(app, ["status", "--tenants", str(folder)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    [line] = [ln for ln in result.output.splitlines() if ln.startswith("last failure")]
    assert line.startswith("last failure acme: post-payroll exit 3 at ") and line.endswith(f": {error}")
    assert "globex: " not in result.output and "rotated-and-forgotten-secret" not in result.output
    lines = world.runner.invoke(app, ["--json", "status", "--tenants", str(folder)]).stdout.splitlines()
    tenants = {e["tenant"]: e for e in map(json.loads, lines) if e.get("event") == "tenant"}
    assert tenants["acme"]["last_failure"]["exit_code"] == 3 and tenants["globex"]["last_failure"] is None
    assert tenants["acme"]["last_failure"]["error"] == error


def _entities(value, found: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    """Every value of a ``legal_entity`` key anywhere in a JSON document."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "legal_entity" and item is not None:
                found.append(item)
            else:
                _entities(item, found)
    elif isinstance(value, list):
        for item in value:
            _entities(item, found)
    return found


def test_every_export_spells_the_legal_entity_upper_case_as_the_screen_and_d365_do(world):
    """The config says ``usmf`` (D365 matches dataAreaId without case and shows it upper case): the screen and
    the JSON said USMF while the CSV exports repeated the config's spelling."""
    from ukg2d365.accruals import month_end_of

    assert "legal_entity: usmf" in world.config_path.read_text(encoding="utf-8")
    run = world.latest_run()
    key = f"C0MP1/BW/{run.period_end}/{run.run_id}"
    straddling = next(p for p in world.sandbox.dataset.pay_periods
                      if p.is_closed and p.period_start.month != p.period_end.month)
    month_end = str(month_end_of(straddling.period_start))
    window = ("--from", str(run.period_end), "--to", str(run.period_end))
    dry_run = world.cli("post-payroll", "--run-id", run.run_id, "--dry-run", "--format", "csv")
    posted = world.cli("post-payroll", "--run-id", run.run_id, "--yes", "--format", "json")
    assert "usmf" not in posted.stderr and "USMF GenJrn" in posted.stderr  # the screen: on stderr while exporting
    exports = {
        "post-payroll --dry-run csv": _csv(dry_run.stdout),
        "post-payroll json": json.loads(posted.stdout),
        "accrue-payroll csv": _csv(world.cli("accrue-payroll", "--month-end", month_end, "--dry-run", "--format",
                                             "csv").stdout),
        "reconcile csv": _csv(world.cli("reconcile", *window, "--format", "csv").stdout),
        "reconcile json": json.loads(world.cli("reconcile", *window, "--format", "json").stdout),
        "report csv": [r for r in _csv(world.cli("report", *window, "--format", "csv").stdout)
                       if r["section"] == "run"],
        "audit csv": _csv(world.cli("audit", "--format", "csv").stdout),
        "audit KEY json": json.loads(world.cli("audit", key, "--format", "json").stdout),
        "status --json": world.json_events("status")[0],
    }
    for name, export in exports.items():
        spelt = _entities(export, []) if isinstance(export, dict) else [r["legal_entity"] for r in export]
        assert spelt and set(spelt) == {"USMF"}, (name, set(spelt))
