"""Registrators and activations: virtual NVRs, the activation codes NVRs register, and
registration tokens.  Compare-and-set updates raise Conflict when what they relied on
changed; which change is allowed at all is decided by the services."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from cloud_mock.store.db import Aggregate, from_row, insert, to_column, to_columns


class Conflict(Exception):
    """A guarded change lost a race: what it relied on changed (the message says what)."""


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


_REGISTRATOR_EDITABLE = frozenset(
    {"name", "note", "device", "broadcast", "archive", "cameras", "pending_configure"}
)
# What a new registrator row holds before it is linked.
_UNLINKED = (
    "cameras",
    "pending_configure",
    "device_id",
    "device_name",
    "version",
    "checks",
    "token_jti",
    "linked_at",
    "hello_at",
    "last_seen",
)


class RegistratorsStore(Aggregate):
    # --- registrators (virtual NVRs) -----------------------------------------------------

    def add_registrator(self, registrator: Registrator) -> None:
        insert(self._db, "registrators", to_columns(registrator, skip=_UNLINKED))

    def get_registrator(self, registrator_id: str) -> Registrator | None:
        row = self._db.execute(
            "SELECT * FROM registrators WHERE id = ?", (registrator_id,)
        ).fetchone()
        return None if row is None else from_row(Registrator, row)

    def registrator_by_jti(self, jti: str) -> Registrator | None:
        row = self._db.execute("SELECT * FROM registrators WHERE token_jti = ?", (jti,)).fetchone()
        return None if row is None else from_row(Registrator, row)

    def registrator_by_device(self, device_id: str) -> Registrator | None:
        row = self._db.execute(
            "SELECT * FROM registrators WHERE device_id = ?", (device_id,)
        ).fetchone()
        return None if row is None else from_row(Registrator, row)

    def registrators_of(self, org: str) -> list[Registrator]:
        rows = self._db.execute(
            "SELECT * FROM registrators WHERE org = ? ORDER BY created, rowid", (org,)
        ).fetchall()
        return [from_row(Registrator, row) for row in rows]

    def update_registrator(self, registrator_id: str, **changes: Any) -> None:
        """Change plain columns (name, note, device, broadcast, archive, cameras,
        pending_configure); dicts and lists are stored as JSON."""
        unknown = set(changes) - _REGISTRATOR_EDITABLE
        if unknown:
            raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
        if not changes:
            return
        columns = sorted(changes)
        values = [to_column(changes[c]) for c in columns]
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
        """Link the registrator, mark the code activated (the device's other codes go)
        and store the token for the provisioning service under the code's secret, all at
        once; Conflict if the
        registrator was linked or the code activated in the meantime."""
        with self.transaction() as db:
            row = db.execute("SELECT secret FROM activations WHERE code = ?", (code,)).fetchone()
            cursor = db.execute(
                "UPDATE activations SET activated_at = ?, registrator_id = ? "
                "WHERE code = ? AND activated_at IS NULL",
                (link.linked_at, registrator_id, code),
            )
            if row is None or cursor.rowcount != 1:
                raise Conflict("the code was already activated")
            _link(db, registrator_id, link)
            _drop_pending_codes(db, link.device_id)
            db.execute(
                "INSERT OR REPLACE INTO provisioning(device_id, key, token, camera_id) "
                "VALUES (?, ?, ?, NULL)",
                (link.device_id, bytes(row["secret"]), token),
            )

    def add_registrator_by_token(self, token_id: str, registrator: Registrator, link: Link) -> None:
        """Use the registration token (once only) and create the linked registrator;
        Conflict if the token was used in the meantime."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE registration_tokens SET used_at = ?, registrator_id = ? "
                "WHERE id = ? AND used_at IS NULL",
                (link.linked_at, registrator.id, token_id),
            )
            if cursor.rowcount != 1:
                raise Conflict("registration token already used")
            insert(db, "registrators", to_columns(registrator, skip=_UNLINKED))
            _link(db, registrator.id, link)
            _drop_pending_codes(db, link.device_id)
            # An NVR linked with a token polls for nothing: no stale entry may linger.
            db.execute(
                "DELETE FROM provisioning WHERE device_id = ? AND camera_id IS NULL",
                (link.device_id,),
            )

    def unlink_registrator(self, registrator_id: str, at: float) -> Registrator | None:
        """Back to "pending": forget the device, revoke its token; settings are kept."""
        with self.transaction() as db:
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
        with self.transaction() as db:
            registrator = _revoke_registrator(db, registrator_id, at)
            if registrator is not None:
                db.execute("DELETE FROM registrators WHERE id = ?", (registrator_id,))
        return registrator

    # --- activation codes ----------------------------------------------------------------

    def get_activation(self, code: str) -> Activation | None:
        row = self._db.execute("SELECT * FROM activations WHERE code = ?", (code,)).fetchone()
        return None if row is None else from_row(Activation, row)

    def activations_of(self, device_id: str) -> list[Activation]:
        rows = self._db.execute(
            "SELECT * FROM activations WHERE device_id = ? ORDER BY created, rowid", (device_id,)
        ).fetchall()
        return [from_row(Activation, row) for row in rows]

    def insert_activation(self, activation: Activation) -> None:
        insert(self._db, "activations", to_columns(activation))

    def refresh_activation(self, activation: Activation) -> None:
        """A registration of the same code by the same NVR: new details, new expiry."""
        self._db.execute(
            "UPDATE activations SET name = ?, version = ?, checks = ?, expires_at = ? "
            "WHERE code = ?",
            (
                activation.name,
                activation.version,
                json.dumps(activation.checks),
                activation.expires_at,
                activation.code,
            ),
        )

    def delete_activation(self, code: str) -> None:
        self._db.execute("DELETE FROM activations WHERE code = ?", (code,))

    def keep_newest_activations(self, device_id: str, keep: int) -> int:
        """Drop all but the `keep` newest codes of a device; how many went."""
        cursor = self._db.execute(
            "DELETE FROM activations WHERE device_id = ? AND code NOT IN (SELECT code "
            "FROM activations WHERE device_id = ? ORDER BY created DESC, rowid DESC "
            "LIMIT ?)",
            (device_id, device_id, keep),
        )
        return cursor.rowcount

    # --- registration tokens -------------------------------------------------------------

    def add_registration_token(self, token: RegistrationToken, token_hash: str) -> None:
        insert(self._db, "registration_tokens", {**to_columns(token), "token_hash": token_hash})

    def registration_token_by_hash(self, token_hash: str) -> RegistrationToken | None:
        row = self._db.execute(
            "SELECT * FROM registration_tokens WHERE token_hash = ?", (token_hash,)
        ).fetchone()
        return None if row is None else from_row(RegistrationToken, row)

    def registration_tokens_of(self, org: str) -> list[RegistrationToken]:
        rows = self._db.execute(
            "SELECT * FROM registration_tokens WHERE org = ? ORDER BY created, rowid", (org,)
        ).fetchall()
        return [from_row(RegistrationToken, row) for row in rows]

    def delete_registration_token(self, token_id: str, org: str) -> bool:
        cursor = self._db.execute(
            "DELETE FROM registration_tokens WHERE id = ? AND org = ?", (token_id, org)
        )
        return cursor.rowcount > 0


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


def _drop_pending_codes(db: sqlite3.Connection, device_id: str) -> None:
    """A linked device's unused codes are moot; gone, they hold no secret against the
    device's next registration (after a reset it registers under a new secret)."""
    db.execute("DELETE FROM activations WHERE device_id = ? AND activated_at IS NULL", (device_id,))


def _revoke_registrator(
    db: sqlite3.Connection, registrator_id: str, at: float
) -> Registrator | None:
    row = db.execute("SELECT * FROM registrators WHERE id = ?", (registrator_id,)).fetchone()
    if row is None:
        return None
    registrator = from_row(Registrator, row)
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
