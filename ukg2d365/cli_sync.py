"""The sync-dimensions and sync-employees commands, registered on the main Typer app by ``register``.

Same shape as post-payroll in ``cli.py``: load config, start a run in the ledger, take the lock unless
--dry-run, read -> plan -> render the plan -> apply, one summary line, and the exit status from the
outcome (0 ok, 1 some records skipped or failed, 2 D365 setup does not match the config).
"""

from __future__ import annotations

from typing import Any

import typer

from ukg2d365.errors import ExitStatus
from ukg2d365.render import Output, Table

PREVIEW_ROWS = 60


def register(app: typer.Typer) -> None:
    """Add sync-dimensions and sync-employees to ``app`` (once)."""
    existing = {c.name for c in app.registered_commands}
    if "sync-dimensions" not in existing:
        app.command("sync-dimensions")(sync_dimensions)
    if "sync-employees" not in existing:
        app.command("sync-employees")(sync_employees)


def _table(title: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


# ---------------------------------------------------------------------- sync-dimensions


def _show_dimension_plan(out: Output, plan: Any, dry_run: bool) -> None:
    verb = "would create" if dry_run else "to create"
    for value in plan.to_create:
        out.event("plan", status=verb, dimension=value.dimension, value=value.value, description=value.description,
                  ukg_codes=list(value.ukg_codes), entity_set=value.create_in)
    for value in plan.present:
        out.event("plan", status="present", dimension=value.dimension, value=value.value,
                  ukg_codes=list(value.ukg_codes))
    for skipped in plan.skipped:
        out.event("plan", status="skipped", dimension=skipped.dimension, code=skipped.code, reason=skipped.reason)
    if plan.to_create:
        table = _table(f"{'Would create' if dry_run else 'To create'} in D365",
                       ("Dimension", "Value", "Description", "UKG code(s)", "Entity set"))
        for value in plan.to_create[:PREVIEW_ROWS]:
            table.add_row(value.dimension, value.value, value.description, ", ".join(value.ukg_codes),
                          value.create_in)
        if len(plan.to_create) > PREVIEW_ROWS:
            table.add_row(f"... {len(plan.to_create) - PREVIEW_ROWS} more", "", "", "", "")
        out.table(table)
    if plan.present:
        by_dim: dict[str, list[str]] = {}
        for value in plan.present:
            by_dim.setdefault(value.dimension, []).append(value.value)
        table = _table("Already present in D365", ("Dimension", "Count", "Values"))
        for name, values in sorted(by_dim.items()):
            table.add_row(name, str(len(values)), ", ".join(values[:PREVIEW_ROWS]) +
                          (" ..." if len(values) > PREVIEW_ROWS else ""))
        out.table(table)
    if plan.skipped:
        table = _table("Skipped", ("Dimension", "UKG code", "Why"))
        for skipped in plan.skipped:
            table.add_row(skipped.dimension, skipped.code, skipped.reason)
        out.table(table)
    if plan.missing_main_accounts:
        from ukg2d365.flows.sync_dimensions import WHERE_MAIN_ACCOUNTS

        out.event("main accounts", missing=plan.missing_main_accounts)
        out.warn(f"main accounts named in mapping.main_accounts but not in D365: "
                 f"{', '.join(plan.missing_main_accounts)} (create them in {WHERE_MAIN_ACCOUNTS}, or fix the mapping)")


def sync_dimensions(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan; create nothing in D365"),
) -> None:
    """Create the D365 dimension values that UKG org levels need; check D365's dimension setup first."""
    from ukg2d365.cli import _guard, _state, recorded_run

    state = _state(ctx)

    def body() -> int:
        from ukg2d365.flows.sync_dimensions import apply, read_and_plan

        command = "sync-dimensions" + (" --dry-run" if dry_run else "")

        with recorded_run(state, command, {"dry_run": dry_run}, lock=not dry_run) as run:
            context, summary = run.context, run.summary
            plan = read_and_plan(context)
            _show_dimension_plan(state.out, plan, dry_run)
            summary.update(to_create=len(plan.to_create), present=len(plan.present), skipped=len(plan.skipped),
                           missing_main_accounts=len(plan.missing_main_accounts),
                           org_levels_read=plan.org_levels_read)
            if dry_run or not plan.to_create:
                what = "dry run: would create" if dry_run else "nothing to create:"
                state.out.summary(f"{what} {len(plan.to_create)} dimension value(s); {len(plan.present)} already "
                                  f"present; {len(plan.skipped)} skipped; {len(plan.missing_main_accounts)} main "
                                  f"account(s) missing", **summary)
                run.code = int(ExitStatus.RECORDS_FAILED if plan.problems else ExitStatus.OK)
                return run.code
            with state.out.progress("Creating dimension values", len(plan.to_create)) as advance:
                result = apply(context, plan, advance)
            for outcome in result.outcomes:
                v = outcome.value
                state.out.event("dimension", dimension=v.dimension, value=v.value,
                                status="created" if outcome.created else "failed", error=outcome.error)
                if outcome.created:
                    state.out.say(f"{v.dimension} {v.value} ({v.description})", lead=("created", "green"))
                else:
                    state.out.warn(f"{v.dimension} {v.value}: {outcome.error}")
            summary.update(created=len(result.created), failed=len(result.failed),
                           d365_requests=context.requests.get("D365", 0), ukg_requests=context.requests.get("UKG", 0))
            state.out.summary(f"created {len(result.created)} dimension value(s); {len(result.failed)} failed; "
                              f"{len(plan.present)} already present; {len(plan.skipped)} skipped; "
                              f"{len(plan.missing_main_accounts)} main account(s) missing", **summary)
            run.code = int(ExitStatus.OK if result.ok else ExitStatus.RECORDS_FAILED)
            return run.code

    _guard(state, body)


# ---------------------------------------------------------------------- sync-employees


def _show_employee_plan(out: Output, plan: Any, dry_run: bool) -> None:
    from ukg2d365.flows.sync_employees import CREATE, IGNORED, SKIPPED, TERMINATE, UNCHANGED, UPDATE

    labels = {CREATE: "hire", UPDATE: "update dimension", TERMINATE: "terminate"}
    for action in plan.actions:
        if action.kind == UNCHANGED and not out.verbose:
            continue
        status = ("would " if dry_run and action.writes else "") + action.kind
        out.event("plan", status=status, personnel_number=action.personnel_number, reason=action.reason,
                  body=action.body)
    writes = plan.writes
    if writes:
        table = _table(f"{'Would send' if dry_run else 'To send'} to D365",
                       ("Personnel number", "Change", "Detail"))
        for action in writes[:PREVIEW_ROWS]:
            table.add_row(action.personnel_number, labels[action.kind], action.reason)
        if len(writes) > PREVIEW_ROWS:
            table.add_row(f"... {len(writes) - PREVIEW_ROWS} more", "", "")
        out.table(table)
    ignored = plan.of(IGNORED)
    if ignored and out.verbose:
        table = _table("Not created", ("Personnel number", "Why"))
        for action in ignored:
            table.add_row(action.personnel_number, action.reason)
        out.table(table)
    skipped = plan.of(SKIPPED)
    if skipped:
        table = _table("Skipped", ("Personnel number", "Why"))
        for action in skipped:
            table.add_row(action.personnel_number, action.reason)
        out.table(table)


def sync_employees(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan; send nothing to D365"),
    since: str | None = typer.Option(None, "--since", help="Read UKG records changed on or after DATE (YYYY-MM-DD) "
                                     "[default: the day before the last clean sync, else all]"),
) -> None:
    """Create hires, set terminations and keep default dimensions of D365 employments aligned with UKG."""
    from ukg2d365.cli import _guard, _parse_date, _state, recorded_run

    state = _state(ctx)

    def body() -> int:
        from ukg2d365.flows.sync_employees import CREATE, TERMINATE, UPDATE, apply, read_and_plan

        done = {CREATE: "hired", UPDATE: "updated", TERMINATE: "terminated"}
        since_date = _parse_date(since, "--since")
        command = "sync-employees" + (" --dry-run" if dry_run else "")

        with recorded_run(state, command, {"dry_run": dry_run, "since": since}, lock=not dry_run) as run:
            context, summary = run.context, run.summary
            plan = read_and_plan(context, since_date)
            _show_employee_plan(state.out, plan, dry_run)
            counts = plan.counts()
            summary.update({"records_read": plan.records_read, "changed_since": plan.changed_since, **counts})
            described = (f"{counts['create']} hire(s), {counts['update']} dimension change(s), "
                         f"{counts['terminate']} termination(s); {counts['unchanged']} unchanged; "
                         f"{counts['ignored']} not created; {counts['skipped']} skipped; "
                         f"{plan.records_read} UKG record(s) read")
            if dry_run or not plan.writes:
                if not dry_run:
                    # Employees D365 already matches still get their hash remembered.
                    apply(context, plan)
                state.out.summary(("dry run: would send " if dry_run else "nothing to send: ") + described, **summary)
                run.code = int(ExitStatus.RECORDS_FAILED if plan.skipped else ExitStatus.OK)
                return run.code
            with state.out.progress("Sending employees", len(plan.writes)) as advance:
                result = apply(context, plan, advance)
            for outcome in result.outcomes:
                action = outcome.action
                state.out.event("employee", personnel_number=action.personnel_number, kind=action.kind,
                                status="sent" if outcome.ok else "failed", employment_id=outcome.employment_id,
                                error=outcome.error)
                if outcome.ok:
                    state.out.say(f"{action.personnel_number}: {action.reason}", lead=(done[action.kind], "green"))
                else:
                    state.out.warn(f"employee {action.personnel_number} ({action.kind}): {outcome.error}")
            sent = len(result.outcomes) - len(result.failed)
            summary.update(sent=sent, failed=len(result.failed), d365_requests=context.requests.get("D365", 0),
                           ukg_requests=context.requests.get("UKG", 0))
            state.out.summary(f"sent {sent} change(s), {len(result.failed)} failed: " + described, **summary)
            run.code = int(ExitStatus.OK if result.ok else ExitStatus.RECORDS_FAILED)
            return run.code

    _guard(state, body)
