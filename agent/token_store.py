"""The device's persistent state: token, provisioning key K, trusted keys — encrypted at rest.

One file, `state.bin`, replaced atomically (see atomic_file), mode 0600, sealed with
AES-GCM under a 256-bit state key. The state key comes from a systemd credential
(`$CREDENTIALS_DIRECTORY/state-key`, which systemd can bind to a TPM) when there is one,
else from `state.key` beside the state, made on first use. Daemon and CLI both change
the state, so every read-modify-write holds an exclusive `flock` on `state.lock`.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import state_dir as state_dir_check
from agent.atomic_file import fsync_dir, remove_stale_temp_files, write_atomic
from agent.errors import StateError

if TYPE_CHECKING:
    from agent.trust import VerifiedToken

STATE_FILE = "state.bin"
KEY_FILE = "state.key"
LOCK_FILE = "state.lock"
CREDENTIAL_NAME = "state-key"
MAGIC = b"CAMAGENT-STATE-1\n"
FORMAT_VERSION = 1


class DamagedState(StateError):
    """The state file was read but does not decrypt or parse: the only case in which it
    may be set aside. A file that cannot be read at all (permissions, a read-only or
    failing disk) is never moved: the token in it is still good."""


def _read(path: Path) -> bytes:
    """The bytes of `path`, never through a symbolic link (O_NOFOLLOW)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _os_problem(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link, which camagent never follows in its state directory"
    return exc.strerror or str(exc)


@dataclass(frozen=True)
class PasswordStamp:
    """Which password file K was derived from; a change means K must be derived again."""

    path: str
    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> PasswordStamp:
        st = path.stat()
        return cls(str(path), st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass(frozen=True)
class DeviceRecord:
    device_id: str = ""
    key: str = ""  # base64 of K (empty: not derived yet)
    key_stamp: PasswordStamp | None = None
    token: str = ""
    token_source: str = ""
    token_saved_at: float = 0.0
    trusted_keys_pem: tuple[str, ...] = field(default_factory=tuple)  # fetched from the cloud
    activation: dict[str, Any] | None = None  # an NVR's live activation code (nvr.activation)

    @property
    def has_token(self) -> bool:
        return bool(self.token)

    def provisioning_key(self) -> bytes | None:
        return base64.b64decode(self.key) if self.key else None

    def with_token(self, token: VerifiedToken) -> DeviceRecord:
        """Hold `token`: only the gate makes a VerifiedToken, so mypy shows that nothing
        unchecked is ever stored (and a new token spends any activation code)."""
        return replace(
            self,
            token=token.raw,
            token_source=token.source,
            token_saved_at=time.time(),
            activation=None,
        )

    def without_token(self) -> DeviceRecord:
        """Forget the token, and with it any activation code (a used code is spent)."""
        return replace(self, token="", token_source="", token_saved_at=0.0, activation=None)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["trusted_keys_pem"] = list(self.trusted_keys_pem)
        return {"format": FORMAT_VERSION, **data}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeviceRecord:
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"unknown state format {data.get('format')!r}")
        stamp = data.get("key_stamp")
        return cls(
            device_id=str(data["device_id"]),
            key=str(data["key"]),
            key_stamp=PasswordStamp(**stamp) if stamp else None,
            token=str(data["token"]),
            token_source=str(data["token_source"]),
            token_saved_at=float(data["token_saved_at"]),
            trusted_keys_pem=tuple(str(p) for p in data["trusted_keys_pem"]),
            activation=data.get("activation"),
        )


class TokenStore:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / STATE_FILE
        self._key: bytes | None = None
        self._damaged = False  # the last load found the content damaged
        self._unreadable = ""  # or why it could not read the file at all

    # -- locking --------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self._ensure_dir()
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.state_dir / LOCK_FILE, flags, 0o600)
        except OSError as exc:
            raise StateError(
                f"cannot open the state lock {self.state_dir / LOCK_FILE}: "
                f"{_os_problem(exc)}; nothing was changed, the previous state is kept"
            ) from None
        try:
            try:
                state_dir_check.adopt(fd, self.state_dir)
            except OSError as exc:
                raise StateError(
                    f"cannot give {self.state_dir / LOCK_FILE} to the owner of "
                    f"{self.state_dir}: {exc.strerror}; nothing was changed"
                ) from None
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def update(self, change: Callable[[DeviceRecord], DeviceRecord]) -> DeviceRecord:
        """Read, change and save under the lock, so daemon and CLI never lose a write."""
        with self.locked():
            # Writes killed before their rename leave temp files; under the lock none is in
            # flight, and removing them first also gives their space back to this write.
            remove_stale_temp_files(self.path)
            record = change(self.load())
            self.save(record)
            return record

    # -- reading and writing --------------------------------------------------------

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> DeviceRecord:
        """The record; DamagedState when the file does not decrypt or parse, StateError
        when it cannot be read (then it is not damaged: leave it where it is)."""
        self._damaged, self._unreadable = False, ""
        if not state_dir_check.ensure(self.state_dir, create=False):
            return DeviceRecord()
        try:
            blob = _read(self.path)
        except FileNotFoundError:
            return DeviceRecord()
        except OSError as exc:
            self._unreadable = (
                f"cannot read {self.path}: {_os_problem(exc)}; it must be readable by "
                f"{self._me()} (the user camagent runs as)"
            )
            raise StateError(self._unreadable) from None
        try:
            return self._decode(blob)
        except DamagedState:
            self._damaged = True
            raise
        except StateError as exc:
            self._unreadable = str(exc)
            raise

    def save(self, record: DeviceRecord) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._ensure_dir()
        plain = json.dumps(record.to_json(), separators=(",", ":")).encode()
        nonce = os.urandom(12)
        sealed = AESGCM(self._state_key()).encrypt(nonce, plain, MAGIC)
        write_atomic(self.path, MAGIC + nonce + sealed)

    def set_aside(self) -> Path:
        """Move a damaged state file out of the way (kept for inspection, not deleted).

        Only after `load` found the content damaged; a file that could not be read (no
        permission, read-only or failing disk) stays where it is, and so does its token.
        """
        if not self._damaged:
            why = self._unreadable or f"cannot read {self.path}"
            raise StateError(
                f"{why}; the state is not damaged, so it was not moved aside: fix the "
                "permissions or the disk, nothing was changed"
            )
        aside = self.path.with_name(f"{STATE_FILE}.unreadable-{int(time.time())}")
        try:
            os.replace(self.path, aside)
        except OSError as exc:
            raise StateError(
                f"cannot move the damaged {self.path} aside: {exc.strerror}; nothing was changed"
            ) from None
        self._damaged = False
        return aside

    @staticmethod
    def _me() -> str:
        return state_dir_check._user(os.geteuid())

    def _decode(self, blob: bytes) -> DeviceRecord:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 12 + 16:
            raise DamagedState(f"{self.path} is not a camagent state file (damaged?)")
        body = blob[len(MAGIC) :]
        key = self._state_key()  # a key that cannot be read is a StateError, not damage
        try:
            plain = AESGCM(key).decrypt(body[:12], body[12:], MAGIC)
            return DeviceRecord.from_json(json.loads(plain))
        except InvalidTag:
            raise DamagedState(
                f"{self.path} does not open with the state key "
                f"({self._key_description()}): it was written with another key or damaged"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise DamagedState(f"{self.path} holds an unexpected record: {exc}") from None

    # -- the state key --------------------------------------------------------------

    def _state_key(self) -> bytes:
        if self._key is None:
            self._key = self._read_or_make_key()
        return self._key

    def _credential_path(self) -> Path | None:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if directory and (Path(directory) / CREDENTIAL_NAME).exists():
            return Path(directory) / CREDENTIAL_NAME
        return None

    def _key_description(self) -> str:
        cred = self._credential_path()
        return f"systemd credential {cred}" if cred else str(self.state_dir / KEY_FILE)

    def _read_or_make_key(self) -> bytes:
        cred = self._credential_path()
        path = cred or self.state_dir / KEY_FILE
        try:
            key = path.read_bytes() if cred else _read(path)
        except FileNotFoundError:
            if cred:  # the credential vanished between the check and the read
                raise StateError(f"the state key {path} disappeared while reading it") from None
            return self._make_key(path)
        except OSError as exc:
            raise StateError(
                f"cannot read the state key {path}: {_os_problem(exc)}; nothing was changed"
            ) from None
        if len(key) != 32:
            raise StateError(f"the state key {path} must be 32 bytes, it has {len(key)}")
        return key

    def _make_key(self, path: Path) -> bytes:
        """Create the key so that a concurrent reader never sees it half-written.

        The key is written to a fresh temp file first (mkstemp: O_EXCL with a random name,
        so nothing planted in the directory is written through) and hard-linked into place:
        linking fails if another process got there first, and then its key is the one to
        use. A name taken by anything that is not a key (a symbolic link) stays an error.
        """
        key = os.urandom(32)
        self._ensure_dir()
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        except OSError as exc:
            raise StateError(f"cannot create the state key {path}: {exc.strerror}") from None
        tmp = Path(tmp_name)
        try:
            state_dir_check.adopt(fd, path.parent)
            with os.fdopen(fd, "wb") as out:
                out.write(key)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                return self._read_or_make_key()
            fsync_dir(path.parent)
            return key
        except OSError as exc:
            raise StateError(f"cannot create the state key {path}: {exc.strerror}") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _ensure_dir(self) -> None:
        state_dir_check.ensure(self.state_dir)
