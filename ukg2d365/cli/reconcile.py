"""reconcile: read-only proof, per pay run, that D365 holds exactly what UKG paid (formats: render.reconcile).

Exit 0 only when every selected run matches; 1 otherwise; errors map through ``command()`` as everywhere.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ukg2d365.cli.app import FORMAT, FROM_FILE, PAY_GROUP, PERIOD_END, RUN_ID, app, command, parse_date
from ukg2d365.flows import reconcile as flow
from ukg2d365.render import reconcile as render

DATE_FROM = typer.Option(None, "--from", help="Period end on or after DATE (YYYY-MM-DD)")
DATE_TO = typer.Option(None, "--to", help="Period end on or before DATE (YYYY-MM-DD)")


@app.command("reconcile", short_help="Read-only proof, per pay run, that D365 holds exactly what UKG paid.")
def reconcile(
    ctx: typer.Context,
    run_id: str | None = RUN_ID,
    pay_group: str | None = PAY_GROUP,
    period_end: str | None = PERIOD_END,
    date_from: str | None = DATE_FROM,
    date_to: str | None = DATE_TO,
    fmt: str = FORMAT,
    from_file: Path | None = FROM_FILE,
) -> None:
    """Prove, per pay run, that D365 holds exactly what UKG paid. Read-only: never writes to D365 or UKG.

    For each selected pay run, compares UKG's GL lines (mapped and summarized as post-payroll does), what the
    ledger sent, and the D365 journal(s) carrying the run's marker (posted or not), by main account and
    dimensions. Verdicts: match, missing in D365, extra in D365, amount differs, duplicate journal.
    Without a selection: every posting in the ledger with a period end in the last 60 days, and every closed
    UKG period of ukg.pay_groups in those days whose GL run was never posted (missing in D365); with
    --from-file: every run the file holds. Exit 0 only when every selected run matches, 1 otherwise.

    Examples:

    \b
      ukg2d365 reconcile
      ukg2d365 reconcile --from 2026-11-01 --to 2026-11-30
      ukg2d365 reconcile --from 2026-11-01 --to 2026-11-30 --format csv > close-binder.csv
      ukg2d365 reconcile --run-id GL20261113BW01 --format json
      ukg2d365 reconcile --from-file gl-export.csv
    """
    args = {"run_id": run_id, "pay_group": pay_group, "period_end": period_end, "from": date_from,
            "to": date_to, "format": fmt, "from_file": str(from_file) if from_file else None}
    # No HTTP audit events and no lock: a read-only check neither grows the posting trails nor blocks a post.
    with command(ctx, "reconcile", args, writes=False, record_http=False, fmt=fmt) as run:
        selection = flow.ReconcileSelection(run_id, pay_group, parse_date(period_end, "--period-end"),
                                            parse_date(date_from, "--from"), parse_date(date_to, "--to"), from_file)
        selection.validate()
        report = flow.apply(run.context, flow.read_and_plan(run.context, selection))
        run.finish(ok=report.ok)
        run.summary.update(runs=len(report.runs), verdicts=report.counts(), ukg_lines_read=report.ukg_lines_read,
                           exit_code=run.code)
        if run.out.json_mode:
            render.show_events(run.out, report)
        elif run.out.exporting:
            render.show_warnings(run.out, report)
            render.export(run.out, report)
        else:
            render.show_table(run.out, report)
        run.out.summary(render.summary_text(report), **run.summary)
