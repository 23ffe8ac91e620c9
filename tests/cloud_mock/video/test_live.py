"""The mock's live puller against cameras that misbehave (docs/design.md §12.5): one that
accepts PLAY and then sends nothing is retried with a reason, not waited on forever.

The device is scripted: it answers `tunnel_open`, connects its tunnel, and plays an RTSP
server over it that answers every request and never sends a packet. A real camera
through the real daemon is in tests/e2e/test_video_e2e.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cloud_mock.server import RunningMock, start
from tests.cloud_mock.conftest import mock_options
from tests.cloud_mock.helpers import add_camera
from tests.cloud_mock.video.scripted import Answer, scripted_device

SDP = (
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=silent\r\nt=0 0\r\n"
    "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:track1\r\n"
)


@pytest.fixture
async def mock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningMock]:
    monkeypatch.setenv("CAMAGENT_MOCK_VIDEO_STALL_S", "1")  # a silent camera's cost, shortened
    monkeypatch.setenv("CAMAGENT_MOCK_VIDEO_THUMBNAIL_S", "3600")
    running = await start(mock_options(tmp_path / "cloud", command_timeout_s=5.0))
    try:
        yield running
    finally:
        await running.stop()


def answer(request: str) -> bytes:
    """An RTSP server that says yes to everything and never sends a packet."""
    method = request.split(" ", 1)[0]
    cseq = next(
        (
            line.split(":", 1)[1].strip()
            for line in request.split("\r\n")
            if line.startswith("CSeq")
        ),
        "1",
    )
    headers = f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n"
    if method == "DESCRIBE":
        return (
            f"{headers}Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n{SDP}"
        ).encode()
    if method == "SETUP":
        headers += "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: 1\r\n"
    elif method == "PLAY":
        headers += "Session: 1\r\n"
    elif method == "OPTIONS":
        headers += "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n"
    return (headers + "\r\n").encode()


async def silent_camera(ws: aiohttp.ClientWebSocketResponse, plays: list[str]) -> None:
    pending = b""
    async for message in ws:
        if message.type != aiohttp.WSMsgType.BINARY:
            return
        pending += message.data
        while b"\r\n\r\n" in pending:
            head, pending = pending.split(b"\r\n\r\n", 1)
            request = head.decode()
            plays.append(request.split(" ", 1)[0])
            await ws.send_bytes(answer(request))


async def test_a_camera_that_plays_nothing_is_retried_with_a_reason(
    mock: RunningMock, client: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    camera = await add_camera(client, auth)
    requests: list[str] = []
    tunnels: list[asyncio.Task[None]] = []

    async def connect(session: str) -> None:
        async with client.ws_connect(
            f"/v1/devices/tunnels/{session}",
            headers={"Authorization": f"Bearer {camera['token']}"},
        ) as ws:
            await silent_camera(ws, requests)

    def open_tunnel(command: dict[str, Any]) -> tuple[bool, Any]:
        tunnels.append(asyncio.create_task(connect(command["args"]["session"])))
        return True, {"target": "main", "scheme": "rtsp", "path": "/main"}

    answers: dict[str, Answer] = {"tunnel_open": open_tunnel}
    statuses: list[dict[str, Any]] = []
    live = f"/v1/cameras/{camera['camera_id']}/live"
    async with (
        scripted_device(client, camera["token"], camera["device_id"], ["main"], answers),
        client.ws_connect(live, headers=auth) as viewer,
        asyncio.timeout(30),
    ):
        async for message in viewer:
            assert message.type == aiohttp.WSMsgType.TEXT, "no picture was expected"
            statuses.append(message.json())
            if statuses[-1]["state"] == "retrying":
                break
    for task in tunnels:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert "PLAY" in requests, requests  # ffmpeg got as far as playing
    assert statuses[-1]["message"].startswith("no video from the camera for 1 s")
    assert "trying again" in statuses[-1]["message"]
