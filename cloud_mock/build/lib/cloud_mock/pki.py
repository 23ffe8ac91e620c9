"""The mock's own CA, its HTTPS server certificate and its Ed25519 token-signing key.

Everything is made on first run and reused afterwards, so clients that trust `ca.pem`
and agents that trust `token-signing.pub.pem` keep working across restarts.
ECDSA P-256 is used for TLS (every TLS stack and browser speaks it; Ed25519
certificates are not accepted by browsers, and the web console will need them).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from agent.atomic_file import write_atomic
from agent.tls import as_tls_server_leaf

CA_CERT = "ca.pem"
CA_KEY = "ca.key.pem"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key.pem"
SIGNING_KEY = "token-signing.key.pem"
SIGNING_PUB = "token-signing.pub.pem"

CA_DAYS = 3650
SERVER_DAYS = 397
# Renew a server certificate this close to its end, so a long-lived data dir keeps working.
RENEW_BEFORE = dt.timedelta(days=30)
# Backdate certificates a little: a client whose clock lags still accepts them.
BACKDATE = dt.timedelta(days=1)
ALWAYS_SANS = ("127.0.0.1", "::1", "localhost")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # noqa: S104 - names, not a bind


@dataclass(frozen=True)
class ServerPki:
    ca_cert_path: Path
    cert_path: Path
    key_path: Path
    signing_key: Ed25519PrivateKey

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_path, self.key_path)
        return context


def ensure_pki(data_dir: Path, host: str) -> ServerPki:
    """Load or create CA, server certificate (covering `host`) and signing key."""
    ca_cert, ca_key = _ensure_ca(data_dir)
    _ensure_server_cert(data_dir, host, ca_cert, ca_key)
    return ServerPki(
        ca_cert_path=data_dir / CA_CERT,
        cert_path=data_dir / SERVER_CERT,
        key_path=data_dir / SERVER_KEY,
        signing_key=ensure_signing_key(data_dir),
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey | Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_ec_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: not an EC private key; delete it to make a new one")
    return key


def _ensure_ca(data_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = data_dir / CA_CERT, data_dir / CA_KEY
    if cert_path.exists() and key_path.exists():
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), _load_ec_key(key_path)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "camagent cloud_mock"),
            x509.NameAttribute(NameOID.COMMON_NAME, "cloud_mock local CA"),
        ]
    )
    now = _now()
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    # Key first: a CA certificate without its key would be useless on the next run.
    write_atomic(key_path, _key_pem(key), 0o600)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key


def _san_entries(host: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for value in (*ALWAYS_SANS, host):
        entry = _general_name(value)
        if entry is not None and entry not in names:
            names.append(entry)
    return names


def _general_name(value: str) -> x509.GeneralName | None:
    if value in WILDCARD_HOSTS:
        return None  # clients reach a wildcard bind through the loopback names
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value.lower())


def _server_cert_usable(
    cert_path: Path, key_path: Path, host: str, ca_cert: x509.Certificate
) -> bool:
    if not (cert_path.exists() and key_path.exists()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        cert.verify_directly_issued_by(ca_cert)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False  # unreadable, or issued by a CA that has since been replaced
    wanted = _general_name(host)
    if wanted is not None and wanted not in sans:
        return False
    return cert.not_valid_after_utc - RENEW_BEFORE > _now()


def _ensure_server_cert(
    data_dir: Path, host: str, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> None:
    cert_path, key_path = data_dir / SERVER_CERT, data_dir / SERVER_KEY
    if _server_cert_usable(cert_path, key_path, host, ca_cert):
        return
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloud_mock")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
    )
    cert = (
        as_tls_server_leaf(builder)
        .add_extension(x509.SubjectAlternativeName(_san_entries(host)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_atomic(key_path, _key_pem(key), 0o600)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def ensure_signing_key(data_dir: Path) -> Ed25519PrivateKey:
    key_path, pub_path = data_dir / SIGNING_KEY, data_dir / SIGNING_PUB
    if key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{key_path}: not an Ed25519 private key")
    else:
        key = Ed25519PrivateKey.generate()
        write_atomic(key_path, _key_pem(key), 0o600)
    # Always rewrite the public half: it is derived, and clients read it from here.
    pub_pem = public_pem(key.public_key())
    if not pub_path.exists() or pub_path.read_text() != pub_pem:
        write_atomic(pub_path, pub_pem.encode(), 0o644)
    return key


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def key_id(key: Ed25519PublicKey) -> str:
    """`kid`: first 16 hex characters of SHA-256 over the raw 32-byte public key."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]
