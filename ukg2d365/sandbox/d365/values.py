"""Property values as F&O's OData reader takes them: date literals, key parts, body coercion, JSON."""

from __future__ import annotations

import functools
import json
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from ukg2d365.sandbox.d365.errors import odata_error
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
        if code == "s":
            return ""
        if code.startswith("e:"):
            return ENUMS[code[2:]][0]
        raise odata_error(
            f"A null value was found for the property named '{name}', which has the expected type "
            f"'{edm}[Nullable=False]'. The expected type '{edm}[Nullable=False]' does not allow null values."
        )
    convert_error = odata_error(
        f"Cannot convert a primitive value to the expected type '{edm}'. See the inner exception for more details."
    ) if code != "d" or not isinstance(value, Decimal) else None
    if code == "d" and convert_error is None:
        return value
    assert convert_error is not None
    if code == "s":
        if not isinstance(value, str):
            raise convert_error
        return value
    if code == "d":
        if isinstance(value, bool):
            raise convert_error
        if isinstance(value, int):
            return Decimal(value)
        if isinstance(value, Decimal):
            return value
        if isinstance(value, str) and ieee754:  # IEEE754Compatible=true lets Edm.Decimal travel as a string
            try:
                parsed = Decimal(value)
            except InvalidOperation:
                raise convert_error from None
            if parsed.is_finite():
                return parsed
        raise convert_error
    if code in ("i", "l"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise convert_error
        return value
    if code in ("t", "D"):
        normalized = _normalize_date_field(value, code == "D") if isinstance(value, str) else None
        if normalized is None:
            raise odata_error(f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset'.")
        return normalized
    members = ENUMS[code[2:]]
    if not isinstance(value, str):
        raise convert_error
    member = value.split("'")[1] if value.startswith(NAMESPACE) and value.endswith("'") else value
    if member not in members:
        raise odata_error(f"The string '{value}' is not a valid enumeration type constant.")
    return member


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
    types = spec.types
    passthrough = _passthrough(spec)
    out: dict[str, Any] = {}
    for name, value in body.items():
        if type(value) is passthrough.get(name):  # a str for a string property, a Decimal for a decimal one
            out[name] = value
            continue
        code = types.get(name)
        if code is None:  # (no property name has an "@": annotations are never properties)
            if name.startswith("@") or "@odata." in name:
                continue  # annotations such as @odata.type or Prop@odata.bind
            if name in spec.navigation:
                raise odata_error(f"Deep insert through the navigation property '{name}' is not supported.")
            raise odata_error(
                f"The property '{name}' does not exist on type '{NAMESPACE}.{spec.type_name}'. Make sure to only "
                "use property names that are defined by the type or mark the type as open type."
            )
        # Fast paths for values that are already valid as sent (what _coerce_value would return unchanged
        # or normalised); anything else, including every error, goes through _coerce_value.
        kind = type(value)
        if kind is str:
            if code == "D" or code == "t":
                normalized = _normalize_date_cached(value, code == "D")
                if normalized is not None:
                    out[name] = normalized
                    continue
            elif value in _ENUM_MEMBERS.get(code, ()):  # a bare member name (never starts with NAMESPACE)
                out[name] = value
                continue
        elif kind is int:  # exactly int: a bool is refused by _coerce_value
            if code == "d":
                out[name] = Decimal(value)
                continue
            if code == "i" or code == "l":
                out[name] = value
                continue
        out[name] = _coerce_value(spec, name, value, ieee754)
    return out


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
