"""sync-dimensions and sync-employees for people and for --json: the plan, each outcome, the summary line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ukg2d365.render import Column, Output, Rows, table

if TYPE_CHECKING:  # only the types: rendering never runs a flow
    from ukg2d365.flows.sync_dimensions import DimensionPlan, DimensionResult
    from ukg2d365.flows.sync_employees import EmployeePlan, EmployeeResult

PREVIEW_ROWS = 60


# ---------------------------------------------------------------------- sync-dimensions


def dimension_plan(out: Output, plan: DimensionPlan, *, dry_run: bool) -> None:
    _dimension_events(out, plan, dry_run=dry_run)
    if plan.to_create:
        created = table(f"{'Would create' if dry_run else 'To create'} in D365",
                        ("Dimension", "Value", "Description", "UKG code(s)", "Entity set"))
        for value in plan.to_create[:PREVIEW_ROWS]:
            created.add_row(value.dimension, value.value, value.description, ", ".join(value.ukg_codes),
                            value.create_in)
        if len(plan.to_create) > PREVIEW_ROWS:
            created.add_row(f"... {len(plan.to_create) - PREVIEW_ROWS} more", "", "", "", "")
        out.table(created)
    if plan.present:
        by_dim: dict[str, list[str]] = {}
        for value in plan.present:
            by_dim.setdefault(value.dimension, []).append(value.value)
        present = table("Already present in D365", ("Dimension", "Count", "Values"))
        for name, values in sorted(by_dim.items()):
            present.add_row(name, str(len(values)), ", ".join(values[:PREVIEW_ROWS]) +
                            (" ..." if len(values) > PREVIEW_ROWS else ""))
        out.table(present)
    if plan.skipped:
        skipped_table = table("Skipped", ("Dimension", "UKG code", "Why"))
        for skipped in plan.skipped:
            skipped_table.add_row(skipped.dimension, skipped.code, skipped.reason)
        out.table(skipped_table)
    if plan.missing_main_accounts:
        from ukg2d365.flows.sync_dimensions import WHERE_MAIN_ACCOUNTS

        out.event("main accounts", missing=plan.missing_main_accounts)
        out.warn(f"main accounts named in mapping.main_accounts but not in D365: "
                 f"{', '.join(plan.missing_main_accounts)} (create them in {WHERE_MAIN_ACCOUNTS}, or fix the mapping)")


def _dimension_events(out: Output, plan: DimensionPlan, *, dry_run: bool) -> None:
    """--json: one plan event per value, whatever happens to it."""
    verb = "would create" if dry_run else "to create"
    for value in plan.to_create:
        out.event("plan", status=verb, dimension=value.dimension, value=value.value, description=value.description,
                  ukg_codes=list(value.ukg_codes), entity_set=value.create_in)
    for value in plan.present:
        out.event("plan", status="present", dimension=value.dimension, value=value.value,
                  ukg_codes=list(value.ukg_codes))
    for skipped in plan.skipped:
        out.event("plan", status="skipped", dimension=skipped.dimension, code=skipped.code, reason=skipped.reason)


def dimension_counts(plan: DimensionPlan) -> dict[str, int]:
    """What the run's summary records about the plan."""
    return {"to_create": len(plan.to_create), "present": len(plan.present), "skipped": len(plan.skipped),
            "missing_main_accounts": len(plan.missing_main_accounts), "org_levels_read": plan.org_levels_read}


def dimension_summary(plan: DimensionPlan, result: DimensionResult | None = None, *, dry_run: bool = False) -> str:
    """The summary line: what would be created (dry run), nothing to create, or what was created."""
    rest = (f"{len(plan.present)} already present; {len(plan.skipped)} skipped; "
            f"{len(plan.missing_main_accounts)} main account(s) missing")
    if result is not None and plan.to_create:
        return f"created {len(result.created)} dimension value(s); {len(result.failed)} failed; " + rest
    what = "dry run: would create" if dry_run else "nothing to create:"
    return f"{what} {len(plan.to_create)} dimension value(s); " + rest


def dimension_outcomes(out: Output, result: DimensionResult) -> None:
    for outcome in result.outcomes:
        v = outcome.value
        out.event("dimension", dimension=v.dimension, value=v.value,
                  status="created" if outcome.created else "failed", error=outcome.error)
        if outcome.created:
            out.say(f"{v.dimension} {v.value} ({v.description})", lead=("created", "green"))
        else:
            out.warn(f"{v.dimension} {v.value}: {outcome.error}")


DIMENSION_COLUMNS = (
    Column("status", "Status"), Column("dimension", "Dimension"), Column("value", "Value"),
    Column("description", "Description"), Column("ukg_codes", "UKG code(s)"), Column("entity_set", "Entity set"),
    Column("reason", "Why"), Column("error", "Error"),
)


def dimension_confirmation(plan: DimensionPlan) -> str:
    names = sorted({v.dimension for v in plan.to_create})
    return f"Create {len(plan.to_create)} dimension value(s) ({', '.join(names)}) in D365?"


def dimension_export(out: Output, plan: DimensionPlan, *, dry_run: bool, result: DimensionResult | None = None) -> None:
    """--format csv|json: one row per dimension value, whatever happens to it."""
    outcomes = {(o.value.dimension, o.value.value): o for o in result.outcomes} if result is not None else {}
    rows = Rows("values", "Dimension values", DIMENSION_COLUMNS)
    for value in plan.to_create:
        o = outcomes.get((value.dimension, value.value))
        status = ("would create" if dry_run else "not sent") if o is None else "created" if o.created else "failed"
        rows.add(status=status, dimension=value.dimension, value=value.value, description=value.description,
                 ukg_codes=list(value.ukg_codes), entity_set=value.create_in, error=o.error if o else None)
    for value in plan.present:
        rows.add(status="present", dimension=value.dimension, value=value.value, ukg_codes=list(value.ukg_codes))
    for skipped in plan.skipped:
        rows.add(status="skipped", dimension=skipped.dimension, ukg_codes=[skipped.code], reason=skipped.reason)
    out.export(rows, command="sync-dimensions", dry_run=dry_run, missing_main_accounts=plan.missing_main_accounts)


# ---------------------------------------------------------------------- sync-employees


def employee_plan(out: Output, plan: EmployeePlan, *, dry_run: bool) -> None:
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
        sent = table(f"{'Would send' if dry_run else 'To send'} to D365", ("Personnel number", "Change", "Detail"))
        for action in writes[:PREVIEW_ROWS]:
            sent.add_row(action.personnel_number, labels[action.kind], action.reason)
        if len(writes) > PREVIEW_ROWS:
            sent.add_row(f"... {len(writes) - PREVIEW_ROWS} more", "", "")
        out.table(sent)
    ignored = plan.of(IGNORED)
    if ignored and out.verbose:
        not_created = table("Not created", ("Personnel number", "Why"))
        for action in ignored:
            not_created.add_row(action.personnel_number, action.reason)
        out.table(not_created)
    skipped = plan.of(SKIPPED)
    if skipped:
        skipped_table = table("Skipped", ("Personnel number", "Why"))
        for action in skipped:
            skipped_table.add_row(action.personnel_number, action.reason)
        out.table(skipped_table)


def employee_described(plan: EmployeePlan) -> str:
    """The counts of a plan, in the words every sync-employees summary line ends with."""
    counts = plan.counts()
    return (f"{counts['create']} hire(s), {counts['update']} dimension change(s), "
            f"{counts['terminate']} termination(s); {counts['unchanged']} unchanged; "
            f"{counts['ignored']} not created; {counts['skipped']} skipped; "
            f"{plan.records_read} UKG record(s) read")


def employee_summary(plan: EmployeePlan, result: EmployeeResult | None = None, *, dry_run: bool = False) -> str:
    if result is not None and plan.writes:
        sent = len(result.outcomes) - len(result.failed)
        return f"sent {sent} change(s), {len(result.failed)} failed: " + employee_described(plan)
    return ("dry run: would send " if dry_run else "nothing to send: ") + employee_described(plan)


def employee_outcomes(out: Output, result: EmployeeResult) -> None:
    from ukg2d365.flows.sync_employees import CREATE, TERMINATE, UPDATE

    done = {CREATE: "hired", UPDATE: "updated", TERMINATE: "terminated"}
    for outcome in result.outcomes:
        action = outcome.action
        out.event("employee", personnel_number=action.personnel_number, kind=action.kind,
                  status="sent" if outcome.ok else "failed", employment_id=outcome.employment_id,
                  error=outcome.error)
        if outcome.ok:
            out.say(f"{action.personnel_number}: {action.reason}", lead=(done[action.kind], "green"))
        else:
            out.warn(f"employee {action.personnel_number} ({action.kind}): {outcome.error}")


EMPLOYEE_COLUMNS = (
    Column("personnel_number", "Personnel number"), Column("change", "Change"), Column("status", "Status"),
    Column("detail", "Detail"), Column("employment_id", "Employment"), Column("error", "Error"),
)


def employee_confirmation(plan: EmployeePlan) -> str:
    counts = plan.counts()
    return (f"Send {len(plan.writes)} change(s) to D365 ({counts['create']} hire(s), {counts['update']} dimension "
            f"change(s), {counts['terminate']} termination(s))?")


def employee_export(out: Output, plan: EmployeePlan, *, dry_run: bool, result: EmployeeResult | None = None) -> None:
    """--format csv|json: one row per employee the plan sends or skips (unchanged ones too with --verbose)."""
    from ukg2d365.flows.sync_employees import UNCHANGED

    outcomes = {id(o.action): o for o in result.outcomes} if result is not None else {}
    rows = Rows("employees", "Employees", EMPLOYEE_COLUMNS)
    for action in plan.actions:
        if action.kind == UNCHANGED and not out.verbose:
            continue
        o = outcomes.get(id(action)) if action.writes else None
        if not action.writes:
            status = action.kind
        elif o is None:
            status = "would send" if dry_run else "not sent"
        else:
            status = "sent" if o.ok else "failed"
        rows.add(personnel_number=action.personnel_number, change=action.kind, status=status, detail=action.reason,
                 employment_id=o.employment_id if o else None, error=o.error if o else None)
    out.export(rows, command="sync-employees", dry_run=dry_run, records_read=plan.records_read,
               changed_since=plan.changed_since, counts=plan.counts())
