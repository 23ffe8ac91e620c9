"""Devices and claims: cameras with their provisioning entries, revoked tokens, poll
nonces and the poll log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cloud_mock.store.db import Aggregate, from_row, insert, to_columns


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


class DevicesStore(Aggregate):
    # --- cameras and provisioning --------------------------------------------------------

    def add_camera(self, camera: Camera, key: bytes, token: str) -> None:
        """Create the camera and its provisioning entry together."""
        with self.transaction() as db:
            insert(db, "cameras", to_columns(camera))
            # A stale entry without a camera (never made by this code) must not block.
            db.execute(
                "INSERT OR REPLACE INTO provisioning(device_id, key, token, camera_id) "
                "VALUES (?, ?, ?, ?)",
                (camera.device_id, key, token, camera.camera_id),
            )

    def camera_by_device(self, device_id: str) -> Camera | None:
        row = self._db.execute("SELECT * FROM cameras WHERE device_id = ?", (device_id,)).fetchone()
        return None if row is None else from_row(Camera, row)

    def get_camera(self, camera_id: str) -> Camera | None:
        row = self._db.execute("SELECT * FROM cameras WHERE camera_id = ?", (camera_id,)).fetchone()
        return None if row is None else from_row(Camera, row)

    def camera_by_jti(self, jti: str) -> Camera | None:
        row = self._db.execute("SELECT * FROM cameras WHERE token_jti = ?", (jti,)).fetchone()
        return None if row is None else from_row(Camera, row)

    def cameras_of(self, org: str) -> list[Camera]:
        rows = self._db.execute(
            "SELECT * FROM cameras WHERE org = ? ORDER BY created, rowid", (org,)
        ).fetchall()
        return [from_row(Camera, row) for row in rows]

    def delete_camera(self, camera_id: str, at: float) -> Camera | None:
        """Remove camera + provisioning entry and revoke its token, in one transaction."""
        with self.transaction() as db:
            row = db.execute("SELECT * FROM cameras WHERE camera_id = ?", (camera_id,)).fetchone()
            if row is None:
                return None
            camera = from_row(Camera, row)
            db.execute("DELETE FROM provisioning WHERE device_id = ?", (camera.device_id,))
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
        insert(self._db, "poll_log", to_columns(record))

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
        return [from_row(PollRecord, row) for row in reversed(rows)]
