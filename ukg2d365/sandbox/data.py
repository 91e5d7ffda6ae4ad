"""The simulated UKG tenant's data: employees, org levels, the BW pay calendar and payroll GL runs.

Everything is generated deterministically from a seed, an employee count and ``today``:

* Employees are spread over the catalog's three locations (PLT1, PLT2, HQ) with an active cost
  center (org level 1) and department (org level 2); the first few are assigned so that every active
  code appears. A few are terminated, a few were hired recently.
* The BW calendar is a fixed bi-weekly grid (period ends on Fridays, on the grid of 2026-11-13), so
  the same periods and run ids come back whatever day the sandbox starts. A period closes on the
  Monday after it ends (``isPeriodClosed``) and is paid on the Wednesday. The calendar lists the five
  most recent closed periods, then every open one up to the period after the current one.
* Each closed period has one GL run ``GL<periodEnd:%Y%m%d><payGroup><seq:02>`` (e.g. GL20261113BW01):
  12 lines per employee paid in it (catalog.GL_ACCOUNTS order), the six expense debits carrying the
  employee's cost center and department, the six liability credits carrying empty org levels. Each
  employee's 12 lines balance to the cent: the net-pay credit is computed as the remainder, in Decimal.

GL lines are produced lazily, per page, so a benchmark run of 100,000 lines costs nothing until read.
Tests mutate the data with ``hire``/``terminate``/``transfer``/``add_gl_run``/``close_period``.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

from ukg2d365.sandbox import catalog
from ukg2d365.sandbox.catalog import GL_ACCOUNTS, GlAccount

DEFAULT_SEED = 365
DEFAULT_EMPLOYEES = 600
PERIOD_ANCHOR = dt.date(2026, 11, 13)  # a Friday on the BW grid
PERIOD_DAYS = 14
CLOSE_LAG_DAYS = 3  # closed (payroll finalized, GL run made) on the Monday after the period ends
PAY_LAG_DAYS = 5  # paid on the Wednesday
CLOSED_PERIODS_LISTED = 5
COMPANY_NAME = "Sandbox Manufacturing Inc."
GL_RUN_USER = "PAYROLL.ADMIN"

CENT = Decimal("0.01")
ZERO = Decimal("0.00")

PLANT_DEPARTMENTS = ("PROD", "MAINT", "QA", "LOG")
OFFICE_DEPARTMENTS = ("FIN", "HR", "IT", "SALES")
LOCATIONS = (("PLT1", 40), ("PLT2", 35), ("HQ", 25))
LOCATION_ADDRESS = {
    "PLT1": ("Springfield", "IL", "62701", "Sangamon"),
    "PLT2": ("Riverside", "CA", "92501", "Riverside"),
    "HQ": ("Chicago", "IL", "60601", "Cook"),
}
JOBS = {
    "PROD": [("ASMB1", "Assembler I", "H"), ("ASMB2", "Assembler II", "H"), ("PRSUP", "Production supervisor", "S")],
    "MAINT": [("MTECH", "Maintenance technician", "H"), ("ELEC", "Electrician", "H")],
    "QA": [("QAINS", "Quality inspector", "H"), ("QAENG", "Quality engineer", "S")],
    "LOG": [("FORK", "Forklift operator", "H"), ("SHIP", "Shipping clerk", "H")],
    "FIN": [("ACCT", "Accountant", "S"), ("APCLK", "Accounts payable clerk", "H")],
    "HR": [("HRGEN", "HR generalist", "S"), ("PAYSP", "Payroll specialist", "S")],
    "IT": [("SYSAD", "Systems administrator", "S"), ("DEVEL", "Software developer", "S")],
    "SALES": [("SREP", "Sales representative", "S"), ("SMGR", "Sales manager", "S")],
}
FIRST_NAMES = [
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
    "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Carlos", "Karen",
    "Daniel", "Lisa", "Matthew", "Nancy", "Anthony", "Betty", "Mark", "Sandra", "José", "Ashley",
    "Wei", "Priya", "Ahmed", "Olga", "Kenji", "Fatima", "Liam", "Zoë", "Mateo", "Aaliyah",
]  # fmt: skip
LAST_NAMES = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "O'Brien", "Nguyen", "Müller", "D'Angelo", "Kowalski", "Øberg", "Van der Berg", "Smith-Jones", "Chen", "Patel",
]  # fmt: skip


@dataclass(frozen=True)
class RawJson:
    """JSON text served exactly as written: a whole GL item, or one field's value (``NaN``, ``1e3``...)."""

    text: str


def iso_date(value: dt.date) -> str:
    return f"{value:%Y-%m-%d}T00:00:00"


def iso_datetime(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S")


def q(value: Decimal) -> Decimal:
    return value.quantize(CENT)


# ---------------------------------------------------------------------------- employees


@dataclass
class Employee:
    employee_id: str  # UKG EEID
    employee_number: str
    first_name: str
    middle_name: str
    last_name: str
    location: str
    cost_center: str
    department: str
    job_code: str
    job_title: str
    salary_or_hourly: str  # "S" | "H"
    annual_pay: Decimal
    hire_date: dt.date
    birth_date: dt.date
    gender: str
    person_id: str
    date_time_created: dt.datetime
    date_time_changed: dt.datetime
    date_in_job: dt.date
    termination_date: dt.date | None = None
    term_reason: str = ""
    pay_group: str = catalog.PAY_GROUP
    supervisor_id: str = ""
    company: str = catalog.UKG_CO_ID  # UKG coId

    @property
    def is_active(self) -> bool:
        return self.termination_date is None

    def paid_in(self, start: dt.date, end: dt.date) -> bool:
        """Worked some of the period: hired by its end, not terminated before it started."""
        return self.hire_date <= end and (self.termination_date is None or self.termination_date >= start)

    @property
    def email(self) -> str:
        def clean(s: str) -> str:
            return "".join(c for c in s.lower() if c.isascii() and c.isalnum())

        return f"{clean(self.first_name)}.{clean(self.last_name)}.{self.employee_number}@sandbox-mfg.example"


@dataclass(frozen=True)
class _Participant:
    """An employee as paid in one run: a snapshot, so a later transfer does not rewrite history."""

    key: str  # seeds the amounts
    cost_center: str
    department: str
    location: str
    job_code: str
    job_title: str
    salary_or_hourly: str
    annual_pay: Decimal
    company: str = catalog.UKG_CO_ID


# ---------------------------------------------------------------------------- pay calendar


@dataclass
class PayPeriod:
    pay_group: str
    index: int  # position on the BW grid, 0 = the period ending PERIOD_ANCHOR
    period_start: dt.date
    period_end: dt.date
    pay_date: dt.date
    date_time_opened: dt.datetime
    date_time_closed: dt.datetime | None = None

    @property
    def is_closed(self) -> bool:
        return self.date_time_closed is not None

    @property
    def period_control(self) -> str:
        return f"{self.period_end:%Y%m%d}"

    @property
    def pay_period_id(self) -> int:
        return 5000 + self.index


def _period(pay_group: str, index: int) -> PayPeriod:
    end = PERIOD_ANCHOR + dt.timedelta(days=PERIOD_DAYS * index)
    start = end - dt.timedelta(days=PERIOD_DAYS - 1)
    # periods are opened two weeks ahead, so even the next period was opened in the past
    opened = dt.datetime.combine(start - dt.timedelta(days=PERIOD_DAYS), dt.time(17, 45))
    return PayPeriod(pay_group, index, start, end, end + dt.timedelta(days=PAY_LAG_DAYS), opened)


def _scheduled_close(period: PayPeriod) -> dt.datetime:
    return dt.datetime.combine(period.period_end + dt.timedelta(days=CLOSE_LAG_DAYS), dt.time(17, 30))


# ---------------------------------------------------------------------------- GL runs


class GlRun(ABC):
    """One payroll GL run: its header values and a way to read a slice of its items."""

    generated = True  # items are plain dicts of str/int/Decimal/None (rendered on the fast path)

    def __init__(
        self,
        run_id: str,
        pay_group: str,
        period_start: dt.date,
        period_end: dt.date,
        gl_run_datetime: dt.datetime,
        system_id_base: int,
    ) -> None:
        self.run_id = run_id
        self.pay_group = pay_group
        self.period_start = period_start
        self.period_end = period_end
        self.gl_run_datetime = gl_run_datetime
        self.system_id_base = system_id_base

    def iso_dates(self) -> tuple[str, str, str]:
        """periodEndDate, periodStartDate, glRunDateTime as UKG writes them (formatted once per run)."""
        key = (self.period_end, self.period_start, self.gl_run_datetime)
        if getattr(self, "_iso_key", None) != key:
            self._iso_key = key
            self._iso = (iso_date(self.period_end), iso_date(self.period_start), iso_datetime(self.gl_run_datetime))
        return self._iso

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def items(self, start: int, stop: int) -> list[Any]: ...

    def select_block(self, block_id: str) -> GlRun:
        """The run restricted to one blockId (generated runs are a single block 1)."""
        return self if block_id.strip() == "1" else ExplicitGlRun.like(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.run_id} {len(self)} lines>"


class GeneratedGlRun(GlRun):
    """Lines computed on demand from participant snapshots: 12 per participant, balanced per participant."""

    def __init__(
        self,
        *,
        run_id: str,
        pay_group: str,
        period_start: dt.date,
        period_end: dt.date,
        gl_run_datetime: dt.datetime,
        system_id_base: int,
        participants: Sequence[_Participant],
        n_lines: int,
        seed: int,
    ) -> None:
        super().__init__(run_id, pay_group, period_start, period_end, gl_run_datetime, system_id_base)
        self.participants = participants
        self.n_lines = n_lines
        self.seed = seed
        groups, rest = divmod(n_lines, 12)
        # group sizes: 12 each; a remainder r in 2..11 forms a short last group; r == 1 makes the last
        # group 13 lines (net pay split in two), because a single line cannot balance
        if rest == 1:
            self._last_size = 13
            self._groups = groups
        elif rest == 0:
            self._last_size = 12
            self._groups = groups
        else:
            self._last_size = rest
            self._groups = groups + 1

    def __len__(self) -> int:
        return self.n_lines

    def items(self, start: int, stop: int) -> list[dict[str, Any]]:
        start, stop = max(0, start), min(stop, self.n_lines)
        out: list[dict[str, Any]] = []
        if start >= stop:
            return out
        group = min(start // 12, self._groups - 1)  # the last group may hold 13 lines
        while group < self._groups:
            first = group * 12
            if first >= stop:
                break
            lines = self._group_lines(group)
            for offset, line in enumerate(lines):
                if start <= first + offset < stop:
                    out.append(line)
            group += 1
        return out

    def _group_lines(self, group: int) -> list[dict[str, Any]]:
        p = self.participants[group % len(self.participants)]
        amounts = _employee_amounts(f"{self.seed}:{self.run_id}:{group}:{p.key}", p)
        size = self._last_size if group == self._groups - 1 else 12
        pairs: list[tuple[GlAccount, Decimal]] = list(zip(GL_ACCOUNTS, amounts, strict=True))
        if size == 13:
            net_account, net = pairs[6]
            half = (net / 2).quantize(CENT, rounding=ROUND_DOWN)
            pairs[6:7] = [(net_account, half), (net_account, net - half)]
        elif size < 12:
            debits = pairs[: (size + 1) // 2]
            credit_accounts = [a for a in GL_ACCOUNTS if a.side == "credit"][: size - len(debits)]
            total = sum((amt for _, amt in debits), ZERO)
            each = (total / len(credit_accounts)).quantize(CENT, rounding=ROUND_DOWN)
            credits = [(a, each) for a in credit_accounts[:-1]]
            credits.append((credit_accounts[-1], total - each * len(credits)))
            pairs = debits + credits
        base = self.system_id_base + group * 12
        return [_gl_line(self, base + i + 1, account, amount, p) for i, (account, amount) in enumerate(pairs)]


class ExplicitGlRun(GlRun):
    """Lines given by a test, served verbatim (dicts, possibly with RawJson values, or RawJson items)."""

    def __init__(
        self,
        *,
        run_id: str,
        pay_group: str,
        period_start: dt.date,
        period_end: dt.date,
        gl_run_datetime: dt.datetime,
        system_id_base: int,
        lines: Sequence[dict[str, Any] | RawJson],
    ) -> None:
        super().__init__(run_id, pay_group, period_start, period_end, gl_run_datetime, system_id_base)
        self.lines = list(lines)
        self.generated = False

    def __len__(self) -> int:
        return len(self.lines)

    def items(self, start: int, stop: int) -> list[Any]:
        return self.lines[max(0, start) : stop]

    @classmethod
    def like(cls, run: GlRun, lines: Sequence[dict[str, Any] | RawJson] = ()) -> ExplicitGlRun:
        """A run with ``run``'s header values and the given lines (none by default)."""
        return cls(
            run_id=run.run_id,
            pay_group=run.pay_group,
            period_start=run.period_start,
            period_end=run.period_end,
            gl_run_datetime=run.gl_run_datetime,
            system_id_base=run.system_id_base,
            lines=lines,
        )

    def select_block(self, block_id: str) -> ExplicitGlRun:
        # RawJson (and other non-object) items cannot be inspected: they belong to every block
        kept = [
            line
            for line in self.lines
            if not isinstance(line, dict) or str(line.get("blockId", 1)).strip() == block_id.strip()
        ]
        return ExplicitGlRun.like(self, kept)


def _employee_amounts(key: str, p: _Participant) -> list[Decimal]:
    """The 12 amounts of one employee's pay, in GL_ACCOUNTS order; debits total == credits total."""
    rng = random.Random(key)  # str seeds hash with SHA-512: stable across processes
    per_period = p.annual_pay / 26
    if p.salary_or_hourly == "H":
        wages = q(per_period + Decimal(rng.randint(-6000, 6000)) / 100)
        overtime = q(Decimal(rng.randint(1500, 60000)) / 100)
    else:
        wages = q(per_period)
        overtime = q(Decimal(rng.randint(1, 9000)) / 100)  # on-call and shift premiums
    gross = wages + overtime
    fica = q(gross * Decimal("0.0765"))
    unemployment = q(gross * Decimal("0.0085")) or CENT
    health = q(Decimal(rng.randint(18000, 62000)) / 100)
    match = q(gross * Decimal(rng.randint(1, 4)) / 100)
    employee_deductions = q(Decimal(rng.randint(4000, 15000)) / 100) + q(gross * Decimal(rng.randint(0, 6)) / 100)
    federal = q(gross * Decimal(rng.randint(9, 18)) / 100)
    state = q(gross * Decimal("0.0400"))
    debits = [wages, overtime, fica, unemployment, health, match]
    fica_payable = fica * 2  # employer share + the equal employee share withheld
    benefits_payable = health + match + employee_deductions
    others = [federal, fica_payable, state, benefits_payable, unemployment]
    net = sum(debits, ZERO) - sum(others, ZERO)  # the remainder: exact balance by construction
    return debits + [net] + others


def _gl_line(run: GlRun, system_id: int, account: GlAccount, amount: Decimal, p: _Participant) -> dict[str, Any]:
    org = account.carries_org_levels
    debit = amount if account.side == "debit" else ZERO
    credit = amount if account.side == "credit" else ZERO
    period_end, period_start, run_at = run.iso_dates()
    # key order follows GeneralLedgerRunDetailsV2 in the spec
    return {
        "description": account.name,
        "runId": run.run_id,
        "payPeriodEndDate": period_end,
        "accountType": account.main_account_type,
        "baseSegment": account.ukg_account,
        "companyCode": catalog.COMPANY_CODES.get(p.company, p.company),
        "creditAmt": credit,
        "debitAmt": debit,
        "generalLedgerAccount": account.ukg_account,
        "jobCode": p.job_code if org else "",
        "jobDesc": p.job_title if org else "",
        "location": p.location if org else "",
        "orgLevel1": p.cost_center if org else "",
        "orgLevel2": p.department if org else "",
        "orgLevel3": "",
        "orgLevel4": "",
        "payGroup": run.pay_group,
        "periodEndDate": period_end,
        "periodStartDate": period_start,
        "positionCode": "",
        "positionDesc": "",
        "project": "",
        "systemId": system_id,
        "blockId": 1,
        "coId": p.company,
        "glRunDateTime": run_at,
        "totalNrOfBlocks": 1,
        "userWhoRanThisGl": GL_RUN_USER,
        "glJson": None,
    }


# ---------------------------------------------------------------------------- the dataset


class UkgDataset:
    """All of the simulated tenant's data; mutations and reads are serialized by ``lock``."""

    def __init__(
        self,
        employees: int = DEFAULT_EMPLOYEES,
        *,
        seed: int = DEFAULT_SEED,
        today: dt.date | None = None,
        companies: int = 1,
    ) -> None:
        if companies not in (1, 2):
            raise ValueError("the sandbox has one UKG company, or two (companies=2)")
        self.seed = seed
        self.today = today or dt.date.today()
        self.lock = threading.RLock()
        self._rng = random.Random(f"ukg2d365-sandbox:{seed}")
        self._system_id = 100000
        self.org_levels: list[dict[str, Any]] = self._org_levels()
        self.employees: list[Employee] = self._generate_employees(employees)
        if companies == 2:
            # Before the calendar is built, so every closed period's GL run holds both companies.
            for emp in self.employees:
                if emp.location == catalog.SECOND_COMPANY_LOCATION:
                    emp.company = catalog.UKG_CO_ID_2
        self._by_number = {e.employee_number: e for e in self.employees}
        self.pay_periods: list[PayPeriod] = []
        self.gl_runs: list[GlRun] = []
        self._build_calendar(catalog.PAY_GROUP)

    # -------------------------------------------------------------- clock

    def now(self) -> dt.datetime:
        """Wall-clock time of day on the dataset's ``today`` (mutations stamp dateTimeChanged with it)."""
        return dt.datetime.combine(self.today, dt.datetime.now().time().replace(microsecond=0))

    # -------------------------------------------------------------- org levels

    @staticmethod
    def _org_level(level: int, unit: catalog.OrgUnit) -> dict[str, Any]:
        return {
            "description": unit.description,
            "budgetGroup": "",
            "code": unit.code,
            "currentYearBudgetFTE": 0,
            "currentYearBudgetSalary": 0,
            "glSegment": unit.code,
            "lastYearBudgetFTE": 0,
            "lastYearBudgetSalary": 0,
            "level": level,
            "levelDescription": "Cost Center" if level == 1 else "Department",
            "reportingCategory": unit.location,
            "isActive": unit.is_active,
        }

    def _org_levels(self) -> list[dict[str, Any]]:
        return [self._org_level(1, u) for u in catalog.COST_CENTERS] + [
            self._org_level(2, u) for u in catalog.DEPARTMENTS
        ]

    def add_org_level(self, level: int, code: str, description: str, *, is_active: bool = True) -> dict[str, Any]:
        """Add (or replace) an org level code, e.g. a new cost center that D365 does not know yet."""
        if level not in (1, 2):
            raise ValueError("the sandbox uses org levels 1 (cost center) and 2 (department)")
        record = self._org_level(level, catalog.OrgUnit(code, description, "", is_active))
        with self.lock:
            self.org_levels = [o for o in self.org_levels if not (o["level"] == level and o["code"] == code)]
            self.org_levels.append(record)
        return record

    # -------------------------------------------------------------- employees

    def _generate_employees(self, count: int) -> list[Employee]:
        rng = self._rng
        active_ccs = [c for c in catalog.COST_CENTERS if c.is_active]
        # the first employees cover every active cost center and department, so every code is in use
        coverage: list[tuple[catalog.OrgUnit, str]] = []
        for i, cc in enumerate(active_ccs):
            depts = OFFICE_DEPARTMENTS if cc.location == "HQ" else PLANT_DEPARTMENTS
            coverage.append((cc, depts[i % len(depts)]))
        for unit in catalog.DEPARTMENTS:
            if unit.code not in {d for _, d in coverage}:
                loc_group = "HQ" if unit.code in OFFICE_DEPARTMENTS else "PLT1"
                coverage.append((next(c for c in active_ccs if c.location == loc_group), unit.code))

        employees: list[Employee] = []
        used_names: set[tuple[str, str]] = set()
        for n in range(1, count + 1):
            if n <= len(coverage):
                cc, dept = coverage[n - 1]
                location = cc.location
            else:
                location = rng.choices([loc for loc, _ in LOCATIONS], weights=[w for _, w in LOCATIONS])[0]
                cc = rng.choice([c for c in active_ccs if c.location == location])
                dept = rng.choice(OFFICE_DEPARTMENTS if location == "HQ" else PLANT_DEPARTMENTS)
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            while (first, last) in used_names and len(used_names) < len(FIRST_NAMES) * len(LAST_NAMES):
                first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            used_names.add((first, last))
            job_code, job_title, pay_type = rng.choice(JOBS[dept])
            if n % 40 == 7:
                hire = self.today - dt.timedelta(days=rng.randint(10, 60))  # recent hire: not in older runs
            else:
                hire = dt.date(2005, 1, 3) + dt.timedelta(days=rng.randint(0, 7000))
                hire = min(hire, self.today - dt.timedelta(days=90))
            annual = Decimal(rng.randint(32000, 68000) if pay_type == "H" else rng.randint(52000, 165000))
            created = dt.datetime.combine(hire - dt.timedelta(days=7), dt.time(9, 0)) + dt.timedelta(
                minutes=rng.randint(0, 480)
            )
            if rng.random() < 0.1:
                changed_day = self.today - dt.timedelta(days=rng.randint(1, 30))
            else:
                changed_day = hire + dt.timedelta(days=rng.randint(0, max(0, (self.today - hire).days - 31)))
            changed = dt.datetime.combine(max(changed_day, hire), dt.time(8, 0)) + dt.timedelta(
                minutes=rng.randint(0, 600)
            )
            emp = Employee(
                employee_id=f"EE{n:06d}",
                employee_number=f"{100000 + n}",
                first_name=first,
                middle_name=rng.choice(["", "A", "J", "M", "R"]),
                last_name=last,
                location=location,
                cost_center=cc.code,
                department=dept,
                job_code=job_code,
                job_title=job_title,
                salary_or_hourly=pay_type,
                annual_pay=annual,
                hire_date=hire,
                birth_date=dt.date(1960, 1, 1) + dt.timedelta(days=rng.randint(0, 15000)),
                gender=rng.choice(["M", "F"]),
                person_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                date_time_created=min(created, changed),
                date_time_changed=changed,
                date_in_job=hire,
            )
            if n % 33 == 20 and hire < self.today - dt.timedelta(days=120):
                # terminated within the last ~10 weeks: paid in the earlier runs only
                emp.termination_date = self.today - dt.timedelta(days=rng.randint(5, 70))
                emp.term_reason = rng.choice(["RES", "RET", "TER"])
                emp.date_time_changed = dt.datetime.combine(emp.termination_date, dt.time(16, 0))
            employees.append(emp)
        first_in_cc: dict[str, str] = {}
        for emp in employees:
            supervisor = first_in_cc.setdefault(emp.cost_center, emp.employee_id)
            emp.supervisor_id = "" if supervisor == emp.employee_id else supervisor
        return employees

    def employee(self, employee_number: str) -> Employee:
        with self.lock:
            try:
                return self._by_number[str(employee_number)]
            except KeyError:
                raise KeyError(f"no employee {employee_number!r} in the sandbox") from None

    def hire(
        self,
        first_name: str,
        last_name: str,
        *,
        cost_center: str,
        department: str,
        hire_date: dt.date | None = None,
        location: str | None = None,
        employee_number: str | None = None,
        annual_pay: Decimal = Decimal("58000"),
        salary_or_hourly: str = "S",
        pay_group: str = catalog.PAY_GROUP,
    ) -> Employee:
        """A new employee, changed 'now' (so a dateTimeChanged filter from before now finds it)."""
        with self.lock:
            n = len(self.employees) + 1
            while f"EE{n:06d}" in {e.employee_id for e in self.employees}:
                n += 1
            number = employee_number or f"{100000 + n}"
            if number in self._by_number:
                raise ValueError(f"employee number {number} already exists")
            if location is None:
                location = next((c.location for c in catalog.COST_CENTERS if c.code == cost_center), "HQ")
            job_code, job_title, _ = JOBS.get(department, [("GEN", "General staff", "S")])[0]
            stamp = self.now()
            emp = Employee(
                employee_id=f"EE{n:06d}",
                employee_number=number,
                first_name=first_name,
                middle_name="",
                last_name=last_name,
                location=location,
                cost_center=cost_center,
                department=department,
                job_code=job_code,
                job_title=job_title,
                salary_or_hourly=salary_or_hourly,
                annual_pay=annual_pay,
                hire_date=hire_date or self.today,
                birth_date=dt.date(1990, 6, 15),
                gender="F",
                person_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox:{number}")),
                date_time_created=stamp,
                date_time_changed=stamp,
                date_in_job=hire_date or self.today,
                pay_group=pay_group,
            )
            self.employees.append(emp)
            self._by_number[number] = emp
            return emp

    def terminate(self, employee_number: str, date: dt.date, *, reason: str = "RES") -> Employee:
        with self.lock:
            emp = self.employee(employee_number)
            emp.termination_date = date
            emp.term_reason = reason
            emp.date_time_changed = self.now()
            return emp

    def transfer(self, employee_number: str, cost_center: str, department: str) -> Employee:
        with self.lock:
            emp = self.employee(employee_number)
            emp.cost_center = cost_center
            emp.department = department
            emp.location = next((c.location for c in catalog.COST_CENTERS if c.code == cost_center), emp.location)
            emp.date_in_job = self.today
            emp.date_time_changed = self.now()
            return emp

    # -------------------------------------------------------------- pay calendar

    def _build_calendar(self, pay_group: str) -> None:
        current = -((PERIOD_ANCHOR - self.today).days // PERIOD_DAYS)  # first period ending on/after today
        last_closed = current
        while _scheduled_close(_period(pay_group, last_closed)).date() > self.today:
            last_closed -= 1
        for index in range(last_closed - CLOSED_PERIODS_LISTED + 1, current + 2):
            period = _period(pay_group, index)
            self.pay_periods.append(period)
            if index <= last_closed:
                self._close(period, _scheduled_close(period))

    def period(self, pay_group: str, period_end: dt.date) -> PayPeriod:
        with self.lock:
            for p in self.pay_periods:
                if p.pay_group == pay_group and p.period_end == period_end:
                    return p
        raise KeyError(f"no {pay_group} pay period ending {period_end}")

    def closed_periods(self, pay_group: str = catalog.PAY_GROUP) -> list[PayPeriod]:
        with self.lock:
            return [p for p in self.pay_periods if p.pay_group == pay_group and p.is_closed]

    def open_periods(self, pay_group: str = catalog.PAY_GROUP) -> list[PayPeriod]:
        with self.lock:
            return [p for p in self.pay_periods if p.pay_group == pay_group and not p.is_closed]

    def close_period(
        self,
        pay_group: str = catalog.PAY_GROUP,
        period_end: dt.date | None = None,
        *,
        closed_at: dt.datetime | None = None,
        gl_run: bool = True,
    ) -> GlRun | None:
        """Close a period (default: the earliest open one) and make its GL run; returns the run."""
        with self.lock:
            if period_end is None:
                candidates = self.open_periods(pay_group)
                if not candidates:
                    raise ValueError(f"no open {pay_group} period to close")
                period = candidates[0]
            else:
                period = self.period(pay_group, period_end)
            if period.is_closed:
                raise ValueError(f"{pay_group} period ending {period.period_end} is already closed")
            run = self._close(period, closed_at or self.now(), gl_run=gl_run)
            while len(self.open_periods(pay_group)) < 2:  # keep an open period and the next one listed
                last = max(p.index for p in self.pay_periods if p.pay_group == pay_group)
                self.pay_periods.append(_period(pay_group, last + 1))
            return run

    def _close(self, period: PayPeriod, when: dt.datetime, *, gl_run: bool = True) -> GlRun | None:
        period.date_time_closed = when
        if not gl_run:
            return None
        paid = [
            e
            for e in self.employees
            if e.pay_group == period.pay_group and e.paid_in(period.period_start, period.period_end)
        ]
        participants = [_snapshot(e) for e in paid]
        run = GeneratedGlRun(
            run_id=self._next_run_id(period.pay_group, period.period_end),
            pay_group=period.pay_group,
            period_start=period.period_start,
            period_end=period.period_end,
            gl_run_datetime=when - dt.timedelta(minutes=30),
            system_id_base=self._allocate_system_ids(12 * len(participants)),
            participants=participants,
            n_lines=12 * len(participants),
            seed=self.seed,
        )
        self.gl_runs.append(run)
        return run

    # -------------------------------------------------------------- GL runs

    def _next_run_id(self, pay_group: str, period_end: dt.date) -> str:
        existing = {r.run_id for r in self.gl_runs}
        seq = 1
        while f"GL{period_end:%Y%m%d}{pay_group}{seq:02d}" in existing:
            seq += 1
        return f"GL{period_end:%Y%m%d}{pay_group}{seq:02d}"

    def _allocate_system_ids(self, count: int) -> int:
        base = self._system_id
        self._system_id += count
        return base

    def gl_run(self, run_id: str) -> GlRun:
        with self.lock:
            for run in self.gl_runs:
                if run.run_id == run_id:
                    return run
        raise KeyError(f"no GL run {run_id!r}")

    def add_gl_run(
        self,
        run_id: str | None = None,
        pay_group: str = catalog.PAY_GROUP,
        period_end: dt.date | None = None,
        lines: Sequence[dict[str, Any] | RawJson] | int | None = None,
        *,
        gl_run_datetime: dt.datetime | None = None,
    ) -> GlRun:
        """Add a GL run: ``lines`` as given (served verbatim), or an int N for N generated balanced lines.

        Generated runs cycle through the active employees; N must be at least 2 (one line cannot
        balance); None means 12 lines per active employee (an off-cycle run). ``period_end`` defaults
        to the latest closed period; ``run_id`` to the next free GL<periodEnd><payGroup><seq> id.
        """
        with self.lock:
            if period_end is None:
                closed = self.closed_periods(pay_group) or self.closed_periods()
                period_end = closed[-1].period_end if closed else self.today
            period_start = period_end - dt.timedelta(days=PERIOD_DAYS - 1)
            run_id = run_id or self._next_run_id(pay_group, period_end)
            if any(r.run_id == run_id for r in self.gl_runs):
                raise ValueError(f"GL run {run_id} already exists")
            when = gl_run_datetime or self.now()
            run: GlRun
            if lines is None:
                lines = 12 * len([e for e in self.employees if e.is_active] or self.employees)
            if isinstance(lines, int):
                if lines < 2:
                    raise ValueError("a generated GL run needs at least 2 lines")
                active = [e for e in self.employees if e.is_active] or self.employees
                groups = -(-lines // 12)
                participants = [_snapshot(active[g % len(active)], key=f"{g}") for g in range(min(groups, len(active)))]
                run = GeneratedGlRun(
                    run_id=run_id,
                    pay_group=pay_group,
                    period_start=period_start,
                    period_end=period_end,
                    gl_run_datetime=when,
                    system_id_base=self._allocate_system_ids(lines),
                    participants=participants,
                    n_lines=lines,
                    seed=self.seed,
                )
            else:
                run = ExplicitGlRun(
                    run_id=run_id,
                    pay_group=pay_group,
                    period_start=period_start,
                    period_end=period_end,
                    gl_run_datetime=when,
                    system_id_base=self._allocate_system_ids(len(lines)),
                    lines=lines,
                )
            self.gl_runs.append(run)
            return run

    def make_gl_line(
        self,
        run_id: str,
        account: str,
        *,
        debit: Decimal | RawJson | Any = ZERO,
        credit: Decimal | RawJson | Any = ZERO,
        cost_center: str = "",
        department: str = "",
        period_end: dt.date | None = None,
        pay_group: str = catalog.PAY_GROUP,
        system_id: int | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        """A complete, well-formed GL item to build explicit runs from; ``overrides`` replace fields."""
        gl_account = next((a for a in GL_ACCOUNTS if a.ukg_account == account), None)
        with self.lock:
            if period_end is None:
                closed = self.closed_periods(pay_group)
                period_end = closed[-1].period_end if closed else self.today
            system_id = system_id if system_id is not None else self._allocate_system_ids(1) + 1
        run = ExplicitGlRun(
            run_id=run_id,
            pay_group=pay_group,
            period_start=period_end - dt.timedelta(days=PERIOD_DAYS - 1),
            period_end=period_end,
            gl_run_datetime=self.now(),
            system_id_base=0,
            lines=[],
        )
        p = _Participant("", cost_center, department, "", "", "", "S", ZERO, overrides.get("coId", catalog.UKG_CO_ID))
        template = gl_account or GlAccount(account, account, f"Account {account}", "debit", "Expense", True)
        line = _gl_line(run, system_id, template, ZERO, p)
        line.update({"debitAmt": debit, "creditAmt": credit, "orgLevel1": cost_center, "orgLevel2": department})
        line.update(overrides)
        return line

    def gl_lines(self, run_id: str) -> list[Any]:
        """Every item of a run (for tests: sums, counts)."""
        run = self.gl_run(run_id)
        return run.items(0, len(run))


def _snapshot(emp: Employee, key: str = "") -> _Participant:
    return _Participant(
        key=f"{emp.employee_id}:{key}",
        cost_center=emp.cost_center,
        department=emp.department,
        location=emp.location,
        job_code=emp.job_code,
        job_title=emp.job_title,
        salary_or_hourly=emp.salary_or_hourly,
        annual_pay=emp.annual_pay,
        company=emp.company,
    )
