"""The month-end labor report: written by the real CLI, opened in headless Chromium, its numbers held to reconcile."""

from __future__ import annotations

import calendar
import csv
import io
import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.chromium import Page, chromium_binary
from tests.world import World

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

# Every amount cell of the pay-run table, by its data-field, with the reconcile JSON value it must equal.
RUN_FIELDS = {"ukg-debit": ("ukg", "debit"), "ukg-credit": ("ukg", "credit"), "d365-debit": ("d365", "debit"),
              "d365-credit": ("d365", "credit"), "difference-debit": ("difference", "debit"),
              "difference-credit": ("difference", "credit")}

READ_PAGE = """JSON.stringify({
  runs: [...document.querySelectorAll('[data-run]')].map(run => ({
    key: run.dataset.run,
    verdict: run.querySelector('[data-field=verdict]').textContent,
    cells: Object.fromEntries([...run.querySelectorAll('td[data-field]')].filter(td => td.dataset.amount !== undefined)
                               .map(td => [td.dataset.field, td.textContent]))})),
  totals: Object.fromEntries([...document.querySelectorAll('[data-total] td[data-field]')]
                              .map(td => [td.closest('[data-total]').dataset.total + ':' + td.dataset.field,
                                          td.textContent])),
  figures: Object.fromEntries([...document.querySelectorAll('.figure .value')]
                               .map(el => [el.dataset.field, el.textContent])),
  costCenters: [...document.querySelectorAll('tr[data-costcenter] td[data-field=labor]')].map(td => td.textContent),
  bars: [...document.querySelectorAll('svg rect[data-period]')].length,
  banner: document.getElementById('banner').textContent,
  scripts: document.scripts.length
})"""

# How the page is laid out in the window it has: whether anything is wider than the window (or scrolls sideways
# inside it), and which amounts and dates a line break cut in two (their text spread over several lines) or an
# overflow hid. A4 portrait leaves 210 - 2 x 12 mm (the page's @page margins) = 703 CSS pixels; Letter is wider.
LAYOUT = """(() => {
  const root = document.documentElement;
  const lines = el => { const r = document.createRange(); r.selectNodeContents(el);
                        return new Set([...r.getClientRects()].map(x => Math.round(x.bottom))).size; };
  return JSON.stringify({
    scrollWidth: root.scrollWidth, clientWidth: root.clientWidth,
    wider: [...document.querySelectorAll('section, header, .wide, table, svg, .figures, .figure')]
             .filter(el => el.scrollWidth > el.clientWidth || el.getBoundingClientRect().right > root.clientWidth)
             .map(el => el.tagName + (el.id ? '#' + el.id : '') + '.' + el.className),
    amounts: document.querySelectorAll('td.num[data-amount], .figure .value').length,
    brokenAmounts: [...document.querySelectorAll('td.num, .figure .value')]
                     .filter(el => lines(el) > 1 || el.scrollWidth > el.clientWidth).map(el => el.textContent),
    dates: document.querySelectorAll('time').length,
    brokenDates: [...document.querySelectorAll('time, .whole')].filter(el => lines(el) > 1).map(el => el.textContent)
  });
})()"""
WINDOW, A4_PORTRAIT = 1000, 703


def assert_fits(page: Page, width: int, media: str) -> None:
    """The page fits ``width`` pixels without a sideways scroll, every amount and date whole on one line."""
    page.emulate(width=width, media=media)
    layout = json.loads(page.evaluate(LAYOUT))
    where = f"{media} at {width} px"
    assert layout["scrollWidth"] <= layout["clientWidth"] == width, (where, layout)
    assert layout["wider"] == [], (where, layout["wider"])
    assert layout["amounts"] > 10 and layout["brokenAmounts"] == [], (where, layout["brokenAmounts"])
    assert layout["dates"] > 5 and layout["brokenDates"] == [], (where, layout["brokenDates"])


def shown(text: str) -> Decimal:
    """An amount as the page shows it ('2,168,268.12', '+1.00', '4,342,632.96 USD') as a Decimal."""
    return Decimal(text.split()[0].replace(",", "").lstrip("+"))


def _post_two_months(world: World) -> tuple[str, str, list[Any]]:
    """Post every closed run; the report covers the month of the latest one (the month before is its baseline)."""
    runs = sorted(world.sandbox.dataset.gl_runs, key=lambda r: r.period_end)
    for run in runs:
        world.cli("post-payroll", "--run-id", run.run_id, "--yes")
    last = runs[-1].period_end
    start = last.replace(day=1)
    end = last.replace(day=calendar.monthrange(last.year, last.month)[1])  # a whole month: the baseline is the
    return str(start), str(end), [r for r in runs if r.period_end >= start]  # calendar month before


def test_html_report_renders_in_chromium_without_errors_and_its_totals_equal_reconcile_json(world, tmp_path):
    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (Debian package `chromium`; .ci/run installs it)")
    start, end, in_range = _post_two_months(world)
    page_path = tmp_path / "labor.html"
    result = world.cli("report", "--from", start, "--to", end, "-o", str(page_path))
    assert "written to" in result.stdout and page_path.is_file()
    document = json.loads(world.cli("reconcile", "--from", start, "--to", end, "--format", "json").stdout)
    expected = {run["key"]: run for run in document["runs"]}
    assert set(expected) == {f"C0MP1/BW/{r.period_end}/{r.run_id}" for r in in_range}

    with Page(binary, width=WINDOW) as page:
        page.open(page_path)
        seen = json.loads(page.evaluate(READ_PAGE))
        assert_fits(page, WINDOW, "screen")  # a 1000-pixel window: nothing scrolls sideways
        ARTIFACTS.mkdir(exist_ok=True)
        shot = page.screenshot(ARTIFACTS / "report.png")
        assert_fits(page, A4_PORTRAIT, "print")  # printed on A4 (or Letter) portrait
        page.screenshot(ARTIFACTS / "report-print.png")
        assert page.errors == []  # no script error, no console error, no failed load
        # self-contained: the page itself and nothing else (no font, image, style or script fetched)
        assert set(page.requests) <= {page_path.resolve().as_uri()}
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    assert seen["scripts"] == 0  # no script needed

    assert {run["key"] for run in seen["runs"]} == set(expected)
    for run in seen["runs"]:
        want = expected[run["key"]]
        assert run["verdict"] == want["verdict"] == "match"
        for field, (side, column) in RUN_FIELDS.items():
            assert shown(run["cells"][field]) == Decimal(want[side][column]), (run["key"], field)
    for field, (side, column) in RUN_FIELDS.items():
        assert shown(seen["totals"][f"runs:{field}"]) == sum(Decimal(r[side][column]) for r in document["runs"])
    assert shown(seen["figures"]["ukg-debit-total"]) == sum(Decimal(r["ukg"]["debit"]) for r in document["runs"])
    assert shown(seen["figures"]["d365-debit-total"]) == sum(Decimal(r["d365"]["debit"]) for r in document["runs"])
    labor = shown(seen["figures"]["labor-total"])
    assert labor > 0 and sum(shown(c) for c in seen["costCenters"]) == labor
    assert shown(seen["totals"]["costcenter:labor"]) == shown(seen["totals"]["department:labor"]) == labor
    assert seen["bars"] > 0 and "All" in seen["banner"]


def test_labor_cost_is_the_expense_side_by_cost_center_and_the_csv_carries_the_same_figures(world):
    start, end, in_range = _post_two_months(world)
    rows = list(csv.DictReader(io.StringIO(world.cli("report", "--from", start, "--to", end, "--format",
                                                     "csv").stdout)))
    runs = [r for r in rows if r["section"] == "run"]
    assert {r["run_id"] for r in runs} == {r.run_id for r in in_range}
    # labor cost = the debit of the lines that carry a cost center: UKG's expense lines, straight from its data
    expected: dict[str, Decimal] = {}
    for run in in_range:
        for item in run.items(0, len(run)):
            if item["orgLevel1"]:
                cost = Decimal(str(item["debitAmt"])) - Decimal(str(item["creditAmt"]))
                expected[item["orgLevel1"]] = expected.get(item["orgLevel1"], Decimal(0)) + cost
    by_cost_center = {r["value"]: Decimal(r["labor_cost"]) for r in rows
                      if r["section"] == "cost" and r["dimension"] == "CostCenter"}
    assert by_cost_center == {cc: amount for cc, amount in expected.items() if amount}
    per_period = sum(Decimal(r["labor_cost"]) for r in rows if r["section"] == "period" and r["period_end"] >= start)
    assert per_period == sum(expected.values())


def test_a_run_missing_in_d365_shows_in_the_report_and_exits_1(world, tmp_path):
    runs = sorted(world.sandbox.dataset.gl_runs, key=lambda r: r.period_end)
    last = runs[-1]
    start = str(last.period_end.replace(day=1))
    result = world.cli("report", "--from", start, "--to", str(last.period_end), "-o", str(tmp_path / "r.html"),
                       expect=1)
    assert "do not match D365" in result.stdout
    page = (tmp_path / "r.html").read_text()
    assert "missing in D365" in page and f'data-run="C0MP1/BW/{last.period_end}/{last.run_id}"' in page


def test_the_change_says_how_many_pay_periods_each_side_holds(world, tmp_path):
    """A month of two bi-weekly pay periods against one of three is -33 % by the calendar alone: say so."""
    start, end, in_range = _post_two_months(world)
    before = [r for r in world.sandbox.dataset.gl_runs
              if r.period_end < in_range[0].period_end.replace(day=1)
              and r.period_end.month == (in_range[0].period_end.replace(day=1) - timedelta(days=1)).month]
    world.cli("report", "--from", start, "--to", end, "-o", str(tmp_path / "r.html"))
    page = (tmp_path / "r.html").read_text()
    assert f">Labor cost ({len(in_range)} pay period{'s' if len(in_range) > 1 else ''})<" in page
    assert f", {len(before)} pay period{'s' if len(before) > 1 else ''})<" in page


def _large_payroll_report() -> Any:
    """Four runs of a large employer in three legal entities, amounts in the hundreds of millions, every verdict
    but match with its Δ, two journals on one run: the widest pay-run table the page has to hold."""
    from datetime import date

    from ukg2d365.flows.reconcile import Amounts, JournalRef, ReconcileReport, ReconcileSelection, RunReconciliation
    from ukg2d365.flows.report import CostLine, LaborReport, ReportSelection
    from ukg2d365.journal import PostingKey

    big = Decimal("98765432.10")
    runs = []
    for i, (verdict, d365, journals, entity) in enumerate([
            ("match", big, [JournalRef("USMF-000123", False, 9000)], "usmf"),
            ("missing in D365", Decimal(0), [], "USPI"),
            ("duplicate journal", big * 2, [JournalRef("USMF-000124", True, 9000),
                                            JournalRef("USMF-000125", False, 9000)], "USMF"),
            ("amount differs", big - Decimal("1234567.89"), [JournalRef("USPM-000001", False, 8999)], "USPM")]):
        key = PostingKey("C0MP1", "BW", date(2026, 11, 13 + 14 * (i // 2)), f"GL20261113BW0{i}")
        notes = [] if journals else ["never posted: no ledger posting and no D365 journal"]
        runs.append(RunReconciliation(key, key.marker, verdict, Amounts(big, big), Amounts(d365, d365), None, None,
                                      journals, [], notes, legal_entity=entity))
    selection = ReportSelection(date(2026, 11, 1), date(2026, 11, 30))
    reconciliation = ReconcileReport(ReconcileSelection(period_from=selection.date_from, period_to=selection.date_to),
                                     None, runs)
    lines = [CostLine(f"CC{n:03}", Decimal("14109347.44"), Decimal("19753086.42")) for n in range(8)]
    by_period = [(date(2026, 10, 30), {"CC001": big}), (date(2026, 11, 13), {"CC001": big})]
    return LaborReport(selection, date(2026, 10, 1), date(2026, 10, 31), reconciliation, [], ("CostCenter",),
                       {"CostCenter": lines}, by_period, big * 4, big * 5, "USD")


def test_a_large_payrolls_report_fits_a_1000px_window_and_an_a4_page_with_every_amount_and_date_whole(tmp_path):
    """Ten columns, six of them amounts, scrolled sideways in a 1000-pixel window and wrapped 'BW 2026-11-13' at
    its hyphen; the page must fit the window and print on A4 or Letter portrait."""
    from ukg2d365.render.report import html

    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (Debian package `chromium`; .ci/run installs it)")
    page_path = tmp_path / "large.html"
    page_path.write_text(html(_large_payroll_report()), encoding="utf-8")
    with Page(binary, width=WINDOW) as page:
        page.open(page_path)
        assert_fits(page, WINDOW, "screen")
        assert_fits(page, A4_PORTRAIT, "print")
        assert page.errors == []
