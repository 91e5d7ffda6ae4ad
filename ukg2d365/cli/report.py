"""report: the month-end labor report finance attaches to the close (one self-contained HTML page, or CSV).

Read-only, like reconcile, whose verdicts and totals it shows; exit 0 only when every pay run of the range
matches D365, 1 otherwise (the report is written either way).
"""

from __future__ import annotations

from pathlib import Path

import typer

from ukg2d365.cli.app import PAY_GROUP, app, command, parse_date
from ukg2d365.errors import UsageError
from ukg2d365.flows import report as flow
from ukg2d365.render import report as render

REPORT_FORMATS = ("html", "csv")


@app.command("report")
def report(
    ctx: typer.Context,
    date_from: str = typer.Option(..., "--from", help="First pay period end of the report (YYYY-MM-DD)",
                                  show_default=False),
    date_to: str = typer.Option(..., "--to", help="Last pay period end of the report (YYYY-MM-DD)",
                                show_default=False),
    pay_group: str | None = PAY_GROUP,
    fmt: str = typer.Option("html", "--format", help="html (one self-contained page) | csv"),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the report to FILE [default: stdout]",
                                       show_default=False),
) -> None:
    """A month-end labor report: UKG vs D365 per pay run with reconcile's verdicts, labor cost by cost center
    and department against the previous period, and a chart of labor cost per pay period. Read-only.

    The HTML page is self-contained (inline CSS and SVG, no script, nothing fetched): attach it to the close.
    Exit 0 only when every pay run of the range matches D365, 1 otherwise; the report is written either way.

    Examples:

    \b
      ukg2d365 report --from 2026-11-01 --to 2026-11-30 -o labor-2026-11.html
      ukg2d365 report --from 2026-11-01 --to 2026-11-30 --format csv > labor-2026-11.csv
      ukg2d365 --json report --from 2026-10-01 --to 2026-12-31 --pay-group BW -o q4.html
    """
    args = {"from": date_from, "to": date_to, "pay_group": pay_group, "format": fmt,
            "output": str(output) if output else None}
    with command(ctx, "report", args, writes=False, record_http=False, fmt=fmt, formats=REPORT_FORMATS,
                 destination=output) as run:
        start, end = parse_date(date_from, "--from"), parse_date(date_to, "--to")
        if start is None or end is None:
            raise UsageError("report needs --from and --to")
        if output is not None and not output.parent.is_dir():
            raise UsageError(f"--output {output}: folder {output.parent} does not exist")
        labor = flow.apply(run.context, flow.read_and_plan(run.context, flow.ReportSelection(start, end, pay_group)))
        if fmt == "html":
            run.out.export_text(render.html(labor))
        else:
            render.export_csv(run.out, labor)
        render.show_warnings(run.out, labor)
        run.finish(render.summary_text(labor, output), ok=labor.ok, runs=len(labor.runs),
                   verdicts=labor.reconciliation.counts(), labor_cost=labor.labor_total,
                   previous_labor_cost=labor.previous_labor_total, output=str(output) if output else None)
