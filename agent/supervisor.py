"""Long-lived tasks that never die silently: each is restarted with capped backoff.

A task that raises (an OSError from a full descriptor table, a failed import, a bug) is
logged (once a minute at most, by the repeat filter) and started again after a backoff
delay. A task that keeps failing makes the daemon unhealthy: the watchdog pings stop and
systemd restarts the whole process, which is the last resort, not the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agent import sd_notify
from agent.backoff import Backoff
from agent.clock import Clock, SystemClock

log = logging.getLogger(__name__)

Factory = Callable[[], Awaitable[None]]

# A run that lasted this long was healthy: the next failure starts the backoff over.
HEALTHY_RUN_S = 60.0
# This many failures in a row, and the daemon is no longer healthy.
UNHEALTHY_AFTER = 8


@dataclass
class _Supervised:
    name: str
    task: asyncio.Task[None] | None = None
    failures: int = 0  # in a row
    last_error: str = ""

    @property
    def alive(self) -> bool:
        return self.task is not None and not self.task.done()


class Supervisor:
    def __init__(
        self,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
        clock: Clock | None = None,
        unhealthy_after: int = UNHEALTHY_AFTER,
    ) -> None:
        self.backoff = backoff or Backoff(base=1.0, cap=60.0)
        self.rng = rng or random.Random()
        self.clock = clock or SystemClock()
        self.unhealthy_after = unhealthy_after
        self._tasks: dict[str, _Supervised] = {}

    def start(self, name: str, factory: Factory, *, finishes: bool = False) -> None:
        """Run `factory()` under supervision, replacing a task of the same name.

        `finishes`: a normal return is the task's job done (the poll loop once it has a
        token; a server once it listens). Otherwise a return is unexpected and restarts it.
        """
        old = self._tasks.pop(name, None)
        if old is not None and old.task is not None:
            old.task.cancel()
        entry = _Supervised(name)
        entry.task = asyncio.create_task(self._run(entry, factory, finishes), name=name)
        self._tasks[name] = entry

    async def stop(self, name: str) -> None:
        entry = self._tasks.pop(name, None)
        if entry is None or entry.task is None or entry.task.done():
            return
        entry.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await entry.task

    async def stop_all(self) -> None:
        for name in list(self._tasks):
            await self.stop(name)

    def running(self, name: str) -> bool:
        entry = self._tasks.get(name)
        return entry is not None and entry.alive

    def unhealthy(self) -> list[str]:
        """Why the daemon is unhealthy (empty when it is not): tasks that keep failing."""
        return [
            f"{e.name} failed {e.failures} times in a row ({e.last_error})"
            for e in self._tasks.values()
            if e.failures >= self.unhealthy_after
        ]

    async def _run(self, entry: _Supervised, factory: Factory, finishes: bool) -> None:
        while True:
            started = self.clock.monotonic()
            try:
                await factory()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure is one failed attempt, never a dead task
                entry.last_error = f"{type(exc).__name__}: {exc}"
                log.error("task %s failed: %s", entry.name, entry.last_error, exc_info=exc)
            else:
                if finishes:
                    entry.failures = 0
                    return
                entry.last_error = "it ended"
                log.error("task %s ended unexpectedly", entry.name)
            if self.clock.monotonic() - started >= HEALTHY_RUN_S:
                entry.failures = 0
            entry.failures += 1
            delay = self.backoff.delay(entry.failures, self.rng.random())
            log.warning("restarting task %s in %.1f s", entry.name, delay)
            await self.clock.sleep(delay)


async def watchdog(unhealthy: Callable[[], list[str]], clock: Clock | None = None) -> None:
    """Ping systemd's watchdog only while healthy: a wedged daemon is restarted by it.

    A blocked event loop stops the pings by itself; `unhealthy` covers tasks that keep
    failing and an event that never finishes.
    """
    interval = sd_notify.watchdog_interval()
    if interval is None:
        return
    clock = clock or SystemClock()
    while True:
        if reasons := unhealthy():
            log.error("unhealthy, no watchdog ping: %s", "; ".join(reasons))
        else:
            sd_notify.notify("WATCHDOG=1")
        await clock.sleep(interval)
