"""Calendar days as D365 F&O's date-time fields hold them: instants in UTC of a day in ``d365.time_zone``.

EmploymentsV2's EmploymentStartDate and EmploymentEndDate are Edm.DateTimeOffset (ntrtd/d365-agent
asset/client/src/EmploymentsV2.ts), so a UKG date D must become an instant: the first second of D in the
legal entity's zone for a start, the last (23:59:59) for an end, each converted to UTC. Read back, an
instant is turned into the local day it falls on. And ping compares the zone with the legal entity's own
TimeZone. No I/O.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone, tzinfo

END_OF_DAY = time(23, 59, 59)


def start_of_day(day: date, zone: tzinfo) -> datetime:
    """The UTC instant at which ``day`` begins in ``zone``.

    fold=0: where midnight is skipped (a DST change at 00:00) Python reads it with the offset before the
    change, which is the instant the day really begins (01:00 local); where it repeats, the first one.
    """
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(timezone.utc)


def end_of_day(day: date, zone: tzinfo) -> datetime:
    """The UTC instant of 23:59:59 on ``day`` in ``zone``; fold=1 takes the later one where it repeats."""
    return datetime.combine(day, END_OF_DAY, tzinfo=zone).replace(fold=1).astimezone(timezone.utc)


def parse_instant(value: object) -> datetime | None:
    """An Edm.DateTimeOffset as D365 answers it (``2026-11-21T05:59:59Z``), in UTC, whole seconds; else None."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:  # a bare date or a date-time without offset: F&O means UTC
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc).replace(microsecond=0)


def local_day(instant: datetime, zone: tzinfo) -> date:
    """The calendar day ``instant`` falls on in ``zone``."""
    return instant.astimezone(zone).date()


# ---------------------------------------------------------------- the legal entity's TimeZone

# LegalEntities.TimeZone is F&O's Timezone enum, not an IANA name: members such as GMTMINUS0600CENTRALTIME,
# GMTPLUS0100_AMSTERDAM_BERLIN_BERN_ROME, GMT_COORDINATEDUNIVERSALTIME and GMT_PLUS0300KALININGRAD_MINSK
# (ntrtd/d365-agent asset/client/src/Timezone.ts; a live answer in NangoHQ/integration-templates
# integrations/microsoft-dynamics-365-finance-and-operations-cc/tests/legal-entities.test.json).
_ENUM_OFFSET = re.compile(r"GMT_?(PLUS|MINUS)(\d{2})(\d{2})")
# Some members keep an offset their zone has since given up (GMTMINUS0430CARACAS, GMTPLUS0200MINSK):
# every offset a zone has had since this year counts as agreeing.
OFFSETS_SINCE = 2000


def enum_offset(member: str) -> timedelta | None:
    """The standard UTC offset a Timezone member names (GMT_... is +00:00); None when it names none."""
    match = _ENUM_OFFSET.match(member)
    if match:
        sign = -1 if match.group(1) == "MINUS" else 1
        return sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))
    return timedelta(0) if member.startswith("GMT_") else None


def zone_offsets(zone: tzinfo, until_year: int) -> set[timedelta]:
    """Every UTC offset ``zone`` has had in January or July from OFFSETS_SINCE to ``until_year``."""
    offsets: set[timedelta] = set()
    for year in range(OFFSETS_SINCE, until_year + 1):
        for month in (1, 7):
            offset = datetime(year, month, 1, 12, tzinfo=zone).utcoffset()
            if offset is not None:
                offsets.add(offset)
    return offsets


def format_offset(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def time_zone_mismatch(member: str, zone: tzinfo, until_year: int) -> str | None:
    """Why D365's Timezone member and the configured zone disagree, or None when they agree (or cannot be
    compared: the member names no offset)."""
    offset = enum_offset(member)
    if offset is None:
        return None
    offsets = zone_offsets(zone, until_year)
    if offset in offsets:
        return None
    now = sorted({datetime(until_year, m, 1, 12, tzinfo=zone).utcoffset() or timedelta(0) for m in (1, 7)})
    return (f"D365's UTC{format_offset(offset)} is not an offset of {zone} "
            f"(UTC{'/'.join(format_offset(o) for o in now)}): employment starts and ends would be hours off the "
            "legal entity's days; set d365.time_zone to its IANA zone")
