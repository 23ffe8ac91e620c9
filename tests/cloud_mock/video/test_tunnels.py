"""The cloud's end of a video tunnel (docs/design.md §12.2, §12.3): one-time sessions bound
to one device, refusals that leave the session, the device's grant checked, and the local
bridge that serves exactly one client.

The device is scripted (a real token over the real channel and a real tunnel WebSocket);
the real daemon's tunnel is in tests/agent/video and tests/e2e/test_video_e2e.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cloud_mock.devices_ws import CHANNELS
from cloud_mock.server import RunningMock, start
from cloud_mock.video import tunnels
from cloud_mock.video.tunnels import (
    BROKER,
    Grant,
    LocalBridge,
    OpenTunnel,
    VideoUnavailable,
    open_tunnel,
    parse_grant,
)
from tests.cloud_mock.conftest import mock_options
from tests.cloud_mock.helpers import add_camera
from tests.cloud_mock.video.scripted import Answer, scripted_device
from tests.eventually import eventually_async

GRANT = {"target": "test", "scheme": "rtsp", "path": "/s?x=1", "username": "u", "password": "p"}
# The tests open tunnels to "test"; the mock's own thumbnail jobs ask for "main" and are
# refused, so that every session a Device records is one a test opened.
TARGET = "test"
OTHER_MAC = "02:00:00:00:0b:0b"


@pytest.fixture
async def mock(tmp_path: Path) -> AsyncIterator[RunningMock]:
    running = await start(mock_options(tmp_path / "cloud", command_timeout_s=5.0))
    try:
        yield running
    finally:
        await running.stop()


@dataclass
class Device:
    """What a scripted device saw of its tunnels: the sessions it was asked for."""

    camera: dict[str, Any]
    sessions: list[str] = field(default_factory=list)
    connect: bool = True  # connect the tunnel after answering, as camagent does
    sockets: list[aiohttp.ClientWebSocketResponse] = field(default_factory=list)
    # What arrived on the device's tunnels; read all along, as a device does, so that a
    # close from the cloud is answered at once.
    received: asyncio.Queue[aiohttp.WSMessage] = field(default_factory=asyncio.Queue)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    def add(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.sockets.append(ws)
        self.readers.append(asyncio.get_running_loop().create_task(self._read(ws)))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            message = await ws.receive()
            await self.received.put(message)
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return


def tunnel_answer(client: aiohttp.ClientSession, device: Device, grant: Any) -> Answer:
    def answer(command: dict[str, Any]) -> tuple[bool, Any]:
        if command["args"]["target"] != TARGET:
            return False, "not in this test"
        session = command["args"]["session"]
        device.sessions.append(session)
        if device.connect:
            asyncio.get_running_loop().create_task(connect(client, device, session))
        return True, grant

    return answer


async def connect(client: aiohttp.ClientSession, device: Device, session: str) -> None:
    ws = await client.ws_connect(
        f"/v1/devices/tunnels/{session}",
        headers={"Authorization": f"Bearer {device.camera['token']}"},
    )
    device.add(ws)


async def upgrade(
    client: aiohttp.ClientSession, session: str, token: str | None
) -> int | aiohttp.ClientWebSocketResponse:
    """The HTTP status of a refused upgrade, or the WebSocket."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        return await client.ws_connect(f"/v1/devices/tunnels/{session}", headers=headers)
    except aiohttp.WSServerHandshakeError as refused:
        return refused.status


@pytest.fixture
async def device(
    mock: RunningMock, client: aiohttp.ClientSession, auth: dict[str, str]
) -> AsyncIterator[Device]:
    camera = await add_camera(client, auth)
    seen = Device(camera)
    answers = {"tunnel_open": tunnel_answer(client, seen, GRANT)}
    async with scripted_device(
        client, camera["token"], camera["device_id"], ["main", TARGET], answers
    ) as _:
        await eventually_async(
            lambda: mock.app[CHANNELS].get(camera["camera_id"]) is not None,
            what="the device online",
        )
        yield seen
    for ws in seen.sockets:
        await ws.close()
    for reader in seen.readers:
        reader.cancel()


async def test_the_cloud_asks_by_name_and_the_device_connects_its_session(
    mock: RunningMock, device: Device
) -> None:
    opened = await open_tunnel(mock.app, device.camera["camera_id"], TARGET)
    try:
        assert opened.grant == Grant(TARGET, "rtsp", "/s?x=1", "u", "p")
        assert opened.grant.url(5554) == "rtsp://u:p@127.0.0.1:5554/s?x=1"
        [session] = device.sessions
        assert 22 <= len(session) <= 64
        assert opened.session.id == session
    finally:
        await opened.close()


async def test_a_session_is_used_once(
    mock: RunningMock, client: aiohttp.ClientSession, device: Device
) -> None:
    opened = await open_tunnel(mock.app, device.camera["camera_id"], TARGET)
    try:
        again = await upgrade(client, opened.session.id, device.camera["token"])
        assert again == 404
    finally:
        await opened.close()


async def test_refused_attempts_leave_the_session_for_its_device(
    mock: RunningMock, client: aiohttp.ClientSession, auth: dict[str, str], device: Device
) -> None:
    # Another camera of the same org: its token is signed, current and not revoked.
    other = await add_camera(client, auth, device_id=OTHER_MAC, name="other")
    device.connect = False
    opening = asyncio.create_task(open_tunnel(mock.app, device.camera["camera_id"], TARGET))
    await eventually_async(lambda: len(device.sessions) == 1, what="tunnel_open sent")
    session = device.sessions[0]
    assert await upgrade(client, session, None) == 401
    assert await upgrade(client, session, "not.a-token") == 401
    assert await upgrade(client, session, other["token"]) == 403
    assert await upgrade(client, "x" * 32, device.camera["token"]) == 404
    ws = await upgrade(client, session, device.camera["token"])
    assert isinstance(ws, aiohttp.ClientWebSocketResponse)
    device.add(ws)
    opened = await opening
    await opened.close()


async def test_a_deleted_cameras_token_cannot_use_its_session(
    mock: RunningMock, client: aiohttp.ClientSession, auth: dict[str, str], device: Device
) -> None:
    device.connect = False
    opening = asyncio.create_task(open_tunnel(mock.app, device.camera["camera_id"], TARGET))
    await eventually_async(lambda: len(device.sessions) == 1, what="tunnel_open sent")
    async with client.delete(f"/v1/cameras/{device.camera['camera_id']}", headers=auth) as r:
        assert r.status == 204
    assert await upgrade(client, device.sessions[0], device.camera["token"]) == 401
    with pytest.raises(VideoUnavailable):
        await opening


async def test_an_expired_session_is_unknown(
    mock: RunningMock,
    client: aiohttp.ClientSession,
    device: Device,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    device.connect = False
    monkeypatch.setattr(tunnels, "DEVICE_CONNECT_S", 30.0)
    opening = asyncio.create_task(open_tunnel(mock.app, device.camera["camera_id"], TARGET))
    await eventually_async(lambda: len(device.sessions) == 1, what="tunnel_open sent")
    monkeypatch.setattr(tunnels, "SESSION_TTL_S", 0.0)  # what 30 s do to it
    assert await upgrade(client, device.sessions[0], device.camera["token"]) == 404
    with pytest.raises(VideoUnavailable, match="did not connect its tunnel"):
        await opening
    assert mock.app[BROKER].pending_count() == 0


async def test_a_device_that_never_connects_is_reported_and_forgotten(
    mock: RunningMock, device: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    device.connect = False
    monkeypatch.setattr(tunnels, "DEVICE_CONNECT_S", 0.2)
    with pytest.raises(VideoUnavailable, match="did not connect its tunnel within"):
        await open_tunnel(mock.app, device.camera["camera_id"], TARGET)
    assert mock.app[BROKER].pending_count() == 0


async def test_the_devices_refusal_is_the_reason(
    mock: RunningMock, client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    camera = await add_camera(client, auth)
    reason = "the camera's RTSP server at 127.0.0.1:554 refused the connection"
    answers: dict[str, Answer] = {"tunnel_open": lambda _: (False, reason)}
    async with scripted_device(client, camera["token"], camera["device_id"], ["main"], answers):
        await eventually_async(
            lambda: mock.app[CHANNELS].get(camera["camera_id"]) is not None,
            what="online",
        )
        with pytest.raises(VideoUnavailable, match="refused the connection"):
            await open_tunnel(mock.app, camera["camera_id"], "main")
    # The mock's own thumbnail job was refused the same way: nothing stays pending.
    await eventually_async(lambda: mock.app[BROKER].pending_count() == 0, what="none pending")
    with pytest.raises(VideoUnavailable, match="offline"):
        await open_tunnel(mock.app, camera["camera_id"], "main")


@pytest.mark.parametrize(
    "data",
    [
        None,
        "ok",
        {"scheme": "ftp", "path": "/x"},
        {"scheme": "rtsp", "path": "x"},
        {"scheme": "rtsp", "path": "/a b"},
        {"scheme": "rtsp", "path": "/" + "x" * 2000},
        {"scheme": "rtsp", "path": "/x", "username": 5},
        {"scheme": "rtsp", "path": "/x", "password": "p" * 2000},
    ],
)
def test_a_grant_is_checked_field_by_field(data: Any) -> None:
    with pytest.raises(VideoUnavailable):
        parse_grant("main", data)


def test_credentials_are_percent_encoded_into_the_local_url() -> None:
    grant = parse_grant(
        "main", {"scheme": "rtsp", "path": "/", "username": "a@b", "password": "p:/#?"}
    )
    assert grant.url(1) == "rtsp://a%40b:p%3A%2F%23%3F@127.0.0.1:1/"
    bare = parse_grant("main", {"scheme": "http", "path": "/snap.jpg"})
    assert bare.url(2) == "http://127.0.0.1:2/snap.jpg"


async def test_the_bridge_serves_one_client_and_relays_its_bytes(
    mock: RunningMock, device: Device
) -> None:
    opened: OpenTunnel = await open_tunnel(mock.app, device.camera["camera_id"], TARGET)
    bridge = LocalBridge(opened)
    port = await bridge.start()
    first_reader, first_writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        first_writer.write(b"DESCRIBE rtsp://x/ RTSP/1.0\r\n\r\n")
        await first_writer.drain()
        [device_ws] = device.sockets
        message = await asyncio.wait_for(device.received.get(), 5)
        assert message.type == aiohttp.WSMsgType.BINARY
        assert message.data == b"DESCRIBE rtsp://x/ RTSP/1.0\r\n\r\n"
        await device_ws.send_bytes(b"RTSP/1.0 200 OK\r\n\r\n")
        assert await first_reader.readexactly(19) == b"RTSP/1.0 200 OK\r\n\r\n"
        # Nobody else on this host gets a second connection into the camera.
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
    finally:
        first_writer.close()
        await bridge.close()
    closing = await asyncio.wait_for(device.received.get(), 5)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_tunnel_open_is_not_for_api_callers(
    client: aiohttp.ClientSession, auth: dict[str, str], device: Device
) -> None:
    async with client.post(
        f"/v1/cameras/{device.camera['camera_id']}/commands",
        headers=auth,
        json={"name": "tunnel_open", "args": {"session": "s" * 22, "target": "main"}},
    ) as response:
        assert response.status == 403
        assert "cloud's own command" in (await response.json())["error"]
    assert device.sessions == []
