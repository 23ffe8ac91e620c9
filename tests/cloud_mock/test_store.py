"""The SQLite store: cameras, revocation, nonces, poll log, sessions, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_mock.store import (
    Activation,
    Camera,
    Conflict,
    Link,
    PollRecord,
    RegistrationToken,
    Registrator,
    Session,
    Store,
    User,
)


def camera(camera_id: str = "c1", device_id: str = "aa:bb:cc:dd:ee:01") -> Camera:
    return Camera(camera_id, "demo", device_id, "cam", 100.0, f"jti-{camera_id}", None, None)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store.open_in(tmp_path)
    store.upsert_org("demo", True)
    return store


def test_uses_wal(store: Store) -> None:
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_camera_with_provisioning_entry(store: Store) -> None:
    store.add_camera(camera(), b"k" * 32, "token-1")
    entry = store.provisioning_entry("aa:bb:cc:dd:ee:01")
    assert entry is not None
    assert (entry.key, entry.token) == (b"k" * 32, "token-1")
    assert store.camera_by_jti("jti-c1") == camera()


def test_delete_revokes(store: Store) -> None:
    store.add_camera(camera(), b"k" * 32, "token-1")
    assert store.delete_camera("c1", at=200.0) == camera()
    assert store.get_camera("c1") is None
    assert store.provisioning_entry("aa:bb:cc:dd:ee:01") is None
    assert store.is_revoked("jti-c1")
    assert store.delete_camera("c1", at=201.0) is None


def test_camera_seen(store: Store) -> None:
    store.add_camera(camera(), b"k" * 32, "t")
    store.camera_seen("c1", 150.0, hello=True)
    store.camera_seen("c1", 160.0)
    store.camera_seen("c1", 170.0, hello=True)
    seen = store.get_camera("c1")
    assert seen is not None
    assert (seen.hello_at, seen.last_seen) == (150.0, 170.0)


def test_nonces(store: Store) -> None:
    assert store.remember_nonce("n1", 1000)
    assert not store.remember_nonce("n1", 1000)
    assert store.remember_nonce("n2", 2000)
    store.prune_nonces(1500)
    assert store.remember_nonce("n1", 1000)  # pruned: out of the window anyway
    assert not store.remember_nonce("n2", 2000)


def test_poll_log(store: Store) -> None:
    for i, device in enumerate(["a", "b", "a", "a"]):
        store.log_poll(PollRecord(device, float(i), "none", 0, 0.0))
    assert [p.at for p in store.polls("a")] == [0.0, 2.0, 3.0]
    assert [p.at for p in store.polls("a", limit=2)] == [2.0, 3.0]
    assert len(store.polls()) == 4


def test_sessions(store: Store) -> None:
    store.upsert_user(User("u", "demo", "owner", "hash", None))
    store.add_session(Session("s1", "u", "d1", "sw", 1.0, 1.0), "h1")
    store.add_session(Session("s2", "u", "d2", "sw", 2.0, 2.0), "h2")
    assert [s.id for s in store.sessions_of("u")] == ["s2", "s1"]
    store.touch_session("s1", 5.0)
    assert store.session_by_secret("h1") == Session("s1", "u", "d1", "sw", 1.0, 5.0)
    assert not store.delete_session("s1", "someone-else")
    assert store.delete_session("s1", "u")
    assert store.session_by_secret("h1") is None


def test_state_survives_reopen(tmp_path: Path) -> None:
    store = Store.open_in(tmp_path)
    store.upsert_org("demo", True)
    store.add_camera(camera(), b"k" * 32, "t")
    store.set_settings({"captcha": {"after_failures": 3}})
    store.close()
    store = Store.open_in(tmp_path)
    assert store.get_camera("c1") == camera()
    assert store.settings() == {"captcha": {"after_failures": 3}}
    assert store.org_is_business("demo") is True
    assert store.org_is_business("nope") is None


def _registrator(rid: str = "r1") -> Registrator:
    return Registrator(rid, "demo", "nvr", "", "virtual", 100.0, {}, {})


def _link(device_id: str = "aa:bb:cc:00:00:01", jti: str = "jti-r") -> Link:
    return Link(device_id, "rack", "1.0", [], jti, 120.0)


def test_a_registration_token_is_used_once(store: Store) -> None:
    store.add_registration_token(RegistrationToken("t1", "demo", "admin", "", "", 1.0, 9.0), "h")
    store.add_registrator_by_token("t1", _registrator("r1"), _link())
    with pytest.raises(Conflict):
        store.add_registrator_by_token("t1", _registrator("r2"), _link("aa:bb:cc:00:00:02", "j2"))
    assert store.get_registrator("r2") is None  # rolled back
    token = store.registration_token_by_hash("h")
    assert token is not None
    assert (token.used_at, token.registrator_id) == (120.0, "r1")


def test_a_code_links_once(store: Store) -> None:
    code = Activation("AAAA-BBBB-CCCC", "aa:bb:cc:00:00:01", b"s" * 32, "n", "v", [], 1.0, 9.0)
    store.insert_activation(code)
    store.add_registrator(_registrator("r1"))
    store.add_registrator(_registrator("r2"))
    store.link_by_code("r1", code.code, _link(), "nvr-token")
    entry = store.provisioning_entry("aa:bb:cc:00:00:01")
    assert entry is not None
    assert (entry.key, entry.token) == (b"s" * 32, "nvr-token")
    with pytest.raises(Conflict):
        store.link_by_code("r2", code.code, _link(jti="j2"), "other")

    removed = store.delete_registrator("r1", 200.0)
    assert removed is not None
    assert store.is_revoked("jti-r")
    assert store.provisioning_entry("aa:bb:cc:00:00:01") is None
