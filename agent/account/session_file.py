"""The session token of a profile: `$XDG_CONFIG_HOME/camagent/sessions/NAME` (0600, its
directory 0700). It records the URL it was issued by, so a profile later pointed at
another server never sends it there."""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.account import profiles
from agent.account.errors import ProfileError
from agent.atomic_file import write_atomic


@dataclass(frozen=True)
class StoredSession:
    session: str
    session_id: str
    login: str
    url: str


def sessions_dir() -> Path:
    return profiles.config_dir() / "sessions"


def path_for(name: str) -> Path:
    # Plain names are the file name itself; anything that could escape the directory
    # (slashes, dots, odd characters) is percent-encoded.
    safe = urllib.parse.quote(name, safe="-_").replace(".", "%2E")
    return sessions_dir() / safe


def load(name: str) -> StoredSession | None:
    path = path_for(name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return StoredSession(
            str(data["session"]), str(data["session_id"]), str(data["login"]), str(data["url"])
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        # An unreadable token is as good as none: the user logs in again and it is replaced.
        return None


def save(name: str, stored: StoredSession) -> Path:
    directory = sessions_dir()
    profiles.make_private_dir(directory)
    try:
        directory.chmod(0o700)
    except OSError as error:
        raise ProfileError(f"cannot protect {directory}: {error.strerror}") from None
    path = path_for(name)
    write_atomic(path, json.dumps(asdict(stored)).encode(), mode=0o600)
    return path


def forget(name: str) -> bool:
    """Remove the stored session; whether there was one."""
    with contextlib.suppress(FileNotFoundError):
        path_for(name).unlink()
        return True
    return False
