"""A throwaway certificate authority and server certificate for the sandbox's HTTPS listeners.

Made with trustme, a library that issues exactly this kind of test-grade CA and leaf certificate. Clients
trust the sandbox by pointing ``ca_bundle`` at the written ``ca.pem``; nobody ever turns verification off.
The private keys stay in memory: ``server_context`` loads the server key into the ``ssl.SSLContext`` (trustme
passes it through a private temporary file it deletes at once), and the CA key is never written at all.
"""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

VALIDITY = dt.timedelta(days=1)  # a sandbox runs for minutes or hours; a stolen ca.pem is useless tomorrow


@dataclass(frozen=True)
class TlsMaterial:
    ca_pem: bytes
    cert_pem: bytes
    _leaf: trustme.LeafCert

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._leaf.configure_cert(ctx)
        return ctx

    def write_ca(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.ca_pem)
        return path


def generate(hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> TlsMaterial:
    """Create a CA and a server certificate for ``hosts`` (IP addresses become IP SANs), valid for a day."""
    ca = trustme.CA(organization_name="ukg2d365 sandbox")
    leaf = ca.issue_cert(*hosts, organization_name="ukg2d365 sandbox",
                         not_after=dt.datetime.now(dt.timezone.utc) + VALIDITY)
    return TlsMaterial(ca_pem=ca.cert_pem.bytes(), cert_pem=leaf.cert_chain_pems[0].bytes(), _leaf=leaf)
