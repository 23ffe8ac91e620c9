"""The local API's own accept loop: connection caps, TLS handshake timeout, descriptor reserve.

asyncio's server accepts whatever arrives and knows nothing of who sent it, so a LAN host
opening plain TCP connections (never starting TLS) could take every file descriptor the
daemon has, and then the agent cannot even open its state lock to save a token. Here the
daemon accepts by itself, and:

- holds at most `max_connections` connections in all and `max_per_address` per client
  address. At a cap, an idle keep-alive connection (one that has been answered and is
  waiting for nothing) is dropped to make room, oldest first, so a client whose pool
  keeps idle connections is not refused. At the total cap, an address holding more than
  its fair share gives up its oldest connection that is still in its TLS handshake, still
  sending a request's headers, or idle, to an address holding fewer, so a host with a few
  addresses cannot keep the installer out. Otherwise the new connection is closed at
  once, when it is accepted;
- gives each connection `handshake_s` to finish its TLS handshake (the HTTP side adds a
  header timeout and a keep-alive timeout, see connection.py);
- stops accepting while fewer than `fd_reserve` descriptors are left under RLIMIT_NOFILE,
  so the agent's own work (state lock and files, cloud connections, the QR worker) always
  has room: the kernel's listen backlog holds the rest, and refuses beyond it;
- logs refusals once per minute with a count (ratelog), never one line per connection.

The numbers are in `Limits` and docs/security.md; the systemd unit sets LimitNOFILE=4096.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import resource
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from agent.local_api.ratelog import RateLimitedLog

RETRY_S = 0.5  # how soon to try accepting again when descriptors are short
SSL_SHUTDOWN_S = 5.0  # a peer that never answers the TLS close_notify holds no fd for long
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# ECONNABORTED and the like: the client left before it was taken, nothing to do.
CLIENT_LEFT = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EINTR, errno.EAGAIN})


async def wait_readable(sock: socket.socket) -> None:
    """Until `sock` has a connection to accept (an accept loop of our own, which looks at
    its caps before it takes one)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()  # by number: the socket may be closed before the finally runs

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(fd)


@dataclass(frozen=True)
class Limits:
    max_connections: int = 32  # a camera has one or two installers at a time
    max_per_address: int = 8  # a browser opens up to 6 to one host
    handshake_s: float = 10.0  # TLS handshake, from accept
    header_s: float = 10.0  # the first request's headers, from the end of the handshake
    keepalive_s: float = 10.0  # idle (or a later request's headers) between requests
    body_s: float = 10.0  # reading a request body (at most 16 KiB)
    fd_reserve: int = 64  # descriptors never taken by LAN connections
    backlog: int = 16


class Refusal(Enum):
    TOTAL = "total"
    PER_ADDRESS = "per_address"


def client_key(address: str) -> str:
    """The address a client is counted under: IPv4-mapped IPv6 counts as its IPv4."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class Ticket:
    """One admitted connection; released exactly once, however the connection ends.

    `evict` drops it (the listener sets one that cancels the TLS handshake, the HTTP
    connection one that aborts it); `idle_since` is set while it has been answered and
    nothing more has arrived; `awaiting_headers` while a request's headers are still
    coming in. Only a connection in its handshake, waiting for its headers, or idle may
    be dropped: none of them has a request under way.
    """

    def __init__(self, gate: Gate, address: str) -> None:
        self.gate = gate
        self.address = address
        self.released = False
        self.handshaking = True
        self.awaiting_headers = False
        self.idle_since: float | None = None
        self.evict: Callable[[], None] | None = None

    @property
    def idle(self) -> bool:
        return self.idle_since is not None and self.evict is not None

    @property
    def droppable(self) -> bool:
        waiting = self.handshaking or self.awaiting_headers or self.idle_since is not None
        return waiting and self.evict is not None

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.gate._release(self)


class Gate:
    """Counts live connections, in all and per address. Bookkeeping only: dropping an
    idle connection goes through its own `evict` callback.

    Only addresses with a live connection are in the table, so it never holds more than
    `max_connections` entries.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.total = 0
        self.live: dict[str, list[Ticket]] = {}
        self.dropped = 0  # connections dropped to make room, ever

    @property
    def per_address(self) -> dict[str, int]:
        return {address: len(tickets) for address, tickets in self.live.items()}

    def admit(self, address: str) -> Ticket | Refusal:
        mine = len(self.live.get(address, ()))
        if mine >= self.limits.max_per_address:
            idle = [t for t in self.live[address] if t.idle]
            if not idle:
                return Refusal.PER_ADDRESS
            self._drop(min(idle, key=lambda t: t.idle_since or 0.0))
        if self.total >= self.limits.max_connections:
            victim = self._oldest_idle() or self._over_fair_share(mine)
            if victim is None:
                return Refusal.TOTAL
            self._drop(victim)
        self.total += 1
        ticket = Ticket(self, address)
        self.live.setdefault(address, []).append(ticket)
        return ticket

    def _oldest_idle(self) -> Ticket | None:
        idle = [t for tickets in self.live.values() for t in tickets if t.idle]
        return min(idle, key=lambda t: t.idle_since or 0.0) if idle else None

    def _over_fair_share(self, mine: int) -> Ticket | None:
        """The oldest droppable connection of the address holding the most, if it holds
        more than the newcomer's address would after this connection."""
        tickets = max(self.live.values(), key=len)
        if len(tickets) <= mine + 1:
            return None
        return next((t for t in tickets if t.droppable), None)  # oldest first

    def _drop(self, victim: Ticket) -> None:
        self.dropped += 1
        evict = victim.evict
        victim.release()
        if evict is not None:
            evict()

    def _release(self, ticket: Ticket) -> None:
        self.total -= 1
        tickets = self.live.get(ticket.address, [])
        if ticket in tickets:
            tickets.remove(ticket)
        if not tickets:
            self.live.pop(ticket.address, None)


def descriptor_headroom() -> int | None:
    """Descriptors left under the soft RLIMIT_NOFILE; None when there is no limit to see."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        used = len(os.listdir("/proc/self/fd"))
    except FileNotFoundError:  # no /proc: accept() failing with EMFILE is the last guard
        return None
    except OSError:  # listing it needs a descriptor too: there is none
        return 0
    return soft - used


def bind(host: str, port: int, backlog: int) -> socket.socket:
    """A non-blocking listening socket on the first address `host` resolves to."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # Lets a restart take the port back while old connections sit in TIME_WAIT;
        # on Linux it never lets two live listeners share a port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


ProtocolFactory = Callable[[Ticket], asyncio.Protocol]


class Listener:
    """Accepts on `sock`, admits through a Gate, hands TLS connections to `protocol_for`."""

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        protocol_for: ProtocolFactory,
        limits: Limits,
        notes: RateLimitedLog,
        headroom: Callable[[], int | None] = descriptor_headroom,
    ) -> None:
        self.sock = sock
        self.context = context
        self.protocol_for = protocol_for
        self.limits = limits
        self.notes = notes
        self.headroom = headroom
        self.gate = Gate(limits)
        self._serving: asyncio.Task[None] | None = None
        self._handshakes: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def start(self) -> None:
        self._serving = asyncio.create_task(self._serve(), name="local API accept")

    async def close(self) -> None:
        tasks = [t for t in (self._serving, *self._handshakes) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.sock.close()

    async def _serve(self) -> None:
        while True:
            # Wait for a connection first and look at the room after: the room may have
            # shrunk while we waited, and a connection not taken costs us nothing.
            await wait_readable(self.sock)
            room = self.headroom()
            if room is not None and room < self.limits.fd_reserve:
                self.notes.note(
                    "descriptors",
                    f"local API: not accepting connections while only {room} file "
                    f"descriptors are left ({self.limits.fd_reserve} are kept for the agent)",
                )
                await asyncio.sleep(RETRY_S)
                continue
            try:
                conn, peer = self.sock.accept()
            except BlockingIOError:
                continue
            except OSError as exc:
                await self._accept_failed(exc)
                continue
            conn.setblocking(False)
            self._admit(conn, client_key(str(peer[0])))

    async def _accept_failed(self, exc: OSError) -> None:
        if exc.errno in OUT_OF_RESOURCES:
            self.notes.note("accept", f"local API: cannot accept a connection: {exc.strerror}")
            await asyncio.sleep(RETRY_S)
        elif exc.errno not in CLIENT_LEFT:
            self.notes.note("accept_error", f"local API: accept failed: {exc}")
            await asyncio.sleep(RETRY_S / 10)

    def stats(self) -> dict[str, int]:
        """For `camagent status`: what the caps are doing."""
        total = self.notes.total
        return {
            "open": self.gate.total,
            "refused": sum(n for kind, n in total.items() if kind.startswith("refused_")),
            "dropped": self.gate.dropped,
            "handshakes_failed": total.get("handshake", 0),
            "accept_paused": total.get("descriptors", 0),
        }

    def _admit(self, conn: socket.socket, address: str) -> None:
        dropped = self.gate.dropped
        admitted = self.gate.admit(address)
        if self.gate.dropped > dropped:
            self.notes.note(
                "dropped",
                "local API: dropped idle or half-open connections to make room for others",
            )
        if isinstance(admitted, Refusal):
            conn.close()
            if admitted is Refusal.TOTAL:
                what = f"{self.limits.max_connections} connections in all"
            else:
                what = f"{self.limits.max_per_address} connections from {address}"
            self.notes.note(
                f"refused_{admitted.value}", f"local API: refused connections over {what}"
            )
            return
        task = asyncio.create_task(self._handshake(conn, admitted))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

        def cancel_handshake() -> None:
            task.cancel()

        admitted.evict = cancel_handshake

    async def _handshake(self, conn: socket.socket, ticket: Ticket) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: self.protocol_for(ticket),
                conn,
                ssl=self.context,
                ssl_handshake_timeout=self.limits.handshake_s,
                ssl_shutdown_timeout=SSL_SHUTDOWN_S,
            )
        except OSError as exc:  # ssl.SSLError, timeouts and resets are OSErrors
            self.notes.note(
                "handshake",
                f"local API: TLS handshakes failed or took over {self.limits.handshake_s:g} s "
                f"(latest from {ticket.address}: {type(exc).__name__})",
            )
            self._drop(conn, ticket)
        except BaseException:
            self._drop(conn, ticket)
            raise

    @staticmethod
    def _drop(conn: socket.socket, ticket: Ticket) -> None:
        with contextlib.suppress(OSError):
            conn.close()
        ticket.release()
