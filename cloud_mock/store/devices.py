"""Devices and claims: cameras (each one an organization's claim on a device ID, with its
K and signed token), NVR provisioning entries, revoked tokens, poll nonces, the poll log
and the test hooks' poll trace.

A claim is *open* while it has a key: it is closed when another organization's claim
wins its device (`moved_at`) or when it is dropped unproven (`dropped_at`: expired, or
pushed out by the bound). Which claims count, which wins and which are dropped is
decided by the services (cameras.py, provisioning.py); this module stores the outcome.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cloud_mock.store.db import Aggregate, from_row, insert, to_columns


@dataclass(frozen=True)
class Camera:
    """A camera of an org = its claim on `device_id`."""

    camera_id: str
    org: str
    device_id: str
    name: str
    created: float
    token_jti: str
    hello_at: float | None
    last_seen: float | None
    key: bytes | None  # K = scrypt(password, device_id); None once the claim is closed
    token: str | None  # the signed token, sealed for the device when this claim wins
    claimed_at: float  # when its password was set (add, or PATCH while waiting)
    proven_at: float | None = None  # when a poll proved K and this claim won
    moved_at: float | None = None  # when another org's claim won the device from it
    dropped_at: float | None = None  # closed unproven (expired or pushed out)

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
    # --- claims (cameras) ----------------------------------------------------------------

    def insert_camera(self, camera: Camera) -> None:
        insert(self._db, "cameras", to_columns(camera))

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
        (thrown away), so that the call costs the same for an unknown device and for one
        with claims (the poll check must not tell them apart by its time).
        """
        rows = self._db.execute(
            "SELECT * FROM cameras WHERE device_id = ? AND key IS NOT NULL "
            "ORDER BY claimed_at, rowid",
            (device_id,),
        ).fetchall()
        # Always both queries (the second may return nothing), for the same cost.
        padding = self._db.execute(_PADDING_SQL, (pad_to, pad_to - len(rows))).fetchall()
        claims = [from_row(Camera, row) for row in rows]
        for row in padding:  # the same work on rows of the same shape, thrown away
            from_row(Camera, row)
        return claims

    def set_claim_password(self, camera_id: str, key: bytes, at: float) -> None:
        self._db.execute(
            "UPDATE cameras SET key = ?, claimed_at = ? WHERE camera_id = ?",
            (key, at, camera_id),
        )

    def mark_proven(self, camera_id: str, at: float) -> None:
        self._db.execute("UPDATE cameras SET proven_at = ? WHERE camera_id = ?", (at, camera_id))

    def mark_moved(self, camera_id: str, at: float) -> None:
        """Close the claim (another org's won its device) and revoke its token."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT token_jti FROM cameras WHERE camera_id = ?", (camera_id,)
            ).fetchone()
            if row is None:
                return
            db.execute(
                "UPDATE cameras SET moved_at = ?, key = NULL, token = NULL WHERE camera_id = ?",
                (at, camera_id),
            )
            self._revoke(row["token_jti"], at)

    def mark_dropped(self, camera_id: str, at: float) -> None:
        """Close an unproven claim (expired or pushed out); the camera stays listed."""
        self._db.execute(
            "UPDATE cameras SET dropped_at = ?, key = NULL WHERE camera_id = ?", (at, camera_id)
        )

    def delete_camera(self, camera_id: str, at: float) -> Camera | None:
        """Remove the camera (its claim with it) and revoke its token, in one transaction."""
        with self.transaction() as db:
            row = db.execute("SELECT * FROM cameras WHERE camera_id = ?", (camera_id,)).fetchone()
            if row is None:
                return None
            camera = from_row(Camera, row)
            db.execute("DELETE FROM cameras WHERE camera_id = ?", (camera_id,))
            self._revoke(camera.token_jti, at)
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

    # --- NVR entries ---------------------------------------------------------------------

    def provisioning_entry(self, device_id: str) -> ProvisioningEntry | None:
        row = self._db.execute(
            "SELECT device_id, key, token FROM provisioning WHERE device_id = ?", (device_id,)
        ).fetchone()
        return None if row is None else from_row(ProvisioningEntry, row)

    # --- revoked tokens ------------------------------------------------------------------

    def is_revoked(self, jti: str) -> bool:
        row = self._db.execute("SELECT 1 FROM revoked_jtis WHERE jti = ?", (jti,)).fetchone()
        return row is not None

    def _revoke(self, jti: str, at: float) -> None:
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

    def log_polls(self, records: Iterable[PollRecord], aggregated: Iterable[Aggregated]) -> None:
        """Write a batch: claim rows as they are, aggregated rows added to their period's."""
        with self.transaction() as db:
            for record in records:
                insert(db, "poll_log", to_columns(record))
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

    def prune_poll_log(self, older_than: float, keep: int) -> int:
        """Drop rows older than `older_than` and all but the newest `keep`; how many went."""
        with self.transaction() as db:
            gone = db.execute("DELETE FROM poll_log WHERE at < ?", (older_than,)).rowcount
            gone += db.execute(
                "DELETE FROM poll_log WHERE id <= (SELECT id FROM poll_log "
                "ORDER BY id DESC LIMIT 1 OFFSET ?)",
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
