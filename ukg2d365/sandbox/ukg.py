"""Simulated UKG Pro REST API: the GL, org-level, employee and pay-calendar reads the CLI uses.

Behaviour copied from what is documented or observed (UKG Pro's published REST API guides): HTTP Basic with a web
service account plus the ``US-Customer-Api-Key`` header (the sandbox also demands ``US-User-Api-Key``);
bad or missing credentials get a bare 401 with an empty body. List endpoints answer bare JSON arrays,
paged with ``page`` (1-based) and ``per_Page`` (default 100, capped at 10,000); past the last page the
answer is ``[]``. Query parameter names are matched case-insensitively, like ASP.NET model binding.
Field names and casing are the spec's, which differ per resource (companyID vs companyId vs coId).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from ukg2d365.sandbox import catalog
from ukg2d365.sandbox.data import (
    COMPANY_NAME,
    LOCATION_ADDRESS,
    Employee,
    GlRun,
    PayPeriod,
    RawJson,
    UkgDataset,
    iso_date,
    iso_datetime,
)
from ukg2d365.sandbox.types import SimRequest, SimResponse, dumps

DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 10000

_DATE_FILTER = re.compile(r"^\s*([<>=]?)\s*(\d{2}-\d{2}-\d{4})\s*$")
_DATE_RANGE = re.compile(r"^\s*=?\s*\{\s*(\d{2}-\d{2}-\d{4})\s*,\s*(\d{2}-\d{2}-\d{4})\s*\}\s*$")


class BadRequest(Exception):
    pass


# ---------------------------------------------------------------------------- JSON rendering


def render_json(value: Any) -> str:
    """JSON text for a value that may hold RawJson (served as written) and Decimal (exact digits)."""
    if isinstance(value, RawJson):
        return value.text
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{render_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(render_json(v) for v in value) + "]"
    if isinstance(value, dt.datetime):
        return json.dumps(iso_datetime(value))
    if isinstance(value, dt.date):
        return json.dumps(iso_date(value))
    return json.dumps(value)


_AMOUNT_MARK = "\u0001amt:"
_AMOUNT_MARKED = re.compile(r'"\\u0001amt:(-?[0-9.]+)"')


def _unmark(m: re.Match[str]) -> str:
    return m.group(1)


def _array(items: list[Any], fast: bool) -> bytes:
    if fast:
        # Generated GL lines: only debitAmt/creditAmt are Decimal. Mark them, let the C encoder write
        # the rest, then unquote the marks: exact digits, ~5x faster than walking every value.
        marked = [
            {**i, "creditAmt": _AMOUNT_MARK + str(i["creditAmt"]), "debitAmt": _AMOUNT_MARK + str(i["debitAmt"])}
            for i in items
        ]
        text = json.dumps(marked, separators=(",", ":"))
        return _AMOUNT_MARKED.sub(_unmark, text).encode()
    return ("[" + ",".join(render_json(i) for i in items) + "]").encode()


# ---------------------------------------------------------------------------- filters


def _parse_mdy(text: str) -> dt.date:
    try:
        return dt.datetime.strptime(text, "%m-%d-%Y").date()
    except ValueError:
        raise BadRequest(f"'{text}' is not a valid date (MM-DD-YYYY)") from None


def date_filter(expr: str) -> Callable[[dt.datetime | dt.date | None], bool]:
    """UKG's date filter syntax: ``>MM-DD-YYYY``, ``<MM-DD-YYYY``, ``=MM-DD-YYYY`` (or bare), ``{a,b}``.

    ``>d`` means at or after midnight starting day d, ``<d`` before it, ``=d`` on day d, and
    ``{a,b}`` days a through b inclusive.
    """
    rng = _DATE_RANGE.match(expr)
    if rng:
        lo, hi = _parse_mdy(rng.group(1)), _parse_mdy(rng.group(2))
        return lambda v: v is not None and lo <= _day(v) <= hi
    m = _DATE_FILTER.match(expr)
    if not m:
        raise BadRequest(f"'{expr}' is not a valid date filter (use >MM-DD-YYYY, <MM-DD-YYYY or =MM-DD-YYYY)")
    op, day = m.group(1) or "=", _parse_mdy(m.group(2))
    start = dt.datetime.combine(day, dt.time())
    if op == ">":
        return lambda v: v is not None and _as_dt(v) >= start
    if op == "<":
        return lambda v: v is not None and _as_dt(v) < start
    return lambda v: v is not None and _day(v) == day


def _day(v: dt.datetime | dt.date) -> dt.date:
    return v.date() if isinstance(v, dt.datetime) else v


def _as_dt(v: dt.datetime | dt.date) -> dt.datetime:
    return v if isinstance(v, dt.datetime) else dt.datetime.combine(v, dt.time())


def _text_eq(expected: str) -> Callable[[Any], bool]:
    wanted = {part.strip().lower() for part in expected.split(",")}  # UKG accepts comma-separated values
    return lambda v: v is not None and str(v).strip().lower() in wanted


def _bool_eq(expected: str) -> Callable[[Any], bool]:
    text = expected.strip().lower()
    if text not in ("true", "false"):
        raise BadRequest(f"'{expected}' is not a valid boolean")
    return lambda v: bool(v) == (text == "true")


def _on(get: Callable[[Employee], Any], match: Callable[[Any], bool]) -> Callable[[Employee], bool]:
    return lambda e: match(get(e))


# ---------------------------------------------------------------------------- the service


class UkgService:
    def __init__(
        self,
        dataset: UkgDataset,
        *,
        username: str = catalog.UKG_USERNAME,
        password: str = catalog.UKG_PASSWORD,
        customer_api_key: str = catalog.UKG_CUSTOMER_API_KEY,
        user_api_key: str = catalog.UKG_USER_API_KEY,
    ) -> None:
        self.dataset = dataset
        self._basic = (username, password)
        self._customer_key = customer_api_key
        self._user_key = user_api_key

    # -------------------------------------------------------------- plumbing

    def _authorized(self, req: SimRequest) -> bool:
        header = req.header("authorization") or ""
        if header[:6].lower() != "basic ":
            return False
        try:
            user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        ok = [
            bool(sep),
            hmac.compare_digest(user.encode(), self._basic[0].encode()),
            hmac.compare_digest(password.encode(), self._basic[1].encode()),
            hmac.compare_digest((req.header("us-customer-api-key") or "").encode(), self._customer_key.encode()),
            hmac.compare_digest((req.header("us-user-api-key") or "").encode(), self._user_key.encode()),
        ]
        return all(ok)

    @staticmethod
    def _args(req: SimRequest) -> dict[str, str]:
        """Query parameters by lower-cased name (first value wins)."""
        out: dict[str, str] = {}
        for name, values in req.query.items():
            if values:
                out.setdefault(name.lower(), values[0])
        return out

    @staticmethod
    def _paging(args: dict[str, str]) -> tuple[int, int]:
        try:
            page = int(args.get("page", "1") or "1")
            per_page = int(args.get("per_page", str(DEFAULT_PER_PAGE)) or DEFAULT_PER_PAGE)
        except ValueError:
            raise BadRequest("page and per_Page must be whole numbers") from None
        if page < 1 or per_page < 1:
            raise BadRequest("page and per_Page must be 1 or more")
        return page, min(per_page, MAX_PER_PAGE)  # "the default/max is applied"

    @staticmethod
    def _message(status: int, message: str) -> SimResponse:
        return SimResponse.json(status, {"message": message})

    def handle(self, req: SimRequest) -> SimResponse:
        if not self._authorized(req):
            return SimResponse.empty(401)  # UKG's gateway says nothing more
        path = "/" + "/".join(p for p in req.path.split("/") if p)
        route = self._route(path)
        if route is None:
            return self._message(404, f"No HTTP resource was found that matches the request URI '{req.raw_path}'.")
        if req.method not in ("GET", "HEAD"):
            return self._message(405, f"The requested resource does not support http method '{req.method}'.")
        handler, params = route
        try:
            with self.dataset.lock:
                return handler(self._args(req), *params)
        except BadRequest as exc:
            return self._message(400, str(exc))

    def _route(self, path: str) -> tuple[Callable[..., SimResponse], tuple[str, ...]] | None:
        lower = path.lower()
        if lower == "/payroll/v2/general-ledger":
            return self._gl, ()
        m = re.fullmatch(r"/payroll/v2/general-ledger/([^/]+)", path, flags=re.IGNORECASE)
        if m:
            return self._gl, (m.group(1),)
        if lower == "/configuration/v1/org-levels":
            return self._org_levels, ()
        m = re.fullmatch(r"/configuration/v1/org-levels/([^/]+)/([^/]+)", path, flags=re.IGNORECASE)
        if m:
            return self._org_level, (m.group(1), m.group(2))
        if lower == "/personnel/v1/employment-details":
            return self._employment_details, ()
        if lower == "/personnel/v1/employee-demographic-details":
            return self._demographics, ()
        if lower == "/payroll/v1/paygroup-payperiods":
            return self._pay_periods, ()
        return None

    def _page(self, args: dict[str, str], items: list[Any]) -> SimResponse:
        page, per_page = self._paging(args)
        chunk = items[(page - 1) * per_page : page * per_page]
        return SimResponse(200, dumps(chunk), {"Content-Type": "application/json; charset=utf-8"})

    # -------------------------------------------------------------- GL

    def _gl(self, args: dict[str, str], path_run_id: str | None = None) -> SimResponse:
        page, per_page = self._paging(args)
        runs: list[GlRun] = list(self.dataset.gl_runs)
        run_id = path_run_id or args.get("runid") or None
        if run_id:
            runs = [r for r in runs if r.run_id.lower() == run_id.strip().lower()]
            if path_run_id and not runs:
                return self._message(404, f"General ledger run '{path_run_id}' was not found.")
        if args.get("mostrecent", "").strip().lower() in ("true", "1", "yes") and runs:
            runs = [max(runs, key=lambda r: r.gl_run_datetime)]
        block = args.get("blockid")
        if block:
            runs = [r.select_block(block) for r in runs]
        # page over the concatenation of the runs' items without materializing them
        start, stop = (page - 1) * per_page, page * per_page
        parts: list[bytes] = []
        offset = 0
        for run in runs:
            size = len(run)
            if offset + size > start and offset < stop:
                items = run.items(max(0, start - offset), stop - offset)
                if items:
                    parts.append(_array(items, run.generated)[1:-1])
            offset += size
            if offset >= stop:
                break
        return SimResponse(200, b"[" + b",".join(parts) + b"]", {"Content-Type": "application/json; charset=utf-8"})

    # -------------------------------------------------------------- org levels

    _ORG_FILTERS = {
        "leveldescription": "levelDescription",
        "code": "code",
        "budgetgroup": "budgetGroup",
        "reportingcategory": "reportingCategory",
    }

    def _org_levels(self, args: dict[str, str]) -> SimResponse:
        tests: list[tuple[str, Callable[[Any], bool]]] = [
            (field, _text_eq(args[name])) for name, field in self._ORG_FILTERS.items() if name in args
        ]
        if "isactive" in args:
            tests.append(("isActive", _bool_eq(args["isactive"])))
        items = [o for o in self.dataset.org_levels if all(t(o.get(f)) for f, t in tests)]
        # not paged (HelloID: "This call does not use Pages")
        return SimResponse(200, dumps(items), {"Content-Type": "application/json; charset=utf-8"})

    def _org_level(self, args: dict[str, str], level: str, code: str) -> SimResponse:
        for o in self.dataset.org_levels:
            if str(o["level"]) == level.strip() and o["code"].lower() == code.strip().lower():
                return SimResponse.json(200, o)
        return self._message(404, f"Org level {level} code '{code}' was not found.")

    # -------------------------------------------------------------- employees

    def _employment_details(self, args: dict[str, str]) -> SimResponse:
        text_filters = {
            "companyid": lambda e: e.company,
            "employeeid": lambda e: e.employee_id,
            "employeenumber": lambda e: e.employee_number,
            "paygroup": lambda e: e.pay_group,
            "employeestatuscode": lambda e: "A" if e.is_active else "T",
            "primaryjobcode": lambda e: e.job_code,
            "supervisorid": lambda e: e.supervisor_id,
        }
        date_filters: dict[str, Callable[[Employee], dt.date | dt.datetime | None]] = {
            "datetimechanged": lambda e: e.date_time_changed,
            "datetimecreated": lambda e: e.date_time_created,
            "dateoftermination": lambda e: e.termination_date,
            "originalhiredate": lambda e: e.hire_date,
            "lasthiredate": lambda e: e.hire_date,
        }
        tests: list[Callable[[Employee], bool]] = []
        for name, get in text_filters.items():
            if name in args:
                tests.append(_on(get, _text_eq(args[name])))
        for name, get_date in date_filters.items():
            if name in args:
                tests.append(_on(get_date, date_filter(args[name])))
        employees = [e for e in self.dataset.employees if all(t(e) for t in tests)]
        by_id = {x.employee_id: x for x in self.dataset.employees}
        return self._page(args, [self._employment_record(e, by_id.get(e.supervisor_id)) for e in employees])

    @staticmethod
    def _employment_record(e: Employee, supervisor: Employee | None) -> dict[str, Any]:
        terminated = e.termination_date is not None
        weekly = Decimal("40")
        return {
            "companyID": e.company,
            "companyCode": catalog.COMPANY_CODES.get(e.company, e.company),
            "companyName": COMPANY_NAME,
            "employeeID": e.employee_id,
            "jobDescription": e.job_title,
            "payGroupDescription": "Bi-weekly" if e.pay_group == catalog.PAY_GROUP else e.pay_group,
            "primaryJobCode": e.job_code,
            "orgLevel1Code": e.cost_center,
            "orgLevel2Code": e.department,
            "orgLevel3Code": "",
            "orgLevel4Code": "",
            "originalHireDate": iso_date(e.hire_date),
            "lastHireDate": iso_date(e.hire_date),
            "fullTimeOrPartTimeCode": "F",
            "primaryWorkLocationCode": e.location,
            "languageCode": "EN",
            "primaryProjectCode": "",
            "workPhoneNumber": "",
            "workPhoneExtension": "",
            "workPhoneCountry": "USA",
            "dateInJob": iso_date(e.date_in_job),
            "dateLastWorked": iso_date(e.termination_date) if e.termination_date else None,
            "dateOfBenefitSeniority": iso_date(e.hire_date),
            "dateOfSeniority": iso_date(e.hire_date),
            "deductionGroupCode": "STD",
            "earningGroupCode": "HRLY" if e.salary_or_hourly == "H" else "SAL",
            "employeeTypeCode": "REG",
            "employeeStatusCode": "T" if terminated else "A",
            "employeeNumber": e.employee_number,
            "jobChangeReasonCode": "",
            "jobTitle": e.job_title,
            "leaveReasonCode": "",
            "supervisorID": e.supervisor_id,
            "supervisorFirstName": supervisor.first_name if supervisor else "",
            "supervisorLastName": supervisor.last_name if supervisor else "",
            "dateOfTermination": iso_date(e.termination_date) if e.termination_date else None,
            "payGroup": e.pay_group,
            "payPeriod": "B",
            "positionCode": "",
            "salaryOrHourly": e.salary_or_hourly,
            "scheduledAnnualHrs": weekly * 52,
            "scheduledFTE": Decimal("1.0"),
            "scheduledWorkHrs": weekly * 2,
            "statusStartDate": iso_date(e.termination_date or e.hire_date),
            "termReason": e.term_reason if terminated else "",
            "termType": ("V" if e.term_reason in ("RES", "RET") else "I") if terminated else "",
            "weeklyHours": weekly,
            "dateTimeCreated": iso_datetime(e.date_time_created),
            "dateTimeChanged": iso_datetime(e.date_time_changed),
            "supervisorEmployeeNumber": supervisor.employee_number if supervisor else "",
            "supervisorCOID": supervisor.company if supervisor else "",
            "supervisorCompanyCode": catalog.COMPANY_CODES.get(supervisor.company, "") if supervisor else "",
            "companyGLSegment": catalog.COMPANY_CODES.get(e.company, e.company),
            "locationGLSegment": e.location,
        }

    def _demographics(self, args: dict[str, str]) -> SimResponse:
        records = [self._demographic_record(e) for e in self.dataset.employees]
        filters = {
            "employeeid": "employeeId",
            "companyid": "companyId",
            "lastname": "lastName",
            "emailaddress": "emailAddress",
            "addressstate": "addressState",
            "addresscountry": "addressCountry",
        }
        for name, field in filters.items():
            if name in args:
                match = _text_eq(args[name])
                records = [r for r in records if match(r.get(field))]
        return self._page(args, records)

    @staticmethod
    def _demographic_record(e: Employee) -> dict[str, Any]:
        city, state, zip_code, county = LOCATION_ADDRESS.get(e.location, LOCATION_ADDRESS["HQ"])
        digits = e.employee_number[-4:]
        return {
            "personId": e.person_id,
            "employeeId": e.employee_id,
            "companyId": e.company,
            "firstName": e.first_name,
            "middleName": e.middle_name,
            "lastName": e.last_name,
            "preferredName": "",
            "namePrefixCode": "",
            "nameSuffixCode": "",
            "emailAddress": e.email,
            "emailAddressAlternate": "",
            "homePhone": f"555010{digits}"[:10],
            "homePhoneCountry": "USA",
            "addressLine1": f"{int(digits) % 900 + 100} Main St",
            "addressLine2": "",
            "addressCity": city,
            "addressState": state,
            "addressZipCode": zip_code,
            "addressCountry": "USA",
            "addressCounty": county,
            "dateOfBirth": iso_date(e.birth_date),
            "gender": e.gender,
            "ethnicIdCode": "",
            "isSmoker": False,
            "isDisabled": "N",
            "maritalStatusCode": "S",
            "ssn": "",
            "ssnIsSuppressed": True,
            "userID": e.employee_id,
            "integrationRecordId": None,
            "cellPhoneNumber": "",
        }

    # -------------------------------------------------------------- pay periods

    def _pay_periods(self, args: dict[str, str]) -> SimResponse:
        periods = list(self.dataset.pay_periods)
        if "paygroup" in args:
            match = _text_eq(args["paygroup"])
            periods = [p for p in periods if match(p.pay_group)]
        for name, get in (
            ("periodenddate", lambda p: p.period_end),
            ("periodstartdate", lambda p: p.period_start),
            ("paydate", lambda p: p.pay_date),
        ):
            if name in args:
                match_date = date_filter(args[name])
                periods = [p for p in periods if match_date(get(p))]
        if "paydateseq" in args:
            periods = [p for p in periods if args["paydateseq"].strip() == "1"]
        if "startpercontrol" in args:
            periods = [p for p in periods if p.period_control >= args["startpercontrol"].strip()]
        if "endpercontrol" in args:
            periods = [p for p in periods if p.period_control <= args["endpercontrol"].strip()]
        return self._page(args, [self._pay_period_record(p) for p in periods])

    def _pay_period_record(self, p: PayPeriod) -> dict[str, Any]:
        same_month = [
            x for x in self.dataset.pay_periods
            if x.pay_group == p.pay_group and (x.pay_date.year, x.pay_date.month) == (p.pay_date.year, p.pay_date.month)
        ]  # fmt: skip
        created = dt.datetime.combine(p.period_start - dt.timedelta(days=60), dt.time(7, 0))
        return {
            "isActive": True,
            "dateTimeChanged": iso_datetime(p.date_time_closed or p.date_time_opened),
            "dateTimeCreated": iso_datetime(created),
            "dateTimeFiscalEndDone": None,
            "dateTimePeriodClosed": iso_datetime(p.date_time_closed) if p.date_time_closed else None,
            "dateTimePeriodOpened": iso_datetime(p.date_time_opened),
            "fiscalYearEnd": p.pay_date.year != (p.pay_date + dt.timedelta(days=14)).year,
            "isPeriodClosed": p.is_closed,
            "monthlyPayPeriodNumber": 1 + sorted(x.pay_date for x in same_month).index(p.pay_date),
            "mqyEndFlag": "",
            "payDate": iso_date(p.pay_date),
            "payDateSeq": 1,
            "payGroup": p.pay_group,
            "payPeriodId": p.pay_period_id,
            "periodControl": p.period_control,
            "periodEndDate": iso_date(p.period_end),
            "periodStartDate": iso_date(p.period_start),
            "periodType": "R",
            "userIdChanged": "PAYROLL.ADMIN",
            "userIdCreated": "PAYROLL.ADMIN",
            "notes": "",
        }
