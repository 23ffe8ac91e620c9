"""The database under the store: one SQLite file (WAL), its file modes, its schema
version, and the one generic mapping between rows and dataclasses.

The file holds every token, every K and the password hashes, so it and its WAL/SHM
companions are created 0600 and the directory is made 0700, also when it already
existed with laxer modes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from cloud_mock.store.migrations import MIGRATIONS

DB_NAME = "cloud_mock.sqlite3"
DIR_MODE = 0o700
FILE_MODE = 0o600
_COMPANIONS = ("", "-wal", "-shm")

T = TypeVar("T")


class StoreError(Exception):
    """Base of the store's errors."""


class SchemaTooNew(StoreError):
    """The database was written by a newer cloud_mock than this one."""


class Database:
    """The connection, its transactions and its migrations; used from one thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        _secure_files(path)
        # Autocommit mode; multi-statement changes use `transaction` explicitly.
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        migrate(self.db)
        _secure_files(path)  # the WAL and SHM files exist now
        self._after: list[Callable[[], None]] = []

    def close(self) -> None:
        self.db.close()

    def after_transaction(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever a transaction ends, committed or rolled back: for what
        an aggregate keeps in memory beside its tables (the devices' claim places), which
        any aggregate's transaction may change, since they share the connection."""
        self._after.append(callback)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All or nothing; inside another transaction it is simply part of that one (the
        `after_transaction` callbacks run once, when the outermost one ends)."""
        if self.db.in_transaction:
            yield self.db
            return
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        finally:
            if not self.db.in_transaction:
                for callback in self._after:
                    callback()


def schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection) -> int:
    """Bring the schema to the newest version, one migration per transaction; the
    version reached. A database without a version is the unversioned first schema."""
    current = schema_version(db)
    if current > len(MIGRATIONS):
        raise SchemaTooNew(
            f"the database is at schema version {current}, newer than this cloud_mock "
            f"knows ({len(MIGRATIONS)}): use a newer cloud_mock or another --data-dir"
        )
    # Migrations that rebuild tables must not trip over foreign keys midway.
    db.execute("PRAGMA foreign_keys=OFF")
    try:
        for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(script):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {version:d}")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
    finally:
        db.execute("PRAGMA foreign_keys=ON")
    return schema_version(db)


def _statements(script: str) -> list[str]:
    """Split a migration into statements (sqlite3's executescript would commit)."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete statement in a migration: {pending.strip()[:60]!r}")
    return statements


def _secure_files(path: Path) -> None:
    os.chmod(path.parent, DIR_MODE)
    if not path.exists():
        # Created here with its final mode (SQLite gives the WAL and SHM files the
        # database's mode), never world-readable for an instant.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, FILE_MODE))
    for suffix in _COMPANIONS:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", FILE_MODE)


# --- rows <-> dataclasses -------------------------------------------------------------------


def from_row(cls: type[T], row: sqlite3.Row | dict[str, Any]) -> T:
    """Build dataclass `cls` from the row's columns of the same names: JSON columns for
    dict and list fields, 0/1 for bool, bytes for BLOBs (sqlite3 may hand back memoryview)."""
    return cls(**{name: convert(row[name]) for name, convert in _converters(cls)})


_CONVERTERS: dict[type, list[tuple[str, Callable[[Any], Any]]]] = {}


def _converters(cls: type) -> list[tuple[str, Callable[[Any], Any]]]:
    """Per field, how a column value becomes the field's value (worked out once a class)."""
    found = _CONVERTERS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = _CONVERTERS[cls] = [
            (f.name, _converter(hints[f.name])) for f in dataclasses.fields(cls)
        ]
    return found


def _converter(hint: Any) -> Callable[[Any], Any]:
    base = _strip_optional(hint)
    origin = typing.get_origin(base) or base
    if origin in (dict, list):
        return _nullable(json.loads)
    if origin is bool:
        return _nullable(bool)
    if origin is bytes:
        return _nullable(bytes)
    return _same


def _nullable(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else convert(value)


def _same(value: Any) -> Any:
    return value


def to_columns(obj: Any, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The dataclass as column values (the inverse of `from_row`)."""
    return {
        f.name: to_column(getattr(obj, f.name))
        for f in dataclasses.fields(obj)
        if f.name not in skip
    }


def to_column(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, bool):
        return int(value)
    return value


def insert(
    db: sqlite3.Connection,
    table: str,
    columns: dict[str, Any],
    *,
    verb: str = "INSERT",
    upsert_on: str | None = None,
) -> None:
    """INSERT the columns; with `upsert_on` (the key column) an existing row is updated
    in place (never deleted and re-inserted, which would cascade to its dependants)."""
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    sql = f"{verb} INTO {table}({names}) VALUES ({marks})"
    if upsert_on is not None:
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != upsert_on)
        sql += f" ON CONFLICT({upsert_on}) DO UPDATE SET {updates}"
    db.execute(sql, tuple(columns.values()))


def _strip_optional(hint: Any) -> Any:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


class Aggregate:
    """Base of the per-aggregate parts of the store: they share one `Database`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    @property
    def _db(self) -> sqlite3.Connection:
        return self._database.db

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """Group changes (also across aggregates) so that they land together or not at all."""
        return self._database.transaction()
