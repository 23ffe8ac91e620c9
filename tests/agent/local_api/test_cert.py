"""The certificate: made once, kept 0600, reused; its fp is what openssl reports."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from agent.local_api import cert

DEVICE = "aa:bb:cc:dd:ee:ff"


def test_made_once_then_reused(tmp_path: Path) -> None:
    first = cert.ensure(tmp_path, DEVICE)
    for path in (first.cert_path, first.key_path):
        assert path.stat().st_mode & 0o777 == 0o600
    pem = first.cert_path.read_bytes()
    again = cert.ensure(tmp_path, DEVICE)
    assert again.fp == first.fp
    assert first.cert_path.read_bytes() == pem


def test_fp_is_the_sha256_of_the_der_and_matches_openssl(tmp_path: Path) -> None:
    made = cert.ensure(tmp_path, DEVICE)
    loaded = x509.load_pem_x509_certificate(made.cert_path.read_bytes())
    assert made.fp == loaded.fingerprint(hashes.SHA256()).hex()
    assert len(made.fp) == 64
    assert made.fp == made.fp.lower()
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to check the fingerprint independently")
    out = subprocess.run(
        ["openssl", "x509", "-in", str(made.cert_path), "-noout", "-fingerprint", "-sha256"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip().split("=", 1)[1].replace(":", "").lower() == made.fp


def test_p256_key_and_sans(tmp_path: Path) -> None:
    made = cert.ensure(tmp_path, DEVICE)
    loaded = x509.load_pem_x509_certificate(made.cert_path.read_bytes())
    public = loaded.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    names = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = names.get_values_for_type(x509.DNSName)
    assert "aa-bb-cc-dd-ee-ff" in dns
    assert "camagent" in dns


def test_a_broken_pair_is_replaced(tmp_path: Path) -> None:
    first = cert.ensure(tmp_path, DEVICE)
    first.key_path.write_bytes(cert.make(DEVICE)[1])  # a key of another certificate
    second = cert.ensure(tmp_path, DEVICE)
    assert second.fp != first.fp
    (tmp_path / cert.CERT_FILE).write_text("garbage")
    assert len(cert.ensure(tmp_path, DEVICE).fp) == 64


def test_dns_names_are_labels() -> None:
    assert cert.dns_names("AA:BB:cc:dd:ee:ff", "My Cam_1") == [
        "aa-bb-cc-dd-ee-ff",
        "my-cam-1",
        "camagent",
    ]
