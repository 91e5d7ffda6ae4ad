"""Typed UKG records, validated from the raw dicts the client yields. No I/O here."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, NamedTuple

from ukg2d365.errors import DataError
from ukg2d365.money import AmountError, as_written, parse_amount


class GlDistribution(NamedTuple):
    """One line of a UKG payroll GL run (GET /payroll/v2/general-ledger).

    Immutable; a NamedTuple rather than a frozen dataclass because a pay run has 100,000 of them and a
    frozen dataclass's __init__ (one object.__setattr__ per field) costs three times as much.
    """

    run_id: str
    company: str
    pay_group: str
    period_end: date
    account: str
    debit: Decimal
    credit: Decimal
    org_levels: tuple[str, str, str, str]
    block_id: int
    total_blocks: int
    system_id: str

    def org_level(self, source: str) -> str:
        """Value of 'orgLevel1'..'orgLevel4'."""
        return self.org_levels[int(source[-1]) - 1]

    @property
    def ref(self) -> str:
        return f"GL run {self.run_id} line {self.system_id}"


def parse_date(value: Any) -> date:
    """UKG dates come as '2026-11-13T00:00:00' (sometimes with zone or fraction) or '2026-11-13'."""
    if not isinstance(value, str) or len(value) < 10:
        raise ValueError(f"{value!r} is not a date")
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise ValueError(f"{value!r} is not a date") from None


def _text(raw: dict[str, Any], field: str, *, required: bool) -> str:
    value = raw.get(field)
    if type(value) is str:  # the common cases, kept cheap: this runs ~10 times per GL line
        if value and not value[0].isspace() and not value[-1].isspace():
            return value
        if not value and not required:
            return ""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValueError(f"{field} is missing")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise ValueError(f"{field} {value!r} is not text")
    return str(value).strip()


def _int(raw: dict[str, Any], field: str, default: int) -> int:
    value = raw.get(field)
    if type(value) is int:
        return value
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise ValueError(f"{field} {as_written(value)} is not a whole number")
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        raise ValueError(f"{field} {as_written(value)} is not a whole number") from None
    if number != number.to_integral_value():
        raise ValueError(f"{field} {as_written(value)} is not a whole number")
    return int(number)


_DATES: dict[str, date] = {}  # a run's lines share a handful of date strings


def _amount(raw: dict[str, Any], field: str, precision: int) -> Decimal:
    try:
        return parse_amount(raw.get(field), precision)
    except AmountError as exc:
        raise ValueError(f"{field} {exc}") from None


def parse_gl_line(raw: Any, position: int, precision: int = 2) -> GlDistribution:
    """Validate one raw GL item; DataError names the run, the line and the field."""
    if not isinstance(raw, dict):
        raise DataError(f"UKG GL item #{position} is not an object: {type(raw).__name__}")
    system_id = raw.get("systemId")
    try:
        run = _text(raw, "runId", required=True)
        company = _text(raw, "coId", required=False) or _text(raw, "companyCode", required=True)
        period_raw = raw.get("periodEndDate") or raw.get("payPeriodEndDate")
        if period_raw is None:
            raise ValueError("periodEndDate is missing")
        period_end = _DATES.get(period_raw) if type(period_raw) is str else None
        if period_end is None:
            period_end = parse_date(period_raw)
            if len(_DATES) < 1000:
                _DATES[period_raw] = period_end
        # debitAmt/creditAmt are documented as numbers: a null side next to an amount is zero, but a line
        # with neither carries nothing to book and would vanish silently.
        if raw.get("debitAmt") is None and raw.get("creditAmt") is None:
            raise ValueError("debitAmt and creditAmt are both null or missing")
        return GlDistribution(
            run_id=run,
            company=company,
            pay_group=_text(raw, "payGroup", required=True),
            period_end=period_end,
            account=_text(raw, "generalLedgerAccount", required=True),
            debit=_amount(raw, "debitAmt", precision),
            credit=_amount(raw, "creditAmt", precision),
            org_levels=(_text(raw, "orgLevel1", required=False), _text(raw, "orgLevel2", required=False),
                        _text(raw, "orgLevel3", required=False), _text(raw, "orgLevel4", required=False)),
            block_id=_int(raw, "blockId", 1),
            total_blocks=_int(raw, "totalNrOfBlocks", 1),
            system_id=str(system_id) if system_id is not None else f"#{position}",
        )
    except ValueError as exc:
        line = system_id if system_id is not None else f"#{position}"
        run_id = raw.get("runId")
        run = f"GL run {run_id}" if run_id not in (None, "") else "GL item without runId,"
        raise DataError(f"UKG {run} line {line}: {exc}") from None
