"""The mock's own resources under load: file descriptors, held polls, memory.

A held long-poll costs one open connection (a file descriptor) and the TLS buffers
behind it for up to a minute. Without a bound, one client holding polls can take every
descriptor the process has, and then nobody else gets an answer (issue 17: 1,011 held
polls from one client at a limit of 1,024). So held polls are capped in total (below the
descriptor limit, keeping a reserve for everything else) and per client address; a poll
over a cap is answered at once, exactly as a held poll that timed out (204), and the
device polls again on its own schedule.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import resource
from collections import Counter
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_MAX_HELD = 10_000
# Cameras of one site share one address behind NAT: a few hundred is a big site.
DEFAULT_MAX_HELD_PER_CLIENT = 512
# Descriptors never given to held polls: the database, the listening socket, the
# console, user API requests and control channels of connected devices.
DESCRIPTOR_RESERVE = 256
# Asyncio's SSLProtocol reads with a 256 KiB buffer per connection (Python 3.11), most
# of the memory of a held poll. TLS records are at most 16 KiB, so a smaller buffer only
# means more, smaller reads.
TLS_READ_BUFFER = 32 * 1024


@dataclass(frozen=True)
class HeldPollLimits:
    total: int = DEFAULT_MAX_HELD
    per_client: int = DEFAULT_MAX_HELD_PER_CLIENT

    @classmethod
    def for_descriptors(cls, descriptors: int, total: int, per_client: int) -> HeldPollLimits:
        """The configured caps, the total lowered to what `descriptors` can carry."""
        usable = max(1, descriptors - DESCRIPTOR_RESERVE)
        return cls(total=max(1, min(total, usable)), per_client=max(1, per_client))


class ClientCounter:
    """How many of something (held polls, connections) are open, in total and per client
    address, under caps; an address leaves the table when its last one ends, so the table
    never holds more addresses than there are open things."""

    def __init__(self, per_client: int, total: int | None = None) -> None:
        self.per_client = per_client
        self.total = total
        self._per_client: Counter[str] = Counter()
        self._total = 0
        self.refused = 0  # refused because a cap was reached

    def __len__(self) -> int:
        return self._total

    def of(self, client: str) -> int:
        return self._per_client.get(client, 0)

    def try_enter(self, client: str) -> bool:
        full = self.total is not None and self._total >= self.total
        if full or self._per_client[client] >= self.per_client:
            self.refused += 1
            return False
        self._total += 1
        self._per_client[client] += 1
        return True

    def leave(self, client: str) -> None:
        self._total -= 1
        self._per_client[client] -= 1
        if self._per_client[client] <= 0:
            del self._per_client[client]


class HeldPollCounter(ClientCounter):
    """Held polls: `refused` counts the polls answered at once because a cap was reached."""

    def __init__(self, limits: HeldPollLimits) -> None:
        super().__init__(limits.per_client, limits.total)
        self.limits = limits


def raise_file_limit() -> int:
    """Raise the soft descriptor limit to the hard one (as servers do); the result."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as error:
            log.warning("cannot raise the open-file limit from %d: %s", soft, error)
    return soft


def shrink_tls_read_buffer() -> None:
    """Give each TLS connection a smaller read buffer (see TLS_READ_BUFFER).

    A class attribute of asyncio's SSLProtocol, read when a connection starts; only this
    process (the mock) is affected.
    """
    from asyncio import sslproto

    if getattr(sslproto.SSLProtocol, "max_size", 0) > TLS_READ_BUFFER:
        sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


def give_memory_back() -> None:
    """Return freed heap memory to the system (glibc's malloc_trim), after a burst."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    libc = ctypes.CDLL(libc_name)
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)
