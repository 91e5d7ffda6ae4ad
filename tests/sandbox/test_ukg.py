"""The simulated UKG Pro API over real HTTPS: auth, paging, field names, GL balance, mutations."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest
import requests

from ukg2d365.sandbox import RawJson, Sandbox, catalog
from ukg2d365.sandbox.data import UkgDataset
from ukg2d365.sandbox.ukg import date_filter

# Field names as UKG Pro's published REST API guides spell them (the spec's casing differs per resource).
GL_FIELDS = set(
    "description runId payPeriodEndDate accountType baseSegment companyCode creditAmt debitAmt generalLedgerAccount "
    "jobCode jobDesc location orgLevel1 orgLevel2 orgLevel3 orgLevel4 payGroup periodEndDate periodStartDate "
    "positionCode positionDesc project systemId blockId coId glRunDateTime totalNrOfBlocks userWhoRanThisGl "
    "glJson".split()
)
EMPLOYMENT_FIELDS = set(
    "companyID companyCode companyName employeeID jobDescription payGroupDescription primaryJobCode orgLevel1Code "
    "orgLevel2Code orgLevel3Code orgLevel4Code originalHireDate lastHireDate fullTimeOrPartTimeCode "
    "primaryWorkLocationCode languageCode primaryProjectCode workPhoneNumber workPhoneExtension workPhoneCountry "
    "dateInJob dateLastWorked dateOfBenefitSeniority dateOfSeniority deductionGroupCode earningGroupCode "
    "employeeTypeCode employeeStatusCode employeeNumber jobChangeReasonCode jobTitle leaveReasonCode supervisorID "
    "supervisorFirstName supervisorLastName autoAllocate clockCode dateLastPayDatePaid dateOfEarlyRetirement "
    "dateOfLocalUnion dateOfNationalUnion dateOfRetirement dateOfSuspension dateOfTermination datePaidThru "
    "statusStartDate hireSource isAutoAllocated isAutopaid isMultipleJob jobGroupCode mailstop okToRehire payGroup "
    "payPeriod plannedLeaveReason positionCode salaryOrHourly scheduledAnnualHrs scheduledFTE scheduledWorkHrs shift "
    "shiftGroup termReason terminationReasonDescription termType timeclockID unionLocal unionNational weeklyHours "
    "dateTimeCreated dateTimeChanged supervisorEmployeeNumber supervisorCOID supervisorCompanyCode companyGLSegment "
    "locationGLSegment".split()
)
DEMOGRAPHIC_FIELDS = set(
    "ethnicDescription additionalName1 additionalName2 addressId addressIsOnTaxBoundary addressLatitude "
    "disabilityType formerName healthBloodType healthEyes healthHair healthHeightFeet healthHeightInches "
    "healthLastDonateDate healthWeight previousSSN originCountry originLocation addressSms homePhoneIsPrivate "
    "lastNameNotSameAsSSCard nationality1 nationality2 nationality3 personId employeeId companyId firstName "
    "middleName lastName preferredName namePrefixCode nameSuffixCode emailAddress emailAddressAlternate homePhoneID "
    "homePhone homePhoneCountry addressLine1 addressLine2 addressLine3 addressLine4 addressCity addressState "
    "addressZipCode addressCountry addressCounty dateOfBirth gender ethnicIdCode isSmoker isDisabled "
    "maritalStatusCode ssn ssnIsSuppressed userID integrationRecordId cellPhoneNumber".split()
)
ORG_LEVEL_FIELDS = set(
    "description budgetGroup code currentYearBudgetFTE currentYearBudgetSalary glSegment lastYearBudgetFTE "
    "lastYearBudgetSalary level levelDescription reportingCategory isActive".split()
)
PAY_PERIOD_FIELDS = set(
    "isActive dateTimeChanged dateTimeCreated dateTimeFiscalEndDone dateTimePeriodClosed dateTimePeriodOpened "
    "fiscalYearEnd isCtsCreated isPeriodClosed isQtdobPerControl isYtdobPerControl monthlyPayPeriodNumber mqyEndFlag "
    "obType payDate payDateSeq payGroup payPeriodId periodControl periodEndDate periodStartDate periodType "
    "suspAutoPay suspDirectDeposit userIdChanged userIdCreated notes auditKey payrollStateId".split()
)
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")


class Ukg:
    """A bare HTTPS client for the simulated UKG (what a test sees on the wire)."""

    def __init__(self, sb: Sandbox) -> None:
        self.base = sb.urls.ukg
        self.verify = str(sb.ca_path)
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE in the env would override verify=
        self.headers = {
            "US-Customer-Api-Key": catalog.UKG_CUSTOMER_API_KEY,
            "US-User-Api-Key": catalog.UKG_USER_API_KEY,
        }
        self.auth = (catalog.UKG_USERNAME, catalog.UKG_PASSWORD)

    def get(self, path: str, headers: dict[str, str] | None = None, auth: Any = "default", **params: Any):
        return self.session.get(
            self.base + path,
            params=params,
            headers=self.headers if headers is None else headers,
            auth=self.auth if auth == "default" else auth,
            verify=self.verify,
            timeout=30,
        )

    def json(self, path: str, **params: Any) -> Any:
        r = self.get(path, **params)
        assert r.status_code == 200, (r.status_code, r.text[:300])
        return json.loads(r.text, parse_float=Decimal)

    def all_pages(self, path: str, per_page: int = 1000, **params: Any) -> list[Any]:
        out: list[Any] = []
        page = 1
        while True:
            items = self.json(path, page=page, per_Page=per_page, **params)
            assert isinstance(items, list)
            out.extend(items)
            if len(items) < per_page:
                return out
            page += 1


@pytest.fixture
def ukg(sandbox: Sandbox) -> Ukg:
    return Ukg(sandbox)


# ------------------------------------------------------------------------------------------- auth


def test_both_api_keys_and_basic_auth_are_required_and_401_is_silent(ukg: Ukg) -> None:
    path = "/configuration/v1/org-levels"
    assert ukg.get(path).status_code == 200
    for missing in ("US-Customer-Api-Key", "US-User-Api-Key"):
        headers = {k: v for k, v in ukg.headers.items() if k != missing}
        r = ukg.get(path, headers=headers)
        assert r.status_code == 401
        assert r.content == b""
    r = ukg.get(path, auth=(catalog.UKG_USERNAME, "wrong-password"))
    assert (r.status_code, r.content) == (401, b"")
    r = ukg.get(path, auth=None)
    assert (r.status_code, r.content) == (401, b"")
    wrong_key = dict(ukg.headers, **{"US-Customer-Api-Key": "XXXXX"})
    assert ukg.get(path, headers=wrong_key).status_code == 401
    # header names are case-insensitive (the spec's security scheme spells it US-CUSTOMER-API-KEY)
    shouting = {k.upper(): v for k, v in ukg.headers.items()}
    assert ukg.get(path, headers=shouting).status_code == 200


def test_unknown_path_is_a_json_404_and_writes_are_refused(ukg: Ukg) -> None:
    r = ukg.get("/payroll/v9/nothing-here")
    assert r.status_code == 404
    assert "message" in r.json()
    r = ukg.session.post(
        ukg.base + "/payroll/v2/general-ledger", headers=ukg.headers, auth=ukg.auth, verify=ukg.verify, json={}
    )
    assert r.status_code == 405


# ------------------------------------------------------------------------------------------- paging


def test_paging_is_one_based_with_default_100_and_empty_past_the_end(ukg: Ukg, sandbox: Sandbox) -> None:
    everyone = ukg.json("/personnel/v1/employment-details", per_Page=10000)
    assert len(everyone) == len(sandbox.dataset.employees) == 60
    pages = [ukg.json("/personnel/v1/employment-details", page=p, per_Page=7) for p in range(1, 10)]
    assert [len(p) for p in pages] == [7] * 8 + [4]
    assert [e["employeeID"] for p in pages for e in p] == [e["employeeID"] for e in everyone]
    assert ukg.json("/personnel/v1/employment-details", page=10, per_Page=7) == []
    assert ukg.json("/personnel/v1/employment-details", page=99) == []
    # no paging parameters: the default page size (100) applies
    gl = ukg.json("/payroll/v2/general-ledger")
    assert len(gl) == 100
    assert ukg.get("/personnel/v1/employment-details", page=0).status_code == 400
    assert ukg.get("/personnel/v1/employment-details", per_Page="lots").status_code == 400


def test_per_page_is_capped_at_10000(ukg: Ukg, sandbox: Sandbox) -> None:
    sandbox.dataset.add_gl_run("BIGRUN", lines=10_010)
    first = ukg.json("/payroll/v2/general-ledger", runId="BIGRUN", per_Page=50000)
    assert len(first) == 10000
    second = ukg.json("/payroll/v2/general-ledger", runId="BIGRUN", per_Page=50000, page=2)
    assert len(second) == 10


# ------------------------------------------------------------------------------------------- GL


def test_gl_runs_balance_to_the_cent_per_run_and_per_employee(ukg: Ukg, sandbox: Sandbox) -> None:
    lines = ukg.all_pages("/payroll/v2/general-ledger", per_page=500)
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        by_run[line["runId"]].append(line)
    assert sorted(by_run) == sorted(r.run_id for r in sandbox.dataset.gl_runs)
    assert len(by_run) == 5
    for run_id, run_lines in by_run.items():
        assert len(run_lines) % 12 == 0, run_id
        debit = sum((line["debitAmt"] for line in run_lines), Decimal(0))
        credit = sum((line["creditAmt"] for line in run_lines), Decimal(0))
        assert debit == credit > 0, run_id
        for i in range(0, len(run_lines), 12):  # each employee's 12 lines balance on their own
            chunk = run_lines[i : i + 12]
            assert sum(c["debitAmt"] for c in chunk) == sum(c["creditAmt"] for c in chunk)
            assert [c["generalLedgerAccount"] for c in chunk] == [a.ukg_account for a in catalog.GL_ACCOUNTS]
        for line in run_lines:
            for amount in (line["debitAmt"], line["creditAmt"]):
                assert isinstance(amount, Decimal) and amount == amount.quantize(Decimal("0.01"))
    system_ids = [line["systemId"] for line in lines]
    assert len(set(system_ids)) == len(system_ids)


def test_gl_line_fields_follow_the_spec(ukg: Ukg, sandbox: Sandbox) -> None:
    run = sandbox.dataset.gl_runs[-1]
    r = ukg.get("/payroll/v2/general-ledger", runId=run.run_id, per_Page=12)
    lines = json.loads(r.text, parse_float=Decimal)
    assert re.search(r'"debitAmt":\d+\.\d{2},', r.text)  # a JSON number, not a string
    active_ccs = {c.code for c in catalog.COST_CENTERS if c.is_active}
    for line, account in zip(lines, catalog.GL_ACCOUNTS, strict=True):
        assert set(line) == GL_FIELDS
        assert line["coId"] == catalog.UKG_CO_ID and line["companyCode"] == catalog.UKG_COMPANY_CODE
        assert line["payGroup"] == "BW" and line["blockId"] == 1 and line["totalNrOfBlocks"] == 1
        assert line["periodEndDate"] == f"{run.period_end:%Y-%m-%d}T00:00:00"
        for field in ("periodEndDate", "periodStartDate", "payPeriodEndDate", "glRunDateTime"):
            assert ISO_DATE.match(line[field]), field
        if account.side == "debit":
            assert line["orgLevel1"] in active_ccs and line["orgLevel2"]
            assert line["debitAmt"] > 0 and line["creditAmt"] == 0
        else:
            assert line["orgLevel1"] == "" and line["orgLevel2"] == ""
            assert line["creditAmt"] > 0 and line["debitAmt"] == 0


def test_gl_filters_by_run_id_path_and_block(ukg: Ukg, sandbox: Sandbox) -> None:
    run = sandbox.dataset.gl_runs[1]
    by_query = ukg.all_pages("/payroll/v2/general-ledger", runId=run.run_id)
    by_path = ukg.all_pages(f"/payroll/v2/general-ledger/{run.run_id}")
    assert by_query == by_path
    assert len(by_query) == len(run) and {line["runId"] for line in by_query} == {run.run_id}
    assert ukg.json("/payroll/v2/general-ledger", runId=run.run_id, blockId=2) == []
    assert len(ukg.json("/payroll/v2/general-ledger", runId=run.run_id, blockId=1, per_Page=5)) == 5
    assert ukg.json("/payroll/v2/general-ledger", runId="GL19990101BW01") == []
    assert ukg.get("/payroll/v2/general-ledger/GL19990101BW01").status_code == 404
    latest = ukg.json("/payroll/v2/general-ledger", mostRecent="true", per_Page=1)
    assert latest[0]["runId"] == sandbox.dataset.gl_runs[-1].run_id


def test_generated_benchmark_run_balances_for_any_line_count(ukg: Ukg, sandbox: Sandbox) -> None:
    for n in (25_001, 12_005):  # remainder 1 (a 13-line group) and a short last group
        run = sandbox.dataset.add_gl_run(lines=n)
        lines = ukg.all_pages("/payroll/v2/general-ledger", per_page=10000, runId=run.run_id)
        assert len(lines) == n
        assert sum(x["debitAmt"] for x in lines) == sum(x["creditAmt"] for x in lines)
        assert len({x["systemId"] for x in lines}) == n
        assert all(x["debitAmt"] > 0 or x["creditAmt"] > 0 for x in lines)


def test_hostile_lines_are_served_verbatim(ukg: Ukg, sandbox: Sandbox) -> None:
    ds = sandbox.dataset
    good = ds.make_gl_line("HOSTILE01", "5000", debit=Decimal("10.00"), cost_center="110", department="PROD")
    lines: list[Any] = [
        good,
        ds.make_gl_line("HOSTILE01", "5010", debit=RawJson("NaN")),
        ds.make_gl_line("HOSTILE01", "5100", debit=RawJson("1e3")),
        ds.make_gl_line("HOSTILE01", "5110", debit="1,234.50"),
        ds.make_gl_line("HOSTILE01", "2100", credit=None),
        RawJson('{"runId":"HOSTILE01","debitAmt":12.345,"creditAmt":-0.00}'),
    ]
    ds.add_gl_run("HOSTILE01", lines=lines)
    r = ukg.get("/payroll/v2/general-ledger", runId="HOSTILE01")
    assert r.status_code == 200
    text = r.text
    assert '"debitAmt":NaN' in text
    assert '"debitAmt":1e3' in text
    assert '"debitAmt":"1,234.50"' in text
    assert '"creditAmt":null' in text
    assert '{"runId":"HOSTILE01","debitAmt":12.345,"creditAmt":-0.00}' in text
    assert '"debitAmt":10.00' in text
    with pytest.raises(ValueError):
        json.loads(text, parse_constant=_refuse)


def _refuse(name: str) -> Any:
    raise ValueError(name)


def test_amounts_are_deterministic_per_seed(sandbox: Sandbox) -> None:
    today = sandbox.dataset.today
    a = UkgDataset(30, seed=7, today=today)
    b = UkgDataset(30, seed=7, today=today)
    c = UkgDataset(30, seed=8, today=today)
    assert a.gl_lines(a.gl_runs[0].run_id) == b.gl_lines(b.gl_runs[0].run_id)
    assert a.gl_lines(a.gl_runs[0].run_id) != c.gl_lines(c.gl_runs[0].run_id)
    assert [r.run_id for r in a.gl_runs] == [r.run_id for r in c.gl_runs]


# ------------------------------------------------------------------------------------------- org levels


def test_org_levels_are_cost_centers_and_departments(ukg: Ukg) -> None:
    levels = ukg.json("/configuration/v1/org-levels")
    for item in levels:
        assert set(item) == ORG_LEVEL_FIELDS
        assert item["glSegment"] == item["code"]
    ccs = [o for o in levels if o["level"] == 1]
    depts = [o for o in levels if o["level"] == 2]
    assert {o["code"] for o in ccs} == {c.code for c in catalog.COST_CENTERS}
    assert {o["code"] for o in depts} == {d.code for d in catalog.DEPARTMENTS}
    assert {o["levelDescription"] for o in ccs} == {"Cost Center"}
    assert {o["levelDescription"] for o in depts} == {"Department"}
    inactive = ukg.json("/configuration/v1/org-levels", isActive="false")
    assert [o["code"] for o in inactive] == ["390"]
    assert [o["code"] for o in ukg.json("/configuration/v1/org-levels", code="220")] == ["220"]
    assert ukg.json("/configuration/v1/org-levels/2/FIN")["description"] == "Finance"
    assert ukg.get("/configuration/v1/org-levels/2/NOPE").status_code == 404


# ------------------------------------------------------------------------------------------- employees


def test_employment_and_demographic_records_use_the_spec_casing(ukg: Ukg, sandbox: Sandbox) -> None:
    details = ukg.json("/personnel/v1/employment-details", per_Page=100)
    demographics = ukg.json("/personnel/v1/employee-demographic-details", per_Page=100)
    assert len(details) == len(demographics) == 60
    for d in details:
        assert set(d) <= EMPLOYMENT_FIELDS, set(d) - EMPLOYMENT_FIELDS
        assert d["companyID"] == catalog.UKG_CO_ID and d["payGroup"] == "BW"
        assert re.fullmatch(r"EE\d{6}", d["employeeID"]) and re.fullmatch(r"1\d{5}", d["employeeNumber"])
        assert ISO_DATE.match(d["dateTimeChanged"]) and ISO_DATE.match(d["originalHireDate"])
    for d in demographics:
        assert set(d) <= DEMOGRAPHIC_FIELDS, set(d) - DEMOGRAPHIC_FIELDS
        assert d["companyId"] == catalog.UKG_CO_ID and d["employeeId"].startswith("EE")
    active_ccs = {c.code for c in catalog.COST_CENTERS if c.is_active}
    assert {d["orgLevel1Code"] for d in details} == active_ccs  # every active cost center in use
    assert {d["orgLevel2Code"] for d in details} == {d.code for d in catalog.DEPARTMENTS}
    assert {d["primaryWorkLocationCode"] for d in details} == {"PLT1", "PLT2", "HQ"}


@pytest.mark.sandbox(employees=600)
def test_default_company_has_terminations_and_recent_hires(ukg: Ukg, sandbox: Sandbox) -> None:
    details = ukg.all_pages("/personnel/v1/employment-details", per_page=10000)
    assert len(details) == 600
    terminated = [d for d in details if d["employeeStatusCode"] == "T"]
    assert 5 <= len(terminated) <= 40
    assert all(ISO_DATE.match(d["dateOfTermination"]) for d in terminated)
    assert all(d["dateOfTermination"] is None for d in details if d["employeeStatusCode"] == "A")
    first, last = sandbox.dataset.gl_runs[0], sandbox.dataset.gl_runs[-1]
    paid_first = {p.key for p in first.participants}  # type: ignore[attr-defined]
    paid_last = {p.key for p in last.participants}  # type: ignore[attr-defined]
    assert paid_first - paid_last and paid_last - paid_first  # leavers and joiners between runs


def test_employment_filters(ukg: Ukg, sandbox: Sandbox) -> None:
    emp = sandbox.dataset.employees[3]
    found = ukg.json("/personnel/v1/employment-details", employeeNumber=emp.employee_number)
    assert [d["employeeID"] for d in found] == [emp.employee_id]
    found = ukg.json("/personnel/v1/employment-details", employeeId=emp.employee_id)
    assert [d["employeeNumber"] for d in found] == [emp.employee_number]
    assert ukg.json("/personnel/v1/employment-details", payGroup="XX") == []
    assert ukg.get("/personnel/v1/employment-details", dateTimeChanged=">2026-11-01").status_code == 400
    found = ukg.json("/personnel/v1/employee-demographic-details", employeeId=emp.employee_id)
    assert [d["lastName"] for d in found] == [emp.last_name]


def test_date_filter_syntax() -> None:
    when = dt.datetime(2026, 11, 3, 14, 30)
    assert date_filter(">11-03-2026")(when) and not date_filter(">11-04-2026")(when)
    assert date_filter("<11-04-2026")(when) and not date_filter("<11-03-2026")(when)
    assert date_filter("=11-03-2026")(when) and date_filter("11-03-2026")(when)
    assert date_filter("{11-01-2026,11-03-2026}")(when) and not date_filter("{11-04-2026,11-09-2026}")(when)
    assert not date_filter(">01-01-1900")(None)


def test_hire_transfer_terminate_show_up_in_changed_since(ukg: Ukg, sandbox: Sandbox) -> None:
    ds = sandbox.dataset
    since = f">{ds.today:%m-%d-%Y}"
    before = {d["employeeNumber"] for d in ukg.json("/personnel/v1/employment-details", dateTimeChanged=since)}
    hired = ds.hire("Ada", "O'Neill", cost_center="220", department="LOG")
    moved = ds.employees[5]
    ds.transfer(moved.employee_number, "320", "SALES")
    gone = ds.employees[6]
    ds.terminate(gone.employee_number, ds.today - dt.timedelta(days=1))
    changed = {d["employeeNumber"]: d for d in ukg.json("/personnel/v1/employment-details", dateTimeChanged=since)}
    assert {hired.employee_number, moved.employee_number, gone.employee_number} <= set(changed)
    assert set(changed) == before | {hired.employee_number, moved.employee_number, gone.employee_number}
    assert (changed[moved.employee_number]["orgLevel1Code"], changed[moved.employee_number]["orgLevel2Code"]) == (
        "320",
        "SALES",
    )
    assert changed[gone.employee_number]["employeeStatusCode"] == "T"
    assert changed[hired.employee_number]["orgLevel1Code"] == "220"


# ------------------------------------------------------------------------------------------- pay periods


def test_pay_periods_closed_history_and_open_current(ukg: Ukg, sandbox: Sandbox) -> None:
    periods = ukg.json("/payroll/v1/paygroup-payperiods", payGroup="BW")
    for p in periods:
        assert set(p) <= PAY_PERIOD_FIELDS, set(p) - PAY_PERIOD_FIELDS
    closed = [p for p in periods if p["isPeriodClosed"]]
    open_ = [p for p in periods if not p["isPeriodClosed"]]
    assert len(closed) == 5 and len(open_) >= 2
    today = sandbox.dataset.today
    ends = [dt.date.fromisoformat(p["periodEndDate"][:10]) for p in periods]
    assert ends == sorted(ends) and all((b - a).days == 14 for a, b in zip(ends, ends[1:], strict=False))
    assert all(e.weekday() == 4 for e in ends)  # Fridays
    assert (today - dt.date.fromisoformat(closed[0]["periodEndDate"][:10])).days <= 11 * 7
    current = [p for p in open_ if p["periodStartDate"][:10] <= today.isoformat() <= p["periodEndDate"][:10]]
    assert len(current) == 1
    for p in closed:
        assert ISO_DATE.match(p["dateTimePeriodClosed"]) and p["dateTimePeriodClosed"][:10] <= today.isoformat()
        assert p["payDate"] > p["periodEndDate"]
        assert p["periodControl"] == p["periodEndDate"][:10].replace("-", "")
        run_id = f"GL{p['periodControl']}BW01"
        assert sandbox.dataset.gl_run(run_id).period_end.isoformat() == p["periodEndDate"][:10]
    assert all(p["dateTimePeriodClosed"] is None for p in open_)
    assert ukg.json("/payroll/v1/paygroup-payperiods", payGroup="XX") == []
    last = closed[-1]["periodEndDate"][:10]
    mdy = f"{last[5:7]}-{last[8:10]}-{last[:4]}"
    assert [p["periodControl"] for p in ukg.json("/payroll/v1/paygroup-payperiods", periodEndDate=mdy)] == [
        closed[-1]["periodControl"]
    ]


@pytest.mark.parametrize(
    ("today", "closed_last"),
    [(dt.date(2026, 11, 16), dt.date(2026, 11, 13)), (dt.date(2026, 11, 15), dt.date(2026, 10, 30))],
)
def test_calendar_is_anchored_to_today(today: dt.date, closed_last: dt.date) -> None:
    ds = UkgDataset(12, today=today)
    assert ds.closed_periods()[-1].period_end == closed_last
    assert len(ds.closed_periods()) == 5 and len(ds.gl_runs) == 5
    assert ds.gl_runs[-1].run_id == f"GL{closed_last:%Y%m%d}BW01"
    assert any(p.period_start <= today <= p.period_end for p in ds.open_periods())


def test_close_period_adds_a_run_without_the_terminated(ukg: Ukg, sandbox: Sandbox) -> None:
    ds = sandbox.dataset
    target = ds.open_periods()[0]
    leaver = ds.employees[10]
    ds.terminate(leaver.employee_number, target.period_start - dt.timedelta(days=1))
    old_run = ds.gl_runs[-1]
    old_lines = ds.gl_lines(old_run.run_id)
    ds.transfer(ds.employees[0].employee_number, "230", "MAINT")  # history must not change
    run = ds.close_period()
    assert run is not None and run.run_id == f"GL{target.period_end:%Y%m%d}BW01"
    assert ds.gl_lines(old_run.run_id) == old_lines
    periods = ukg.json("/payroll/v1/paygroup-payperiods")
    assert next(p for p in periods if p["periodControl"] == target.period_control)["isPeriodClosed"] is True
    lines = ukg.all_pages("/payroll/v2/general-ledger", runId=run.run_id)
    active = [e for e in ds.employees if e.paid_in(target.period_start, target.period_end)]
    assert len(lines) == 12 * len(active) and leaver not in active
    assert sum(x["debitAmt"] for x in lines) == sum(x["creditAmt"] for x in lines)
    assert len(ds.open_periods()) >= 2  # a next period keeps appearing
    with pytest.raises(ValueError):
        ds.close_period(period_end=target.period_end)
