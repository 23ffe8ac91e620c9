"""Persistent state of the mock: one SQLite database (WAL) in the data directory, split
by aggregate (accounts and sessions; devices and claims; registrators and activations).

The store keeps rows and answers queries; time, keys and policy (who may claim what,
which code may replace which) come from the services that call it.  It is used from the
event-loop thread only (every query is a local, indexed, sub-millisecond operation, so
no thread hop is worth it).
"""

from __future__ import annotations

from pathlib import Path

from cloud_mock.store.accounts import AccountsStore, Session, User
from cloud_mock.store.db import DB_NAME, Database, SchemaTooNew, StoreError
from cloud_mock.store.devices import Camera, DevicesStore, PollRecord, ProvisioningEntry
from cloud_mock.store.registrators import (
    Activation,
    Conflict,
    Link,
    RegistrationToken,
    Registrator,
    RegistratorsStore,
)
from cloud_mock.store.video import Recording, VideoStore

__all__ = [
    "DB_NAME",
    "Activation",
    "Camera",
    "Conflict",
    "Link",
    "PollRecord",
    "ProvisioningEntry",
    "Recording",
    "RegistrationToken",
    "Registrator",
    "SchemaTooNew",
    "Session",
    "Store",
    "StoreError",
    "User",
    "VideoStore",
]


class Store(AccountsStore, DevicesStore, RegistratorsStore):
    """The three aggregates over one database (one object, so that a change spanning
    two of them can share a transaction)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        database = Database(path)
        super().__init__(database)
        self.video = VideoStore(database)  # an aggregate of its own (§12.6)

    @classmethod
    def open_in(cls, data_dir: Path) -> Store:
        return cls(data_dir / DB_NAME)

    def close(self) -> None:
        self._database.close()
