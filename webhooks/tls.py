"""The server's TLS certificate: the configured one, or one made at first start.

Agents on other clouds reach the server over HTTPS and trust exactly this certificate:
its SHA-256 fingerprint travels with their settings and they pin it (DESIGN section 4),
so a self-signed certificate is as good as a CA-signed one for them. It is made once,
kept in the service home (key 0600), and covers the public URL's host.

Example:
    >>> import tempfile
    >>> tls = ensure_certificate(Path(tempfile.mkdtemp()), ["203.0.113.7", "localhost"])
    >>> fingerprint(tls.cert).startswith("sha256:")
    True
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from webhooks.server import Tls

VALID_DAYS = 3650


def fingerprint(cert: Path) -> str:
    """``sha256:<hex>`` of the certificate's DER form: what agents pin."""
    der = ssl.PEM_cert_to_DER_cert(cert.read_text(encoding="ascii"))
    return "sha256:" + hashlib.sha256(der).hexdigest()


def ensure_certificate(home: Path, hosts: Sequence[str]) -> Tls:
    """``home/tls/{cert,key}.pem``, made (self-signed, for ``hosts``) when missing or when
    it does not cover every host in ``hosts``."""
    folder = home / "tls"
    cert, key = folder / "cert.pem", folder / "key.pem"
    if cert.exists() and key.exists() and set(hosts) <= covered(cert):
        return Tls(cert, key)
    _make(folder, cert, key, hosts)
    return Tls(cert, key)


def covered(cert: Path) -> set[str]:
    """Host names and addresses a certificate is valid for."""
    from cryptography import x509

    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    try:
        names = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    found = {str(n) for n in names.get_values_for_type(x509.DNSName)}
    found |= {str(a) for a in names.get_values_for_type(x509.IPAddress)}
    return found


def _make(folder: Path, cert: Path, key: Path, hosts: Sequence[str]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "slipstream service")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(private, hashes.SHA256())
    )
    _write(
        key,
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    _write(cert, certificate.public_bytes(serialization.Encoding.PEM), 0o644)


def _write(path: Path, data: bytes, mode: int) -> None:
    temp = path.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(temp, mode)
    os.replace(temp, path)
