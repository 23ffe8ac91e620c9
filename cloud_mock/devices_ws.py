"""The device control channel `GET /v1/devices/ws` (docs/design.md §2), for cameras and NVRs.

The handshake always completes; a bad, unknown or revoked token is then refused with
close code 4401, which tells the agent to forget its token and provision again (an
HTTP 401 would look like a transient failure to a WebSocket client).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from cryptography.exceptions import InvalidSignature

from agent.errors import TokenError
from agent.token_codec import parse_claims, split_token
from cloud_mock.api import bearer_token
from cloud_mock.keys import CLOCK, CONFIG, STORE
from cloud_mock.store import Store

log = logging.getLogger(__name__)

CLOSE_BAD_HELLO = 4400
CLOSE_REVOKED = 4401
CLOSE_REPLACED = 4409
CLOSE_GOING_AWAY = 1001
MAX_MESSAGE = 64 * 1024
HELLO_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 5.0


class ChannelClosed(Exception):
    """The device disconnected before it answered."""


@dataclass(frozen=True)
class Peer:
    """Who is on the other end: a camera or an NVR (registrator), by its cloud-side ID."""

    kind: str  # "camera" | "nvr"
    id: str  # camera_id or registrator_id (random UUIDs: one namespace for both)
    device_id: str
    jti: str


@dataclass(eq=False)
class Channel:
    """One live, greeted connection of one device."""

    peer: Peer
    ws: web.WebSocketResponse
    pending: dict[str, asyncio.Future[tuple[bool, Any]]] = field(default_factory=dict)
    # The tunnel targets the device offers (its hello's `video`, §12.1); None: not said.
    video: tuple[str, ...] | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # closed, replaced, revoked

    async def command(self, name: str, args: dict[str, Any], timeout: float) -> tuple[bool, Any]:
        """Send a command and wait for its result; TimeoutError, ChannelClosed."""
        command_id = uuid.uuid4().hex
        future: asyncio.Future[tuple[bool, Any]] = asyncio.get_running_loop().create_future()
        self.pending[command_id] = future
        try:
            try:
                await self.ws.send_json(
                    {"type": "command", "id": command_id, "name": name, "args": args}
                )
            except (ConnectionError, RuntimeError):
                raise ChannelClosed from None
            return await asyncio.wait_for(future, timeout)
        finally:
            self.pending.pop(command_id, None)

    @property
    def device_id(self) -> str:
        return self.peer.device_id

    def resolve(self, message: dict[str, Any]) -> None:
        command_id, ok = message.get("id"), message.get("ok")
        if not isinstance(command_id, str) or not isinstance(ok, bool):
            log.warning("%s: result without a string id and a boolean ok, ignored", self.device_id)
            return
        future = self.pending.get(command_id)
        if future is None or future.done():
            log.warning("%s: result for unknown command %r, ignored", self.device_id, command_id)
            return
        future.set_result((ok, message.get("data")))

    def fail_pending(self) -> None:
        """The channel ended: every command still waiting fails, and `ended` is set."""
        self.ended.set()
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ChannelClosed())


class Channels:
    """Live channels by camera_id or registrator_id: at most one per device."""

    def __init__(self) -> None:
        self._by_peer: dict[str, Channel] = {}
        self._closing: set[asyncio.Task[bool]] = set()

    def get(self, peer_id: str) -> Channel | None:
        return self._by_peer.get(peer_id)

    def is_online(self, peer_id: str) -> bool:
        return peer_id in self._by_peer

    def attach(self, channel: Channel) -> None:
        old = self._by_peer.get(channel.peer.id)
        self._by_peer[channel.peer.id] = channel
        if old is not None:
            log.info("%s: new connection replaces the old one", channel.device_id)
            self.close(old, CLOSE_REPLACED, "replaced by a newer connection")

    def detach(self, channel: Channel) -> None:
        # Only if still current: a replaced channel must not unregister its successor.
        if self._by_peer.get(channel.peer.id) is channel:
            del self._by_peer[channel.peer.id]

    def close(self, channel: Channel, code: int, message: str) -> None:
        """Detach now, close in the background (a dead peer must not stall the caller)."""
        self.detach(channel)
        channel.fail_pending()
        task = asyncio.create_task(channel.ws.close(code=code, message=message.encode()))
        self._closing.add(task)
        task.add_done_callback(self._closed)

    def _closed(self, task: asyncio.Task[bool]) -> None:
        self._closing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("closing a channel failed: %r", task.exception())

    async def close_all(self) -> None:
        for channel in list(self._by_peer.values()):
            self.close(channel, CLOSE_GOING_AWAY, "server shutting down")
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=CLOSE_TIMEOUT_S)


HelloHook = Callable[[web.Application, Channel], None]


class HelloHooks:
    """Called (synchronously) when a device has said hello and its channel is live; a
    hook that needs to talk to the device starts a task of its own."""

    def __init__(self) -> None:
        self._hooks: list[HelloHook] = []

    def add(self, hook: HelloHook) -> None:
        self._hooks.append(hook)

    def run(self, app: web.Application, channel: Channel) -> None:
        for hook in self._hooks:
            try:
                hook(app, channel)
            except Exception:
                log.exception("%s: hello hook failed", channel.device_id)


CHANNELS = web.AppKey("channels", Channels)
HELLO_HOOKS = web.AppKey("hello_hooks", HelloHooks)


def lookup(store: Store, jti: str) -> Peer | None:
    """The camera or NVR whose current token has this jti, if any."""
    camera = store.devices.camera_by_jti(jti)
    if camera is not None:
        return Peer("camera", camera.camera_id, camera.device_id, jti)
    registrator = store.registrators.registrator_by_jti(jti)
    if registrator is not None and registrator.device_id is not None:
        return Peer("nvr", registrator.id, registrator.device_id, jti)
    return None


def seen(store: Store, peer: Peer, at: float, *, hello: bool = False) -> None:
    if peer.kind == "camera":
        store.devices.camera_seen(peer.id, at, hello=hello)
    else:
        store.registrators.registrator_seen(peer.id, at, hello=hello)


def authorize(store: Store, request: web.Request) -> Peer | None:
    """The camera or NVR whose *current* token is presented, or None (close 4401)."""
    token = bearer_token(request)
    if token is None:
        return None
    public_key = request.app[CONFIG].signing_key.public_key()
    try:
        payload, signature = split_token(token)
        public_key.verify(signature, payload)
        claims = parse_claims(token)
    except (TokenError, InvalidSignature):
        return None
    if store.devices.is_revoked(claims.jti):
        return None
    peer = lookup(store, claims.jti)
    if peer is None or peer.device_id != claims.sub or peer.kind != claims.kind:
        return None
    return peer


def _decode(raw: str) -> dict[str, Any] | None:
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return None
    return message


MAX_VIDEO_TARGETS = 512
MAX_TARGET_NAME = 128


MAX_HELLO_FIELD = 128


def hello_problem(hello: dict[str, Any], peer: Peer) -> str | None:
    """Why this hello is not a valid DeviceHello (asyncapi.yaml) for the token's device, or
    None: device_id, kind and version are required, and device_id and kind are the token's."""
    for name in ("device_id", "kind", "version"):
        value = hello.get(name)
        if not isinstance(value, str):
            return f"hello without a string {name}"
        if len(value) > MAX_HELLO_FIELD or (name != "version" and not value):
            return f"hello {name} empty or longer than {MAX_HELLO_FIELD}"
    if hello["device_id"] != peer.device_id:
        return "hello device_id does not match the token"
    if hello["kind"] != peer.kind:
        return "hello kind does not match the token"
    if "video" in hello and video_targets(hello) is None:
        return "hello video is not a list of target names"
    return None


async def _receive_hello(ws: web.WebSocketResponse, peer: Peer) -> dict[str, Any] | str:
    """The hello if the first message is a valid one for this device, else why not."""
    try:
        msg = await ws.receive(timeout=HELLO_TIMEOUT_S)
    except TimeoutError:
        return "no hello"
    if msg.type != WSMsgType.TEXT:
        return "expected a hello message"
    hello = _decode(msg.data)
    if hello is None or hello["type"] != "hello":
        return "expected a hello message"
    problem = hello_problem(hello, peer)
    if problem is not None:
        return problem
    log.info(
        "%s: hello (kind %r, version %r)", peer.device_id, hello.get("kind"), hello.get("version")
    )
    return hello


def video_targets(hello: dict[str, Any]) -> tuple[str, ...] | None:
    """The hello's `video` list when it is one of names; None when absent or malformed."""
    video = hello.get("video")
    if not isinstance(video, list) or len(video) > MAX_VIDEO_TARGETS:
        return None
    if not all(isinstance(v, str) and 0 < len(v) <= MAX_TARGET_NAME for v in video):
        return None
    return tuple(video)


async def device_ws(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Sec-WebSocket-Version", "13").strip() != "13":
        # RFC 6455 §4.4: say which version this cloud speaks, before any upgrade.
        return web.json_response(
            {"error": "this cloud speaks WebSocket version 13 only (RFC 6455)"},
            status=426,
            headers={"Sec-WebSocket-Version": "13"},
        )
    config, store, clock = request.app[CONFIG], request.app[STORE], request.app[CLOCK]
    ws = web.WebSocketResponse(
        heartbeat=config.heartbeat_s, max_msg_size=MAX_MESSAGE, timeout=CLOSE_TIMEOUT_S
    )
    peer = authorize(store, request)
    await ws.prepare(request)
    if peer is None:
        log.info("control channel refused: token missing, invalid or revoked")
        await ws.close(code=CLOSE_REVOKED, message=b"token revoked")
        return ws
    hello = await _receive_hello(ws, peer)
    if isinstance(hello, str):
        log.info("%s: closing control channel: %s", peer.device_id, hello)
        await ws.close(code=CLOSE_BAD_HELLO, message=hello.encode())
        return ws
    if lookup(store, peer.jti) != peer:  # deleted or unlinked while we waited for hello
        await ws.close(code=CLOSE_REVOKED, message=b"token revoked")
        return ws
    await ws.send_json({"type": "hello", "server": "cloud_mock", "heartbeat_s": config.heartbeat_s})
    channel = Channel(peer, ws, video=video_targets(hello))
    channels = request.app[CHANNELS]
    channels.attach(channel)
    seen(store, peer, clock.now(), hello=True)
    request.app[HELLO_HOOKS].run(request.app, channel)
    try:
        async for msg in ws:
            seen(store, peer, clock.now())
            if msg.type == WSMsgType.TEXT:
                await _on_message(channel, msg.data)
            else:
                log.warning("%s: non-text message ignored", peer.device_id)
    finally:
        channels.detach(channel)
        channel.fail_pending()
        log.info("%s: control channel closed (code %s)", peer.device_id, ws.close_code)
    return ws


async def _on_message(channel: Channel, raw: str) -> None:
    message = _decode(raw)
    if message is None:
        log.warning("%s: malformed message ignored", channel.device_id)
        return
    kind = message["type"]
    if kind == "heartbeat":
        with contextlib.suppress(ConnectionError, RuntimeError):  # closing under us
            await channel.ws.send_json({"type": "heartbeat"})
    elif kind == "result":
        channel.resolve(message)
    else:
        log.warning("%s: unexpected message type %r ignored", channel.device_id, kind)


async def _close_channels(app: web.Application) -> None:
    await app[CHANNELS].close_all()


def setup(app: web.Application) -> None:
    app[CHANNELS] = Channels()
    app[HELLO_HOOKS] = HelloHooks()
    app.on_shutdown.append(_close_channels)
    app.router.add_get("/v1/devices/ws", device_ws)
