"""The SQLite store: cameras, revocation, nonces, poll log, sessions, persistence."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
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
    RegistratorsStore,
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
    store.accounts.upsert_org("demo", True)
    store.accounts.upsert_org("other", False)
    return store


def test_uses_wal(store: Store) -> None:
    assert store.database.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_claims_of_several_orgs_on_one_device(store: Store) -> None:
    store.devices.insert_camera(camera())
    store.devices.insert_camera(camera("c2", org="other"))
    assert store.devices.camera_by_jti("jti-c1") == camera()
    assert [c.camera_id for c in store.devices.claims_on("aa:bb:cc:dd:ee:01")] == ["c1", "c2"]
    assert store.devices.camera_of("other", "aa:bb:cc:dd:ee:01") == camera("c2", org="other")
    with pytest.raises(sqlite3.IntegrityError):  # one claim per org
        store.devices.insert_camera(camera("c3"))


def test_a_moved_claim_is_closed_and_its_token_revoked(store: Store) -> None:
    store.devices.insert_camera(camera())
    store.devices.mark_proven("c1", 150.0)
    store.devices.mark_moved("c1", 200.0)
    moved = store.devices.get_camera("c1")
    assert moved is not None
    assert (moved.moved_at, moved.key, moved.token, moved.proven_at) == (200.0, None, None, 150.0)
    assert store.devices.is_revoked("jti-c1")
    assert store.devices.claims_on("aa:bb:cc:dd:ee:01") == []


def test_a_dropped_claim_is_closed_and_a_password_can_change(store: Store) -> None:
    store.devices.insert_camera(camera())
    store.devices.insert_camera(camera("c2", org="other"))
    store.devices.set_claim_password("c2", b"n" * 32, 300.0)
    store.devices.mark_dropped("c1", 310.0)
    [open_claim] = store.devices.claims_on("aa:bb:cc:dd:ee:01")
    assert (open_claim.camera_id, open_claim.key, open_claim.claimed_at) == ("c2", b"n" * 32, 300.0)
    assert "nnnn" not in repr(open_claim)  # neither K nor the token in a log line
    assert "token-c2" not in repr(open_claim)


def test_delete_revokes(store: Store) -> None:
    store.devices.insert_camera(camera())
    assert store.devices.delete_camera("c1", at=200.0) == camera()
    assert store.devices.get_camera("c1") is None
    assert store.devices.claims_on("aa:bb:cc:dd:ee:01") == []
    assert store.devices.is_revoked("jti-c1")
    assert store.devices.delete_camera("c1", at=201.0) is None


def test_camera_seen(store: Store) -> None:
    store.devices.insert_camera(camera())
    store.devices.camera_seen("c1", 150.0, hello=True)
    store.devices.camera_seen("c1", 160.0)
    store.devices.camera_seen("c1", 170.0, hello=True)
    seen = store.devices.get_camera("c1")
    assert seen is not None
    assert (seen.hello_at, seen.last_seen) == (150.0, 170.0)


def test_nonces(store: Store) -> None:
    assert store.devices.remember_nonce("n1", 1000)
    assert not store.devices.remember_nonce("n1", 1000)
    assert store.devices.remember_nonce("n2", 2000)
    store.devices.prune_nonces(1500)
    assert store.devices.remember_nonce("n1", 1000)  # pruned: out of the window anyway
    assert not store.devices.remember_nonce("n2", 2000)


def test_poll_log_rows_per_claim_and_aggregated(store: Store) -> None:
    rows = [PollRecord("d", float(i), "bad_proof", 0, 0.0, cid) for i, cid in enumerate("aba")]
    store.devices.log_polls(rows, [Aggregated("unknown", 60.0, 5)])
    store.devices.log_polls([], [Aggregated("unknown", 60.0, 2), Aggregated("unknown", 120.0, 1)])
    assert [p.at for p in store.devices.polls("a")] == [0.0, 2.0]
    assert [p.at for p in store.devices.polls("a", limit=1)] == [2.0]
    assert [(p.at, p.count) for p in store.devices.aggregated_polls()] == [(60.0, 7), (120.0, 1)]
    assert store.devices.poll_log_rows() == 5
    assert store.devices.prune_poll_log(older_than=1.0, keep=2) == 3  # by age, then by count
    assert store.devices.poll_log_rows() == 2


def test_poll_trace_keeps_the_newest(store: Store) -> None:
    for i, device in enumerate(["a", "b", "a", "a"]):
        store.devices.trace_polls([PollRecord(device, float(i), "none", 0, 0.0)], keep=3)
    assert [p.at for p in store.devices.traced_polls("a")] == [2.0, 3.0]
    assert len(store.devices.traced_polls()) == 3


def test_sessions(store: Store) -> None:
    store.accounts.upsert_user(User("u", "demo", "owner", "hash", None))
    store.accounts.add_session(Session("s1", "u", "d1", "sw", 1.0, 1.0), "h1")
    store.accounts.add_session(Session("s2", "u", "d2", "sw", 2.0, 2.0), "h2")
    assert [s.id for s in store.accounts.sessions_of("u")] == ["s2", "s1"]
    store.accounts.touch_session("s1", 5.0)
    assert store.accounts.session_by_secret("h1") == Session("s1", "u", "d1", "sw", 1.0, 5.0)
    assert not store.accounts.delete_session("s1", "someone-else")
    assert store.accounts.delete_session("s1", "u")
    assert store.accounts.session_by_secret("h1") is None


def test_state_survives_reopen(tmp_path: Path) -> None:
    store = Store.open_in(tmp_path)
    store.accounts.upsert_org("demo", True)
    store.devices.insert_camera(camera())
    store.accounts.set_settings({"captcha": {"after_failures": 3}})
    store.close()
    store = Store.open_in(tmp_path)
    assert store.devices.get_camera("c1") == camera()
    assert store.accounts.settings() == {"captcha": {"after_failures": 3}}
    assert store.accounts.org_is_business("demo") is True
    assert store.accounts.org_is_business("nope") is None


def _registrator(rid: str = "r1") -> Registrator:
    return Registrator(rid, "demo", "nvr", "", "virtual", 100.0, {}, {})


def _link(device_id: str = "aa:bb:cc:00:00:01", jti: str = "jti-r") -> Link:
    return Link(device_id, "rack", "1.0", [], jti, 120.0, secret_hash_of(b"s" * 32))


def _token(jti: str) -> str:
    """A signed token with this jti (the store reads only its jti)."""
    return sign_token({"v": 1, "jti": jti, "kind": "nvr"}, Ed25519PrivateKey.generate())


def test_a_registration_token_is_used_once(store: Store) -> None:
    store.registrators.add_registration_token(
        RegistrationToken("t1", "demo", "admin", "", "", 1.0, 9.0), "h"
    )
    store.registrators.add_registrator_by_token("t1", _registrator("r1"), _link())
    with pytest.raises(Conflict):
        store.registrators.add_registrator_by_token(
            "t1", _registrator("r2"), _link("aa:bb:cc:00:00:02", "j2")
        )
    assert store.registrators.get_registrator("r2") is None  # rolled back
    token = store.registrators.registration_token_by_hash("h")
    assert token is not None
    assert (token.used_at, token.registrator_id) == (120.0, "r1")


def test_a_code_links_once(store: Store) -> None:
    code = Activation("AAAA-BBBB-CCCC", "aa:bb:cc:00:00:01", b"s" * 32, "n", "v", [], 1.0, 9.0)
    store.registrators.insert_activation(code)
    other = Activation("DDDD-EEEE-FFFF", "aa:bb:cc:00:00:01", b"s" * 32, "n", "v", [], 1.5, 9.0)
    store.registrators.insert_activation(other)
    store.registrators.add_registrator(_registrator("r1"))
    store.registrators.add_registrator(_registrator("r2"))
    token = _token("jti-r")
    store.registrators.link_by_code("r1", code.code, _link(), token, 120.0)
    # The used code stays (activated); the NVR's unused ones are moot and go.
    assert [a.code for a in store.registrators.activations_of("aa:bb:cc:00:00:01")] == [code.code]
    # The token waits for its NVR: offered where its poll finds it.
    assert store.devices.provisioning_entry("aa:bb:cc:00:00:01") is None
    assert store.registrators.offer_nvr_token("aa:bb:cc:00:00:01", 120.0, 900.0) is True
    again = store.registrators.offer_nvr_token("aa:bb:cc:00:00:01", 121.0, 900.0)
    assert again is False  # no change
    entry = store.devices.provisioning_entry("aa:bb:cc:00:00:01")
    assert entry is not None
    assert (entry.key, entry.token) == (b"s" * 32, token)
    with pytest.raises(Conflict):
        store.registrators.link_by_code("r2", code.code, _link(jti="j2"), _token("j2"), 130.0)

    removed = store.registrators.delete_registrator("r1", 200.0)
    assert removed is not None
    assert store.devices.is_revoked("jti-r")
    assert store.devices.provisioning_entry("aa:bb:cc:00:00:01") is None


def test_padding_the_claims_changes_nothing_but_the_work(store: Store) -> None:
    store.devices.insert_camera(camera())
    assert store.devices.claims_on("aa:bb:cc:dd:ee:01", pad_to=8) == [camera()]
    assert store.devices.claims_on("aa:bb:cc:dd:ee:99", pad_to=8) == []
    padding = store.database.db.execute(_PADDING_SQL, (8, 7)).fetchall()
    assert len(padding) == 7
    assert set(padding[0].keys()) == {
        r[1] for r in store.database.db.execute("PRAGMA table_info(cameras)").fetchall()
    }


# --- the aggregates' seams ---------------------------------------------------------------------


def _rolled_back(
    transaction: Callable[[], AbstractContextManager[object]], change: Callable[[], object]
) -> None:
    """Make the change in a transaction that then fails (and so rolls back)."""

    def change_then_fail() -> None:
        with transaction():
            change()
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError, match="rolled back"):
        change_then_fail()


def test_the_claim_places_follow_any_aggregates_transaction(store: Store) -> None:
    """The places are rebuilt when a transaction ends, whichever aggregate opened it
    (they share the connection), and from the table after a rollback."""
    device_id = "aa:bb:cc:dd:ee:01"
    with store.accounts.transaction():
        store.devices.insert_camera(camera())
        assert store.devices.claim_places(device_id)[0].camera_id == ""  # not yet: mid-way
    assert store.devices.claim_places(device_id)[0].camera_id == "c1"
    _rolled_back(store.registrators.transaction, lambda: store.devices.delete_camera("c1", 200.0))
    assert store.devices.claim_places(device_id)[0].camera_id == "c1"


def test_after_transaction_runs_once_when_the_outermost_ends(store: Store) -> None:
    ended: list[bool] = []
    store.database.after_transaction(lambda: ended.append(store.database.db.in_transaction))
    with store.devices.transaction(), store.accounts.transaction():
        store.accounts.upsert_org("third", False)
    assert ended == [False]
    _rolled_back(store.video.transaction, lambda: None)
    assert ended == [False, False]
    assert store.accounts.org_is_business("third") is False


class _Entries:
    """What a registrators aggregate asks of the devices aggregate, written down."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def put_nvr_entry(self, device_id: str, secret: bytes, token: str) -> None:
        self.calls.append(("put", device_id, token))

    def withdraw_nvr_entry(self, device_id: str, jti: str) -> None:
        self.calls.append(("withdraw", device_id, jti))

    def revoke(self, jti: str, at: float) -> None:
        self.calls.append(("revoke", jti))


def test_registrators_change_the_devices_tables_only_through_the_devices_aggregate(
    store: Store,
) -> None:
    entries = _Entries()
    registrators = RegistratorsStore(store.database, entries)
    code = Activation("AAAA-BBBB-CCCC", "aa:bb:cc:00:00:01", b"s" * 32, "n", "v", [], 1.0, 9.0)
    registrators.insert_activation(code)
    registrators.add_registrator(_registrator("r1"))
    token = _token("jti-r")
    registrators.link_by_code("r1", code.code, _link(), token, 120.0)
    assert registrators.offer_nvr_token("aa:bb:cc:00:00:01", 120.0, 900.0) is True
    registrators.delete_registrator("r1", 200.0)
    assert entries.calls == [
        ("put", "aa:bb:cc:00:00:01", token),
        ("withdraw", "aa:bb:cc:00:00:01", "jti-r"),
        ("revoke", "jti-r"),
    ]


def test_a_registrators_change_to_the_devices_tables_is_atomic_with_its_own(
    store: Store,
) -> None:
    code = Activation("AAAA-BBBB-CCCC", "aa:bb:cc:00:00:01", b"s" * 32, "n", "v", [], 1.0, 9.0)
    store.registrators.insert_activation(code)
    store.registrators.add_registrator(_registrator("r1"))
    store.registrators.link_by_code("r1", code.code, _link(), _token("jti-r"), 120.0)
    store.registrators.offer_nvr_token("aa:bb:cc:00:00:01", 120.0, 900.0)
    withdrawn: list[object] = []

    def delete() -> None:
        store.registrators.delete_registrator("r1", 200.0)
        withdrawn.append(store.devices.provisioning_entry("aa:bb:cc:00:00:01"))

    _rolled_back(store.registrators.transaction, delete)
    assert withdrawn == [None]
    assert store.registrators.get_registrator("r1") is not None
    assert store.devices.provisioning_entry("aa:bb:cc:00:00:01") is not None
    assert not store.devices.is_revoked("jti-r")


def test_withdrawing_leaves_another_organizations_offered_token(store: Store) -> None:
    store.devices.put_nvr_entry("aa:bb:cc:00:00:01", b"s" * 32, _token("theirs"))
    store.devices.withdraw_nvr_entry("aa:bb:cc:00:00:01", "mine")
    assert store.devices.provisioning_entry("aa:bb:cc:00:00:01") is not None
    store.devices.withdraw_nvr_entry("aa:bb:cc:00:00:01", "theirs")
    assert store.devices.provisioning_entry("aa:bb:cc:00:00:01") is None
