"""The webhook's secret and signature: HMAC-SHA256 of the raw body, compared in constant time.

UKG's webhooks user guide (https://developer.ukg.com/general/docs/ukg-webhooks-user-guide) says only "HMAC": it
names neither the header, nor the encoding, nor whether anything besides the body is signed, so header,
encoding (hex | base64) and an optional prefix (``sha256=``) are configurable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Mapping

from ukg2d365.config import WebhooksConfig
from ukg2d365.errors import ConfigError

MIN_SECRET_CHARS = 16


def load_secret(cfg: WebhooksConfig, environ: Mapping[str, str] | None = None) -> bytes:
    """The HMAC secret from ``webhooks.secret_env``; ConfigError (exit 2) when missing or too short."""
    value = (os.environ if environ is None else environ).get(cfg.secret_env)
    if not value:
        raise ConfigError(f"webhooks.secret_env: environment variable {cfg.secret_env} is not set",
                          hint="export the hmacSecret of the UKG webhook subscription in it")
    if len(value) < MIN_SECRET_CHARS:
        raise ConfigError(f"webhooks.secret_env: {cfg.secret_env} holds fewer than {MIN_SECRET_CHARS} characters",
                          hint="use the subscription's hmacSecret, or a long random value on both sides")
    return value.encode("utf-8")


class SignatureVerifier:
    """HMAC-SHA256 of the raw body, in the header, encoding and prefix the config names."""

    def __init__(self, secret: bytes, cfg: WebhooksConfig) -> None:
        self._secret = secret
        self.header = cfg.signature_header
        self.encoding = cfg.signature_encoding
        self.prefix = cfg.signature_prefix

    def sign(self, body: bytes) -> str:
        """The header value a sender computes for ``body`` (for tests and for documenting the format)."""
        digest = hmac.new(self._secret, body, hashlib.sha256).digest()
        encoded = digest.hex() if self.encoding == "hex" else base64.b64encode(digest).decode("ascii")
        return self.prefix + encoded

    def verify(self, body: bytes, header_value: str | None) -> bool:
        if not header_value:
            return False
        given = self._decode(header_value.strip())
        if given is None:
            return False
        expected = hmac.new(self._secret, body, hashlib.sha256).digest()
        return hmac.compare_digest(expected, given)

    def _decode(self, value: str) -> bytes | None:
        # The prefix is optional on the wire: senders differ on "sha256=" and its case.
        if self.prefix and value[: len(self.prefix)].lower() == self.prefix.lower():
            value = value[len(self.prefix):]
        try:
            if self.encoding == "hex":
                return bytes.fromhex(value)
            return base64.b64decode(value, validate=True)
        except (ValueError, binascii.Error):
            return None
