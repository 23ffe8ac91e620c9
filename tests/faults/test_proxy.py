"""The fault proxy does what the fault tests rely on (plain sockets, TLS-shaped records)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from tests.faults.proxy import Fault, FaultProxy, Mode, RecordScanner


def record(kind: int, body: bytes) -> bytes:
    return bytes([kind, 3, 3]) + struct.pack("!H", len(body)) + body


HELLO = record(22, b"client hello")
FINISHED = record(23, b"finished")
REQUEST = record(23, b"POST /v1/provisioning/poll")
ANSWER = b"x" * 100


@pytest.mark.parametrize("cut", [1, 3, 5, 7, 13, 20, 40])
def test_scanner_finds_the_second_application_record_however_it_is_split(cut: int) -> None:
    stream = HELLO + FINISHED + REQUEST
    scanner = RecordScanner()
    found = [
        (i, offset)
        for i in range(0, len(stream), cut)
        if (offset := scanner.feed(stream[i : i + cut])) >= 0
    ]
    assert len(found) == 1
    chunk_start, offset = found[0]
    request_at = len(HELLO) + len(FINISHED)
    # The request starts in this chunk (or its header began in the one before).
    assert chunk_start + offset == max(chunk_start, request_at)
    assert scanner.application_records == 2


class Upstream:
    """Answers ANSWER once it has read the request; records what it received."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                wanted = len(HELLO + FINISHED + REQUEST)
                while len(self.received) < wanted and (data := conn.recv(4096)):
                    self.received += data
                if len(self.received) >= wanted:
                    conn.sendall(ANSWER)
                    # Time is the subject: open past the client's 0.7 s, so that any
                    # close it sees is the proxy's.
                    time.sleep(1.0)


@pytest.fixture
def proxied() -> Iterator[tuple[FaultProxy, Upstream]]:
    upstream = Upstream()
    proxy = FaultProxy(("127.0.0.1", 0), ("127.0.0.1", upstream.port))
    proxy.start()
    yield proxy, upstream
    proxy.stop()
    upstream.sock.close()


def exchange(proxy: FaultProxy, fault: Fault) -> tuple[bytes, str]:
    proxy.set_fault(fault)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=0.7) as client:
        client.sendall(HELLO + FINISHED)
        # time is the subject: two separate writes, as a TLS client's handshake and request are
        time.sleep(0.05)
        client.sendall(REQUEST)
        got = b""
        try:
            while data := client.recv(4096):
                got += data
        except TimeoutError:
            return got, "silence"
        except ConnectionResetError:
            return got, "reset"
        return got, "closed"


def test_pass_forwards_both_ways(proxied: tuple[FaultProxy, Upstream]) -> None:
    proxy, upstream = proxied
    got, _ = exchange(proxy, Fault(Mode.PASS))
    assert got == ANSWER
    assert upstream.received == HELLO + FINISHED + REQUEST


def test_reset_cuts_the_request_with_an_rst(proxied: tuple[FaultProxy, Upstream]) -> None:
    proxy, upstream = proxied
    got, how = exchange(proxy, Fault(Mode.RESET))
    assert (got, how) == (b"", "reset")
    assert upstream.received.startswith(HELLO + FINISHED)
    assert len(upstream.received) < len(HELLO + FINISHED + REQUEST)


def test_truncate_forwards_n_bytes_of_the_answer(proxied: tuple[FaultProxy, Upstream]) -> None:
    proxy, _ = proxied
    got, how = exchange(proxy, Fault(Mode.TRUNCATE, truncate_after=7))
    assert (got, how) == (ANSWER[:7], "closed")


def test_stall_forwards_the_request_but_never_the_answer(
    proxied: tuple[FaultProxy, Upstream],
) -> None:
    proxy, upstream = proxied
    got, how = exchange(proxy, Fault(Mode.STALL))
    assert (got, how) == (b"", "silence")
    assert upstream.received == HELLO + FINISHED + REQUEST


def test_drop_accepts_and_never_reaches_upstream(proxied: tuple[FaultProxy, Upstream]) -> None:
    proxy, upstream = proxied
    got, how = exchange(proxy, Fault(Mode.DROP))
    assert (got, how) == (b"", "silence")
    assert upstream.connections == 0
    assert proxy.records[-1].mode is Mode.DROP
    assert proxy.records[-1].client_bytes == len(HELLO + FINISHED + REQUEST)
