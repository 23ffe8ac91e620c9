"""The mock's own accept loop: connections per client address, and descriptors in reserve.

asyncio's server accepts whatever arrives and knows nothing of who sent it: 3,000 plain TCP
connections from one address (never starting TLS, each held until the handshake timeout)
took every descriptor the mock had, newcomers timed out and accept() logged EMFILE
tracebacks (issue 25). Here the mock accepts by itself, and:

- holds at most `per_client` connections of one client address (an IPv4 address or an
  IPv6 /64, cloud_mock/client_address.py); a connection over it is closed as soon as it
  is accepted, before any TLS work. Cameras of one site share an address behind NAT, each
  with its control channel and now and then a held poll, so the cap is well above the
  held polls one address may have (`resources.DEFAULT_MAX_HELD_PER_CLIENT`);
- stops accepting while fewer than `reserve` descriptors are left under RLIMIT_NOFILE, so
  the database, logins and the console always have room: the kernel's listen backlog
  holds the rest, and refuses beyond it;
- notes refusals in the log at most once a minute, with a count.

A connection counts from its accept until aiohttp's server sees it lost (or its TLS
handshake fails or times out).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from agent.local_api.listener import (
    CLIENT_LEFT,
    OUT_OF_RESOURCES,
    RETRY_S,
    descriptor_headroom,
    wait_readable,
)
from cloud_mock.client_address import client_key
from cloud_mock.log_limit import RateLimitedLogger
from cloud_mock.resources import ClientCounter

log = logging.getLogger(__name__)
_quiet_log = RateLimitedLogger(log)


@dataclass(frozen=True)
class AcceptLimits:
    per_client: int = 2048  # connections of one client address at a time
    reserve: int = 128  # descriptors never taken by accepting
    handshake_s: float = 10.0  # TLS handshake, from accept


class _Accepting:
    """What `BaseSite.stop` closes: the accept task and the listening socket."""

    def __init__(self, task: asyncio.Task[None], sock: socket.socket) -> None:
        self._task, self._sock = task, sock

    def close(self) -> None:
        self._task.cancel()
        self._sock.close()


class GuardedSite(web.SockSite):
    """A SockSite that accepts through a `ClientCounter` and the descriptor reserve, and gives
    each client `limits.handshake_s` to finish its TLS handshake."""

    limits = AcceptLimits()

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self.clients = ClientCounter(self.limits.per_client)
        self._handlers: dict[Any, str] = {}
        self._handshakes: set[asyncio.Task[None]] = set()
        self._sock.setblocking(False)
        self._sock.listen(self._backlog)
        _release_with(server, self._lost)
        task = asyncio.create_task(self._serve(server), name="cloud_mock accept")
        self._server = _Accepting(task, self._sock)  # type: ignore[assignment]

    async def stop(self) -> None:
        for task in list(getattr(self, "_handshakes", ())):
            task.cancel()
        await super().stop()

    async def _serve(self, server: web.Server) -> None:
        while True:
            await wait_readable(self._sock)
            room = descriptor_headroom()
            if room is not None and room < self.limits.reserve:
                _quiet_log.warning(
                    "not accepting connections while only %d file descriptors are left "
                    "(%d are kept for the database, logins and the console)",
                    room,
                    self.limits.reserve,
                )
                await asyncio.sleep(RETRY_S)
                continue
            try:
                conn, peer = self._sock.accept()
            except BlockingIOError:
                continue
            except OSError as exc:
                await _accept_failed(exc)
                continue
            client = client_key(str(peer[0]))
            if not self.clients.try_enter(client):
                conn.close()
                _quiet_log.warning(
                    "refused connections from %s over its %d at a time",
                    client,
                    self.limits.per_client,
                )
                continue
            conn.setblocking(False)
            task = asyncio.create_task(self._handshake(server, conn, client))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, server: web.Server, conn: socket.socket, client: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, handler = await loop.connect_accepted_socket(
                server,
                conn,
                ssl=self._ssl_context,
                ssl_handshake_timeout=self.limits.handshake_s if self._ssl_context else None,
            )
        except (OSError, ssl.SSLError, TimeoutError, asyncio.CancelledError) as exc:
            conn.close()
            self.clients.leave(client)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        self._handlers[handler] = client
        if getattr(handler, "transport", None) is None:  # lost before we got here
            self._lost(handler)

    def _lost(self, handler: Any) -> None:
        client = self._handlers.pop(handler, None)
        if client is not None:
            self.clients.leave(client)


def _release_with(server: web.Server, lost: Any) -> None:
    """Have `lost(handler)` called when aiohttp's server sees a connection lost (web.Server
    has no hook of its own for it: its `connection_lost` is wrapped on this instance)."""
    original = server.connection_lost

    def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
        lost(handler)
        original(handler, exc)

    server.connection_lost = connection_lost  # type: ignore[method-assign]


async def _accept_failed(exc: OSError) -> None:
    if exc.errno in OUT_OF_RESOURCES:
        _quiet_log.warning("cannot accept a connection: %s", exc.strerror)
        await asyncio.sleep(RETRY_S)
    elif exc.errno not in CLIENT_LEFT:
        _quiet_log.warning("accept failed: %s", exc)
        await asyncio.sleep(RETRY_S / 10)
