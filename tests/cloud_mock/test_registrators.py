"""Registrators through the user API: wizard steps, permissions, sync and configure."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.nvr import activation_code
from cloud_mock.keys import STORE
from cloud_mock.server import RunningMock, start
from tests.cloud_mock.conftest import client_for, mock_options
from tests.cloud_mock.helpers import PASSWORD, add_camera, login
from tests.cloud_mock.nvr_helpers import (
    CHECKS,
    NVR_ID,
    PASSWORDS,
    WS,
    Nvr,
    add_registrator,
    answer_command,
    call,
    linked_nvr,
    nvr_channel,
    registration_token,
)
from tests.eventually import eventually_async
from tests.examples import examples

FIELDS = {
    "id",
    "org",
    "name",
    "note",
    "device",
    "status",
    "device_id",
    "device_name",
    "version",
    "checks",
    "cameras",
    "broadcast",
    "archive",
    "settings_pending",
    "created",
    "last_seen",
    "linked_at",
    "let_go",
}
CAMERAS = [
    {"name": "gate", "url": "rtsp://10.0.0.5/stream1"},
    {"name": "yard", "url": "rtsp://10.0.0.6/s", "onvif_url": "http://10.0.0.6/onvif"},
]


async def status_of(client: aiohttp.ClientSession, auth: dict[str, str], rid: str) -> str:
    status, body = await call(client, "GET", f"/v1/registrators/{rid}", auth)
    assert status == 200, body
    result: str = body["status"]
    return result


async def wait_status(
    client: aiohttp.ClientSession, auth: dict[str, str], rid: str, wanted: str
) -> None:
    await eventually_async(
        lambda: status_of(client, auth, rid),
        until=lambda status: status == wanted,
        timeout=5,
        interval=0.02,
        what=f"registrator {wanted}",
    )


# --- wizard steps ------------------------------------------------------------------------------


async def test_details_device_installation_list_edit_delete(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    created = await add_registrator(client, auth, name="Warehouse", note="dock 3")
    assert set(created) == FIELDS
    assert created["org"] == "demo"
    assert (created["name"], created["note"], created["device"]) == (
        "Warehouse",
        "dock 3",
        "virtual",
    )
    assert created["status"] == "pending"
    assert created["device_id"] is None
    assert created["cameras"] == created["checks"] == []
    assert created["broadcast"] == {"enabled": False, "quality": "medium"}
    assert created["archive"] == {"enabled": False, "days": 7}
    rid = created["id"]

    status, edited = await call(
        client, "PATCH", f"/v1/registrators/{rid}", auth, {"name": "Depot", "device": "network"}
    )
    assert status == 200
    assert (edited["name"], edited["note"], edited["device"]) == ("Depot", "dock 3", "network")

    status, installation = await call(client, "GET", f"/v1/registrators/{rid}/installation", auth)
    assert status == 200
    assert installation == {
        "one_liner": f"curl -fsSL --cacert {mock.data_dir / 'ca.pem'} {mock.url}/install.sh"
        " | sh -s -- --nvr",
        "cloud_url": mock.url,
    }
    status, listing = await call(client, "GET", "/v1/registrators", auth)
    assert status == 200
    assert [r["id"] for r in listing["registrators"]] == [rid]

    status, summary = await call(client, "GET", f"/v1/registrators/{rid}/summary", auth)
    assert status == 200
    assert summary["ready"] is False
    assert summary["installation"] == installation
    assert summary["waiting_for"]

    assert (await call(client, "DELETE", f"/v1/registrators/{rid}", auth))[0] == 204
    assert (await call(client, "GET", f"/v1/registrators/{rid}", auth))[0] == 404
    assert (await call(client, "DELETE", f"/v1/registrators/{rid}", auth))[0] == 404


async def test_activation_step_shows_the_nvr_checks(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    rid = (await add_registrator(client, auth))["id"]
    code = await Nvr().code(client)
    path = f"/v1/registrators/{rid}/activation"
    status, shown = await call(client, "GET", path, auth, params={"code": code.lower()})
    assert status == 200, shown
    assert shown["code"] == code
    assert shown["device_id"] == NVR_ID
    assert shown["name"] == "NVR in the rack"
    assert shown["checks"] == CHECKS
    assert shown["expires_at"] > mock.clock.now()

    mistyped = code[:-1] + ("0" if code[-1] != "0" else "1")
    status, body = await call(client, "GET", path, auth, params={"code": mistyped})
    assert status == 400
    assert "mistyped" in body["error"]
    status, body = await call(
        client, "GET", path, auth, params={"code": activation_code.generate()}
    )
    assert status == 404
    mock.clock.advance(86_401)
    assert (await call(client, "GET", path, auth, params={"code": code}))[0] == 410


async def test_connect_step_refusals(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    first = (await add_registrator(client, auth, name="one"))["id"]
    second = (await add_registrator(client, auth, name="two"))["id"]
    nvr = Nvr()
    code = await nvr.code(client)

    async def activate(rid: str, code: Any) -> tuple[int, Any]:
        return await call(client, "POST", f"/v1/registrators/{rid}/activate", auth, {"code": code})

    mistyped = code[:-1] + ("0" if code[-1] != "0" else "1")
    status, body = await activate(first, mistyped)
    assert status == 400
    assert "looks mistyped" in body["error"]
    assert "unknown" not in body["error"]
    status, body = await activate(first, activation_code.generate())
    assert status == 404
    assert "unknown" in body["error"]
    status, body = await activate(first, "nonsense")
    assert status == 400

    # Tolerant reading: lower case, no dashes, O for 0, I/L for 1.
    typed = code.replace("-", "").lower().replace("0", "o").replace("1", "l")
    status, linked = await activate(first, typed)
    assert status == 200, linked
    assert linked["device_id"] == NVR_ID
    # Clicking again is harmless; the same code elsewhere, or another code here, is not.
    assert (await activate(first, code))[0] == 200
    status, body = await activate(second, code)
    assert status == 409
    assert "already activated" in body["error"]
    other = await Nvr("aa:bb:cc:00:00:02").code(client)
    status, body = await activate(first, other)
    assert status == 409
    assert "already linked" in body["error"]

    late = await Nvr("aa:bb:cc:00:00:03").code(client)
    mock.clock.advance(86_401)
    status, body = await activate(second, late)
    assert status == 410
    assert "expired: the NVR shows a new one" in body["error"]


async def test_a_camera_device_id_cannot_become_an_nvr_nor_the_reverse(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    await add_camera(client, auth, device_id=NVR_ID, password=PASSWORD)
    rid = (await add_registrator(client, auth))["id"]
    code = await Nvr().code(client)
    status, body = await call(
        client, "POST", f"/v1/registrators/{rid}/activate", auth, {"code": code}
    )
    assert status == 409
    assert "camera" in body["error"]

    await linked_nvr(client, auth, device_id="aa:bb:cc:00:00:02")
    async with client.post(
        "/v1/cameras",
        headers=auth,
        json={"device_id": "aa:bb:cc:00:00:02", "password": "p", "name": "x"},
    ) as response:
        assert response.status == 409
        assert "NVR" in (await response.json())["error"]


# --- permissions --------------------------------------------------------------------------------


async def test_who_may_add_nvrs(team: RunningMock) -> None:
    async with client_for(team) as client:
        vera = await login(client, team.data_dir, login_name="vera", password=PASSWORDS["vera"])
        max_ = await login(client, team.data_dir, login_name="max", password=PASSWORDS["max"])
        olga = await login(client, team.data_dir, login_name="olga", password=PASSWORDS["olga"])
        rid = (await add_registrator(client, max_))["id"]  # manage_registrators may
        code = await Nvr().code(client)

        refusals = [
            ("POST", "/v1/registrators", {"name": "x"}),
            ("POST", f"/v1/registrators/{rid}/activate", {"code": code}),
            ("POST", "/v1/registrator-tokens", {"title": "t"}),
            ("DELETE", f"/v1/registrators/{rid}", None),
            ("PUT", f"/v1/registrators/{rid}/archive", {"enabled": True, "days": 3}),
            ("POST", f"/v1/registrators/{rid}/sync", {}),
        ]
        for method, path, body in refusals:
            status, answer = await call(client, method, path, vera, body)
            assert status == 403, (path, answer)
            assert "your role 'viewer' may not" in answer["error"]
            assert "manage-registrators permission" in answer["error"]
        # Viewers may look.
        assert (await call(client, "GET", "/v1/registrators", vera))[1]["registrators"]
        assert (await call(client, "GET", f"/v1/registrators/{rid}", vera))[0] == 200

        # An owner without a business account may not add NVRs either.
        for method, path, body in refusals[:1] + refusals[2:3]:
            status, answer = await call(client, method, path, olga, body)
            assert status == 403, (path, answer)
            assert answer["error"] == "organization 'acme' has no business account: NVRs need one"
        # Another org's registrator does not exist for olga; her org only through `org`.
        assert (await call(client, "GET", f"/v1/registrators/{rid}", olga))[0] == 404
        status, answer = await call(
            client, "POST", "/v1/registrators", max_, {"name": "x", "org": "acme"}
        )
        assert status == 403
        assert "only to your organization 'demo'" in answer["error"]
        # And max may do all of it.
        status, linked = await call(
            client, "POST", f"/v1/registrators/{rid}/activate", max_, {"code": code}
        )
        assert status == 200, linked
        assert (await call(client, "POST", "/v1/registrator-tokens", max_, {}))[0] == 201


# --- the NVR's channel: status, sync, configure, delete ---------------------------------------


async def test_channel_status_and_sync_round_trip(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    registrator, token = await linked_nvr(client, auth)
    rid = registrator["id"]
    assert registrator["status"] == "pending"
    status, body = await call(client, "POST", f"/v1/registrators/{rid}/sync", auth)
    assert (status, body) == (409, {"error": "NVR is offline"})

    async with nvr_channel(client, token) as ws:
        assert await status_of(client, auth, rid) == "online"
        junk = [{"name": "no url"}, "text", {"name": "", "url": "rtsp://x"}, {"url": 5}]
        answering = asyncio.create_task(
            answer_command(ws, "sync", True, {"cameras": [*CAMERAS, *junk]})
        )
        status, body = await call(client, "POST", f"/v1/registrators/{rid}/sync", auth)
        assert status == 200, body
        assert body == {"cameras": CAMERAS}
        assert (await answering)["args"] == {}
        listed = (await call(client, "GET", f"/v1/registrators/{rid}", auth))[1]["cameras"]
        # Each synced camera also carries its `video` (probe, thumbnail, recording).
        assert [{k: v for k, v in c.items() if k != "video"} for c in listed] == CAMERAS
        assert all(c["video"]["thumbnail_reason"] for c in listed)

        # A new list replaces the old one; a silent NVR is a 504; a refusal a 502.
        answering = asyncio.create_task(answer_command(ws, "sync", True, {"cameras": []}))
        assert await call(client, "POST", f"/v1/registrators/{rid}/sync", auth) == (
            200,
            {"cameras": []},
        )
        await answering
        assert (await call(client, "POST", f"/v1/registrators/{rid}/sync", auth))[0] == 504
        await ws.receive_json(timeout=5)  # the unanswered command
        answering = asyncio.create_task(answer_command(ws, "sync", True, ["not", "an object"]))
        assert (await call(client, "POST", f"/v1/registrators/{rid}/sync", auth))[0] == 502
        await answering
        await ws.close()
    await wait_status(client, auth, rid, "offline")


async def test_settings_applied_live_or_on_the_next_hello(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    registrator, token = await linked_nvr(client, auth)
    rid = registrator["id"]
    # Offline: stored, marked pending.
    status, body = await call(
        client,
        "PUT",
        f"/v1/registrators/{rid}/broadcast",
        auth,
        {"enabled": True, "quality": "high"},
    )
    assert status == 200, body
    assert body["applied"] is False
    assert body["broadcast"] == {"enabled": True, "quality": "high"}
    assert body["settings_pending"] is True

    async with nvr_channel(client, token) as ws:
        # Sent as soon as the NVR says hello.
        command = await answer_command(ws, "configure", True, {"applied": ["gate"]})
        assert command["args"] == {
            "broadcast": {"enabled": True, "quality": "high"},
            "archive": {"enabled": False, "days": 7},
        }

        async def shown() -> Any:
            return (await call(client, "GET", f"/v1/registrators/{rid}", auth))[1]

        await eventually_async(
            shown,
            until=lambda shown: shown["settings_pending"] is False,
            timeout=5,
            interval=0.02,
            what="settings applied",
        )

        # Online: applied at once, the NVR's answer passed on.
        answering = asyncio.create_task(answer_command(ws, "configure", True, {"ok": 1}))
        status, body = await call(
            client, "PUT", f"/v1/registrators/{rid}/archive", auth, {"enabled": True, "days": 30}
        )
        assert status == 200, body
        assert (body["applied"], body["result"]) == (True, {"ok": 1})
        assert body["archive"] == {"enabled": True, "days": 30}
        assert body["settings_pending"] is False
        assert (await answering)["args"]["archive"] == {"enabled": True, "days": 30}

        answering = asyncio.create_task(answer_command(ws, "configure", False, "disk full"))
        status, body = await call(
            client, "PUT", f"/v1/registrators/{rid}/archive", auth, {"enabled": True}
        )
        assert (status, body["applied"], body["result"]) == (200, False, "disk full")
        assert body["archive"] == {"enabled": True, "days": 30}
        await answering


async def test_sync_all_with_one_online_and_one_offline(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    online, token = await linked_nvr(client, auth, name="online")
    offline, _ = await linked_nvr(client, auth, device_id="aa:bb:cc:00:00:02", name="offline")
    async with nvr_channel(client, token) as ws:
        answering = asyncio.create_task(answer_command(ws, "sync", True, {"cameras": CAMERAS}))
        status, body = await call(client, "POST", "/v1/registrators/sync-all", auth)
        await answering
    assert status == 200, body
    by_id = {r["id"]: r for r in body["results"]}
    assert by_id[online["id"]] == {
        "id": online["id"],
        "name": "online",
        "ok": True,
        "cameras": CAMERAS,
    }
    assert by_id[offline["id"]] == {
        "id": offline["id"],
        "name": "offline",
        "ok": False,
        "error": "NVR is offline",
    }


async def test_delete_closes_the_channel_with_4401(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    registrator, token = await linked_nvr(client, auth)
    async with nvr_channel(client, token) as ws:
        assert (await call(client, "DELETE", f"/v1/registrators/{registrator['id']}", auth))[
            0
        ] == 204
        msg = await ws.receive(timeout=5)
        assert (msg.type, msg.data, msg.extra) == (aiohttp.WSMsgType.CLOSE, 4401, "token revoked")
    async with client.ws_connect(
        WS, headers={"Authorization": f"Bearer {token}"}, autoclose=False
    ) as ws:
        msg = await ws.receive(timeout=5)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 4401)


async def test_activated_nvr_connects_with_the_polled_token(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    from tests.cloud_mock.nvr_helpers import unseal_with

    nvr = Nvr()
    code = await nvr.code(client)
    rid = (await add_registrator(client, auth))["id"]
    assert (await call(client, "POST", f"/v1/registrators/{rid}/activate", auth, {"code": code}))[
        0
    ] == 200
    status, body, _ = await nvr.poll(client, nvr.secrets[code])
    assert status == 200
    token = unseal_with(nvr.secrets[code], NVR_ID, body["sealed_token"])
    async with nvr_channel(client, token):
        status, summary = await call(client, "GET", f"/v1/registrators/{rid}/summary", auth)
        assert (summary["status"], summary["ready"], summary["waiting_for"]) == (
            "online",
            True,
            [],
        )
    # Deleting it also withdraws the token from the provisioning service.
    assert (await call(client, "DELETE", f"/v1/registrators/{rid}", auth))[0] == 204
    assert (await nvr.poll(client, nvr.secrets[code]))[0] == 204
    assert mock.app[STORE].devices.provisioning_entry(NVR_ID) is None


async def test_registration_tokens_list_and_revoke(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    made = await registration_token(client, auth, title="spare")
    status, listing = await call(client, "GET", "/v1/registrator-tokens", auth)
    assert status == 200
    [listed] = listing["tokens"]
    assert {k: listed[k] for k in ("id", "title", "note", "used", "expired")} == {
        "id": made["id"],
        "title": "spare",
        "note": "",
        "used": False,
        "expired": False,
    }
    assert {"created", "expires_at"} <= set(listed)
    assert (await call(client, "DELETE", f"/v1/registrator-tokens/{made['id']}", auth))[0] == 204
    assert (await Nvr().register(client, made["token"]))[0] == 404


# --- malformed input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("POST", "", {"name": ""}),
        ("POST", "", {"name": "x", "device": "toaster"}),
        ("POST", "", {"name": "x", "note": 5}),
        ("POST", "", {"name": "x" * 129}),
        ("PATCH", "/{id}", {"name": "   "}),
        ("PATCH", "/{id}", {"device": 1}),
        ("POST", "/{id}/activate", {}),
        ("POST", "/{id}/activate", {"code": ["x"]}),
        ("PUT", "/{id}/broadcast", {"enabled": "yes"}),
        ("PUT", "/{id}/broadcast", {"enabled": True, "quality": "ultra"}),
        ("PUT", "/{id}/archive", {"enabled": True, "days": 0}),
        ("PUT", "/{id}/archive", {"enabled": True, "days": 366}),
        ("PUT", "/{id}/archive", {"enabled": True, "days": 1.5}),
        ("GET", "/{id}/activation", None),
    ],
)
async def test_malformed_user_bodies_are_400(
    client: aiohttp.ClientSession,
    auth: dict[str, str],
    method: str,
    suffix: str,
    body: Any,
) -> None:
    rid = (await add_registrator(client, auth))["id"]
    status, answer = await call(
        client, method, "/v1/registrators" + suffix.format(id=rid), auth, body
    )
    assert status == 400, answer
    assert isinstance(answer["error"], str)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
FIELD_NAMES = ["name", "note", "device", "org", "code", "enabled", "quality", "days", "title"]


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    body=st.binary(max_size=100)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=4).map(
        lambda v: json.dumps(v).encode()
    ),
    target=st.sampled_from(
        [
            ("POST", "/v1/registrators"),
            ("PATCH", "/v1/registrators/{id}"),
            ("POST", "/v1/registrators/{id}/activate"),
            ("PUT", "/v1/registrators/{id}/broadcast"),
            ("PUT", "/v1/registrators/{id}/archive"),
            ("POST", "/v1/registrator-tokens"),
        ]
    ),
)
async def test_random_user_bodies_never_500(
    client: aiohttp.ClientSession,
    auth: dict[str, str],
    body: bytes,
    target: tuple[str, str],
) -> None:
    _, existing = await call(client, "GET", "/v1/registrators", auth)
    if existing["registrators"]:
        rid = existing["registrators"][0]["id"]
    else:
        rid = (await add_registrator(client, auth))["id"]
    method, path = target
    async with client.request(method, path.format(id=rid), data=body, headers=auth) as response:
        assert response.status < 500, await response.text()
        assert "error" in await response.json() or response.status in (200, 201)


async def test_registrators_codes_and_tokens_survive_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "cloud"
    first = await start(mock_options(data_dir))
    try:
        async with client_for(first) as client:
            auth = await login(client, first.data_dir)
            registrator = await add_registrator(client, auth, name="kept")
            token = await registration_token(client, auth)
            nvr = Nvr()
            code = await nvr.code(client)
    finally:
        await first.stop()
    second = await start(mock_options(data_dir))
    try:
        async with client_for(second) as client:
            auth = await login(client, second.data_dir)
            rid = registrator["id"]
            status, linked = await call(
                client, "POST", f"/v1/registrators/{rid}/activate", auth, {"code": code}
            )
            assert status == 200, linked
            assert linked["name"] == "kept"
            assert (await nvr.poll(client, nvr.secrets[code]))[0] == 200
            assert (await Nvr("aa:bb:cc:00:00:02").register(client, token["token"]))[0] == 201
    finally:
        await second.stop()
