"""Login, sessions, logout, fixtures users and roles."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from cloud_mock.api import ApiError
from cloud_mock.keys import STORE
from cloud_mock.server import RunningMock, start
from cloud_mock.users import caller_from_secret, end_session_as, login_flow, new_captcha
from tests.cloud_mock.conftest import client_for, mock_options
from tests.cloud_mock.helpers import login


async def test_login_ok_returns_session_and_user(
    client: aiohttp.ClientSession, mock: RunningMock
) -> None:
    password = (mock.data_dir / "admin-password").read_text().strip()
    async with client.post(
        "/v1/auth/login", json={"login": "admin", "password": password}
    ) as response:
        assert response.status == 200
        body = await response.json()
    assert body["user"] == {"login": "admin", "org": "demo", "role": "owner"}
    assert isinstance(body["session"], str)
    assert len(body["session"]) >= 32


async def test_wrong_password_and_unknown_login_answer_alike(
    client: aiohttp.ClientSession,
) -> None:
    answers = []
    for credentials in (
        {"login": "admin", "password": "wrong"},
        {"login": "nobody", "password": "wrong"},
    ):
        async with client.post("/v1/auth/login", json=credentials) as response:
            answers.append((response.status, await response.json()))
    assert answers[0] == answers[1]
    assert answers[0] == (401, {"error": "wrong_login", "message": "wrong login or password"})


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"login": "admin"}',
        b'{"login": 1, "password": "x"}',
        b'{"login": "admin", "password": ["x"]}',
    ],
)
async def test_malformed_login_is_400(client: aiohttp.ClientSession, body: bytes) -> None:
    async with client.post("/v1/auth/login", data=body) as response:
        assert response.status == 400
        assert "error" in await response.json()


async def test_sessions_newest_first_and_ending_one(
    client: aiohttp.ClientSession, mock: RunningMock
) -> None:
    first = await login(client, mock.data_dir, device="laptop")
    second = await login(client, mock.data_dir, device="phone")
    async with client.get("/v1/sessions", headers=second) as response:
        assert response.status == 200
        sessions = await response.json()
    assert [s["device"] for s in sessions] == ["phone", "laptop"]
    assert [s["current"] for s in sessions] == [True, False]
    assert set(sessions[0]) == {"id", "device", "software", "started", "last_activity", "current"}
    assert sessions[0]["software"] == "tests"
    # The listing never shows the bearer secrets themselves.
    assert first["Authorization"].split()[1] not in json.dumps(sessions)

    async with client.delete(f"/v1/sessions/{sessions[1]['id']}", headers=second) as response:
        assert response.status == 204
    async with client.get("/v1/sessions", headers=first) as response:
        assert response.status == 401
    async with client.delete(f"/v1/sessions/{sessions[1]['id']}", headers=second) as response:
        assert response.status == 404


async def test_logout_ends_the_session(client: aiohttp.ClientSession, auth: dict[str, str]) -> None:
    async with client.post("/v1/auth/logout", headers=auth) as response:
        assert response.status == 204
    async with client.get("/v1/sessions", headers=auth) as response:
        assert response.status == 401


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic YWRtaW46eA=="},
        {"Authorization": "Bearer"},
    ],
)
async def test_no_valid_session_is_401(
    client: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    for method, path in (
        ("GET", "/v1/sessions"),
        ("GET", "/v1/cameras"),
        ("POST", "/v1/cameras"),
        ("POST", "/v1/auth/logout"),
    ):
        async with client.request(method, path, headers=headers) as response:
            assert response.status == 401
            assert "error" in await response.json()


async def test_fixture_users_and_roles(tmp_path: Path) -> None:
    fixtures = tmp_path / "fixtures.json"
    fixtures.write_text(
        json.dumps(
            {
                "orgs": [{"name": "acme", "business": False}],
                "users": [
                    {"login": "vera", "password": "viewer-pass", "org": "acme", "role": "viewer"},
                    {
                        "login": "olga",
                        "password": "owner-pass",
                        "org": "acme",
                        "role": "owner",
                        "max_sessions": 3,
                    },
                ],
                "settings": {"captcha": "off", "max_sessions": 5},
            }
        )
    )
    running = await start(mock_options(tmp_path / "cloud", fixtures=fixtures))
    try:
        assert running.app[STORE].accounts.settings() == {"captcha": "off", "max_sessions": 5}
        assert running.app[STORE].accounts.org_is_business("acme") is False
        async with client_for(running) as client:
            vera = await login(client, running.data_dir, login_name="vera", password="viewer-pass")
            olga = await login(client, running.data_dir, login_name="olga", password="owner-pass")
            camera = {"device_id": "aa:bb:cc:dd:ee:0f", "password": "p", "name": "door"}
            async with client.post("/v1/cameras", headers=vera, json=camera) as response:
                assert response.status == 403
                assert "viewer" in (await response.json())["error"]
            async with client.post("/v1/cameras", headers=olga, json=camera) as response:
                assert response.status == 201
            async with client.get("/v1/cameras", headers=vera) as response:
                assert response.status == 200
                [listed] = (await response.json())["cameras"]
            assert listed["org"] == "acme"
            # Another org's cameras are invisible.
            admin = await login(client, running.data_dir)
            async with client.get("/v1/cameras", headers=admin) as response:
                assert (await response.json())["cameras"] == []
            async with client.get(f"/v1/cameras/{listed['camera_id']}", headers=admin) as response:
                assert response.status == 404
    finally:
        await running.stop()


async def test_admin_password_is_kept_across_restarts(tmp_path: Path) -> None:
    running = await start(mock_options(tmp_path / "cloud"))
    await running.stop()
    password_file = tmp_path / "cloud" / "admin-password"
    password = password_file.read_text()
    assert password_file.stat().st_mode & 0o777 == 0o600
    running = await start(mock_options(tmp_path / "cloud"))
    try:
        assert password_file.read_text() == password
        async with client_for(running) as client:
            await login(client, running.data_dir)
    finally:
        await running.stop()


async def test_fixtures_may_put_users_in_demo_and_take_its_business_account(
    tmp_path: Path,
) -> None:
    fixtures = tmp_path / "fixtures.json"
    fixtures.write_text(
        json.dumps(
            {
                "orgs": [{"name": "demo", "business": False}],
                "users": [{"login": "vera", "password": "v", "org": "demo", "role": "viewer"}],
            }
        )
    )
    running = await start(mock_options(tmp_path / "cloud", fixtures=fixtures))
    try:
        store = running.app[STORE]
        assert store.accounts.org_is_business("demo") is False
        admin = store.accounts.get_user("admin")
        assert admin is not None
        assert (admin.org, admin.role) == ("demo", "owner")
        async with client_for(running) as client:
            await login(client, running.data_dir, login_name="vera", password="v")
    finally:
        await running.stop()


# --- the Python interface the web console calls ----------------------------------------------


def _request_to(mock: RunningMock) -> web.Request:
    """A request object bound to the running mock's app (store, clock, login state): the
    console's handlers hand theirs to these functions the same way."""
    return make_mocked_request("GET", "/", app=mock.app)


async def test_console_interface_login_flow_and_cookie_secret(mock: RunningMock) -> None:
    password = (mock.data_dir / "admin-password").read_text().strip()
    body = await login_flow(
        _request_to(mock), {"login": "admin", "password": password, "device": "browser"}
    )
    assert body["user"] == {"login": "admin", "org": "demo", "role": "owner"}
    caller = caller_from_secret(_request_to(mock), body["session"])
    assert caller is not None
    assert (caller.user.login, caller.session.id, caller.session.device) == (
        "admin",
        body["session_id"],
        "browser",
    )
    assert caller_from_secret(_request_to(mock), "not-a-secret") is None
    assert caller_from_secret(_request_to(mock), "") is None

    with pytest.raises(ApiError) as refused:
        await login_flow(_request_to(mock), {"login": "admin", "password": "wrong"})
    assert refused.value.status == 401
    assert refused.value.response().status == 401
    with pytest.raises(ApiError) as bad:
        await login_flow(_request_to(mock), {"login": "admin"})
    assert bad.value.status == 400

    captcha = await new_captcha(_request_to(mock))
    assert set(captcha) == {"captcha_id", "image", "expires_in"}
    assert base64.b64decode(captcha["image"]).startswith(b"\x89PNG")


async def test_console_interface_end_session_as(mock: RunningMock) -> None:
    password = (mock.data_dir / "admin-password").read_text().strip()
    first, second = [
        await login_flow(_request_to(mock), {"login": "admin", "password": password})
        for _ in range(2)
    ]
    for credential, session_id, status in (
        (second["session"], "no-such-id", 404),
        ("neither-session-nor-resolve-token", first["session_id"], 401),
    ):
        with pytest.raises(ApiError) as refused:
            end_session_as(_request_to(mock), session_id, credential)
        assert refused.value.status == status
    end_session_as(_request_to(mock), first["session_id"], second["session"])
    assert caller_from_secret(_request_to(mock), first["session"]) is None
    assert caller_from_secret(_request_to(mock), second["session"]) is not None
