"""Bearer tokens issued by the simulated Entra ID and checked by the simulated D365."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass


@dataclass
class IssuedToken:
    client_id: str
    audience: str  # the resource, e.g. https://127.0.0.1:8445
    expires_at: float


class TokenRegistry:
    def __init__(self, lifetime_seconds: int = 3599, clock=time.time) -> None:
        self.lifetime_seconds = lifetime_seconds
        self._clock = clock
        self._tokens: dict[str, IssuedToken] = {}
        self._lock = threading.Lock()
        self.issued_count = 0

    def issue(self, client_id: str, audience: str) -> tuple[str, int]:
        token = "sbx." + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = IssuedToken(client_id, audience, self._clock() + self.lifetime_seconds)
            self.issued_count += 1
        return token, self.lifetime_seconds

    def check(self, token: str | None, audience: str) -> bool:
        """True when the token was issued here, is unexpired, not revoked, and for this audience."""
        if not token:
            return False
        with self._lock:
            issued = self._tokens.get(token)
        if issued is None:
            return False
        return issued.audience.rstrip("/") == audience.rstrip("/") and issued.expires_at > self._clock()

    def issued_to(self) -> set[str]:
        """The client ids (apps) tokens were issued to and are still held here."""
        with self._lock:
            return {t.client_id for t in self._tokens.values()}

    def revoke_all(self) -> int:
        with self._lock:
            count = len(self._tokens)
            self._tokens.clear()
        return count
