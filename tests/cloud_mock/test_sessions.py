"""Session limits, resolve tokens, idle expiry, the session list and rate limits, against
the mock as a subprocess (mock clock moved through the test hooks)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from cloud_mock.login_guard import CLIENT_LIMIT, LOGIN_LIMIT
from cloud_mock.store import Session, Store
from cloud_mock.testing import MockCloud
from tests.cloud_mock.accounts_helpers import (
    GLOBAL_MAX,
    IDLE_S,
    accounts_mock_fixture,  # noqa: F401 - fixture
    cloud_fixture,  # noqa: F401 - fixture
    login,
    login_ok,
)

SESSION_KEYS = {"id", "device", "software", "started", "last_activity"}


def _sessions(cloud: MockCloud, secret: str) -> list[dict[str, Any]]:
    status, body = cloud.request("GET", "/v1/sessions", session=secret)
    assert status == 200, body
    result: list[dict[str, Any]] = body
    return result


def _too_many(cloud: MockCloud, login_name: str, device: str = "third") -> dict[str, Any]:
    status, body = login(cloud, login_name, device=device)
    assert status == 409, body
    assert body["error"] == "too_many_sessions"
    result: dict[str, Any] = body
    return result


def _delete(cloud: MockCloud, session_id: str, credential: str) -> tuple[int, Any]:
    return cloud.request("DELETE", f"/v1/sessions/{session_id}", session=credential)


def test_at_the_limit_end_one_with_the_resolve_token_and_retry(cloud: MockCloud) -> None:
    first = login_ok(cloud, "ann", device="laptop")
    cloud.advance_clock(1)
    second = login_ok(cloud, "ann", device="phone")
    refused = _too_many(cloud, "ann", device="tablet")
    assert refused["max_sessions"] == GLOBAL_MAX
    assert refused["resolve_expires_in"] == 120
    assert "unsaved" in refused["message"] or "may be lost" in refused["message"]
    listed = refused["sessions"]
    assert [s["device"] for s in listed] == ["phone", "laptop"]  # newest first
    assert [s["id"] for s in listed] == [second["session_id"], first["session_id"]]
    assert all(set(s) == SESSION_KEYS for s in listed)
    assert listed[0]["started"] > listed[1]["started"]

    status, _ = _delete(cloud, first["session_id"], refused["resolve_token"])
    assert status == 204
    # Spent: it ends one session only.
    status, body = _delete(cloud, second["session_id"], refused["resolve_token"])
    assert status == 401, body

    third = login_ok(cloud, "ann", device="tablet")
    assert [(s["device"], s["current"]) for s in _sessions(cloud, third["session"])] == [
        ("tablet", True),
        ("phone", False),
    ]
    status, _ = cloud.request("GET", "/v1/sessions", session=first["session"])
    assert status == 401


def test_resolve_token_ends_only_its_users_sessions_and_expires(cloud: MockCloud) -> None:
    dan = login_ok(cloud, "dan")
    ann = [login_ok(cloud, "ann", device=f"d{i}") for i in range(GLOBAL_MAX)]
    refused = _too_many(cloud, "ann")
    status, body = _delete(cloud, dan["session_id"], refused["resolve_token"])
    assert status == 404, body
    assert "no session" in body["error"]
    assert _sessions(cloud, dan["session"])[0]["id"] == dan["session_id"]  # untouched

    # A resolve token is not a session: it opens nothing else.
    status, _ = cloud.request("GET", "/v1/sessions", session=refused["resolve_token"])
    assert status == 401

    cloud.advance_clock(121)
    status, body = _delete(cloud, ann[0]["session_id"], refused["resolve_token"])
    assert status == 401
    assert "expired" in body["error"]
    assert len(_sessions(cloud, ann[1]["session"])) == GLOBAL_MAX


def test_retry_after_resolve_is_spared_the_captcha_once(cloud: MockCloud) -> None:
    cloud.set_settings(captcha="always")
    sessions = [cloud.login_body("bob", "bob-pass")]  # bob: max_sessions 1
    status, body = login(cloud, "bob")
    assert status == 428
    captcha = {"captcha_id": body["captcha_id"]}
    captcha["captcha_answer"] = cloud.captcha_answer(body["captcha_id"])
    status, refused = login(cloud, "bob", **captcha)
    assert status == 409, refused
    assert refused["max_sessions"] == 1
    status, _ = _delete(cloud, sessions[0]["session_id"], refused["resolve_token"])
    assert status == 204
    status, body = login(cloud, "bob")  # no captcha this once
    assert status == 200, body
    status, body = cloud.request("POST", "/v1/auth/logout", session=body["session"])
    assert status == 204
    status, body = login(cloud, "bob")
    assert (status, body["error"]) == (428, "captcha_required")


def test_idle_sessions_end_and_free_their_slot(cloud: MockCloud) -> None:
    old = login_ok(cloud, "bob", device="old")
    _too_many(cloud, "bob")
    # Activity keeps a session alive: twice nearly the idle time, used in between.
    cloud.advance_clock(IDLE_S - 100)
    _sessions(cloud, old["session"])
    cloud.advance_clock(IDLE_S - 100)
    assert _sessions(cloud, old["session"])[0]["device"] == "old"

    cloud.advance_clock(IDLE_S + 1)
    new = login_ok(cloud, "bob", device="new")
    assert [s["device"] for s in _sessions(cloud, new["session"])] == ["new"]
    status, body = cloud.request("GET", "/v1/sessions", session=old["session"])
    assert status == 401, body


def test_idle_timeout_follows_the_setting(cloud: MockCloud) -> None:
    cloud.set_settings(session_idle_s=30)
    first = login_ok(cloud, "ann")
    cloud.advance_clock(29)
    _sessions(cloud, first["session"])
    cloud.advance_clock(31)
    status, _ = cloud.request("GET", "/v1/sessions", session=first["session"])
    assert status == 401


def test_per_user_limit_beats_the_global_one(cloud: MockCloud) -> None:
    login_ok(cloud, "bob")
    assert _too_many(cloud, "bob")["max_sessions"] == 1  # below the global 2
    for i in range(3):
        login_ok(cloud, "cid", device=f"d{i}")  # above the global 2
    refused = _too_many(cloud, "cid")
    assert refused["max_sessions"] == 3
    assert [s["device"] for s in refused["sessions"]] == ["d2", "d1", "d0"]


def test_no_limit_when_neither_global_nor_per_user(cloud: MockCloud) -> None:
    cloud.set_settings(max_sessions=None)
    secrets = [login_ok(cloud, "ann", device=f"d{i}")["session"] for i in range(GLOBAL_MAX + 2)]
    assert len(_sessions(cloud, secrets[-1])) == GLOBAL_MAX + 2
    login_ok(cloud, "bob")
    _too_many(cloud, "bob")  # the per-user limit still holds


def test_list_and_end_sessions_ending_the_current_one_logs_out(cloud: MockCloud) -> None:
    one = login_ok(cloud, "ann", device="one")
    two = login_ok(cloud, "ann", device="two")
    dan = login_ok(cloud, "dan")
    listed = _sessions(cloud, two["session"])
    assert [(s["device"], s["current"]) for s in listed] == [("two", True), ("one", False)]
    assert all(set(s) == {*SESSION_KEYS, "current"} for s in listed)
    assert one["session"] not in json.dumps(listed)  # secrets are never listed

    # Another user's session is as unknown as a made-up id, and stays alive.
    for session_id in (dan["session_id"], "no-such-session", "x" * 2000):
        status, body = _delete(cloud, session_id, two["session"])
        assert status == 404, body
        assert "no session" in body["error"]
    assert _sessions(cloud, dan["session"])

    status, _ = _delete(cloud, one["session_id"], two["session"])
    assert status == 204
    status, _ = _delete(cloud, two["session_id"], two["session"])
    assert status == 204
    for secret in (one["session"], two["session"]):
        status, _ = cloud.request("GET", "/v1/sessions", session=secret)
        assert status == 401
    status, body = _delete(cloud, dan["session_id"], "not-a-credential")
    assert status == 401
    status, _ = cloud.request("DELETE", f"/v1/sessions/{dan['session_id']}")
    assert status == 401


def test_failures_are_rate_limited_per_login_then_per_client(cloud: MockCloud) -> None:
    for _ in range(LOGIN_LIMIT.failures):
        status, _ = login(cloud, "eve", password="wrong")
        assert status == 401
    # Now even the right password is not looked at.
    status, headers, body = cloud.request_raw(
        "POST",
        "/v1/auth/login",
        json.dumps({"login": "eve", "password": "eve-pass"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert status == 429, body
    assert body["error"] == "rate_limited"
    retry_after = int(headers["Retry-After"])
    assert retry_after == body["retry_after"]
    assert 0 < retry_after <= LOGIN_LIMIT.window_s
    login_ok(cloud, "ann")  # other logins are not blocked by eve's failures

    cloud.advance_clock(retry_after)
    login_ok(cloud, "eve")

    # Per client: failures spread over many logins (none reaching its own limit) add up.
    cloud.advance_clock(CLIENT_LIMIT.window_s + 1)
    per_login = LOGIN_LIMIT.failures // 2
    for i in range(CLIENT_LIMIT.failures):
        status, _ = login(cloud, f"guess{i // per_login}", password="wrong")
        assert status == 401
    status, body = login(cloud, "ann")
    assert (status, body["error"]) == (429, "rate_limited")


def test_bad_input_is_a_clear_4xx(cloud: MockCloud) -> None:
    post = {"Content-Type": "application/json"}
    cases: list[tuple[str, str, bytes | None, int]] = [
        ("POST", "/v1/auth/login", b"{not json", 400),
        ("POST", "/v1/auth/login", b'{"login": "ann"', 400),
        ("POST", "/v1/auth/login", b"[1, 2]", 400),
        ("POST", "/v1/auth/login", b'{"login": ["ann"], "password": "x"}', 400),
        ("POST", "/v1/auth/login", b'{"login": "ann", "password": "x", "device": 7}', 400),
        ("POST", "/v1/auth/login", b'{"login": "ann", "password": "' + b"p" * 100_000 + b'"}', 413),
        ("POST", "/v1/auth/login", "\u00e9".encode("latin-1"), 400),
        ("POST", "/v1/test/settings", b'{"captcha": "sometimes"}', 400),
        ("POST", "/v1/test/settings", b'{"max_sessions": 0}', 400),
        ("POST", "/v1/test/settings", b'{"colour": "blue"}', 400),
    ]
    for method, path, data, expected in cases:
        status, _, body = cloud.request_raw(method, path, data, headers=post)
        assert status == expected, (path, data[:60] if data else data, body)
        assert isinstance(body, dict)
        assert body["error"]
    # Nothing of that changed the settings.
    status, settings = cloud.request("GET", "/v1/test/settings")
    assert settings["captcha"] == "off"
    assert settings["max_sessions"] == GLOBAL_MAX


def test_store_from_before_the_session_indexes_opens_and_keeps_sessions(tmp_path: Path) -> None:
    """A data directory made before the idle-expiry indexes existed still opens."""
    db = sqlite3.connect(tmp_path / "cloud_mock.sqlite3")
    db.executescript(
        """
        CREATE TABLE orgs (name TEXT PRIMARY KEY, business INTEGER NOT NULL);
        CREATE TABLE users (login TEXT PRIMARY KEY, org TEXT NOT NULL, role TEXT NOT NULL,
            password_hash TEXT NOT NULL, max_sessions INTEGER);
        CREATE TABLE sessions (id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL UNIQUE,
            login TEXT NOT NULL REFERENCES users(login) ON DELETE CASCADE,
            device TEXT NOT NULL, software TEXT NOT NULL, started REAL NOT NULL,
            last_activity REAL NOT NULL);
        INSERT INTO orgs VALUES ('demo', 1);
        INSERT INTO users VALUES ('u', 'demo', 'owner', 'h', NULL);
        INSERT INTO sessions VALUES ('s1', 'h1', 'u', 'd', 'sw', 1.0, 10.0);
        INSERT INTO sessions VALUES ('s2', 'h2', 'u', 'd', 'sw', 2.0, 20.0);
        """
    )
    db.close()
    store = Store.open_in(tmp_path)
    try:
        assert store.accounts.get_session("s1") == Session("s1", "u", "d", "sw", 1.0, 10.0)
        assert store.accounts.delete_idle_sessions(active_since=15.0) == 1
        assert [s.id for s in store.accounts.sessions_of("u")] == ["s2"]
        indexes = {
            row[0]
            for row in store.database.db.execute(
                "SELECT name FROM sqlite_master WHERE type='index'"
            )
        }
        assert {"sessions_last_activity", "sessions_login"} <= indexes
    finally:
        store.close()
