"""The daemon as a process: sd_notify on a real socket, watchdog, signals, damaged state."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_mock import sandbox
from tests.e2e.conftest import AddCamera, Fleet, RunCli
from tests.eventually import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[Path, socket.socket]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    yield path, sock
    sock.close()


def _messages(sock: socket.socket, until: str, timeout: float = 10) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(sock.recv(4096).decode())
        if until in seen[-1]:
            return seen
    raise AssertionError(f"{until!r} not received; got {seen}")


def test_ready_watchdog_and_stopping_reach_the_notify_socket(
    fleet: Fleet, notify_socket: tuple[Path, socket.socket]
) -> None:
    path, sock = notify_socket
    config, device_id, _ = fleet.configure()
    agent = fleet.start(config, env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})
    ready = _messages(sock, "READY=1")
    assert any("STATUS=" in m and device_id in m for m in ready)
    # Pings come every half WATCHDOG_USEC (0.2 s): in 2 s, about ten. Count rather than
    # time them, so that a busy machine cannot make the test flaky.
    sock.settimeout(0.5)
    pings, until = 0, time.monotonic() + 2.0
    while time.monotonic() < until:
        with contextlib.suppress(TimeoutError):
            pings += sock.recv(4096).decode().count("WATCHDOG=1")
    sock.settimeout(10)
    assert 5 <= pings <= 14, pings
    assert agent.stop() == 0
    assert any("STOPPING=1" in m for m in _messages(sock, "STOPPING=1"))


def test_sigterm_exits_cleanly_and_removes_the_socket(fleet: Fleet) -> None:
    config, _, _ = fleet.configure()
    agent = fleet.start(config)
    assert agent.stop() == 0
    assert not agent.socket.exists()
    assert "Traceback" not in agent.log_text()


def test_sighup_applies_new_intervals_and_survives_a_broken_file(fleet: Fleet) -> None:
    config, _, _ = fleet.configure(fast_interval=30.0, long_poll=0.0)
    agent = fleet.start(config)
    original = config.read_text()
    config.write_text(original.replace("fast_interval = 30.0", "fast_interval = 1.5"))
    agent.process.send_signal(signal.SIGHUP)
    eventually(agent.log_text, until=lambda log: "configuration reloaded" in log, what="the reload")
    config.write_text("[provisioning\nbroken")
    agent.process.send_signal(signal.SIGHUP)
    eventually(agent.log_text, until=lambda log: "reload refused" in log, what="the refusal")
    assert agent.process.poll() is None
    # The valid reload took: polls now come 1.5 s apart instead of 30 s.
    eventually(
        lambda: agent.status()["provisioning"]["attempts"],
        until=lambda attempts: attempts >= 2,
        timeout=5,
        interval=0.1,
        what="a second poll 1.5 s after the first",
    )


def test_password_file_is_only_needed_once(fleet: Fleet, add_camera: AddCamera) -> None:
    config, device_id, password = fleet.configure(fast_interval=0.5, long_poll=0.0)
    agent = fleet.start(config)
    eventually(
        agent.log_text, until=lambda log: "provisioning key derived" in log, what="K derived"
    )
    agent.stop()
    (config.parent / "password").unlink()  # e.g. a label file on a tmpfs that is gone
    add_camera(device_id, password)
    agent = fleet.start(config)
    agent.wait_for_state("connected")


def test_state_is_encrypted_private_and_an_unreadable_one_is_set_aside(
    fleet: Fleet, add_camera: AddCamera
) -> None:
    config, device_id, password = fleet.configure()
    camera = add_camera(device_id, password)
    agent = fleet.start(config)
    agent.wait_for_state("connected")
    agent.stop()
    state = config.parent / "state" / "state.bin"
    assert state.stat().st_mode & 0o777 == 0o600
    assert camera["token"].split(".")[0].encode() not in state.read_bytes()
    assert device_id.encode() not in state.read_bytes()

    state.write_bytes(state.read_bytes()[:-5] + b"XXXXX")  # bit rot
    agent = fleet.start(config)
    agent.wait_for_state("connected")  # provisioned again from the cloud
    assert list(state.parent.glob("state.bin.unreadable-*"))
    assert "starting with a fresh state" in agent.log_text()


def test_daemon_refuses_to_start_on_an_unwritable_run_dir(
    fleet: Fleet, tmp_path: Path, run_cli: RunCli
) -> None:
    config, _, _ = fleet.configure()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    config.write_text(
        re.sub(r"(?m)^run_dir = .*$", f'run_dir = "{blocker}/run"', config.read_text())
    )
    result = run_cli(config, "run")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert str(blocker) in result.stderr


def test_demo_once_connects_and_exits_zero(run_cli: RunCli) -> None:
    result = run_cli(None, "demo", "--once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CONNECTED" in result.stdout
    assert "Done (--once)." in result.stdout


def test_full_demo_tells_the_whole_story_then_stops_on_ctrl_c(tmp_path: Path) -> None:
    import subprocess
    import sys

    # stderr to a file: a pipe nobody reads would fill and stop the demo mid-write.
    with (tmp_path / "stderr").open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "agent", "demo"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    lines = []
    with process:  # closes its stdout once it has exited
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        for line in process.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line or time.monotonic() > deadline:
                break
        process.send_signal(signal.SIGINT)
        try:
            assert process.wait(120) == 0, (tmp_path / "stderr").read_text()[-2000:]
        finally:
            process.kill()  # so that leaving `with` cannot wait for ever
    story = "".join(lines)
    for step in (
        "poll 1",
        "adds the camera",
        "CONNECTED",
        "presses reset",
        "provisioned again",
        "revokes its token",
        "provisioning again",
    ):
        assert step in story, story
    assert not any(os.path.exists(p) for p in _workdirs(story))


def _workdirs(story: str) -> list[str]:
    return [w.rstrip(")") for w in story.split() if "camagent-demo-" in w and w.startswith("/")]


def test_sandbox_surfaces_a_mock_that_cannot_start(tmp_path: Path) -> None:
    bad = tmp_path / "fixtures.json"
    bad.write_text("{not json")
    with pytest.raises(sandbox.MockCloudError, match=str(bad)):
        sandbox.start_cloud(tmp_path / "cloud", fixtures=bad)
