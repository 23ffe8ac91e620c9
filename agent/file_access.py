"""Saying who may open a file, when the operating system said we may not.

A permission problem is fixed by running as the right user or changing an owner or mode,
never by resetting anything: the message names the path, its owner and its mode.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
from pathlib import Path


def owner_and_mode(path: Path) -> tuple[Path, str, str] | None:
    """(path, owner name, octal mode) of `path`, else of the nearest parent we can stat —
    the directory that refused us, when the file itself cannot be reached."""
    for candidate in (path, *path.parents):
        try:
            info = os.stat(candidate)
        except OSError:
            continue
        try:
            owner = pwd.getpwuid(info.st_uid).pw_name
        except KeyError:
            owner = f"uid {info.st_uid}"
        return candidate, owner, f"{stat.S_IMODE(info.st_mode):04o}"
    return None


def permission_message(exc: OSError, path: Path | str | None = None) -> str:
    """One line for EACCES/EPERM/EROFS on `path` (default: the path the error names)."""
    detail, fix = permission_parts(exc, path)
    return f"{detail}: {fix}"


def permission_parts(exc: OSError, path: Path | str | None = None) -> tuple[str, str]:
    """(what is refused, with the owner and mode; what to do about it)."""
    where = Path(str(path if path is not None else exc.filename or "?"))
    if exc.errno == errno.EROFS:
        return f"{where}: read-only file system", "mount it read-write (nothing was changed)"
    try:
        me = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        me = f"uid {os.geteuid()}"
    found = owner_and_mode(where)
    if found is None:
        return f"{where}: permission denied (running as {me})", "run as the owner of that path"
    holder, owner, mode = found
    what = "" if holder == where else f"{holder}: "
    return (
        f"{where}: permission denied ({what}owner {owner}, mode {mode}; running as {me})",
        f"run as {owner} (e.g. with sudo) or give {me} access",
    )
