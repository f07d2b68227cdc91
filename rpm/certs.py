"""A private CA and the broker's server certificate, for a clinic that has no PKI.

`rpm tls make-certs` (rpm/cli/tls.py) writes them; docs/tls.md says which file goes where.
Run again on the same directory, it keeps the CA and issues a new server certificate:
that is the server certificate's rotation, and devices, which trust the CA, need nothing.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# RSA, not ECDSA: every device TLS stack we know of verifies RSA signatures; some older
# ones do no elliptic curves. 3072 bits for the CA (NIST SP 800-57: 128-bit security,
# good beyond 2030), 2048 for the server certificate, which is replaced every year or two.
CA_KEY_BITS = 3072
SERVER_KEY_BITS = 2048
CA_VALID_DAYS = 10 * 365
SERVER_VALID_DAYS = 825  # the longest any mainstream TLS client accepts (Apple's limit)
# Issued a little in the past, so that a device whose clock runs a few minutes slow
# does not see a certificate that is not valid yet.
BACKDATE = timedelta(hours=1)

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVER_CERT = "server.crt"
SERVER_KEY = "server.key"


class CertificateError(Exception):
    """The certificates cannot be made as asked."""


@dataclass(frozen=True)
class MadeCertificates:
    directory: Path
    ca_kept: bool  # an existing CA was reused: only the server certificate is new
    hosts: tuple[str, ...]
    server_expires: datetime

    @property
    def ca_cert(self) -> Path:
        return self.directory / CA_CERT

    @property
    def ca_key(self) -> Path:
        return self.directory / CA_KEY

    @property
    def server_cert(self) -> Path:
        return self.directory / SERVER_CERT

    @property
    def server_key(self) -> Path:
        return self.directory / SERVER_KEY


def make_certificates(
    directory: Path,
    hosts: Sequence[str],
    *,
    server_valid_days: int = SERVER_VALID_DAYS,
    ca_name: str = "rpm private CA",
) -> MadeCertificates:
    """Write a CA (unless `directory` has one) and a server certificate for `hosts`.

    Each host is a DNS name or an IP address, put in the certificate's subject
    alternative names, which is all that TLS clients check a host against (RFC 6125).
    """
    if not hosts:
        raise CertificateError("name at least one host the broker is reached at (--host)")
    names = [_general_name(host) for host in hosts]
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_cert_path, ca_key_path = directory / CA_CERT, directory / CA_KEY
    ca_kept = ca_cert_path.exists() or ca_key_path.exists()
    if ca_kept:
        ca_cert, ca_key = _load_ca(ca_cert_path, ca_key_path)
    else:
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=CA_KEY_BITS)
        ca_cert = _ca_certificate(ca_key, ca_name, now)
        _write(ca_key_path, _key_pem(ca_key), private=True)
        _write(ca_cert_path, ca_cert.public_bytes(serialization.Encoding.PEM))
    expires = min(now + timedelta(days=server_valid_days), ca_cert.not_valid_after_utc)
    server_key = rsa.generate_private_key(public_exponent=65537, key_size=SERVER_KEY_BITS)
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(expires)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=True,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(directory / SERVER_KEY, _key_pem(server_key), private=True)
    _write(directory / SERVER_CERT, server_cert.public_bytes(serialization.Encoding.PEM))
    return MadeCertificates(directory, ca_kept, tuple(hosts), expires)


def _ca_certificate(key: rsa.RSAPrivateKey, name: str, now: datetime) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=CA_VALID_DAYS))
        # path_length 0: this CA signs server certificates only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _load_ca(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    if not (cert_path.exists() and key_path.exists()):
        raise CertificateError(
            f"{cert_path.parent} has only one of {CA_CERT} and {CA_KEY}: put both back to"
            " issue a server certificate with that CA, or use a new directory for a new CA"
        )
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey) or key.public_key() != cert.public_key():
        raise CertificateError(f"{key_path} is not the private key of {cert_path}")
    return cert, key


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not host or any(c.isspace() or c in "/:@" for c in host):
        raise CertificateError(f"{host!r} is neither a host name nor an IP address")
    return x509.DNSName(host)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write through a new file renamed into place, so that a broker reading the old one
    never sees half a file; a private key is 0600 from its creation, never wider."""
    partial = path.with_name(f".{path.name}.new")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    partial.replace(path)
