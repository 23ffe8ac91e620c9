"""One daemon per state directory: an flock on the directory itself, held for the
daemon's life.

The kernel drops the lock when the process ends, however it ends, so there is no stale
lock to clean up. The directory, not a file in it, is locked so that a daemon starts on a
read-only state directory too (it runs on its in-memory state then). `daemon.pid` holds
the holder's pid, best effort, for the message a second daemon (or the CLI) shows. The
CLI's offline writes take the same lock for their duration; while a daemon holds it, they
go through the daemon instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from agent import state_dir as state_dir_check
from agent.errors import CamagentError, StateError

PID_FILE = "daemon.pid"


class DaemonRunning(CamagentError):
    """Another process holds the state directory."""

    def __init__(self, pid: int | None, state_dir: Path) -> None:
        who = f"pid {pid}" if pid else "pid unknown"
        super().__init__(f"another daemon ({who}) is using {state_dir}")
        self.pid = pid


class InstanceLock:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.pid_path = state_dir / PID_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock now or raise DaemonRunning; never waits."""
        # Whose directory it is comes first: "belongs to root, but camagent runs as …"
        # says more than the EACCES of opening it.
        state_dir_check.ensure(self.state_dir)
        try:
            fd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise StateError(
                f"cannot open the state directory {self.state_dir}: {exc.strerror or exc} "
                "(run as the user that owns it)"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DaemonRunning(self._read_pid(), self.state_dir) from None
        except OSError as exc:
            os.close(fd)
            raise StateError(f"cannot lock {self.state_dir}: {exc.strerror or exc}") from None
        self._fd = fd
        self._write_pid()

    def _write_pid(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.pid_path, flags, 0o644)
        except OSError:
            return  # read-only state: the message says "pid unknown"
        try:
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass
        finally:
            os.close(fd)

    def _read_pid(self) -> int | None:
        try:
            fd = os.open(self.pid_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            text = os.read(fd, 32).decode("ascii", "replace").strip()
        except OSError:
            return None
        finally:
            os.close(fd)
        return int(text) if text.isdigit() else None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing drops the flock


@contextlib.contextmanager
def held(state_dir: Path) -> Iterator[InstanceLock]:
    """The lock for a short job (the CLI's offline writes); DaemonRunning if taken."""
    lock = InstanceLock(state_dir)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()
