"""sync-dimensions and sync-employees: keep D365's dimension values and employments aligned with UKG.

Same shape as post-payroll: read -> plan -> render the plan -> ask on a terminal -> apply (also when there is
nothing to send, so skips are audited) -> one summary line; exit 0 ok, 1 some records skipped or failed, 2
D365's set-up does not match the config.
"""

from __future__ import annotations

import typer

from ukg2d365.cli.app import FORMAT, YES, app, command, confirmed, dry_run_option, parse_date
from ukg2d365.flows import sync_dimensions as dimensions_flow
from ukg2d365.flows import sync_employees as employees_flow
from ukg2d365.render import sync as render


@app.command("sync-dimensions")
def sync_dimensions(
    ctx: typer.Context,
    dry_run: bool = dry_run_option("Show the plan; create nothing in D365"),
    yes: bool = YES,
    fmt: str = FORMAT,
) -> None:
    """Create the D365 dimension values that UKG org levels need; check D365's dimension setup first.

    Examples:

    \b
      ukg2d365 sync-dimensions --dry-run
      ukg2d365 sync-dimensions --yes
      ukg2d365 sync-dimensions --dry-run --format csv > dimensions.csv
    """
    with command(ctx, "sync-dimensions", {"dry_run": dry_run}, writes=not dry_run, dry_run=dry_run, fmt=fmt) as run:
        context = run.context
        plan = dimensions_flow.read_and_plan(context, dimensions_flow.DimensionSelection())
        render.dimension_plan(run.out, plan, dry_run=dry_run)
        run.summary.update(render.dimension_counts(plan))
        if dry_run:
            render.dimension_export(run.out, plan, dry_run=True)
            return run.finish(render.dimension_summary(plan, dry_run=True), ok=not plan.problems, **run.summary)
        if plan.to_create and not confirmed(run, render.dimension_confirmation(plan), yes=yes):
            return run.finish("nothing created (not confirmed)")
        with run.out.progress("Creating dimension values", len(plan.to_create)) as advance:
            result = dimensions_flow.apply(context, plan, advance)
        render.dimension_export(run.out, plan, dry_run=False, result=result)
        if not plan.to_create:
            return run.finish(render.dimension_summary(plan), ok=not plan.problems, **run.summary)
        render.dimension_outcomes(run.out, result)
        run.summary.update(created=len(result.created), failed=len(result.failed),
                           d365_requests=context.requests.get("D365", 0), ukg_requests=context.requests.get("UKG", 0))
        run.finish(render.dimension_summary(plan, result), ok=result.ok, **run.summary)


@app.command("sync-employees")
def sync_employees(
    ctx: typer.Context,
    dry_run: bool = dry_run_option("Show the plan; send nothing to D365"),
    since: str | None = typer.Option(None, "--since", help="Read UKG records changed on or after DATE (YYYY-MM-DD) "
                                     "[default: the day before the last clean sync, else all]"),
    yes: bool = YES,
    fmt: str = FORMAT,
) -> None:
    """Create hires, set terminations and keep default dimensions of D365 employments aligned with UKG.

    Examples:

    \b
      ukg2d365 sync-employees --dry-run
      ukg2d365 sync-employees --since 2026-11-01 --yes
      ukg2d365 sync-employees --dry-run --format json > employees.json
    """
    args = {"dry_run": dry_run, "since": since}
    with command(ctx, "sync-employees", args, writes=not dry_run, dry_run=dry_run, fmt=fmt) as run:
        since_date = parse_date(since, "--since")
        context = run.context
        plan = employees_flow.read_and_plan(context, employees_flow.EmployeeSelection(since_date))
        render.employee_plan(run.out, plan, dry_run=dry_run)
        run.summary.update({"records_read": plan.records_read, "changed_since": plan.changed_since, **plan.counts()})
        if dry_run:
            render.employee_export(run.out, plan, dry_run=True)
            return run.finish(render.employee_summary(plan, dry_run=True), ok=not plan.skipped, **run.summary)
        if plan.writes and not confirmed(run, render.employee_confirmation(plan), yes=yes):
            return run.finish("nothing sent (not confirmed)")
        with run.out.progress("Sending employees", len(plan.writes)) as advance:
            # also with nothing to send: employees D365 already matches still get their hash remembered
            result = employees_flow.apply(context, plan, advance)
        render.employee_export(run.out, plan, dry_run=False, result=result)
        if not plan.writes:
            return run.finish(render.employee_summary(plan), ok=not plan.skipped, **run.summary)
        render.employee_outcomes(run.out, result)
        sent = len(result.outcomes) - len(result.failed)
        run.summary.update(sent=sent, failed=len(result.failed), d365_requests=context.requests.get("D365", 0),
                           ukg_requests=context.requests.get("UKG", 0))
        run.finish(render.employee_summary(plan, result), ok=result.ok, **run.summary)
