"""systemd's notify protocol: READY=1, WATCHDOG=1, STATUS=…, STOPPING=1.

systemd-python's `daemon.notify` is used when it is installed; otherwise the datagram is
sent by hand (it is one `sendto` on a Unix socket), so small images can leave it out.
"""

from __future__ import annotations

import os
import socket


def _notify_by_socket(message: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), address)
    except OSError:
        return False
    return True


def _notify_by_libsystemd(message: str) -> bool | None:
    try:
        from systemd import daemon
    except ImportError:
        return None
    try:
        return bool(daemon.notify(message))
    except OSError:  # the socket went away (systemd restarting, a test tearing down)
        return False


def notify(message: str, *, use_libsystemd: bool = True) -> bool:
    """Send one notification; False when not under systemd (or the socket is gone)."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return False
    if use_libsystemd:
        sent = _notify_by_libsystemd(message)
        if sent is not None:
            return sent
    return _notify_by_socket(message)


def watchdog_interval() -> float | None:
    """Half the watchdog period systemd asked for, in seconds; None when there is none."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        period = int(usec) / 1_000_000
    except ValueError:
        return None
    return period / 2 if period > 0 else None
