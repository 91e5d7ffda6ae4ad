"""A throwaway certificate authority and server certificate for the sandbox's HTTPS listeners.

Clients trust the sandbox by pointing ``ca_bundle`` at the written ``ca.pem``; nobody ever turns
verification off. The private keys never touch the sandbox folder: the server key is written only to
a private (0700) temporary folder because ``ssl.SSLContext.load_cert_chain`` reads files, and that
folder is removed on ``cleanup()``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=1)
CLOCK_SKEW = dt.timedelta(minutes=5)  # tolerate a client clock slightly behind ours


@dataclass
class TlsMaterial:
    ca_pem: bytes
    cert_pem: bytes
    _key_dir: Path
    _cert_file: Path
    _key_file: Path
    _cleaned: bool = field(default=False)

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self._cert_file), str(self._key_file))
        return ctx

    def write_ca(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.ca_pem)
        return path

    def cleanup(self) -> None:
        if not self._cleaned:
            shutil.rmtree(self._key_dir, ignore_errors=True)
            self._cleaned = True


_KEY_USAGES = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
               "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")


def _key_usage(*allowed: str) -> x509.KeyUsage:
    """A KeyUsage extension with only ``allowed`` set (the constructor wants every flag spelled out)."""
    unknown = set(allowed) - set(_KEY_USAGES)
    if unknown:
        raise ValueError(f"unknown key usage {sorted(unknown)}")
    return x509.KeyUsage(**{name: name in allowed for name in _KEY_USAGES})


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ukg2d365 sandbox"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def generate(hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> TlsMaterial:
    """Create a CA and a server certificate for ``hosts`` (IP addresses become IP SANs)."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("ukg2d365 sandbox CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage("digital_signature", "key_cert_sign", "crl_sign"), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage("digital_signature", "key_agreement"), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key_dir = Path(tempfile.mkdtemp(prefix="ukg2d365-sandbox-tls-"))  # mkdtemp creates it 0700
    os.chmod(key_dir, 0o700)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file = key_dir / "server.pem"
    key_file = key_dir / "server.key"
    cert_file.write_bytes(cert_pem)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    # The CA key is dropped here: nothing else is ever signed with it.
    return TlsMaterial(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert_pem,
        _key_dir=key_dir,
        _cert_file=cert_file,
        _key_file=key_file,
    )
