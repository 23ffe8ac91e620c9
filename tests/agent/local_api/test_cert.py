"""The certificate: made once, kept 0600, reused; its fp is what openssl reports."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
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


# -- made by a child process, as the daemon does -------------------------------------


def test_the_daemon_never_loads_x509_to_make_its_certificate(tmp_path: Path) -> None:
    """The point of the child: cryptography's X.509 code stays out of the daemon."""
    probe = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from agent.local_api import cert\n"
        f"made = asyncio.run(cert.ensure_in_child(Path({str(tmp_path)!r}), {DEVICE!r}))\n"
        "print(made.fp, 'cryptography.x509' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out[1] == "False"
    loaded = x509.load_pem_x509_certificate((tmp_path / cert.CERT_FILE).read_bytes())
    assert out[0] == loaded.fingerprint(hashes.SHA256()).hex()
    for name in (cert.CERT_FILE, cert.KEY_FILE):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600


async def test_a_kept_pair_is_reused_without_a_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = cert.ensure(tmp_path, DEVICE)

    async def no_child(*args: object, **kwargs: object) -> None:
        raise AssertionError("a child was started for a pair that is there")

    monkeypatch.setattr(asyncio, "create_subprocess_exec", no_child)
    assert (await cert.ensure_in_child(tmp_path, DEVICE)).fp == first.fp


async def test_a_broken_pair_is_replaced_by_the_child(tmp_path: Path) -> None:
    first = cert.ensure(tmp_path, DEVICE)
    (tmp_path / cert.CERT_FILE).write_text("garbage")
    again = await cert.ensure_in_child(tmp_path, DEVICE)
    assert len(again.fp) == 64
    assert again.fp != first.fp


async def test_a_failing_child_gives_its_reason(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(cert.CertificateError, match=r"could not make .*\(exit 1\): .+"):
        await cert.ensure_in_child(blocker / "state", DEVICE)


async def test_a_stuck_child_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cert, "MAKE_TIMEOUT_S", 0.5)
    monkeypatch.setattr(
        cert, "maker_argv", lambda *_: [sys.executable, "-c", "import time; time.sleep(60)"]
    )
    with pytest.raises(cert.CertificateError, match="took over"):
        await cert.ensure_in_child(tmp_path, DEVICE)


def test_the_child_refuses_wrong_arguments() -> None:
    assert cert.main([]) == 2
