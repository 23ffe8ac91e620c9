"""The control channel to the cloud (docs/design.md §2): WSS, Bearer token, JSON messages.

The device speaks first (`hello`), answers `command`s with `result`s and sends a
`heartbeat` at the interval the cloud asks for. Close code 4401 means the cloud revoked
the token. Everything else that ends a connection is retried with capped backoff.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from agent.backoff import Backoff
from agent.clock import Clock, SystemClock

log = logging.getLogger(__name__)

WS_PATH = "/v1/devices/ws"
CLOSE_REVOKED = 4401
DEFAULT_HEARTBEAT_S = 30.0
MAX_MESSAGE = 256 * 1024
# A connection that stayed up this long counts as healthy: the backoff starts over.
HEALTHY_AFTER_S = 30.0
# The opening handshake (TCP, TLS, upgrade) must be done by then.
CONNECT_TIMEOUT_S = 10.0

CommandHandler = Callable[[str, dict[str, Any]], Awaitable[tuple[bool, Any]]]


class TokenRevokedError(Exception):
    """The cloud closed the channel with 4401 (or refused the upgrade with 401)."""


@dataclass(frozen=True)
class Hello:
    device_id: str
    kind: str
    version: str
    video: tuple[str, ...] = ()  # the tunnel targets this device offers (§12.1)

    def message(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "device_id": self.device_id,
            "kind": self.kind,
            "version": self.version,
            "video": list(self.video),
        }


class ControlChannel:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        cloud_url: str,
        token: str,
        hello: Hello,
        on_command: CommandHandler,
        on_connected: Callable[[], None],
        on_lost: Callable[[str], None],
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.session = session
        self.url = cloud_url.rstrip("/") + WS_PATH
        self.token = token
        self.hello = hello
        self.on_command = on_command
        self.on_connected = on_connected
        self.on_lost = on_lost
        self.backoff = backoff or Backoff()
        self.rng = rng or random.Random()
        # The schedule (backoff sleeps, how long a connection stayed up) runs on the clock;
        # the I/O deadlines (connect, heartbeat silence) stay on the event loop's, as they
        # bound waits on the network.
        self.clock = clock or SystemClock()
        self.failures = 0
        self._connected_at: float | None = None

    async def run(self) -> None:
        """Keep the channel up until cancelled; raise TokenRevokedError on 4401."""
        while True:
            self._connected_at = None
            reason = await self._connect_once()
            if self._stayed_connected(self.clock.monotonic()):
                self.failures = 0
            self.failures += 1
            delay = self.backoff.delay(self.failures, self.rng.random())
            self.on_lost(reason)
            log.info("control channel down (%s); reconnecting in %.1f s", reason, delay)
            await self.clock.sleep(delay)

    def _stayed_connected(self, now: float) -> bool:
        """Healthy means it stayed *connected* that long; a slow failed attempt is not."""
        return self._connected_at is not None and now - self._connected_at >= HEALTHY_AFTER_S

    async def _connect_once(self) -> str:
        try:
            # Bounded by us: a blackholed link would otherwise hold the attempt for
            # aiohttp's default connect timeout (30 s), past the backoff we promise.
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                ws = await self.session.ws_connect(
                    self.url,
                    headers={"Authorization": f"Bearer {self.token}"},
                    max_msg_size=MAX_MESSAGE,
                    timeout=_close_timeout(),
                )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 401:
                raise TokenRevokedError("the cloud refused the token (HTTP 401)") from None
            return f"handshake refused: HTTP {exc.status}"
        except TimeoutError:
            return f"cannot connect: no answer within {CONNECT_TIMEOUT_S:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            return f"cannot connect: {exc or type(exc).__name__}"
        try:
            return await self._converse(ws)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return f"connection lost: {exc or type(exc).__name__}"
        finally:
            # Not `async with ws`: Debian 12's aiohttp 3.8 has no context manager on it.
            await ws.close()

    async def _converse(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        await ws.send_json(self.hello.message())
        heartbeat = DEFAULT_HEARTBEAT_S
        first = await self._receive(ws, timeout=30)
        if first is _CLOSED:
            return self._closed_reason(ws)
        if isinstance(first, dict) and first.get("type") == "hello":
            value = first.get("heartbeat_s")
            if isinstance(value, int | float) and 0.05 <= value <= 3600:
                heartbeat = float(value)
        self.on_connected()
        self._connected_at = self.clock.monotonic()
        silent_for = 0.0
        while True:
            message = await self._receive(ws, timeout=heartbeat)
            if message is _TIMEOUT:
                silent_for += heartbeat
                if silent_for > 2.5 * heartbeat:
                    return "the cloud stopped answering"
                await ws.send_json({"type": "heartbeat"})
                continue
            if message is _CLOSED:
                return self._closed_reason(ws)
            silent_for = 0.0
            await self._handle(ws, message)

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse, timeout: float) -> Any:
        """The next JSON message (`null` too), _CLOSED when the channel closed, _TIMEOUT on
        silence."""
        while True:
            try:
                msg = await ws.receive(timeout=timeout)
            except TimeoutError:
                return _TIMEOUT
            if msg.type == aiohttp.WSMsgType.TEXT:
                try:
                    return json.loads(msg.data)
                except (ValueError, RecursionError):
                    log.warning("ignoring a control message that is not JSON")
                    continue
            if msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                return _CLOSED
            # binary, ping/pong: nothing for us

    def _closed_reason(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        if ws.close_code == CLOSE_REVOKED:
            raise TokenRevokedError("the cloud revoked the token (close code 4401)")
        return f"closed by the cloud (code {ws.close_code})"

    async def _handle(self, ws: aiohttp.ClientWebSocketResponse, message: Any) -> None:
        if not isinstance(message, dict):
            log.warning("ignoring a control message that is not an object")
            return
        kind = message.get("type")
        if kind == "heartbeat" or kind == "hello":
            return
        if kind != "command":
            log.info("ignoring control message of type %r", kind)
            return
        command_id, name, args = message.get("id"), message.get("name"), message.get("args") or {}
        if not isinstance(name, str) or not isinstance(args, dict):
            await ws.send_json(
                {"type": "result", "id": command_id, "ok": False, "data": "malformed command"}
            )
            return
        ok, data = await self.on_command(name, args)
        await ws.send_json({"type": "result", "id": command_id, "ok": ok, "data": data})


_TIMEOUT: Any = object()
_CLOSED: Any = object()  # not None: a cloud may well send the JSON text `null`


def _close_timeout() -> Any:
    """5 s to close, no receive timeout (we keep our own), in aiohttp 3.8 (Debian 12) too."""
    ws_timeout = getattr(aiohttp, "ClientWSTimeout", None)
    return ws_timeout(ws_receive=None, ws_close=5) if ws_timeout else 5.0
