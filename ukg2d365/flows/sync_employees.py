"""sync-employees: read UKG employment details -> plan per employee -> create/patch D365 employments.

What is kept aligned, per employee: the employment exists in ``d365.legal_entity`` (hires), its end date
(terminations) and its default dimension (``DimensionDisplayValue``, cost center/department transfers).
Names are sent when a worker is created and not kept in sync afterwards.

Change detection: the ledger keeps, per personnel number, a hash of the fields last sent (or found
already right in D365). An employee whose hash is unchanged costs nothing: no D365 read, no write. Any
other employee is compared with what D365 holds *now* before anything is sent, so a run that died half
way is simply run again: what reached D365 is found there and not sent twice.

D365 writes (entities as a client generated from F&O $metadata names them: ntrtd/d365-agent
asset/client/src/EmployeesV2.ts, EmploymentsV2.ts):

* hire: ``POST EmployeesV2`` (worker + employment in one entity, key PersonnelNumber,
  EmploymentLegalEntityId, EmploymentId). NOT CONFIRMED which fields D365 requires, and whether it
  assigns EmploymentId itself; the id is read from the answer, or looked up by the next run.
* dates: EmploymentStartDate and EmploymentEndDate are Edm.DateTimeOffset (ntrtd/d365-agent
  asset/client/src/EmploymentsV2.ts). A UKG hire date is sent as local midnight of ``d365.time_zone``, a
  termination as 23:59:59 of that local day, both in UTC (d365/dates.py); D365's instants are read back as
  the local day they fall on, and an end date matches only when it is that exact instant.
* company: ``EmploymentLegalEntityId`` is sent as D365 writes dataAreaId, lower case, and compared
  case-insensitively.
* transfer and termination: ``PATCH EmploymentsV2(PersonnelNumber, LegalEntityId, EmploymentId)`` with
  ``DimensionDisplayValue`` and/or ``EmploymentEndDate``. On the V2 entities EmploymentEndDate is a plain
  property (on ``Employments``/``Employees`` v1 it is part of the key and cannot be patched). NOT CONFIRMED
  that patching EmploymentEndDate runs D365's full "Terminate worker" logic.
* rehires (a new UKG hire date after the D365 employment ended) and reinstatements (terminated in D365,
  active in UKG) are reported and left to a person: they need a new D365 employment or an undo, whose
  OData behaviour is NOT CONFIRMED.

Writes go in ``$batch`` requests of up to ``d365.batch_size`` operations, one operation per changeset,
so one refused employee never rolls back another and each error names its employee.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any

from ukg2d365.config import Config
from ukg2d365.d365.batch import BatchOperation, ChangesetResult
from ukg2d365.d365.dates import end_of_day, local_day, parse_instant, start_of_day
from ukg2d365.d365.odata import ODataClient, chunked, entity_path, filter_eq, odata_literal
from ukg2d365.errors import AmbiguousWriteError, RemoteError
from ukg2d365.flows.reference import CHUNK, ReferenceData
from ukg2d365.flows.runtime import Context
from ukg2d365.flows.sync_dimensions import org_level_number
from ukg2d365.ledger import SyncedEmployee, content_hash, now_iso
from ukg2d365.mapping import DimensionFormats, Mapper, MappingError
from ukg2d365.ukg.records import parse_date

EMPLOYEES = "EmployeesV2"
EMPLOYMENTS = "EmploymentsV2"
LAST_SYNC_SETTING = "employees.last_sync"
# UKG stamps dateTimeChanged in the tenant's local time and filters by day; starting a day before the
# last run costs a few re-read records (their hashes match, nothing is sent) and misses nothing.
SINCE_OVERLAP = timedelta(days=1)
# D365 stores "no end date" as DateTimeMax (2154-12-31T23:59:59Z) and "no date" as 1900-01-01.
OPEN_END_YEAR = 2154
NULL_DATE_YEAR = 1900

CREATE, UPDATE, TERMINATE, UNCHANGED, IGNORED, SKIPPED = "create", "update", "terminate", "unchanged", "ignored", \
    "skipped"

Progress = Callable[[int], None]


# ---------------------------------------------------------------------- records


class RecordProblem(ValueError):
    """One UKG employment record cannot be synced; ``who`` is the personnel number (or what identifies it)."""

    def __init__(self, who: str, reason: str) -> None:
        super().__init__(f"employee {who}: {reason}")
        self.who = who
        self.reason = reason


@dataclass(frozen=True)
class EmployeeTarget:
    """What D365 should hold for one employee, mapped from UKG."""

    personnel_number: str
    company_id: str
    employee_id: str
    start_date: date
    end_date: date | None
    dimensions: tuple[tuple[str, str], ...]  # (dimension, D365 value) of the fed ones, in D365's default format order
    display: str  # DimensionDisplayValue; '' when no default dimensions are configured

    @property
    def join_key(self) -> tuple[str, str]:
        return (self.company_id, self.employee_id)

    def starts_at(self, zone: tzinfo) -> datetime:
        """EmploymentStartDate: local midnight of the hire date in ``zone``, as a UTC instant."""
        return start_of_day(self.start_date, zone)

    def ends_at(self, zone: tzinfo) -> datetime | None:
        """EmploymentEndDate: the last second of the termination day in ``zone``; None while employed."""
        return None if self.end_date is None else end_of_day(self.end_date, zone)

    def synced_fields(self, legal_entity: str, zone: tzinfo = timezone.utc) -> dict[str, Any]:
        """The fields kept aligned with D365, as sent; their hash is what the ledger remembers.

        The instants, not the days: a changed ``d365.time_zone`` makes every employee compared again.
        """
        ends_at = self.ends_at(zone)
        return {
            "PersonnelNumber": self.personnel_number,
            "EmploymentLegalEntityId": legal_entity.lower(),
            "EmploymentStartDate": odata_literal(self.starts_at(zone)),
            "EmploymentEndDate": None if ends_at is None else odata_literal(ends_at),
            "DimensionDisplayValue": self.display,
        }

    def payload_hash(self, legal_entity: str, zone: tzinfo = timezone.utc) -> str:
        return content_hash([self.synced_fields(legal_entity, zone)])


@dataclass(frozen=True)
class PersonName:
    first: str
    middle: str
    last: str


@dataclass(frozen=True)
class D365Employment:
    personnel_number: str
    legal_entity: str
    employment_id: str
    start_date: date | None  # the local day (d365.time_zone) EmploymentStartDate falls on
    end_date: date | None  # likewise for EmploymentEndDate; None: open-ended
    display: str
    ends_at: datetime | None = None  # EmploymentEndDate as D365 holds it (UTC); None: open-ended

    def ends_as(self, target: EmployeeTarget, zone: tzinfo) -> bool:
        """D365's end is the instant this tool sends for the target (a UKG date alone is not enough: an
        end written at another hour of that day, e.g. midnight UTC, ends the employment early)."""
        return self.ends_at == target.ends_at(zone)


def _field(raw: Mapping[str, Any], *names: str) -> Any:
    """The first present field among casing variants (UKG spells ids differently per endpoint)."""
    for name in names:
        value = raw.get(name)
        if value is not None and value != "":
            return value
    return None


def _text(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return ""
    return str(value).strip()


def _optional_date(raw: Mapping[str, Any], name: str, who: str) -> date | None:
    value = raw.get(name)
    if value in (None, ""):
        return None
    try:
        parsed = parse_date(value)
    except ValueError:
        raise RecordProblem(who, f"{name} {value!r} is not a date") from None
    # Some UKG tenants write an empty date as 0001-01-01 or 1900-01-01.
    return None if parsed.year <= NULL_DATE_YEAR else parsed


def employment_target(raw: Mapping[str, Any], config: Config, mapper: Mapper) -> EmployeeTarget:
    """Map one /personnel/v1/employment-details item. Raises RecordProblem. No I/O."""
    number_field = config.employees.personnel_number
    employee_id = _text(_field(raw, "employeeID", "employeeId"))
    personnel_number = _text(raw.get(number_field))
    who = personnel_number or (f"(UKG employee id {employee_id})" if employee_id else "(no id)")
    if not personnel_number:
        raise RecordProblem(who, f"{number_field} is missing")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in personnel_number):
        raise RecordProblem(who, f"{number_field} contains control characters")
    if not employee_id:
        raise RecordProblem(who, "employeeID is missing")
    company_id = _text(_field(raw, "companyID", "companyId"))
    hired = _optional_date(raw, "lastHireDate", who) or _optional_date(raw, "originalHireDate", who)
    if hired is None:
        raise RecordProblem(who, "neither lastHireDate nor originalHireDate is set")
    terminated = _optional_date(raw, "dateOfTermination", who)
    if terminated is not None and terminated < hired:
        terminated = None  # the termination of an earlier employment: this one (a rehire) is open
    if terminated is None and _text(raw.get("employeeStatusCode")).upper() == "T":
        raise RecordProblem(who, "employeeStatusCode is T (terminated) but dateOfTermination is empty")
    values: dict[str, str] = {}
    # D365's default dimension format decides the segments; [] in employees.default_dimensions opts out.
    order = () if config.employees.default_dimensions == [] else mapper.formats.fed(config.mapping, ledger=False)
    for name in order:
        dim = config.mapping.dimensions[name]
        code = "" if dim.source is None else _text(raw.get(f"orgLevel{org_level_number(dim.source)}Code"))
        try:
            values[name] = mapper.dimension_value(name, code)
        except MappingError as exc:
            origin = f"{dim.source} {code!r}" if dim.source else f"the constant {dim.value!r}"
            raise RecordProblem(who, f"{origin} has no valid {name} value: {exc.reason}") from None
    display = mapper.default_dimension_display(values) if order else ""
    return EmployeeTarget(personnel_number, company_id, employee_id, hired, terminated,
                          tuple((n, values[n]) for n in order), display)


def person_name(raw: Mapping[str, Any]) -> tuple[tuple[str, str], PersonName]:
    """Join key and name from an /personnel/v1/employee-demographic-details item."""
    key = (_text(_field(raw, "companyId", "companyID")), _text(_field(raw, "employeeId", "employeeID")))
    return key, PersonName(_text(raw.get("firstName")), _text(raw.get("middleName")), _text(raw.get("lastName")))


def d365_employment(row: Mapping[str, Any], zone: tzinfo = timezone.utc) -> D365Employment:
    """An EmployeesV2 row as the fields compared with UKG; instants read as local days of ``zone``."""
    ends_at = _d365_instant(row.get("EmploymentEndDate"))
    starts_at = _d365_instant(row.get("EmploymentStartDate"))
    return D365Employment(
        personnel_number=_text(row.get("PersonnelNumber")),
        legal_entity=_text(row.get("EmploymentLegalEntityId")),
        employment_id=_text(row.get("EmploymentId")),
        start_date=None if starts_at is None else local_day(starts_at, zone),
        end_date=None if ends_at is None else local_day(ends_at, zone),
        display=_text(row.get("DimensionDisplayValue")),
        ends_at=ends_at,
    )


def _d365_instant(value: Any) -> datetime | None:
    """A D365 date-time, or None for its "no date" (1900-01-01) and "never" (2154-12-31T23:59:59Z)."""
    parsed = parse_instant(value)
    if parsed is None or parsed.year >= OPEN_END_YEAR or parsed.year <= NULL_DATE_YEAR:
        return None
    return parsed


# ---------------------------------------------------------------------- plan objects


@dataclass(frozen=True)
class EmployeeAction:
    kind: str  # create | update | terminate | unchanged | ignored | skipped
    personnel_number: str
    reason: str = ""  # what changes, or why nothing is sent
    target: EmployeeTarget | None = None
    body: Mapping[str, Any] | None = None  # what is sent
    key: Mapping[str, Any] | None = None  # EmploymentsV2 key of a PATCH
    employment_id: str | None = None
    remember: bool = False  # nothing to send, but the ledger should now remember this employee's hash

    @property
    def audit_key(self) -> str:
        return f"employee:{self.personnel_number}"

    @property
    def writes(self) -> bool:
        return self.kind in (CREATE, UPDATE, TERMINATE)


@dataclass
class EmployeePlan:
    actions: list[EmployeeAction] = field(default_factory=list)
    records_read: int = 0
    changed_since: date | None = None  # the dateTimeChanged filter sent to UKG (None: every record)
    since_option: date | None = None  # --since as given
    started_at: str | None = None  # when the UKG read began: the next watermark after a clean run

    def of(self, kind: str) -> list[EmployeeAction]:
        return [a for a in self.actions if a.kind == kind]

    @property
    def writes(self) -> list[EmployeeAction]:
        return [a for a in self.actions if a.writes]

    @property
    def skipped(self) -> list[EmployeeAction]:
        return self.of(SKIPPED)

    def counts(self) -> dict[str, int]:
        return {k: len(self.of(k)) for k in (CREATE, UPDATE, TERMINATE, UNCHANGED, IGNORED, SKIPPED)}


# ---------------------------------------------------------------------- plan (pure)


@dataclass
class Targets:
    """UKG records mapped: the employees to look at, and those refused before any comparison."""

    targets: list[EmployeeTarget] = field(default_factory=list)
    skipped: list[EmployeeAction] = field(default_factory=list)
    records_read: int = 0


def map_employments(raws: Iterable[Mapping[str, Any]], config: Config,
                    formats: DimensionFormats | None = None) -> Targets:
    """Map every employment record; duplicates of one personnel number are all refused. No I/O.

    ``formats`` are D365's (None: the config's own, see DimensionFormats.configured).
    """
    mapper = Mapper(config.mapping, formats or DimensionFormats.configured(config.mapping,
                                                                           config.employees.default_dimensions))
    companies = set(config.ukg.company_ids)
    result = Targets()
    by_number: dict[str, list[EmployeeTarget]] = {}
    for raw in raws:
        result.records_read += 1
        if companies and _text(_field(raw, "companyID", "companyId")) not in companies:
            continue
        try:
            target = employment_target(raw, config, mapper)
        except RecordProblem as exc:
            result.skipped.append(EmployeeAction(SKIPPED, exc.who, exc.reason))
            continue
        by_number.setdefault(target.personnel_number, []).append(target)
    for number, targets in sorted(by_number.items()):
        if len(targets) > 1:
            companies_seen = ", ".join(sorted({t.company_id for t in targets}))
            result.skipped.append(EmployeeAction(
                SKIPPED, number, f"{len(targets)} UKG employment records share this personnel number "
                f"(companies {companies_seen}); choose one with ukg.company_ids"))
        else:
            result.targets.append(targets[0])
    return result


def changed_targets(
    targets: Iterable[EmployeeTarget], synced: Mapping[str, SyncedEmployee], legal_entity: str,
    zone: tzinfo = timezone.utc,
) -> tuple[list[EmployeeTarget], list[EmployeeAction]]:
    """Split into (changed since the last sync, unchanged) by the ledger's hashes. No I/O."""
    changed: list[EmployeeTarget] = []
    unchanged: list[EmployeeAction] = []
    for target in targets:
        previous = synced.get(target.personnel_number)
        if previous is not None and previous.payload_hash == target.payload_hash(legal_entity, zone):
            unchanged.append(EmployeeAction(UNCHANGED, target.personnel_number, "no change since the last sync",
                                            target, employment_id=previous.employment_id))
        else:
            changed.append(target)
    return changed, unchanged


def plan_employee(
    target: EmployeeTarget,
    existing: list[D365Employment],
    *,
    legal_entity: str,
    missing_values: Mapping[str, set[str]],
    name: PersonName | None,
    known_employment_id: str | None,
    today: date,
    zone: tzinfo = timezone.utc,
) -> EmployeeAction:
    """One changed employee against what D365 holds; ``zone`` is d365.time_zone. No I/O."""
    number = target.personnel_number
    missing = [f"{dim} {value!r}" for dim, value in target.dimensions if value and value in missing_values.get(dim, ())]
    if missing:
        return EmployeeAction(SKIPPED, number, f"no D365 value for {', '.join(missing)} (run sync-dimensions)", target)
    mine = [e for e in existing if e.legal_entity.casefold() == legal_entity.casefold()]
    if not mine:
        return _plan_create(target, legal_entity, name, today, zone)
    current = next((e for e in mine if known_employment_id and e.employment_id == known_employment_id), None)
    if current is None:
        current = max(mine, key=lambda e: e.start_date or date.min)
    if current.end_date is not None and target.start_date > current.end_date:
        return EmployeeAction(SKIPPED, number, f"rehired in UKG on {target.start_date} after the D365 employment "
                              f"ended {current.end_date}: add the new employment in D365 by hand", target)
    if current.end_date is not None and target.end_date is None:
        return EmployeeAction(SKIPPED, number, f"active in UKG but the D365 employment ended {current.end_date}: "
                              "undo the termination in D365 by hand", target)
    body: dict[str, Any] = {}
    changes: list[str] = []
    if target.display and target.display.casefold() != current.display.casefold():
        body["DimensionDisplayValue"] = target.display
        changes.append(f"default dimension {current.display or '(none)'} -> {target.display}")
    ends_at = target.ends_at(zone)
    if not current.ends_as(target, zone):
        assert target.end_date is not None and ends_at is not None  # the reverse case was handled above
        body["EmploymentEndDate"] = odata_literal(ends_at)
        changes.append(f"employment ends {target.end_date} (23:59:59 {zone})")
    if not body:
        return EmployeeAction(UNCHANGED, number, "D365 already matches", target, employment_id=current.employment_id,
                              remember=True)
    key = {"PersonnelNumber": current.personnel_number, "LegalEntityId": current.legal_entity,
           "EmploymentId": current.employment_id}
    kind = TERMINATE if "EmploymentEndDate" in body else UPDATE
    return EmployeeAction(kind, number, "; ".join(changes), target, body, key, current.employment_id)


def _plan_create(target: EmployeeTarget, legal_entity: str, name: PersonName | None, today: date,
                 zone: tzinfo) -> EmployeeAction:
    number = target.personnel_number
    if target.end_date is not None and target.end_date < today:
        return EmployeeAction(IGNORED, number, f"terminated in UKG on {target.end_date} and never in D365: not created",
                              target, remember=True)
    if name is None or not name.last:
        return EmployeeAction(SKIPPED, number, "no last name in UKG employee-demographic-details", target)
    body: dict[str, Any] = {
        "PersonnelNumber": number,
        "EmploymentLegalEntityId": legal_entity.lower(),
        "FirstName": name.first,
        "LastName": name.last,
        "EmploymentStartDate": odata_literal(target.starts_at(zone)),
    }
    if name.middle:
        body["MiddleName"] = name.middle
    if any(value for _, value in target.dimensions):
        body["DimensionDisplayValue"] = target.display
    ends_at = target.ends_at(zone)
    if ends_at is not None:
        body["EmploymentEndDate"] = odata_literal(ends_at)
    what = f"hire from {target.start_date}" + (f", default dimension {target.display}" if target.display else "")
    return EmployeeAction(CREATE, number, what, target, body)


def plan_employees(
    targets: Targets,
    synced: Mapping[str, SyncedEmployee],
    existing: Mapping[str, list[D365Employment]],
    missing_values: Mapping[str, set[str]],
    names: Mapping[tuple[str, str], PersonName],
    *,
    legal_entity: str,
    today: date,
    zone: tzinfo = timezone.utc,
) -> EmployeePlan:
    """The whole plan from already-read inputs. No I/O (the flow reads only what this needs)."""
    plan = EmployeePlan(records_read=targets.records_read)
    changed, unchanged = changed_targets(targets.targets, synced, legal_entity, zone)
    for target in changed:
        previous = synced.get(target.personnel_number)
        plan.actions.append(plan_employee(
            target, existing.get(target.personnel_number, []), legal_entity=legal_entity,
            missing_values=missing_values, name=names.get(target.join_key),
            known_employment_id=previous.employment_id if previous else None, today=today, zone=zone))
    plan.actions.extend(unchanged)
    plan.actions.extend(targets.skipped)
    return plan


# ---------------------------------------------------------------------- read


def read_d365_employments(odata: ODataClient, personnel_numbers: list[str], legal_entity: str,
                          zone: tzinfo = timezone.utc) -> dict[str, list[D365Employment]]:
    """EmployeesV2 rows of these personnel numbers in the legal entity, a few `or` filters per request."""
    found: dict[str, list[D365Employment]] = {}
    select = ["PersonnelNumber", "EmploymentLegalEntityId", "EmploymentId", "EmploymentStartDate",
              "EmploymentEndDate", "DimensionDisplayValue"]
    for chunk in chunked(personnel_numbers, CHUNK):
        flt = (f"{filter_eq('EmploymentLegalEntityId', legal_entity.lower())} and ("
               + " or ".join(filter_eq("PersonnelNumber", n) for n in chunk) + ")")
        for row in odata.get_all(EMPLOYEES, filter=flt, select=select):
            employment = d365_employment(row, zone)
            found.setdefault(employment.personnel_number, []).append(employment)
    return found


def read_names(rows: Iterator[Mapping[str, Any]], wanted: set[tuple[str, str]]) -> dict[tuple[str, str], PersonName]:
    """Names of the wanted employees only, streamed: the whole tenant's demographics are never held."""
    names: dict[tuple[str, str], PersonName] = {}
    for raw in rows:
        key, name = person_name(raw)
        if key in wanted:
            names[key] = name
    return names


def changed_since(ctx: Context, since: date | None) -> date | None:
    """--since, else the day before the last clean sync (see SINCE_OVERLAP), else everything."""
    if since is not None:
        return since
    stored = ctx.ledger.get_setting(LAST_SYNC_SETTING)
    if not stored:
        return None
    return datetime.fromisoformat(stored).date() - SINCE_OVERLAP


@dataclass(frozen=True)
class EmployeeSelection:
    """The UKG records sync-employees reads: changed on or after ``since`` (--since), else see changed_since."""

    since: date | None = None


def read_and_plan(ctx: Context, selection: EmployeeSelection, *, today: date | None = None) -> EmployeePlan:
    """Read what the plan needs, and no more: D365 and names only for employees whose hash changed."""
    started_at = now_iso()
    start = changed_since(ctx, selection.since)
    plan = plan_records(ctx, ctx.ukg.employment_details(start), today=today)
    plan.changed_since = start
    plan.since_option = selection.since
    plan.started_at = started_at
    return plan


def plan_records(
    ctx: Context, records: Iterable[Mapping[str, Any]], *, today: date | None = None
) -> EmployeePlan:
    """Plan from a stream of UKG employment records (all of them, or those a webhook named).

    The plan has no ``started_at``: only read_and_plan, which reads everything changed, moves the watermark.
    """
    config = ctx.config
    legal_entity = config.d365.data_area_id
    zone = config.d365.zone
    # "Already terminated" is judged on the legal entity's calendar, where the UKG dates live.
    today = today or datetime.now(zone).date()
    reference = ReferenceData(ctx.d365, ctx.ledger, config)
    formats = reference.dimension_formats(fresh=False)  # D365 is asked only when the cache has none
    targets = map_employments(records, config, formats)
    synced = ctx.ledger.synced_employees(t.personnel_number for t in targets.targets)
    changed, _ = changed_targets(targets.targets, synced, legal_entity, zone)
    existing: dict[str, list[D365Employment]] = {}
    missing_values: dict[str, set[str]] = {}
    names: dict[tuple[str, str], PersonName] = {}
    if changed:
        # The setup check guards writes; a run with nothing changed has none to guard and stays read-free.
        # D365's default format (and employees.default_dimensions, when set, equal to it), and the same
        # delimiter. When D365's format differs from the cache's the targets were built in, the cache now
        # holds D365's and the run stops before any write, so that a rerun compares in D365's order.
        reference.require_setup("sync-employees", ledger_format=False, default_format=True, planned=formats)
        for name in {dim for t in changed for dim, _ in t.dimensions}:
            values = {value for t in changed for dim, value in t.dimensions if dim == name and value}
            missing_values[name] = reference.missing_dimension_values(name, values)
        existing = read_d365_employments(ctx.d365, sorted({t.personnel_number for t in changed}), legal_entity,
                                         zone)
        to_hire = {t.join_key for t in changed if t.personnel_number not in existing}
        if to_hire:
            names = read_names(ctx.ukg.demographic_details(), to_hire)
    return plan_employees(targets, synced, existing, missing_values, names, legal_entity=legal_entity, today=today,
                          zone=zone)


# ---------------------------------------------------------------------- apply


@dataclass
class EmployeeOutcome:
    action: EmployeeAction
    ok: bool
    employment_id: str | None = None
    error: str | None = None


@dataclass
class EmployeeResult:
    plan: EmployeePlan
    outcomes: list[EmployeeOutcome] = field(default_factory=list)
    recorded_in_sync: int = 0  # employees found already right in D365, now remembered

    @property
    def failed(self) -> list[EmployeeOutcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.plan.skipped


def operation(action: EmployeeAction) -> BatchOperation:
    assert action.body is not None
    if action.kind == CREATE:
        return BatchOperation("POST", EMPLOYEES, action.body)
    assert action.key is not None
    return BatchOperation("PATCH", entity_path(EMPLOYMENTS, action.key), action.body)


def apply(ctx: Context, plan: EmployeePlan, progress: Progress | None = None) -> EmployeeResult:
    """Send every write; remember each employee's hash once D365 confirmed it (or already matched)."""
    result = EmployeeResult(plan)
    advance = progress or (lambda n: None)
    legal_entity, zone = ctx.config.d365.data_area_id, ctx.config.d365.zone
    for action in plan.actions:
        if action.kind == SKIPPED:
            ctx.ledger.audit("employee.skipped", {"reason": action.reason}, action.audit_key)
        elif action.remember and action.target is not None:
            # D365 already holds it (or it is deliberately not created): remember, so the next run skips it.
            ctx.ledger.record_employee_sync(action.personnel_number, action.target.payload_hash(legal_entity, zone),
                                            action.employment_id)
            ctx.ledger.audit(f"employee.{action.kind}", {"reason": action.reason}, action.audit_key)
            result.recorded_in_sync += 1
    writes = plan.writes
    for chunk in chunked(writes, ctx.config.d365.batch_size):
        for outcome in _send_chunk(ctx, chunk):
            action = outcome.action
            if outcome.ok:
                assert action.target is not None
                ctx.ledger.record_employee_sync(action.personnel_number,
                                                action.target.payload_hash(legal_entity, zone),
                                                outcome.employment_id)
                ctx.ledger.audit("employee.sent", {"kind": action.kind, "employment_id": outcome.employment_id},
                                 action.audit_key)
            else:
                ctx.ledger.audit("employee.failed", {"kind": action.kind, "error": outcome.error}, action.audit_key)
            result.outcomes.append(outcome)
        advance(len(chunk))
    _advance_last_sync(ctx, result)
    return result


def _advance_last_sync(ctx: Context, result: EmployeeResult) -> None:
    """Move the watermark only after a clean run that covered everything since the previous one.

    A skipped or failed employee keeps the old watermark, so the next run reads it again; a --since later
    than the watermark read only part of the changes and must not move it either.
    """
    plan = result.plan
    if not result.ok or plan.started_at is None:
        return
    since = plan.since_option
    if since is not None:
        stored = ctx.ledger.get_setting(LAST_SYNC_SETTING)
        if not stored or since > datetime.fromisoformat(stored).date() - SINCE_OVERLAP:
            return
    ctx.ledger.set_setting(LAST_SYNC_SETTING, plan.started_at)


def _send_chunk(ctx: Context, chunk: list[EmployeeAction]) -> list[EmployeeOutcome]:
    for action in chunk:
        ctx.ledger.audit("employee.send", {"kind": action.kind, "entity_set": EMPLOYEES if action.kind == CREATE
                                           else EMPLOYMENTS, "key": action.key, "body": action.body},
                         action.audit_key)
    try:
        results = ctx.d365.batch([[operation(a)] for a in chunk])
    except AmbiguousWriteError as exc:
        return _verify_after_ambiguity(ctx, chunk, str(exc))
    except RemoteError as exc:
        return [EmployeeOutcome(a, False, error=str(exc)) for a in chunk]
    return [_outcome(action, changeset) for action, changeset in zip(chunk, results, strict=True)]


def _outcome(action: EmployeeAction, changeset: ChangesetResult) -> EmployeeOutcome:
    if not changeset.ok:
        return EmployeeOutcome(action, False, error=changeset.error_message or f"HTTP {changeset.status}")
    employment_id = action.employment_id
    if action.kind == CREATE:
        body = changeset.responses[0].body if changeset.responses else None
        created = _text(body.get("EmploymentId")) if isinstance(body, dict) else ""
        employment_id = created or None
    return EmployeeOutcome(action, True, employment_id)


def _verify_after_ambiguity(ctx: Context, chunk: list[EmployeeAction], error: str) -> list[EmployeeOutcome]:
    """The $batch may have been processed: D365 now either matches each target or it does not."""
    cfg = ctx.config.d365
    existing = read_d365_employments(ctx.d365, sorted({a.personnel_number for a in chunk}), cfg.data_area_id,
                                     cfg.zone)
    outcomes = []
    for action in chunk:
        assert action.target is not None
        target = action.target
        rows = existing.get(action.personnel_number, [])
        match = next((e for e in rows if e.ends_as(target, cfg.zone) and
                      (not target.display or e.display.casefold() == target.display.casefold())), None)
        if match is not None:
            outcomes.append(EmployeeOutcome(action, True, match.employment_id))
        else:
            outcomes.append(EmployeeOutcome(action, False, error=f"not in D365 after an unanswered request ({error}); "
                                            "rerun sync-employees"))
    return outcomes
