"""The control channel against asyncapi.yaml: the real agent (agent/control_channel.py)
talks to the real mock, and every frame either side sends, and every close code, must be
a message the document allows."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agent.control_channel import ControlChannel, Hello, TokenRevokedError
from cloud_mock.conformance.documents import channel_contract
from cloud_mock.server import RunningMock, start
from tests.cloud_mock.conftest import client_for, mock_options
from tests.cloud_mock.helpers import login
from tests.cloud_mock.nvr_helpers import NVR_ID, call, linked_nvr
from tests.eventually import eventually_async

CAMERA_ID = "02:00:00:c0:ff:ee"


@dataclass
class Frames:
    sent: list[tuple[str, str]] = field(default_factory=list)  # (sender, text)
    closes: list[int] = field(default_factory=list)

    def types(self, sender: str) -> set[str]:
        return {json.loads(text).get("type") for who, text in self.sent if who == sender}


@pytest.fixture
def frames(monkeypatch: pytest.MonkeyPatch) -> Frames:
    """Every text frame the agent (aiohttp's client) and the mock (its server) send."""
    seen = Frames()
    client_send = aiohttp.ClientWebSocketResponse.send_str
    server_send = web.WebSocketResponse.send_str
    server_close = web.WebSocketResponse.close

    async def device_sends(self: Any, data: str, *args: Any, **kwargs: Any) -> None:
        seen.sent.append(("device", data))
        await client_send(self, data, *args, **kwargs)

    async def cloud_sends(self: Any, data: str, *args: Any, **kwargs: Any) -> None:
        seen.sent.append(("cloud", data))
        await server_send(self, data, *args, **kwargs)

    async def cloud_closes(self: Any, *args: Any, **kwargs: Any) -> bool:
        seen.closes.append(int(kwargs.get("code", 1000)))
        return await server_close(self, *args, **kwargs)

    monkeypatch.setattr(aiohttp.ClientWebSocketResponse, "send_str", device_sends)
    monkeypatch.setattr(web.WebSocketResponse, "send_str", cloud_sends)
    monkeypatch.setattr(web.WebSocketResponse, "close", cloud_closes)
    return seen


@pytest.fixture
async def fast_mock(tmp_path: Path) -> AsyncIterator[RunningMock]:
    running = await start(mock_options(tmp_path / "cloud", heartbeat_s=1, command_timeout_s=5))
    try:
        yield running
    finally:
        await running.stop()


async def _answer(name: str, args: dict[str, Any]) -> tuple[bool, Any]:
    """What a camagent daemon answers (agent/daemon.py, agent/nvr/link.py)."""
    if name == "ping":
        return True, {"pong": True, "device_id": CAMERA_ID, "ts": time.time()}
    if name == "sync":
        return True, {"cameras": [{"name": "Gate", "url": "rtsp://10.0.0.5/stream"}]}
    if name == "configure":
        return True, {"applied": []}
    return False, f"unknown command {name!r}"


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    await eventually_async(condition, timeout=timeout, interval=0.02, what="condition")


def _assert_conforms(frames: Frames) -> None:
    contract = channel_contract()
    problems = [
        f"{sender}: {text[:120]}: {p}"
        for sender, text in frames.sent
        for p in contract.check_frame(sender, text)
    ]
    problems += [p for code in frames.closes for p in contract.check_close(code)]
    assert problems == []


async def test_agent_camera_and_mock_speak_the_documented_messages(
    fast_mock: RunningMock, frames: Frames
) -> None:
    lost: list[str] = []
    connected = asyncio.Event()
    async with client_for(fast_mock) as client:
        auth = await login(client, fast_mock.data_dir)
        status, camera = await call(
            client, "POST", "/v1/cameras", auth, {"device_id": CAMERA_ID, "password": "pw-1"}
        )
        assert status == 201, camera
        channel = ControlChannel(
            client,
            fast_mock.url,
            camera["token"],
            Hello(CAMERA_ID, "camera", "1.0"),
            on_command=_answer,
            on_connected=connected.set,
            on_lost=lost.append,
        )
        running = asyncio.create_task(channel.run())
        try:
            await asyncio.wait_for(connected.wait(), 10)
            for name, args in (("ping", {}), ("set_token", {"token": "x.y"}), ("bogus", {})):
                path = f"/v1/cameras/{camera['camera_id']}/commands"
                status, result = await call(
                    client, "POST", path, auth, {"name": name, "args": args}
                )
                assert status == 200, result
            # A quiet second: the agent sends a heartbeat and the mock answers it.
            await _until(lambda: "heartbeat" in frames.types("cloud"))
            status, _ = await call(client, "DELETE", f"/v1/cameras/{camera['camera_id']}", auth)
            assert status == 204
            with pytest.raises(TokenRevokedError):
                await asyncio.wait_for(running, 10)
        finally:
            running.cancel()
    assert frames.types("device") == {"hello", "heartbeat", "result"}
    assert frames.types("cloud") == {"hello", "heartbeat", "command"}
    assert 4401 in frames.closes
    _assert_conforms(frames)


async def test_agent_nvr_and_mock_speak_the_documented_messages(
    fast_mock: RunningMock, frames: Frames
) -> None:
    connected = asyncio.Event()
    async with client_for(fast_mock) as client:
        auth = await login(client, fast_mock.data_dir)
        registrator, token = await linked_nvr(client, auth)
        channel = ControlChannel(
            client,
            fast_mock.url,
            token,
            Hello(NVR_ID, "nvr", "1.0"),
            on_command=_answer,
            on_connected=connected.set,
            on_lost=lambda _: None,
        )
        running = asyncio.create_task(channel.run())
        try:
            await asyncio.wait_for(connected.wait(), 10)
            rid = registrator["id"]
            status, body = await call(
                client, "PUT", f"/v1/registrators/{rid}/broadcast", auth, {"enabled": True}
            )
            assert status == 200, body
            assert body["applied"] is True
            status, body = await call(client, "POST", f"/v1/registrators/{rid}/sync", auth)
            assert status == 200, body
            assert body["cameras"][0]["name"] == "Gate"
        finally:
            running.cancel()
    commands = [t for who, t in frames.sent if who == "cloud" and '"command"' in t]
    assert any('"configure"' in t for t in commands)
    assert any('"sync"' in t for t in commands)
    _assert_conforms(frames)


def test_the_contract_would_catch_a_frame_outside_it() -> None:
    """The check is not vacuous: frames the document does not allow are reported."""
    contract = channel_contract()
    assert contract.check_frame("device", '{"type": "hello", "device_id": "x"}')
    assert contract.check_frame("cloud", '{"type": "command", "id": "1", "name": "ping"}')
    assert contract.check_frame("device", '{"type": "command", "id": "1"}')
    assert contract.check_frame("cloud", "not json")
    assert contract.check_close(4000)
