"""The cloud's TLS context: the system store read lazily from its hashed directory, the
bundle file when there is no such directory or SSL_CERT_FILE names one, plus ca_file."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.errors import ConfigError
from agent.tls import client_context


@dataclass(frozen=True)
class Pki:
    ca_cert_path: Path
    cert_path: Path
    key_path: Path

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_pki(directory: Path, ca_name: str) -> Pki:
    """A CA named `ca_name` (OpenSSL finds CAs by subject, so each test CA has its own)
    and a certificate for 127.0.0.1 that it signed."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_subject)
        .issuer_name(ca_subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True)
    pki = Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    pki.ca_cert_path.write_bytes(_pem(ca))
    pki.cert_path.write_bytes(_pem(leaf))
    pki.key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("tls") / "pki", "test CA one")


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("tls") / "other", "test CA two")


def hashed_directory(directory: Path, *cas: Path) -> Path:
    """A directory laid out as `c_rehash` (and Debian's ca-certificates) lays it out."""
    directory.mkdir()
    for ca in cas:
        subject_hash = subprocess.run(
            ["openssl", "x509", "-hash", "-noout", "-in", str(ca)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        shutil.copy(ca, directory / f"{subject_hash}.0")
    return directory


@contextlib.contextmanager
def tls_server(pki: Pki) -> Iterator[int]:
    """One thread that completes the TLS handshake of each connection, then closes it."""
    listener = socket.create_server(("127.0.0.1", 0))
    server_context = pki.ssl_context()

    def serve() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            raw.settimeout(5)
            with contextlib.suppress(OSError), server_context.wrap_socket(raw, server_side=True):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() that close() would not
        listener.close()
        thread.join(timeout=5)


def handshake(context: ssl.SSLContext, port: int) -> None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1"),
    ):
        pass


def test_the_system_store_is_read_from_its_hashed_directory_on_demand(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(hashed_directory(tmp_path / "certs", pki.ca_cert_path)))
    context = client_context()
    # Nothing parsed up front: that is the memory it saves.
    assert context.cert_store_stats()["x509_ca"] == 0
    with tls_server(pki) as port:
        handshake(context, port)
    assert context.cert_store_stats()["x509_ca"] == 1


def test_a_ca_missing_from_the_directory_is_refused(
    pki: Pki, other_pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    directory = hashed_directory(tmp_path / "certs", other_pki.ca_cert_path)
    monkeypatch.setenv("SSL_CERT_DIR", str(directory))
    with tls_server(pki) as port, pytest.raises(ssl.SSLCertVerificationError):
        handshake(client_context(), port)


def test_ca_file_is_trusted_beside_the_system_store(
    pki: Pki, other_pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    directory = hashed_directory(tmp_path / "certs", other_pki.ca_cert_path)
    monkeypatch.setenv("SSL_CERT_DIR", str(directory))
    with tls_server(pki) as port:
        handshake(client_context(str(pki.ca_cert_path)), port)
    with tls_server(other_pki) as port:
        handshake(client_context(str(pki.ca_cert_path)), port)


def test_ssl_cert_file_names_the_bundle_to_trust(
    pki: Pki, other_pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A directory that would refuse the server, and a bundle that trusts it: the person who
    # set SSL_CERT_FILE meant that bundle.
    directory = hashed_directory(tmp_path / "certs", other_pki.ca_cert_path)
    monkeypatch.setenv("SSL_CERT_DIR", str(directory))
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_cert_path))
    context = client_context()
    assert context.cert_store_stats()["x509_ca"] == 1
    with tls_server(pki) as port:
        handshake(context, port)


def test_without_hashed_links_the_bundle_file_is_loaded(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(pki.ca_cert_path, plain / "ca.pem")  # not a hash name: OpenSSL would miss it
    monkeypatch.setenv("SSL_CERT_DIR", str(plain))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    # The system's bundle file (Debian's ca-certificates), parsed up front.
    assert client_context().cert_store_stats()["x509_ca"] > 0


def test_a_bad_ca_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        client_context(str(tmp_path / "missing.pem"), setting="cloud.ca_file")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"cloud\.ca_file .* is not a PEM bundle"):
        client_context(str(junk))
