"""post-payroll and replay: the commands that create general journals in D365."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from ukg2d365.cli.app import FROM_FILE, PAY_GROUP, PERIOD_END, RUN_ID, app, command, dry_run_option, parse_date
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
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation"),
    from_file: Path | None = FROM_FILE,
) -> None:
    """Read UKG GL runs, map and validate them, and create one general journal per pay run in D365."""
    args = {"run_id": run_id, "pay_group": pay_group, "period_end": period_end, "due": due,
            "from_file": str(from_file) if from_file else None}
    with command(ctx, "post-payroll", args, writes=not dry_run, dry_run=dry_run) as run:
        selection = payroll_flow.Selection(run_id, pay_group, parse_date(period_end, "--period-end"), due, from_file)
        selection.validate()
        context, summary = run.context, run.summary
        started = time.monotonic()
        plan = payroll_flow.read_and_plan(context, selection)
        read_seconds = round(time.monotonic() - started, 3)
        will_ask = not yes and sys.stdin.isatty() and not run.out.json_mode
        render.payroll_plan(run.out, plan, dry_run=dry_run, detailed=dry_run or will_ask)
        summary.update(render.payroll_counts(plan))
        problems = bool(plan.refused or plan.unattributed_errors)
        if dry_run or not plan.to_post:
            if not dry_run:
                # apply records refusals in the ledger audit even when nothing is to post, so
                # `audit <key>` shows a CLI refusal just as it shows a webhook one
                payroll_flow.apply(context, plan)
            return run.finish(render.payroll_plan_summary(plan, dry_run=dry_run), ok=not problems, **summary)
        lines = sum(len(j.lines) for j in plan.to_write)
        if will_ask and plan.to_write and not typer.confirm(
                f"Post {len(plan.to_write)} journal(s), {lines} lines, to D365 {run.config.d365.base_url} "
                f"({run.config.d365.legal_entity})?", default=False):
            return run.finish("nothing posted (not confirmed)")
        started = time.monotonic()
        with run.out.progress("Posting journal lines", lines) as advance:
            result = payroll_flow.apply(context, plan, advance)
        render.posting_outcomes(run.out, result.outcomes)
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
    dry_run: bool = dry_run_option("List what would be replayed; send nothing"),
) -> None:
    """Re-run failed or named postings from their stored plans, safely (never a second copy)."""
    with command(ctx, "replay", {"keys": keys or [], "failed": failed}, writes=not dry_run, dry_run=dry_run) as run:
        plan = replay_flow.read_and_plan(run.context, replay_flow.ReplaySelection(tuple(keys or ()), failed))
        render.replay_plan(run.out, plan, dry_run=dry_run)
        if dry_run:
            return run.finish(render.replay_plan_summary(plan, dry_run=True), ok=not plan.unknown)
        total = sum(p.line_count for p in plan.to_replay)
        with run.out.progress("Replaying journal lines", total) as advance:
            result = replay_flow.apply(run.context, plan, advance)
        if not plan.to_replay:
            return run.finish(render.replay_plan_summary(plan, dry_run=False), ok=result.ok)
        render.posting_outcomes(run.out, result.outcomes, replay=True)
        run.finish(render.replay_summary(result), ok=result.ok)
