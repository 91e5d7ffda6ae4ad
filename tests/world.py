"""Helpers for end-to-end tests: the real CLI against a started sandbox over HTTPS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ukg2d365.cli import app
from ukg2d365.config import load_config
from ukg2d365.flows.runtime import Context
from ukg2d365.sandbox import Sandbox, catalog


def spawn(world: World, *args: str) -> subprocess.Popen[str]:
    """The CLI as its own process, so a test can SIGKILL it mid-run."""
    return subprocess.Popen([sys.executable, "-m", "ukg2d365", "-c", str(world.config_path), *args],
                            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


D365_ACCOUNT = {a.ukg_account: a.d365_account for a in catalog.GL_ACCOUNTS}
SECRETS = [catalog.CLIENT_SECRET, catalog.UKG_PASSWORD, catalog.UKG_USER_API_KEY]


class World:
    """A started sandbox plus the config the tool uses against it."""

    def __init__(self, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sandbox = sandbox
        for name, value in sandbox.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("UKG2D365_CONFIG", raising=False)
        self.config_path: Path = sandbox.config_path
        self.runner = CliRunner()
        self.outputs: list[str] = []

    def cli(self, *args: str, expect: int | None = 0) -> Any:
        result = self.runner.invoke(app, ["-c", str(self.config_path), *args])
        self.outputs.append(result.output)
        if expect is not None and result.exit_code != expect:
            raise AssertionError(f"`{' '.join(args)}` exited {result.exit_code}, expected {expect}:\n{result.output}"
                                 + (f"\n{result.exception!r}" if result.exception else ""))
        return result

    def json_events(self, *args: str, expect: int | None = 0) -> list[dict[str, Any]]:
        result = self.runner.invoke(app, ["-c", str(self.config_path), "--json", *args])
        self.outputs.append(result.output)
        if expect is not None:
            assert result.exit_code == expect, result.output
        return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]

    @property
    def d365(self) -> Any:
        return self.sandbox.d365.state

    def journals(self) -> list[dict[str, Any]]:
        return self.d365.journals()

    def latest_run(self) -> Any:
        period = self.sandbox.dataset.closed_periods()[-1].period_end
        return next(r for r in self.sandbox.dataset.gl_runs if r.period_end == period)

    def leave_periods_behind_the_window(self) -> tuple[Any, Any, list[Any]]:
        """Of the newest four closed periods, post the oldest (the ledger's history starts there) and set
        payroll.lookback_days to hold only the newest: the two between are closed, unposted and older than the
        window. Returns the oldest, the first left behind, and every closed period in order."""
        closed = sorted(self.sandbox.dataset.closed_periods(), key=lambda p: p.period_end)
        oldest, skipped, newest = closed[-4], closed[-3], closed[-1]
        runs = {r.period_end: r.run_id for r in self.sandbox.dataset.gl_runs}
        self.cli("post-payroll", "--run-id", runs[oldest.period_end], "--yes")
        lookback = (date.today() - newest.pay_date).days
        self.config_path.write_text(self.config_path.read_text() + f"payroll:\n  lookback_days: {lookback}\n")
        return oldest, skipped, closed

    def add_small_run(self, run_id: str, amount: Decimal) -> Any:
        """A balanced two-line GL run (wages debit, net pay credit) in the latest closed period."""
        ds = self.sandbox.dataset
        period = ds.closed_periods()[-1].period_end
        return ds.add_gl_run(run_id, period_end=period, lines=[
            ds.make_gl_line(run_id, "5000", debit=amount, cost_center="110", department="PROD", period_end=period),
            ds.make_gl_line(run_id, "2100", credit=amount, period_end=period),
        ])

    def create_missing_dimensions(self) -> None:
        """What sync-dimensions does, done directly so post-payroll tests do not depend on it."""
        ctx = Context(load_config(self.config_path))
        for cc in catalog.COST_CENTERS:
            if cc.is_active and cc.code not in catalog.D365_EXISTING_COST_CENTERS:
                ctx.d365.create("FinancialDimensionValues", {"FinancialDimension": "CostCenter",
                                                             "DimensionValue": cc.code, "LegalEntityId": "",
                                                             "Description": cc.description})
        for d in catalog.DEPARTMENTS:
            if d.code not in catalog.D365_EXISTING_DEPARTMENTS:
                ctx.d365.create("OperatingUnits", {"OperatingUnitNumber": d.code, "Name": d.description,
                                                   "OperatingUnitType": "OMDepartment"})


def display(main_account: str, cost_center: str = "", department: str = "") -> str:
    """An AccountDisplayValue in the sandbox D365's ledger format: the dimensions UKG does not feed blank."""
    fed = {"MainAccount": main_account, "CostCenter": cost_center, "Department": department}
    return catalog.DELIMITER.join(fed.get(name, "") for name in catalog.LEDGER_FORMAT)


def worker_display(cost_center: str, department: str) -> str:
    """A DimensionDisplayValue in the sandbox D365's default dimension format: unfed dimensions blank."""
    fed = {"CostCenter": cost_center, "Department": department}
    return catalog.DELIMITER.join(fed.get(name, "") for name in catalog.DEFAULT_DIMENSION_FORMAT)


def expected_display(item: dict[str, Any]) -> str:
    """The AccountDisplayValue of a UKG line in the sandbox D365's ledger format."""
    return display(D365_ACCOUNT[item["generalLedgerAccount"]], item["orgLevel1"], item["orgLevel2"])


def ukg_totals(run: Any) -> dict[tuple[str, str], Decimal]:
    """UKG's amounts per D365 account display value and side, straight from the simulator's data."""
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for item in run.items(0, len(run)):
        display = expected_display(item)
        totals[(display, "debit")] += Decimal(str(item["debitAmt"]))
        totals[(display, "credit")] += Decimal(str(item["creditAmt"]))
    return {k: v for k, v in totals.items() if v}


def d365_totals(journal: dict[str, Any]) -> dict[tuple[str, str], Decimal]:
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for line in journal["lines"]:
        totals[(line["AccountDisplayValue"], "debit")] += Decimal(str(line["DebitAmount"]))
        totals[(line["AccountDisplayValue"], "credit")] += Decimal(str(line["CreditAmount"]))
    return {k: v for k, v in totals.items() if v}
