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


# A run's lines share their run id, company, period end and pay group, and repeat a few hundred accounts with
# org-level sets: each distinct set of raw values is validated once. Only plain-text keys are kept, since 1, 1.0
# and True are equal keys yet different inputs (a number where text belongs is refused every time).
_HEADS: dict[tuple[Any, ...], tuple[str, str, date, str]] = {}
_PLACES: dict[tuple[Any, ...], tuple[str, tuple[str, str, str, str]]] = {}
_CACHE_SIZE = 4096
_NO_AMOUNT = "debitAmt and creditAmt are both null or missing"


def _cache(cache: dict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any) -> None:
    if all(type(v) is str or v is None for v in key):
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        cache[key] = value


def _head(raw: dict[str, Any], no_amount: bool) -> tuple[str, str, date, str]:
    """Run id, company, period end and pay group, validated in this order (with the amounts' presence before the
    pay group, as the fields have always been checked)."""
    key = (raw.get("runId"), raw.get("coId"), raw.get("companyCode"),
           raw.get("periodEndDate") or raw.get("payPeriodEndDate"), raw.get("payGroup"))
    try:
        known = _HEADS.get(key)
    except TypeError:  # an unhashable value (a list, an object): validated afresh, which refuses it
        known = None
    if known is not None:
        return known
    run = _text(raw, "runId", required=True)
    company = _text(raw, "coId", required=False) or _text(raw, "companyCode", required=True)
    if key[3] is None:
        raise ValueError("periodEndDate is missing")
    period_end = parse_date(key[3])
    if no_amount:
        raise ValueError(_NO_AMOUNT)
    head = (run, company, period_end, _text(raw, "payGroup", required=True))
    _cache(_HEADS, key, head)
    return head


def _place(raw: dict[str, Any], precision: int) -> tuple[str, Decimal, Decimal, tuple[str, str, str, str]]:
    """Account, debit, credit and org levels, validated in this order; account and levels once per distinct set."""
    key = (raw.get("generalLedgerAccount"), raw.get("orgLevel1"), raw.get("orgLevel2"), raw.get("orgLevel3"),
           raw.get("orgLevel4"))
    try:
        known = _PLACES.get(key)
    except TypeError:  # unhashable: validated afresh, as in _head
        known = None
    if known is not None:
        return known[0], _amount(raw.get("debitAmt"), "debitAmt", precision), \
            _amount(raw.get("creditAmt"), "creditAmt", precision), known[1]
    account = _text(raw, "generalLedgerAccount", required=True)
    debit = _amount(raw.get("debitAmt"), "debitAmt", precision)
    credit = _amount(raw.get("creditAmt"), "creditAmt", precision)
    levels = (_text(raw, "orgLevel1", required=False), _text(raw, "orgLevel2", required=False),
              _text(raw, "orgLevel3", required=False), _text(raw, "orgLevel4", required=False))
    _cache(_PLACES, key, (account, levels))
    return account, debit, credit, levels


def _amount(value: Any, field: str, precision: int) -> Decimal:
    try:
        return parse_amount(value, precision)
    except AmountError as exc:
        raise ValueError(f"{field} {exc}") from None


_new_line = tuple.__new__


def parse_gl_line(raw: Any, position: int, precision: int = 2) -> GlDistribution:
    """Validate one raw GL item; DataError names the run, the line and the field."""
    if not isinstance(raw, dict):
        raise DataError(f"UKG GL item #{position} is not an object: {type(raw).__name__}")
    system_id = raw.get("systemId")
    try:
        # debitAmt/creditAmt are documented as numbers: a null side next to an amount is zero, but a line
        # with neither carries nothing to book and would vanish silently.
        no_amount = raw.get("debitAmt") is None and raw.get("creditAmt") is None
        run, company, period_end, pay_group = _head(raw, no_amount)
        if no_amount:  # checked in _head too, when its values were not known yet
            raise ValueError(_NO_AMOUNT)
        account, debit, credit, levels = _place(raw, precision)
        block, blocks = raw.get("blockId"), raw.get("totalNrOfBlocks")  # whole numbers nearly always: _int if not
        if type(block) is not int:
            block = _int(raw, "blockId", 1)
        if type(blocks) is not int:
            blocks = _int(raw, "totalNrOfBlocks", 1)
        # tuple.__new__ straight: the NamedTuple's own __new__ is a Python function, a frame a line of a run
        return _new_line(GlDistribution, (
            run, company, pay_group, period_end, account, debit, credit, levels, block, blocks,
            str(system_id) if system_id is not None else f"#{position}",
        ))
    except ValueError as exc:
        line = system_id if system_id is not None else f"#{position}"
        run_id = raw.get("runId")
        run = f"GL run {run_id}" if run_id not in (None, "") else "GL item without runId,"
        raise DataError(f"UKG {run} line {line}: {exc}") from None
