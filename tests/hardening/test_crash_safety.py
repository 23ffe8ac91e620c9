"""Crash safety of the device state (issue 10): SIGKILL mid-write, disk full, read-only.

Real processes throughout: the CLI and the daemon are subprocesses killed with SIGKILL at
random moments of a write (the harness is benchmarks/crash_bench.py, which runs 1,000 of
these); the full disk is a 64 KiB tmpfs and the read-only directory a read-only bind
mount (both need root, as the test machine and CI run).
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import control_socket
from agent.errors import CamagentError
from agent.token_store import STATE_FILE
from benchmarks.crash_bench import Daemon, Device, Harness, Outcome, Tally
from cloud_mock import sandbox
from tests.eventually import eventually

pytestmark = pytest.mark.e2e

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sandbox.Cloud]:
    c = sandbox.start_cloud(tmp_path_factory.mktemp("crash-cloud"))
    yield c
    c.stop()


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    seed = random.randrange(2**32)
    print(f"crash harness seed {seed}")  # shown on failure, to replay the same kill times
    return Harness(tmp_path, random.Random(seed))


def assert_survived(tally: Tally, iterations: int) -> None:
    assert tally.iterations == iterations
    assert tally.corrupt == 0, tally.problems
    assert tally.old + tally.new == iterations


# -- SIGKILL at random moments of each kind of write -------------------------------------


@pytest.mark.parametrize(
    ("kind", "iterations", "restarts"),
    [
        ("cli_offline", 8, 1),
        ("cli_daemon", 8, 8),
        ("lan_push", 6, 6),
        ("reload", 6, 6),
        ("store_loop", 12, 0),
    ],
)
def test_killed_writes_leave_the_old_or_the_new_token(
    harness: Harness, kind: str, iterations: int, restarts: int
) -> None:
    tally = harness.run(kind, iterations)
    assert_survived(tally, iterations)
    assert tally.restarts == restarts  # every killed daemon answered again


def test_a_daemon_killed_while_saving_a_polled_token_keeps_old_or_new(
    harness: Harness, cloud: sandbox.Cloud
) -> None:
    harness.cloud = cloud
    tally = harness.run("poll", 6)
    assert_survived(tally, 6)
    assert tally.restarts == 6


def test_the_check_would_see_a_torn_or_foreign_state(harness: Harness) -> None:
    """The harness's verdict is not vacuous: a half-written file or a third token fail it."""
    device = harness.device("torn")
    old, new, other = device.mint(), device.mint(), device.mint()
    device.set_token_directly(old)
    assert device.classify(old, new)[0] is Outcome.OLD
    device.set_token_directly(other)
    assert device.classify(old, new)[0] is Outcome.CORRUPT
    blob = (device.state_dir / STATE_FILE).read_bytes()
    (device.state_dir / STATE_FILE).write_bytes(blob[: len(blob) // 2])
    outcome, detail = device.classify(old, new)
    assert outcome is Outcome.CORRUPT
    assert "not a camagent state file" in detail or "does not open" in detail


# -- a full disk and a read-only state directory -----------------------------------------


def _run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextlib.contextmanager
def mounted(*argv: str, target: Path) -> Iterator[None]:
    subprocess.run(["mount", *argv, str(target)], check=True, capture_output=True)
    try:
        yield
    finally:
        result = subprocess.run(["umount", str(target)], capture_output=True, check=False)
        if result.returncode != 0:  # still busy (a daemon left behind): detach it anyway
            subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


def fill(directory: Path) -> None:
    """Write zeros until the file system holding `directory` refuses."""
    with (directory / "filler").open("wb", buffering=0) as out:
        while True:
            try:
                out.write(b"\0" * 4096)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return


@pytest.fixture
def device_with_token(harness: Harness) -> tuple[Device, str]:
    device = harness.device("limits")
    token = device.mint()
    device.set_token_directly(token)
    return device, token


@contextlib.contextmanager
def full_disk(device: Device) -> Iterator[None]:
    """The state directory moved onto a 64 KiB tmpfs that is then filled up."""
    saved = {p.name: p.read_bytes() for p in device.state_dir.iterdir()}
    with mounted("-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", target=device.state_dir):
        for name, data in saved.items():
            (device.state_dir / name).write_bytes(data)
            (device.state_dir / name).chmod(0o600)
        fill(device.state_dir)
        yield


@contextlib.contextmanager
def read_only(device: Device) -> Iterator[None]:
    directory = device.state_dir
    with mounted("--bind", str(directory), target=directory):
        subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(directory)], check=True, capture_output=True
        )
        yield


LIMITS = [
    pytest.param(full_disk, "no space left", id="disk-full"),
    pytest.param(read_only, "read-only file system", id="read-only"),
]


@needs_root
@pytest.mark.parametrize(("limit", "message"), LIMITS)
def test_cli_refuses_with_a_clear_error_and_keeps_the_old_token(
    device_with_token: tuple[Device, str], limit: object, message: str
) -> None:
    device, old = device_with_token
    with limit(device):  # type: ignore[operator]
        # Sealed for the camera's label, as a camera takes a token by CLI (§2.9).
        sealed = device.seal(device.mint())
        result = _run("--config", str(device.config_path), "token", "set", stdin=sealed)
        assert result.returncode == 1
        assert message in result.stderr.lower(), result.stderr
        assert "camagent:" in result.stderr
        assert "Traceback" not in result.stderr
        assert device.store().load().token == old
        status = _run("--config", str(device.config_path), "status", "--json")
        assert status.returncode == 0, status.stderr  # reading still works
        assert device.store().load().token == old


@needs_root
@pytest.mark.parametrize(("limit", "message"), LIMITS)
def test_a_running_daemon_logs_the_error_keeps_running_and_the_old_state(
    device_with_token: tuple[Device, str], limit: object, message: str
) -> None:
    device, old = device_with_token
    daemon = Daemon(device)
    daemon.start()
    try:
        with limit(device):  # type: ignore[operator]
            new = device.mint()
            sealed = {"token": device.seal(new)}  # as a camera takes it outside its poll
            # The person setting it is told it is not saved (the CLI exits 1) ...
            with pytest.raises(CamagentError, match="could not be saved") as refused:
                control_socket.request(device.socket, "token_set", sealed, timeout=10)
            assert message in str(refused.value).lower()
            log = eventually(
                lambda: daemon.tail().lower(),
                until=lambda log: message in log,
                what=f"{message!r} in the daemon's log",
            )
            assert str(device.state_dir).lower() in log
            assert daemon.answers()  # still running, on its in-memory state
            assert daemon.process is not None
            assert daemon.process.poll() is None
            assert device.store().load().token == old
        # Space back: the next write goes through again.
        control_socket.request(device.socket, "token_set", sealed, timeout=10)
        assert device.store().load().token == new
    finally:
        daemon.stop()


@needs_root
def test_a_daemon_starts_on_a_read_only_state_directory(
    device_with_token: tuple[Device, str],
) -> None:
    device, old = device_with_token
    with read_only(device):
        daemon = Daemon(device)
        daemon.start()  # raises unless it answers on its socket
        try:
            assert daemon.status()["token"]["present"] is True
        finally:
            daemon.stop()
        assert device.store().load().token == old
