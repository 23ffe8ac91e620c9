"""One daemon per state directory, with real processes: a second `camagent run` exits 1 at
once and leaves the first one's socket alone; the CLI's offline writes never go under a
running daemon.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import control_socket, offline
from agent.config import load
from agent.errors import CamagentError
from agent.instance_lock import DaemonRunning, InstanceLock
from agent.token_store import DeviceRecord, TokenStore
from tests.eventually import eventually

DEVICE = "aa:bb:cc:dd:ee:ff"


@pytest.fixture
def config_path(tmp_path: Path) -> Iterator[Path]:
    run_dir = Path(tempfile.mkdtemp(prefix="cal", dir="/tmp"))  # a socket path fits
    password = tmp_path / "password"
    password.write_text("pw\n")
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
[device]
id = "{DEVICE}"
password_file = "{password}"
[cloud]
url = "https://127.0.0.1:9"
[provisioning]
fast_interval = 3600
[paths]
state_dir = "{tmp_path / "state"}"
run_dir = "{run_dir}"
[local_api]
enabled = false
"""
    )
    yield path
    shutil.rmtree(run_dir, ignore_errors=True)


def camagent(config_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "agent", "--config", str(config_path), *args]


def answers(socket_path: Path) -> bool:
    try:
        control_socket.request(socket_path, "status", timeout=2)
    except CamagentError:
        return False
    return True


@pytest.fixture
def first_daemon(config_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        camagent(config_path, "run"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    socket_path = load(config_path).control_socket
    try:
        eventually(
            lambda: answers(socket_path) or process.poll() is not None,
            timeout=20,
            interval=0.02,
            what="the first daemon answering (or exiting)",
        )
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        yield process
    finally:
        process.terminate()
        process.communicate(timeout=10)  # reaps it and closes its stderr pipe


def test_a_second_daemon_exits_1_at_once_and_leaves_the_first_alone(
    config_path: Path, first_daemon: subprocess.Popen[bytes]
) -> None:
    config = load(config_path)
    started = time.monotonic()
    second = subprocess.run(
        camagent(config_path, "run"), capture_output=True, text=True, timeout=30, check=False
    )
    assert second.returncode == 1
    assert second.stderr.strip().splitlines()[-1] == (
        f"camagent: another daemon (pid {first_daemon.pid}) is using {config.state_dir}"
    )
    assert "Traceback" not in second.stderr
    assert time.monotonic() - started < 10  # "at once": no poll, no socket, no wait
    # The second one's exit did not take the first one's socket away.
    assert config.control_socket.exists()
    assert answers(config.control_socket)


def test_the_owner_removes_its_socket_when_it_stops(
    config_path: Path, first_daemon: subprocess.Popen[bytes]
) -> None:
    socket_path = load(config_path).control_socket
    first_daemon.terminate()
    assert first_daemon.wait(10) == 0
    assert not socket_path.exists()


def test_offline_reset_goes_through_the_daemon_holding_the_lock(
    config_path: Path, first_daemon: subprocess.Popen[bytes]
) -> None:
    config = load(config_path)
    offline.reset(config)  # through the control socket: the daemon forgets and polls again
    status = control_socket.request(config.control_socket, "status")
    assert status["state"] == "provisioning"
    assert status["daemon"] is True


def test_an_offline_write_under_a_lock_holder_that_does_not_answer_changes_nothing(
    config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load(config_path)
    store = TokenStore(config.state_dir)
    store.save(DeviceRecord(device_id=DEVICE, token="held.token"))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from agent.instance_lock import InstanceLock; "
            "InstanceLock(Path(sys.argv[1])).acquire(); print('held', flush=True); "
            "time.sleep(60)",
            str(config.state_dir),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"held\n"
        monkeypatch.setattr(offline, "SOCKET_WAIT_S", 0.3)
        with pytest.raises(CamagentError, match=f"another daemon \\(pid {holder.pid}\\)"):
            offline.reset(config)
        assert store.load().token == "held.token"  # nothing written under the holder
    finally:
        holder.kill()
        holder.communicate()  # reaps it and closes its stdout pipe
    offline.reset(config)  # the holder is gone: the lock is free again, no stale lock
    assert store.load().token == ""


def test_the_lock_is_per_directory_and_says_who_holds_it(tmp_path: Path) -> None:
    first = InstanceLock(tmp_path / "a")
    first.acquire()
    try:
        with pytest.raises(DaemonRunning) as info:
            InstanceLock(tmp_path / "a").acquire()
        assert info.value.pid == os.getpid()
        other = InstanceLock(tmp_path / "b")
        other.acquire()  # another state directory: another daemon may run
        other.release()
    finally:
        first.release()
    again = InstanceLock(tmp_path / "a")
    again.acquire()
    again.release()


def test_a_read_only_state_directory_can_still_be_locked(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o500)
    try:
        lock = InstanceLock(state)
        lock.acquire()  # the directory itself is locked: no file needs creating
        lock.release()
    finally:
        state.chmod(0o700)
