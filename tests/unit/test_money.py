import json
from decimal import Decimal

import pytest

from ukg2d365.money import AmountError, parse_amount


def test_amounts_decoded_as_decimal_sum_exactly():
    items = json.loads('[1234.1, 0.1, 0.2]', parse_float=Decimal)
    total = sum((parse_amount(v) for v in items), Decimal(0))
    assert total == Decimal("1234.40")
    assert parse_amount(items[1]) + parse_amount(items[2]) == Decimal("0.30")


@pytest.mark.parametrize("value,expected", [
    (Decimal("12.5"), Decimal("12.50")), (7, Decimal("7.00")), ("1234.50", Decimal("1234.50")),
    (None, Decimal("0.00")), (Decimal("1E+3"), Decimal("1000.00")), (Decimal("1234.500"), Decimal("1234.50")),
])
def test_valid_amounts(value, expected):
    assert parse_amount(value) == expected
    assert str(parse_amount(value)) == str(expected)


@pytest.mark.parametrize("value", ["1,234.50", "$12", 1.5, True, Decimal("1234.005"), Decimal("NaN"),
                                   Decimal("Infinity"), "abc", [1], Decimal("1e15")])
def test_refused_amounts(value):
    with pytest.raises(AmountError):
        parse_amount(value)


def test_zero_decimal_currency():
    assert parse_amount(Decimal("100"), precision=0) == Decimal("100")
    with pytest.raises(AmountError):
        parse_amount(Decimal("100.5"), precision=0)
