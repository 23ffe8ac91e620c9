"""Devices and claims: cameras (each one an organization's claim on a device ID, with its
K and signed token), NVR provisioning entries, revoked tokens, poll nonces, the poll log
and the test hooks' poll trace.

A claim is *open* while it has a key: it is closed when another organization's claim
wins its device (`moved_at`), or was dropped unproven by an older version of the mock
(`dropped_at`). Which claims count, which wins and which a poll checks is decided by the
rules (cloud_mock/claims.py) and the services (cameras.py, provisioning.py); this module
stores the outcome, and keeps in memory each device's places (`claims.places_for`),
rebuilt from the table whenever one of its claims changes, so that a poll reads no claim
row: one dictionary lookup, the same for an unknown device and for one with claims.
The registrators aggregate changes these tables only through this one's methods
(`put_nvr_entry`, `withdraw_nvr_entry`, `revoke`).

The poll log holds, per claim, only the polls that proved that claim's K (at most
`per_claim` rows each, newest kept: nobody else's polls can push a claim's rows out),
and one aggregated row per result and period for every other poll (nobody's history).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from agent.errors import TokenError
from agent.token_codec import split_token
from cloud_mock import claims
from cloud_mock.store.db import Aggregate, Database, from_row, insert, to_columns


@dataclass(frozen=True)
class Camera:
    """A camera of an org = its claim on `device_id`."""

    camera_id: str
    org: str
    device_id: str
    name: str
    created: float  # the add: an unproven claim expires claim_ttl_s after it
    token_jti: str
    hello_at: float | None
    last_seen: float | None
    key: bytes | None  # K = scrypt(password, device_id); None once the claim is closed
    token: str | None  # the signed token, sealed for the device when this claim wins
    claimed_at: float  # when its password was set (add, or PATCH while waiting)
    proven_at: float | None = None  # when a poll first proved K and this claim won
    moved_at: float | None = None  # when another org's claim won the device from it
    dropped_at: float | None = None  # closed unproven by an older mock (expired, pushed out)

    @property
    def connected(self) -> bool:
        """The device has used this claim's token (won a poll, or said hello with it)."""
        return self.proven_at is not None or self.hello_at is not None

    def __repr__(self) -> str:  # never K or the token in a log line
        return f"Camera({self.camera_id!r}, org={self.org!r}, device_id={self.device_id!r})"


@dataclass(frozen=True)
class ProvisioningEntry:
    """An NVR's entry: its activation secret as K, and its token once a code is used."""

    device_id: str
    key: bytes
    token: str | None


@dataclass(frozen=True)
class PollRecord:
    """One row of a camera's poll history (or an aggregated row: `count` polls)."""

    device_id: str
    at: float
    result: str
    wait: int
    held_s: float
    camera_id: str | None = None
    count: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "at": self.at,
            "result": self.result,
            "wait": self.wait,
            "held_s": round(self.held_s, 3),
        }


@dataclass(frozen=True)
class Aggregated:
    """Polls that belong to no claim, counted per result and period."""

    result: str
    period_start: float
    count: int


# Rows shaped like an open claim (the first `?` made, the second `?` returned), to pad
# a device's claims with.
_PADDING_SQL = (
    "WITH RECURSIVE pad(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM pad WHERE n < ?) "
    "SELECT printf('%032d', n) AS camera_id, '' AS org, '' AS device_id, '' AS name, "
    "0.0 AS created, printf('%032d', n) AS token_jti, NULL AS hello_at, NULL AS last_seen, "
    "zeroblob(32) AS key, '' AS token, 0.0 AS claimed_at, NULL AS proven_at, "
    "NULL AS moved_at, NULL AS dropped_at FROM pad WHERE n <= ?"
)


class DevicesStore(Aggregate):
    def __init__(self, database: Database) -> None:
        super().__init__(database)
        # device_id -> its places, for devices with at least one open claim.
        self._places: dict[str, tuple[claims.Place, ...]] = {}
        self._changed: set[str] = set()
        rows = self._db.execute(
            "SELECT * FROM cameras WHERE key IS NOT NULL ORDER BY device_id"
        ).fetchall()
        for device_id, group in groupby(rows, key=lambda row: str(row["device_id"])):
            self._places[device_id] = claims.places_for(from_row(Camera, r) for r in group)
        # The places of the devices a transaction changed are rebuilt once it ends (after
        # a rollback too: from what is in the table), whichever aggregate opened it.
        database.after_transaction(self._rebuild_places)

    # --- claims (cameras) ----------------------------------------------------------------

    def claim_places(self, device_id: str) -> tuple[claims.Place, ...]:
        """The places a poll of this device checks: always `MAX_OPEN_CLAIMS`, dummies in
        the empty ones (all of them for a device nobody claimed)."""
        return self._places.get(device_id, claims.EMPTY_PLACES)

    def _claims_changed(self, device_id: str) -> None:
        self._changed.add(device_id)
        if not self._db.in_transaction:
            self._rebuild_places()

    def _camera_changed(self, camera_id: str) -> None:
        row = self._db.execute(
            "SELECT device_id FROM cameras WHERE camera_id = ?", (camera_id,)
        ).fetchone()
        if row is not None:
            self._claims_changed(row["device_id"])

    def _rebuild_places(self) -> None:
        changed, self._changed = self._changed, set()
        for device_id in changed:
            places = claims.places_for(self.claims_on(device_id))
            if places[0].camera_id:
                self._places[device_id] = places
            else:
                self._places.pop(device_id, None)

    def insert_camera(self, camera: Camera) -> None:
        insert(self._db, "cameras", to_columns(camera))
        self._claims_changed(camera.device_id)

    def get_camera(self, camera_id: str) -> Camera | None:
        row = self._db.execute("SELECT * FROM cameras WHERE camera_id = ?", (camera_id,)).fetchone()
        return None if row is None else from_row(Camera, row)

    def camera_of(self, org: str, device_id: str) -> Camera | None:
        """The org's claim on a device (at most one per org)."""
        row = self._db.execute(
            "SELECT * FROM cameras WHERE org = ? AND device_id = ?", (org, device_id)
        ).fetchone()
        return None if row is None else from_row(Camera, row)

    def camera_by_jti(self, jti: str) -> Camera | None:
        row = self._db.execute("SELECT * FROM cameras WHERE token_jti = ?", (jti,)).fetchone()
        return None if row is None else from_row(Camera, row)

    def cameras_of(self, org: str) -> list[Camera]:
        rows = self._db.execute(
            "SELECT * FROM cameras WHERE org = ? ORDER BY created, rowid", (org,)
        ).fetchall()
        return [from_row(Camera, row) for row in rows]

    def claims_on(self, device_id: str, *, pad_to: int = 0) -> list[Camera]:
        """Every open claim on a device (expiry is the caller's to judge), oldest first.

        `pad_to`: map that many rows whatever the count, dummies for the missing ones
        (thrown away). The poll does not read claims here (`claim_places`).
        """
        rows = self._db.execute(
            "SELECT * FROM cameras WHERE device_id = ? AND key IS NOT NULL ORDER BY created, rowid",
            (device_id,),
        ).fetchall()
        claims_found = [from_row(Camera, row) for row in rows]
        if pad_to > 0:
            padding = self._db.execute(_PADDING_SQL, (pad_to, pad_to - len(rows))).fetchall()
            for row in padding:
                from_row(Camera, row)
        return claims_found

    def set_claim_password(self, camera_id: str, key: bytes, at: float) -> None:
        """A new K; `claimed_at` says when. The claim's age (and expiry) stay its add's."""
        self._db.execute(
            "UPDATE cameras SET key = ?, claimed_at = ? WHERE camera_id = ?",
            (key, at, camera_id),
        )
        self._camera_changed(camera_id)

    def mark_proven(self, camera_id: str, at: float) -> None:
        """The first time a poll proved the claim's K (and it won)."""
        first = self._db.execute(
            "UPDATE cameras SET proven_at = ? WHERE camera_id = ? AND proven_at IS NULL",
            (at, camera_id),
        ).rowcount
        if first:
            self._camera_changed(camera_id)

    def mark_moved(self, camera_id: str, at: float) -> None:
        """Close the claim (another org's won its device) and revoke its token."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT device_id, token_jti FROM cameras WHERE camera_id = ?", (camera_id,)
            ).fetchone()
            if row is None:
                return
            db.execute(
                "UPDATE cameras SET moved_at = ?, key = NULL, token = NULL WHERE camera_id = ?",
                (at, camera_id),
            )
            self.revoke(row["token_jti"], at)
            self._claims_changed(row["device_id"])

    def mark_dropped(self, camera_id: str, at: float) -> None:
        """Close an unproven claim; the camera stays listed (no rule of today's mock does
        this: a claim outside the places waits, and expiry is judged when asked)."""
        self._db.execute(
            "UPDATE cameras SET dropped_at = ?, key = NULL WHERE camera_id = ?", (at, camera_id)
        )
        self._camera_changed(camera_id)

    def delete_camera(self, camera_id: str, at: float) -> Camera | None:
        """Remove the camera (its claim and its poll history with it) and revoke its token,
        in one transaction."""
        with self.transaction() as db:
            row = db.execute("SELECT * FROM cameras WHERE camera_id = ?", (camera_id,)).fetchone()
            if row is None:
                return None
            camera = from_row(Camera, row)
            db.execute("DELETE FROM cameras WHERE camera_id = ?", (camera_id,))
            db.execute("DELETE FROM poll_log WHERE camera_id = ?", (camera_id,))
            self.revoke(camera.token_jti, at)
            self._claims_changed(camera.device_id)
        return camera

    def camera_seen(self, camera_id: str, at: float, *, hello: bool = False) -> None:
        if hello:
            first = self._db.execute(
                "UPDATE cameras SET hello_at = ? WHERE camera_id = ? AND hello_at IS NULL",
                (at, camera_id),
            ).rowcount
            if first:  # connected now: its place is kept from here on
                self._camera_changed(camera_id)
        self._db.execute("UPDATE cameras SET last_seen = ? WHERE camera_id = ?", (at, camera_id))

    # --- NVR entries ---------------------------------------------------------------------

    def provisioning_entry(self, device_id: str) -> ProvisioningEntry | None:
        row = self._db.execute(
            "SELECT device_id, key, token FROM provisioning WHERE device_id = ?", (device_id,)
        ).fetchone()
        return None if row is None else from_row(ProvisioningEntry, row)

    def put_nvr_entry(self, device_id: str, secret: bytes, token: str) -> None:
        """Offer `token` to the NVR of `device_id` that proves `secret` (it replaces the
        entry there: one NVR entry per device ID)."""
        self._db.execute(
            "INSERT OR REPLACE INTO provisioning(device_id, key, token, camera_id) "
            "VALUES (?, ?, ?, NULL)",
            (device_id, secret, token),
        )

    def withdraw_nvr_entry(self, device_id: str, jti: str) -> None:
        """Remove the NVR entry of `device_id` if it offers the token `jti` (another
        organization's offered token stays)."""
        with self.transaction() as db:
            entry = db.execute(
                "SELECT token FROM provisioning WHERE device_id = ? AND camera_id IS NULL",
                (device_id,),
            ).fetchone()
            if entry is not None and _jti_of(entry["token"]) == jti:
                db.execute(
                    "DELETE FROM provisioning WHERE device_id = ? AND camera_id IS NULL",
                    (device_id,),
                )

    # --- revoked tokens ------------------------------------------------------------------

    def is_revoked(self, jti: str) -> bool:
        row = self._db.execute("SELECT 1 FROM revoked_jtis WHERE jti = ?", (jti,)).fetchone()
        return row is not None

    def revoke(self, jti: str, at: float) -> None:
        """No device may use the token `jti` from now on (revoking it again changes nothing)."""
        self._db.execute(
            "INSERT OR IGNORE INTO revoked_jtis(jti, revoked_at) VALUES (?, ?)", (jti, at)
        )

    # --- replay protection ---------------------------------------------------------------

    def remember_nonce(self, nonce: str, ts: int) -> bool:
        """Record a nonce; False if it was seen before (a replay)."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO nonces(nonce, ts) VALUES (?, ?)", (nonce, ts)
        )
        return cursor.rowcount == 1

    def prune_nonces(self, older_than_ts: float) -> None:
        self._db.execute("DELETE FROM nonces WHERE ts < ?", (older_than_ts,))

    # --- the poll log (per claim, and aggregated) ------------------------------------------

    def log_polls(
        self,
        records: Iterable[PollRecord],
        aggregated: Iterable[Aggregated],
        *,
        per_claim: int | None = None,
    ) -> None:
        """Write a batch: claim rows as they are (then each claim written to keeps its
        newest `per_claim`), aggregated rows added to their period's."""
        with self.transaction() as db:
            written: set[str] = set()
            for record in records:
                insert(db, "poll_log", to_columns(record))
                if record.camera_id is not None:
                    written.add(record.camera_id)
            if per_claim is not None:
                for camera_id in written:
                    db.execute(
                        "DELETE FROM poll_log WHERE camera_id = ? AND id <= (SELECT id FROM "
                        "poll_log WHERE camera_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                        (camera_id, camera_id, per_claim),
                    )
            for item in aggregated:
                cursor = db.execute(
                    "UPDATE poll_log SET count = count + ? WHERE camera_id IS NULL "
                    "AND device_id = '' AND result = ? AND at = ?",
                    (item.count, item.result, item.period_start),
                )
                if cursor.rowcount == 0:
                    insert(
                        db,
                        "poll_log",
                        to_columns(
                            PollRecord("", item.period_start, item.result, 0, 0.0, None, item.count)
                        ),
                    )

    def polls(self, camera_id: str, limit: int = 1000) -> list[PollRecord]:
        """A camera's (claim's) newest `limit` poll rows, oldest first."""
        rows = self._db.execute(
            "SELECT * FROM poll_log WHERE camera_id = ? ORDER BY id DESC LIMIT ?",
            (camera_id, limit),
        ).fetchall()
        return [from_row(PollRecord, row) for row in reversed(rows)]

    def aggregated_polls(self, limit: int = 1000) -> list[PollRecord]:
        rows = self._db.execute(
            "SELECT * FROM poll_log WHERE camera_id IS NULL ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [from_row(PollRecord, row) for row in reversed(rows)]

    def poll_log_rows(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM poll_log").fetchone()[0])

    def poll_rows_of_device(self, device_id: str) -> int:
        """Rows of a device's claims (of every org)."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM poll_log WHERE device_id = ? AND camera_id IS NOT NULL",
            (device_id,),
        ).fetchone()
        return int(row[0])

    def prune_poll_log(self, older_than: float, keep: int) -> int:
        """Drop rows older than `older_than`, then all but the newest `keep` of the rows
        that are nobody's: the aggregates, and rows whose claim is gone. A claim's rows are
        bounded by their own count (`log_polls`), never by anyone else's. How many went."""
        with self.transaction() as db:
            gone = db.execute("DELETE FROM poll_log WHERE at < ?", (older_than,)).rowcount
            gone += db.execute(
                "DELETE FROM poll_log WHERE id IN (SELECT id FROM poll_log WHERE "
                "camera_id IS NULL OR camera_id NOT IN (SELECT camera_id FROM cameras) "
                "ORDER BY id DESC LIMIT -1 OFFSET ?)",
                (keep,),
            ).rowcount
        return gone

    # --- the poll trace (test hooks only) --------------------------------------------------

    def trace_polls(self, records: Iterable[PollRecord], keep: int) -> None:
        with self.transaction() as db:
            for record in records:
                insert(db, "poll_trace", to_columns(record, skip=("camera_id", "count")))
            db.execute(
                "DELETE FROM poll_trace WHERE id <= (SELECT id FROM poll_trace "
                "ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (keep,),
            )

    def traced_polls(self, device_id: str | None = None, limit: int = 1000) -> list[PollRecord]:
        """The newest `limit` polls seen (of one device, or all), oldest first."""
        if device_id is None:
            rows = self._db.execute(
                "SELECT * FROM poll_trace ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM poll_trace WHERE device_id = ? ORDER BY id DESC LIMIT ?",
                (device_id, limit),
            ).fetchall()
        return [
            PollRecord(row["device_id"], row["at"], row["result"], row["wait"], row["held_s"])
            for row in reversed(rows)
        ]


def _jti_of(token: str | None) -> str | None:
    """The jti of a token this cloud signed (its signature is not checked again)."""
    if not token:
        return None
    with contextlib.suppress(TokenError, ValueError, RecursionError):
        payload = json.loads(split_token(token)[0])
        if isinstance(payload, dict) and isinstance(payload.get("jti"), str):
            return str(payload["jti"])
    return None
