"""Byte relay between a TCP stream and a WebSocket (docs/design.md §12.3): binary
messages of at most MAX_MESSAGE bytes, in order, each way, with backpressure, ended by
either side or by idleness. The device's tunnel and the mock cloud's end of it both use
it, so the two ends cannot drift apart."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any, Protocol

import aiohttp

from agent.clock import Clock

MAX_MESSAGE = 65536
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

    def stop(self, code: int, why: str) -> None:
        """End the relay from another task; `run` then closes both sides itself."""
        self.close_code = code
        self.stopped_because = why
        self.writer.close()  # the TCP pump sees EOF and ends the relay

    async def run(self) -> str:
        """Relay until one side ends; close both; return why it ended."""
        pumps = {
            asyncio.create_task(self._tcp_to_ws()),
            asyncio.create_task(self._ws_to_tcp()),
            asyncio.create_task(self._idle()),
        }
        try:
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            await self._close_both()
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

    async def _close_both(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.writer.wait_closed()
        if not self.ws.closed:
            with contextlib.suppress(aiohttp.ClientError, OSError, RuntimeError):
                await self.ws.close(code=self.close_code)
