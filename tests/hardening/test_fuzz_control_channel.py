"""Fuzzing the control channel: whatever a cloud (or someone on the path who got past TLS)
sends down the WebSocket, the agent stays connected, answers what is a command, ignores
the rest, and never raises.

The cloud here is a real aiohttp WebSocket server in-process; the agent side is the real
ControlChannel over a real socket, and then the daemon's own command handler.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import parse as parse_config
from agent.control_channel import ControlChannel, Hello
from agent.daemon import Daemon
from tests.examples import examples
from tests.hardening.strategies import json_values

END = "fuzz-end"


class Cloud:
    """One WebSocket endpoint playing back a script of frames, then a ping to close on."""

    def __init__(self) -> None:
        self.script: list[str | bytes] = []
        self.results: list[dict[str, Any]] = []
        self.done: asyncio.Future[None] | None = None

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if self.done is None or self.done.done():  # a reconnection after the script: no more
            await ws.close()
            return ws
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "hello"
        await ws.send_json({"type": "hello", "heartbeat_s": 30})
        for frame in self.script:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
        await ws.send_json({"type": "command", "id": END, "name": "ping", "args": {}})
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            answer = json.loads(msg.data)
            if answer.get("type") == "result":
                self.results.append(answer)
                if answer.get("id") == END:
                    break
        await ws.close()
        assert self.done is not None
        if not self.done.done():
            self.done.set_result(None)
        return ws


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def cloud(loop: asyncio.AbstractEventLoop) -> Iterator[tuple[Cloud, str]]:
    cloud = Cloud()
    app = web.Application()
    app.router.add_get("/v1/devices/ws", cloud.handler)
    server = TestServer(app)
    loop.run_until_complete(server.start_server())
    yield cloud, str(server.make_url("")).rstrip("/")
    loop.run_until_complete(server.close())


commands = st.fixed_dictionaries(
    {"type": st.just("command"), "id": json_values, "name": json_values, "args": json_values}
)
messages = st.one_of(
    json_values,
    commands,
    st.dictionaries(st.sampled_from(["type", "id", "name", "args", "heartbeat_s"]), json_values),
    st.fixed_dictionaries({"type": st.sampled_from(["hello", "heartbeat", "result", "x"])}),
)
frames = st.one_of(
    st.builds(json.dumps, messages),
    st.text(max_size=50),
    st.binary(max_size=50),
    st.just("[" * 100_000),
)


def expected_answer(frame: str | bytes) -> dict[str, Any] | None:
    """The result a well-formed command must get; None for frames that get none."""
    if isinstance(frame, bytes):
        return None
    try:
        message = json.loads(frame)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or message.get("type") != "command":
        return None
    name, args = message.get("name"), message.get("args") or {}
    ok = isinstance(name, str) and isinstance(args, dict)
    return {"id": message.get("id"), "ok": ok}


@settings(max_examples=examples(120), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(frames, max_size=6))
def test_any_frames_leave_the_channel_up_and_answering(
    loop: asyncio.AbstractEventLoop, cloud: tuple[Cloud, str], script: list[str | bytes]
) -> None:
    server, url = cloud
    server.script, server.results = script, []
    calls: list[tuple[str, dict[str, Any]]] = []

    async def on_command(name: str, args: dict[str, Any]) -> tuple[bool, Any]:
        calls.append((name, args))
        return True, {"seen": name}

    async def run() -> None:
        server.done = loop.create_future()
        async with aiohttp.ClientSession() as session:
            channel = ControlChannel(
                session,
                url,
                "t.k",
                Hello("aa:bb:cc:dd:ee:ff", "camera", "1"),
                on_command,
                on_connected=lambda: None,
                on_lost=lambda reason: None,
            )
            task = asyncio.create_task(channel.run())
            done, _ = await asyncio.wait(
                {task, server.done}, timeout=10, return_when=asyncio.FIRST_COMPLETED
            )
            assert task not in done, task.exception()  # run() must only end when cancelled
            assert server.done in done, "the channel stopped answering"
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    loop.run_until_complete(run())
    wanted = [a for a in map(expected_answer, script) if a is not None]
    got = [{"id": r["id"], "ok": r["ok"]} for r in server.results[:-1]]
    assert got == wanted
    assert server.results[-1] == {"type": "result", "id": END, "ok": True, "data": {"seen": "ping"}}


# -- the daemon's own handler behind the channel ------------------------------------------


def make_daemon(tmp: Path, kind: str) -> Daemon:
    key = Ed25519PrivateKey.generate().public_key()
    pem = tmp / "key.pem"
    pem.write_bytes(key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    config = parse_config(
        f"""[device]
id = "aa:bb:cc:dd:ee:ff"
kind = "{kind}"
[cloud]
url = "https://cloud.example.com"
trust_keys = ["{pem}"]
[paths]
state_dir = "{tmp / "state"}"
run_dir = "{tmp / "run"}"
[nvr]
archive_path = "{tmp / "archive"}"
[[nvr.cameras]]
name = "door"
url = "rtsp://127.0.0.1/door"
""",
        str(tmp / "agent.toml"),
    )
    return Daemon(config)


@pytest.fixture(scope="module", params=["camera", "nvr"])
def daemon(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Daemon:
    return make_daemon(tmp_path_factory.mktemp(request.param), request.param)


@settings(max_examples=examples(200), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(st.sampled_from(["ping", "reset", "set_token", "sync", "configure"]), st.text()),
    st.dictionaries(
        st.one_of(st.sampled_from(["token", "cameras", "broadcast", "archive"]), st.text()),
        json_values,
        max_size=4,
    ),
)
def test_the_daemon_answers_any_command_with_ok_or_a_reason(
    loop: asyncio.AbstractEventLoop, daemon: Daemon, name: str, args: dict[str, Any]
) -> None:
    async def call() -> tuple[bool, Any]:
        return await daemon.commands.cloud(name, args)

    ok, data = loop.run_until_complete(call())
    assert isinstance(ok, bool)
    json.dumps(data)  # it goes back to the cloud as JSON
    if name == "set_token":
        assert ok is False  # nothing the fuzzer can make is signed by the cloud's key
    if not ok:
        assert isinstance(data, str)
        assert data
