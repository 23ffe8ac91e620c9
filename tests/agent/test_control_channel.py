"""The control channel against a scripted WebSocket server over real TLS."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agent.backoff import Backoff
from agent.control_channel import HEALTHY_AFTER_S, ControlChannel, Hello, TokenRevokedError
from agent.tls import client_context
from cloud_mock.pki import ensure_pki
from tests.agent.clock import FakeClock
from tests.eventually import eventually_async

Script = Callable[[web.WebSocketResponse, web.Request], Awaitable[None]]


class ScriptedCloud:
    """A WSS endpoint at /v1/devices/ws whose behaviour each test scripts."""

    def __init__(self) -> None:
        self.script: Script | None = None
        self.connections = 0
        self.received: list[Any] = []
        self.auth: list[str] = []
        self.url = ""
        self.ca_file = Path()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.connections += 1
        self.auth.append(request.headers.get("Authorization", ""))
        if request.headers.get("Authorization") == "Bearer refuse-me":
            raise web.HTTPUnauthorized()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        assert self.script is not None
        await self.script(ws, request)
        return ws

    async def receive(self, ws: web.WebSocketResponse) -> Any:
        message = await ws.receive_json(timeout=5)
        self.received.append(message)
        return message

    async def listen(self, ws: web.WebSocketResponse) -> None:
        """Record what the device sends until it goes away; never answer (a dead cloud)."""
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.received.append(json.loads(msg.data))


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[ScriptedCloud]:
    scripted = ScriptedCloud()
    pki = ensure_pki(tmp_path, "127.0.0.1")
    app = web.Application()
    app.router.add_get("/v1/devices/ws", scripted.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=pki.ssl_context())
    await site.start()
    port = runner.addresses[0][1]
    scripted.url = f"https://127.0.0.1:{port}"
    scripted.ca_file = tmp_path / "ca.pem"
    yield scripted
    await runner.cleanup()


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.commands: list[tuple[str, dict[str, Any]]] = []

    async def on_command(self, name: str, args: dict[str, Any]) -> tuple[bool, Any]:
        self.commands.append((name, args))
        return (True, {"pong": True}) if name == "ping" else (False, "unknown command")


@pytest.fixture
async def session(cloud: ScriptedCloud) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(ssl=client_context(str(cloud.ca_file)))
    async with aiohttp.ClientSession(connector=connector) as s:
        yield s


def channel(
    session: aiohttp.ClientSession, cloud: ScriptedCloud, rec: Recorder, token: str = "tok"
) -> ControlChannel:
    return ControlChannel(
        session,
        cloud.url,
        token,
        Hello("aa:bb:cc:dd:ee:ff", "camera", "9.9"),
        on_command=rec.on_command,
        on_connected=lambda: rec.events.append("connected"),
        on_lost=lambda reason: rec.events.append(f"lost: {reason}"),
        backoff=Backoff(base=0.05, cap=0.2),
    )


async def wait_for(predicate: Callable[[], bool], timeout: float = 5) -> None:
    await eventually_async(predicate, timeout=timeout, interval=0.01)


async def test_hello_first_then_commands_answered_with_results(
    cloud: ScriptedCloud, session: aiohttp.ClientSession
) -> None:
    results: list[Any] = []

    async def script(ws: web.WebSocketResponse, _: web.Request) -> None:
        await cloud.receive(ws)
        await ws.send_json({"type": "hello", "heartbeat_s": 30})
        await ws.send_json({"type": "command", "id": "c1", "name": "ping", "args": {}})
        results.append(await cloud.receive(ws))
        await ws.send_json({"type": "command", "id": "c2", "name": "nope", "args": {}})
        results.append(await cloud.receive(ws))
        await ws.send_str("not json")
        await ws.send_json({"type": "command", "id": "c3", "name": "ping", "args": "x"})
        results.append(await cloud.receive(ws))
        await cloud.listen(ws)

    cloud.script = script
    rec = Recorder()
    task = asyncio.create_task(channel(session, cloud, rec).run())
    await wait_for(lambda: len(results) == 3)
    task.cancel()
    assert cloud.received[0] == {
        "type": "hello",
        "device_id": "aa:bb:cc:dd:ee:ff",
        "kind": "camera",
        "version": "9.9",
        "video": [],
    }
    assert cloud.auth[0] == "Bearer tok"
    assert results[0] == {"type": "result", "id": "c1", "ok": True, "data": {"pong": True}}
    assert results[1] == {"type": "result", "id": "c2", "ok": False, "data": "unknown command"}
    assert results[2]["ok"] is False
    assert results[2]["id"] == "c3"
    assert rec.events == ["connected"]


async def test_heartbeats_follow_the_cloud_and_silence_means_reconnect(
    cloud: ScriptedCloud, session: aiohttp.ClientSession
) -> None:
    async def script(ws: web.WebSocketResponse, _: web.Request) -> None:
        await cloud.receive(ws)
        await ws.send_json({"type": "hello", "heartbeat_s": 0.1})
        await cloud.listen(ws)

    cloud.script = script
    rec = Recorder()
    task = asyncio.create_task(channel(session, cloud, rec).run())
    await wait_for(lambda: cloud.connections >= 2)
    task.cancel()
    heartbeats = [m for m in cloud.received if m.get("type") == "heartbeat"]
    assert len(heartbeats) >= 2
    assert "lost: the cloud stopped answering" in rec.events


@pytest.mark.parametrize("how", ["close-4401", "http-401"])
async def test_revocation_ends_the_channel(
    cloud: ScriptedCloud, session: aiohttp.ClientSession, how: str
) -> None:
    async def script(ws: web.WebSocketResponse, _: web.Request) -> None:
        await cloud.receive(ws)
        await ws.close(code=4401, message=b"token revoked")

    cloud.script = script
    rec = Recorder()
    token = "refuse-me" if how == "http-401" else "tok"
    with pytest.raises(TokenRevokedError):
        await asyncio.wait_for(channel(session, cloud, rec, token).run(), 5)
    assert cloud.connections == 1, "a revoked token is never retried"


async def test_other_closes_are_retried_with_growing_capped_backoff(
    cloud: ScriptedCloud, session: aiohttp.ClientSession
) -> None:
    async def script(ws: web.WebSocketResponse, _: web.Request) -> None:
        await cloud.receive(ws)
        await ws.close(code=1011)

    cloud.script = script
    rec = Recorder()
    chan = channel(session, cloud, rec)
    task = asyncio.create_task(chan.run())
    await wait_for(lambda: cloud.connections >= 5)
    task.cancel()
    assert all(e == "lost: closed by the cloud (code 1011)" for e in rec.events)
    assert chan.failures >= 4


async def test_a_malformed_hello_answer_still_connects_with_the_default_heartbeat(
    cloud: ScriptedCloud, session: aiohttp.ClientSession
) -> None:
    async def script(ws: web.WebSocketResponse, _: web.Request) -> None:
        await cloud.receive(ws)
        await ws.send_str(json.dumps({"type": "hello", "heartbeat_s": "soon"}))
        await cloud.listen(ws)

    cloud.script = script
    rec = Recorder()
    task = asyncio.create_task(channel(session, cloud, rec).run())
    await wait_for(lambda: rec.events[:1] == ["connected"])
    task.cancel()
    assert not [m for m in cloud.received if m.get("type") == "heartbeat"]


class LowestDraw(random.Random):
    """Every jitter draw 0: each backoff delay is half its window, exactly."""

    def random(self) -> float:
        return 0.0


async def test_only_a_connection_that_stayed_up_a_healthy_while_starts_the_backoff_over(
    cloud: ScriptedCloud, session: aiohttp.ClientSession
) -> None:
    # On the fake clock the cloud can keep a connection up for 30 s in no time, and the
    # backoff delays are the exact ones asked for.
    clock = FakeClock()
    stays = [0.0, 0.0, HEALTHY_AFTER_S, HEALTHY_AFTER_S - 0.5, 0.0]
    rec = Recorder()

    async def script(ws: web.WebSocketResponse, _: web.Request) -> None:
        await cloud.receive(ws)
        await ws.send_json({"type": "hello", "heartbeat_s": 30})
        await wait_for(lambda: rec.events.count("connected") == cloud.connections)
        clock.advance_to(clock.now + stays[cloud.connections - 1])  # time spent connected
        await ws.close(code=1011)

    cloud.script = script
    chan = ControlChannel(
        session,
        cloud.url,
        "tok",
        Hello("aa:bb:cc:dd:ee:ff", "camera", "9.9"),
        on_command=rec.on_command,
        on_connected=lambda: rec.events.append("connected"),
        on_lost=lambda reason: rec.events.append("lost"),
        backoff=Backoff(base=1.0, cap=60.0),
        rng=LowestDraw(),
        clock=clock,
    )
    task = asyncio.create_task(chan.run())
    while len(clock.slept) < len(stays):
        await clock.skip_to_next_wake()
    task.cancel()
    assert clock.slept == [
        0.5,
        1.0,  # two quick losses: the window doubles
        0.5,  # up for HEALTHY_AFTER_S: the backoff starts over
        1.0,  # up for a little less: it goes on growing
        2.0,
    ]
    assert rec.events == ["connected", "lost"] * len(stays)
