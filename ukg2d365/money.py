"""Money: Decimal parsed from JSON text, quantized to the currency's precision, never through float."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

# D365 stores amounts as numeric(32,6); anything near that is a corrupt record, not a payroll.
MAX_AMOUNT = Decimal("999999999999.99")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


_QUANTA = {p: Decimal(1).scaleb(-p) for p in range(0, 5)}
# At two decimals or fewer, |x| <= MAX_AMOUNT exactly when x has at most 12 digits before the point.
_DIGITS = MAX_AMOUNT.adjusted() + 1
_ZEROS = {p: q * 0 for p, q in _QUANTA.items()}


class AmountError(ValueError):
    """An amount cannot be used as money; the message says why, the caller adds which record."""


def quantum(precision: int) -> Decimal:
    q = _QUANTA.get(precision)
    return q if q is not None else Decimal(1).scaleb(-precision)


def as_written(value: Any) -> str:
    """The value as the user's data had it: 1234.005 or NaN, not Python's Decimal('1234.005')."""
    return str(value) if isinstance(value, Decimal) else repr(value)


def parse_amount(value: Any, precision: int = 2) -> Decimal:
    """Parse one amount from decoded JSON (Decimal, int or numeric string) into an exact Decimal.

    ``None`` is zero (UKG leaves the unused side of a line empty). Refused: booleans, floats (they
    already lost precision), strings with separators or currency signs, NaN/Infinity, more decimal
    places than the currency has (unless the extra digits are zeros), and absurdly large values.
    """
    if value is None:
        return _ZEROS.get(precision) or quantum(precision) * 0
    if type(value) is Decimal:
        # Fast path for what the JSON decoder hands us: already exact; at the currency's scale without losing a
        # digit (so the rounding mode never matters) and in range. Anything else takes the path that says why:
        # NaN quantizes to NaN, never equal to itself, and an infinity raises.
        q = _QUANTA.get(precision)
        if q is not None:
            try:
                rounded = value.quantize(q)
            except InvalidOperation:
                rounded = None
            if rounded is not None and rounded == value and (
                    rounded.adjusted() < _DIGITS if precision <= 2 else -MAX_AMOUNT <= rounded <= MAX_AMOUNT):
                return rounded
    return _to_precision(_exact_decimal(value), value, precision)


def _exact_decimal(value: Any) -> Decimal:
    """An int, Decimal or plain numeric string as a Decimal; anything inexact or not a number is refused."""
    if isinstance(value, bool) or isinstance(value, float):
        raise AmountError(f"{value!r} is not an exact amount")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not _PLAIN_NUMBER.match(text):
            raise AmountError(f"{value!r} is not a plain number (no thousands separators or currency signs)")
        return Decimal(text)
    raise AmountError(f"{as_written(value)} is not a number")


def _to_precision(amount: Decimal, value: Any, precision: int) -> Decimal:
    """``amount`` at the currency's scale, refused if not finite, if that loses digits, or if absurdly large."""
    if not amount.is_finite():
        raise AmountError(f"{as_written(value)} is not a finite number")
    try:
        rounded = amount.quantize(quantum(precision), rounding=ROUND_HALF_EVEN)
    except InvalidOperation:
        raise AmountError(f"{as_written(value)} is too large") from None
    if rounded != amount:
        raise AmountError(f"{as_written(value)} has more than {precision} decimal places")
    if abs(rounded) > MAX_AMOUNT:
        raise AmountError(f"{as_written(value)} is larger than any payroll amount ({MAX_AMOUNT})")
    return rounded
