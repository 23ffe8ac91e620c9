"""The local API's accept loop and connections, on real sockets with real TLS.

Limits are shrunk (caps of a few connections, timeouts under a second) so that every rule
shows in a moment; the waits are on conditions with generous deadlines, never on luck.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.local_api import cert, digest, server
from agent.local_api.listener import (
    Gate,
    Limits,
    Refusal,
    Ticket,
    client_key,
    descriptor_headroom,
)
from agent.local_api.lockout import Lockout, LockoutPolicy
from agent.local_api.ratelog import RateLimitedLog
from tests.agent.local_api.test_server import PASSWORD, FakeDevice
from tests.eventually import eventually_async

SMALL = Limits(
    max_connections=4,
    max_per_address=2,
    handshake_s=0.5,
    header_s=0.5,
    keepalive_s=0.5,
    body_s=0.5,
    fd_reserve=8,
)


# -- the gate: pure bookkeeping ---------------------------------------------------------


def test_the_gate_caps_per_address_then_in_all_and_releases_once() -> None:
    gate = Gate(SMALL)
    a1, a2 = gate.admit("10.0.0.1"), gate.admit("10.0.0.1")
    assert isinstance(a1, Ticket)
    assert isinstance(a2, Ticket)
    assert gate.admit("10.0.0.1") is Refusal.PER_ADDRESS
    b1, b2 = gate.admit("10.0.0.2"), gate.admit("10.0.0.3")
    assert gate.admit("10.0.0.4") is Refusal.TOTAL
    a1.release()
    a1.release()  # a second release changes nothing
    assert gate.total == 3
    assert gate.per_address == {"10.0.0.1": 1, "10.0.0.2": 1, "10.0.0.3": 1}
    for ticket in (a2, b1, b2):
        assert isinstance(ticket, Ticket)
        ticket.release()
    assert gate.total == 0
    assert gate.per_address == {}  # the table holds only live addresses


def test_at_a_cap_the_oldest_idle_connection_makes_room() -> None:
    gate = Gate(SMALL)
    dropped: list[str] = []

    def admit(address: str, name: str, idle_since: float | None) -> Ticket:
        ticket = gate.admit(address)
        assert isinstance(ticket, Ticket)
        ticket.evict = lambda: dropped.append(name)
        ticket.idle_since = idle_since
        return ticket

    admit("10.0.0.1", "busy", None)
    admit("10.0.0.1", "idle", 5.0)
    assert isinstance(gate.admit("10.0.0.1"), Ticket)  # per-address cap: "idle" made room
    assert dropped == ["idle"]
    assert gate.admit("10.0.0.1") is Refusal.PER_ADDRESS  # nothing idle left there
    admit("10.0.0.2", "newer", 7.0)
    admit("10.0.0.3", "older", 6.0)
    assert gate.total == 4
    assert isinstance(gate.admit("10.0.0.4"), Ticket)  # total cap: the oldest idle goes
    assert dropped == ["idle", "older"]
    assert gate.per_address == {"10.0.0.1": 2, "10.0.0.2": 1, "10.0.0.4": 1}


def test_at_the_total_cap_an_address_over_its_fair_share_makes_room() -> None:
    gate = Gate(SMALL)  # 4 in all, 2 per address
    dropped: list[int] = []
    tickets = []
    for i, address in enumerate(["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2"]):
        ticket = gate.admit(address)
        assert isinstance(ticket, Ticket)
        ticket.evict = lambda i=i: dropped.append(i)  # still in its TLS handshake
        tickets.append(ticket)
    tickets[2].handshaking = False  # 10.0.0.2's first is established and busy
    # A newcomer takes the oldest handshake of an address holding more than it would.
    assert isinstance(gate.admit("10.0.0.3"), Ticket)
    assert dropped == [0]
    # 10.0.0.3 now holds 1, the others 1 and 2 (one busy): the busy one is never dropped.
    assert isinstance(gate.admit("10.0.0.4"), Ticket)
    assert dropped == [0, 3]
    # Everyone holds at most one more than a newcomer would: no fair share to take.
    assert gate.admit("10.0.0.5") is Refusal.TOTAL
    assert gate.admit("10.0.0.3") is Refusal.TOTAL


def test_a_connection_still_sending_its_headers_may_be_dropped_a_busy_one_not() -> None:
    gate = Gate(SMALL)  # 4 in all, 2 per address
    dropped: list[str] = []
    tickets = {}
    for name, address in (("a1", "10.0.0.1"), ("a2", "10.0.0.1"), ("b1", "10.0.0.2")):
        ticket = gate.admit(address)
        assert isinstance(ticket, Ticket)
        ticket.handshaking = False  # TLS is done …
        ticket.evict = lambda name=name: dropped.append(name)
        tickets[name] = ticket
    tickets["a1"].awaiting_headers = False  # … a1's request is under way: busy
    tickets["a2"].awaiting_headers = True  # a2 drips its headers
    assert isinstance(gate.admit("10.0.0.3"), Ticket)
    assert isinstance(gate.admit("10.0.0.4"), Ticket)  # the total cap: a2 makes room
    assert dropped == ["a2"]
    assert gate.admit("10.0.0.5") is Refusal.TOTAL  # a1 is busy, the rest hold one each


def test_headroom_counts_the_descriptors_left_under_the_soft_limit() -> None:
    before = descriptor_headroom()
    assert before is not None
    files = [open(os.devnull, "rb") for _ in range(10)]  # noqa: SIM115
    try:
        assert descriptor_headroom() == before - 10
    finally:
        for f in files:
            f.close()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft - 100, hard))
    try:
        assert descriptor_headroom() == before - 100
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_ipv4_mapped_addresses_count_as_their_ipv4() -> None:
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("fe80::1%eth0") == "fe80::1"
    assert client_key("2001:DB8::1") == "2001:db8::1"


def test_repeated_events_are_logged_once_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    notes = RateLimitedLog(logging.getLogger("t"), 60.0, lambda: now[0])
    with caplog.at_level(logging.WARNING, "t"):
        for i in range(1000):
            now[0] = i * 0.1  # 100 s of events, ten a second
            notes.note("refused", "refused a connection")
        notes.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "refused a connection"
    assert lines[1] == "refused a connection (600 times in the last 60 s)"
    assert lines[2] == "refused a connection (399 times in the last 40 s)"
    assert len(lines) == 3
    assert notes.total == {"refused": 1000}


# -- a real server ------------------------------------------------------------------------


@dataclass
class Served:
    port: int
    fp: str
    headroom: list[int | None]
    running: server.Running

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the test checks behaviour, not the pin
        return context


@pytest.fixture
def limits() -> Limits:
    return SMALL  # a test parametrizes `limits` to change them


@pytest.fixture
async def served(tmp_path: Path, limits: Limits) -> AsyncIterator[Served]:
    made = cert.ensure(tmp_path, "02:00:00:00:00:01")
    auth = server.Auth(
        Lockout(tmp_path / "lockout.json", LockoutPolicy()),
        digest.NonceBook.for_this_boot(),
        body_s=SMALL.body_s,
    )
    context = server.server_context(str(made.cert_path), str(made.key_path))
    headroom: list[int | None] = [None]
    running = await server.start(
        server.make_app(FakeDevice(), auth, made.fp),
        "127.0.0.1",
        0,
        context,
        limits,
        lambda: headroom[0],
    )
    try:
        yield Served(running.port, made.fp, headroom, running)
    finally:
        await running.stop()


async def raw(port: int, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, Any]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """True when the server closes (EOF or reset) within `seconds`."""
    try:
        data = await asyncio.wait_for(reader.read(1), seconds)
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return data == b""


async def tls(served: Served, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, Any]:
    return await asyncio.wait_for(
        asyncio.open_connection(
            "127.0.0.1",
            served.port,
            ssl=served.client_context(),
            server_hostname="camagent",
            local_addr=(source, 0),
        ),
        5,
    )


async def request(served: Served, raw_request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await tls(served)
    try:
        writer.write(raw_request)
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


JSON = {"Content-Type": "application/json"}
GET_INFO = b"GET /v1/info HTTP/1.1\r\nHost: camagent\r\nConnection: close\r\n\r\n"


async def test_connections_over_the_per_address_cap_are_closed_at_once(served: Served) -> None:
    held = [await raw(served.port) for _ in range(SMALL.max_per_address)]
    over = [await raw(served.port) for _ in range(3)]
    for reader, _ in over:
        assert await closed_within(reader, 2.0)
    assert served.running.listener.stats()["refused"] == 3
    # The ones under the cap are kept until their handshake time runs out.
    for reader, _ in held:
        assert not await closed_within(reader, 0.05)
    # Another address still gets in and is served.
    reader, writer = await tls(served, "127.0.0.2")
    writer.write(GET_INFO)
    assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 200")
    for _, w in held + over:
        w.close()


async def test_a_client_that_keeps_idle_connections_is_never_refused(served: Served) -> None:
    # Like an HTTP client whose pool opens a new connection for each request and keeps
    # the old ones: at the cap the server drops the oldest idle one, not the new one.
    kept = []
    for _ in range(SMALL.max_per_address * 3):
        reader, writer = await tls(served)
        writer.write(b"GET /v1/info HTTP/1.1\r\nHost: camagent\r\n\r\n")  # keep-alive
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)  # the whole answer: the connection is idle now
        kept.append((reader, writer))
    assert await closed_within(kept[0][0], 2.0)  # the oldest was dropped …
    assert not await closed_within(kept[-1][0], 0.05)  # … the newest is open
    for _, writer in kept:
        writer.close()


async def test_connections_over_the_total_cap_are_closed_at_once(served: Served) -> None:
    sources = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    held = [await raw(served.port, s) for s in sources]  # one each: the total cap of 4
    reader, writer = await raw(served.port, "127.0.0.6")
    assert await closed_within(reader, 2.0)
    writer.close()
    for _, w in held:
        w.close()


@pytest.mark.parametrize("limits", [replace(SMALL, handshake_s=60.0)])
async def test_a_host_with_a_few_addresses_cannot_keep_the_owner_out(served: Served) -> None:
    # Two attacking addresses fill the total cap (4) with connections that never start TLS.
    held = [await raw(served.port, s) for s in ("127.0.0.2", "127.0.0.2", "127.0.0.3")]
    held.append(await raw(served.port, "127.0.0.3"))
    await eventually_async(
        lambda: served.running.listener.stats()["open"] == 4, what="four admitted"
    )
    reader, writer = await tls(served, "127.0.0.1")  # the owner
    writer.write(GET_INFO)
    assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 200")
    closed = await asyncio.gather(*(closed_within(r, 1.0) for r, _ in held))
    assert closed.count(True) == 1  # one attacking handshake made room
    assert served.running.listener.stats()["dropped"] == 1
    for _, w in held:
        w.close()


@pytest.mark.parametrize("limits", [replace(SMALL, header_s=60.0, keepalive_s=60.0)])
async def test_headers_dripped_after_tls_cannot_keep_the_owner_out(served: Served) -> None:
    """Issue 25 (M2): connections that finish TLS and then drip their headers (the first
    request's, or a later one's on a kept-alive connection) were never dropped: 32 of
    them from 4 addresses kept the installer out. Now they make room like handshakes."""
    held = []
    for source in ("127.0.0.2", "127.0.0.2", "127.0.0.3"):
        reader, writer = await tls(served, source)
        writer.write(b"GET /v1/info HTTP/1.1\r\nHo")  # and then one byte now and then
        held.append((reader, writer))
    reader, writer = await tls(served, "127.0.0.3")
    writer.write(b"GET /v1/info HTTP/1.1\r\nHost: camagent\r\n\r\n")  # answered …
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    writer.write(b"GET /v1/info HTTP/1.1\r\nHo")  # … then a later request dripped
    held.append((reader, writer))
    await eventually_async(
        lambda: served.running.listener.stats()["open"] == 4, what="four admitted"
    )
    for _, w in held:
        w.write(b"s")
    for source in ("127.0.0.1", "127.0.0.4"):  # the owner, twice, from fresh addresses
        owner_reader, owner_writer = await tls(served, source)
        owner_writer.write(GET_INFO)
        answer = await asyncio.wait_for(owner_reader.read(), 5)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
        owner_writer.close()
    closed = await asyncio.gather(*(closed_within(r, 1.0) for r, _ in held))
    assert closed.count(True) >= 1
    assert served.running.listener.stats()["dropped"] >= 1
    for _, w in held:
        w.close()


async def test_a_connection_that_never_starts_tls_is_closed_after_the_handshake_time(
    served: Served,
) -> None:
    reader, writer = await raw(served.port)
    start = time.monotonic()
    assert await closed_within(reader, SMALL.handshake_s + 5)
    assert time.monotonic() - start >= SMALL.handshake_s * 0.9
    writer.close()
    # Its slot is free again: the per-address cap admits two more.
    readers = [await raw(served.port) for _ in range(SMALL.max_per_address)]
    for r, w in readers:
        assert not await closed_within(r, 0.05)
        w.close()


async def test_headers_dripped_slower_than_the_header_time_are_cut_off(served: Served) -> None:
    reader, writer = await tls(served)
    start = time.monotonic()
    writer.write(b"GET /v1/info HTTP/1.1\r\nHost: cam")  # and nothing more
    assert await closed_within(reader, SMALL.header_s + 5)
    assert time.monotonic() - start >= SMALL.header_s * 0.9
    writer.close()


async def test_a_later_request_dripped_is_cut_off_by_the_keepalive_time(served: Served) -> None:
    reader, writer = await tls(served)
    writer.write(b"GET /v1/info HTTP/1.1\r\nHost: camagent\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    writer.write(b"GET /v1/info HTTP/1.1\r\n")  # the next request never completes
    deadline = time.monotonic() + SMALL.keepalive_s + 5
    while time.monotonic() < deadline:
        try:
            chunk = await asyncio.wait_for(reader.read(4096), deadline - time.monotonic())
        except (TimeoutError, ConnectionError):
            break
        if not chunk:
            break
    assert time.monotonic() < deadline, "the connection stayed open"
    writer.close()


async def test_a_body_dripped_slower_than_the_body_time_is_refused(served: Served) -> None:
    async def drip() -> AsyncIterator[bytes]:
        yield b'{"token": "'
        # time is the subject: a body slower than the body time
        await asyncio.sleep(SMALL.body_s * 4)
        yield b'x"}'

    digest = aiohttp.DigestAuthMiddleware("admin", PASSWORD)
    url = f"https://127.0.0.1:{served.port}/v1/token"
    async with aiohttp.ClientSession(middlewares=(digest,)) as session:
        # The challenge first (a generator cannot be sent twice), then the slow body once.
        async with session.post(url, json={}, ssl=served.client_context()) as answer:
            assert answer.status == 400
        async with session.post(
            url, data=drip(), ssl=served.client_context(), headers=JSON
        ) as answer:
            assert answer.status == 408
            assert (await answer.json())["error"] == "body_timeout"


async def test_no_connection_is_taken_while_descriptors_are_short(served: Served) -> None:
    served.headroom[0] = SMALL.fd_reserve - 1
    pending = asyncio.ensure_future(tls(served))
    # The accept loop looks at the room when a connection is waiting: it pauses.
    await eventually_async(
        lambda: served.running.listener.stats()["accept_paused"] >= 1, what="accept paused"
    )
    await asyncio.sleep(1.0)  # time is the subject: a second in the backlog, not accepted
    assert not pending.done()  # in the kernel's backlog: no descriptor of ours spent on it
    served.headroom[0] = SMALL.fd_reserve + 100
    reader, writer = await asyncio.wait_for(pending, 5)
    writer.write(GET_INFO)
    assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize(
    ("raw_request", "what"),
    [
        (b"GARBAGE\r\n\r\n", "not HTTP"),
        (b"GET /v1/info HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n", "long header"),
        (b"GET /v1/info HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", "bad length"),
        (b"GET /v1/info HTTP/1.1\r\nHost x\r\n\r\n", "header without a colon"),
    ],
)
async def test_aiohttps_own_refusals_are_json(
    served: Served, raw_request: bytes, what: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        status, headers, body = await request(served, raw_request)
    assert 400 <= status < 500, what
    assert headers["content-type"].startswith("application/json"), what
    answer = json.loads(body)
    assert answer["error"] == "bad_request"
    assert answer["message"].startswith("the request is not valid HTTP")
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"


@pytest.mark.parametrize(
    "raw_request",
    [b"GET /v1/info\r\n\r\n", b"GET /v1/info HTTP/0.9\r\nHost: x\r\n\r\n"],
    ids=["no version", "0.9"],
)
async def test_an_http_0_9_request_is_refused(served: Served, raw_request: bytes) -> None:
    """Issue 25: aiohttp took a request line without a version as HTTP/0.9 and the
    device answered it, /v1/info and all."""
    status, headers, body = await request(served, raw_request)
    assert status == 505
    assert headers["content-type"].startswith("application/json")
    answer = json.loads(body)
    assert answer["error"] == "http_version_not_supported"
    assert "device_id" not in answer


@pytest.mark.parametrize("path", [b"/v1/reset", b"/v1/info", b"/v1/nothing"])
async def test_refusals_made_before_the_middleware_are_json(served: Served, path: bytes) -> None:
    # aiohttp answers an unknown Expect before any middleware runs, as text/plain 417.
    status, headers, body = await request(
        served,
        b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n",
    )
    assert status == 417
    assert headers["content-type"].startswith("application/json")
    answer = json.loads(body)
    assert answer["error"] == "expectation_failed"
    assert "teapot" in answer["message"]


async def test_many_bad_requests_make_a_few_log_lines(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, "agent"):
        for _ in range(30):
            status, _, _ = await request(served, b"GARBAGE\r\n\r\n")
            assert status == 400
    mine = [r for r in caplog.records if r.name.startswith("agent")]
    assert 1 <= len(mine) <= 2
    assert not any(r.exc_info for r in caplog.records)
