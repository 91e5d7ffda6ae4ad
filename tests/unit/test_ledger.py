"""The ledger, on both backends: migrations recorded, tenants kept apart, the run lock, plans and states.

Every test taking ``ledger_site`` runs twice: on a SQLite file and on a fresh PostgreSQL database (skipped,
with the reason, when no PostgreSQL is available; `make test` starts one).
"""

from __future__ import annotations

import ast
import itertools
import multiprocessing
import os
import re
import signal
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

import ukg2d365
from tests.helpers import gl, make_config
from tests.ledgers import LedgerSite
from ukg2d365.errors import ConfigError, ExitStatus, LockBusy
from ukg2d365.flows.post_payroll import posting_record
from ukg2d365.journal import build_journals
from ukg2d365.ledger import FAILED, MIGRATIONS, POSTED, SENDING, Ledger, LedgerError, schema
from ukg2d365.ledger.postings import DamagedPlan
from ukg2d365.ukg.records import parse_gl_line


def journal(tmp_path, run: str = "R1"):
    cfg = make_config(tmp_path)
    items = [gl("5000", Decimal("1.10"), cc="110", run=run), gl("2100", 0, Decimal("1.10"), system_id=2, run=run)]
    return build_journals([parse_gl_line(x, i) for i, x in enumerate(items)], cfg)[0]


def test_migrations_are_recorded_once(ledger_site: LedgerSite):
    ledger_site.open().close()
    ledger_site.open().close()  # reopening applies nothing twice
    rows = ledger_site.query("SELECT version, name FROM schema_migrations ORDER BY version")
    assert [r[0] for r in rows] == [m[0] for m in MIGRATIONS]


def test_sqlite_ledger_file_is_private(tmp_path):
    path = tmp_path / "l.db"
    Ledger(path).close()
    assert (path.stat().st_mode & 0o777) == 0o600


def test_ledger_written_by_a_newer_version_is_refused(ledger_site: LedgerSite):
    ledger_site.open().close()
    ledger_site.query("INSERT INTO schema_migrations VALUES (999, 'future', 'x')")
    with pytest.raises(ConfigError, match="newer ukg2d365"):
        ledger_site.open()


def test_missing_or_read_only_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Ledger(tmp_path / "nope" / "l.db")


def test_plan_is_stored_exactly_and_states_move(ledger_site: LedgerSite, tmp_path):
    ledger = ledger_site.open()
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
    ledger.close()


def test_the_stored_plan_is_read_back_in_chunks_in_plan_order(ledger_site: LedgerSite, tmp_path):
    ledger = ledger_site.open()
    j = journal(tmp_path)
    ledger.save_plan(posting_record(j), j.lines)
    assert list(ledger.iter_plan(j.key.text, chunk=1)) == list(j.lines)
    assert list(ledger.iter_plan("no such posting")) == []
    ledger.close()


def big_journal(tmp_path, lines: int):
    """A journal of ``lines`` lines, past PlannedLines.SPILL_AT: its lines live in the spill file."""
    cfg = make_config(tmp_path, summarize=False)
    items = [gl("5000", Decimal(f"{n}.{n % 100:02d}"), cc="110", system_id=n) for n in range(1, lines // 2 + 1)]
    items += [gl("2100", 0, Decimal(f"{n}.{n % 100:02d}"), system_id=lines + n) for n in range(1, lines // 2 + 1)]
    return build_journals([parse_gl_line(x, i) for i, x in enumerate(items, start=1)], cfg)[0]


def test_a_large_plan_is_stored_in_hashed_blocks_and_read_back_exactly(ledger_site: LedgerSite, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setattr("ukg2d365.journal.BLOCK_CHARS", 20_000)  # several blocks of a few hundred lines
    ledger = ledger_site.open("acme")
    j = big_journal(tmp_path, 6_000)
    assert j.lines._file is not None  # spilled: stored from the file as written
    ledger.save_plan(posting_record(j), j.lines)
    blocks = ledger_site.query("SELECT first_line, line_count FROM plan_chunks WHERE posting_key = ? "
                               "ORDER BY first_line", j.key.text)
    assert len(blocks) > 10 and blocks[0][0] == 1 and sum(n for _, n in blocks) == 6_000
    assert all(first + count == nxt for (first, count), (nxt, _) in itertools.pairwise(blocks))
    assert ledger_site.query("SELECT COUNT(*) FROM posting_lines")[0][0] == 0
    assert list(ledger.iter_plan(j.key.text)) == list(j.lines)
    assert list(ledger.plan_rows(j.key.text)) == list(j.lines.text_rows())
    ledger.close()


@pytest.mark.parametrize("damage", ["altered", "block removed", "last block removed"])
def test_a_damaged_stored_plan_is_refused_not_read_as_another_plan(ledger_site: LedgerSite, tmp_path, monkeypatch,
                                                                  damage):
    monkeypatch.setattr("ukg2d365.journal.BLOCK_CHARS", 20_000)
    ledger = ledger_site.open("acme")
    j = big_journal(tmp_path, 6_000)
    ledger.save_plan(posting_record(j), j.lines)
    blocks = [r[0] for r in ledger_site.query("SELECT first_line FROM plan_chunks ORDER BY first_line")]
    if damage == "altered":  # an amount changed by hand: the block no longer matches its hash
        ledger_site.query("UPDATE plan_chunks SET records = REPLACE(records, '.', ',') WHERE first_line = ?",
                          blocks[3])
    else:
        gone = blocks[3] if damage == "block removed" else blocks[-1]
        ledger_site.query("DELETE FROM plan_chunks WHERE first_line = ?", gone)
    with pytest.raises(DamagedPlan, match=f"stored plan of {re.escape(j.key.text)} is damaged from line"):
        list(ledger.plan_rows(j.key.text))
    ledger.close()


def test_a_plan_stored_a_row_per_line_before_blocks_is_still_read_and_a_replan_moves_it(ledger_site: LedgerSite,
                                                                                        tmp_path, monkeypatch):
    monkeypatch.setattr(schema, "MIGRATIONS", MIGRATIONS[:7])  # a ledger of the version before plan_chunks
    ledger_site.open("acme").close()
    j = journal(tmp_path)
    p = posting_record(j)
    ledger_site.query(
        "INSERT INTO postings (tenant, key, company, pay_group, period_end, run_id, marker, description, status, "
        "plan_hash, source_hash, source_lines, line_count, debit_total, credit_total, trans_date, created_at, "
        "updated_at) VALUES ('acme', ?, ?, ?, ?, ?, ?, ?, 'sending', ?, ?, ?, ?, ?, ?, ?, 'x', 'x')",
        p.key, p.company, p.pay_group, p.period_end, p.run_id, p.marker, p.description, p.plan_hash, p.source_hash,
        p.source_lines, p.line_count, str(p.debit_total), str(p.credit_total), p.trans_date)
    for ln in j.lines:
        ledger_site.query("INSERT INTO posting_lines (tenant, posting_key, line_number, account, debit, credit, "
                          "text) VALUES ('acme', ?, ?, ?, ?, ?, ?)", p.key, ln.line_number, ln.account,
                          str(ln.debit), str(ln.credit), ln.text)
    monkeypatch.setattr(schema, "MIGRATIONS", MIGRATIONS)
    ledger = ledger_site.open("acme")
    assert ledger.schema_version() == MIGRATIONS[-1][0]
    assert ledger.plan_lines(j.key.text) == j.lines
    assert list(ledger.iter_plan(j.key.text, chunk=1)) == list(j.lines)
    ledger.save_plan(p, j.lines)  # planned again (recovery of a sending posting does that): stored in blocks
    assert ledger_site.query("SELECT COUNT(*) FROM posting_lines")[0][0] == 0
    assert ledger_site.query("SELECT SUM(line_count) FROM plan_chunks")[0][0] == len(j.lines)
    assert ledger.plan_lines(j.key.text) == j.lines
    ledger.close()


def test_runs_audit_settings_and_caches_round_trip(ledger_site: LedgerSite):
    ledger = ledger_site.open("acme")
    run = ledger.start_run("post-payroll", {"due": True})
    ledger.audit("note", {"n": 1}, "K1")
    ledger.finish_run(0, {"posted": 1})
    ledger.set_setting("last", "a")
    ledger.set_setting("last", "b")
    ledger.remember_values("dimension", "CostCenter", ["110", "120"])
    ledger.remember_values("dimension", "CostCenter", ["110"])
    ledger.record_employee_sync("100", "h1", "E-1")
    ledger.record_employee_sync("100", "h2", None)  # a send that learnt no employment id keeps the known one
    assert ledger.record_webhook_event({"event_id": "e1", "event_type": "t", "operation": None, "event_time": None,
                                        "company": None, "employee": None, "pay_group": None,
                                        "tenant": "ukg-tenant"}, "queued", "")
    assert not ledger.record_webhook_event({"event_id": "e1", "event_type": "t", "operation": None,
                                            "event_time": None, "company": None, "employee": None, "pay_group": None,
                                            "tenant": None}, "queued", "")
    [recent] = ledger.recent_runs()
    assert (recent["id"], recent["exit_code"], recent["command"], recent["tenant"]) == (run, 0, "post-payroll", "acme")
    [event] = ledger.audit_trail("K1")
    assert event["kind"] == "note" and event["user"] and event["command"] == "post-payroll"
    assert ledger.get_setting("last") == "b"
    assert ledger.known_values("dimension", "CostCenter") == {"110", "120"}
    assert ledger.synced_employees(["100"])["100"].employment_id == "E-1"
    assert ledger.synced_employees(["100"])["100"].payload_hash == "h2"
    assert ledger.webhook_event("e1")["tenant"] == "ukg-tenant"
    assert [e["event_id"] for e in ledger.unfinished_webhook_events()] == ["e1"]
    ledger.close()


def test_tenants_sharing_one_database_never_see_each_others_rows(ledger_site: LedgerSite, tmp_path):
    acme, globex = ledger_site.open("acme"), ledger_site.open("globex")
    j = journal(tmp_path)  # the same posting key and marker in both tenants
    acme.save_plan(posting_record(j), j.lines)
    globex.save_plan(posting_record(j), j.lines)
    acme.set_status(j.key.text, POSTED)
    acme.set_setting("last_sync", "2026-01-01")
    acme.start_run("sync-employees", {})
    assert globex.get_posting(j.key.text).status == "planned"
    assert globex.posted_keys([j.key.text]) == set() and acme.posted_keys([j.key.text]) == {j.key.text}
    assert globex.get_setting("last_sync") is None and globex.recent_runs() == []
    assert globex.counts_by_status() == {"planned": 1} and acme.counts_by_status() == {"posted": 1}
    assert [e["kind"] for e in globex.audit_trail(j.key.text)] == []
    acme.close()
    globex.close()


def test_a_ledger_opened_without_a_tenant_reads_the_only_tenant_it_holds(ledger_site: LedgerSite):
    first = ledger_site.open("acme")
    first.start_run("status", {})
    first.close()
    assert ledger_site.open().tenant == "acme"
    other = ledger_site.open("globex")
    other.start_run("status", {})
    other.close()
    with pytest.raises(ConfigError, match="holds several tenants"):
        ledger_site.open()


def test_a_tenant_name_outside_the_allowed_characters_is_refused(ledger_site: LedgerSite):
    with pytest.raises(ConfigError, match="ledger.tenant"):
        ledger_site.open("acme'; DROP TABLE runs; --")


def test_an_existing_sqlite_ledger_migrates_in_place_with_the_configs_tenant(tmp_path, monkeypatch):
    path = tmp_path / "l.db"
    monkeypatch.setattr(schema, "MIGRATIONS", MIGRATIONS[:3])  # a ledger written before tenants
    Ledger(path).close()
    j = journal(tmp_path)
    p = posting_record(j)
    db = sqlite3.connect(path)  # rows as the previous version wrote them
    db.execute("INSERT INTO runs (command, args, user, host, pid, started_at) VALUES ('post-payroll', '{}', 'u', "
               "'h', 1, '2026-01-01T00:00:00')")
    db.execute("INSERT INTO postings (key, company, pay_group, period_end, run_id, employee, marker, description, "
               "status, journal_batch_number, plan_hash, source_hash, source_lines, line_count, debit_total, "
               "credit_total, trans_date, created_at, updated_at, last_run) VALUES (?, ?, ?, ?, ?, NULL, ?, ?, "
               "'sending', 'USMF-7', ?, ?, ?, ?, ?, ?, ?, 'x', 'x', 1)",
               (p.key, p.company, p.pay_group, p.period_end, p.run_id, p.marker, p.description, p.plan_hash,
                p.source_hash, p.source_lines, p.line_count, str(p.debit_total), str(p.credit_total), p.trans_date))
    db.executemany("INSERT INTO posting_lines VALUES (?, ?, ?, ?, ?, ?)",
                   [(p.key, ln.line_number, ln.account, str(ln.debit), str(ln.credit), ln.text) for ln in j.lines])
    db.execute("INSERT INTO audit_events (at, run, posting_key, kind, detail) VALUES ('x', 1, ?, 'state', '{}')",
               (p.key,))
    db.execute("INSERT INTO settings VALUES ('employees.last_sync', '2026-01-01')")
    db.execute("INSERT INTO webhook_events (event_id, received_at, event_type, tenant, status, updated_at) "
               "VALUES ('e1', 'x', 'payroll', 'ukg-tenant', 'queued', 'x')")
    db.commit()
    db.close()
    monkeypatch.setattr(schema, "MIGRATIONS", MIGRATIONS)
    with pytest.raises(ConfigError, match="predates tenants"):
        Ledger(path)  # without a config, the rows could not be labelled
    ledger = Ledger(path, "contoso.operations.dynamics.com/USMF")
    assert ledger.schema_version() == MIGRATIONS[-1][0]
    posting = ledger.get_posting(j.key.text)
    assert posting.status == SENDING and posting.journal_batch_number == "USMF-7"
    assert ledger.plan_lines(j.key.text) == j.lines
    assert ledger.get_setting("employees.last_sync") == "2026-01-01"
    assert [r["command"] for r in ledger.recent_runs()] == ["post-payroll"]
    assert [e["kind"] for e in ledger.audit_trail(j.key.text)] == ["state"]
    assert ledger.webhook_event("e1")["tenant"] == "ukg-tenant"  # the event's own tenant, kept apart
    ledger.close()
    assert Ledger(path).tenant == "contoso.operations.dynamics.com/USMF"  # from now on, config or not


def test_second_lock_holder_of_a_tenant_is_refused_with_who_holds_it(ledger_site: LedgerSite):
    first = ledger_site.open("acme")
    first.acquire_lock()
    second = ledger_site.open("acme")
    with pytest.raises(LockBusy, match=r"another ukg2d365 run holds the lock for tenant acme "
                                       rf"\(pid {os.getpid()} on .+ since 20\d\d-") as caught:
        second.acquire_lock(timeout_seconds=0.3)
    assert caught.value.exit_status == ExitStatus.LOCKED
    first.release_lock()
    second.acquire_lock()
    first.close()
    second.close()


def test_different_tenants_hold_their_locks_at_the_same_time(ledger_site: LedgerSite):
    acme, globex = ledger_site.open("acme"), ledger_site.open("globex")
    acme.acquire_lock()
    globex.acquire_lock()
    acme.close()
    globex.close()


def _hold_lock_then_wait(location, tenant, ready):
    ledger = Ledger(location, tenant)
    ledger.acquire_lock()
    ready.set()
    signal.pause()


def test_a_killed_lock_holder_leaves_the_lock_free(ledger_site: LedgerSite):
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_lock_then_wait, args=(ledger_site.location, "acme", ready))
    holder.start()
    assert ready.wait(30)
    ledger = ledger_site.open("acme")
    with pytest.raises(LockBusy):
        ledger.acquire_lock()
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(10)
    ledger.acquire_lock(timeout_seconds=10)  # PostgreSQL ends the dead session and its advisory lock with it
    ledger.close()


def _open_and_report(location, barrier, results):
    barrier.wait()
    try:
        Ledger(location).close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        results.put(repr(exc))


def test_two_processes_creating_the_ledger_at_once_both_succeed(ledger_site: LedgerSite):
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    procs = [ctx.Process(target=_open_and_report, args=(ledger_site.location, barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert sorted(results.get(timeout=5) for _ in procs) == ["ok"] * 4
    assert ledger_site.query("SELECT COUNT(*) FROM schema_migrations")[0][0] == len(MIGRATIONS)


def test_a_migration_that_fails_half_way_leaves_neither_its_tables_nor_its_record(ledger_site: LedgerSite,
                                                                                   monkeypatch):
    ledger_site.open().close()
    broken = (len(MIGRATIONS) + 1, "half", "CREATE TABLE half_done (a TEXT); INSERT INTO no_such_table VALUES (1)")
    monkeypatch.setattr(schema, "MIGRATIONS", [*MIGRATIONS, broken])
    error = ConfigError if ledger_site.kind == "sqlite" else LedgerError
    with pytest.raises(error, match="no_such_table"):
        ledger_site.open()
    assert ledger_site.query("SELECT MAX(version) FROM schema_migrations")[0][0] == len(MIGRATIONS)
    with pytest.raises(Exception, match="half_done"):
        ledger_site.query("SELECT COUNT(*) FROM half_done")
    fixed = (broken[0], "half", "CREATE TABLE half_done (a TEXT)")
    monkeypatch.setattr(schema, "MIGRATIONS", [*MIGRATIONS, fixed])
    ledger = ledger_site.open()  # the next open applies it whole
    assert ledger.schema_version() == fixed[0]
    ledger.close()


def test_sqlite_file_that_is_not_a_ledger_is_a_config_error(tmp_path):
    path = tmp_path / "l.db"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(ConfigError, match="not a usable SQLite ledger"):
        Ledger(path)


def test_postgresql_that_does_not_answer_is_exit_4_naming_the_host_never_the_password(monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    monkeypatch.setenv("UKG2D365_LEDGER_PASSWORD", "s3cret-Pa55")
    with pytest.raises(LedgerError) as caught:
        Ledger(f"postgresql://ukg@127.0.0.1:{port}/ledger?connect_timeout=3", "acme")
    message = str(caught.value)
    assert caught.value.exit_status == ExitStatus.UNAVAILABLE
    assert f"ledger PostgreSQL at 127.0.0.1:{port}/ledger is unavailable" in message
    assert "s3cret-Pa55" not in message and "\n" not in message


def test_a_password_in_the_url_is_refused_without_repeating_it():
    with pytest.raises(ConfigError) as caught:
        Ledger("postgresql://ukg:s3cret-Pa55@db.example:5432/ledger", "acme")
    assert "UKG2D365_LEDGER_PASSWORD" in str(caught.value) and "s3cret" not in str(caught.value)


def test_every_sql_statement_lives_in_the_ledger_package():
    """A second backend sits behind the ledger's API: no module outside ledger/ may speak SQL."""
    package = Path(ukg2d365.__file__).parent
    offenders = []
    for source in sorted(package.rglob("*.py")):
        relative = source.relative_to(package)
        if relative.parts[0] == "ledger":
            continue
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import) and any(a.name in ("sqlite3", "psycopg") for a in node.names):
                offenders.append(f"{relative}:{node.lineno} imports a database driver")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("sqlite3", "psycopg"):
                offenders.append(f"{relative}:{node.lineno} imports from a database driver")
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr in ("execute", "executemany", "executescript", "transaction")):
                offenders.append(f"{relative}:{node.lineno} calls .{node.func.attr}()")
    assert offenders == []


def test_every_statement_on_a_tenants_rows_names_the_tenant():
    """Many tenants share one PostgreSQL database: a statement that forgot ``tenant = ?`` would read or write
    another tenant's rows. Every statement of the ledger's API on a scoped table names it."""
    import re

    scoped = r"\b(FROM|INTO|UPDATE)\s+(runs|postings|posting_lines|plan_chunks|audit_events|reference_values|" \
             r"settings|employee_sync|webhook_events|run_locks|refusals)\b"
    package = Path(ukg2d365.__file__).parent / "ledger"
    offenders = []
    for name in ("__init__.py", "postings.py", "refusals.py", "tables.py"):
        for node in ast.walk(ast.parse((package / name).read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args
                    and node.func.attr in ("execute", "executemany", "insert", "tuples")):
                text = " ".join(c.value for c in ast.walk(node.args[0])
                                if isinstance(c, ast.Constant) and isinstance(c.value, str))
                if re.search(scoped, text) and "tenant" not in text:
                    offenders.append(f"{name}:{node.lineno}: {text[:80]}")
    assert offenders == []
def test_postings_of_an_older_ledger_get_the_configured_legal_entity(tmp_path, monkeypatch):
    """A ledger written before legal entities (schema 4): its postings were all in d365.legal_entity."""
    path = tmp_path / "old.db"
    monkeypatch.setattr(schema, "MIGRATIONS", [m for m in MIGRATIONS if m[0] <= 4])
    Ledger(path, "acme").close()
    db = sqlite3.connect(path)  # a posting as that version wrote it
    db.execute("INSERT INTO postings (tenant, key, company, pay_group, period_end, run_id, marker, description, "
               "status, plan_hash, source_hash, source_lines, line_count, debit_total, credit_total, trans_date, "
               "created_at, updated_at) VALUES ('acme', 'C/BW/2026-11-13/R', 'C', 'BW', '2026-11-13', 'R', 'U2D-X', "
               "'d', 'posted', 'h', 's', 1, 2, '1', '1', '2026-11-13', 'x', 'x')")
    db.commit()
    db.close()
    monkeypatch.setattr(schema, "MIGRATIONS", MIGRATIONS)
    ledger = Ledger(path, "acme")
    old = ledger.get_posting("C/BW/2026-11-13/R")
    assert old is not None and old.legal_entity is None and old.kind == "pay_run"
    ledger.adopt_legal_entity("USMF")
    adopted = ledger.get_posting("C/BW/2026-11-13/R")
    assert adopted is not None and adopted.legal_entity == "USMF" and adopted.data_area_id == "usmf"
    assert ledger.period_statuses("BW", "2026-11-13") == ["posted"]
    assert ledger.period_statuses("BW", "2026-11-13", kind="accrual") == []


def test_a_refused_run_keeps_its_period_open_until_it_posts_or_is_skipped_per_tenant(ledger_site: LedgerSite,
                                                                                     tmp_path):
    from ukg2d365.ledger import REFUSED, SKIPPED, Refusal

    acme, globex = ledger_site.open("acme"), ledger_site.open("globex")
    posted, refused = journal(tmp_path, "R1"), journal(tmp_path, "R2")  # two runs of one pay group and period
    acme.save_plan(posting_record(posted), posted.lines)
    acme.set_status(posted.key.text, POSTED)
    period = posted.key.period_end.isoformat()
    refusal = Refusal(refused.key.text, "pay_run", "C0MP1", "BW", period, "R2", "USMF", ["unbalanced in UKG"])
    acme.record_refusal(refusal, {"problems": refusal.problems})
    acme.record_refusal(refusal, {"problems": refusal.problems})  # the next night refuses it again
    assert acme.period_states("BW", period) == {posted.key.text: POSTED, refused.key.text: REFUSED}
    [open_one] = acme.open_refusals(kind="pay_run", pay_group="BW", period_end=period)
    assert (open_one.key, open_one.times, open_one.problems, open_one.skipped) == \
        (refused.key.text, 2, ["unbalanced in UKG"], False)
    assert acme.refused_period_ends() == [("BW", period)] and acme.open_refusals(kind="accrual") == []
    assert globex.period_states("BW", period) == {} and globex.open_refusals() == []  # another tenant's rows

    acme.skip_refusal(refused.key.text, "voided in UKG")
    assert acme.period_states("BW", period)[refused.key.text] == SKIPPED and acme.open_refusals() == []
    skipped = acme.refusal(refused.key.text)
    assert skipped is not None and skipped.skipped and skipped.skip_reason == "voided in UKG"
    acme.record_refusal(refusal, {"problems": refusal.problems})  # refused again later: the skip stays
    assert acme.refusals_of([refused.key.text])[refused.key.text].skipped
    assert [e["kind"] for e in acme.audit_trail(refused.key.text)] == ["refused", "refused", "skipped", "refused"]

    globex.record_refusal(refusal, {"problems": refusal.problems})
    globex.save_plan(posting_record(refused), refused.lines)  # the refused run, fixed, posts: it is done
    globex.set_status(refused.key.text, POSTED)
    assert globex.period_states("BW", period) == {refused.key.text: POSTED} and globex.open_refusals() == []
    acme.close()
    globex.close()
