"""Local dates: UKG days as D365 date-time instants of d365.time_zone, the key's validation, ping's line,
and company ids in lower case wherever the tool writes them to D365."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import CONFIG_YAML, gl, make_config
from tests.unit.test_journal_poster import FakeD365
from ukg2d365.config import parse_config
from ukg2d365.d365.dates import end_of_day, enum_offset, local_day, parse_instant, start_of_day, time_zone_mismatch
from ukg2d365.errors import ConfigError, ExitStatus
from ukg2d365.flows.journal_poster import JournalPoster
from ukg2d365.flows.ping import time_zone_check
from ukg2d365.flows.post_payroll import posting_record
from ukg2d365.flows.sync_employees import (
    CREATE,
    TERMINATE,
    UNCHANGED,
    PersonName,
    d365_employment,
    employment_target,
    plan_employee,
)
from ukg2d365.journal import build_journals
from ukg2d365.ledger import POSTED, Ledger
from ukg2d365.mapping import DimensionFormats, Mapper
from ukg2d365.ukg.records import parse_gl_line

CHICAGO = ZoneInfo("America/Chicago")
BERLIN = ZoneInfo("Europe/Berlin")
TOKYO = ZoneInfo("Asia/Tokyo")
UTC = dt.timezone.utc


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


# ---------------------------------------------------------------------- the conversion


@pytest.mark.parametrize(("zone", "day", "start", "end"), [
    # Chicago, CST (-6) and CDT (-5)
    (CHICAGO, dt.date(2026, 1, 15), "2026-01-15T06:00:00", "2026-01-16T05:59:59"),
    (CHICAGO, dt.date(2026, 7, 15), "2026-07-15T05:00:00", "2026-07-16T04:59:59"),
    # 2026-03-08 clocks go forward at 02:00: the day begins in CST and ends in CDT, 23 hours long
    (CHICAGO, dt.date(2026, 3, 8), "2026-03-08T06:00:00", "2026-03-09T04:59:59"),
    # 2026-11-01 clocks go back at 02:00: the day begins in CDT and ends in CST, 25 hours long
    (CHICAGO, dt.date(2026, 11, 1), "2026-11-01T05:00:00", "2026-11-02T05:59:59"),
    # east of UTC the local day begins on the previous UTC day
    (BERLIN, dt.date(2026, 1, 15), "2026-01-14T23:00:00", "2026-01-15T22:59:59"),
    (BERLIN, dt.date(2026, 3, 29), "2026-03-28T23:00:00", "2026-03-29T21:59:59"),  # forward at 02:00
    (BERLIN, dt.date(2026, 10, 25), "2026-10-24T22:00:00", "2026-10-25T22:59:59"),  # back at 03:00
    (TOKYO, dt.date(2026, 4, 1), "2026-03-31T15:00:00", "2026-04-01T14:59:59"),
    (UTC, dt.date(2026, 4, 1), "2026-04-01T00:00:00", "2026-04-01T23:59:59"),
])
def test_a_local_day_begins_at_local_midnight_and_ends_at_235959_in_utc(zone, day, start, end) -> None:
    assert start_of_day(day, zone) == utc(start)
    assert end_of_day(day, zone) == utc(end)
    assert local_day(start_of_day(day, zone), zone) == day == local_day(end_of_day(day, zone), zone)


def test_where_midnight_does_not_exist_the_day_begins_at_the_first_local_second() -> None:
    # Santiago moves its clocks from 24:00 to 01:00 on the night to 2026-09-06: 00:00 never happens
    santiago = ZoneInfo("America/Santiago")
    begins = start_of_day(dt.date(2026, 9, 6), santiago)
    assert begins == utc("2026-09-06T04:00:00")
    assert begins.astimezone(santiago).time() == dt.time(1, 0)
    assert local_day(begins - dt.timedelta(seconds=1), santiago) == dt.date(2026, 9, 5)


@pytest.mark.parametrize(("text", "instant"), [
    ("2026-11-21T05:59:59Z", "2026-11-21T05:59:59"),
    ("2026-11-21T05:59:59.500Z", "2026-11-21T05:59:59"),
    ("2026-11-21T06:59:59+01:00", "2026-11-21T05:59:59"),
    ("2026-11-21", "2026-11-21T00:00:00"),
])
def test_d365_date_times_are_read_as_utc_instants(text: str, instant: str) -> None:
    assert parse_instant(text) == utc(instant)


@pytest.mark.parametrize("junk", [None, "", "soon", 20261121, "2026-13-01T00:00:00Z"])
def test_what_is_not_a_date_time_reads_as_none(junk: Any) -> None:
    assert parse_instant(junk) is None


# ---------------------------------------------------------------------- d365.time_zone


def config_with(zone_line: str, legal_entity: str = "usmf") -> Any:
    text = CONFIG_YAML.format(summarize="true").replace(
        "  legal_entity: usmf\n", f"  legal_entity: {legal_entity}\n{zone_line}")
    return parse_config(text, Path("/nonexistent/ukg2d365.yaml"))


def test_time_zone_defaults_to_utc_and_takes_an_iana_name() -> None:
    assert config_with("").d365.time_zone == "UTC"
    cfg = config_with("  time_zone: America/Chicago\n").d365
    assert cfg.zone == CHICAGO and cfg.zone.utcoffset(dt.datetime(2026, 1, 1)) == dt.timedelta(hours=-6)


@pytest.mark.parametrize("bad", ["America/Chicgo", "CST6", "../../etc/passwd", "''", "Central Time"])
def test_an_unknown_time_zone_is_one_line_naming_the_key_and_its_line(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_with(f"  time_zone: {bad}\n")
    message = str(err.value)
    assert "\n" not in message
    assert "/nonexistent/ukg2d365.yaml: line 10: d365.time_zone:" in message
    assert "is not an IANA time zone name (e.g. America/Chicago" in message


# ---------------------------------------------------------------------- sync-employees in a local zone


def chicago_target(**fields: Any) -> Any:
    cfg = config_with("  time_zone: America/Chicago\n")
    raw = {"companyID": "C0MP1", "employeeID": "EE1", "employeeNumber": "100001", "orgLevel1Code": "120",
           "orgLevel2Code": "PROD", "lastHireDate": "2026-03-09T00:00:00", "dateOfTermination": None,
           "employeeStatusCode": "A", **fields}
    mapper = Mapper(cfg.mapping, DimensionFormats.configured(cfg.mapping, cfg.employees.default_dimensions))
    return employment_target(raw, cfg, mapper)


def plan(target: Any, existing: list[Any], zone: Any = CHICAGO) -> Any:
    return plan_employee(target, existing, legal_entity="usmf", missing_values={},
                         name=PersonName("Ada", "", "Lovelace"), known_employment_id=None,
                         today=dt.date(2026, 11, 26), zone=zone)


def employment_row(end: str, start: str = "2026-03-09T05:00:00Z") -> Any:
    return d365_employment({"PersonnelNumber": "100001", "EmploymentLegalEntityId": "usmf", "EmploymentId": "E1",
                            "EmploymentStartDate": start, "EmploymentEndDate": end,
                            "DimensionDisplayValue": "120-PROD"}, CHICAGO)


def test_a_hire_starts_at_local_midnight_of_the_hire_day() -> None:
    action = plan(chicago_target(), [])
    assert action.kind == CREATE
    assert action.body["EmploymentStartDate"] == "2026-03-09T05:00:00Z"  # the day after DST began: CDT, -5
    assert action.body["EmploymentLegalEntityId"] == "usmf"


def test_a_termination_ends_at_the_last_local_second_of_its_day() -> None:
    action = plan(chicago_target(dateOfTermination="2026-11-20T00:00:00", employeeStatusCode="T"),
                  [employment_row("2154-12-31T23:59:59Z")])
    assert action.kind == TERMINATE
    assert action.body == {"EmploymentEndDate": "2026-11-21T05:59:59Z"}  # 23:59:59 CST
    assert "employment ends 2026-11-20 (23:59:59 America/Chicago)" in action.reason


def test_an_end_already_at_that_instant_is_left_alone_and_one_at_another_hour_is_corrected() -> None:
    leaver = chicago_target(dateOfTermination="2026-11-20T00:00:00", employeeStatusCode="T")
    assert plan(leaver, [employment_row("2026-11-21T05:59:59Z")]).kind == UNCHANGED
    # midnight UTC of the 20th is 18:00 on the 19th in Chicago: the employment would end a day early
    early = plan(leaver, [employment_row("2026-11-20T00:00:00Z")])
    assert early.kind == TERMINATE and early.body == {"EmploymentEndDate": "2026-11-21T05:59:59Z"}


def test_d365_instants_are_read_as_days_of_the_configured_zone() -> None:
    row = {"PersonnelNumber": "1", "EmploymentLegalEntityId": "usmf", "EmploymentId": "E1",
           "EmploymentStartDate": "2026-03-31T15:00:00Z", "EmploymentEndDate": "2026-04-30T14:59:59Z"}
    tokyo = d365_employment(row, TOKYO)
    assert (tokyo.start_date, tokyo.end_date) == (dt.date(2026, 4, 1), dt.date(2026, 4, 30))
    in_utc = d365_employment(row)
    assert (in_utc.start_date, in_utc.end_date) == (dt.date(2026, 3, 31), dt.date(2026, 4, 30))
    open_ended = d365_employment({**row, "EmploymentEndDate": "2154-12-31T23:59:59Z"}, TOKYO)
    assert (open_ended.end_date, open_ended.ends_at) == (None, None)


def test_the_synced_hash_changes_with_the_time_zone() -> None:
    target = chicago_target(dateOfTermination="2026-11-20T00:00:00", employeeStatusCode="T")
    assert target.payload_hash("usmf", CHICAGO) != target.payload_hash("usmf", UTC)
    assert target.payload_hash("USMF", CHICAGO) == target.payload_hash("usmf", CHICAGO)


# ---------------------------------------------------------------------- ping's time zone line


@pytest.mark.parametrize(("member", "offset"), [
    ("GMTMINUS0600CENTRALTIME", dt.timedelta(hours=-6)),
    ("GMTPLUS0545KATHMANDU", dt.timedelta(hours=5, minutes=45)),
    ("GMT_PLUS0300KALININGRAD_MINSK", dt.timedelta(hours=3)),
    ("GMT_COORDINATEDUNIVERSALTIME", dt.timedelta(0)),
    ("SOMETHINGELSE", None),
])
def test_timezone_members_name_their_offset(member: str, offset: dt.timedelta | None) -> None:
    assert enum_offset(member) == offset


def test_a_member_agrees_with_any_offset_the_zone_has_had() -> None:
    assert time_zone_mismatch("GMTMINUS0600CENTRALTIME", CHICAGO, 2026) is None
    assert time_zone_mismatch("GMTMINUS0300SANTIAGO", ZoneInfo("America/Santiago"), 2026) is None  # its DST
    assert time_zone_mismatch("GMTMINUS0430CARACAS", ZoneInfo("America/Caracas"), 2026) is None  # 2007-2016
    assert time_zone_mismatch("GMTPLUS0100_AMSTERDAM_BERLIN_BERN_ROME", CHICAGO, 2026) == (
        "D365's UTC+01:00 is not an offset of America/Chicago (UTC-06:00/-05:00): employment starts and ends "
        "would be hours off the legal entity's days; set d365.time_zone to its IANA zone")


class LegalEntitiesOnly:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.asked: list[tuple[str, str | None]] = []

    def get_all(self, entity_set: str, *, filter: str | None = None, select: Any = None, top: int | None = None,
                cross_company: bool = False) -> list[dict[str, Any]]:
        self.asked.append((entity_set, filter))
        return self.rows


def ping_line(zone_line: str, rows: list[dict[str, Any]], legal_entity: str = "USMF") -> tuple[Any, Any]:
    d365 = LegalEntitiesOnly(rows)
    ctx = SimpleNamespace(config=config_with(zone_line, legal_entity), d365=d365)
    return time_zone_check(ctx, "contoso"), d365  # type: ignore[arg-type]


def test_ping_shows_the_legal_entitys_time_zone_next_to_the_configured_one() -> None:
    check, d365 = ping_line("  time_zone: America/Chicago\n",
                            [{"LegalEntityId": "usmf", "TimeZone": "GMTMINUS0600CENTRALTIME"}])
    assert (check.system, check.ok) == ("Time zone", True)
    assert check.detail == "d365.time_zone America/Chicago; legal entity USMF: TimeZone GMTMINUS0600CENTRALTIME"
    assert d365.asked == [("LegalEntities", "LegalEntityId eq 'usmf'")]


def test_ping_fails_the_line_when_the_offsets_disagree_or_the_legal_entity_is_missing() -> None:
    check, _ = ping_line("", [{"LegalEntityId": "usmf", "TimeZone": "GMTMINUS0600CENTRALTIME"}])
    assert not check.ok and check.exit_status == ExitStatus.RECORDS_FAILED
    assert check.detail.startswith("d365.time_zone UTC; legal entity USMF: TimeZone GMTMINUS0600CENTRALTIME; "
                                   "D365's UTC-06:00 is not an offset of UTC")
    missing, _ = ping_line("", [])
    assert not missing.ok and "legal entity USMF is not in D365's LegalEntities" in missing.detail


# ---------------------------------------------------------------------- company ids in lower case


class Recording(FakeD365):
    def __init__(self) -> None:
        super().__init__()
        self.filters: list[str] = []
        self.keys: list[dict[str, Any]] = []
        self.bodies: list[dict[str, Any]] = []

    def get(self, entity_set: str, key: dict) -> Any:
        self.keys.append(dict(key))
        return super().get(entity_set, key)

    def get_all(self, entity_set: str, *, filter: str = "", select: Any = None, cross_company: bool = False,
                top: int | None = None) -> Any:
        self.filters.append(filter)
        return super().get_all(entity_set, filter=filter, select=select, cross_company=cross_company, top=top)

    def create(self, entity_set: str, body: dict) -> dict:
        self.bodies.append(dict(body))
        return super().create(entity_set, body)

    def _apply(self, ops: Any) -> Any:
        self.bodies.extend(dict(op.body) for op in ops if op.body)
        return super()._apply(ops)


def test_a_journal_for_legal_entity_USMF_carries_usmf_in_every_body_key_and_filter(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    d365_cfg = cfg.d365.model_copy(update={"legal_entity": "USMF"})
    items = [gl("5000", Decimal("10.00"), cc="110", dept="PROD"), gl("2100", 0, Decimal("10.00"), system_id=2)]
    journal = build_journals([parse_gl_line(x, n) for n, x in enumerate(items)], cfg)[0]
    ledger = Ledger(tmp_path / "ledger.db")
    ledger.start_run("test", {})
    fake = Recording()
    poster = JournalPoster(fake, ledger, d365_cfg, sleep=lambda s: None)  # type: ignore[arg-type]
    ledger.save_plan(posting_record(journal), journal.lines)
    assert poster.post(ledger.get_posting(journal.key.text)).status == POSTED
    assert fake.keys == [{"dataAreaId": "usmf", "Name": "GenJrn"}]
    assert len(fake.bodies) == 3 and {b["dataAreaId"] for b in fake.bodies} == {"usmf"}
    assert fake.filters and all(f.startswith("dataAreaId eq 'usmf' and ") for f in fake.filters)
    ledger.close()
