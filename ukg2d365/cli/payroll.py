"""post-payroll and replay: the commands that create general journals in D365."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from ukg2d365.cli.app import (
    FORMAT,
    FROM_FILE,
    PAY_GROUP,
    PERIOD_END,
    RUN_ID,
    SHOW_ALL,
    YES,
    app,
    command,
    confirmed,
    dry_run_option,
    interactive,
    parse_date,
)
from ukg2d365.flows import post_payroll as payroll_flow
from ukg2d365.flows import replay as replay_flow
from ukg2d365.render import payroll as render


@app.command("post-payroll")
def post_payroll(
    ctx: typer.Context,
    run_id: str | None = RUN_ID,
    pay_group: str | None = PAY_GROUP,
    period_end: str | None = PERIOD_END,
    due: bool = typer.Option(False, "--due", help="Every closed period of ukg.pay_groups not yet posted (cron)"),
    dry_run: bool = dry_run_option("Show the plan; write nothing to D365 or the ledger"),
    yes: bool = YES,
    show_all: bool = SHOW_ALL,
    fmt: str = FORMAT,
    from_file: Path | None = FROM_FILE,
) -> None:
    """Read UKG GL runs, map and validate them, and create one general journal per pay run in D365.

    The journals are left unposted: post them in D365, or let a recurring Post journals batch job do it.
    The preview shows each journal's legal entity, journal name, TransDate, currency, line text and route.

    Examples:

    \b
      ukg2d365 post-payroll --due --dry-run
      ukg2d365 post-payroll --run-id GL20261113BW01 --dry-run --all
      ukg2d365 post-payroll --run-id GL20261113BW01 --dry-run --format csv > plan.csv
      ukg2d365 post-payroll --from-file gl-export.csv --dry-run
      ukg2d365 --json post-payroll --due --yes          # cron
    """
    args = {"run_id": run_id, "pay_group": pay_group, "period_end": period_end, "due": due,
            "from_file": str(from_file) if from_file else None}
    with command(ctx, "post-payroll", args, writes=not dry_run, dry_run=dry_run, fmt=fmt) as run:
        selection = payroll_flow.Selection(run_id, pay_group, parse_date(period_end, "--period-end"), due, from_file)
        selection.validate()
        context, summary = run.context, run.summary
        started = time.monotonic()
        plan = payroll_flow.read_and_plan(context, selection)
        read_seconds = round(time.monotonic() - started, 3)
        will_ask = not yes and interactive(run.state) and bool(plan.to_write) and not dry_run
        with run.out.paged(show_all):
            render.payroll_plan(run.out, plan, dry_run=dry_run, detailed=dry_run or will_ask, show_all=show_all)
        summary.update(render.payroll_counts(plan))
        problems = plan.problems
        if dry_run or not plan.to_post:
            if not dry_run:
                # apply records refusals in the ledger audit even when nothing is to post, so
                # `audit <key>` shows a CLI refusal just as it shows a webhook one
                payroll_flow.apply(context, plan)
            render.payroll_export(run.out, plan, dry_run=dry_run)
            return run.finish(render.payroll_plan_summary(plan, dry_run=dry_run), ok=not problems, **summary)
        if plan.to_write and not confirmed(run, render.confirmation(plan, run.config.d365.base_url), yes=yes):
            return run.finish("nothing posted (not confirmed)")
        lines = sum(len(j.lines) for j in plan.to_write)
        started = time.monotonic()
        with run.out.progress("Posting journal lines", lines) as advance:
            result = payroll_flow.apply(context, plan, advance)
        render.posting_outcomes(run.out, result.outcomes)
        render.payroll_export(run.out, plan, dry_run=False, result=result)
        ukg = run.config.ukg
        summary.update(read_seconds=read_seconds, post_seconds=round(time.monotonic() - started, 3),
                       posted=render.posted_count(result), failed=len(result.failed),
                       d365_requests=context.requests.get("D365", 0), ukg_requests=context.requests.get("UKG", 0),
                       lines=lines, d365_concurrency=max(1, context.d365_limit.peak),
                       ukg_concurrency=ukg.prefetch_pages if plan.lines_read > ukg.page_size else 1,
                       d365_throttled=context.d365_limit.throttles, found_in_d365=render.found_in_d365(result))
        run.finish(render.payroll_summary(plan, result), ok=result.ok, **summary)


@app.command()
def replay(
    ctx: typer.Context,
    keys: list[str] = typer.Argument(None, help="Posting keys (or markers) from `ukg2d365 status`"),
    failed: bool = typer.Option(False, "--failed", help="Every failed, interrupted or unsent posting"),
    skip: list[str] = typer.Option(None, "--skip", metavar="KEY", help="Acknowledge a refused run that will never "
                                   "be posted (e.g. voided in UKG): --due and status leave it alone (repeatable)"),
    reason: str | None = typer.Option(None, "--reason", help="Why, with --skip: recorded in the audit"),
    dry_run: bool = dry_run_option("List what would be replayed or skipped; send and record nothing"),
    yes: bool = YES,
    fmt: str = FORMAT,
) -> None:
    """Re-run failed or named postings from their stored plans, safely (never a second copy).

    --skip KEY --reason TEXT acknowledges a refused run that can never be posted (a run UKG voided): its period
    is then done for post-payroll --due, status stops listing it, and the audit says who skipped it and why.
    A pay run's journals in the legal entities that bear part of its cost (KEY/@ENTITY) are skipped with it.

    Examples:

    \b
      ukg2d365 replay --failed --dry-run
      ukg2d365 replay C0MP1/BW/2026-11-13/GL20261113BW01 --yes
      ukg2d365 replay --failed --yes --format csv > replayed.csv
      ukg2d365 replay --skip C0MP1/BW/2026-11-13/GL20261113BW02 --reason "voided in UKG" --yes
    """
    args = {"keys": keys or [], "failed": failed, "skip": skip or [], "reason": reason}
    with command(ctx, "replay", args, writes=not dry_run, dry_run=dry_run, fmt=fmt) as run:
        selection = replay_flow.ReplaySelection(tuple(keys or ()), failed, tuple(skip or ()), reason)
        selection.validate()
        plan = replay_flow.read_and_plan(run.context, selection)
        render.replay_plan(run.out, plan, dry_run=dry_run)
        if selection.skip:
            if not dry_run:
                if plan.to_skip and not confirmed(run, render.skip_confirmation(plan), yes=yes):
                    return run.finish("nothing skipped (not confirmed)")
                replay_flow.apply(run.context, plan)
            render.replay_export(run.out, plan, dry_run=dry_run)
            return run.finish(render.skip_summary(plan, dry_run=dry_run), ok=not plan.not_skippable)
        if dry_run:
            render.replay_export(run.out, plan, dry_run=True)
            return run.finish(render.replay_plan_summary(plan, dry_run=True), ok=not plan.unknown)
        total = sum(p.line_count for p in plan.to_replay)
        if plan.to_replay and not confirmed(run, render.replay_confirmation(plan), yes=yes):
            return run.finish("nothing replayed (not confirmed)")
        with run.out.progress("Replaying journal lines", total) as advance:
            result = replay_flow.apply(run.context, plan, advance)
        render.replay_export(run.out, plan, dry_run=False, result=result)
        if not plan.to_replay:
            return run.finish(render.replay_plan_summary(plan, dry_run=False), ok=result.ok)
        render.posting_outcomes(run.out, result.outcomes, replay=True)
        run.finish(render.replay_summary(result), ok=result.ok)
