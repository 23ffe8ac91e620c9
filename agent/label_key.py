"""K, the key derived from the label password (docs/design.md §2.12): derived once (scrypt
is slow on purpose) and kept in the encrypted state with a stamp of the password file, so
that a changed password file is derived again. The poll signs with it; a token that comes
outside the poll must be sealed under it (§2.9)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from agent import identity
from agent.config import Config
from agent.provisioning.wire import derive_key
from agent.token_store import DeviceRecord, PasswordStamp


def stamp_of(config: Config) -> PasswordStamp | None:
    path = Path(config.device.password_file)
    return PasswordStamp.of(path) if path.exists() else None


def cached(record: DeviceRecord, stamp: PasswordStamp | None) -> bytes | None:
    """The kept K while the password file has not changed (or is gone: K outlives it)."""
    key = record.provisioning_key()
    if key is not None and (stamp is None or stamp == record.key_stamp):
        return key
    return None


def derive(config: Config, device_id: str) -> bytes:
    """K from the password file; ConfigError says what is wrong with the file."""
    return derive_key(identity.read_password(config), device_id)


def kept(key: bytes, stamp: PasswordStamp | None) -> Callable[[DeviceRecord], DeviceRecord]:
    """The change that keeps K (and the stamp it was derived under) in the record."""
    encoded = base64.b64encode(key).decode()
    return lambda r: replace(r, key=encoded, key_stamp=stamp)
