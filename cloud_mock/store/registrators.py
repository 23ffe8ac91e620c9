"""Registrators and activations: virtual NVRs, the activation codes NVRs register, and
registration tokens (their records are in `registrator_records`).  Compare-and-set
updates raise Conflict when what they relied on changed; which change is allowed at all
is decided by the services.

A device ID may be linked in several organizations, one registrator each, every link
with the SHA-256 of the secret of the NVR that made it. The provisioning service holds
one NVR entry (secret and token) per device ID: when activations of several
organizations wait for their NVRs, `offer_nvr_token` puts them there in turns.

That entry and the revoked tokens are the devices aggregate's tables: this aggregate
changes them only through its methods (`NvrEntries`), inside its own transaction (one
shared connection keeps the change atomic).
"""

from __future__ import annotations

import hmac
import json
import sqlite3
from typing import Any, Protocol

from cloud_mock.store.db import Aggregate, Database, from_row, insert, to_column, to_columns
from cloud_mock.store.registrator_records import (
    Activation,
    Conflict,
    Link,
    RegistrationToken,
    Registrator,
    secret_hash_of,
)

# The records live in registrator_records; the store and the NVR routes import them from
# here.
__all__ = [
    "Activation",
    "Conflict",
    "Link",
    "NvrEntries",
    "RegistrationToken",
    "Registrator",
    "RegistratorsStore",
    "secret_hash_of",
]

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
    "secret_hash",
)


class NvrEntries(Protocol):
    """What registrators change in the devices aggregate (`DevicesStore`)."""

    def put_nvr_entry(self, device_id: str, secret: bytes, token: str) -> None: ...

    def withdraw_nvr_entry(self, device_id: str, jti: str) -> None: ...

    def revoke(self, jti: str, at: float) -> None: ...


class RegistratorsStore(Aggregate):
    def __init__(self, database: Database, devices: NvrEntries) -> None:
        super().__init__(database)
        self._devices = devices

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
        """A registrator linked to `device_id`, the newest link first. Several
        organizations may each have one: use `registrator_of` to ask for one org's."""
        row = self._db.execute(
            "SELECT * FROM registrators WHERE device_id = ? ORDER BY linked_at DESC, rowid DESC",
            (device_id,),
        ).fetchone()
        return None if row is None else from_row(Registrator, row)

    def registrator_of(self, org: str, device_id: str) -> Registrator | None:
        """The registrator of `org` linked to `device_id` (at most one)."""
        row = self._db.execute(
            "SELECT * FROM registrators WHERE org = ? AND device_id = ?", (org, device_id)
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

    def link_by_code(
        self, registrator_id: str, code: str, link: Link, token: str, now: float
    ) -> None:
        """Link the registrator, mark the code activated (the same NVR's other unused codes
        go) and leave the token waiting for the NVR that registered the code, all at once;
        Conflict if the registrator was linked or the code activated in the meantime.
        Then `offer_nvr_token` puts it where the NVR's poll finds it."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE activations SET activated_at = ?, registrator_id = ?, token = ?, "
                "queued_at = ?, offered_at = NULL WHERE code = ? AND activated_at IS NULL",
                (link.linked_at, registrator_id, token, now, code),
            )
            if cursor.rowcount != 1:
                raise Conflict("the code was already activated")
            _link(db, registrator_id, link)
            _drop_unused_codes(db, link.device_id, link.secret_hash)

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
            # The NVR's own unused codes are moot now; other NVRs' codes (other secrets)
            # and the tokens other organizations' activations left are not its business.
            _drop_unused_codes(db, link.device_id, link.secret_hash)

    def unlink_registrator(
        self, registrator_id: str, at: float, why: str = ""
    ) -> Registrator | None:
        """Forget the device, revoke its token; settings are kept. `why`, if given, is
        kept for the console (else it is "pending" again, to be set up)."""
        with self.transaction() as db:
            registrator = self._revoke_registrator(db, registrator_id, at)
            if registrator is not None:
                _unlink(db, registrator_id, why)
        return registrator

    def relink_by_token(
        self, token_id: str, registrator_id: str, link: Link, at: float
    ) -> Registrator:
        """Use the registration token (once only) to link the registrator anew to the NVR
        that made its link (reset or installed again): its old token revoked, its name,
        note, settings and cameras kept, all at once. Returns the registrator as it was;
        Conflict if the token was used or the registrator deleted in the meantime."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE registration_tokens SET used_at = ?, registrator_id = ? "
                "WHERE id = ? AND used_at IS NULL",
                (link.linked_at, registrator_id, token_id),
            )
            if cursor.rowcount != 1:
                raise Conflict("registration token already used")
            registrator = self._revoke_registrator(db, registrator_id, at)
            if registrator is None:
                raise Conflict("the registrator is gone")
            _unlink(db, registrator_id)
            _link(db, registrator_id, link)
            _drop_unused_codes(db, link.device_id, link.secret_hash)
        return registrator

    def delete_registrator(self, registrator_id: str, at: float) -> Registrator | None:
        """Remove the registrator and the codes it was activated with, withdraw its token
        from the provisioning service and revoke it, at once."""
        with self.transaction() as db:
            registrator = self._revoke_registrator(db, registrator_id, at)
            if registrator is not None:
                db.execute("DELETE FROM activations WHERE registrator_id = ?", (registrator_id,))
                db.execute("DELETE FROM registrators WHERE id = ?", (registrator_id,))
        return registrator

    # --- the token an activation left for its NVR ----------------------------------------

    def offer_nvr_token(self, device_id: str, now: float, turn_s: float) -> bool:
        """Put a waiting token of `device_id` where the NVR's poll finds it; True if
        what is offered changed (held polls should look again).

        Tokens wait in the order their codes were activated. One is offered at a time:
        alone, for as long as it waits; with others waiting, for `turn_s`, then it goes
        to the back. A token leaves the queue when its NVR connects with it
        (`nvr_token_collected`) or its registrator lets go of the device."""
        with self.transaction() as db:
            waiting = db.execute(
                "SELECT code, secret, token, offered_at FROM activations "
                "WHERE device_id = ? AND token IS NOT NULL ORDER BY queued_at, rowid",
                (device_id,),
            ).fetchall()
            if not waiting:
                return False
            offered = next((row for row in waiting if row["offered_at"] is not None), None)
            if offered is None:
                chosen = waiting[0]
            elif len(waiting) == 1 or now < offered["offered_at"] + turn_s:
                return False
            else:
                db.execute(
                    "UPDATE activations SET offered_at = NULL, queued_at = ? WHERE code = ?",
                    (now, offered["code"]),
                )
                chosen = next(row for row in waiting if row["code"] != offered["code"])
            db.execute(
                "UPDATE activations SET offered_at = ? WHERE code = ?", (now, chosen["code"])
            )
            self._devices.put_nvr_entry(device_id, bytes(chosen["secret"]), chosen["token"])
            return True

    def nvr_token_collected(self, registrator_id: str) -> str | None:
        """The NVR of this registrator connected: its token waits no more. The device ID
        if a token stopped waiting (the next one may be offered)."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT device_id FROM activations WHERE registrator_id = ? AND token IS NOT NULL",
                (registrator_id,),
            ).fetchone()
            if row is None:
                return None
            _stop_waiting(db, registrator_id)
            return str(row["device_id"])

    def devices_with_waiting_tokens(self, at_least: int = 2) -> list[str]:
        rows = self._db.execute(
            "SELECT device_id FROM activations WHERE token IS NOT NULL "
            "GROUP BY device_id HAVING COUNT(*) >= ?",
            (at_least,),
        ).fetchall()
        return [str(row["device_id"]) for row in rows]

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
        """A registration of the same code by the same NVR: new details. Never a new
        expiry: a code lives its first lifetime, whatever registers it again."""
        self._db.execute(
            "UPDATE activations SET name = ?, version = ?, checks = ? WHERE code = ?",
            (activation.name, activation.version, json.dumps(activation.checks), activation.code),
        )

    def delete_activation(self, code: str) -> None:
        self._db.execute("DELETE FROM activations WHERE code = ?", (code,))

    def keep_newest_activations(self, device_id: str, secret: bytes, keep: int) -> int:
        """Drop all but the `keep` newest unused codes one NVR (device ID and secret)
        registered; how many went. Other secrets' codes are never touched."""
        cursor = self._db.execute(
            "DELETE FROM activations WHERE device_id = ? AND secret = ? "
            "AND activated_at IS NULL AND code NOT IN (SELECT code FROM activations "
            "WHERE device_id = ? AND secret = ? AND activated_at IS NULL "
            "ORDER BY created DESC, rowid DESC LIMIT ?)",
            (device_id, secret, device_id, secret, keep),
        )
        return cursor.rowcount

    def live_codes_of_client(self, client: str, now: float) -> int:
        """Unused, unexpired codes registered from `client`."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM activations WHERE client = ? AND expires_at > ? "
            "AND activated_at IS NULL",
            (client, now),
        ).fetchone()
        return int(row[0])

    def unused_codes(self) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM activations WHERE activated_at IS NULL"
        ).fetchone()
        return int(row[0])

    def prune_activations(self, unused_before: float, used_before: float) -> int:
        """Forget unused codes that expired before `unused_before`, and activated codes
        that expired before `used_before` once no token of theirs waits; how many went."""
        with self.transaction() as db:
            unused = db.execute(
                "DELETE FROM activations WHERE activated_at IS NULL AND expires_at < ?",
                (unused_before,),
            ).rowcount
            used = db.execute(
                "DELETE FROM activations WHERE activated_at IS NOT NULL AND token IS NULL "
                "AND expires_at < ?",
                (used_before,),
            ).rowcount
        return unused + used

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

    def _revoke_registrator(
        self, db: sqlite3.Connection, registrator_id: str, at: float
    ) -> Registrator | None:
        """Revoke the registrator's token; withdraw it from the provisioning service if it
        is the one offered there (another organization's offered token stays), and from
        the queue of waiting tokens."""
        row = db.execute("SELECT * FROM registrators WHERE id = ?", (registrator_id,)).fetchone()
        if row is None:
            return None
        registrator = from_row(Registrator, row)
        if registrator.device_id is not None and registrator.token_jti is not None:
            self._devices.withdraw_nvr_entry(registrator.device_id, registrator.token_jti)
        _stop_waiting(db, registrator_id)
        if registrator.token_jti is not None:
            self._devices.revoke(registrator.token_jti, at)
        return registrator


def _unlink(db: sqlite3.Connection, registrator_id: str, why: str = "") -> None:
    db.execute(
        "UPDATE registrators SET device_id = NULL, device_name = '', version = '', "
        "checks = '[]', token_jti = NULL, linked_at = NULL, hello_at = NULL, "
        "secret_hash = NULL, let_go = ? WHERE id = ?",
        (why, registrator_id),
    )


def _link(db: sqlite3.Connection, registrator_id: str, link: Link) -> None:
    try:
        cursor = db.execute(
            "UPDATE registrators SET device_id = ?, device_name = ?, version = ?, checks = ?, "
            "token_jti = ?, linked_at = ?, hello_at = NULL, secret_hash = ?, let_go = '' "
            "WHERE id = ? AND device_id IS NULL",
            (
                link.device_id,
                link.device_name,
                link.version,
                json.dumps(link.checks),
                link.token_jti,
                link.linked_at,
                link.secret_hash,
                registrator_id,
            ),
        )
    except sqlite3.IntegrityError:  # another registrator of the org took the device
        raise Conflict("another registrator of the organization is linked to the NVR") from None
    if cursor.rowcount != 1:
        raise Conflict("the registrator is gone or already linked")


def _drop_unused_codes(db: sqlite3.Connection, device_id: str, secret_hash: bytes) -> None:
    """A linked NVR's unused codes are moot: those it registered (under the secret it
    linked with) go. Codes of the same device ID under other secrets are other NVRs'
    (or a squatter's): they are left alone, as they leave this NVR alone."""
    rows = db.execute(
        "SELECT code, secret FROM activations WHERE device_id = ? AND activated_at IS NULL",
        (device_id,),
    ).fetchall()
    for row in rows:
        if hmac.compare_digest(secret_hash_of(bytes(row["secret"])), secret_hash):
            db.execute("DELETE FROM activations WHERE code = ?", (row["code"],))


def _stop_waiting(db: sqlite3.Connection, registrator_id: str) -> None:
    db.execute(
        "UPDATE activations SET token = NULL, queued_at = NULL, offered_at = NULL "
        "WHERE registrator_id = ? AND token IS NOT NULL",
        (registrator_id,),
    )
