"""The command line: parse options, load config, call a flow, render its result, map errors to exit codes.

Business logic lives in ``ukg2d365.flows``; this module only wires and renders.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

import typer

from ukg2d365 import __version__
from ukg2d365.config import Config, default_config_path, load_config
from ukg2d365.errors import ExitStatus, Ukg2d365Error, UsageError
from ukg2d365.flows.runtime import RecordedRun
from ukg2d365.flows.runtime import recorded_run as runtime_recorded_run
from ukg2d365.render import Output, Table, journal_fields, journal_table, styled

HELP = """Post UKG Pro payroll GL distributions into Dynamics 365 F&O general journals, exactly once.

Data flows one way, UKG -> D365. Try it with no tenant: `ukg2d365 sandbox` (or `make demo`).
Exit codes: 0 ok (also "nothing to do"), 1 some records failed (replay retries them), 2 usage or
configuration error, 3 authentication failed, 4 a remote system stayed unavailable or throttled,
or another run holds the ledger lock.
"""

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  pretty_exceptions_enable=False)
credentials_app = typer.Typer(help="Store, show (masked) and delete the UKG and D365 secrets.",
                              no_args_is_help=True)
app.add_typer(credentials_app, name="credentials")


@dataclass
class State:
    config_path: Path
    ledger_path: Path | None
    out: Output
    verbose: bool

    def config(self) -> Config:
        return load_config(self.config_path)



@contextmanager
def recorded_run(
    state: State, command: str, args: dict[str, Any], *, lock: bool, record_http: bool = True
) -> Iterator[RecordedRun]:
    """The runtime's recorded run, for this invocation's config and ledger."""
    with runtime_recorded_run(state.config(), command, args, lock=lock, ledger_path=state.ledger_path,
                              record_http=record_http) as run:
        yield run


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ukg2d365 {__version__}")
        raise typer.Exit(0)


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Config file [default: $UKG2D365_CONFIG, else ./ukg2d365.yaml]",
        show_default=False),
    ledger: Path | None = typer.Option(None, "--ledger", help="Ledger file (overrides ledger.path)"),
    json_mode: bool = typer.Option(False, "--json", help="One JSON object per line on stdout (for cron and CI)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="More detail; tracebacks for internal errors"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the summary line and errors"),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version"),
) -> None:
    ctx.obj = State(config or default_config_path(), ledger, Output(json_mode=json_mode, quiet=quiet,
                                                                     verbose=verbose), verbose)


def _state(ctx: typer.Context) -> State:
    state = ctx.obj
    if not isinstance(state, State):  # invoked without the callback (tests calling a command directly)
        state = State(default_config_path(), None, Output(), False)
        ctx.obj = state
    return state


def _fail(state: State, exc: BaseException) -> NoReturn:
    if isinstance(exc, Ukg2d365Error):
        code = int(exc.exit_status)
        state.out.error(str(exc), code=code)
    elif isinstance(exc, KeyboardInterrupt):
        state.out.error("interrupted; postings in flight are recovered on the next run", code=130)
        raise typer.Exit(130)
    else:
        code = int(ExitStatus.RECORDS_FAILED)
        state.out.error(f"internal error: {type(exc).__name__}: {exc}" +
                        ("" if state.verbose else " (run with --verbose for the traceback)"), code=code)
        if state.verbose:
            traceback.print_exc()
    raise typer.Exit(code)


def _guard(state: State, body: Callable[[], int]) -> NoReturn:
    try:
        code = body()
    except typer.Exit:
        raise
    except (Ukg2d365Error, KeyboardInterrupt, Exception) as exc:  # noqa: BLE001 - one place maps every error
        _fail(state, exc)
    raise typer.Exit(code)


def _parse_date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option} {value!r} is not a date", hint="use YYYY-MM-DD") from None


# ---------------------------------------------------------------------- ping


@app.command()
def ping(ctx: typer.Context) -> None:
    """Authenticate to UKG, Entra ID and D365, make one cheap read on each, and diagnose what is wrong."""
    state = _state(ctx)

    def body() -> int:
        from ukg2d365.flows.ping import exit_status
        from ukg2d365.flows.ping import ping as run_ping
        from ukg2d365.flows.runtime import Context

        context = Context(state.config(), ledger_path=state.ledger_path, record_http=False)
        checks = run_ping(context)
        table = Table(title="ukg2d365 ping", title_justify="left")
        for column in ("System", "Host", "Result", "Latency", "Detail"):
            table.add_column(column, overflow="fold")
        for c in checks:
            state.out.event("check", system=c.system, host=c.host, ok=c.ok, latency_ms=c.latency_ms, detail=c.detail)
            table.add_row(c.system, c.host, styled("ok", "green") if c.ok else styled("FAILED", "red"),
                          f"{c.latency_ms} ms" if c.latency_ms is not None else "-", c.detail)
        state.out.table(table)
        code = exit_status(checks)
        failed = [c.system for c in checks if not c.ok]
        state.out.summary("ping: all systems reachable and authenticated" if not failed
                          else f"ping: {', '.join(failed)} failed", ok=not failed, exit_code=int(code))
        return int(code)

    _guard(state, body)


# ---------------------------------------------------------------------- post-payroll


def _show_payroll_plan(out: Output, plan: Any, dry_run: bool, detailed: bool) -> None:
    """The plan; ``detailed`` adds the per-account tables (preview and confirmation), else one line each."""
    due = plan.due
    if due is not None:
        for pay_group, end in sorted(due.open):
            out.event("period", pay_group=pay_group, period_end=end, status="open")
        if due.open:
            out.say("Open pay periods (left alone): " + ", ".join(f"{g} {d}" for g, d in sorted(due.open)))
        for pay_group, end in sorted(due.already_posted):
            out.event("period", pay_group=pay_group, period_end=end, status="already posted")
        for pay_group, end in sorted(due.stale):
            out.event("period", pay_group=pay_group, period_end=end, status="closed, older than the window, unposted")
            out.warn(f"pay group {pay_group} period {end} is closed but was never posted, and is older than "
                     f"payroll.lookback_days, so --due leaves it: post it with `ukg2d365 post-payroll "
                     f"--pay-group {pay_group} --period-end {end}`")
        for pay_group, end in plan.runs_without_gl:
            out.event("period", pay_group=pay_group, period_end=end, status="closed, no GL run yet")
            out.warn(f"pay group {pay_group} period {end} is closed but UKG has no GL run for it yet")
    verb = "would post" if dry_run else "to post"
    for journal in plan.to_post:
        number = plan.in_d365.get(journal.key.text)
        if number is not None:  # a lost or new ledger: D365 holds it already, nothing is sent
            out.event("plan", status="already in D365", journal_batch_number=number, **journal_fields(journal))
            out.say(f"pay group {journal.key.pay_group}, period ending {journal.key.period_end}, UKG run "
                    f"{journal.key.run_id} [{journal.key.marker}]: already in D365 as {number}, matching UKG; "
                    f"{'would be recorded' if dry_run else 'recorded'} as posted, nothing sent")
            continue
        resumed = journal.key.text in plan.resumed
        out.event("plan", status="resume" if resumed else verb, **journal_fields(journal))
        title = (f"{'Resume' if resumed else 'Journal'}: pay group {journal.key.pay_group}, period ending "
                 f"{journal.key.period_end}, UKG run {journal.key.run_id}  [{journal.key.marker}]")
        if detailed:
            out.table(journal_table(journal, title))
        else:
            out.say(f"{title}: {len(journal.lines)} lines, debit {journal.debit_total:,.2f}, "
                    f"credit {journal.credit_total:,.2f}")
    for journal in plan.already_posted:
        out.event("plan", status="already posted", **journal_fields(journal))
    if plan.already_posted:
        table = Table(title="Skipped: already posted", title_justify="left")
        for column in ("Pay group", "Period end", "UKG run", "Debit", "Credit"):
            table.add_column(column)
        for j in plan.already_posted:
            table.add_row(j.key.pay_group, str(j.key.period_end), j.key.run_id, f"{j.debit_total:,.2f}",
                          f"{j.credit_total:,.2f}")
        out.table(table)
    for journal in plan.changed_since_posting:
        out.warn(f"UKG run {journal.key.run_id} ({journal.key.pay_group} {journal.key.period_end}) changed after "
                 f"it was posted; nothing is posted again. Compare with `ukg2d365 reconcile --run-id "
                 f"{journal.key.run_id}` and correct D365 by hand if needed")
    for journal in plan.refused:
        out.event("plan", status="refused", problems=journal.problems, **journal_fields(journal))
        out.warn(f"refusing UKG run {journal.key.run_id} ({journal.key.pay_group} {journal.key.period_end}), "
                 f"nothing is sent for it: " + "; ".join(journal.problems))
    for message in plan.unattributed_errors:
        out.event("bad record", message=message)
        out.warn(message)


@app.command("post-payroll")
def post_payroll(
    ctx: typer.Context,
    run_id: str | None = typer.Option(None, "--run-id", help="UKG GL run id"),
    pay_group: str | None = typer.Option(None, "--pay-group", help="UKG pay group code"),
    period_end: str | None = typer.Option(None, "--period-end", help="Pay period end date, YYYY-MM-DD"),
    due: bool = typer.Option(False, "--due", help="Every closed period of ukg.pay_groups not yet posted (cron)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan; write nothing to D365 or the ledger"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation"),
) -> None:
    """Read UKG GL runs, map and validate them, and create one general journal per pay run in D365."""
    state = _state(ctx)

    def body() -> int:
        from ukg2d365.flows.post_payroll import Selection, apply, read_and_plan

        selection = Selection(run_id, pay_group, _parse_date(period_end, "--period-end"), due)
        selection.validate()
        command = "post-payroll" + (" --dry-run" if dry_run else "")
        args = {"run_id": run_id, "pay_group": pay_group, "period_end": period_end, "due": due}
        with recorded_run(state, command, args, lock=not dry_run) as run:
            context, config, summary = run.context, run.config, run.summary
            started = time.monotonic()
            plan = read_and_plan(context, selection)
            read_seconds = round(time.monotonic() - started, 3)
            will_ask = not yes and sys.stdin.isatty() and not state.out.json_mode
            _show_payroll_plan(state.out, plan, dry_run, detailed=dry_run or will_ask)
            summary.update({"to_post": len(plan.to_write), "in_d365": len(plan.in_d365),
                            "already_posted": len(plan.already_posted), "refused": len(plan.refused),
                            "lines_read": plan.lines_read})
            problems = bool(plan.refused or plan.unattributed_errors)
            if dry_run or not plan.to_post:
                if not dry_run:
                    # apply records refusals in the ledger audit even when nothing is to post, so
                    # `audit <key>` shows a CLI refusal just as it shows a webhook one
                    apply(context, plan)
                what = "dry run: would post" if dry_run else "nothing new to post:"
                posted_before = len(plan.already_posted) + (len(plan.due.already_posted) if plan.due else 0)
                in_d365 = f"{len(plan.in_d365)} already in D365; " if plan.in_d365 else ""
                state.out.summary(
                    f"{what} {len(plan.to_write)} journal(s); {in_d365}{posted_before} already posted; "
                    f"{len(plan.refused)} refused; {plan.lines_read} UKG lines read", **summary)
                run.code = int(ExitStatus.RECORDS_FAILED if problems else ExitStatus.OK)
                return run.code
            if will_ask and plan.to_write:
                lines = sum(len(j.lines) for j in plan.to_write)
                if not typer.confirm(f"Post {len(plan.to_write)} journal(s), {lines} lines, to D365 "
                                     f"{config.d365.base_url} ({config.d365.legal_entity})?", default=False):
                    state.out.summary("nothing posted (not confirmed)")
                    run.code = int(ExitStatus.OK)
                    return run.code
            total = sum(len(j.lines) for j in plan.to_write)
            started = time.monotonic()
            with state.out.progress("Posting journal lines", total) as advance:
                result = apply(context, plan, advance)
            summary.update(read_seconds=read_seconds, post_seconds=round(time.monotonic() - started, 3))
            for outcome in result.outcomes:
                state.out.event("posting", key=outcome.key, status=outcome.status,
                                journal_batch_number=outcome.journal_batch_number, lines_sent=outcome.lines_sent,
                                recovered=outcome.recovered, error=outcome.error)
                if outcome.adopted:
                    state.out.say(f"{outcome.key} -> journal {outcome.journal_batch_number} (already in D365, "
                                  "matching UKG; recorded as posted, nothing sent)", lead=("found", "green"))
                elif outcome.status == "posted":
                    state.out.say(f"{outcome.key} -> journal {outcome.journal_batch_number} "
                                  f"({outcome.lines_sent} lines sent{', recovered' if outcome.recovered else ''})",
                                  lead=("posted", "green"))
                else:
                    state.out.warn(f"{outcome.key}: {outcome.error}")
            found = sum(1 for o in result.outcomes if o.adopted)
            posted = sum(1 for o in result.outcomes if o.status == "posted") - found
            summary.update(posted=posted, failed=len(result.failed), d365_requests=context.requests.get("D365", 0),
                           ukg_requests=context.requests.get("UKG", 0), lines=total,
                           d365_concurrency=max(1, context.d365_limit.peak),
                           ukg_concurrency=config.ukg.prefetch_pages if plan.lines_read > config.ukg.page_size else 1,
                           d365_throttled=context.d365_limit.throttles)
            summary.update(found_in_d365=found)
            state.out.summary(
                f"posted {posted} journal(s); " + (f"{found} found in D365 and recorded; " if found else "")
                + f"{len(result.failed)} failed; {len(plan.already_posted)} already "
                f"posted; {len(plan.refused)} refused", **summary)
            run.code = int(ExitStatus.OK if result.ok else ExitStatus.RECORDS_FAILED)
            return run.code

    _guard(state, body)


# ---------------------------------------------------------------------- replay


@app.command()
def replay(
    ctx: typer.Context,
    keys: list[str] = typer.Argument(None, help="Posting keys (or markers) from `ukg2d365 status`"),
    failed: bool = typer.Option(False, "--failed", help="Every failed, interrupted or unsent posting"),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be replayed; send nothing"),
) -> None:
    """Re-run failed or named postings from their stored plans, safely (never a second copy)."""
    state = _state(ctx)

    def body() -> int:
        from ukg2d365.flows.replay import apply_replay, plan_replay

        command = "replay" + (" --dry-run" if dry_run else "")
        with recorded_run(state, command, {"keys": keys or [], "failed": failed}, lock=not dry_run) as run:
            context = run.context
            plan = plan_replay(context, list(keys or []), failed)
            for key in plan.unknown:
                state.out.warn(f"no posting {key!r} in the ledger")
            for p in plan.already_posted:
                state.out.event("replay", key=p.key, status="already posted")
                state.out.say(f"skipped {p.key}: already posted as journal {p.journal_batch_number}")
            for p in plan.to_replay:
                state.out.event("replay", key=p.key, status="would replay" if dry_run else "replay",
                                previous_status=p.status, last_error=p.last_error)
                state.out.say(f"{'would replay' if dry_run else 'replaying'} {p.key} ({p.status}; "
                              f"{p.line_count} lines){': ' + p.last_error if p.last_error else ''}")
            if dry_run or not plan.to_replay:
                if dry_run:
                    state.out.summary(f"dry run: would replay {len(plan.to_replay)} posting(s); "
                                      f"{len(plan.already_posted)} already posted")
                else:
                    state.out.summary(f"nothing to replay; {len(plan.already_posted)} already posted")
                run.code = int(ExitStatus.RECORDS_FAILED if plan.unknown else ExitStatus.OK)
                return run.code
            total = sum(p.line_count for p in plan.to_replay)
            with state.out.progress("Replaying journal lines", total) as advance:
                outcomes = apply_replay(context, plan, advance)
            for o in outcomes:
                state.out.event("posting", key=o.key, status=o.status, journal_batch_number=o.journal_batch_number,
                                lines_sent=o.lines_sent, recovered=o.recovered, error=o.error)
                if o.status == "posted":
                    state.out.say(f"{o.key} -> journal {o.journal_batch_number} ({o.lines_sent} lines sent)",
                                  lead=("posted", "green"))
                else:
                    state.out.warn(f"{o.key}: {o.error}")
            bad = [o for o in outcomes if o.status != "posted"]
            state.out.summary(f"replayed {len(outcomes)} posting(s); {len(outcomes) - len(bad)} posted; "
                              f"{len(bad)} failed")
            run.code = int(ExitStatus.RECORDS_FAILED if bad or plan.unknown else ExitStatus.OK)
            return run.code

    _guard(state, body)


# ---------------------------------------------------------------------- status and audit


def _ledger_only(state: State) -> Any:
    """status/audit only need the ledger: a config is optional when --ledger is given."""
    from ukg2d365.ledger import Ledger

    if state.ledger_path is not None:
        path = state.ledger_path
    else:
        path = state.config().ledger_path
    if not path.exists():
        raise UsageError(f"no ledger at {path} yet", hint="it is created by the first post-payroll or sync run")
    return Ledger(path)


@app.command()
def status(ctx: typer.Context, limit: int = typer.Option(10, "--limit", help="How many recent runs/postings")) -> None:
    """Recent runs, postings, failures with their last error, and what is pending, from the ledger."""
    state = _state(ctx)

    def body() -> int:
        from ukg2d365.flows.history import posting_dict
        from ukg2d365.flows.history import status as build_status

        ledger = _ledger_only(state)
        report = build_status(ledger, limit)
        out = state.out
        if out.json_mode:
            out.event("status", counts=report.counts, runs=report.runs,
                      pending=[posting_dict(p) for p in report.pending],
                      failed=[posting_dict(p) for p in report.failed],
                      recent=[posting_dict(p) for p in report.recent])
            return 0
        runs = Table(title="Recent runs", title_justify="left")
        for column in ("#", "Command", "Started (UTC)", "User@host", "Exit", "Summary"):
            runs.add_column(column, overflow="fold")
        for r in report.runs:
            summary = json.loads(r["summary"]) if r["summary"] else {}
            text = ", ".join(f"{k} {v}" for k, v in summary.items() if k != "error")
            if summary.get("error"):
                text = (text + "; " if text else "") + "error: " + str(summary["error"])
            runs.add_row(str(r["id"]), r["command"], r["started_at"][:19].replace("T", " "),
                         f"{r['user']}@{r['host']}", "running" if r["exit_code"] is None else str(r["exit_code"]),
                         text)
        out.table(runs)
        postings = Table(title="Postings", title_justify="left")
        for column in ("Key", "Status", "Journal", "Lines", "Debit", "Credit", "Updated (UTC)", "Last error"):
            postings.add_column(column, overflow="fold")
        shown = {p.key: p for p in report.failed + report.pending + report.recent}
        for p in shown.values():
            colour = {"posted": "green", "failed": "red", "sending": "yellow"}.get(p.status, "white")
            postings.add_row(p.key, styled(p.status, colour), p.journal_batch_number or "-", str(p.line_count),
                             f"{p.debit_total:,.2f}", f"{p.credit_total:,.2f}", p.updated_at[:19].replace("T", " "),
                             p.last_error or "")
        out.table(postings)
        c = report.counts
        out.summary(f"ledger: {c['posted']} posted, {c['sending']} in flight (recovered next run), "
                    f"{c['planned']} planned, {c['failed']} failed" +
                    (" - run `ukg2d365 replay --failed`" if c["failed"] or c["sending"] else ""))
        return 0

    _guard(state, body)


@app.command()
def audit(
    ctx: typer.Context,
    key: str | None = typer.Argument(None, help="Posting key, marker or journal number; omit for recent postings"),
    fmt: str = typer.Option("table", "--format", help="table | csv | json"),
) -> None:
    """The full trail of one posting: what UKG returned, the plan, each request and answer, who ran it, when."""
    state = _state(ctx)

    def body() -> int:
        from ukg2d365.flows.history import audit_trail, posting_dict

        if fmt not in ("table", "csv", "json"):
            raise UsageError(f"--format {fmt!r}: use table, csv or json")
        ledger = _ledger_only(state)
        if key is None:
            postings = ledger.find_postings(limit=20)
            rows = [posting_dict(p) for p in postings]
            if fmt == "json" or state.out.json_mode:
                for row in rows:
                    sys.stdout.write(json.dumps(row) + "\n")
            elif fmt == "csv":
                _write_csv(rows)
            else:
                table = Table(title="Recent postings (give a key for its trail)", title_justify="left")
                for column in ("Key", "Marker", "Status", "Journal", "Updated (UTC)"):
                    table.add_column(column, overflow="fold")
                for p in postings:
                    table.add_row(p.key, p.marker, p.status, p.journal_batch_number or "-", p.updated_at[:19])
                state.out.table(table)
            return 0
        posting, events = audit_trail(ledger, key)
        if fmt == "json" or state.out.json_mode:
            document = {"posting": posting_dict(posting) if posting else None, "key": key, "events": events}
            sys.stdout.write(json.dumps(document) + "\n")
            return 0
        flat = [{"id": e["id"], "at": e["at"], "kind": e["kind"], "run": e["run"], "user": e["user"],
                 "host": e["host"], "command": e["command"], "detail": json.dumps(e["detail"], sort_keys=True)}
                for e in events]
        if fmt == "csv":
            _write_csv(flat)
            return 0
        p = posting
        if p is None:
            state.out.say(key, style="bold")
        else:
            state.out.say(f"{p.key}  marker {p.marker}  status {p.status}  journal "
                          f"{p.journal_batch_number or '-'}  lines {p.line_count} (from {p.source_lines} UKG lines, "
                          f"source hash {p.source_hash[:12]})  debit {p.debit_total:,.2f}  credit "
                          f"{p.credit_total:,.2f}")
        table = Table(title="Audit trail", title_justify="left")
        for column in ("At (UTC)", "Run", "Who", "Event", "Detail"):
            table.add_column(column, overflow="fold")
        for e in flat:
            table.add_row(e["at"][:23].replace("T", " "), str(e["run"] or ""), f"{e['user']}@{e['host']}",
                          e["kind"], e["detail"])
        state.out.table(table)
        return 0

    _guard(state, body)


def _write_csv(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    sys.stdout.write(buffer.getvalue())


# ---------------------------------------------------------------------- credentials


@credentials_app.command("set")
def credentials_set(ctx: typer.Context, system: str = typer.Argument(..., help="ukg | d365")) -> None:
    """Prompt (hidden input) for the secrets of one system and store them encrypted.

    When standard input is not a terminal, the values are read one per line from it, in prompt order.
    """
    state = _state(ctx)

    def body() -> int:
        from ukg2d365.credentials import CredentialStore, prompt_fields

        fields = prompt_fields(system)
        values: dict[str, str | None] = {}
        interactive = sys.stdin.isatty()
        for f in fields:
            if interactive:
                value = typer.prompt(f.label + (" (Enter to skip)" if f.optional else ""), hide_input=f.secret,
                                     default="" if f.optional else None, show_default=False)
            else:
                value = sys.stdin.readline().rstrip("\r\n")
            if not value and not f.optional:
                raise UsageError(f"{f.label} is required")
            values[f.field] = value or None
        store = CredentialStore()
        store.set(system, values)
        state.out.summary(f"stored {system} credentials in {store.backend_description()}")
        return 0

    _guard(state, body)


@credentials_app.command("status")
def credentials_status(ctx: typer.Context) -> None:
    """Which secrets are present, where they come from (env or store), masked."""
    state = _state(ctx)

    def body() -> int:
        from ukg2d365.credentials import SYSTEMS, CredentialStore, prompt_fields

        optional = {(system, f.field) for system in SYSTEMS for f in prompt_fields(system) if f.optional}
        store = CredentialStore()
        table = Table(title=f"Credentials ({store.backend_description()})", title_justify="left")
        for column in ("System", "Field", "Source", "Value"):
            table.add_column(column)
        missing = 0
        for s in store.status():
            state.out.event("credential", system=s.system, field=s.field, present=s.present, source=s.source,
                            masked=s.masked)
            table.add_row(s.system, s.field, s.source, s.masked if s.present else styled("missing", "red"))
            missing += 0 if s.present or (s.system, s.field) in optional else 1
        state.out.table(table)
        state.out.summary("all required credentials present" if not missing
                          else f"{missing} required credential(s) missing: `ukg2d365 credentials set ukg|d365`")
        return 0 if not missing else int(ExitStatus.USAGE)

    _guard(state, body)


@credentials_app.command("delete")
def credentials_delete(ctx: typer.Context, system: str = typer.Argument(..., help="ukg | d365")) -> None:
    """Delete the stored secrets of one system (environment variables are not touched)."""
    state = _state(ctx)

    def body() -> int:
        from ukg2d365.credentials import CredentialStore

        removed = CredentialStore().delete(system)
        state.out.summary(f"deleted {len(removed)} stored {system} secret(s)")
        return 0

    _guard(state, body)


# ---------------------------------------------------------------------- sandbox


@app.command()
def sandbox(
    ctx: typer.Context,
    port: int = typer.Option(8443, "--port", help="First port: Entra ID on P, UKG on P+1, D365 on P+2 (0: free ports)"),
    employees: int = typer.Option(600, "--employees", help="Employees in the generated company"),
    latency_ms: int = typer.Option(0, "--latency-ms", help="Latency added to every request"),
    directory: Path = typer.Option(Path("sandbox-run"), "--dir", help="Where the config, CA and ledger go"),
) -> None:
    """Start local UKG Pro, Entra ID and D365 F&O simulators over HTTPS and write a ready config for them."""
    state = _state(ctx)

    def body() -> int:
        from ukg2d365.sandbox import serve_forever_cli

        directory.mkdir(parents=True, exist_ok=True)
        serve_forever_cli(directory, port, employees, latency_ms)
        return 0

    _guard(state, body)


def _register_commands() -> None:
    from ukg2d365 import cli_reconcile, cli_sync, cli_webhook

    cli_sync.register(app)
    cli_reconcile.register(app)
    cli_webhook.register(app)


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
