"""Each command family under a closed stdout (`>&-`), a reader that goes away
(`| head -1`) and no input (`</dev/null`): one quiet line at most, the README's exit codes.

Real processes through a shell; each command is an argument vector ("$@")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

CAMAGENT = [sys.executable, "-m", "agent"]
NOISE = ("Traceback", "unexpected error", "Broken pipe", "BrokenPipe", "Exception ignored")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    pub = tmp_path / "signing.pub.pem"
    pub.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (tmp_path / "password").write_text("label-password-123\n")
    (tmp_path / "agent.toml").write_text(
        f"""
[device]
id = "aa-bb-cc-dd-ee-ff"
password_file = "{tmp_path / "password"}"
[cloud]
url = "https://127.0.0.1:9"
trust_keys = ["{pub}"]
[paths]
state_dir = "{tmp_path / "state"}"
run_dir = "{tmp_path / "run"}"
"""
    )
    (tmp_path / "pw.txt").write_text("label-password-123\n")
    return tmp_path


def _env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMAGENT")}
    env.update(HOME=str(workdir / "home"), XDG_CONFIG_HOME=str(workdir / "home" / ".config"))
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


def _shell(script: str, argv: list[str], workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script, "bash", *argv],
        cwd=workdir,
        env=_env(workdir),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


FAMILIES = {
    "status": ["--config", "agent.toml", "status"],
    "doctor": ["--config", "agent.toml", "doctor"],
    "qr": ["qr", "make", "url", "https://example.com"],
    "label": ["label", "make", "--device-id", "cam-0042", "--password-file", "pw.txt"],
}


@pytest.mark.parametrize("family", FAMILIES)
def test_a_closed_stdout_and_a_broken_pipe_end_quietly(family: str, workdir: Path) -> None:
    argv = [*CAMAGENT, *FAMILIES[family]]
    normal = _shell('"$@" >/dev/null', argv, workdir)
    closed = _shell('"$@" >&-', argv, workdir)
    piped = _shell('"$@" | head -1 >/dev/null; exit "${PIPESTATUS[0]}"', argv, workdir)
    for result in (normal, closed, piped):
        assert not any(word in result.stderr for word in NOISE), result.stderr
    # Output with nowhere to go is a failure, said by the exit code alone.
    assert closed.returncode == (normal.returncode or 1)
    assert closed.stderr == normal.stderr
    # A reader that left before the end: the same code; one that read it all: the normal one.
    assert piped.returncode in {normal.returncode, closed.returncode}


def test_a_password_prompt_without_input_is_one_line_of_our_own(workdir: Path) -> None:
    add = [*CAMAGENT, "cloud", "servers", "add", "lab", "https://127.0.0.1:9", "--login", "bob"]
    assert _shell('"$@"', add, workdir).returncode == 0
    result = _shell('"$@" </dev/null', [*CAMAGENT, "cloud", "login"], workdir)
    assert result.returncode == 1
    assert "echoed" not in result.stderr
    assert not any(word in result.stderr for word in NOISE), result.stderr
    assert result.stderr.splitlines()[-1] == (
        "camagent: no password given: standard input ended (it is not a terminal)"
    )


def test_qr_scan_of_a_bad_source_says_one_line_without_opencv_noise(workdir: Path) -> None:
    (workdir / "bad.mp4").write_bytes(b"not a video\n")
    for source in ("bad.mp4", "rtsp://127.0.0.1:9/x"):
        result = _shell('"$@"', [*CAMAGENT, "qr", "scan", source], workdir)
        assert result.returncode == 1
        said = result.stdout + result.stderr  # the source's own line is in its report
        assert len(said.splitlines()) == 1, said
        assert "WARN" not in said
        assert "cannot open" in said
    closed = _shell('"$@" >&-', [*CAMAGENT, "qr", "scan", "--json", "bad.mp4"], workdir)
    assert closed.returncode == 1
    assert not any(word in closed.stderr for word in NOISE), closed.stderr
