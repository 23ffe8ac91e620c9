"""What every check module of the kit shares: the protocol's paths and the kit's waits,
a failed rule, an HTTP answer as the kit saw it, the run's options, and `Link`, one control
channel read by one task."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

POLL_PATH = "/v1/provisioning/poll"
WS_PATH = "/v1/devices/ws"
TS_WINDOW_S = 300
OUTSIDE_S = 330  # beyond the window by more than Date's 1 s resolution and our latency
INSIDE_S = 240
LONG_POLL_WAIT_S = 20
HELD_BEFORE_ADD_S = 1.0  # let the poll reach the cloud and be held before the add
WAKE_SLACK_S = 2.0  # a held poll answers within this of the add (or activation) finishing
ANSWER_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = LONG_POLL_WAIT_S + 15
SILENCE_S = 0.5  # how long the cloud must stay silent before the device's hello
DEFAULT_TIMING_SAMPLES = 15
DEFAULT_TIMING_TOLERANCE_S = 0.025


class Failed(Exception):
    """A rule is broken; `rule` names it."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule
        self.detail = detail


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    seconds: float

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass
class Options:
    timing_samples: int = DEFAULT_TIMING_SAMPLES
    timing_tolerance_s: float = DEFAULT_TIMING_TOLERANCE_S


def random_mac() -> str:
    # Locally administered, unicast: never a real vendor's camera.
    octets = [0x02] + [secrets.randbelow(256) for _ in range(5)]
    return ":".join(f"{o:02x}" for o in octets)


class Link:
    """One channel, read by one task that never times out (a `receive(timeout=...)` that
    expires sets aiohttp's close code to 1006), and the cloud's close code taken from its
    close frame."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, on_frame: Callable[[str], None]):
        self.ws = ws
        self._on_frame = on_frame
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=100)
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        closing = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        while True:
            msg = await self.ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                self._on_frame(msg.data)
                try:
                    await self._queue.put(json.loads(msg.data))
                except ValueError:
                    await self._queue.put({"type": None})
            elif msg.type == aiohttp.WSMsgType.CLOSE:
                # The code the cloud sent: ws.close_code turns 1006 when our reply
                # cannot be written because the cloud already closed the connection.
                await self._queue.put(("closed", msg.data))
                return
            elif msg.type in closing or msg.type == aiohttp.WSMsgType.ERROR:
                await self._queue.put(("closed", self.ws.close_code))
                return

    async def next(self, timeout: float) -> Any:
        """The next message as JSON; ("closed", code) when the channel closed; None on silence."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.ws.send_json(message)

    async def close(self) -> None:
        await self.ws.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def _ws_timeout() -> Any:
    """5 s to close, no receive timeout (we keep our own), in aiohttp before 3.10 too."""
    ws_timeout = getattr(aiohttp, "ClientWSTimeout", None)
    return ws_timeout(ws_receive=None, ws_close=5) if ws_timeout else 5.0
