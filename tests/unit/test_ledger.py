"""The ledger: migrations recorded, file mode, lock, plan storage, state transitions."""

from __future__ import annotations

import ast
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

import ukg2d365
from tests.helpers import gl, make_config
from ukg2d365.errors import ConfigError, LockBusy
from ukg2d365.flows.post_payroll import posting_record
from ukg2d365.journal import build_journals
from ukg2d365.ledger import FAILED, MIGRATIONS, POSTED, SENDING, Ledger, schema
from ukg2d365.ukg.records import parse_gl_line


def journal(tmp_path):
    cfg = make_config(tmp_path)
    items = [gl("5000", Decimal("1.10"), cc="110"), gl("2100", 0, Decimal("1.10"), system_id=2)]
    return build_journals([parse_gl_line(x, i) for i, x in enumerate(items)], cfg)[0]


def test_migrations_are_recorded_once_and_file_is_private(tmp_path):
    path = tmp_path / "l.db"
    Ledger(path).close()
    Ledger(path).close()  # reopening applies nothing twice
    rows = sqlite3.connect(path).execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == [m[0] for m in MIGRATIONS]
    assert (path.stat().st_mode & 0o777) == 0o600


def test_ledger_written_by_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "l.db"
    Ledger(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x')")
    db.commit()
    with pytest.raises(ConfigError, match="newer ukg2d365"):
        Ledger(path)


def test_missing_or_read_only_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Ledger(tmp_path / "nope" / "l.db")


def test_plan_is_stored_exactly_and_states_move(tmp_path):
    ledger = Ledger(tmp_path / "l.db")
    j = journal(tmp_path)
    ledger.save_plan(posting_record(j), j.lines)
    assert ledger.plan_lines(j.key.text) == j.lines
    ledger.set_status(j.key.text, SENDING, journal_batch_number="USMF-1")
    ledger.set_status(j.key.text, FAILED, error="refused")
    assert ledger.get_posting(j.key.text).last_error == "refused"
    ledger.set_status(j.key.text, POSTED)
    posting = ledger.get_posting(j.key.text)
    assert posting.status == POSTED and posting.last_error is None and posting.journal_batch_number == "USMF-1"
    with pytest.raises(ValueError, match="already posted"):
        ledger.save_plan(posting_record(j), j.lines)
    assert [e["kind"] for e in ledger.audit_trail(j.key.text)].count("state") == 3


def test_second_lock_holder_is_refused_with_who_holds_it(tmp_path):
    first = Ledger(tmp_path / "l.db")
    first.acquire_lock()
    second = Ledger(tmp_path / "l.db")
    with pytest.raises(LockBusy, match="holds the ledger lock"):
        second.acquire_lock(timeout_seconds=0.3)
    first.release_lock()
    second.acquire_lock()


def test_two_processes_creating_the_ledger_at_once_both_succeed(tmp_path):
    import multiprocessing

    path = tmp_path / "race.db"
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)

    def open_ledger(results):
        barrier.wait()
        try:
            Ledger(path).close()
            results.put("ok")
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            results.put(repr(exc))

    results = ctx.Queue()
    procs = [ctx.Process(target=open_ledger, args=(results,)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert sorted(results.get(timeout=5) for _ in procs) == ["ok"] * 4
    rows = sqlite3.connect(path).execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0]
    assert rows == len(MIGRATIONS)


def test_a_migration_that_fails_half_way_leaves_neither_its_tables_nor_its_record(tmp_path, monkeypatch):
    path = tmp_path / "l.db"
    Ledger(path).close()
    broken = (len(MIGRATIONS) + 1, "half", "CREATE TABLE half_done (a TEXT); INSERT INTO no_such_table VALUES (1)")
    monkeypatch.setattr(schema, "MIGRATIONS", [*MIGRATIONS, broken])
    with pytest.raises(ConfigError, match="not a usable SQLite ledger"):
        Ledger(path)
    db = sqlite3.connect(path)
    assert db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("SELECT 1 FROM sqlite_master WHERE name = 'half_done'").fetchone() is None
    db.close()
    fixed = (broken[0], "half", "CREATE TABLE half_done (a TEXT)")
    monkeypatch.setattr(schema, "MIGRATIONS", [*MIGRATIONS, fixed])
    ledger = Ledger(path)  # the next open applies it whole
    assert ledger.schema_version() == fixed[0]
    ledger.close()


def test_every_sql_statement_lives_in_the_ledger_package():
    """Issue 17 puts a second backend behind the ledger's API: no module outside ledger/ may speak SQL."""
    package = Path(ukg2d365.__file__).parent
    offenders = []
    for source in sorted(package.rglob("*.py")):
        relative = source.relative_to(package)
        if relative.parts[0] == "ledger":
            continue
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import) and any(a.name == "sqlite3" for a in node.names):
                offenders.append(f"{relative}:{node.lineno} imports sqlite3")
            elif isinstance(node, ast.ImportFrom) and node.module == "sqlite3":
                offenders.append(f"{relative}:{node.lineno} imports from sqlite3")
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr in ("execute", "executemany", "executescript", "transaction")):
                offenders.append(f"{relative}:{node.lineno} calls .{node.func.attr}()")
    assert offenders == []


def test_postings_of_an_older_ledger_get_the_configured_legal_entity(tmp_path):
    """A ledger written before legal entities: its postings were all in d365.legal_entity."""
    path = tmp_path / "old.db"
    older = [m for m in MIGRATIONS if m[0] < 4]
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
               "applied_at TEXT NOT NULL)")
    for version, name, sql in older:
        db.executescript(sql)
        db.execute("INSERT INTO schema_migrations VALUES (?, ?, 'x')", (version, name))
    db.execute("INSERT INTO postings (key, company, pay_group, period_end, run_id, marker, description, status, "
               "plan_hash, source_hash, source_lines, line_count, debit_total, credit_total, trans_date, "
               "created_at, updated_at) VALUES ('C/BW/2026-11-13/R', 'C', 'BW', '2026-11-13', 'R', 'U2D-X', 'd', "
               "'posted', 'h', 's', 1, 2, '1', '1', '2026-11-13', 'x', 'x')")
    db.commit()
    db.close()
    ledger = Ledger(path)
    old = ledger.get_posting("C/BW/2026-11-13/R")
    assert old is not None and old.legal_entity is None and old.kind == "pay_run"
    ledger.adopt_legal_entity("USMF")
    adopted = ledger.get_posting("C/BW/2026-11-13/R")
    assert adopted is not None and adopted.legal_entity == "USMF" and adopted.data_area_id == "usmf"
    assert ledger.period_statuses("BW", "2026-11-13") == ["posted"]
    assert ledger.period_statuses("BW", "2026-11-13", kind="accrual") == []
