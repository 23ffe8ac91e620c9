"""The local API's self-signed certificate: made on first start, reused after.

No CA can vouch for a camera on a LAN, so the certificate's SHA-256 fingerprint is what
people and `camagent finder` check (it is announced in mDNS and shown by `status`).
ECDSA P-256 because every browser and TLS stack accepts it and it is cheap on a camera.

The daemon has the pair made by a child process (`python -m agent.local_api.cert`), as it
has QR codes read by one: cryptography's X.509 code would otherwise stay loaded in the
daemon for good (3 MiB of its idle memory, docs/scale.md) for one use at the first start.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from agent import state_dir as state_dir_check
from agent.atomic_file import write_atomic
from agent.errors import CamagentError
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


MAKE_TIMEOUT_S = 60.0  # a slow camera makes a P-256 key in well under a second
ERROR_CHARS = 500  # of the child's stderr, in the daemon's error


class CertificateError(CamagentError):
    pass


def ensure(state_dir: Path, device_id: str) -> Certificate:
    """Load the certificate from `state_dir`, or make (and keep) one in this process if
    there is none or the pair there is unusable."""
    kept = _usable(state_dir)
    if kept is not None:
        return kept
    keep_new(state_dir, device_id)
    return _made(state_dir)


async def ensure_in_child(state_dir: Path, device_id: str) -> Certificate:
    """`ensure()` for the daemon: a missing pair is made by a child process."""
    kept = await asyncio.to_thread(_usable, state_dir)
    if kept is not None:
        return kept
    child = await asyncio.create_subprocess_exec(
        *maker_argv(state_dir, device_id),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(child.communicate(), MAKE_TIMEOUT_S)
    except TimeoutError:
        child.kill()
        await child.wait()
        raise CertificateError(
            f"making the local API certificate took over {MAKE_TIMEOUT_S:.0f} s"
        ) from None
    if child.returncode != 0:
        reason = stderr.decode(errors="replace").strip()[-ERROR_CHARS:] or "no reason given"
        raise CertificateError(
            f"could not make the local API certificate (exit {child.returncode}): {reason}"
        )
    return await asyncio.to_thread(_made, state_dir)


def maker_argv(state_dir: Path, device_id: str) -> list[str]:
    return [sys.executable, "-m", "agent.local_api.cert", str(state_dir), device_id]


def _usable(state_dir: Path) -> Certificate | None:
    try:
        return _load(state_dir / CERT_FILE, state_dir / KEY_FILE)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("the local API certificate is unusable (%s): making a new one", exc)
        return None


def _made(state_dir: Path) -> Certificate:
    made = _load(state_dir / CERT_FILE, state_dir / KEY_FILE)
    log.info("made the local API certificate, fingerprint %s", made.fp)
    return made


def keep_new(state_dir: Path, device_id: str) -> None:
    """Make a pair and write it to `state_dir`, replacing whatever is there."""
    state_dir_check.ensure(state_dir)  # ours alone, or refused: see agent/state_dir.py
    cert_pem, key_pem = make(device_id)
    # The key first: a certificate on disk without its key would be useless.
    write_atomic(state_dir / KEY_FILE, key_pem)
    write_atomic(state_dir / CERT_FILE, cert_pem)


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


def main(argv: list[str]) -> int:
    """The child: `python -m agent.local_api.cert STATE_DIR DEVICE_ID`."""
    if len(argv) != 2:
        print("usage: python -m agent.local_api.cert STATE_DIR DEVICE_ID", file=sys.stderr)
        return 2
    try:
        keep_new(Path(argv[0]), argv[1])
    except (CamagentError, OSError) as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
