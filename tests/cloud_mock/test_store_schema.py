"""The store's schema version, its migrations, the generic row mapping and file modes."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from cloud_mock.store import DB_NAME, Activation, Registrator, SchemaTooNew, Store, User
from cloud_mock.store.db import from_row, schema_version
from cloud_mock.store.migrations import MIGRATIONS

# The DDL of the store before it had a schema version (copied, not imported: the test
# must keep describing that old file even when the migrations change).
UNVERSIONED_DDL = """
CREATE TABLE orgs (name TEXT PRIMARY KEY, business INTEGER NOT NULL);
CREATE TABLE users (login TEXT PRIMARY KEY, org TEXT NOT NULL REFERENCES orgs(name),
    role TEXT NOT NULL, password_hash TEXT NOT NULL, max_sessions INTEGER);
CREATE TABLE sessions (id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL UNIQUE,
    login TEXT NOT NULL REFERENCES users(login) ON DELETE CASCADE, device TEXT NOT NULL,
    software TEXT NOT NULL, started REAL NOT NULL, last_activity REAL NOT NULL);
CREATE TABLE cameras (camera_id TEXT PRIMARY KEY, org TEXT NOT NULL REFERENCES orgs(name),
    device_id TEXT NOT NULL UNIQUE, name TEXT NOT NULL, created REAL NOT NULL,
    token_jti TEXT NOT NULL UNIQUE, hello_at REAL, last_seen REAL);
CREATE TABLE provisioning (device_id TEXT PRIMARY KEY, key BLOB NOT NULL, token TEXT,
    camera_id TEXT REFERENCES cameras(camera_id) ON DELETE CASCADE);
CREATE TABLE revoked_jtis (jti TEXT PRIMARY KEY, revoked_at REAL NOT NULL);
CREATE TABLE nonces (nonce TEXT PRIMARY KEY, ts INTEGER NOT NULL);
CREATE TABLE poll_log (id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL,
    at REAL NOT NULL, result TEXT NOT NULL, wait INTEGER NOT NULL, held_s REAL NOT NULL);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE registrators (id TEXT PRIMARY KEY, org TEXT NOT NULL REFERENCES orgs(name),
    name TEXT NOT NULL, note TEXT NOT NULL, device TEXT NOT NULL, created REAL NOT NULL,
    broadcast TEXT NOT NULL, archive TEXT NOT NULL, cameras TEXT NOT NULL DEFAULT '[]',
    pending_configure INTEGER NOT NULL DEFAULT 0, device_id TEXT UNIQUE,
    device_name TEXT NOT NULL DEFAULT '', version TEXT NOT NULL DEFAULT '',
    checks TEXT NOT NULL DEFAULT '[]', token_jti TEXT UNIQUE, linked_at REAL,
    hello_at REAL, last_seen REAL);
CREATE TABLE activations (code TEXT PRIMARY KEY, device_id TEXT NOT NULL,
    secret BLOB NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL, checks TEXT NOT NULL,
    created REAL NOT NULL, expires_at REAL NOT NULL, activated_at REAL, registrator_id TEXT);
CREATE TABLE registration_tokens (id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE,
    org TEXT NOT NULL REFERENCES orgs(name), created_by TEXT NOT NULL, title TEXT NOT NULL,
    note TEXT NOT NULL, created REAL NOT NULL, expires_at REAL NOT NULL, used_at REAL,
    registrator_id TEXT);
"""

OLD_ROWS = """
INSERT INTO orgs VALUES ('demo', 1), ('other', 0);
INSERT INTO users VALUES ('admin', 'demo', 'owner', 'h', NULL), ('bob', 'other', 'viewer', 'h2', 3);
INSERT INTO sessions VALUES ('s1', 'sh1', 'admin', 'dev', 'sw', 1.0, 2.0);
INSERT INTO cameras VALUES ('c1', 'demo', 'aa:bb:cc:dd:ee:01', 'door', 10.0, 'j1', 11.0, 12.0);
INSERT INTO cameras VALUES ('c2', 'other', 'aa:bb:cc:dd:ee:02', 'yard', 20.0, 'j2', NULL, NULL);
INSERT INTO provisioning VALUES ('aa:bb:cc:dd:ee:01', x'6b6b', 'token-1', 'c1');
INSERT INTO provisioning VALUES ('aa:bb:cc:dd:ee:02', x'6c6c', 'token-2', 'c2');
INSERT INTO revoked_jtis VALUES ('old-jti', 5.0);
INSERT INTO poll_log(device_id, at, result, wait, held_s)
    VALUES ('aa:bb:cc:dd:ee:01', 9.0, 'token', 50, 0.1);
INSERT INTO settings VALUES ('captcha', '"always"');
INSERT INTO registrators(id, org, name, note, device, created, broadcast, archive,
    device_id, token_jti)
    VALUES ('r1', 'demo', 'rack', '', 'virtual', 30.0, '{"enabled": true}', '{}', 'nvr-1', 'jr');
INSERT INTO activations
    VALUES ('AAAA-BBBB-CCCC', 'nvr-2', x'7373', 'n', 'v', '[]', 1.0, 99.0, NULL, NULL);
INSERT INTO registration_tokens VALUES ('t1', 'th', 'demo', 'admin', 'T', '', 1.0, 9.0, NULL, NULL);
"""


def _old_database(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(UNVERSIONED_DDL + OLD_ROWS)
    db.commit()
    db.close()


def test_a_new_database_is_at_the_newest_version(tmp_path: Path) -> None:
    store = Store.open_in(tmp_path)
    assert schema_version(store.database.db) == len(MIGRATIONS)
    store.close()


def test_an_unversioned_database_is_migrated_without_losing_rows(tmp_path: Path) -> None:
    _old_database(tmp_path / DB_NAME)
    store = Store.open_in(tmp_path)
    assert schema_version(store.database.db) == len(MIGRATIONS)
    assert store.accounts.get_user("bob") == User("bob", "other", "viewer", "h2", 3)
    assert [s.id for s in store.accounts.sessions_of("admin")] == ["s1"]
    assert store.accounts.org_is_business("other") is False
    door = store.devices.get_camera("c1")
    assert door is not None
    assert (door.device_id, door.name, door.token_jti, door.hello_at) == (
        "aa:bb:cc:dd:ee:01",
        "door",
        "j1",
        11.0,
    )
    # Each camera became its org's claim, with the K and token of its provisioning entry.
    assert (door.key, door.token, door.claimed_at, door.proven_at) == (b"kk", "token-1", 10.0, 11.0)
    yard = store.devices.get_camera("c2")
    assert yard is not None
    assert (yard.key, yard.token, yard.proven_at) == (b"ll", "token-2", None)
    assert [c.camera_id for c in store.devices.claims_on("aa:bb:cc:dd:ee:02")] == ["c2"]
    assert store.devices.provisioning_entry("aa:bb:cc:dd:ee:01") is None  # NVR entries only now
    assert store.devices.is_revoked("old-jti")
    assert [p.result for p in store.devices.polls("c1")] == ["token"]
    assert [p.result for p in store.devices.traced_polls("aa:bb:cc:dd:ee:01")] == ["token"]
    assert store.accounts.settings() == {"captcha": "always"}
    rack = store.registrators.get_registrator("r1")
    assert rack is not None
    assert (rack.broadcast, rack.device_id, rack.token_jti) == ({"enabled": True}, "nvr-1", "jr")
    code = store.registrators.get_activation("AAAA-BBBB-CCCC")
    assert code is not None
    assert code.secret == b"ss"
    assert store.registrators.registration_token_by_hash("th") is not None
    store.close()
    # Opening again runs nothing twice.
    store = Store.open_in(tmp_path)
    assert store.devices.get_camera("c1") is not None
    store.close()


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(SchemaTooNew, match="newer than this cloud_mock"):
        Store.open_in(tmp_path)


def test_rows_map_to_dataclasses_by_field_types(tmp_path: Path) -> None:
    store = Store.open_in(tmp_path)
    store.accounts.upsert_org("demo", True)
    registrator = Registrator("r1", "demo", "n", "", "virtual", 1.0, {"a": [1]}, {"days": 7})
    store.registrators.add_registrator(registrator)
    store.registrators.update_registrator("r1", cameras=[{"id": "x"}], pending_configure=True)
    got = store.registrators.get_registrator("r1")
    assert got is not None
    assert got.broadcast == {"a": [1]}
    assert got.cameras == [{"id": "x"}]
    assert got.pending_configure is True
    code = Activation("AAAA-BBBB-CCCC", "d", b"\x00\x01", "n", "v", [{"name": "c"}], 1.0, 2.0)
    store.registrators.insert_activation(code)
    row = store.database.db.execute("SELECT * FROM activations").fetchone()
    assert from_row(Activation, row) == code
    store.close()


def test_files_are_private_also_in_an_existing_lax_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    (data_dir / DB_NAME).touch(mode=0o644)
    (data_dir / DB_NAME).chmod(0o644)
    store = Store.open_in(data_dir)
    store.accounts.upsert_org("demo", True)  # the WAL exists now
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    for name in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm"):
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600, name
    store.close()
