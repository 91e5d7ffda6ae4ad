"""The month-end labor report: one self-contained HTML page (inline CSS, an inline SVG chart, no script, nothing
fetched from anywhere), or the same figures as CSV rows through the export every command uses.

The page holds, for the range: per pay run and legal entity UKG's and D365's totals with reconcile's verdict;
labor cost by each UKG-fed dimension (cost center, department) against the previous period; and a chart of
labor cost per pay period by cost center. Every amount cell carries its exact value in ``data-amount`` so a
reader (or a test) can check it against ``reconcile --format json``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from ukg2d365 import __version__
from ukg2d365.render import Column, Output, Rows, entity, money
from ukg2d365.render.reconcile import exact

if TYPE_CHECKING:  # only the types: rendering never runs a flow
    from ukg2d365.flows.reconcile import Amounts, RunReconciliation
    from ukg2d365.flows.report import CostLine, LaborReport

# Colour-blind-safe categorical palette (Okabe and Ito), then its darker shades.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
           "#004C7A", "#9C6C00", "#006B4F", "#8A527A")
CHART_WIDTH, CHART_HEIGHT = 760, 300
CHART_LEFT, CHART_BOTTOM, CHART_TOP = 96, 46, 16

CSS = """
:root { color-scheme: light; --ink: #1b1f24; --muted: #5b6470; --line: #d8dde3; --ok: #1a7f37; --bad: #c62828; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); margin: 24px auto; max-width: 1100px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: var(--muted); margin: 0 0 12px; } td .meta { font-size: 12px; }
/* a date, a journal number or an amount is never broken at its hyphens or spaces */
time, .whole { white-space: nowrap; }
.wide { overflow-x: auto; }
.banner { padding: 10px 14px; border-radius: 6px; font-weight: 600; }
.banner.ok { background: #e8f5e9; color: var(--ok); } .banner.bad { background: #fdecea; color: var(--bad); }
.figures { display: flex; flex-wrap: wrap; gap: 12px; margin: 14px 0; }
.figure { border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; min-width: 210px; }
.figure .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
.figure .value { font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; background: #f6f8fa; }
td.num, th.num { text-align: right; white-space: nowrap; }
/* a pay run's debit row over its credit row read as one */
tbody.run tr:first-child td:not([rowspan]), tfoot tr:first-child td:not([rowspan]) { border-bottom: 0; }
tbody.run td, tfoot td { vertical-align: baseline; }
td.side { color: var(--muted); font-size: 12px; }
tfoot tr + tr td { border-top: 0; }
tfoot td { font-weight: 600; border-top: 2px solid var(--ink); }
.verdict { font-weight: 600; } .verdict.match { color: var(--ok); }
.verdict.differs { color: var(--bad); }
tr.notes td { color: var(--muted); font-size: 12px; border-bottom: 1px solid var(--line); }
.up { color: var(--bad); } .down { color: var(--ok); }
.legend { display: flex; flex-wrap: wrap; gap: 6px 16px; margin: 6px 0 0; font-size: 12px; }
.legend span::before { content: ""; display: inline-block; width: 10px; height: 10px; margin-right: 5px;
                       background: var(--swatch); vertical-align: -1px; }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
/* A4 and Letter portrait: the narrower, A4, leaves 186 mm (about 700 CSS pixels) inside these margins */
@page { margin: 12mm; }
@media print {
  :root { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
  body { margin: 0; max-width: none; padding: 0; font-size: 11px; }
  h1 { font-size: 17px; } h2 { font-size: 14px; margin: 16px 0 6px; }
  .wide { overflow: visible; }
  .figures { gap: 8px; } .figure { min-width: 0; padding: 6px 10px; } .figure .value { font-size: 15px; }
  th { font-size: 9px; } td .meta { font-size: 9px; }
  th, td { padding: 3px 6px; } td.side, footer { font-size: 9px; }
  thead { display: table-header-group; } tbody.run, tr { break-inside: avoid; }
  section#chart, footer { break-inside: avoid; }
}
"""


def _amount_cell(amount: Decimal, precision: int, field: str) -> str:
    text = exact(amount, precision)
    return f'<td class="num" data-field="{field}" data-amount="{text}">{escape(money(Decimal(text)))}</td>'


def _signed_cell(amount: Decimal, precision: int, field: str) -> str:
    shown = _shown(amount, precision, signed=True)
    return f'<td class="num" data-field="{field}" data-amount="{exact(amount, precision)}">{escape(shown)}</td>'


def _date(day: object) -> str:
    """A date the browser never breaks at its hyphens (BW 2026-11-13 wrapped as 'BW 2026-11-' / '13')."""
    return f'<time datetime="{day}">{day}</time>'


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _words(name: str) -> str:
    """'CostCenter' -> 'cost center'."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).lower()


# ---------------------------------------------------------------------- the page


def html(report: LaborReport) -> str:
    """The whole page as one string: nothing it shows is fetched from anywhere."""
    sel = report.selection
    title = f"Payroll labor report {sel.date_from} to {sel.date_to}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        _header(report),
        _runs_section(report),
        *(_cost_section(report, name) for name in report.dimensions),
        _chart_section(report),
        _footer(report),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _header(report: LaborReport) -> str:
    sel = report.selection
    runs = report.runs
    bad = [r for r in runs if not r.matches]
    if not runs:
        banner = '<p class="banner bad" id="banner">No pay run in this range: nothing is proven.</p>'
    elif bad:
        banner = (f'<p class="banner bad" id="banner">{len(bad)} of {len(runs)} pay run(s) do not match D365: '
                  f'{escape(", ".join(sorted({r.verdict for r in bad})))}.</p>')
    else:
        banner = f'<p class="banner ok" id="banner">All {len(runs)} pay run(s) match D365.</p>'
    precision = report.reconciliation.precision
    change = report.labor_total - report.previous_labor_total
    # How many pay periods each side holds: a month of two bi-weekly periods against one of three changes by a
    # third from the calendar alone, and the reader must see that before reading the change as a trend.
    figures = [
        (f"Labor cost ({_periods(runs)})", report.labor_total, "labor-total"),
        (f"Previous period ({_date(report.previous_from)} to {_date(report.previous_to)}, "
         f"{_periods(report.previous_runs)})", report.previous_labor_total, "labor-previous"),
        ("Change", change, "labor-change"),
        ("UKG debit total", _sum(runs, "ukg").debit, "ukg-debit-total"),
        ("D365 debit total", _sum(runs, "d365").debit, "d365-debit-total"),
    ]
    boxes = "".join(
        f'<div class="figure"><div class="label">{label}</div><div class="value" data-field="{field}" '
        f'data-amount="{exact(amount, precision)}">{escape(_shown(amount, precision, signed=field == "labor-change"))}'
        f" {escape(report.currency)}</div></div>"
        for label, amount, field in figures)
    pay_group = f" · pay group {escape(sel.pay_group)}" if sel.pay_group else ""
    return (f"<header><h1>Payroll labor report {_date(sel.date_from)} to {_date(sel.date_to)}</h1>"
            f'<p class="meta">Pay periods ending {_date(sel.date_from)} to {_date(sel.date_to)}{pay_group} · '
            f"compared with {_date(report.previous_from)} to {_date(report.previous_to)} · amounts in "
            f"{escape(report.currency)} · generated <time>{report.generated_at:%Y-%m-%d %H:%M}</time> UTC by "
            f"ukg2d365 {escape(__version__)}</p>"
            f'{banner}<div class="figures">{boxes}</div></header>')


def _periods(runs: list[RunReconciliation]) -> str:
    """The number of pay periods the pay runs end in (an accrual is no pay period; entities share a period)."""
    count = len({(r.key.pay_group, r.key.period_end) for r in runs if r.key.kind == "pay_run"})
    return f"{count} pay period{'' if count == 1 else 's'}"


def _shown(amount: Decimal, precision: int, *, signed: bool = False) -> str:
    shown = money(Decimal(exact(amount, precision)))
    return "+" + shown if signed and amount > 0 else shown


def _sum(runs: list[RunReconciliation], side: str) -> Amounts:
    from ukg2d365.flows.reconcile import Amounts

    total = Amounts()
    for run in runs:
        total = total + (run.ukg_total if side == "ukg" else run.d365_total)
    return total


def _runs_section(report: LaborReport) -> str:
    """Per pay run and legal entity, a debit row over a credit row: three amount columns (UKG, D365, their
    difference) instead of six, so the table fits a 1000-pixel window and an A4 page with amounts in the hundreds
    of millions, none of them cut or wrapped."""
    precision = report.reconciliation.precision
    head = ("<tr><th>Pay run</th><th>Legal entity</th><th>Journal in D365</th><th></th>"
            '<th class="num">UKG</th><th class="num">D365</th><th class="num">Δ D365 − UKG</th><th>Verdict</th></tr>')
    bodies = []
    for run in report.runs:
        k = run.key
        verdict_class = "match" if run.matches else "differs"
        journals = "<br>".join(f'<span class="whole">{escape(j.journal_batch_number)}</span> <span class="meta">'
                               f"({'posted' if j.posted else 'unposted'})</span>" for j in run.journals) or "none"
        debit, credit = _side_rows(run.ukg_total, run.d365_total, precision)
        notes = (f'<tr class="notes"><td colspan="8">{escape("; ".join(run.notes))}</td></tr>' if run.notes else "")
        bodies.append(
            f'<tbody class="run" data-run="{escape(k.text)}"><tr><td rowspan="2"><b class="whole">'
            f'{escape(k.pay_group)} {_date(k.period_end)}</b><br><span class="meta">{escape(k.run_id)}</span></td>'
            f'<td rowspan="2">{escape(entity(run.legal_entity) or "")}</td><td rowspan="2">{journals}</td>{debit}'
            f'<td rowspan="2" class="verdict {verdict_class}" data-field="verdict">{escape(run.verdict)}</td></tr>'
            f"<tr>{credit}</tr>{notes}</tbody>")
    if not report.runs:
        bodies.append('<tbody><tr><td colspan="8">No pay run with a period end in this range.</td></tr></tbody>')
    debit, credit = _side_rows(_sum(report.runs, "ukg"), _sum(report.runs, "d365"), precision)
    foot = (f'<tfoot data-total="runs"><tr><td colspan="3" rowspan="2">Total</td>{debit}<td rowspan="2"></td></tr>'
            f"<tr>{credit}</tr></tfoot>")
    return (f'<section id="runs"><h2>Pay runs: UKG against D365</h2><div class="wide"><table><thead>{head}</thead>'
            f'{"".join(bodies)}{foot}</table></div>'
            '<p class="meta">Δ is D365 minus UKG. Per pay run and legal entity, with the verdict of '
            "<code>ukg2d365 reconcile</code>.</p></section>")


def _side_rows(ukg: Amounts, d365: Amounts, precision: int) -> tuple[str, str]:
    """The debit row's and the credit row's cells: the side's name, UKG, D365 and D365 minus UKG."""
    diff = d365 - ukg

    def row(name: str, ukg_side: Decimal, d365_side: Decimal, diff_side: Decimal) -> str:
        return (f'<td class="side">{name.capitalize()}</td>' + _amount_cell(ukg_side, precision, f"ukg-{name}")
                + _amount_cell(d365_side, precision, f"d365-{name}")
                + _signed_cell(diff_side, precision, f"difference-{name}"))

    return row("debit", ukg.debit, d365.debit, diff.debit), row("credit", ukg.credit, d365.credit, diff.credit)


def _cost_section(report: LaborReport, name: str) -> str:
    precision = report.reconciliation.precision
    lines: list[CostLine] = report.by_dimension.get(name, [])
    head = (f"<tr><th>{escape(_words(name).capitalize())}</th><th class=\"num\">Labor cost</th>"
            f'<th class="num">Previous period</th><th class="num">Change</th><th class="num">Change %</th></tr>')
    rows = []
    for line in lines:
        percent = line.change_percent
        trend = "up" if line.change > 0 else "down" if line.change < 0 else ""
        rows.append(
            f'<tr data-{_slug(name)}="{escape(line.value)}"><td>{escape(line.value)}</td>'
            + _amount_cell(line.current, precision, "labor")
            + _amount_cell(line.previous, precision, "previous")
            + _signed_cell(line.change, precision, "change")
            + f'<td class="num {trend}">{"" if percent is None else escape(f"{percent:+}%")}</td></tr>')
    current = sum((line.current for line in lines), Decimal(0))
    previous = sum((line.previous for line in lines), Decimal(0))
    foot = (f'<tr data-total="{_slug(name)}"><td>Total</td>' + _amount_cell(current, precision, "labor")
            + _amount_cell(previous, precision, "previous")
            + _signed_cell(current - previous, precision, "change") + "<td></td></tr>")
    return (f'<section id="by-{_slug(name)}"><h2>Labor cost by {escape(_words(name))}</h2>'
            f'<table><thead>{head}</thead><tbody>{"".join(rows)}</tbody><tfoot>{foot}</tfoot></table></section>')


def _chart_section(report: LaborReport) -> str:
    name = report.chart_dimension
    if name is None or not report.by_period:
        return ('<section id="chart"><h2>Labor cost per pay period</h2><p class="meta">No labor cost by a UKG-fed '
                "dimension in this range.</p></section>")
    return (f'<section id="chart"><h2>Labor cost per pay period by {escape(_words(name))}</h2>'
            f"{chart_svg(report)}</section>")


def chart_svg(report: LaborReport) -> str:
    """Stacked bars, one per pay period end (the previous period's paler), one colour per dimension value."""
    values = sorted({v for _, by in report.by_period for v in by})
    colour = {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(values)}
    totals = [sum(by.values(), Decimal(0)) for _, by in report.by_period]
    top = _nice_ceiling(max([*totals, Decimal(1)]))
    plot_w, plot_h = CHART_WIDTH - CHART_LEFT - 16, CHART_HEIGHT - CHART_BOTTOM - CHART_TOP
    band = plot_w / len(report.by_period)
    bar = min(64.0, band * 0.6)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" '
           f'width="100%" style="max-width:{CHART_WIDTH}px" font-family="system-ui, sans-serif" font-size="11">',
           f"<title>Labor cost per pay period by {escape(_words(report.chart_dimension or ''))}</title>"]
    for i in range(5):  # y axis: 0, 25, 50, 75, 100 % of the nice ceiling
        tick = top * i / 4
        y = CHART_TOP + plot_h - plot_h * i / 4
        out.append(f'<line x1="{CHART_LEFT}" x2="{CHART_WIDTH - 16}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d8dde3"/>')
        out.append(f'<text x="{CHART_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#5b6470">'
                   f"{escape(money(tick.quantize(Decimal(1))))}</text>")
    for i, ((end, by), total) in enumerate(zip(report.by_period, totals, strict=True)):
        x = CHART_LEFT + band * i + (band - bar) / 2
        stack = Decimal(CHART_TOP + plot_h)  # the top of the bar stacked so far, in pixels
        previous = end < report.selection.date_from
        opacity = ' fill-opacity="0.45"' if previous else ""
        for value in values:
            cost = by.get(value, Decimal(0))
            if cost <= 0:
                continue
            h = cost / top * plot_h  # pixels, kept in Decimal: no float near an amount
            stack -= h
            out.append(f'<rect x="{x:.1f}" y="{stack:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colour[value]}"'
                       f'{opacity} data-period="{end}" '
                       f'data-value="{escape(value)}" data-amount="{cost}"><title>{end} {escape(value)}: '
                       f"{escape(money(cost))}</title></rect>")
        label_x = x + bar / 2
        out.append(f'<text x="{label_x:.1f}" y="{CHART_TOP + plot_h + 15}" text-anchor="middle">{end:%b %d}</text>')
        out.append(f'<text x="{label_x:.1f}" y="{CHART_TOP + plot_h + 29}" text-anchor="middle" fill="#5b6470">'
                   f'{"previous" if previous else escape(money(total.quantize(Decimal(1))))}</text>')
    out.append("</svg>")
    legend = "".join(f'<span style="--swatch:{colour[v]}">{escape(v)}</span>' for v in values)
    return "".join(out) + f'<div class="legend">{legend}</div>'


def _nice_ceiling(amount: Decimal) -> Decimal:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``amount``: round axis labels."""
    exponent = Decimal(10) ** (len(str(int(amount))) - 1)
    for step in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10)):
        if amount <= step * exponent:
            return step * exponent
    return Decimal(10) * exponent


def _footer(report: LaborReport) -> str:
    dims = ", ".join(_words(name) for name in report.dimensions) or "none"
    return ("<footer><p>UKG figures are the pay runs' GL distributions mapped to D365 accounts as ukg2d365 posts "
            "them; D365 figures are the general journals carrying each run's marker, posted or not. Verdicts are "
            "those of <code>ukg2d365 reconcile</code> for the same range. Labor cost is debit minus credit of the "
            f"lines that carry a value of a dimension UKG's org levels feed ({escape(dims)}); clearing and "
            "withholding lines carry none. The change compares with the previous period: the previous month "
            "for a whole month, else as many days before the range.</p></footer>")


def summary_text(report: LaborReport, output: Path | None) -> str:
    where = f" to {output}" if output is not None else ""
    runs = report.runs
    bad = sum(1 for r in runs if not r.matches)
    verdict = "no pay run in the range" if not runs else f"{bad} of {len(runs)} pay run(s) do not match D365" \
        if bad else f"all {len(runs)} pay run(s) match D365"
    return (f"report {report.selection.date_from} to {report.selection.date_to} written{where}: {verdict}; labor "
            f"cost {money(report.labor_total)} {report.currency} (previous period "
            f"{money(report.previous_labor_total)})")


def show_warnings(out: Output, report: LaborReport) -> None:
    for message in report.reconciliation.warnings:
        out.warn(message)


# ---------------------------------------------------------------------- csv


REPORT_COLUMNS = (
    Column("section", "Section"), Column("pay_group", "Pay group"), Column("period_end", "Period end"),
    Column("run_id", "UKG run"), Column("legal_entity", "Legal entity"), Column("journals", "Journals"),
    Column("verdict", "Verdict"), Column("dimension", "Dimension"), Column("value", "Value"),
    Column("ukg_debit", "UKG debit", "money"), Column("ukg_credit", "UKG credit", "money"),
    Column("d365_debit", "D365 debit", "money"), Column("d365_credit", "D365 credit", "money"),
    Column("labor_cost", "Labor cost", "money"), Column("previous_labor_cost", "Previous", "money"),
    Column("change", "Change", "money"),
)


def export_csv(out: Output, report: LaborReport) -> None:
    """The report's figures as rows: section ``run`` (per pay run), ``cost`` (per dimension value), ``period``
    (per pay period end and value of the chart's dimension)."""
    precision = report.reconciliation.precision
    rows = Rows("report", "Labor report", REPORT_COLUMNS)

    def amount(value: Decimal) -> Decimal:
        return Decimal(exact(value, precision))

    for run in report.runs:
        k = run.key
        rows.add(section="run", pay_group=k.pay_group, period_end=k.period_end, run_id=k.run_id,
                 legal_entity=entity(run.legal_entity), journals=[j.journal_batch_number for j in run.journals],
                 verdict=run.verdict, ukg_debit=amount(run.ukg_total.debit),
                 ukg_credit=amount(run.ukg_total.credit), d365_debit=amount(run.d365_total.debit),
                 d365_credit=amount(run.d365_total.credit))
    for name in report.dimensions:
        for line in report.by_dimension.get(name, []):
            rows.add(section="cost", dimension=name, value=line.value, labor_cost=amount(line.current),
                     previous_labor_cost=amount(line.previous), change=amount(line.change))
    for end, by in report.by_period:
        for value, cost in sorted(by.items()):
            rows.add(section="period", period_end=end, dimension=report.chart_dimension, value=value,
                     labor_cost=amount(cost))
    out.export(rows)
