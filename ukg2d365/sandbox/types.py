"""Request and response values passed between the sandbox's HTTPS server and its simulated services."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

_MARK = "\u0001dec:"


def _mark_decimals(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _MARK + str(value)
    if isinstance(value, dict):
        return {k: _mark_decimals(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mark_decimals(v) for v in value]
    return value


_MARKED = re.compile(r'"\\u0001dec:(-?[0-9.Ee+-]+)"')


def dumps(value: Any) -> bytes:
    """JSON with Decimals written exactly as their text: the simulators never round money through float."""
    text = json.dumps(_mark_decimals(value), separators=(",", ":"))
    return _MARKED.sub(r"\1", text).encode()


@dataclass
class SimRequest:
    method: str
    path: str  # percent-decoded path, no query string
    raw_path: str  # path as sent, with query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # keys lower-cased
    body: bytes = b""

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class SimResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, value: Any, headers: dict[str, str] | None = None) -> SimResponse:
        hdrs = {"Content-Type": "application/json; charset=utf-8"}
        hdrs.update(headers or {})
        return cls(status, dumps(value), hdrs)

    @classmethod
    def empty(cls, status: int, headers: dict[str, str] | None = None) -> SimResponse:
        return cls(status, b"", dict(headers or {}))
