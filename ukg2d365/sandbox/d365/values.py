"""Property values as F&O's OData reader takes them: date literals, key parts, body coercion, JSON."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from ukg2d365.sandbox.d365.errors import ODataError, odata_error
from ukg2d365.sandbox.d365.schema import EMPTY_DATE, EMPTY_DAY, ENUMS, NAMESPACE, EntitySpec

_DTO_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?$"
)


@functools.lru_cache(maxsize=4096)
def parse_dto(text: str, require_time: bool = True) -> datetime | None:
    m = _DTO_RE.match(text)
    if not m or (require_time and m.group(4) is None):
        return None
    year, month, day, hh, mm, ss, frac, tz = m.groups()
    try:
        if hh is None:
            return datetime(int(year), int(month), int(day), tzinfo=timezone.utc)
        offset = timezone.utc
        if tz != "Z":
            sign = 1 if tz[0] == "+" else -1
            offset = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
        micro = int((frac or ".0")[1:7].ljust(6, "0"))
        return datetime(int(year), int(month), int(day), int(hh), int(mm), int(ss or 0), micro, tzinfo=offset)
    except ValueError:
        return None


def render_dto(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _normalize_date_field(text: str, date_only: bool) -> str | None:
    """The form F&O answers: utcdatetime in UTC with Z; a date field at 12:00:00Z; empty = 1900-01-01."""
    parsed = parse_dto(text)
    if parsed is None:
        return None
    if date_only:
        day = parsed.date()  # the date the caller wrote, in the caller's offset
        return EMPTY_DAY if day.year <= 1900 else f"{day.isoformat()}T12:00:00Z"
    return EMPTY_DATE if parsed.year <= 1900 else render_dto(parsed)


def collation_key(value: Any) -> Any:
    """Key part as F&O's SQL collation compares it: strings case-insensitively, numbers by value."""
    return value.casefold() if isinstance(value, str) else value


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def key_predicate(spec: EntitySpec, rec: dict[str, Any]) -> str:
    return ",".join([f"{k}={_literal(rec[k])}" for k in spec.keys])


def _coerce_value(spec: EntitySpec, name: str, value: Any, ieee754: bool) -> Any:
    """Check a JSON value against the property's EDM type, as the OData reader does before any X++ runs."""
    code = spec.types[name]
    if code == "s" and type(value) is str:
        return value  # the common case first: most properties are strings
    edm = spec.edm(name)
    if value is None:
        return _null_value(name, code, edm)
    return _CONVERTERS.get(code, _to_enum)(value, code, edm, ieee754)


def _null_value(name: str, code: str, edm: str) -> Any:
    """What a JSON null becomes: "" for a string, an enum's first member; other types refuse it."""
    if code == "s":
        return ""
    if code.startswith("e:"):
        return ENUMS[code[2:]][0]
    raise odata_error(
        f"A null value was found for the property named '{name}', which has the expected type "
        f"'{edm}[Nullable=False]'. The expected type '{edm}[Nullable=False]' does not allow null values."
    )


def _cannot_convert(edm: str) -> ODataError:
    return odata_error(
        f"Cannot convert a primitive value to the expected type '{edm}'. See the inner exception for more details."
    )


# Each converter takes (a non-null JSON value, the property's type code, its EDM type name, whether the
# request is IEEE754Compatible) and returns the stored value or raises the OData reader's error.


def _to_string(value: Any, code: str, edm: str, ieee754: bool) -> Any:
    if not isinstance(value, str):
        raise _cannot_convert(edm)
    return value


def _to_decimal(value: Any, code: str, edm: str, ieee754: bool) -> Any:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, str) and ieee754:  # IEEE754Compatible=true lets Edm.Decimal travel as a string
        try:
            parsed = Decimal(value)
        except InvalidOperation:
            raise _cannot_convert(edm) from None
        if parsed.is_finite():
            return parsed
    raise _cannot_convert(edm)


def _to_integer(value: Any, code: str, edm: str, ieee754: bool) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _cannot_convert(edm)
    return value


def _to_date(value: Any, code: str, edm: str, ieee754: bool) -> Any:
    normalized = _normalize_date_field(value, code == "D") if isinstance(value, str) else None
    if normalized is None:
        raise odata_error(f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset'.")
    return normalized


def _to_enum(value: Any, code: str, edm: str, ieee754: bool) -> Any:
    """A member name, bare or qualified (`Microsoft.Dynamics.DataEntities.NoYes'Yes'`); stored bare."""
    if not isinstance(value, str):
        raise _cannot_convert(edm)
    member = value.split("'")[1] if value.startswith(NAMESPACE) and value.endswith("'") else value
    if member not in ENUMS[code[2:]]:
        raise odata_error(f"The string '{value}' is not a valid enumeration type constant.")
    return member


# The converter per type code (see schema._EDM); every "e:<Enum>" code has _to_enum.
_CONVERTERS: dict[str, Callable[[Any, str, str, bool], Any]] = {
    "s": _to_string, "d": _to_decimal, "i": _to_integer, "l": _to_integer, "t": _to_date, "D": _to_date,
}


_ENUM_MEMBERS: dict[str, frozenset[str]] = {f"e:{name}": frozenset(members) for name, members in ENUMS.items()}
_normalize_date_cached = functools.lru_cache(maxsize=4096)(_normalize_date_field)  # pure: text -> stored form


def _passthrough(spec: EntitySpec) -> dict[str, type]:
    """{property: the Python type whose values _coerce_value returns as they are} (strings, decimals)."""
    table = _PASSTHROUGH.get(id(spec))
    if table is None:
        table = {name: str if code == "s" else Decimal for name, code in spec.types.items() if code in ("s", "d")}
        _PASSTHROUGH[id(spec)] = table
    return table


_PASSTHROUGH: dict[int, dict[str, type]] = {}


def coerce_body(spec: EntitySpec, body: dict[str, Any], ieee754: bool) -> dict[str, Any]:
    """A request body's properties in their stored form; annotations dropped, anything else refused."""
    types = spec.types
    passthrough = _passthrough(spec)
    out: dict[str, Any] = {}
    for name, value in body.items():
        if type(value) is passthrough.get(name):  # a str for a string property, a Decimal for a decimal one
            out[name] = value
            continue
        code = types.get(name)
        if code is None:
            _refuse_unknown_property(spec, name)  # returns only for an annotation, which is dropped
            continue
        out[name] = _coerce_sent(spec, name, code, value, ieee754)
    return out


def _refuse_unknown_property(spec: EntitySpec, name: str) -> None:
    """A body member that is no property: an annotation passes (no property name has an "@"), else an error."""
    if name.startswith("@") or "@odata." in name:
        return  # annotations such as @odata.type or Prop@odata.bind
    if name in spec.navigation:
        raise odata_error(f"Deep insert through the navigation property '{name}' is not supported.")
    raise odata_error(
        f"The property '{name}' does not exist on type '{NAMESPACE}.{spec.type_name}'. Make sure to only "
        "use property names that are defined by the type or mark the type as open type."
    )


def _coerce_sent(spec: EntitySpec, name: str, code: str, value: Any, ieee754: bool) -> Any:
    """Fast paths for values that are already valid as sent (what _coerce_value would return unchanged
    or normalised); anything else, including every error, goes through _coerce_value."""
    kind = type(value)
    if kind is str:
        if code == "D" or code == "t":
            normalized = _normalize_date_cached(value, code == "D")
            if normalized is not None:
                return normalized
        elif value in _ENUM_MEMBERS.get(code, ()):  # a bare member name (never starts with NAMESPACE)
            return value
    elif kind is int:  # exactly int: a bool is refused by _coerce_value
        if code == "d":
            return Decimal(value)
        if code == "i" or code == "l":
            return value
    return _coerce_value(spec, name, value, ieee754)


def _reject_constant(constant: str) -> Any:
    raise ValueError(constant)


# One decoder for every body: json.loads(..., parse_float=...) would build a new JSONDecoder per call.
_JSON_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)


def _decode_json(text: str) -> Any:
    if text[:1] == "{":
        # The usual body, one object with nothing around it: raw_decode() skips decode()'s whitespace scans.
        try:
            value, end = _JSON_DECODER.raw_decode(text)
            if end == len(text):
                return value
        except ValueError:
            pass
    return _JSON_DECODER.decode(text)  # anything else, including every error, as decode() answers it


def parse_json_body(body: bytes) -> dict[str, Any]:
    try:
        value = _decode_json(body.decode("utf-8") or "null")
    except (UnicodeDecodeError, ValueError):
        raise odata_error("The request body is not valid JSON: an unexpected character was found.") from None
    if not isinstance(value, dict):
        raise odata_error("The request body must be a JSON object describing one entity.")
    return value
