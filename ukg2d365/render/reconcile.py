"""reconcile's report: a stacked layout for people, CSV and one JSON document for export, JSON lines for cron.

* ``table`` (default): per pay run a block that fits an 80-column terminal with every amount whole: the run's
  heading (pay group, period end, UKG run, verdict, journals), its totals (UKG, D365, what the ledger sent, the
  difference D365 - UKG; debit and credit side by side), the differing accounts of a run that does not match
  (one row per differing side), then its notes. The summary line comes last.
* ``csv``: fixed columns (``CSV_COLUMNS``); per run one ``run`` row with the totals, then one ``line`` row
  per differing account. Warnings and the summary go to stderr, so the file can go straight into the close
  binder.
* ``json``: one document: ``runs`` (each with its totals, journals, differing lines and notes), ``warnings``,
  ``summary``. With the global ``--json``: one ``{"event": "reconcile", ...}`` object per run, then the summary.
  Amounts are strings (exact decimals at the currency's scale).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table as RichTable
from rich.text import Text

from ukg2d365.money import quantum
from ukg2d365.render import PREVIEW_ROWS, Column, Output, Rows, Table, entity, money

if TYPE_CHECKING:  # only the types: the flow (and its HTTP stack) is imported when the command runs
    from ukg2d365.flows.reconcile import Amounts, LineDifference, ReconcileReport, RunReconciliation

CSV_COLUMNS = (
    "row", "company", "pay_group", "period_end", "run_id", "legal_entity", "marker", "journals", "ledger_status",
    "verdict", "account", "ukg_debit", "ukg_credit", "d365_debit", "d365_credit", "ledger_debit", "ledger_credit",
    "difference_debit", "difference_credit", "notes",
)
INDENT = 2  # a run's block sits under its heading
_MONEY_COLUMNS = {"ukg_debit", "ukg_credit", "d365_debit", "d365_credit", "ledger_debit", "ledger_credit",
                  "difference_debit", "difference_credit"}


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
        return f"reconcile: nothing posted or closed with a period end since {report.window_start}: nothing to " \
               "reconcile"
    counts = ", ".join(f"{n} {verdict}" for verdict, n in report.counts().items() if n)
    if report.ok:
        return f"reconcile: all {len(report.runs)} pay run(s) match ({counts})"
    return f"reconcile: {len(report.runs)} pay run(s): {counts}"


def show_warnings(out: Output, report: ReconcileReport) -> None:
    for message in report.warnings:
        out.warn(message)
    if not report.runs and report.selection.explicit:
        out.warn("no pay run in UKG or in the ledger matches the selection")


def exact(amount: Decimal, precision: int) -> str:
    """Plain decimal text at the currency's scale (0 -> 0.00) unless that would drop digits; never rounded."""
    scaled = amount.quantize(quantum(precision))
    return str(scaled if scaled == amount else amount)


def _signed(amount: Decimal, precision: int) -> str:
    text = money(Decimal(exact(amount, precision)))
    return text if amount <= 0 else "+" + text


def journals_text(run: RunReconciliation) -> str:
    if not run.journals:
        return "no journal in D365"
    return "journal " + ", ".join(j.journal_batch_number + (" (posted)" if j.posted else " (unposted)")
                                  for j in run.journals)


# ---------------------------------------------------------------------- table (stacked)


def show_table(out: Output, report: ReconcileReport) -> None:
    show_warnings(out, report)
    if not report.runs:
        return
    out.say("Reconciliation: UKG vs D365 (and what the ledger sent)", style="bold")
    for run in report.runs:
        out.say("")
        colour = "green" if run.matches else "red"
        out.table(Text.assemble((_run_label(run), "bold"), "  ", (run.verdict, f"bold {colour}")))
        block: list[RenderableType] = [Text(f"{entity(run.legal_entity)}: {journals_text(run)}"),
                                       _totals_table(run, report.precision)]
        rows = _expanded(run)
        if rows:
            block.append(_differences_table(run, rows, report.precision))
        block.extend(Text(f"note: {note}", style="" if run.matches else "yellow") for note in run.notes)
        out.table(Padding(Group(*block), (0, 0, 0, INDENT), expand=False))


def _amount_column(table: RichTable, title: str, cells: list[str]) -> None:
    # Amounts are never cut: the column is at least as wide as its longest amount and never wraps.
    table.add_column(title, justify="right", no_wrap=True, min_width=max([len(title), *map(len, cells)]))


def _totals_table(run: RunReconciliation, precision: int) -> RichTable:
    """UKG, D365, the ledger and the difference, debit and credit side by side: about 50 columns wide."""
    rows = [("UKG", run.ukg_total), ("D365", run.d365_total)]
    if run.ledger_total is not None:
        rows.append(("Ledger sent", run.ledger_total))
    shown = [(label, money(Decimal(exact(a.debit, precision))), money(Decimal(exact(a.credit, precision))))
             for label, a in rows]
    diff = run.d365_total - run.ukg_total
    shown.append(("D365 - UKG", _signed(diff.debit, precision), _signed(diff.credit, precision)))
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 2))
    table.add_column("", no_wrap=True)
    _amount_column(table, "Debit", [d for _, d, _ in shown])
    _amount_column(table, "Credit", [c for _, _, c in shown])
    for label, debit, credit in shown:
        if label == "D365 - UKG" and run.ledger_total is None:  # the same order as every other run's block
            table.add_row("Ledger sent", "never sent", "")
        table.add_row(label, debit, credit)
    return table


def _differences_table(run: RunReconciliation, rows: list[LineDifference], precision: int) -> RichTable:
    """One row per differing side of each account; the account (and its verdict) folds, amounts stay whole."""
    cells: list[tuple[str, str, str, str, str]] = []
    for row in rows:
        first = True
        for side, ukg, d365 in (("dr", row.ukg.debit, row.d365.debit), ("cr", row.ukg.credit, row.d365.credit)):
            if ukg == d365:
                continue
            label = f"{row.account}\n{row.verdict}" if first else ""
            cells.append((label, side, money(Decimal(exact(ukg, precision))), money(Decimal(exact(d365, precision))),
                          _signed(d365 - ukg, precision)))
            first = False
        if first:  # UKG equals D365 but the ledger sent something else (UKG or the mapping moved since)
            cells.append((f"{row.account}\n{row.verdict}", "", "", "", "ledger differs"))
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("Account and dimensions", overflow="fold", min_width=12)
    table.add_column("", no_wrap=True)
    for i, title in enumerate(("UKG", "D365", "D365 - UKG"), start=2):
        _amount_column(table, title, [c[i] for c in cells])
    for label, *rest in cells:
        table.add_row(label, *rest)
    if len(rows) < len(run.differences):
        table.add_row(f"... {len(run.differences) - len(rows)} more (--format csv lists every one)", "", "", "",
                      "")
    return table


def _expanded(run: RunReconciliation) -> list[LineDifference]:
    """The differing rows worth a line each: none when the whole journal is absent or doubled (every row would
    differ, the totals and the notes say it all), at most PREVIEW_ROWS otherwise."""
    if len(run.journals) != 1:
        return []
    return run.differences[:PREVIEW_ROWS]


# ---------------------------------------------------------------------- export: csv rows, json document


def export(out: Output, report: ReconcileReport) -> None:
    """--format csv|json: the rows of the close binder (CSV) and the nested runs (JSON), through one export."""
    rows = Rows("runs", "Reconciliation", [Column(c, c, "money" if c in _MONEY_COLUMNS else "text")
                                           for c in CSV_COLUMNS])
    precision = report.precision
    for run in report.runs:
        k = run.key
        common = {
            "company": k.company, "pay_group": k.pay_group, "period_end": k.period_end.isoformat(),
            "run_id": k.run_id, "legal_entity": run.legal_entity.upper(), "marker": run.marker,
            "journals": " ".join(j.journal_batch_number for j in run.journals),
            "ledger_status": run.ledger_status or "",
        }
        rows.add(**common, row="run", verdict=run.verdict, account="",
                 **_csv_amounts(run.ukg_total, run.d365_total, run.ledger_total, precision), notes="; ".join(run.notes))
        for line in run.differences:
            rows.add(**common, row="line", verdict=line.verdict, account=line.account,
                     **_csv_amounts(line.ukg, line.d365, line.ledger, precision), notes="")
    out.export(rows, command="reconcile", window_start=report.window_start, warnings=report.warnings,
               ukg_lines_read=report.ukg_lines_read, runs=[run_document(run, precision) for run in report.runs])


def _csv_amounts(ukg: Amounts, d365: Amounts, ledger: Amounts | None, precision: int) -> dict[str, str]:
    diff = d365 - ukg

    def text(amount: Decimal) -> str:
        return exact(amount, precision)

    return {
        "ukg_debit": text(ukg.debit), "ukg_credit": text(ukg.credit),
        "d365_debit": text(d365.debit), "d365_credit": text(d365.credit),
        "ledger_debit": text(ledger.debit) if ledger is not None else "",
        "ledger_credit": text(ledger.credit) if ledger is not None else "",
        "difference_debit": text(diff.debit), "difference_credit": text(diff.credit),
    }


def run_document(run: RunReconciliation, precision: int) -> dict[str, Any]:
    """One run as JSON (the --format json document's runs, and the --json event): exact amounts as strings."""
    k = run.key
    return {
        "key": k.text, "kind": k.kind, "company": k.company, "pay_group": k.pay_group, "period_end": k.period_end,
        "run_id": k.run_id, "legal_entity": run.legal_entity.upper(), "marker": run.marker, "verdict": run.verdict,
        "match": run.matches,
        "journals": [{"journal_batch_number": j.journal_batch_number, "posted": j.posted, "lines": j.lines}
                     for j in run.journals],
        "ledger_status": run.ledger_status,
        **_json_amounts(run.ukg_total, run.d365_total, run.ledger_total, precision),
        "lines": [{"account": row.account, "verdict": row.verdict,
                   **_json_amounts(row.ukg, row.d365, row.ledger, precision)} for row in run.differences],
        "notes": run.notes,
    }


def show_events(out: Output, report: ReconcileReport) -> None:
    """--json: one event per run."""
    show_warnings(out, report)
    for run in report.runs:
        out.event("reconcile", **run_document(run, report.precision))


def _json_amounts(ukg: Amounts, d365: Amounts, ledger: Amounts | None, precision: int) -> dict[str, Any]:
    def pair(a: Amounts) -> dict[str, str]:
        return {"debit": exact(a.debit, precision), "credit": exact(a.credit, precision)}

    return {"ukg": pair(ukg), "d365": pair(d365), "ledger": pair(ledger) if ledger is not None else None,
            "difference": pair(d365 - ukg)}
