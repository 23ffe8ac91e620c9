"""The state directory must belong to the user camagent runs as, and to nobody else.

Files in it hold the token, the provisioning key and the key that seals them. If another
local user may write in the directory, they can plant a symbolic link where camagent is
about to create a file, and a root `camagent reset` then writes through it into any file
of the system. So a directory writable by group or others is refused, and so is one owned
by another user (root may use the directory of the user the service runs as: that is
`sudo camagent …` on a unit with `User=camagent`). Files in it are opened with O_NOFOLLOW
and created with O_EXCL (atomic_file, token_store) as a second line of defence.
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from agent.errors import StateError


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def ensure(path: Path, *, create: bool = True) -> bool:
    """Check `path` (making it, mode 0700, when missing and `create`); False when it is
    missing and not made. Raises StateError with what to do when it is not safe."""
    try:
        if create:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise StateError(
            f"cannot use the state directory {path}: {exc.strerror}; it must be a directory "
            f"owned by {_user(os.geteuid())} (the user camagent runs as), mode 0700"
        ) from None
    check(path, st)
    return True


def check(path: Path, st: os.stat_result) -> None:
    euid = os.geteuid()
    me = _user(euid)
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISDIR(st.st_mode):
        raise StateError(f"the state directory {path} is not a directory")
    if st.st_uid != euid and euid != 0:
        raise StateError(
            f"the state directory {path} belongs to {_user(st.st_uid)}, but camagent runs as "
            f"{me}: run it as {_user(st.st_uid)}, or give the directory to {me} "
            f"(chown {me} {path}); nothing was changed"
        )
    if mode & 0o022:
        raise StateError(
            f"the state directory {path} is writable by group or others (mode {mode:04o}), "
            f"so another user could plant files in it: it must be owned by "
            f"{_user(st.st_uid) if euid == 0 else me} and writable by it alone "
            f"(chmod 700 {path}); nothing was changed"
        )


def adopt(fd: int, directory: Path) -> None:
    """Give a file root has just created in another user's directory to that user.

    `sudo camagent reset` on the directory of a service running as `camagent` would
    otherwise leave root-owned 0600 files the service cannot read any more.
    """
    if os.geteuid() != 0:
        return
    st = directory.stat()
    if st.st_uid != 0:
        os.fchown(fd, st.st_uid, st.st_gid)
