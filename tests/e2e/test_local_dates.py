"""Local dates against the sandbox: a Chicago legal entity, `d365.time_zone: America/Chicago`, and a config
that spells the legal entity USMF while D365 answers usmf."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from tests.world import World
from ukg2d365.errors import ExitStatus
from ukg2d365.sandbox import Sandbox

CHICAGO = ZoneInfo("America/Chicago")
TODAY = dt.date(2026, 11, 26)  # after the 2026-11-01 DST end: Chicago is on CST, UTC-06:00


@pytest.fixture
def world(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> World:
    """The sandbox's legal entity in Central Time, and the tool configured for it (legal entity as USMF)."""
    w = World(sandbox, monkeypatch)
    sandbox.d365.state.set_legal_entity_time_zone("usmf", "GMTMINUS0600CENTRALTIME")
    data = yaml.safe_load(sandbox.config_path.read_text())
    data["d365"].update({"time_zone": "America/Chicago", "legal_entity": "USMF"})
    w.config_path = sandbox.config_path.with_name("chicago.yaml")
    w.config_path.write_text(yaml.safe_dump(data))
    return w


def employment(world: World, number: str) -> dict[str, Any]:
    return next(dict(e) for e in world.d365.tables["EmploymentsV2"].values() if e["PersonnelNumber"] == number)


def in_chicago(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(CHICAGO)


@pytest.mark.e2e
@pytest.mark.sandbox(today=TODAY)
def test_a_termination_ends_at_2359_59_chicago_time_and_a_hire_starts_at_chicago_midnight(world: World) -> None:
    world.cli("sync-dimensions")
    world.cli("sync-employees")
    dataset = world.sandbox.dataset
    leaver = next(e for e in dataset.employees if e.termination_date is None)
    assert employment(world, leaver.employee_number)["EmploymentEndDate"] == "2154-12-31T23:59:59Z"
    day = dt.date(2026, 11, 20)
    dataset.terminate(leaver.employee_number, day)
    # hired on the day Chicago moved to CDT (UTC-05:00 from 02:00): its midnight was still CST
    hired = dataset.hire("Grace", "Hopper", cost_center="320", department="SALES", hire_date=dt.date(2026, 3, 8))

    # the sandbox's today is fixed before the real one, which the incremental watermark follows: read everyone
    world.cli("sync-employees", "--since", "2026-01-01")
    ended = employment(world, leaver.employee_number)["EmploymentEndDate"]
    assert ended == "2026-11-21T05:59:59Z"
    assert in_chicago(ended).replace(tzinfo=None) == dt.datetime(2026, 11, 20, 23, 59, 59)
    started = employment(world, hired.employee_number)["EmploymentStartDate"]
    assert started == "2026-03-08T06:00:00Z"
    assert in_chicago(started).replace(tzinfo=None) == dt.datetime(2026, 3, 8, 0, 0, 0)
    assert employment(world, hired.employee_number)["LegalEntityId"] == "usmf"

    # D365 now holds exactly what the tool would send: a rerun over everything sends nothing
    batches = world.d365.request_count["$batch"]
    world.cli("sync-employees", "--since", "2000-01-01")
    assert world.d365.request_count["$batch"] == batches
    assert employment(world, leaver.employee_number)["EmploymentEndDate"] == ended


@pytest.mark.e2e
def test_ping_shows_the_legal_entitys_time_zone_and_fails_that_line_when_utc_is_left_configured(
    world: World,
) -> None:
    checks = {e["system"]: e for e in world.json_events("ping") if e.get("event") == "check"}
    assert checks["Time zone"]["ok"] is True
    assert checks["Time zone"]["detail"] == ("d365.time_zone America/Chicago; legal entity USMF: "
                                             "TimeZone GMTMINUS0600CENTRALTIME")
    assert " in USMF: " in checks["Journal name"]["detail"]  # what a person reads keeps the configured spelling

    data = yaml.safe_load(world.config_path.read_text())
    del data["d365"]["time_zone"]
    world.config_path.write_text(yaml.safe_dump(data))
    failed = {e["system"]: e for e in world.json_events("ping", expect=ExitStatus.RECORDS_FAILED)
              if e.get("event") == "check"}
    assert failed["Time zone"]["ok"] is False
    assert failed["Time zone"]["detail"].startswith(
        "d365.time_zone UTC; legal entity USMF: TimeZone GMTMINUS0600CENTRALTIME; "
        "D365's UTC-06:00 is not an offset of UTC")
    assert all(c["ok"] for name, c in failed.items() if name != "Time zone")
