"""The cloud's end of a device's video tunnel (docs/design.md §12.2, §12.3).

`open_tunnel` makes a one-time session bound to one device, sends `tunnel_open` over the
device's control channel and waits for the device to connect to
`/v1/devices/tunnels/{session}`; `LocalBridge` then offers that tunnel as a TCP port on
127.0.0.1 to exactly one local client (the puller's ffmpeg).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import web

from agent.clock import SystemClock
from agent.video.relay import MAX_MESSAGE, MAX_MSG_SIZE, Relay
from cloud_mock.api import ApiError
from cloud_mock.devices_ws import CHANNELS, ChannelClosed, Peer, authorize
from cloud_mock.keys import CONFIG, STORE

log = logging.getLogger(__name__)

SESSION_TTL_S = 30.0  # from `tunnel_open` to the device's upgrade
DEVICE_CONNECT_S = 10.0  # how long the cloud waits for that upgrade
MAX_PENDING = 1024  # sessions waiting for their device, in all
TUNNEL_IDLE_S = 60.0
SCHEMES = ("rtsp", "rtsps", "http", "https")
MAX_FIELD = 1024


class VideoUnavailable(Exception):
    """No tunnel: the message says why, for the person watching."""


@dataclass(frozen=True)
class Grant:
    """The device's `tunnel_open` result: how to speak to the target through the tunnel."""

    target: str
    scheme: str
    path: str
    username: str | None
    password: str | None

    def url(self, port: int) -> str:
        """The URL for a local client of the bridge on `port` (credentials included)."""
        userinfo = ""
        if self.username is not None:
            userinfo = quote(self.username, safe="")
            if self.password is not None:
                userinfo += ":" + quote(self.password, safe="")
            userinfo += "@"
        return f"{self.scheme}://{userinfo}127.0.0.1:{port}{self.path}"


def parse_grant(target: str, data: Any) -> Grant:
    """A `tunnel_open` result checked field by field: a device is not trusted either."""
    if not isinstance(data, dict):
        raise VideoUnavailable("the device answered tunnel_open without a grant")
    scheme, path = data.get("scheme"), data.get("path")
    if scheme not in SCHEMES:
        raise VideoUnavailable(f"the device answered tunnel_open with scheme {scheme!r}")
    if not isinstance(path, str) or not path.startswith("/") or len(path) > MAX_FIELD:
        raise VideoUnavailable("the device answered tunnel_open without a valid path")
    if any(ord(c) < 33 or ord(c) == 127 for c in path):
        raise VideoUnavailable("the device answered tunnel_open with a path holding spaces")
    credentials = [data.get("username"), data.get("password")]
    for value in credentials:
        if value is not None and (not isinstance(value, str) or len(value) > MAX_FIELD):
            raise VideoUnavailable("the device answered tunnel_open with bad credentials")
    return Grant(target, str(scheme), path, credentials[0], credentials[1])


@dataclass(eq=False)
class TunnelSession:
    id: str
    peer: Peer
    target: str
    created: float
    connected: asyncio.Future[web.WebSocketResponse]
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class TunnelBroker:
    """Sessions waiting for their device; each used once, then forgotten."""

    def __init__(self) -> None:
        self._pending: dict[str, TunnelSession] = {}

    def create(self, peer: Peer, target: str) -> TunnelSession:
        self._prune()
        if len(self._pending) >= MAX_PENDING:
            raise VideoUnavailable("too many tunnels are being opened right now; try again")
        loop = asyncio.get_running_loop()
        session = TunnelSession(
            secrets.token_urlsafe(24), peer, target, time.monotonic(), loop.create_future()
        )
        self._pending[session.id] = session
        return session

    def pending_count(self) -> int:
        self._prune()
        return len(self._pending)

    def forget(self, session: TunnelSession) -> None:
        self._pending.pop(session.id, None)

    def claim(self, session_id: str, peer: Peer) -> TunnelSession:
        """The session for this device's upgrade, taken out (used once); ApiError if none."""
        self._prune()
        session = self._pending.get(session_id)
        if session is None or session.connected.done():
            raise ApiError(404, "no such tunnel session (unknown, expired or used)")
        if session.peer.id != peer.id:
            raise ApiError(403, "this tunnel session was made for another device")
        del self._pending[session_id]
        return session

    def _prune(self) -> None:
        now = time.monotonic()
        for session_id, session in list(self._pending.items()):
            if now - session.created > SESSION_TTL_S:
                del self._pending[session_id]
                if not session.connected.done():
                    session.connected.cancel()


BROKER = web.AppKey("tunnel_broker", TunnelBroker)


@dataclass
class OpenTunnel:
    """A device connected to its session: the WebSocket and what the device granted."""

    session: TunnelSession
    ws: web.WebSocketResponse
    grant: Grant

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close()
        self.session.finished.set()


async def open_tunnel(app: web.Application, peer_id: str, target: str) -> OpenTunnel:
    """Ask the device behind `peer_id` for a tunnel to `target`; VideoUnavailable if not."""
    channel = app[CHANNELS].get(peer_id)
    if channel is None:
        raise VideoUnavailable("the device is offline")
    broker = app[BROKER]
    session = broker.create(channel.peer, target)
    try:
        try:
            ok, data = await channel.command(
                "tunnel_open",
                {"session": session.id, "target": target},
                app[CONFIG].command_timeout_s,
            )
        except TimeoutError:
            raise VideoUnavailable("the device did not answer tunnel_open in time") from None
        except ChannelClosed:
            raise VideoUnavailable("the device went offline") from None
        if not ok:
            raise VideoUnavailable(f"the device refused: {_shown(data)}")
        grant = parse_grant(target, data)
        ws = await _device_connects(session, channel.ended)
    except BaseException:
        broker.forget(session)
        session.finished.set()
        raise
    return OpenTunnel(session, ws, grant)


async def _device_connects(
    session: TunnelSession, channel_ended: asyncio.Event
) -> web.WebSocketResponse:
    """The device's tunnel WebSocket, or VideoUnavailable: it did not come in time, the
    session expired (the broker cancels its future), or the device's channel ended."""
    ended: asyncio.Future[Any] = asyncio.ensure_future(channel_ended.wait())
    waiting: set[asyncio.Future[Any]] = {session.connected, ended}
    try:
        done, _ = await asyncio.wait(
            waiting,
            timeout=DEVICE_CONNECT_S,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        ended.cancel()
    if session.connected in done and not session.connected.cancelled():
        return session.connected.result()
    if ended in done:
        raise VideoUnavailable("the device went offline before its tunnel connected")
    raise VideoUnavailable(f"the device did not connect its tunnel within {DEVICE_CONNECT_S:g} s")


def _shown(data: Any, limit: int = 300) -> str:
    text = data if isinstance(data, str) else repr(data)
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def tunnel_ws(request: web.Request) -> web.StreamResponse:
    """`GET /v1/devices/tunnels/{session}`: the device's end (§12.3)."""
    peer = authorize(request.app[STORE], request)
    if peer is None:
        raise ApiError(401, "a device token is needed", headers={"WWW-Authenticate": "Bearer"})
    session = request.app[BROKER].claim(request.match_info["session"], peer)
    ws = web.WebSocketResponse(max_msg_size=MAX_MSG_SIZE, heartbeat=30.0)
    try:
        await ws.prepare(request)
    except BaseException:
        session.connected.cancel()
        raise
    if session.connected.done():  # the opener gave up meanwhile
        await ws.close()
        return ws
    session.connected.set_result(ws)
    log.info("%s: tunnel to %s connected", peer.device_id, session.target)
    # The bridge owns the WebSocket from here; the handler only keeps it alive.
    await session.finished.wait()
    return ws


class LocalBridge:
    """The tunnel as a TCP port on 127.0.0.1 for one local client (ffmpeg, aiohttp).

    The listener accepts exactly one connection and closes; the relay runs until either
    end closes. `port` is known once `start` returned.
    """

    def __init__(self, tunnel: OpenTunnel, idle_timeout: float = TUNNEL_IDLE_S) -> None:
        self.tunnel = tunnel
        self.idle_timeout = idle_timeout
        self.port = 0
        self.relay: Relay | None = None
        self.ended = asyncio.Event()
        self.why = ""
        self._server: asyncio.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", 0, limit=MAX_MESSAGE, backlog=1
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.relay is not None or self._server is None:
            writer.close()  # one client only: the one this bridge was made for
            return
        self._server.close()
        self.relay = Relay(
            reader,
            writer,
            self.tunnel.ws,
            idle_timeout=self.idle_timeout,
            clock=SystemClock(),
            tcp_side="the puller",
            ws_side="the device",
        )
        try:
            self.why = await self.relay.run()
        finally:
            self.tunnel.session.finished.set()
            self.ended.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self.relay is not None:
            self.relay.stop(1000, "closed by the cloud")
            await self.ended.wait()
        else:
            await self.tunnel.close()
            self.ended.set()


def setup(app: web.Application) -> None:
    app[BROKER] = TunnelBroker()
    app.router.add_get("/v1/devices/tunnels/{session}", tunnel_ws)
