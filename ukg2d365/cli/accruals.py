"""accrue-payroll: the month-end accrual of the labor of pay periods that straddle the month-end."""

from __future__ import annotations

import time

import typer

from ukg2d365.cli.app import (
    FORMAT,
    PAY_GROUP,
    SHOW_ALL,
    YES,
    app,
    command,
    confirmed,
    dry_run_option,
    interactive,
    parse_date,
)
from ukg2d365.flows import accrue_payroll as flow
from ukg2d365.render import accruals as render
from ukg2d365.render import payroll as render_payroll

DUE_HELP = ("For cron: per pay group, the latest month-end M with M <= today and today - M <= "
            "payroll.lookback_days that a pay period straddles and whose accrual the ledger does not hold as posted")


@app.command("accrue-payroll")
def accrue_payroll(
    ctx: typer.Context,
    month_end: str | None = typer.Option(None, "--month-end", help="The month-end to accrue, YYYY-MM-DD (the "
                                                                   "last day of a month)"),
    due: bool = typer.Option(False, "--due", help=DUE_HELP),
    pay_group: str | None = PAY_GROUP,
    dry_run: bool = dry_run_option("Show where the amounts come from and the journals; write nothing"),
    yes: bool = YES,
    show_all: bool = SHOW_ALL,
    fmt: str = FORMAT,
) -> None:
    """Accrue the month's share of each pay group's pay period that straddles the month-end, reversing.

    For each pay group (ukg.pay_groups, or --pay-group), the pay period that starts on or before the
    month-end and ends after it: accruals.basis decides the share of its days in the month (calendar days or
    workdays), taken of the amounts on accruals.accounts from that period's GL run, or, while UKG has none,
    from the pay group's latest closed run (an estimate; the output says which). One journal per pay group,
    legal entity and month-end: the mapped expense accounts and dimensions debited, accruals.liability_account
    credited, every line ReverseEntry Yes with ReverseDate the day after the month-end. Posted exactly once.

    Examples:

    \b
      ukg2d365 accrue-payroll --month-end 2026-11-30 --dry-run
      ukg2d365 accrue-payroll --month-end 2026-11-30 --dry-run --format csv > accrual.csv
      ukg2d365 accrue-payroll --month-end 2026-11-30 --yes
      ukg2d365 --json accrue-payroll --due          # cron, after post-payroll --due
    """
    args = {"month_end": month_end, "due": due, "pay_group": pay_group}
    with command(ctx, "accrue-payroll", args, writes=not dry_run, dry_run=dry_run, fmt=fmt) as run:
        selection = flow.AccrualSelection(parse_date(month_end, "--month-end"), due, pay_group)
        selection.validate()
        context, summary = run.context, run.summary
        plan = flow.read_and_plan(context, selection)
        will_ask = not yes and interactive(run.state) and bool(plan.to_write) and not dry_run
        with run.out.paged(show_all):
            render.accrual_plan(run.out, plan, dry_run=dry_run, detailed=dry_run or will_ask, show_all=show_all)
        summary.update(render_payroll.payroll_counts(plan))
        problems = plan.problems
        if dry_run or not plan.to_post:
            if not dry_run:
                flow.apply(context, plan)  # records the refusals in the ledger audit
            render_payroll.payroll_export(run.out, plan, dry_run=dry_run, command="accrue-payroll")
            return run.finish(render.accrual_plan_summary(plan, dry_run=dry_run), ok=not problems, **summary)
        lines = sum(len(j.lines) for j in plan.to_write)
        if plan.to_write and not confirmed(
                run, f"Post {len(plan.to_write)} accrual journal(s), {lines} lines, to D365 "
                     f"{run.config.d365.base_url}?", yes=yes):
            return run.finish("nothing posted (not confirmed)")
        started = time.monotonic()
        with run.out.progress("Posting accrual lines", lines) as advance:
            result = flow.apply(context, plan, advance)
        render_payroll.posting_outcomes(run.out, result.outcomes)
        render_payroll.payroll_export(run.out, plan, dry_run=False, result=result, command="accrue-payroll")
        summary.update(post_seconds=round(time.monotonic() - started, 3), posted=render_payroll.posted_count(result),
                       failed=len(result.failed), found_in_d365=render_payroll.found_in_d365(result))
        run.finish(render.accrual_summary(plan, result), ok=result.ok and not problems, **summary)
