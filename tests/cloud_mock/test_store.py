"""The SQLite store: cameras, revocation, nonces, poll log, sessions, persistence."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.token_codec import sign_token
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
from cloud_mock.store.devices import _PADDING_SQL, Aggregated
from cloud_mock.store.registrators import secret_hash_of


def camera(
    camera_id: str = "c1", device_id: str = "aa:bb:cc:dd:ee:01", org: str = "demo"
) -> Camera:
    return Camera(
        camera_id,
        org,
        device_id,
        "cam",
        100.0,
        f"jti-{camera_id}",
        None,
        None,
        b"k" * 32,
        f"token-{camera_id}",
        100.0,
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store.open_in(tmp_path)
    store.upsert_org("demo", True)
    store.upsert_org("other", False)
    return store


def test_uses_wal(store: Store) -> None:
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_claims_of_several_orgs_on_one_device(store: Store) -> None:
    store.insert_camera(camera())
    store.insert_camera(camera("c2", org="other"))
    assert store.camera_by_jti("jti-c1") == camera()
    assert [c.camera_id for c in store.claims_on("aa:bb:cc:dd:ee:01")] == ["c1", "c2"]
    assert store.camera_of("other", "aa:bb:cc:dd:ee:01") == camera("c2", org="other")
    with pytest.raises(sqlite3.IntegrityError):  # one claim per org
        store.insert_camera(camera("c3"))


def test_a_moved_claim_is_closed_and_its_token_revoked(store: Store) -> None:
    store.insert_camera(camera())
    store.mark_proven("c1", 150.0)
    store.mark_moved("c1", 200.0)
    moved = store.get_camera("c1")
    assert moved is not None
    assert (moved.moved_at, moved.key, moved.token, moved.proven_at) == (200.0, None, None, 150.0)
    assert store.is_revoked("jti-c1")
    assert store.claims_on("aa:bb:cc:dd:ee:01") == []


def test_a_dropped_claim_is_closed_and_a_password_can_change(store: Store) -> None:
    store.insert_camera(camera())
    store.insert_camera(camera("c2", org="other"))
    store.set_claim_password("c2", b"n" * 32, 300.0)
    store.mark_dropped("c1", 310.0)
    [open_claim] = store.claims_on("aa:bb:cc:dd:ee:01")
    assert (open_claim.camera_id, open_claim.key, open_claim.claimed_at) == ("c2", b"n" * 32, 300.0)
    assert "nnnn" not in repr(open_claim)  # neither K nor the token in a log line
    assert "token-c2" not in repr(open_claim)


def test_delete_revokes(store: Store) -> None:
    store.insert_camera(camera())
    assert store.delete_camera("c1", at=200.0) == camera()
    assert store.get_camera("c1") is None
    assert store.claims_on("aa:bb:cc:dd:ee:01") == []
    assert store.is_revoked("jti-c1")
    assert store.delete_camera("c1", at=201.0) is None


def test_camera_seen(store: Store) -> None:
    store.insert_camera(camera())
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


def test_poll_log_rows_per_claim_and_aggregated(store: Store) -> None:
    rows = [PollRecord("d", float(i), "bad_proof", 0, 0.0, cid) for i, cid in enumerate("aba")]
    store.log_polls(rows, [Aggregated("unknown", 60.0, 5)])
    store.log_polls([], [Aggregated("unknown", 60.0, 2), Aggregated("unknown", 120.0, 1)])
    assert [p.at for p in store.polls("a")] == [0.0, 2.0]
    assert [p.at for p in store.polls("a", limit=1)] == [2.0]
    assert [(p.at, p.count) for p in store.aggregated_polls()] == [(60.0, 7), (120.0, 1)]
    assert store.poll_log_rows() == 5
    assert store.prune_poll_log(older_than=1.0, keep=2) == 3  # by age, then by count
    assert store.poll_log_rows() == 2


def test_poll_trace_keeps_the_newest(store: Store) -> None:
    for i, device in enumerate(["a", "b", "a", "a"]):
        store.trace_polls([PollRecord(device, float(i), "none", 0, 0.0)], keep=3)
    assert [p.at for p in store.traced_polls("a")] == [2.0, 3.0]
    assert len(store.traced_polls()) == 3


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
    store.insert_camera(camera())
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
    return Link(device_id, "rack", "1.0", [], jti, 120.0, secret_hash_of(b"s" * 32))


def _token(jti: str) -> str:
    """A signed token with this jti (the store reads only its jti)."""
    return sign_token({"v": 1, "jti": jti, "kind": "nvr"}, Ed25519PrivateKey.generate())


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
    other = Activation("DDDD-EEEE-FFFF", "aa:bb:cc:00:00:01", b"s" * 32, "n", "v", [], 1.5, 9.0)
    store.insert_activation(other)
    store.add_registrator(_registrator("r1"))
    store.add_registrator(_registrator("r2"))
    token = _token("jti-r")
    store.link_by_code("r1", code.code, _link(), token, 120.0)
    # The used code stays (activated); the NVR's unused ones are moot and go.
    assert [a.code for a in store.activations_of("aa:bb:cc:00:00:01")] == [code.code]
    # The token waits for its NVR: offered where its poll finds it.
    assert store.provisioning_entry("aa:bb:cc:00:00:01") is None
    assert store.offer_nvr_token("aa:bb:cc:00:00:01", 120.0, 900.0) is True
    assert store.offer_nvr_token("aa:bb:cc:00:00:01", 121.0, 900.0) is False  # no change
    entry = store.provisioning_entry("aa:bb:cc:00:00:01")
    assert entry is not None
    assert (entry.key, entry.token) == (b"s" * 32, token)
    with pytest.raises(Conflict):
        store.link_by_code("r2", code.code, _link(jti="j2"), _token("j2"), 130.0)

    removed = store.delete_registrator("r1", 200.0)
    assert removed is not None
    assert store.is_revoked("jti-r")
    assert store.provisioning_entry("aa:bb:cc:00:00:01") is None


def test_padding_the_claims_changes_nothing_but_the_work(store: Store) -> None:
    store.insert_camera(camera())
    assert store.claims_on("aa:bb:cc:dd:ee:01", pad_to=8) == [camera()]
    assert store.claims_on("aa:bb:cc:dd:ee:99", pad_to=8) == []
    padding = store._db.execute(_PADDING_SQL, (8, 7)).fetchall()
    assert len(padding) == 7
    assert set(padding[0].keys()) == {
        r[1] for r in store._db.execute("PRAGMA table_info(cameras)").fetchall()
    }
