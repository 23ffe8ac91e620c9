"""`camagent finder …` argument handling and the scan command's output, in-process."""

from __future__ import annotations

import argparse
import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.finder.cli import _device_password
from agent.finder.errors import FinderError


def test_scan_with_nothing_found_exits_0_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    # A name nobody announces: whatever else is on this host's LAN, the table or the
    # "nothing" message is printed and the exit code is 0.
    assert main(["finder", "scan", "--timeout", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "No camagent device answered within" in out or "found in" in out


def test_scan_json_is_a_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["finder", "scan", "--json", "--timeout", "0.3"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), list)


@pytest.mark.parametrize(
    "argv",
    [
        ["finder", "push", "dev"],  # neither --token nor --profile
        ["finder", "push", "dev", "--token", "t", "--profile", "p"],
        ["finder", "scan", "--timeout", "-1"],
        ["finder", "scan", "--timeout", "soon"],
        ["finder", "wifi", "dev"],  # no --ssid
        ["finder", "wifi", "dev", "--ssid", "x", "--security", "WPA4"],
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2


def test_wpa_without_password_is_refused_before_any_network(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["finder", "wifi", "10.255.255.1:9", "--ssid", "x", "--security", "WPA"]
    assert main(argv) == 1
    assert "needs --password" in capsys.readouterr().err


def test_unreachable_device_is_reported_before_the_password_is_asked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("never-read\n"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert main(["finder", "reset", "127.0.0.1:9", "--password-stdin"]) == 1
    assert "cannot reach the device at 127.0.0.1:9" in capsys.readouterr().err
    assert not (tmp_path / "camagent" / "known_devices.json").exists()


def test_empty_device_password_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    with pytest.raises(FinderError, match="no device password given"):
        _device_password(argparse.Namespace(password_stdin=True), "dev")
    monkeypatch.setattr("sys.stdin", io.StringIO("pw with spaces \n"))
    assert _device_password(argparse.Namespace(password_stdin=True), "dev") == "pw with spaces "


def _scan_stderr(on_tty: bool) -> str:
    """stderr of a real `camagent finder scan`, attached to a pseudo-terminal or a pipe."""
    root = Path(__file__).resolve().parents[3]
    argv = [sys.executable, "-m", "agent", "finder", "scan", "--timeout", "0.6"]
    if not on_tty:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=root, timeout=60)
        return done.stderr
    controller, terminal = pty.openpty()
    try:
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=terminal, cwd=root, timeout=60)
        os.close(terminal)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the terminal side is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", "replace")
    finally:
        os.close(controller)


def test_progress_line_on_a_terminal_only() -> None:
    assert "Scanning the LAN for camagent devices" in _scan_stderr(on_tty=True)
    assert _scan_stderr(on_tty=False) == ""
