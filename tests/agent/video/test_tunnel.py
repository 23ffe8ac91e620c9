"""Video tunnels (docs/design.md §12.2, §12.3): `Tunnels.open` against a real aiohttp
server standing in for the cloud's tunnel endpoint and a real TCP "camera"; then the
`tunnel_open` command through the daemon (its fake cloud, over TLS), the tunnels closed
on reset, token change, revocation and shutdown; and the idle daemon importing none of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import aiohttp
import pytest
from aiohttp import web

from agent.commands import COMMANDS, CommandTable, UnknownCommand, Way
from agent.config import Config, parse
from agent.daemon import Daemon
from agent.errors import TunnelRefused
from agent.lifecycle import DeviceState
from agent.video import tunnel as tunnel_mod
from agent.video.relay import CLOSE_GOING_AWAY, CLOSE_NORMAL, MAX_MESSAGE, MAX_MSG_SIZE
from agent.video.targets import Target
from agent.video.tunnel import TUNNEL_PATH, Tunnels
from tests.agent.clock import START, FakeClock
from tests.agent.fake_cloud import FakeCloud, running
from tests.agent.test_daemon import K, make_config, sealed_for, token_for
from tests.eventually import eventually_async

SRC = "/etc/camagent/agent.toml"
ROOT = Path(__file__).resolve().parents[3]


def new_session() -> str:
    return secrets.token_urlsafe(24)  # 32 characters of [A-Za-z0-9_-], as the cloud makes


# -- the two far ends ----------------------------------------------------------------------


@dataclass
class Camera:
    """A TCP server on 127.0.0.1 that echoes what it reads and counts its connections."""

    port: int = 0
    accepted: int = 0
    ended: int = 0  # connections that saw EOF (or a reset) from the device
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.ended += 1
            writer.close()


@dataclass
class TunnelEndpoint:
    """The cloud's `/v1/devices/tunnels/{session}`: a real aiohttp server. It refuses the
    upgrade with `refuse` when set, holds it while `hold` is clear, and otherwise hands each
    accepted WebSocket to the test, which drives it."""

    url: str = ""
    refuse: int | None = None
    hold: asyncio.Event = field(default_factory=asyncio.Event)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Authorization)
    sockets: asyncio.Queue[web.WebSocketResponse] = field(default_factory=asyncio.Queue)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.hold.set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, request.headers.get("Authorization", "")))
        if self.refuse is not None:
            return web.json_response({"error": "refused"}, status=self.refuse)
        await self.hold.wait()
        ws = web.WebSocketResponse(max_msg_size=MAX_MSG_SIZE)
        await ws.prepare(request)
        await self.sockets.put(ws)
        await self.finished.wait()
        return ws

    async def accepted(self) -> web.WebSocketResponse:
        return await asyncio.wait_for(self.sockets.get(), 10)


@dataclass
class Rig:
    tunnels: Tunnels
    cloud: TunnelEndpoint
    camera: Camera
    clock: FakeClock
    config: Config


def video_config(cloud_url: str, camera_port: int) -> Config:
    config = parse(
        f"""
[video]
main = "rtsp://user:pa%40ss@127.0.0.1:{camera_port}/stream1?channel=1"
sub = "rtsp://127.0.0.1:{camera_port}/stream2"
max_tunnels = 2
idle_timeout = 5
""",
        SRC,
    )
    # plain http:// in a unit test: what is tested here is not TLS (the daemon's test is)
    return replace(config, cloud=replace(config.cloud, url=cloud_url))


@contextlib.asynccontextmanager
async def tunnel_rig(
    tweak: Callable[[Config], Config] = lambda c: c,
) -> AsyncIterator[Rig]:
    camera = Camera()
    camera_server = await asyncio.start_server(camera.serve, "127.0.0.1", 0)
    camera.port = camera_server.sockets[0].getsockname()[1]
    cloud = TunnelEndpoint()
    app = web.Application()
    app.router.add_get(TUNNEL_PATH + "{session}", cloud.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    cloud.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    config = tweak(video_config(cloud.url, camera.port))
    clock = FakeClock()
    session = aiohttp.ClientSession()
    tunnels = Tunnels(config, lambda: session, clock)
    try:
        yield Rig(tunnels, cloud, camera, clock, config)
    finally:
        cloud.hold.set()
        cloud.finished.set()  # the cloud's handlers return: their WebSockets close
        await tunnels.close_all("the test is over")
        await session.close()
        await runner.cleanup()
        for writer in camera.writers:
            writer.close()
        camera_server.close()
        await camera_server.wait_closed()


async def receive_to_close(ws: web.WebSocketResponse) -> tuple[bytes, int | None]:
    data = bytearray()
    while True:
        message = await asyncio.wait_for(ws.receive(), 10)
        if message.type is aiohttp.WSMsgType.BINARY:
            data += message.data
        elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return bytes(data), ws.close_code
        else:
            raise AssertionError(f"unexpected {message.type!r}")


async def closed_by(
    rig: Rig, why: str, sockets: list[web.WebSocketResponse], *, stopping: bool = False
) -> list[int | None]:
    """`close_all`, while the cloud reads as a cloud does; the close codes it saw."""
    reading = [asyncio.create_task(receive_to_close(ws)) for ws in sockets]
    await asyncio.wait_for(rig.tunnels.close_all(why, stopping=stopping), 10)
    return [code for _, code in await asyncio.gather(*reading)]


async def refused(rig: Rig, args: dict[str, object]) -> str:
    with pytest.raises(TunnelRefused) as info:
        await rig.tunnels.open(args, "tok")
    return str(info.value)


def refusals_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "agent.video.tunnel" and r.getMessage().startswith("tunnel refused: ")
    ]


GRANT = {
    "target": "main",
    "scheme": "rtsp",
    "path": "/stream1?channel=1",
    "username": "user",
    "password": "pa@ss",
}


# -- Tunnels.open ----------------------------------------------------------------------------


async def test_open_answers_the_grant_and_connects_to_the_cloud_with_the_token() -> None:
    async with tunnel_rig() as rig:
        session = new_session()
        grant = await rig.tunnels.open({"session": session, "target": "main"}, "tok-1")
        assert grant == GRANT
        await rig.cloud.accepted()
        assert rig.cloud.requests == [(f"/v1/devices/tunnels/{session}", "Bearer tok-1")]
        assert rig.camera.accepted == 1
        assert rig.tunnels.count == 1

        sub = await rig.tunnels.open({"session": new_session(), "target": "sub"}, "tok-1")
        assert sub == {
            "target": "sub",
            "scheme": "rtsp",
            "path": "/stream2",
            "username": None,
            "password": None,
        }
        assert rig.tunnels.count == 2


async def test_bytes_flow_through_the_tunnel_both_ways() -> None:
    payload = random.Random(12).randbytes(3 * 1024 * 1024)
    async with tunnel_rig() as rig:
        await rig.tunnels.open({"session": new_session(), "target": "main"}, "tok")
        ws = await rig.cloud.accepted()

        async def send() -> None:
            # whole 64 KiB messages (the most the design allows), then odd sizes
            at = 0
            while at < len(payload):
                step = MAX_MESSAGE if at < len(payload) // 2 else random.Random(at).randint(1, 999)
                await ws.send_bytes(payload[at : at + step])
                at += step

        async def receive() -> bytes:  # the camera echoes: the same bytes come back
            data = bytearray()
            while len(data) < len(payload):
                message = await asyncio.wait_for(ws.receive(), 10)
                assert message.type is aiohttp.WSMsgType.BINARY, message
                assert len(message.data) <= MAX_MESSAGE
                data += message.data
            return bytes(data)

        _, echoed = await asyncio.gather(send(), receive())
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()

        await ws.close()  # the viewer is done: the device closes TCP, the camera sees EOF
        await eventually_async(lambda: rig.camera.ended == 1, what="camera EOF")
        await eventually_async(lambda: rig.tunnels.count == 0, what="the tunnel to end")


async def test_a_message_over_64_kib_from_the_cloud_ends_the_tunnel() -> None:
    async with tunnel_rig() as rig:
        await rig.tunnels.open({"session": new_session(), "target": "main"}, "tok")
        ws = await rig.cloud.accepted()
        await ws.send_bytes(bytes(MAX_MESSAGE + 1))
        _, code = await receive_to_close(ws)
        assert code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        await eventually_async(lambda: rig.camera.ended == 1, what="camera EOF")
        await eventually_async(lambda: rig.tunnels.count == 0, what="the tunnel to end")


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (
            {"session": "short", "target": "main"},
            "session must be 22 to 64 characters of A-Z, a-z, 0-9, '_' and '-'",
        ),
        (
            {"session": "../../v1/devices/ws?x=aaaaaaaaaaaaa", "target": "main"},
            "session must be 22 to 64 characters",
        ),
        ({"target": "main"}, "session must be 22 to 64 characters"),
        (
            {"session": "a" * 22, "target": "127.0.0.1:22"},
            "unknown target '127.0.0.1:22': this device offers main, sub",
        ),
        (
            {"session": "a" * 22, "target": "gate/main"},
            "unknown target 'gate/main': this device offers main, sub",
        ),
        ({"session": "a" * 22, "target": "snapshot"}, "this device offers main, sub"),
        ({"session": "a" * 22}, "this device offers main, sub"),
        ({"session": "a" * 22, "target": None}, "this device offers main, sub"),
    ],
)
async def test_refusals_give_a_reason_and_touch_nothing(
    args: dict[str, object], reason: str
) -> None:
    async with tunnel_rig() as rig:
        assert reason in await refused(rig, args)
        assert rig.camera.accepted == 0
        assert rig.cloud.requests == []
        assert rig.tunnels.count == 0


async def test_each_reason_is_logged_once_however_often_it_repeats(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="agent.video.tunnel")
    async with tunnel_rig() as rig:
        for _ in range(5):
            await refused(rig, {"session": new_session(), "target": "x"})
        assert refusals_logged(caplog) == [
            "tunnel refused: unknown target 'x': this device offers main, sub"
        ]
        await refused(rig, {"session": "bad", "target": "main"})
        await refused(rig, {"session": new_session(), "target": "x"})
        await refused(rig, {"session": "bad", "target": "main"})
        assert len(refusals_logged(caplog)) == 2
        assert "session must be" in refusals_logged(caplog)[1]


async def test_more_than_max_tunnels_is_refused_until_one_ends() -> None:
    async with tunnel_rig() as rig:
        await rig.tunnels.open({"session": new_session(), "target": "main"}, "tok")
        await rig.tunnels.open({"session": new_session(), "target": "main"}, "tok")
        first, second = await rig.cloud.accepted(), await rig.cloud.accepted()
        assert rig.tunnels.count == 2
        message = await refused(rig, {"session": new_session(), "target": "sub"})
        assert message == "2 tunnels are open already (video.max_tunnels)"
        assert rig.camera.accepted == 2  # the third was refused before connecting

        await first.close()
        await eventually_async(lambda: rig.tunnels.count == 1, what="one tunnel to end")
        await rig.tunnels.open({"session": new_session(), "target": "sub"}, "tok")
        third = await rig.cloud.accepted()
        assert rig.tunnels.count == 2

        assert await closed_by(rig, "reset", [second, third]) == [CLOSE_GOING_AWAY] * 2
        assert rig.tunnels.count == 0


@contextlib.contextmanager
def connecting_held(monkeypatch: pytest.MonkeyPatch) -> Iterator[asyncio.Event]:
    """Hold each tunnel's TCP connect (to the real camera) until the event is set."""
    release = asyncio.Event()
    connect = tunnel_mod._connect

    async def held(target: Target) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        await release.wait()
        return await connect(target)

    monkeypatch.setattr(tunnel_mod, "_connect", held)
    yield release


async def test_tunnels_still_connecting_count_toward_max_tunnels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with tunnel_rig() as rig:
        with connecting_held(monkeypatch) as release:
            opening = [
                asyncio.create_task(
                    rig.tunnels.open({"session": new_session(), "target": "main"}, "tok")
                )
                for _ in range(2)
            ]
            await eventually_async(lambda: rig.tunnels.count == 2, what="two connecting")
            message = await refused(rig, {"session": new_session(), "target": "main"})
            assert message == "2 tunnels are open already (video.max_tunnels)"
            release.set()
            assert await asyncio.gather(*opening) == [GRANT, GRANT]
        await rig.cloud.accepted()
        await rig.cloud.accepted()
        assert rig.tunnels.count == 2
        assert rig.camera.accepted == 2


async def test_a_tunnel_still_connecting_when_the_device_stops_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with tunnel_rig() as rig:
        with connecting_held(monkeypatch) as release:
            opening = asyncio.create_task(
                rig.tunnels.open({"session": new_session(), "target": "main"}, "tok")
            )
            await eventually_async(lambda: rig.tunnels.count == 1, what="connecting")
            await rig.tunnels.close_all("camagent is stopping", stopping=True)
            release.set()
            with pytest.raises(TunnelRefused, match="the device is stopping"):
                await asyncio.wait_for(opening, 10)
        await eventually_async(lambda: rig.camera.ended == 1, what="the camera connection closed")
        assert rig.camera.accepted == 1
        assert rig.cloud.requests == []
        assert rig.tunnels.count == 0


async def test_a_camera_that_refuses_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed.listen()
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: the connection is refused

    def at_closed_port(config: Config) -> Config:
        return video_config(config.cloud.url, port)

    caplog.set_level(logging.INFO, logger="agent.video.tunnel")
    async with tunnel_rig(at_closed_port) as rig:
        for _ in range(3):
            message = await refused(rig, {"session": new_session(), "target": "main"})
            assert message == (
                f"the camera's RTSP server at 127.0.0.1:{port} refused the connection"
            )
        assert refusals_logged(caplog) == [f"tunnel refused: {message}"]
        assert rig.tunnels.count == 0
        assert rig.cloud.requests == []


async def test_a_camera_that_does_not_answer_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # A listener whose one-place queue is full drops further SYNs: connecting hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = [socket.create_connection(("127.0.0.1", port))]
    extra = socket.socket()
    extra.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        extra.connect(("127.0.0.1", port))
    fillers.append(extra)
    monkeypatch.setattr(tunnel_mod, "CONNECT_TIMEOUT_S", 0.2)

    def at_full_port(config: Config) -> Config:
        return video_config(config.cloud.url, port)

    try:
        async with tunnel_rig(at_full_port) as rig:
            message = await refused(rig, {"session": new_session(), "target": "main"})
            assert message == (
                f"the camera's RTSP server at 127.0.0.1:{port} did not answer within 0.2 s"
            )
            assert rig.tunnels.count == 0
    finally:
        for sock in (*fillers, listener):
            sock.close()


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_the_cloud_refusing_the_upgrade_closes_the_camera_connection(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.video.tunnel")
    async with tunnel_rig() as rig:
        rig.cloud.refuse = status
        session = new_session()
        assert await rig.tunnels.open({"session": session, "target": "main"}, "tok") == GRANT
        await eventually_async(lambda: rig.camera.ended == 1, what="camera EOF")
        await eventually_async(lambda: rig.tunnels.count == 0, what="the tunnel to end")
        assert rig.camera.accepted == 1
        assert rig.cloud.requests == [(f"/v1/devices/tunnels/{session}", "Bearer tok")]
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings == [
            f"tunnel {session[:8]}… to main (127.0.0.1:{rig.camera.port}): "
            f"the cloud refused it (HTTP {status})"
        ]


async def test_an_unreachable_cloud_closes_the_camera_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gone = socket.socket()
    gone.bind(("127.0.0.1", 0))
    port = gone.getsockname()[1]
    gone.close()

    def unreachable(config: Config) -> Config:
        return replace(config, cloud=replace(config.cloud, url=f"http://127.0.0.1:{port}"))

    caplog.set_level(logging.INFO, logger="agent.video.tunnel")
    async with tunnel_rig(unreachable) as rig:
        await rig.tunnels.open({"session": new_session(), "target": "main"}, "tok")
        await eventually_async(lambda: rig.camera.ended == 1, what="camera EOF")
        await eventually_async(lambda: rig.tunnels.count == 0, what="the tunnel to end")
        assert any("cannot reach the cloud" in r.getMessage() for r in caplog.records)


async def test_close_all_closes_every_tunnel_with_1001_and_stopping_refuses_new_ones() -> None:
    async with tunnel_rig() as rig:
        await rig.tunnels.open({"session": new_session(), "target": "main"}, "tok")
        await rig.tunnels.open({"session": new_session(), "target": "sub"}, "tok")
        sockets = [await rig.cloud.accepted(), await rig.cloud.accepted()]

        codes = await closed_by(rig, "camagent is stopping", sockets, stopping=True)
        assert codes == [CLOSE_GOING_AWAY] * 2
        assert rig.tunnels.count == 0
        await eventually_async(lambda: rig.camera.ended == 2, what="camera EOFs")

        message = await refused(rig, {"session": new_session(), "target": "main"})
        assert message == "the device is stopping"
        assert rig.camera.accepted == 2


async def test_close_all_without_stopping_still_takes_new_tunnels() -> None:
    async with tunnel_rig() as rig:
        await rig.tunnels.close_all("nothing open")  # no tunnel yet: nothing to do
        await rig.tunnels.open({"session": new_session(), "target": "main"}, "tok")
        ws = await rig.cloud.accepted()
        assert await closed_by(rig, "the token was forgotten or replaced", [ws]) == [1001]
        await rig.tunnels.open({"session": new_session(), "target": "main"}, "tok")
        await rig.cloud.accepted()
        assert rig.tunnels.count == 1


async def test_close_all_while_the_websocket_is_still_connecting() -> None:
    async with tunnel_rig() as rig:
        rig.cloud.hold.clear()  # the cloud takes its time to accept the upgrade
        await rig.tunnels.open({"session": new_session(), "target": "main"}, "tok")
        await eventually_async(lambda: rig.cloud.requests, what="the upgrade request")
        closing = asyncio.create_task(rig.tunnels.close_all("reset"))
        await asyncio.sleep(0)  # let close_all mark the tunnel before the upgrade completes
        rig.cloud.hold.set()
        ws = await rig.cloud.accepted()
        assert (await receive_to_close(ws))[1] == CLOSE_GOING_AWAY
        await asyncio.wait_for(closing, 10)
        assert rig.tunnels.count == 0
        await eventually_async(lambda: rig.camera.ended == 1, what="camera EOF")


async def test_an_idle_tunnel_closes_with_1000_on_the_fake_clock() -> None:
    async with tunnel_rig() as rig:
        await rig.tunnels.open({"session": new_session(), "target": "main"}, "tok")
        ws = await rig.cloud.accepted()
        await ws.send_bytes(b"OPTIONS * RTSP/1.0\r\n\r\n")
        assert (await asyncio.wait_for(ws.receive(), 10)).data == b"OPTIONS * RTSP/1.0\r\n\r\n"
        assert rig.config.video.idle_timeout == 5
        wake = await rig.clock.skip_to_next_wake()
        assert wake == START + 5
        assert (await receive_to_close(ws))[1] == CLOSE_NORMAL
        await eventually_async(lambda: rig.tunnels.count == 0, what="the tunnel to end")
        await eventually_async(lambda: rig.camera.ended == 1, what="camera EOF")


# -- through the daemon ----------------------------------------------------------------------


@dataclass
class VideoCloud(FakeCloud):
    """The daemon tests' fake cloud with a tunnel endpoint that records each tunnel's
    Bearer token, the bytes it carried and how it was closed."""

    tunnel_tokens: list[str] = field(default_factory=list)
    tunnel_closes: list[int | None] = field(default_factory=list)
    tunnel_sockets: list[web.WebSocketResponse] = field(default_factory=list)
    tunnel_data: list[bytearray] = field(default_factory=list)  # what each tunnel carried up

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get(TUNNEL_PATH + "{session}", self._tunnel)
        return app

    async def _tunnel(self, request: web.Request) -> web.WebSocketResponse:
        self.tunnel_tokens.append(request.headers.get("Authorization", ""))
        ws = web.WebSocketResponse(max_msg_size=MAX_MSG_SIZE)
        await ws.prepare(request)
        self.tunnel_sockets.append(ws)
        self.tunnel_data.append(data := bytearray())
        async for message in ws:
            data += message.data
        self.tunnel_closes.append(ws.close_code)
        return ws


@pytest.fixture
def run_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cav", dir="/tmp"))  # a Unix socket's name is short
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextlib.asynccontextmanager
async def daemon_with_video(
    tmp: Path, run_dir: Path, camera_port: int
) -> AsyncIterator[tuple[Daemon, VideoCloud, str]]:
    clock = FakeClock()
    cloud = VideoCloud(clock, key=K)
    async with running(cloud, tmp / "cloud") as (url, session):
        config = make_config(tmp, run_dir, url)
        video = video_config(url, camera_port).video
        daemon = Daemon(replace(config, video=video), clock=clock, session=session)
        task = asyncio.create_task(daemon.run())
        try:
            await eventually_async(lambda: daemon.state is not None, what="the daemon to start")
            await eventually_async(lambda: cloud.polls, what="the first poll")
            yield daemon, cloud, url
        finally:
            daemon.stop()
            assert await asyncio.wait_for(task, 10) == 0


@contextlib.asynccontextmanager
async def echo_camera() -> AsyncIterator[Camera]:
    camera = Camera()
    server = await asyncio.start_server(camera.serve, "127.0.0.1", 0)
    camera.port = server.sockets[0].getsockname()[1]
    try:
        yield camera
    finally:
        for writer in camera.writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def open_through_the_daemon(daemon: Daemon, cloud: VideoCloud) -> web.WebSocketResponse:
    before = len(cloud.tunnel_sockets)
    ok, grant = await daemon.commands.cloud(
        "tunnel_open", {"session": new_session(), "target": "main"}
    )
    assert ok, grant
    assert grant == GRANT
    await eventually_async(lambda: len(cloud.tunnel_sockets) > before, what="the tunnel")
    ws = cloud.tunnel_sockets[-1]
    await ws.send_bytes(b"PLAY")  # through the device to the camera, and echoed back
    await eventually_async(lambda: cloud.tunnel_data[-1] == b"PLAY", what="the echo")
    return ws


async def test_tunnel_open_through_the_command_table_refuses_with_a_reason(
    tmp_path: Path, run_dir: Path
) -> None:
    async with (
        echo_camera() as camera,
        daemon_with_video(tmp_path, run_dir, camera.port) as (
            daemon,
            cloud,
            _,
        ),
    ):
        assert await daemon.commands.cloud("tunnel_open", {"session": "x", "target": "main"}) == (
            False,
            "session must be 22 to 64 characters of A-Z, a-z, 0-9, '_' and '-'",
        )
        assert await daemon.commands.cloud(
            "tunnel_open", {"session": new_session(), "target": "10.0.0.1:554"}
        ) == (False, "unknown target '10.0.0.1:554': this device offers main, sub")
        assert await daemon.commands.cloud("tunnel_open", {}) == (
            False,
            "session must be 22 to 64 characters of A-Z, a-z, 0-9, '_' and '-'",
        )
        assert camera.accepted == 0
        assert cloud.tunnel_tokens == []


async def test_tunnels_carry_the_token_and_close_on_token_change_revocation_reset_and_stop(
    tmp_path: Path, run_dir: Path
) -> None:
    async with echo_camera() as camera:
        async with daemon_with_video(tmp_path, run_dir, camera.port) as (daemon, cloud, url):
            first = token_for(url, jti="first")
            await daemon.commands.control("token_set", {"token": sealed_for(url, jti="first")})
            await eventually_async(lambda: daemon.state is DeviceState.CONNECTED)

            await open_through_the_daemon(daemon, cloud)
            assert cloud.tunnel_tokens == [f"Bearer {first}"]
            assert daemon.tunnels is not None
            assert daemon.tunnels.count == 1

            # the cloud replaces the token: Disconnect closes the tunnel (1001)
            second = token_for(url, jti="second")
            sealed_second = sealed_for(url, jti="second")
            assert await daemon.commands.cloud("set_token", {"token": sealed_second}) == (
                True,
                "token replaced",
            )
            await eventually_async(lambda: cloud.tunnel_closes == [CLOSE_GOING_AWAY])
            await eventually_async(lambda: camera.ended == 1, what="camera EOF")
            assert daemon.tunnels.count == 0
            await eventually_async(lambda: daemon.state is DeviceState.CONNECTED)

            # the new token is the one a tunnel carries now; revocation closes it
            await open_through_the_daemon(daemon, cloud)
            assert cloud.tunnel_tokens[-1] == f"Bearer {second}"
            await cloud.revoke()
            await eventually_async(lambda: daemon.state is DeviceState.PROVISIONING)
            await eventually_async(lambda: cloud.tunnel_closes == [CLOSE_GOING_AWAY] * 2)
            assert daemon.tunnels.count == 0

            # a reset (here the cloud's command) closes them too
            await daemon.commands.control("token_set", {"token": sealed_for(url, jti="third")})
            await eventually_async(lambda: daemon.state is DeviceState.CONNECTED)
            await open_through_the_daemon(daemon, cloud)
            assert await daemon.commands.cloud("reset", {}) == (True, "resetting")
            await eventually_async(lambda: cloud.tunnel_closes == [CLOSE_GOING_AWAY] * 3)
            assert daemon.tunnels.count == 0

            # and so does stopping
            await daemon.commands.control("token_set", {"token": sealed_for(url, jti="fourth")})
            await eventually_async(lambda: daemon.state is DeviceState.CONNECTED)
            await open_through_the_daemon(daemon, cloud)
            tunnels = daemon.tunnels
        assert cloud.tunnel_closes == [CLOSE_GOING_AWAY] * 4
        assert tunnels.count == 0
        await eventually_async(lambda: camera.ended == 4, what="camera EOFs")
        with pytest.raises(TunnelRefused, match="the device is stopping"):
            await tunnels.open({"session": new_session(), "target": "main"}, "tok")


@pytest.mark.parametrize("name", ["tunnel_open", "probe"])
@pytest.mark.parametrize("way", ["cli", "lan"])
async def test_tunnel_open_and_probe_are_the_clouds_only(name: str, way: Way) -> None:
    assert COMMANDS[name].ways == frozenset({"cloud"})
    table = CommandTable(cast(Daemon, None))  # refused before the daemon is looked at
    with pytest.raises(UnknownCommand, match=f"unknown command '{name}'"):
        await table.call(name, {"session": new_session(), "target": "main"}, way)


# -- the idle daemon carries none of it -----------------------------------------------------

VIDEO_MODULES = (
    "agent.video",
    "agent.video.tunnel",
    "agent.video.relay",
    "agent.video.targets",
    "agent.video.rtsp_probe",
)


def test_the_idle_daemon_imports_no_video_code() -> None:
    code = (
        "import sys, agent.daemon, agent.cli, agent.commands\n"
        f"print(','.join(m for m in {VIDEO_MODULES!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_the_idle_memory_benchmark_checks_for_video_code() -> None:
    from benchmarks.daemon_bench import HEAVY, _heavy_in_sys_modules

    assert "agent.video" in HEAVY
    assert _heavy_in_sys_modules() == []
