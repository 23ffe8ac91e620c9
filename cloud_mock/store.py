"""Persistent state of the mock: one SQLite database (WAL) in the data directory.

The store is deliberately dumb: it keeps rows and answers queries; time, keys and
policy come from the callers.  It is used from the event-loop thread only (every query
is a local, indexed, sub-millisecond operation, so no thread hop is worth it).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DB_NAME = "cloud_mock.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS orgs (
    name TEXT PRIMARY KEY,
    business INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    login TEXT PRIMARY KEY,
    org TEXT NOT NULL REFERENCES orgs(name),
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    max_sessions INTEGER
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    login TEXT NOT NULL REFERENCES users(login) ON DELETE CASCADE,
    device TEXT NOT NULL,
    software TEXT NOT NULL,
    started REAL NOT NULL,
    last_activity REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cameras (
    camera_id TEXT PRIMARY KEY,
    org TEXT NOT NULL REFERENCES orgs(name),
    device_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created REAL NOT NULL,
    token_jti TEXT NOT NULL UNIQUE,
    hello_at REAL,
    last_seen REAL
);
CREATE TABLE IF NOT EXISTS provisioning (
    device_id TEXT PRIMARY KEY,
    key BLOB NOT NULL,
    token TEXT,
    camera_id TEXT REFERENCES cameras(camera_id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS revoked_jtis (
    jti TEXT PRIMARY KEY,
    revoked_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS nonces (
    nonce TEXT PRIMARY KEY,
    ts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS nonces_ts ON nonces(ts);
CREATE TABLE IF NOT EXISTS poll_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    at REAL NOT NULL,
    result TEXT NOT NULL,
    wait INTEGER NOT NULL,
    held_s REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS poll_log_device ON poll_log(device_id, id);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class DuplicateDevice(Exception):
    """A camera with this device_id already exists."""


@dataclass(frozen=True)
class User:
    login: str
    org: str
    role: str
    password_hash: str
    max_sessions: int | None


@dataclass(frozen=True)
class Session:
    id: str
    login: str
    device: str
    software: str
    started: float
    last_activity: float


@dataclass(frozen=True)
class Camera:
    camera_id: str
    org: str
    device_id: str
    name: str
    created: float
    token_jti: str
    hello_at: float | None
    last_seen: float | None


@dataclass(frozen=True)
class ProvisioningEntry:
    device_id: str
    key: bytes
    token: str | None


@dataclass(frozen=True)
class PollRecord:
    device_id: str
    at: float
    result: str
    wait: int
    held_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "at": self.at,
            "result": self.result,
            "wait": self.wait,
            "held_s": round(self.held_s, 3),
        }


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        # Autocommit mode; multi-statement changes use `_transaction` explicitly.
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    @classmethod
    def open_in(cls, data_dir: Path) -> Store:
        return cls(data_dir / DB_NAME)

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- orgs and users -------------------------------------------------------------

    def upsert_org(self, name: str, business: bool) -> None:
        self._db.execute(
            "INSERT INTO orgs(name, business) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET business = excluded.business",
            (name, int(business)),
        )

    def org_is_business(self, name: str) -> bool | None:
        row = self._db.execute("SELECT business FROM orgs WHERE name = ?", (name,)).fetchone()
        return None if row is None else bool(row["business"])

    def upsert_user(self, user: User) -> None:
        self._db.execute(
            "INSERT INTO users(login, org, role, password_hash, max_sessions) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(login) DO UPDATE SET org = excluded.org, "
            "role = excluded.role, password_hash = excluded.password_hash, "
            "max_sessions = excluded.max_sessions",
            (user.login, user.org, user.role, user.password_hash, user.max_sessions),
        )

    def get_user(self, login: str) -> User | None:
        row = self._db.execute("SELECT * FROM users WHERE login = ?", (login,)).fetchone()
        if row is None:
            return None
        return User(
            row["login"], row["org"], row["role"], row["password_hash"], row["max_sessions"]
        )

    # --- sessions -------------------------------------------------------------------

    def add_session(self, session: Session, secret_hash: str) -> None:
        self._db.execute(
            "INSERT INTO sessions(id, secret_hash, login, device, software, started, "
            "last_activity) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                session.id,
                secret_hash,
                session.login,
                session.device,
                session.software,
                session.started,
                session.last_activity,
            ),
        )

    def session_by_secret(self, secret_hash: str) -> Session | None:
        row = self._db.execute(
            "SELECT * FROM sessions WHERE secret_hash = ?", (secret_hash,)
        ).fetchone()
        return None if row is None else _session(row)

    def touch_session(self, session_id: str, at: float) -> None:
        self._db.execute("UPDATE sessions SET last_activity = ? WHERE id = ?", (at, session_id))

    def sessions_of(self, login: str) -> list[Session]:
        rows = self._db.execute(
            "SELECT * FROM sessions WHERE login = ? ORDER BY started DESC, rowid DESC", (login,)
        ).fetchall()
        return [_session(row) for row in rows]

    def delete_session(self, session_id: str, login: str) -> bool:
        cursor = self._db.execute(
            "DELETE FROM sessions WHERE id = ? AND login = ?", (session_id, login)
        )
        return cursor.rowcount > 0

    # --- cameras and provisioning -----------------------------------------------------

    def add_camera(self, camera: Camera, key: bytes, token: str) -> None:
        """Create the camera and its provisioning entry together; DuplicateDevice if taken."""
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO cameras(camera_id, org, device_id, name, created, token_jti, "
                    "hello_at, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        camera.camera_id,
                        camera.org,
                        camera.device_id,
                        camera.name,
                        camera.created,
                        camera.token_jti,
                        camera.hello_at,
                        camera.last_seen,
                    ),
                )
                # A stale entry without a camera (never made by this code) must not block.
                db.execute(
                    "INSERT OR REPLACE INTO provisioning(device_id, key, token, camera_id) "
                    "VALUES (?, ?, ?, ?)",
                    (camera.device_id, key, token, camera.camera_id),
                )
        except sqlite3.IntegrityError as error:
            if "cameras.device_id" in str(error):
                raise DuplicateDevice(camera.device_id) from None
            raise

    def camera_by_device(self, device_id: str) -> Camera | None:
        row = self._db.execute("SELECT * FROM cameras WHERE device_id = ?", (device_id,)).fetchone()
        return None if row is None else _camera(row)

    def get_camera(self, camera_id: str) -> Camera | None:
        row = self._db.execute("SELECT * FROM cameras WHERE camera_id = ?", (camera_id,)).fetchone()
        return None if row is None else _camera(row)

    def camera_by_jti(self, jti: str) -> Camera | None:
        row = self._db.execute("SELECT * FROM cameras WHERE token_jti = ?", (jti,)).fetchone()
        return None if row is None else _camera(row)

    def cameras_of(self, org: str) -> list[Camera]:
        rows = self._db.execute(
            "SELECT * FROM cameras WHERE org = ? ORDER BY created, rowid", (org,)
        ).fetchall()
        return [_camera(row) for row in rows]

    def delete_camera(self, camera_id: str, at: float) -> Camera | None:
        """Remove camera + provisioning entry and revoke its token, in one transaction."""
        with self._transaction() as db:
            row = db.execute("SELECT * FROM cameras WHERE camera_id = ?", (camera_id,)).fetchone()
            if row is None:
                return None
            camera = _camera(row)
            db.execute("DELETE FROM provisioning WHERE device_id = ?", (camera.device_id,))
            db.execute("DELETE FROM cameras WHERE camera_id = ?", (camera_id,))
            db.execute(
                "INSERT OR IGNORE INTO revoked_jtis(jti, revoked_at) VALUES (?, ?)",
                (camera.token_jti, at),
            )
        return camera

    def camera_seen(self, camera_id: str, at: float, *, hello: bool = False) -> None:
        if hello:
            self._db.execute(
                "UPDATE cameras SET last_seen = ?, hello_at = COALESCE(hello_at, ?) "
                "WHERE camera_id = ?",
                (at, at, camera_id),
            )
        else:
            self._db.execute(
                "UPDATE cameras SET last_seen = ? WHERE camera_id = ?", (at, camera_id)
            )

    def is_revoked(self, jti: str) -> bool:
        row = self._db.execute("SELECT 1 FROM revoked_jtis WHERE jti = ?", (jti,)).fetchone()
        return row is not None

    def provisioning_entry(self, device_id: str) -> ProvisioningEntry | None:
        row = self._db.execute(
            "SELECT device_id, key, token FROM provisioning WHERE device_id = ?", (device_id,)
        ).fetchone()
        if row is None:
            return None
        return ProvisioningEntry(row["device_id"], bytes(row["key"]), row["token"])

    # --- replay protection and the poll log ----------------------------------------------

    def remember_nonce(self, nonce: str, ts: int) -> bool:
        """Record a nonce; False if it was seen before (a replay)."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO nonces(nonce, ts) VALUES (?, ?)", (nonce, ts)
        )
        return cursor.rowcount == 1

    def prune_nonces(self, older_than_ts: float) -> None:
        self._db.execute("DELETE FROM nonces WHERE ts < ?", (older_than_ts,))

    def log_poll(self, record: PollRecord) -> None:
        self._db.execute(
            "INSERT INTO poll_log(device_id, at, result, wait, held_s) VALUES (?, ?, ?, ?, ?)",
            (record.device_id, record.at, record.result, record.wait, record.held_s),
        )

    def polls(self, device_id: str | None = None, limit: int = 1000) -> list[PollRecord]:
        """The newest `limit` polls (of one device, or all), oldest first."""
        if device_id is None:
            rows = self._db.execute(
                "SELECT * FROM poll_log ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM poll_log WHERE device_id = ? ORDER BY id DESC LIMIT ?",
                (device_id, limit),
            ).fetchall()
        return [
            PollRecord(row["device_id"], row["at"], row["result"], row["wait"], row["held_s"])
            for row in reversed(rows)
        ]

    # --- settings ----------------------------------------------------------------------

    def set_settings(self, settings: dict[str, Any]) -> None:
        with self._transaction() as db:
            for key, value in settings.items():
                db.execute(
                    "INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)",
                    (key, json.dumps(value)),
                )

    def settings(self) -> dict[str, Any]:
        rows = self._db.execute("SELECT key, value FROM settings").fetchall()
        return {row["key"]: json.loads(row["value"]) for row in rows}


def _session(row: sqlite3.Row) -> Session:
    return Session(
        row["id"],
        row["login"],
        row["device"],
        row["software"],
        row["started"],
        row["last_activity"],
    )


def _camera(row: sqlite3.Row) -> Camera:
    return Camera(
        row["camera_id"],
        row["org"],
        row["device_id"],
        row["name"],
        row["created"],
        row["token_jti"],
        row["hello_at"],
        row["last_seen"],
    )
