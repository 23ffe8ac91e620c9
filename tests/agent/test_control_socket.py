"""The CLI <-> daemon channel over a real Unix socket (docs/design.md §10: run_dir, mode 0600)."""

from __future__ import annotations

import asyncio
import json
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.control_socket import request, serve
from agent.errors import CamagentError, DaemonUnavailable, TokenError


class FakeDaemon:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, cmd: str, args: dict[str, Any]) -> Any:
        self.calls.append((cmd, args))
        if cmd == "status":
            return {"state": "provisioning", "attempts": 3}
        if cmd == "echo":
            return args
        if cmd == "token_set":
            raise TokenError("token signature does not verify against any trusted cloud key")
        if cmd == "crash":
            raise RuntimeError("unexpected")
        if cmd == "none":
            return None
        raise CamagentError(f"unknown command {cmd!r}")


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "control.sock"


@pytest.fixture
async def daemon(sock_path: Path) -> AsyncIterator[FakeDaemon]:
    fake = FakeDaemon()
    server = await serve(sock_path, fake)
    try:
        yield fake
    finally:
        server.close()
        await server.wait_closed()


async def call(path: Path, cmd: str, args: dict[str, Any] | None = None) -> Any:
    return await asyncio.to_thread(request, path, cmd, args, 5)


def raw_exchange(path: Path, line: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(line)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.endswith(b"\n")
    answer: dict[str, Any] = json.loads(data)
    return answer


async def test_a_request_gets_the_handlers_answer(daemon: FakeDaemon, sock_path: Path) -> None:
    assert await call(sock_path, "status") == {"state": "provisioning", "attempts": 3}
    assert await call(sock_path, "echo", {"token": "a.b", "n": [1, 2]}) == {
        "token": "a.b",
        "n": [1, 2],
    }
    assert await call(sock_path, "none") is None
    assert daemon.calls == [("status", {}), ("echo", {"token": "a.b", "n": [1, 2]}), ("none", {})]


async def test_the_socket_is_private(daemon: FakeDaemon, sock_path: Path) -> None:
    st = sock_path.stat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600


async def test_a_stale_socket_file_is_replaced(sock_path: Path) -> None:
    sock_path.parent.mkdir(parents=True)
    sock_path.write_text("left behind by a killed daemon")
    server = await serve(sock_path, FakeDaemon())
    try:
        assert stat.S_ISSOCK(sock_path.stat().st_mode)
        assert (await call(sock_path, "status"))["attempts"] == 3
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "line",
    [
        b"not json\n",
        b"\n",
        b"null\n",
        b"[1, 2]\n",
        b'"status"\n',
        b'{"args": {}}\n',
        b'{"cmd": 5}\n',
        b'{"cmd": null}\n',
        b'{"cmd": "status", "args": [1]}\n',
        b'{"cmd": "status", "args": "x"}\n',
        b"\xff\xfe\n",
    ],
)
async def test_malformed_request_lines(daemon: FakeDaemon, sock_path: Path, line: bytes) -> None:
    answer = await asyncio.to_thread(raw_exchange, sock_path, line)
    assert answer == {"ok": False, "error": "malformed request"}
    assert daemon.calls == []


async def test_a_raw_valid_line(daemon: FakeDaemon, sock_path: Path) -> None:
    answer = await asyncio.to_thread(raw_exchange, sock_path, b'{"cmd": "status"}\n')
    assert answer == {"ok": True, "data": {"state": "provisioning", "attempts": 3}}


async def test_deeply_nested_request_is_malformed(daemon: FakeDaemon, sock_path: Path) -> None:
    answer = await asyncio.to_thread(raw_exchange, sock_path, b"[" * 5000 + b"\n")
    assert answer == {"ok": False, "error": "malformed request"}


async def test_a_camagent_error_comes_back_as_its_message(
    daemon: FakeDaemon, sock_path: Path
) -> None:
    with pytest.raises(CamagentError) as info:
        await call(sock_path, "token_set", {"token": "forged"})
    assert str(info.value) == "token signature does not verify against any trusted cloud key"
    assert not isinstance(info.value, DaemonUnavailable)


async def test_an_unexpected_exception_does_not_kill_the_server(
    daemon: FakeDaemon, sock_path: Path
) -> None:
    with pytest.raises(CamagentError, match="internal error while handling 'crash'"):
        await call(sock_path, "crash")
    assert (await call(sock_path, "status"))["state"] == "provisioning"


async def test_concurrent_clients(daemon: FakeDaemon, sock_path: Path) -> None:
    answers = await asyncio.gather(*(call(sock_path, "echo", {"i": i}) for i in range(10)))
    assert answers == [{"i": i} for i in range(10)]


async def test_a_client_that_hangs_up_does_not_kill_the_server(
    daemon: FakeDaemon, sock_path: Path
) -> None:
    def connect_and_leave() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(sock_path))

    await asyncio.to_thread(connect_and_leave)
    assert (await call(sock_path, "status"))["attempts"] == 3


def test_no_socket_means_no_daemon(sock_path: Path) -> None:
    with pytest.raises(DaemonUnavailable, match="no camagent daemon is running") as info:
        request(sock_path, "status")
    assert str(sock_path) in str(info.value)


async def test_a_closed_server_means_no_daemon(sock_path: Path) -> None:
    server = await serve(sock_path, FakeDaemon())
    server.close()
    await server.wait_closed()
    with pytest.raises(DaemonUnavailable):
        await asyncio.to_thread(request, sock_path, "status")


def test_a_socket_nobody_listens_on_means_no_daemon(sock_path: Path) -> None:
    sock_path.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound:
        bound.bind(str(sock_path))  # bound but not listening: connection refused
        with pytest.raises(DaemonUnavailable):
            request(sock_path, "status")


async def test_an_unreadable_answer(sock_path: Path) -> None:
    sock_path.parent.mkdir(parents=True)

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"<html>\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(garbage, sock_path)
    try:
        with pytest.raises(CamagentError, match="unreadable answer"):
            await call(sock_path, "status")
    finally:
        server.close()
        await server.wait_closed()


async def test_a_daemon_that_does_not_answer_is_a_camagent_error(sock_path: Path) -> None:
    sock_path.parent.mkdir(parents=True)
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        await release.wait()
        writer.close()

    server = await asyncio.start_unix_server(silent, sock_path)
    try:
        with pytest.raises(CamagentError):
            await asyncio.to_thread(request, sock_path, "status", None, 0.2)
    finally:
        release.set()
        server.close()
        await server.wait_closed()


def test_serve_in_a_run_dir_that_cannot_exist(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("a file where the directory should be")
    path = tmp_path / "run" / "control.sock"

    async def start() -> None:
        await serve(path, FakeDaemon())

    with pytest.raises(CamagentError, match="cannot prepare the control socket") as info:
        asyncio.run(start())
    assert str(path) in str(info.value)
    assert "paths.run_dir" in str(info.value)


LONG_RUN_DIR = "r" * 120  # longer than a Unix socket address may be (108 bytes)


def test_serve_on_a_too_long_path_says_why(tmp_path: Path) -> None:
    path = tmp_path / LONG_RUN_DIR / "control.sock"

    async def start() -> None:
        await serve(path, FakeDaemon())

    with pytest.raises(CamagentError, match="cannot listen on the control socket") as info:
        asyncio.run(start())
    assert not str(info.value).endswith("None")


def test_request_on_a_too_long_path_means_no_daemon(tmp_path: Path) -> None:
    with pytest.raises(CamagentError):
        request(tmp_path / LONG_RUN_DIR / "control.sock", "status")
