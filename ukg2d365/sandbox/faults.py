"""Fault injection: the failures a real UKG / Entra / D365 shows, on demand.

The server asks ``FaultSet.take()`` before dispatching each request; a matching rule decides what
happens instead of (or around) the normal answer. Rules are consumed (``count``) so a test can say
"the next two $batch calls get 429" and then let the run recover.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import quote

from ukg2d365.sandbox.types import SimResponse

SERVICES = ("entra", "ukg", "d365")
# revoke_tokens: every issued bearer token is revoked just before this request is handled (a token
# revoked mid-run, as when an admin rotates the app's secret or Entra invalidates sessions).
ACTIONS = ("latency", "status", "drop_after", "drop_before", "html", "redirect", "revoke_tokens")

# D365 F&O service protection message (MicrosoftDocs/dynamics-365-unified-operations-public,
# articles/fin-ops-core/dev-itpro/data-entities/priority-based-throttling.md)
D365_THROTTLE_MESSAGE = (
    "This request could not be processed at this time due to system experiencing high resource utilization."
)


@dataclass
class FaultRule:
    service: str
    action: str
    method: str | None = None
    path_regex: str | None = None  # re.search on the percent-decoded path (no query string)
    status: int | None = None
    retry_after: str | None = None  # delta-seconds ("5") or an HTTP-date
    count: int | None = 1  # None: forever
    latency_ms: int | None = None
    fired: int = field(default=0, compare=False)  # how many requests this rule has hit

    def __post_init__(self) -> None:
        if self.service not in SERVICES:
            raise ValueError(f"service must be one of {', '.join(SERVICES)}, got {self.service!r}")
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {self.action!r}")
        if self.action == "status" and not (isinstance(self.status, int) and 100 <= self.status <= 599):
            raise ValueError("action 'status' needs an HTTP status (100..599)")
        if self.action == "latency" and not (isinstance(self.latency_ms, int) and self.latency_ms >= 0):
            raise ValueError("action 'latency' needs latency_ms >= 0")
        if self.count is not None and (not isinstance(self.count, int) or self.count < 1):
            raise ValueError("count must be a positive integer or None (forever)")
        if self.retry_after is not None:
            self.retry_after = str(self.retry_after)
        if self.method is not None:
            self.method = self.method.upper()
        if self.path_regex is not None:
            try:
                re.compile(self.path_regex)  # fail at add() time, not on the first request
            except re.error as exc:
                raise ValueError(f"path_regex {self.path_regex!r}: {exc}") from None

    def matches(self, service: str, method: str, path: str) -> bool:
        if service != self.service:
            return False
        if self.method is not None and method.upper() != self.method:
            return False
        return self.path_regex is None or re.search(self.path_regex, path) is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultRule:
        allowed = {"service", "action", "method", "path_regex", "status", "retry_after", "count", "latency_ms"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault rule keys: {', '.join(sorted(unknown))}")
        return cls(**data)


class FaultSet:
    """Thread-safe list of rules plus a standing per-service latency."""

    def __init__(self, latency_ms: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self.latency_ms: dict[str, int] = {s: latency_ms for s in SERVICES}
        self.revoke_hook: Callable[[], object] | None = None  # set by Sandbox: TokenRegistry.revoke_all

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def set_latency(self, service: str, latency_ms: int) -> None:
        if service not in SERVICES:
            raise ValueError(f"service must be one of {', '.join(SERVICES)}, got {service!r}")
        if latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        with self._lock:
            self.latency_ms[service] = latency_ms

    def revoke_tokens(self) -> None:
        if self.revoke_hook is not None:
            self.revoke_hook()

    def take(self, service: str, method: str, path: str) -> FaultRule | None:
        """The first matching rule, consumed once; None when the request goes through untouched."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(service, method, path):
                    rule.fired += 1
                    if rule.count is not None:
                        rule.count -= 1
                        if rule.count <= 0:
                            self._rules.remove(rule)
                    return rule
        return None


# ------------------------------------------------------------------ canned answers


def status_response(service: str, status: int, retry_after: str | None = None) -> SimResponse:
    """An error answer shaped like the real service's."""
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body: dict[str, Any]
    if service == "d365":
        if status == 429:
            inner = D365_THROTTLE_MESSAGE
        elif status >= 500:
            inner = "The service is temporarily unavailable. Try again later."
        else:
            inner = f"The request failed with status {status}."
        body = {
            "error": {
                "code": "",
                "message": "An error has occurred.",
                "innererror": {
                    "message": inner,
                    "type": "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataException",
                    "stacktrace": "",
                },
            }
        }
        return SimResponse.json(status, body, headers)
    if service == "entra":
        code, error = (
            (90055, "temporarily_unavailable")
            if status == 429
            else (90033, "temporarily_unavailable")
            if status >= 500
            else (90000, "invalid_request")
        )
        body = {
            "error": error,
            "error_description": f"AADSTS{code}: The service is temporarily unavailable. Try again later.",
            "error_codes": [code],
            "timestamp": formatdate(usegmt=True),
            "trace_id": "00000000-0000-0000-0000-000000000000",
            "correlation_id": "00000000-0000-0000-0000-000000000000",
        }
        return SimResponse.json(status, body, headers)
    # UKG's gateway answers 429 (and its 5xx) with an empty JSON object
    return SimResponse.json(status, {}, headers)


MAINTENANCE_HTML = (
    b"<!DOCTYPE html><html><head><title>Scheduled maintenance</title></head>"
    b"<body><h1>We'll be back soon</h1><p>The service is undergoing scheduled maintenance.</p></body></html>"
)


def fault_response(service: str, rule: FaultRule, path: str) -> SimResponse | None:
    """The canned answer for ``status``/``html``/``redirect`` rules; None for the others."""
    if rule.action == "status":
        assert rule.status is not None
        return status_response(service, rule.status, rule.retry_after)
    if rule.action == "html":
        # 200 as most maintenance pages; a status given (400, 503) for proxies and gateways that say more
        return SimResponse(rule.status or 200, MAINTENANCE_HTML, {"Content-Type": "text/html; charset=utf-8"})
    if rule.action == "redirect":
        # what a tenant behind an SSO proxy does to an unauthenticated API call: send it to a login page
        location = "https://login.example.invalid/adfs/ls/?wa=wsignin1.0&wreply=" + quote(path, safe="")
        return SimResponse(302, b"", {"Location": location})
    return None
