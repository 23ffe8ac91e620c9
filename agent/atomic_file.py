"""Crash-safe file replacement: write to a temp file, fsync, rename, fsync the directory.

After a power cut the file holds either the old bytes or the new ones, never a mix. The
temp file comes from mkstemp (O_CREAT|O_EXCL, a random name, 0600): nothing planted in
the directory is ever written through, and the rename replaces a planted link itself
instead of following it. A file root writes into another user's directory goes to that
user (state_dir.adopt).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from agent import state_dir
from agent.errors import StateError


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    try:
        replace_file(path, data, mode)
    except OSError as exc:
        raise StateError(_explain(exc, path)) from None


def replace_file(path: Path, data: bytes, mode: int, *, adopt: bool = True) -> None:
    """The mechanism under `write_atomic`, raising the OSError (its temp file removed) for
    the caller to explain in its own words. `adopt`: a file root writes into another
    user's directory goes to that user; without it, owner and group are the writer's."""
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as tmp:
            os.fchmod(tmp.fileno(), mode)
            if adopt:
                state_dir.adopt(tmp.fileno(), directory)
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    fsync_dir(directory)


def remove_stale_temp_files(path: Path) -> int:
    """Delete temp files left by writes of `path` that were killed before their rename.

    Only call this while holding the lock every writer of `path` takes: then no write is
    in flight and every such file is garbage. Returns how many were removed.
    """
    removed = 0
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
            removed += 1
    return removed


def fsync_dir(directory: Path) -> None:
    """Make a rename durable: the directory entry itself must reach the disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _explain(exc: OSError, path: Path) -> str:
    if exc.errno == errno.ENOSPC:
        hint = f"no space left on the device holding {path.parent}: free some space"
    elif exc.errno == errno.EROFS:
        hint = f"{path.parent} is on a read-only file system: mount it read-write"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        hint = f"no permission to write in {path.parent}: run as the camagent user or root"
    else:
        hint = exc.strerror or str(exc)
    return f"cannot save {path}: {hint}; the previous contents are kept"
