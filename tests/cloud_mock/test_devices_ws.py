"""The device control channel: auth, hello, heartbeat, commands, revocation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.token_codec import parse_claims, sign_token
from cloud_mock.keys import CONFIG
from cloud_mock.server import RunningMock
from tests.cloud_mock.helpers import MAC, add_camera
from tests.eventually import eventually_async

WS = "/v1/devices/ws"


@asynccontextmanager
async def device(
    client: aiohttp.ClientSession, token: str | None
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with client.ws_connect(WS, headers=headers, autoclose=False) as ws:
        yield ws


async def hello(ws: aiohttp.ClientWebSocketResponse, device_id: str = MAC) -> dict[str, Any]:
    await ws.send_json(
        {"type": "hello", "device_id": device_id, "kind": "camera", "version": "0.1.0"}
    )
    reply: dict[str, Any] = await ws.receive_json(timeout=5)
    return reply


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> tuple[int, str | None]:
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE, msg
    return msg.data, msg.extra


async def status_of(client: aiohttp.ClientSession, auth: dict[str, str], camera_id: str) -> str:
    async with client.get(f"/v1/cameras/{camera_id}", headers=auth) as response:
        status: str = (await response.json())["status"]
        return status


async def wait_status(
    client: aiohttp.ClientSession, auth: dict[str, str], camera_id: str, wanted: str
) -> None:
    await eventually_async(
        lambda: status_of(client, auth, camera_id),
        until=lambda status: status == wanted,
        timeout=5,
        interval=0.02,
        what=f"camera {wanted}",
    )


async def test_hello_heartbeat_and_status(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    camera = await add_camera(client, auth)
    assert await status_of(client, auth, camera["camera_id"]) == "waiting"
    async with device(client, camera["token"]) as ws:
        assert await hello(ws) == {"type": "hello", "server": "cloud_mock", "heartbeat_s": 5}
        assert await status_of(client, auth, camera["camera_id"]) == "online"
        await ws.send_json({"type": "heartbeat"})
        assert await ws.receive_json(timeout=5) == {"type": "heartbeat"}
        async with client.get("/v1/cameras", headers=auth) as response:
            [listed] = (await response.json())["cameras"]
        assert listed["last_seen"] is not None
        await ws.close()
    await wait_status(client, auth, camera["camera_id"], "offline")


async def test_malformed_messages_are_ignored(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    camera = await add_camera(client, auth)
    async with device(client, camera["token"]) as ws:
        await hello(ws)
        for junk in (
            "not json",
            "[]",
            '{"no": "type"}',
            '{"type": 5}',
            '{"type": "weird"}',
            '{"type": "result", "id": "nope", "ok": true}',
            '{"type": "result"}',
        ):
            await ws.send_str(junk)
        await ws.send_bytes(b"\x00\x01")
        await ws.send_json({"type": "heartbeat"})
        assert await ws.receive_json(timeout=5) == {"type": "heartbeat"}
        assert await status_of(client, auth, camera["camera_id"]) == "online"


async def test_command_round_trip(client: aiohttp.ClientSession, auth: dict[str, str]) -> None:
    camera = await add_camera(client, auth)
    async with device(client, camera["token"]) as ws:
        await hello(ws)

        async def answer() -> dict[str, Any]:
            command: dict[str, Any] = await ws.receive_json(timeout=5)
            await ws.send_json(
                {
                    "type": "result",
                    "id": command["id"],
                    "ok": True,
                    "data": {"pong": command["args"]["n"]},
                }
            )
            return command

        answering = asyncio.create_task(answer())
        async with client.post(
            f"/v1/cameras/{camera['camera_id']}/commands",
            headers=auth,
            json={"name": "ping", "args": {"n": 42}},
        ) as response:
            assert response.status == 200
            assert await response.json() == {"ok": True, "data": {"pong": 42}}
        command = await answering
        assert command["type"] == "command"
        assert command["name"] == "ping"
        assert isinstance(command["id"], str)


async def test_command_without_answer_is_504(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    camera = await add_camera(client, auth)
    async with device(client, camera["token"]) as ws:
        await hello(ws)
        async with client.post(
            f"/v1/cameras/{camera['camera_id']}/commands", headers=auth, json={"name": "sync"}
        ) as response:
            assert response.status == 504
        # The device saw the command; a late answer is ignored without harm.
        command = await ws.receive_json(timeout=5)
        await ws.send_json({"type": "result", "id": command["id"], "ok": False, "data": None})
        await ws.send_json({"type": "heartbeat"})
        assert await ws.receive_json(timeout=5) == {"type": "heartbeat"}


async def test_delete_closes_open_channel_with_4401(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    camera = await add_camera(client, auth)
    async with device(client, camera["token"]) as ws:
        await hello(ws)
        async with client.delete(f"/v1/cameras/{camera['camera_id']}", headers=auth) as response:
            assert response.status == 204
        assert await closed_with(ws) == (4401, "token revoked")
    # And the revoked token cannot come back.
    async with device(client, camera["token"]) as ws:
        assert await closed_with(ws) == (4401, "token revoked")


async def test_bad_tokens_are_closed_with_4401(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    camera = await add_camera(client, auth)
    claims = parse_claims(camera["token"])
    payload = {
        "v": 1,
        "sub": MAC,
        "kind": "camera",
        "org": "demo",
        "api": mock.url,
        "iat": claims.iat,
        "jti": claims.jti,
    }
    forged = sign_token(payload, Ed25519PrivateKey.generate())
    tampered = camera["token"][:-4] + ("AAAA" if not camera["token"].endswith("AAAA") else "BBBB")
    # Properly signed by the mock, but not the current token of any camera.
    unknown_jti = sign_token({**payload, "jti": "0" * 32}, mock.app[CONFIG].signing_key)
    for token in (None, "garbage", "a.b", forged, tampered, unknown_jti):
        async with device(client, token) as ws:
            assert await closed_with(ws) == (4401, "token revoked"), token


async def test_hello_must_match_token(client: aiohttp.ClientSession, auth: dict[str, str]) -> None:
    camera = await add_camera(client, auth)
    async with device(client, camera["token"]) as ws:
        await ws.send_json(
            {"type": "hello", "device_id": "aa:bb:cc:dd:ee:02", "kind": "camera", "version": "0"}
        )
        code, _ = await closed_with(ws)
        assert code == 4400
    async with device(client, camera["token"]) as ws:
        await ws.send_str(json.dumps({"type": "heartbeat"}))
        code, _ = await closed_with(ws)
        assert code == 4400
    assert await status_of(client, auth, camera["camera_id"]) == "waiting"


async def test_a_hello_asyncapi_calls_invalid_is_refused_with_4400(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    camera = await add_camera(client, auth)
    good = {"type": "hello", "device_id": MAC, "kind": "camera", "version": "0.1.0"}
    bad: list[dict[str, Any]] = [
        {k: v for k, v in good.items() if k != "version"},
        {k: v for k, v in good.items() if k != "kind"},
        {k: v for k, v in good.items() if k != "device_id"},
        {**good, "kind": "nvr"},
        {**good, "version": 1},
        {**good, "version": "v" * 129},
        {**good, "video": "main"},
        {**good, "video": [""]},
    ]
    for message in bad:
        async with device(client, camera["token"]) as ws:
            await ws.send_json(message)
            code, _ = await closed_with(ws)
            assert code == 4400, message
    assert await status_of(client, auth, camera["camera_id"]) == "waiting"
    async with device(client, camera["token"]) as ws:
        assert (await hello(ws))["type"] == "hello"


async def test_new_channel_replaces_old_with_4409(
    client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    camera = await add_camera(client, auth)
    async with device(client, camera["token"]) as old:
        await hello(old)
        async with device(client, camera["token"]) as new:
            await hello(new)
            assert (await closed_with(old))[0] == 4409
            await new.send_json({"type": "heartbeat"})
            assert await new.receive_json(timeout=5) == {"type": "heartbeat"}
            assert await status_of(client, auth, camera["camera_id"]) == "online"


async def test_server_shutdown_closes_channels_promptly(
    client: aiohttp.ClientSession, auth: dict[str, str], mock: RunningMock
) -> None:
    camera = await add_camera(client, auth)
    async with device(client, camera["token"]) as ws:
        await hello(ws)
        stopping = asyncio.create_task(mock.stop())
        assert (await closed_with(ws))[0] == 1001
        await ws.close()
        await asyncio.wait_for(stopping, 5)


async def test_a_websocket_version_other_than_13_is_told_which_one(
    client: aiohttp.ClientSession,
) -> None:
    """RFC 6455 §4.4: version 8 was upgraded; now 426 names version 13, before any
    upgrade (issue 23)."""
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "8",
    }
    async with client.get("/v1/devices/ws", headers=headers) as answer:
        assert answer.status == 426
        assert answer.headers["Sec-WebSocket-Version"] == "13"
