"""CA, server certificate and signing key: made once, reused, renewed when needed."""

from __future__ import annotations

import hashlib
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cloud_mock.pki import ensure_pki, key_id


def sans(path: Path) -> x509.SubjectAlternativeName:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_first_run_makes_everything(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, "127.0.0.1")
    for name in (
        "ca.pem",
        "ca.key.pem",
        "server.pem",
        "server.key.pem",
        "token-signing.key.pem",
        "token-signing.pub.pem",
    ):
        assert (tmp_path / name).is_file(), name
    for secret in ("ca.key.pem", "server.key.pem", "token-signing.key.pem"):
        assert (tmp_path / secret).stat().st_mode & 0o777 == 0o600, secret
    names = sans(pki.cert_path)
    assert set(names.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    server = x509.load_pem_x509_certificate(pki.cert_path.read_bytes())
    server.verify_directly_issued_by(ca)
    # Strict verifiers (Python 3.13's default context) need these.
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).critical
    server.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)


def test_second_run_reuses_everything(tmp_path: Path) -> None:
    ensure_pki(tmp_path, "127.0.0.1")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    ensure_pki(tmp_path, "localhost")  # already a SAN: nothing to renew
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_new_host_renews_only_the_server_cert(tmp_path: Path) -> None:
    first = ensure_pki(tmp_path, "127.0.0.1")
    ca_before = (tmp_path / "ca.pem").read_bytes()
    cert_before = first.cert_path.read_bytes()
    second = ensure_pki(tmp_path, "cloud.test")
    assert (tmp_path / "ca.pem").read_bytes() == ca_before
    assert second.cert_path.read_bytes() != cert_before
    assert "cloud.test" in sans(second.cert_path).get_values_for_type(x509.DNSName)
    ensure_pki(tmp_path, "10.1.2.3")
    assert ipaddress.ip_address("10.1.2.3") in sans(second.cert_path).get_values_for_type(
        x509.IPAddress
    )
    assert first.signing_key.public_key() == second.signing_key.public_key()


def test_server_cert_of_a_replaced_ca_is_renewed(tmp_path: Path) -> None:
    ensure_pki(tmp_path, "127.0.0.1")
    (tmp_path / "ca.pem").unlink()
    (tmp_path / "ca.key.pem").unlink()
    pki = ensure_pki(tmp_path, "127.0.0.1")
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    x509.load_pem_x509_certificate(pki.cert_path.read_bytes()).verify_directly_issued_by(ca)


def test_ssl_context_loads_and_client_trusts_ca(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, "127.0.0.1")
    pki.ssl_context()
    client = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    assert client.cert_store_stats()["x509_ca"] == 1


def test_key_id_is_sha256_of_raw_public_key(tmp_path: Path) -> None:
    key = ensure_pki(tmp_path, "127.0.0.1").signing_key.public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key_id(key) == hashlib.sha256(raw).hexdigest()[:16]
    pem = (tmp_path / "token-signing.pub.pem").read_bytes()
    assert serialization.load_pem_public_key(pem) == key
