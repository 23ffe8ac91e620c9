"""A fault-injecting TCP proxy for the network-fault tests (asyncio, in its own thread).

It sits between a real agent and the real mock and only forwards bytes: TLS runs end to
end through it, so the agent verifies the mock's certificate as it would in the field.
To place faults "mid-request" without decrypting anything, the client's stream is split
into TLS records (5-byte headers): in TLS 1.3 the client's first application-data record
is its Finished message, every later one carries HTTP or WebSocket data. "The request"
is therefore the client's second application-data record, and "the answer" is whatever
the server sends after it.

Modes (for new connections; `reset_all` and `blackhole_all` act on live ones):
- PASS: forward both ways.
- DROP: accept, read and discard, never answer, never connect upstream (a blackhole).
- DELAY: forward, each chunk held `delay_s` in each direction.
- RESET: complete the handshake, then answer the request with a TCP RST (SO_LINGER 0).
- TRUNCATE: forward the request, forward `truncate_after` bytes of the answer, then close.
- STALL: forward the request, never forward the answer (the connection stays open).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

TLS_APPLICATION_DATA = 23
RECORD_HEADER = 5
CHUNK = 65536


class Mode(Enum):
    PASS = "pass"
    DROP = "drop"
    DELAY = "delay"
    RESET = "reset"
    TRUNCATE = "truncate"
    STALL = "stall"


@dataclass(frozen=True)
class Fault:
    mode: Mode = Mode.PASS
    delay_s: float = 0.0
    truncate_after: int = 0


@dataclass
class ConnectionRecord:
    """What one accepted connection saw; `opened_at` is time.monotonic()."""

    opened_at: float
    mode: Mode
    client_bytes: int = 0
    server_bytes: int = 0
    requests: int = 0
    closed_at: float | None = None
    how_closed: str = ""


class RecordScanner:
    """Counts TLS records in one direction of a stream, however it is chunked."""

    def __init__(self) -> None:
        self._header = b""
        self._remaining = 0  # body bytes of the current record still to come
        self.application_records = 0

    def feed(self, data: bytes) -> int:
        """Scan `data`; return the offset where the client's request record begins
        (its second application-data record), or -1 if it does not begin in `data`."""
        found = -1
        i = 0
        while i < len(data):
            if self._remaining:
                step = min(self._remaining, len(data) - i)
                self._remaining -= step
                i += step
                continue
            start = i - len(self._header)
            need = RECORD_HEADER - len(self._header)
            self._header += data[i : i + need]
            i += min(need, len(data) - i)
            if len(self._header) < RECORD_HEADER:
                break
            kind = self._header[0]
            (self._remaining,) = struct.unpack("!H", self._header[3:5])
            self._header = b""
            if kind == TLS_APPLICATION_DATA:
                self.application_records += 1
                if self.application_records == 2 and found < 0:
                    found = max(0, start)
        return found


@dataclass(eq=False)  # identity: connections live in a set
class _Connection:
    record: ConnectionRecord
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    request_seen: bool = False
    blackholed: bool = False
    answer_forwarded: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST instead of a FIN: SO_LINGER on, timeout 0."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """`FaultProxy(listen, target)`; `start()` returns once it listens; `stop()` ends it."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.listen = listen
        self.target = target
        self.fault = Fault()
        self.records: list[ConnectionRecord] = []
        self._live: set[_Connection] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.port = listen[1]  # the real one once started (listen port 0 picks one)
        self._lock = threading.Lock()

    # -- control, from the test's thread ------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start_server())
        return self

    def stop(self) -> None:
        self._call(self._stop_server())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def set_fault(self, fault: Fault) -> None:
        self.fault = fault

    def reset_all(self) -> int:
        """RST every live connection (client side); return how many there were."""
        return int(self._call(self._reset_all()))

    def blackhole_all(self) -> int:
        """Stop forwarding anything on every live connection, without closing it."""
        return int(self._call(self._blackhole_all()))

    def connections_since(self, since: float) -> list[ConnectionRecord]:
        with self._lock:
            return [r for r in self.records if r.opened_at >= since]

    def live_count(self) -> int:
        return int(self._call(self._count_live()))

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    # -- the loop's side -------------------------------------------------------------------

    async def _start_server(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.listen[0], self.listen[1], reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop_server(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._live):
            self._close(conn, rst=False, how="proxy stopped")

    async def _count_live(self) -> int:
        return len(self._live)

    async def _reset_all(self) -> int:
        live = list(self._live)
        for conn in live:
            self._close(conn, rst=True, how="reset_all")
        return len(live)

    async def _blackhole_all(self) -> int:
        for conn in self._live:
            conn.blackholed = True
        return len(self._live)

    def _close(self, conn: _Connection, *, rst: bool, how: str) -> None:
        if conn.done.is_set():
            return
        if rst:
            _rst(conn.client)
        else:
            conn.client.close()
        if conn.upstream is not None:
            conn.upstream.transport.abort()
        conn.record.closed_at = time.monotonic()
        conn.record.how_closed = how
        conn.done.set()
        self._live.discard(conn)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        fault = self.fault
        record = ConnectionRecord(time.monotonic(), fault.mode)
        with self._lock:
            self.records.append(record)
        conn = _Connection(record, writer)
        self._live.add(conn)
        try:
            if fault.mode is not Mode.DROP:
                try:
                    up_reader, conn.upstream = await asyncio.open_connection(*self.target)
                except OSError:
                    self._close(conn, rst=True, how="upstream refused")
                    return
                pumps = [
                    asyncio.create_task(self._client_to_server(conn, fault, reader)),
                    asyncio.create_task(self._server_to_client(conn, fault, up_reader)),
                ]
            else:
                pumps = [asyncio.create_task(self._discard(conn, reader))]
            await conn.done.wait()
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            self._close(conn, rst=False, how=record.how_closed or "ended")

    async def _discard(self, conn: _Connection, reader: asyncio.StreamReader) -> None:
        while data := await reader.read(CHUNK):
            conn.record.client_bytes += len(data)
        self._close(conn, rst=False, how="client closed")

    async def _client_to_server(
        self, conn: _Connection, fault: Fault, reader: asyncio.StreamReader
    ) -> None:
        scanner = RecordScanner()
        assert conn.upstream is not None
        try:
            while data := await reader.read(CHUNK):
                conn.record.client_bytes += len(data)
                before = scanner.application_records
                starts_at = scanner.feed(data)
                conn.record.requests += max(0, scanner.application_records - max(before, 1))
                if starts_at >= 0:
                    conn.request_seen = True
                    if fault.mode is Mode.RESET:
                        # Let the request's first half through, then cut it.
                        cut = starts_at + (len(data) - starts_at) // 2
                        conn.upstream.write(data[:cut])
                        self._close(conn, rst=True, how="reset mid-request")
                        return
                if conn.blackholed:
                    continue
                if fault.mode is Mode.DELAY:
                    # time is the subject: the injected fault is this latency
                    await asyncio.sleep(fault.delay_s)
                conn.upstream.write(data)
                await conn.upstream.drain()
        except (ConnectionError, OSError):
            pass
        self._close(conn, rst=False, how="client closed")

    async def _server_to_client(
        self, conn: _Connection, fault: Fault, reader: asyncio.StreamReader
    ) -> None:
        try:
            while data := await reader.read(CHUNK):
                conn.record.server_bytes += len(data)
                if conn.blackholed:
                    continue
                if conn.request_seen and fault.mode is Mode.STALL:
                    continue
                if conn.request_seen and fault.mode is Mode.TRUNCATE:
                    room = fault.truncate_after - conn.answer_forwarded
                    conn.answer_forwarded += min(room, len(data))
                    conn.client.write(data[: max(0, room)])
                    if conn.answer_forwarded >= fault.truncate_after:
                        with contextlib.suppress(ConnectionError, OSError):
                            await conn.client.drain()
                        self._close(conn, rst=False, how="truncated")
                        return
                    continue
                if fault.mode is Mode.DELAY:
                    # time is the subject: the injected fault is this latency
                    await asyncio.sleep(fault.delay_s)
                conn.client.write(data)
                await conn.client.drain()
        except (ConnectionError, OSError):
            pass
        self._close(conn, rst=False, how="server closed")


__all__ = ["ConnectionRecord", "Fault", "FaultProxy", "Mode", "RecordScanner"]
