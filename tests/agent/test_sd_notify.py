"""systemd notify protocol over a real AF_UNIX datagram socket (path and abstract)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import sd_notify


@pytest.fixture
def receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    with sock:
        yield sock


@pytest.fixture
def abstract_receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    name = f"camagent-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    with sock:
        yield sock


def has_libsystemd() -> bool:
    try:
        from systemd import daemon  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("use_libsystemd", [False, True])
def test_ready_reaches_a_path_socket(receiver: socket.socket, use_libsystemd: bool) -> None:
    assert sd_notify.notify("READY=1", use_libsystemd=use_libsystemd) is True
    assert receiver.recv(4096) == b"READY=1"


@pytest.mark.parametrize("use_libsystemd", [False, True])
def test_status_reaches_an_abstract_socket(
    abstract_receiver: socket.socket, use_libsystemd: bool
) -> None:
    message = "STATUS=provisioning (aa:bb:cc:dd:ee:ff) — 3 requests"
    assert sd_notify.notify(message, use_libsystemd=use_libsystemd) is True
    assert abstract_receiver.recv(4096) == message.encode()


def test_several_messages_arrive_in_order(receiver: socket.socket) -> None:
    for message in ("READY=1", "WATCHDOG=1", "STOPPING=1"):
        assert sd_notify.notify(message, use_libsystemd=False)
    assert [receiver.recv(4096) for _ in range(3)] == [b"READY=1", b"WATCHDOG=1", b"STOPPING=1"]


def test_libsystemd_path_falls_back_to_the_socket_when_absent(
    receiver: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sd_notify, "_notify_by_libsystemd", lambda message: None)
    assert sd_notify.notify("READY=1") is True
    assert receiver.recv(4096) == b"READY=1"


@pytest.mark.parametrize("use_libsystemd", [False, True])
def test_without_notify_socket_nothing_is_sent(
    monkeypatch: pytest.MonkeyPatch, use_libsystemd: bool
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify.notify("READY=1", use_libsystemd=use_libsystemd) is False
    monkeypatch.setenv("NOTIFY_SOCKET", "")
    assert sd_notify.notify("READY=1", use_libsystemd=use_libsystemd) is False


def test_a_vanished_socket_is_false_by_hand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert sd_notify.notify("WATCHDOG=1", use_libsystemd=False) is False


@pytest.mark.skipif(not has_libsystemd(), reason="systemd-python is not installed")
def test_a_vanished_socket_is_false_with_libsystemd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert sd_notify.notify("WATCHDOG=1") is False


# -- watchdog ----------------------------------------------------------------------------


def test_watchdog_interval_is_half_the_period(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert sd_notify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sd_notify.watchdog_interval() == 15.0


@pytest.mark.parametrize(
    ("usec", "pid"),
    [
        (None, None),
        ("", None),
        ("abc", None),
        ("0", None),
        ("-5", None),
        ("30000000", "1"),  # meant for another process
    ],
)
def test_no_watchdog(monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    if pid == "1" and os.getpid() == 1:
        pytest.skip("the test process is PID 1")
    assert sd_notify.watchdog_interval() is None
