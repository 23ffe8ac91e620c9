"""The local API's self-signed certificate: made on first start, reused after.

No CA can vouch for a camera on a LAN, so the certificate's SHA-256 fingerprint is what
people and `camagent finder` check (it is announced in mDNS and shown by `status`).
ECDSA P-256 because every browser and TLS stack accepts it and it is cheap on a camera.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from agent import state_dir as state_dir_check
from agent.atomic_file import write_atomic
from agent.tls import as_tls_server_leaf

log = logging.getLogger(__name__)

CERT_FILE = "local-api.pem"
KEY_FILE = "local-api.key"
VALID_DAYS = 20 * 365  # a camera's lifetime: the fingerprint must not change under people


@dataclass(frozen=True)
class Certificate:
    cert_path: Path
    key_path: Path
    fp: str  # lower-case hex SHA-256 of the DER certificate, no colons


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def dns_names(device_id: str, hostname: str | None = None) -> list[str]:
    """SAN entries: the device ID as a DNS label, the host name, and "camagent"."""
    names = []
    for raw in (device_id, hostname if hostname is not None else socket.gethostname(), "camagent"):
        label = re.sub(r"[^a-z0-9.-]+", "-", raw.lower()).strip("-.")
        if label and label not in names:
            names.append(label)
    return names


def ensure(state_dir: Path, device_id: str) -> Certificate:
    """Load the certificate from `state_dir`, or make (and keep) one if there is none
    or the pair there is unusable."""
    cert_path, key_path = state_dir / CERT_FILE, state_dir / KEY_FILE
    try:
        return _load(cert_path, key_path)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        log.warning("the local API certificate is unusable (%s): making a new one", exc)
    state_dir_check.ensure(state_dir)  # ours alone, or refused: see agent/state_dir.py
    cert_pem, key_pem = make(device_id)
    # The key first: a certificate on disk without its key would be useless.
    write_atomic(key_path, key_pem)
    write_atomic(cert_path, cert_pem)
    made = _load(cert_path, key_path)
    log.info("made the local API certificate, fingerprint %s", made.fp)
    return made


def make(device_id: str, now: datetime.datetime | None = None) -> tuple[bytes, bytes]:
    """A fresh (certificate PEM, private key PEM) pair."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = now or datetime.datetime.now(datetime.UTC)
    names = dns_names(device_id)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"camagent {device_id}"[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "camagent device"),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))  # cameras boot with odd clocks
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
    )
    cert = as_tls_server_leaf(builder).sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _load(cert_path: Path, key_path: Path) -> Certificate:
    """Check the pair with the TLS stack itself (no x509 parsing in the daemon after the
    first start); raises OSError (ssl.SSLError) or ValueError when it is unusable."""
    import ssl

    pem = cert_path.read_text(encoding="ascii", errors="replace")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert_path), str(key_path))  # also: the key matches
    return Certificate(cert_path, key_path, fingerprint(ssl.PEM_cert_to_DER_cert(pem)))
