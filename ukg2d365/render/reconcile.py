"""reconcile's report in three formats, written to stdout.

* ``table`` (default): one rich table; per pay run a totals row (UKG, D365 and ledger debit/credit, the
  difference, the verdict), and below a run that does not match only its differing account rows; notes
  follow the table, the summary line comes last.
* ``csv``: fixed columns (``CSV_COLUMNS``); per run one ``run`` row with the totals, then one ``line`` row
  per differing account. Nothing else goes to stdout (warnings and the summary go to stderr), so the file
  can go straight into the close binder.
* ``json`` (also whenever the global ``--json`` is given): JSON lines, one ``{"event": "reconcile", ...}``
  object per run with its totals, journals, differing lines and notes, then one ``{"event": "summary"}``.
  Amounts are strings (exact decimals).
"""

from __future__ import annotations

import csv
import sys
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rich import box
from rich.text import Text

from ukg2d365.money import quantum
from ukg2d365.render import PREVIEW_ROWS, Output, Table, styled

if TYPE_CHECKING:  # only the types: the flow (and its HTTP stack) is imported when the command runs
    from ukg2d365.flows.reconcile import Amounts, LineDifference, ReconcileReport, RunReconciliation

CSV_COLUMNS = (
    "row", "company", "pay_group", "period_end", "run_id", "legal_entity", "marker", "journals", "ledger_status",
    "verdict", "account", "ukg_debit", "ukg_credit", "d365_debit", "d365_credit", "ledger_debit", "ledger_credit",
    "difference_debit", "difference_credit", "notes",
)


# ---------------------------------------------------------------------- shared


def _run_label(run: RunReconciliation) -> str:
    k = run.key
    if k.kind == "accrual":
        return f"accrual {k.pay_group} {k.period_end} {run.legal_entity.upper()}"
    return f"{k.pay_group} {k.period_end} {k.run_id} {run.legal_entity.upper()}".rstrip()


def summary_text(report: ReconcileReport) -> str:
    if not report.runs:
        if report.selection.explicit:
            return "reconcile: no pay run matches the selection, nothing proven"
        return f"reconcile: nothing posted with a period end since {report.window_start}: nothing to reconcile"
    counts = ", ".join(f"{n} {verdict}" for verdict, n in report.counts().items() if n)
    if report.ok:
        return f"reconcile: all {len(report.runs)} pay run(s) match ({counts})"
    return f"reconcile: {len(report.runs)} pay run(s): {counts}"


def show_warnings(out: Output, report: ReconcileReport) -> None:
    for message in report.warnings:
        out.warn(message)
    if not report.runs and report.selection.explicit:
        out.warn("no pay run in UKG or in the ledger matches the selection")


def _exact(amount: Decimal, precision: int) -> str:
    """Plain decimal text at the currency's scale (0 -> 0.00) unless that would drop digits; never rounded."""
    scaled = amount.quantize(quantum(precision))
    return str(scaled if scaled == amount else amount)


def _money(amount: Decimal) -> str:
    return f"{amount:,}" if amount else ""  # exact: never rounded for display


# ---------------------------------------------------------------------- table


def show_table(out: Output, report: ReconcileReport) -> None:
    show_warnings(out, report)
    if not report.runs:
        return
    table = Table(title="Reconciliation: UKG vs D365 (and what the ledger sent)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("Pay run / account and dimensions", overflow="fold")
    table.add_column("Verdict", overflow="fold")
    for column in ("UKG debit", "UKG credit", "D365 debit", "D365 credit"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("Difference", justify="right")
    table.add_column("Ledger sent", justify="right")
    for run in report.runs:
        colour = "green" if run.matches else "red"
        journals = ", ".join(j.journal_batch_number + (" (posted)" if j.posted else "") for j in run.journals)
        label = Text.assemble((_run_label(run), "bold"), f"\njournal {journals}" if journals else "")
        table.add_row(label, styled(run.verdict, colour),
                      *_amount_cells(run.ukg_total, run.d365_total, run.ledger_total),
                      end_section=not run.differences)
        rows = _expanded(run)
        for i, row in enumerate(rows):
            table.add_row(f"  {row.account}", styled(row.verdict, "yellow"),
                          *_amount_cells(row.ukg, row.d365, row.ledger), end_section=i == len(rows) - 1)
        if rows and len(rows) < len(run.differences):
            table.add_row(f"  ... {len(run.differences) - len(rows)} more", "", end_section=True)
        elif not rows and run.differences:
            table.add_section()
    out.table(table)
    for run in report.runs:
        for note in run.notes:
            out.say(f"{_run_label(run)}: {note}", style=None if run.matches else "yellow")


def _expanded(run: RunReconciliation) -> list[LineDifference]:
    """The differing rows worth a line each: none when the whole journal is absent or doubled (every row would
    differ, the totals row and its note say it all), at most PREVIEW_ROWS otherwise."""
    if len(run.journals) != 1:
        return []
    return run.differences[:PREVIEW_ROWS]


def _amount_cells(ukg: Amounts, d365: Amounts, ledger: Amounts | None) -> list[str]:
    return [_money(ukg.debit), _money(ukg.credit), _money(d365.debit), _money(d365.credit),
            _difference(d365 - ukg), _ledger_cell(ukg, d365, ledger)]


def _difference(diff: Amounts) -> str:
    """D365 minus UKG, per side: 'dr +1.00', 'cr -12.34', or both."""
    parts = [f"{side} {amount:+,}" for side, amount in (("dr", diff.debit), ("cr", diff.credit)) if amount]
    return " ".join(parts)


def _ledger_cell(ukg: Amounts, d365: Amounts, ledger: Amounts | None) -> str:
    # Said in words when it equals a side already shown: keeps the table narrow enough for a terminal.
    if ledger is None:
        return "never sent"
    if ledger == d365 == ukg:
        return "same"
    if ledger == d365:
        return "= D365"
    if ledger == ukg:
        return "= UKG"
    return f"dr {_money(ledger.debit) or '0.00'} cr {_money(ledger.credit) or '0.00'}"


# ---------------------------------------------------------------------- csv


def write_csv(report: ReconcileReport) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for run in report.runs:
        k = run.key
        common = {
            "company": k.company, "pay_group": k.pay_group, "period_end": k.period_end.isoformat(),
            "run_id": k.run_id, "legal_entity": run.legal_entity.upper(), "marker": run.marker,
            "journals": " ".join(j.journal_batch_number for j in run.journals),
            "ledger_status": run.ledger_status or "",
        }
        writer.writerow({**common, "row": "run", "verdict": run.verdict, "account": "",
                         **_csv_amounts(run.ukg_total, run.d365_total, run.ledger_total, report.precision),
                         "notes": "; ".join(run.notes)})
        for row in run.differences:
            writer.writerow({**common, "row": "line", "verdict": row.verdict, "account": row.account,
                             **_csv_amounts(row.ukg, row.d365, row.ledger, report.precision), "notes": ""})
    sys.stdout.flush()


def _csv_amounts(ukg: Amounts, d365: Amounts, ledger: Amounts | None, precision: int) -> dict[str, str]:
    diff = d365 - ukg

    def text(amount: Decimal) -> str:
        return _exact(amount, precision)

    return {
        "ukg_debit": text(ukg.debit), "ukg_credit": text(ukg.credit),
        "d365_debit": text(d365.debit), "d365_credit": text(d365.credit),
        "ledger_debit": text(ledger.debit) if ledger is not None else "",
        "ledger_credit": text(ledger.credit) if ledger is not None else "",
        "difference_debit": text(diff.debit), "difference_credit": text(diff.credit),
    }


# ---------------------------------------------------------------------- json


def show_json(out: Output, report: ReconcileReport) -> None:
    show_warnings(out, report)
    precision = report.precision
    for run in report.runs:
        k = run.key
        out.event(
            "reconcile", key=k.text, kind=k.kind, company=k.company, pay_group=k.pay_group, period_end=k.period_end,
            run_id=k.run_id, legal_entity=run.legal_entity.upper(), marker=run.marker, verdict=run.verdict,
            match=run.matches,
            journals=[{"journal_batch_number": j.journal_batch_number, "posted": j.posted, "lines": j.lines}
                      for j in run.journals],
            ledger_status=run.ledger_status,
            **_json_amounts(run.ukg_total, run.d365_total, run.ledger_total, precision),
            lines=[{"account": row.account, "verdict": row.verdict,
                    **_json_amounts(row.ukg, row.d365, row.ledger, precision)} for row in run.differences],
            notes=run.notes,
        )


def _json_amounts(ukg: Amounts, d365: Amounts, ledger: Amounts | None, precision: int) -> dict[str, Any]:
    def pair(a: Amounts) -> dict[str, str]:
        return {"debit": _exact(a.debit, precision), "credit": _exact(a.credit, precision)}

    return {"ukg": pair(ukg), "d365": pair(d365), "ledger": pair(ledger) if ledger is not None else None,
            "difference": pair(d365 - ukg)}

