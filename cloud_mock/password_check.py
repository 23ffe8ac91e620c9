"""Checking login passwords: scrypt on a bounded budget, shared fairly between addresses.

scrypt is slow on purpose (about 130 ms of CPU per check here). Run for every login,
unknown ones too (so that the answer's timing does not tell which logins exist), a flood
of logins within the per-address limits, each with a made-up login, made the mock spend
a core on them and slowed every user's login (issue 25). So:

- an unknown login runs no scrypt: it waits as long as a real check took lately (a time
  drawn from the last `samples` real checks, queueing included), and fails;
- real checks run at most `workers` at a time, and one client address (an IPv4 address or
  an IPv6 /64) has at most `per_client` logins being checked or waiting at once; past
  that, `ChecksBusy` (429 with Retry-After), so no address can fill the queue ahead of
  everybody else.

Times here are real seconds (the CPU is real), not the mock clock.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, deque
from collections.abc import Callable

Verify = Callable[[str, str], bool]


class ChecksBusy(Exception):
    """This address has `per_client` logins being checked already."""


class PasswordChecks:
    def __init__(
        self,
        verify: Verify,
        dummy_hash: str,
        *,
        workers: int = 2,
        per_client: int = 3,
        samples: int = 64,
        rng: random.Random | None = None,
    ) -> None:
        self._verify = verify
        self._dummy_hash = dummy_hash
        self._slots = asyncio.Semaphore(workers)
        self.per_client = per_client
        self._in_flight: Counter[str] = Counter()  # only addresses with a check under way
        self._durations: deque[float] = deque(maxlen=samples)
        self._rng = rng or random.SystemRandom()
        self.scrypt_runs = 0  # real checks, ever (the tests count them)

    async def check(self, client: str, password: str, stored: str | None) -> bool:
        """Whether `password` matches `stored` (None: no such login, never a match).
        Raises ChecksBusy when `client` has too many logins under way."""
        if self._in_flight[client] >= self.per_client:
            raise ChecksBusy
        self._in_flight[client] += 1
        try:
            if stored is None and self._durations:
                await asyncio.sleep(self._rng.choice(self._durations))
                return False
            # The first unknown login before any real check measures one on a dummy hash.
            return await self._run(password, stored if stored is not None else self._dummy_hash)
        finally:
            self._in_flight[client] -= 1
            if not self._in_flight[client]:
                del self._in_flight[client]

    async def _run(self, password: str, stored: str) -> bool:
        started = time.monotonic()
        async with self._slots:
            self.scrypt_runs += 1
            matches = await asyncio.to_thread(self._verify, password, stored)
        self._durations.append(time.monotonic() - started)
        return matches and stored != self._dummy_hash

    def __len__(self) -> int:
        """Logins being checked or waiting, in all."""
        return sum(self._in_flight.values())
