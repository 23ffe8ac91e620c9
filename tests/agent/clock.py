"""A fake Clock for in-process tests: time moves only when the test says so."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable

from tests.eventually import eventually_async

START = 1000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = START
        self._wall0 = time.time()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self.slept: list[float] = []  # every sleep asked for, in order

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self._wall0 + (self.now - START)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._seq), future))
        await future

    @property
    def sleeping(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def next_wake(self) -> float | None:
        live = [d for d, _, f in self._sleepers if not f.done()]
        return min(live) if live else None

    def advance_to(self, when: float) -> None:
        self.now = max(self.now, when)
        while self._sleepers and self._sleepers[0][0] <= self.now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    async def skip_to_next_wake(self) -> float:
        """Wait (in real time) until something sleeps, then move time to its wake-up."""
        await eventually(lambda: self.next_wake() is not None, what="something asleep")
        wake = self.next_wake()
        assert wake is not None
        self.advance_to(wake)
        return wake


async def eventually(
    condition: Callable[[], object], timeout: float = 20.0, what: str = "condition"
) -> None:
    """Wait in real time for `condition()` to hold (the daemon works between checks)."""
    await eventually_async(condition, timeout=timeout, interval=0.005, what=what)
