"""UKG's GL export file as the source: post-payroll --from-file and reconcile --from-file against the sandbox.

The sandbox writes a GL run as a file (ukg2d365/sandbox/gl_export.py) whose values are the GL endpoint's, so the
journal the file route posts can be compared with the API route's for the very same run.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.world import World, d365_totals, ukg_totals
from ukg2d365.sandbox.gl_export import export_gl, fixed_width_file_source

pytestmark = pytest.mark.e2e


def export(world: World, run: Any, name: str = "gl.csv", fmt: str = "csv") -> Path:
    path = world.sandbox.dir / name
    export_gl(world.sandbox.dataset, run.run_id, path, fmt)
    return path


def edited(path: Path, edit: Any, name: str | None = None) -> Path:
    """The CSV at ``path`` with ``edit(rows)`` applied (rows[0] is the header), written as the sandbox writes it."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    edit(rows)
    target = path.with_name(name) if name else path
    with target.open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return target


def with_file_source(world: World, name: str, file_source: dict[str, Any]) -> Path:
    """The sandbox's config with another file_source:, beside it (same ledger, same CA)."""
    data = yaml.safe_load(world.config_path.read_text())
    data["file_source"] = file_source
    path = world.config_path.with_name(name)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def as_posted(journal: dict[str, Any]) -> dict[str, Any]:
    """A D365 journal as finance sees it: the header and its lines (as a sorted multiset: D365 numbers lines in
    the order changesets arrive, which concurrency may vary)."""
    header = {k: v for k, v in journal.items() if k != "lines"}
    lines = sorted((sorted((k, str(v)) for k, v in line.items() if k not in ("LineNumber", "RecId")))
                   for line in journal["lines"])
    return {"header": header, "lines": lines}


def test_file_route_posts_the_api_routes_journal_and_a_renamed_rerun_posts_nothing(world, make_sandbox,
                                                                                   monkeypatch):
    run = world.latest_run()
    gl = export(world, run)
    world.cli("post-payroll", "--from-file", str(gl), "--yes")
    [from_file] = world.journals()
    assert d365_totals(from_file) == ukg_totals(run)

    # The API route, on an identical sandbox (same generated data), posts the same journal, field for field.
    api = World(make_sandbox(), monkeypatch)
    api.create_missing_dimensions()
    api.cli("post-payroll", "--run-id", run.run_id, "--yes")
    [from_api] = api.journals()
    assert as_posted(from_file) == as_posted(from_api)

    # The file renamed (SFTP drops it again under another name): the ledger knows the run, nothing is sent.
    renamed = gl.rename(gl.with_name("GL_EXPORT_20261114_0930.csv"))
    writes = world.sandbox.stats()["d365"]
    result = world.cli("post-payroll", "--from-file", str(renamed), "--yes")
    assert "already posted" in result.output
    assert len(world.journals()) == 1
    assert world.sandbox.stats()["d365"] - writes <= 3  # reads only: set-up check, reference cache, no write
    assert world.d365.request_count["$batch"] == 1


def test_the_api_route_with_a_lost_ledger_finds_the_file_routes_journal_identical(world, tmp_path):
    run = world.latest_run()
    world.cli("post-payroll", "--from-file", str(export(world, run)), "--yes")
    headers_before = world.d365.request_count["LedgerJournalHeaders"]
    # A new ledger, the API route: D365 holds the run's marker with every planned line, so it adopts it.
    result = world.cli("--ledger", str(tmp_path / "other.db"), "post-payroll", "--run-id", run.run_id, "--yes")
    assert "already in D365 as" in result.output
    assert len(world.journals()) == 1
    assert world.d365.request_count["LedgerJournalHeaders"] == headers_before + 1  # the lookup, no create


def test_a_bad_row_is_named_by_line_and_column_and_nothing_is_asked_of_d365(world):
    run = world.latest_run()
    gl = export(world, run)

    def garble(rows: list[list[str]]) -> None:
        rows[16][rows[0].index("Debit Amt")] = "12,3x"  # the file's line 17

    edited(gl, garble)
    d365_before = world.sandbox.stats()["d365"]
    result = world.cli("post-payroll", "--from-file", str(gl), "--yes", expect=1)
    assert f"error: {gl}: line 17, column debit ('Debit Amt'): '12,3x' is not an amount" in result.output
    assert "nothing from the file was posted" in result.output
    assert world.journals() == []
    assert world.sandbox.stats()["d365"] == d365_before
    world.cli("post-payroll", "--from-file", str(gl), "--dry-run", expect=1)  # a preview refuses it too


def test_a_file_with_one_refused_run_posts_none_of_its_runs(world):
    good, other = world.sandbox.dataset.gl_runs[-1], world.sandbox.dataset.gl_runs[-2]
    with export(world, other, "other.csv").open(encoding="utf-8-sig", newline="") as handle:
        header, *other_rows = list(csv.reader(handle))
    other_rows[0][header.index("GL Account")] = "9999"  # an account the mapping lacks: that run is refused

    def append_other_run(rows: list[list[str]]) -> None:
        rows.extend(other_rows)

    both = edited(export(world, good), append_other_run, "both.csv")
    result = world.cli("post-payroll", "--from-file", str(both), "--yes", expect=1)
    assert "account has no entry in mapping.main_accounts: 9999" in result.output
    assert "a file is posted whole or not at all" in result.output
    assert world.journals() == []


def test_a_file_without_run_ids_dedupes_by_content_and_refuses_a_corrected_copy(world):
    source = yaml.safe_load(world.config_path.read_text())["file_source"]
    del source["columns"]["run_id"]
    config = with_file_source(world, "no-run-id.yaml", source)
    run = world.latest_run()
    gl = export(world, run)
    world.cli("-c", str(config), "post-payroll", "--from-file", str(gl), "--yes")
    [journal] = world.journals()
    assert " file-" in journal["Description"]
    renamed = shutil.copy(gl, gl.with_name("again.csv"))
    again = world.cli("-c", str(config), "post-payroll", "--from-file", str(renamed), "--yes")
    assert "already posted" in again.output
    # A corrected copy hashes to another run id; it cannot be told from a second run, so it is refused.
    def correct(rows: list[list[str]]) -> None:
        rows[1][rows[0].index("Description")] += " (corrected)"

    corrected = edited(gl, correct, "corrected.csv")
    refused = world.cli("-c", str(config), "post-payroll", "--from-file", str(corrected), "--yes", expect=1)
    assert "has no run id column (file_source.columns.run_id)" in refused.output
    assert len(world.journals()) == 1


def test_fixed_width_file_posts_and_reconcile_proves_it_against_the_csv(world):
    run = world.latest_run()
    fixed = with_file_source(world, "fixed.yaml", fixed_width_file_source())
    world.cli("-c", str(fixed), "post-payroll", "--from-file", str(export(world, run, "gl.txt", "fixed_width")),
              "--yes")
    [journal] = world.journals()
    assert d365_totals(journal) == ukg_totals(run)
    proof = world.json_events("reconcile", "--from-file", str(export(world, run)))
    [verdict] = [e for e in proof if e["event"] == "reconcile"]
    assert (verdict["run_id"], verdict["verdict"]) == (run.run_id, "match")


def test_reconcile_from_a_file_names_a_run_missing_in_d365_and_exits_1(world):
    run = world.latest_run()
    events = world.json_events("reconcile", "--from-file", str(export(world, run)), expect=1)
    [verdict] = [e for e in events if e["event"] == "reconcile"]
    assert verdict["verdict"] == "missing in D365"
    assert world.journals() == []


def test_dry_run_from_a_file_previews_and_writes_nothing(world):
    run = world.latest_run()
    result = world.cli("post-payroll", "--from-file", str(export(world, run)), "--dry-run")
    assert "dry run: would post 1 journal" in result.output
    assert world.journals() == []


def test_a_selection_the_file_does_not_hold_is_refused_naming_the_file(world):
    run = world.latest_run()
    gl = export(world, run)
    result = world.cli("post-payroll", "--from-file", str(gl), "--run-id", run.run_id.lower(), "--yes", expect=1)
    assert f"no GL run in {gl} matches --run-id {run.run_id.lower()}; did you mean --run-id {run.run_id}?" \
        in result.output
    assert world.journals() == []


def test_without_file_source_in_the_config_from_file_exits_2(world):
    data = yaml.safe_load(world.config_path.read_text())
    del data["file_source"]
    config = world.config_path.with_name("api-only.yaml")
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    result = world.cli("-c", str(config), "post-payroll", "--from-file", str(export(world, world.latest_run())),
                       expect=2)
    assert "error: --from-file needs a file_source: section in the config" in result.output


def test_a_run_the_api_route_posted_is_already_posted_for_its_file_and_unchanged(world):
    run = world.latest_run()
    world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    batches = world.d365.request_count["$batch"]
    result = world.cli("post-payroll", "--from-file", str(export(world, run)), "--yes")
    assert "already posted" in result.output
    assert "changed after it was posted" not in result.output  # with line_id mapped the source hashes agree
    assert world.d365.request_count["$batch"] == batches
    assert len(world.journals()) == 1


def test_a_config_without_ukg_base_url_posts_from_a_file_and_due_exits_2_naming_the_key(world, monkeypatch):
    data = yaml.safe_load(world.config_path.read_text())
    del data["ukg"]["base_url"]  # a customer who only receives GL export files has no UKG API host
    config = world.config_path.with_name("file-only.yaml")
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    for name in ("UKG2D365_UKG_USERNAME", "UKG2D365_UKG_PASSWORD", "UKG2D365_UKG_CUSTOMER_API_KEY",
                 "UKG2D365_UKG_USER_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    run = world.latest_run()
    world.cli("-c", str(config), "post-payroll", "--from-file", str(export(world, run)), "--yes")
    [journal] = world.journals()
    assert d365_totals(journal) == ukg_totals(run)
    ping = world.cli("-c", str(config), "ping")
    assert "not used: ukg.base_url is not set" in " ".join(ping.output.split())

    result = world.cli("-c", str(config), "post-payroll", "--due", "--yes", expect=2)
    text = " ".join(result.output.split())
    assert f"error: {config}: ukg.base_url is not set, and this command reads the UKG API" in text
    assert len([line for line in result.output.splitlines() if line.startswith("error:")]) == 1
    assert world.sandbox.stats()["ukg"] == 0  # UKG was never asked anything
    assert len(world.journals()) == 1
