"""Request and response values passed between the sandbox's HTTPS server and its simulated services."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, Decimal):
            # Emit the exact decimal text: the simulators must never round money through float.
            return _RawNumber(str(o))
        return super().default(o)


class _RawNumber(float):
    def __new__(cls, text: str) -> _RawNumber:
        obj = super().__new__(cls, 0.0)
        obj._text = text  # type: ignore[attr-defined]
        return obj

    def __repr__(self) -> str:
        return self._text  # type: ignore[attr-defined,no-any-return]


def dumps(value: Any) -> bytes:
    """JSON with Decimals written exactly as their text."""
    return json.dumps(value, cls=_Encoder, separators=(",", ":")).encode()


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
