"""Persistent state of the mock: one SQLite database (WAL) in the data directory.

The store is deliberately dumb: it keeps rows and answers queries; time, keys and
policy come from the callers.  It is used from the event-loop thread only (every query
is a local, indexed, sub-millisecond operation, so no thread hop is worth it).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
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
-- Idle sessions are pruned by last_activity on every authenticated request.
CREATE INDEX IF NOT EXISTS sessions_last_activity ON sessions(last_activity);
CREATE INDEX IF NOT EXISTS sessions_login ON sessions(login, started);
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
CREATE TABLE IF NOT EXISTS registrators (
    id TEXT PRIMARY KEY,
    org TEXT NOT NULL REFERENCES orgs(name),
    name TEXT NOT NULL,
    note TEXT NOT NULL,
    device TEXT NOT NULL,
    created REAL NOT NULL,
    broadcast TEXT NOT NULL,
    archive TEXT NOT NULL,
    cameras TEXT NOT NULL DEFAULT '[]',
    pending_configure INTEGER NOT NULL DEFAULT 0,
    device_id TEXT UNIQUE,
    device_name TEXT NOT NULL DEFAULT '',
    version TEXT NOT NULL DEFAULT '',
    checks TEXT NOT NULL DEFAULT '[]',
    token_jti TEXT UNIQUE,
    linked_at REAL,
    hello_at REAL,
    last_seen REAL
);
CREATE INDEX IF NOT EXISTS registrators_org ON registrators(org, created);
CREATE TABLE IF NOT EXISTS activations (
    code TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    secret BLOB NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    checks TEXT NOT NULL,
    created REAL NOT NULL,
    expires_at REAL NOT NULL,
    activated_at REAL,
    registrator_id TEXT
);
CREATE INDEX IF NOT EXISTS activations_device ON activations(device_id, created);
CREATE TABLE IF NOT EXISTS registration_tokens (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    org TEXT NOT NULL REFERENCES orgs(name),
    created_by TEXT NOT NULL,
    title TEXT NOT NULL,
    note TEXT NOT NULL,
    created REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL,
    registrator_id TEXT
);
CREATE INDEX IF NOT EXISTS registration_tokens_org ON registration_tokens(org, created);
"""


class DuplicateDevice(Exception):
    """A camera (or a linked NVR) with this device_id already exists."""


class Conflict(Exception):
    """A guarded change lost a race: what it relied on changed (the message says what)."""


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
class Registrator:
    """A virtual NVR of an org; `device_id` and the rest of the link are None until linked."""

    id: str
    org: str
    name: str
    note: str
    device: str  # "virtual" | "network"
    created: float
    broadcast: dict[str, Any]
    archive: dict[str, Any]
    cameras: list[dict[str, str]] = field(default_factory=list)
    pending_configure: bool = False
    device_id: str | None = None
    device_name: str = ""
    version: str = ""
    checks: list[dict[str, str]] = field(default_factory=list)
    token_jti: str | None = None
    linked_at: float | None = None
    hello_at: float | None = None
    last_seen: float | None = None


@dataclass(frozen=True)
class Link:
    """What linking an NVR to a registrator records."""

    device_id: str
    device_name: str
    version: str
    checks: list[dict[str, str]]
    token_jti: str
    linked_at: float


@dataclass(frozen=True)
class Activation:
    """An activation code an NVR registered, with its secret and device-side checks."""

    code: str
    device_id: str
    secret: bytes
    name: str
    version: str
    checks: list[dict[str, str]]
    created: float
    expires_at: float
    activated_at: float | None = None
    registrator_id: str | None = None


@dataclass(frozen=True)
class RegistrationToken:
    id: str
    org: str
    created_by: str
    title: str
    note: str
    created: float
    expires_at: float
    used_at: float | None = None
    registrator_id: str | None = None


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

    def ensure_org(self, name: str, business: bool) -> None:
        """Create the org if it does not exist; an existing one is left as it is."""
        self._db.execute(
            "INSERT OR IGNORE INTO orgs(name, business) VALUES (?, ?)", (name, int(business))
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

    def get_session(self, session_id: str) -> Session | None:
        row = self._db.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return None if row is None else _session(row)

    def delete_idle_sessions(self, active_since: float) -> int:
        """End every session whose last activity is before `active_since`; how many."""
        cursor = self._db.execute("DELETE FROM sessions WHERE last_activity < ?", (active_since,))
        return cursor.rowcount

    # --- cameras and provisioning -----------------------------------------------------

    def add_camera(self, camera: Camera, key: bytes, token: str) -> None:
        """Create the camera and its provisioning entry together; DuplicateDevice if taken."""
        try:
            with self._transaction() as db:
                linked = db.execute(
                    "SELECT 1 FROM registrators WHERE device_id = ?", (camera.device_id,)
                ).fetchone()
                if linked is not None:
                    raise DuplicateDevice(camera.device_id)
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

    # --- registrators (virtual NVRs) ------------------------------------------------------

    def add_registrator(self, registrator: Registrator) -> None:
        self._db.execute(
            "INSERT INTO registrators(id, org, name, note, device, created, broadcast, archive) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                registrator.id,
                registrator.org,
                registrator.name,
                registrator.note,
                registrator.device,
                registrator.created,
                json.dumps(registrator.broadcast),
                json.dumps(registrator.archive),
            ),
        )

    def get_registrator(self, registrator_id: str) -> Registrator | None:
        row = self._db.execute(
            "SELECT * FROM registrators WHERE id = ?", (registrator_id,)
        ).fetchone()
        return None if row is None else _registrator(row)

    def registrator_by_jti(self, jti: str) -> Registrator | None:
        row = self._db.execute("SELECT * FROM registrators WHERE token_jti = ?", (jti,)).fetchone()
        return None if row is None else _registrator(row)

    def registrator_by_device(self, device_id: str) -> Registrator | None:
        row = self._db.execute(
            "SELECT * FROM registrators WHERE device_id = ?", (device_id,)
        ).fetchone()
        return None if row is None else _registrator(row)

    def registrators_of(self, org: str) -> list[Registrator]:
        rows = self._db.execute(
            "SELECT * FROM registrators WHERE org = ? ORDER BY created, rowid", (org,)
        ).fetchall()
        return [_registrator(row) for row in rows]

    def update_registrator(self, registrator_id: str, **changes: Any) -> None:
        """Change plain columns (name, note, device, broadcast, archive, cameras,
        pending_configure); dicts and lists are stored as JSON."""
        unknown = set(changes) - _REGISTRATOR_EDITABLE
        if unknown:
            raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
        if not changes:
            return
        columns = sorted(changes)
        values = [_column_value(changes[c]) for c in columns]
        assignments = ", ".join(f"{c} = ?" for c in columns)
        self._db.execute(
            f"UPDATE registrators SET {assignments} WHERE id = ?",  # noqa: S608 - names checked
            (*values, registrator_id),
        )

    def registrator_seen(self, registrator_id: str, at: float, *, hello: bool = False) -> None:
        if hello:
            self._db.execute(
                "UPDATE registrators SET last_seen = ?, hello_at = COALESCE(hello_at, ?) "
                "WHERE id = ?",
                (at, at, registrator_id),
            )
        else:
            self._db.execute(
                "UPDATE registrators SET last_seen = ? WHERE id = ?", (at, registrator_id)
            )

    def link_by_code(self, registrator_id: str, code: str, link: Link, token: str) -> None:
        """Link the registrator, mark the code activated and store the token for the
        provisioning service under the code's secret, all at once; Conflict if the
        registrator was linked or the code activated in the meantime."""
        with self._transaction() as db:
            row = db.execute("SELECT secret FROM activations WHERE code = ?", (code,)).fetchone()
            cursor = db.execute(
                "UPDATE activations SET activated_at = ?, registrator_id = ? "
                "WHERE code = ? AND activated_at IS NULL",
                (link.linked_at, registrator_id, code),
            )
            if row is None or cursor.rowcount != 1:
                raise Conflict("the code was already activated")
            _link(db, registrator_id, link)
            db.execute(
                "INSERT OR REPLACE INTO provisioning(device_id, key, token, camera_id) "
                "VALUES (?, ?, ?, NULL)",
                (link.device_id, bytes(row["secret"]), token),
            )

    def add_registrator_by_token(self, token_id: str, registrator: Registrator, link: Link) -> None:
        """Use the registration token (once only) and create the linked registrator;
        Conflict if the token was used in the meantime."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE registration_tokens SET used_at = ?, registrator_id = ? "
                "WHERE id = ? AND used_at IS NULL",
                (link.linked_at, registrator.id, token_id),
            )
            if cursor.rowcount != 1:
                raise Conflict("registration token already used")
            db.execute(
                "INSERT INTO registrators(id, org, name, note, device, created, broadcast, "
                "archive) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    registrator.id,
                    registrator.org,
                    registrator.name,
                    registrator.note,
                    registrator.device,
                    registrator.created,
                    json.dumps(registrator.broadcast),
                    json.dumps(registrator.archive),
                ),
            )
            _link(db, registrator.id, link)
            # An NVR linked with a token polls for nothing: no stale entry may linger.
            db.execute(
                "DELETE FROM provisioning WHERE device_id = ? AND camera_id IS NULL",
                (link.device_id,),
            )

    def unlink_registrator(self, registrator_id: str, at: float) -> Registrator | None:
        """Back to "pending": forget the device, revoke its token; settings are kept."""
        with self._transaction() as db:
            registrator = _revoke_registrator(db, registrator_id, at)
            if registrator is not None:
                db.execute(
                    "UPDATE registrators SET device_id = NULL, device_name = '', version = '', "
                    "checks = '[]', token_jti = NULL, linked_at = NULL, hello_at = NULL "
                    "WHERE id = ?",
                    (registrator_id,),
                )
        return registrator

    def delete_registrator(self, registrator_id: str, at: float) -> Registrator | None:
        """Remove the registrator, its provisioning entry and revoke its token, at once."""
        with self._transaction() as db:
            registrator = _revoke_registrator(db, registrator_id, at)
            if registrator is not None:
                db.execute("DELETE FROM registrators WHERE id = ?", (registrator_id,))
        return registrator

    # --- activation codes --------------------------------------------------------------------

    def register_activation(self, activation: Activation, now: float, keep: int) -> Activation:
        """Store a code an NVR registered; return what is stored.

        The same NVR (device_id and secret) registering the same code again refreshes it
        (an activated code stays as it is). A code that is live or activated for another
        registration raises Conflict; an expired, unused one is replaced. Only the `keep`
        newest codes of a device are kept.
        """
        with self._transaction() as db:
            row = db.execute(
                "SELECT * FROM activations WHERE code = ?", (activation.code,)
            ).fetchone()
            if row is not None:
                old = _activation(row)
                if old.device_id == activation.device_id and hmac.compare_digest(
                    old.secret, activation.secret
                ):
                    if old.activated_at is not None:
                        return old
                    db.execute(
                        "UPDATE activations SET name = ?, version = ?, checks = ?, "
                        "expires_at = ? WHERE code = ?",
                        (
                            activation.name,
                            activation.version,
                            json.dumps(activation.checks),
                            activation.expires_at,
                            activation.code,
                        ),
                    )
                    return _activation(
                        db.execute(
                            "SELECT * FROM activations WHERE code = ?", (activation.code,)
                        ).fetchone()
                    )
                if old.activated_at is not None or old.expires_at > now:
                    raise Conflict("code already in use")
                db.execute("DELETE FROM activations WHERE code = ?", (activation.code,))
            db.execute(
                "INSERT INTO activations(code, device_id, secret, name, version, checks, "
                "created, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    activation.code,
                    activation.device_id,
                    activation.secret,
                    activation.name,
                    activation.version,
                    json.dumps(activation.checks),
                    activation.created,
                    activation.expires_at,
                ),
            )
            db.execute(
                "DELETE FROM activations WHERE device_id = ? AND code NOT IN (SELECT code "
                "FROM activations WHERE device_id = ? ORDER BY created DESC, rowid DESC "
                "LIMIT ?)",
                (activation.device_id, activation.device_id, keep),
            )
        return activation

    def get_activation(self, code: str) -> Activation | None:
        row = self._db.execute("SELECT * FROM activations WHERE code = ?", (code,)).fetchone()
        return None if row is None else _activation(row)

    def activations_of(self, device_id: str) -> list[Activation]:
        rows = self._db.execute(
            "SELECT * FROM activations WHERE device_id = ? ORDER BY created, rowid", (device_id,)
        ).fetchall()
        return [_activation(row) for row in rows]

    # --- registration tokens -------------------------------------------------------------------

    def add_registration_token(self, token: RegistrationToken, token_hash: str) -> None:
        self._db.execute(
            "INSERT INTO registration_tokens(id, token_hash, org, created_by, title, note, "
            "created, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                token.id,
                token_hash,
                token.org,
                token.created_by,
                token.title,
                token.note,
                token.created,
                token.expires_at,
            ),
        )

    def registration_token_by_hash(self, token_hash: str) -> RegistrationToken | None:
        row = self._db.execute(
            "SELECT * FROM registration_tokens WHERE token_hash = ?", (token_hash,)
        ).fetchone()
        return None if row is None else _registration_token(row)

    def registration_tokens_of(self, org: str) -> list[RegistrationToken]:
        rows = self._db.execute(
            "SELECT * FROM registration_tokens WHERE org = ? ORDER BY created, rowid", (org,)
        ).fetchall()
        return [_registration_token(row) for row in rows]

    def delete_registration_token(self, token_id: str, org: str) -> bool:
        cursor = self._db.execute(
            "DELETE FROM registration_tokens WHERE id = ? AND org = ?", (token_id, org)
        )
        return cursor.rowcount > 0

    # --- settings ----------------------------------------------------------------------

    def set_settings(self, settings: dict[str, Any]) -> None:
        with self._transaction() as db:
            for key, value in settings.items():
                db.execute(
                    "INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)",
                    (key, json.dumps(value)),
                )

    def delete_settings(self, keys: list[str]) -> None:
        self._db.executemany("DELETE FROM settings WHERE key = ?", [(key,) for key in keys])

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


_REGISTRATOR_EDITABLE = frozenset(
    {"name", "note", "device", "broadcast", "archive", "cameras", "pending_configure"}
)


def _column_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _link(db: sqlite3.Connection, registrator_id: str, link: Link) -> None:
    cursor = db.execute(
        "UPDATE registrators SET device_id = ?, device_name = ?, version = ?, checks = ?, "
        "token_jti = ?, linked_at = ?, hello_at = NULL WHERE id = ? AND device_id IS NULL",
        (
            link.device_id,
            link.device_name,
            link.version,
            json.dumps(link.checks),
            link.token_jti,
            link.linked_at,
            registrator_id,
        ),
    )
    if cursor.rowcount != 1:
        raise Conflict("the registrator is gone or already linked")


def _revoke_registrator(
    db: sqlite3.Connection, registrator_id: str, at: float
) -> Registrator | None:
    row = db.execute("SELECT * FROM registrators WHERE id = ?", (registrator_id,)).fetchone()
    if row is None:
        return None
    registrator = _registrator(row)
    if registrator.device_id is not None:
        db.execute(
            "DELETE FROM provisioning WHERE device_id = ? AND camera_id IS NULL",
            (registrator.device_id,),
        )
    if registrator.token_jti is not None:
        db.execute(
            "INSERT OR IGNORE INTO revoked_jtis(jti, revoked_at) VALUES (?, ?)",
            (registrator.token_jti, at),
        )
    return registrator


def _registrator(row: sqlite3.Row) -> Registrator:
    return Registrator(
        id=row["id"],
        org=row["org"],
        name=row["name"],
        note=row["note"],
        device=row["device"],
        created=row["created"],
        broadcast=json.loads(row["broadcast"]),
        archive=json.loads(row["archive"]),
        cameras=json.loads(row["cameras"]),
        pending_configure=bool(row["pending_configure"]),
        device_id=row["device_id"],
        device_name=row["device_name"],
        version=row["version"],
        checks=json.loads(row["checks"]),
        token_jti=row["token_jti"],
        linked_at=row["linked_at"],
        hello_at=row["hello_at"],
        last_seen=row["last_seen"],
    )


def _activation(row: sqlite3.Row) -> Activation:
    return Activation(
        code=row["code"],
        device_id=row["device_id"],
        secret=bytes(row["secret"]),
        name=row["name"],
        version=row["version"],
        checks=json.loads(row["checks"]),
        created=row["created"],
        expires_at=row["expires_at"],
        activated_at=row["activated_at"],
        registrator_id=row["registrator_id"],
    )


def _registration_token(row: sqlite3.Row) -> RegistrationToken:
    return RegistrationToken(
        id=row["id"],
        org=row["org"],
        created_by=row["created_by"],
        title=row["title"],
        note=row["note"],
        created=row["created"],
        expires_at=row["expires_at"],
        used_at=row["used_at"],
        registrator_id=row["registrator_id"],
    )
