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
    "AccountsStore",
    "Activation",
    "Camera",
    "Conflict",
    "DevicesStore",
    "Link",
    "PollRecord",
    "ProvisioningEntry",
    "Recording",
    "RegistrationToken",
    "Registrator",
    "RegistratorsStore",
    "SchemaTooNew",
    "Session",
    "Store",
    "StoreError",
    "User",
    "VideoStore",
]


class Store:
    """The aggregates over one database, each an object with its own rules: `accounts`
    (orgs, users, sessions, settings), `devices` (claims, NVR entries, revoked tokens,
    nonces, the poll log), `registrators` (virtual NVRs, activation codes, registration
    tokens; it changes the devices' tables only through `devices`) and `video`.

    They share one connection, so a change spanning two of them is atomic inside either
    one's `transaction()`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.database = Database(path)
        self.accounts = AccountsStore(self.database)
        self.devices = DevicesStore(self.database)
        self.registrators = RegistratorsStore(self.database, self.devices)
        self.video = VideoStore(self.database)  # docs/design.md §12.6

    @classmethod
    def open_in(cls, data_dir: Path) -> Store:
        return cls(data_dir / DB_NAME)

    def close(self) -> None:
        self.database.close()
