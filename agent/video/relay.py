"""Byte relay between a TCP stream and a WebSocket (docs/design.md §12.3): binary
messages of at most MAX_MESSAGE bytes, in order, each way, with backpressure, ended by
either side or by idleness. The device's tunnel and the mock cloud's end of it both use
it, so the two ends cannot drift apart."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Protocol

import aiohttp

from agent.clock import Clock

MAX_MESSAGE = 65536
# aiohttp refuses a message of `max_msg_size` bytes *or more*: the limit to give it so that
# messages of exactly MAX_MESSAGE bytes (which the relay itself sends) get through.
MAX_MSG_SIZE = MAX_MESSAGE + 1
CLOSE_TIMEOUT_S = 5.0  # for each side to take its last bytes when the relay ends
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED = 1003


class WebSocket(Protocol):
    """What the relay needs of aiohttp's client and server WebSockets alike."""

    @property
    def close_code(self) -> int | None: ...

    @property
    def closed(self) -> bool: ...

    async def send_bytes(self, data: bytes) -> Any: ...

    async def receive(self, timeout: float | None = None) -> aiohttp.WSMessage: ...

    async def close(self, *, code: int = ..., message: bytes = ...) -> Any: ...


class Relay:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ws: WebSocket,
        *,
        idle_timeout: float,
        clock: Clock,
        tcp_side: str = "the camera",
        ws_side: str = "the cloud",
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.ws = ws
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.tcp_side = tcp_side
        self.ws_side = ws_side
        self.last_active = clock.monotonic()
        self.bytes_from_tcp = 0
        self.bytes_from_ws = 0
        self.close_code = CLOSE_NORMAL
        self.stopped_because = ""
        self._stopped = asyncio.Event()

    def stop(self, code: int, why: str) -> None:
        """End the relay from another task; `run` then closes both sides itself. It ends
        even while a pump waits on a side that reads nothing (held up by backpressure)."""
        self.close_code = code
        self.stopped_because = why
        self._stopped.set()

    async def run(self) -> str:
        """Relay until one side ends; close both; return why it ended."""
        from_ws = asyncio.create_task(self._ws_to_tcp())
        pumps = {
            asyncio.create_task(self._tcp_to_ws()),
            from_ws,
            asyncio.create_task(self._idle()),
            asyncio.create_task(self._until_stopped()),
        }
        try:
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Not the WebSocket's pump: aiohttp drops the connection without the closing
            # handshake (the far end sees 1006) once a receive() was cancelled. Closing
            # the WebSocket ends that receive() itself.
            others = pumps - {from_ws}
            for pump in others:
                pump.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            try:
                await self._close_both()
            finally:
                from_ws.cancel()
                await asyncio.gather(from_ws, return_exceptions=True)
        first = done.pop()
        error = first.exception()
        return (str(error) or type(error).__name__) if error is not None else str(first.result())

    async def _tcp_to_ws(self) -> str:
        while True:
            data = await self.reader.read(MAX_MESSAGE)
            if not data:
                return self.stopped_because or f"{self.tcp_side} closed the connection"
            self.last_active = self.clock.monotonic()
            self.bytes_from_tcp += len(data)
            # Awaited: aiohttp drains the socket past its write limit, so a slow far end
            # stops this loop from reading (backpressure instead of memory).
            await self.ws.send_bytes(data)

    async def _ws_to_tcp(self) -> str:
        while True:
            message = await self.ws.receive()
            if message.type == aiohttp.WSMsgType.BINARY:
                self.last_active = self.clock.monotonic()
                self.bytes_from_ws += len(message.data)
                self.writer.write(message.data)
                await self.writer.drain()
            elif message.type == aiohttp.WSMsgType.TEXT:
                self.close_code = CLOSE_UNSUPPORTED
                return f"{self.ws_side} sent a text message (a tunnel carries binary only)"
            else:  # close, closing, closed, error
                return f"{self.ws_side} closed it (code {self.ws.close_code})"

    async def _idle(self) -> str:
        while True:
            remaining = self.last_active + self.idle_timeout - self.clock.monotonic()
            if remaining <= 0:
                return f"idle for {self.idle_timeout:g} s"
            await self.clock.sleep(remaining)

    async def _until_stopped(self) -> str:
        await self._stopped.wait()
        return self.stopped_because

    async def _close_both(self) -> None:
        """Close TCP, then the WebSocket, each within CLOSE_TIMEOUT_S: a camera or a viewer
        that reads nothing more must not hold the tunnel (and whoever waits on it) open."""
        self.writer.close()
        closed = False
        try:
            closed = await self._within(self.writer.wait_closed())
        finally:
            if not closed:  # timed out, or the relay was cancelled meanwhile
                self.writer.transport.abort()  # its unsent bytes are dropped
        if not self.ws.closed:
            await self._within(self.ws.close(code=self.close_code))

    async def _within(self, step: Awaitable[Any]) -> bool:
        """Whether `step` ended (its errors ignored) within CLOSE_TIMEOUT_S on the clock."""
        task = asyncio.ensure_future(step)
        timer = asyncio.ensure_future(self.clock.sleep(CLOSE_TIMEOUT_S))
        try:
            await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not task.done():
                task.cancel()
            await asyncio.gather(task, timer, return_exceptions=True)
        return not task.cancelled()
