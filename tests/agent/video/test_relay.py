"""The byte relay (docs/design.md §12.3) between a real TCP connection and a real aiohttp
WebSocket: order and integrity both ways, binary messages of at most 64 KiB, every way it
ends (TCP EOF, a WebSocket close, a text message, idleness on a fake clock, `stop()`), and
backpressure measured in bytes, not in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import socket
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from agent.video.relay import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_TIMEOUT_S,
    CLOSE_UNSUPPORTED,
    MAX_MESSAGE,
    MAX_MSG_SIZE,
    Relay,
)
from tests.agent.clock import START, FakeClock
from tests.eventually import eventually_async

SMALL_BUFFER = 64 * 1024  # SO_SNDBUF / SO_RCVBUF (the kernel doubles it) for the bound tests


def small_buffers(sock: socket.socket) -> None:
    """Fixed, small kernel buffers (no autotuning), set before any data flows: what is in
    flight between two ends is then bounded, and so is what a test may assert."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)


@dataclass
class Received:
    """What the WebSocket far end (the cloud) read: every message's type and size."""

    data: bytearray = field(default_factory=bytearray)
    types: list[aiohttp.WSMsgType] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    close_code: int | None = None


@dataclass
class Rig:
    """One relay, its two far ends and its clock."""

    relay: Relay
    task: asyncio.Task[str]
    clock: FakeClock
    camera_reader: asyncio.StreamReader  # the far end of the TCP side
    camera_writer: asyncio.StreamWriter
    cloud: web.WebSocketResponse  # the far end of the WebSocket side
    relay_tcp: socket.socket  # the relay's own TCP socket
    relay_ws: aiohttp.ClientWebSocketResponse


async def receive_until(cloud: web.WebSocketResponse, got: Received, *, size: int) -> None:
    """Read messages until `size` bytes arrived (or the WebSocket closed)."""
    while len(got.data) < size:
        message = await cloud.receive()
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            got.close_code = cloud.close_code
            return
        got.types.append(message.type)
        got.sizes.append(len(message.data))
        got.data += message.data if isinstance(message.data, bytes) else b""


async def receive_to_close(cloud: web.WebSocketResponse) -> Received:
    got = Received()
    await receive_until(cloud, got, size=1 << 62)
    return got


def binary_and_small(got: Received) -> None:
    assert set(got.types) <= {aiohttp.WSMsgType.BINARY}, got.types
    assert all(0 < size <= MAX_MESSAGE for size in got.sizes), max(got.sizes, default=0)


@contextlib.asynccontextmanager
async def relay_rig(idle_timeout: float = 60.0, *, small: bool = False) -> AsyncIterator[Rig]:
    """A TCP server standing in for the camera, an aiohttp WebSocket server standing in
    for the cloud (both on port 0), and a Relay between a TCP client and a WebSocket client,
    as on the device."""
    cameras: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    clouds: asyncio.Queue[web.WebSocketResponse] = asyncio.Queue()
    finished = asyncio.Event()

    async def accept_camera(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if small:
            small_buffers(writer.get_extra_info("socket"))
        await cameras.put((reader, writer))

    async def accept_cloud(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if small:
            small_buffers(ws.get_extra_info("socket"))
        await clouds.put(ws)
        await finished.wait()  # the test drives this WebSocket from its own task
        return ws

    camera_server = await asyncio.start_server(accept_camera, "127.0.0.1", 0)
    camera_port = camera_server.sockets[0].getsockname()[1]
    app = web.Application()
    app.router.add_get("/tunnel", accept_cloud)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    cloud_port = runner.addresses[0][1]
    session = aiohttp.ClientSession()
    task: asyncio.Task[str] | None = None
    camera_writers: list[asyncio.StreamWriter] = []
    try:
        relay_ws = await session.ws_connect(  # as agent.video.tunnel connects
            f"http://127.0.0.1:{cloud_port}/tunnel", max_msg_size=MAX_MSG_SIZE
        )
        cloud = await asyncio.wait_for(clouds.get(), 10)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if small:
            small_buffers(sock)
            small_buffers(relay_ws.get_extra_info("socket"))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", camera_port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=MAX_MESSAGE)
        camera_reader, camera_writer = await asyncio.wait_for(cameras.get(), 10)
        camera_writers.append(camera_writer)
        clock = FakeClock()
        relay = Relay(reader, writer, relay_ws, idle_timeout=idle_timeout, clock=clock)
        task = asyncio.create_task(relay.run())
        yield Rig(relay, task, clock, camera_reader, camera_writer, cloud, sock, relay_ws)
    finally:
        # Both far ends hang up, so that a relay still running ends by itself.
        for camera_writer in camera_writers:
            camera_writer.transport.abort()
        finished.set()  # the cloud's handler returns: aiohttp closes its WebSocket
        if task is not None:
            await asyncio.wait({task}, timeout=10)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await session.close()
        await runner.cleanup()
        camera_server.close()
        await camera_server.wait_closed()


async def ended(rig: Rig) -> str:
    return await asyncio.wait_for(rig.task, 10)


async def at_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything left on a TCP connection, up to its EOF."""
    return await asyncio.wait_for(reader.read(), 10)


async def test_bytes_flow_both_ways_in_order_and_intact() -> None:
    size = 5 * 1024 * 1024
    rng = random.Random(22)
    up = rng.randbytes(size)  # camera -> cloud
    down = rng.randbytes(size)  # cloud -> camera
    async with relay_rig() as rig:

        async def camera_sends() -> None:
            at = 0
            while at < size:  # chunks of every size, so that no boundary is special
                step = rng.randint(1, 3 * MAX_MESSAGE)
                rig.camera_writer.write(up[at : at + step])
                await rig.camera_writer.drain()
                at += step

        async def cloud_sends() -> None:
            at = 0
            while at < size:
                step = random.Random(at).randint(1, MAX_MESSAGE)
                await rig.cloud.send_bytes(down[at : at + step])
                at += step

        got = Received()
        _, _, _, camera_got = await asyncio.gather(
            camera_sends(),
            cloud_sends(),
            receive_until(rig.cloud, got, size=size),
            rig.camera_reader.readexactly(size),
        )
        assert hashlib.sha256(got.data).hexdigest() == hashlib.sha256(up).hexdigest()
        assert hashlib.sha256(camera_got).hexdigest() == hashlib.sha256(down).hexdigest()
        binary_and_small(got)
        assert len(got.sizes) >= size // MAX_MESSAGE
        assert rig.relay.bytes_from_tcp == size
        assert rig.relay.bytes_from_ws == size
        assert not rig.task.done()

        rig.camera_writer.close()  # the camera hangs up: the tunnel ends, 1000
        closing = await receive_to_close(rig.cloud)
        assert closing.data == b""
        assert closing.close_code == CLOSE_NORMAL
        assert await ended(rig) == "the camera closed the connection"


async def test_tcp_eof_closes_the_websocket_with_1000_after_the_last_bytes() -> None:
    async with relay_rig() as rig:
        rig.camera_writer.write(b"RTSP/1.0 200 OK\r\n\r\n")
        rig.camera_writer.write_eof()
        got = await receive_to_close(rig.cloud)
        assert bytes(got.data) == b"RTSP/1.0 200 OK\r\n\r\n"
        assert got.close_code == CLOSE_NORMAL
        assert await ended(rig) == "the camera closed the connection"
        assert rig.relay_ws.closed
        assert await at_eof(rig.camera_reader) == b""  # and the relay closed TCP too


async def test_a_tcp_reset_closes_the_websocket_with_1000_too() -> None:
    async with relay_rig() as rig:
        sock = rig.camera_writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        rig.camera_writer.transport.abort()  # closed with linger 0: an RST, not a FIN
        got = await receive_to_close(rig.cloud)
        assert got.close_code == CLOSE_NORMAL
        assert await ended(rig) == "[Errno 104] Connection reset by peer"


async def test_a_websocket_close_closes_tcp_after_the_last_bytes() -> None:
    async with relay_rig() as rig:
        await rig.cloud.send_bytes(b"DESCRIBE rtsp://x/ RTSP/1.0\r\n\r\n")
        await rig.cloud.close(code=CLOSE_NORMAL)
        assert await at_eof(rig.camera_reader) == b"DESCRIBE rtsp://x/ RTSP/1.0\r\n\r\n"
        assert await ended(rig) == "the cloud closed it (code 1000)"


async def test_a_websocket_going_away_is_reported_with_its_code() -> None:
    async with relay_rig() as rig:
        await rig.cloud.close(code=4000, message=b"viewer left")
        assert await at_eof(rig.camera_reader) == b""
        assert await ended(rig) == "the cloud closed it (code 4000)"


async def test_a_text_message_ends_it_with_1003_and_reaches_nothing() -> None:
    async with relay_rig() as rig:
        await rig.cloud.send_bytes(b"before")
        await rig.cloud.send_str("a text message")
        got = await receive_to_close(rig.cloud)
        assert got.close_code == CLOSE_UNSUPPORTED
        assert await at_eof(rig.camera_reader) == b"before"
        assert "text message" in await ended(rig)


async def test_a_message_of_64_kib_passes_and_one_byte_more_ends_it() -> None:
    async with relay_rig() as rig:
        await rig.cloud.send_bytes(bytes(range(256)) * (MAX_MESSAGE // 256))
        data = await rig.camera_reader.readexactly(MAX_MESSAGE)
        assert data == bytes(range(256)) * (MAX_MESSAGE // 256)
        await rig.cloud.send_bytes(bytes(MAX_MESSAGE + 1))
        got = await receive_to_close(rig.cloud)
        assert got.close_code not in (None, CLOSE_NORMAL)  # aiohttp's 1009: too big
        assert await at_eof(rig.camera_reader) == b""
        assert "closed it" in await ended(rig)


async def test_idle_for_idle_timeout_ends_it_with_1000_on_a_fake_clock() -> None:
    async with relay_rig(idle_timeout=60) as rig:
        clock = rig.clock
        await eventually_async(clock.next_wake, until=lambda w: w == START + 60, what="idle")

        clock.advance_to(START + 30)
        rig.camera_writer.write(b"x")  # a byte up at 30 s: idle from there
        got = Received()
        await receive_until(rig.cloud, got, size=1)
        clock.advance_to(START + 60)
        await eventually_async(clock.next_wake, until=lambda w: w == START + 90, what="re-armed")
        assert not rig.task.done()

        clock.advance_to(START + 80)
        await rig.cloud.send_bytes(b"y")  # a byte down at 80 s counts as well
        assert await rig.camera_reader.readexactly(1) == b"y"
        clock.advance_to(START + 90)
        await eventually_async(clock.next_wake, until=lambda w: w == START + 140, what="again")
        assert not rig.task.done()

        clock.advance_to(START + 139.5)
        assert not rig.task.done()
        clock.advance_to(START + 140)
        closing = await receive_to_close(rig.cloud)
        assert closing.close_code == CLOSE_NORMAL
        assert await ended(rig) == "idle for 60 s"
        assert await at_eof(rig.camera_reader) == b""


async def test_stop_from_another_task_ends_it_with_the_given_code() -> None:
    async with relay_rig() as rig:
        rig.camera_writer.write(b"streaming")
        got = Received()
        await receive_until(rig.cloud, got, size=9)
        rig.relay.stop(CLOSE_GOING_AWAY, "camagent is stopping")
        closing = await receive_to_close(rig.cloud)
        assert closing.close_code == CLOSE_GOING_AWAY
        assert await ended(rig) == "camagent is stopping"
        assert await at_eof(rig.camera_reader) == b""


async def stalled(rig: Rig, count: Callable[[], int], held: Callable[[], bool]) -> int:
    """The relay's byte count once it has stopped moving: the same in two checks 0.1 s
    apart while `held()` says it is held up. Returns the count."""
    last = [-1]

    def check() -> int:
        now = count()
        still, last[0] = now == last[0], now
        assert still
        assert held()
        assert not rig.task.done()
        return now

    return await eventually_async(check, interval=0.1, what="the relay to be held up")


def relay_reads_tcp(rig: Rig) -> bool:
    transport = rig.relay.writer.transport
    assert isinstance(transport, asyncio.ReadTransport)
    return transport.is_reading()


def relay_writes_tcp_pending(rig: Rig) -> int:
    return rig.relay.writer.transport.get_write_buffer_size()


async def test_a_cloud_that_stops_reading_stops_the_relay_reading_tcp() -> None:
    """Backpressure up: once the buffers between the relay and a viewer that reads nothing
    are full, the relay reads no more of the camera's stream (it does not queue it)."""
    total = 32 * 1024 * 1024
    chunk = 64 * 1024
    rng = random.Random(7)
    sent = hashlib.sha256()
    written = [0]
    async with relay_rig(small=True) as rig:

        async def camera_sends() -> None:
            for _ in range(total // chunk):
                data = rng.randbytes(chunk)
                sent.update(data)
                rig.camera_writer.write(data)
                written[0] += chunk
                await rig.camera_writer.drain()

        camera = asyncio.create_task(camera_sends())
        try:
            read = await stalled(
                rig, lambda: rig.relay.bytes_from_tcp, lambda: not relay_reads_tcp(rig)
            )
            # Bounded by small socket buffers and 64 KiB queues: not by what the camera has.
            assert read <= 2 * 1024 * 1024, read
            assert written[0] <= read + 2 * 1024 * 1024, (written, read)
            assert not camera.done()  # the camera's writes wait: 30 MiB and more to go

            got = Received()
            await receive_until(rig.cloud, got, size=total)  # the viewer reads: all of it
            await asyncio.wait_for(camera, 30)
        finally:
            camera.cancel()
        assert len(got.data) == total
        assert hashlib.sha256(got.data).digest() == sent.digest()
        binary_and_small(got)
        assert rig.relay.bytes_from_tcp == total


async def test_a_camera_that_stops_reading_stops_the_relay_reading_the_websocket() -> None:
    """Backpressure down: the relay takes the next message only once the last one was
    written to TCP, so a cloud sending to a camera that reads nothing is held up."""
    total = 32 * 1024 * 1024
    rng = random.Random(8)
    sent = hashlib.sha256()
    sent_bytes = [0]
    async with relay_rig(small=True) as rig:

        async def cloud_sends() -> None:
            for _ in range(total // MAX_MESSAGE):
                data = rng.randbytes(MAX_MESSAGE)
                sent.update(data)
                await rig.cloud.send_bytes(data)
                sent_bytes[0] += MAX_MESSAGE

        cloud = asyncio.create_task(cloud_sends())
        try:
            read = await stalled(
                rig, lambda: rig.relay.bytes_from_ws, lambda: relay_writes_tcp_pending(rig) > 0
            )
            assert read <= 2 * 1024 * 1024, read
            assert sent_bytes[0] <= read + 2 * 1024 * 1024, (sent_bytes, read)
            assert not cloud.done()

            received = hashlib.sha256()
            count = 0
            while count < total:  # the camera reads again: all of it, in order
                data = await asyncio.wait_for(rig.camera_reader.read(1 << 20), 30)
                assert data
                received.update(data)
                count += len(data)
            await asyncio.wait_for(cloud, 30)
        finally:
            cloud.cancel()
        assert count == total
        assert received.digest() == sent.digest()
        assert rig.relay.bytes_from_ws == total


async def ends_within_the_close_timeout(rig: Rig) -> str:
    """Why the relay ended, letting CLOSE_TIMEOUT_S pass on its clock when it waits on a
    side to take its close (never more: the idle timer is gone once it stops)."""
    wake = START + CLOSE_TIMEOUT_S
    await eventually_async(
        lambda: rig.task.done() or rig.clock.next_wake() == wake, what="the relay to close"
    )
    if not rig.task.done():
        rig.clock.advance_to(wake)
    why = await ended(rig)
    assert rig.clock.now <= wake
    return why


async def test_stop_ends_it_even_when_the_cloud_has_stopped_reading() -> None:
    """A stuck viewer must not hold a tunnel open once the device closes it."""
    async with relay_rig(small=True) as rig:

        async def camera_floods() -> None:
            while True:
                rig.camera_writer.write(bytes(MAX_MESSAGE))
                await rig.camera_writer.drain()

        flood = asyncio.create_task(camera_floods())
        try:
            await stalled(rig, lambda: rig.relay.bytes_from_tcp, lambda: not relay_reads_tcp(rig))
            rig.relay.stop(CLOSE_GOING_AWAY, "the token was forgotten or replaced")
            assert await ends_within_the_close_timeout(rig) == "the token was forgotten or replaced"
        finally:
            flood.cancel()
            await asyncio.gather(flood, return_exceptions=True)
        closing = await receive_to_close(rig.cloud)  # the viewer reads again, up to the close
        binary_and_small(closing)
        assert closing.close_code == CLOSE_GOING_AWAY


async def test_stop_ends_it_even_when_the_camera_has_stopped_reading() -> None:
    """A stuck camera neither: the relay drops what TCP did not take within
    CLOSE_TIMEOUT_S and closes the WebSocket with the code it was given."""
    async with relay_rig(small=True) as rig:

        async def cloud_floods() -> None:
            while True:
                await rig.cloud.send_bytes(bytes(MAX_MESSAGE))

        flood = asyncio.create_task(cloud_floods())
        try:
            await stalled(
                rig, lambda: rig.relay.bytes_from_ws, lambda: relay_writes_tcp_pending(rig) > 0
            )
            rig.relay.stop(CLOSE_GOING_AWAY, "camagent is stopping")
            wake = START + CLOSE_TIMEOUT_S
            await eventually_async(rig.clock.next_wake, until=lambda w: w == wake, what="timer")
            assert not rig.task.done()  # TCP holds unsent bytes: it is given its time
            rig.clock.advance_to(wake)
        finally:
            flood.cancel()
            await asyncio.gather(flood, return_exceptions=True)
        closing = await receive_to_close(rig.cloud)  # the cloud reads again: the close
        assert closing.close_code == CLOSE_GOING_AWAY
        assert await ended(rig) == "camagent is stopping"
        assert rig.clock.now == wake


async def test_the_relay_also_runs_on_a_server_websocket() -> None:
    """The mock cloud runs the same Relay on its end, over a web.WebSocketResponse."""
    ffmpeg: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def accept_ffmpeg(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await ffmpeg.put((reader, writer))

    ffmpeg_server = await asyncio.start_server(accept_ffmpeg, "127.0.0.1", 0)
    ffmpeg_port = ffmpeg_server.sockets[0].getsockname()[1]
    results: list[str] = []

    async def tunnel(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_MSG_SIZE)
        await ws.prepare(request)
        reader, writer = await asyncio.open_connection("127.0.0.1", ffmpeg_port)
        relay = Relay(
            reader,
            writer,
            ws,
            idle_timeout=60,
            clock=FakeClock(),
            tcp_side="ffmpeg",
            ws_side="the device",
        )
        results.append(await relay.run())
        return ws

    app = web.Application()
    app.router.add_get("/tunnel", tunnel)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"http://127.0.0.1:{port}/tunnel") as device,
        ):
            reader, writer = await asyncio.wait_for(ffmpeg.get(), 10)
            payload = random.Random(3).randbytes(300_000)
            for at in range(0, len(payload), MAX_MESSAGE):
                await device.send_bytes(payload[at : at + MAX_MESSAGE])
            assert await reader.readexactly(len(payload)) == payload
            writer.write(payload)
            got = bytearray()
            while len(got) < len(payload):
                message = await device.receive(timeout=10)
                assert message.type is aiohttp.WSMsgType.BINARY
                assert len(message.data) <= MAX_MESSAGE
                got += message.data
            assert got == payload
            await device.close()
            assert await at_eof(reader) == b""
            writer.close()
        await eventually_async(lambda: results, what="the relay to end")
        assert results == ["the device closed it (code 1000)"]
    finally:
        await runner.cleanup()
        ffmpeg_server.close()
        await ffmpeg_server.wait_closed()
