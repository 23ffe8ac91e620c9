"""Video settings of the mock (docs/design.md §12.6): recording mode and retention per
video source. Its own aggregate object (`store.video`), not mixed into the others."""

from __future__ import annotations

from dataclasses import dataclass

from cloud_mock.store.db import Aggregate, from_row

MODES = ("off", "continuous")
DEFAULT_RETENTION_DAYS = 7


@dataclass(frozen=True)
class Recording:
    mode: str = "off"  # "off" | "continuous"
    retention_days: int = DEFAULT_RETENTION_DAYS

    def to_json(self) -> dict[str, object]:
        return {"mode": self.mode, "retention_days": self.retention_days}


@dataclass(frozen=True)
class RecordingRow:
    source: str
    org: str
    mode: str
    retention_days: int
    changed: float

    @property
    def recording(self) -> Recording:
        return Recording(self.mode, self.retention_days)


class VideoStore(Aggregate):
    def recording(self, source: str) -> Recording:
        row = self._db.execute(
            "SELECT mode, retention_days FROM recording WHERE source = ?", (source,)
        ).fetchone()
        return Recording(row["mode"], row["retention_days"]) if row else Recording()

    def set_recording(self, source: str, org: str, recording: Recording, now: float) -> None:
        self._db.execute(
            "INSERT INTO recording(source, org, mode, retention_days, changed)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(source) DO UPDATE SET"
            " mode = excluded.mode, retention_days = excluded.retention_days,"
            " changed = excluded.changed",
            (source, org, recording.mode, recording.retention_days, now),
        )

    def recordings(self) -> list[RecordingRow]:
        """Every source with settings (recording or not), for the recorder and pruner."""
        rows = self._db.execute("SELECT * FROM recording ORDER BY source").fetchall()
        return [from_row(RecordingRow, row) for row in rows]

    def forget(self, source: str) -> None:
        self._db.execute("DELETE FROM recording WHERE source = ?", (source,))

    def forget_prefix(self, prefix: str) -> None:
        """Every source under `prefix` (an NVR's cameras when the NVR goes)."""
        self._db.execute(
            "DELETE FROM recording WHERE substr(source, 1, ?) = ?", (len(prefix), prefix)
        )
