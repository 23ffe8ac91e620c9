"""Long-lived tasks under the Supervisor: restarted after a failure, never dead silently."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from agent import sd_notify
from agent.backoff import Backoff
from agent.supervisor import HEALTHY_RUN_S, Supervisor, watchdog
from tests.agent.clock import START, FakeClock, eventually


class Sleeps:
    """A clock whose sleeps (the supervisor's backoff) are recorded and made instant."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        self.now += delay
        await asyncio.sleep(0)


async def test_a_task_that_raises_is_restarted_with_capped_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sleeps = Sleeps()
    supervisor = Supervisor(Backoff(base=1.0, cap=4.0), clock=sleeps, unhealthy_after=100)
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs <= 5:
            raise OSError(24, "Too many open files")
        await asyncio.Event().wait()  # then it stays up

    with caplog.at_level(logging.WARNING, logger="agent.supervisor"):
        supervisor.start("channel", flaky)
        await eventually(lambda: runs == 6)
    assert supervisor.running("channel")
    assert len(sleeps.delays) == 5
    # Upper half of 1, 2, 4, 4, 4 s: doubling, then capped.
    for delay, ceiling in zip(sleeps.delays, [1, 2, 4, 4, 4], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert "task channel failed: OSError: [Errno 24] Too many open files" in caplog.text
    assert supervisor.unhealthy() == []
    await supervisor.stop_all()
    assert not supervisor.running("channel")


async def test_a_failing_import_is_a_failed_attempt_not_a_dead_task() -> None:
    supervisor = Supervisor(clock=Sleeps(), unhealthy_after=100)
    attempts = 0

    async def imports_late() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ImportError("cannot import name 'ControlChannel' (EMFILE)")
        await asyncio.Event().wait()

    supervisor.start("channel", imports_late)
    await eventually(lambda: attempts == 2)
    assert supervisor.running("channel")
    await supervisor.stop_all()


async def test_an_unexpected_return_restarts_but_a_finishing_task_may_end() -> None:
    supervisor = Supervisor(clock=Sleeps(), unhealthy_after=100)
    runs = {"server": 0, "poll loop": 0}

    async def returns(name: str) -> None:
        runs[name] += 1

    supervisor.start("server", lambda: returns("server"))
    supervisor.start("poll loop", lambda: returns("poll loop"), finishes=True)
    await eventually(lambda: runs["server"] >= 3)
    assert runs["poll loop"] == 1
    assert not supervisor.running("poll loop")
    await supervisor.stop_all()


async def test_a_task_that_keeps_failing_makes_the_daemon_unhealthy() -> None:
    supervisor = Supervisor(clock=Sleeps(), unhealthy_after=3)

    async def broken() -> None:
        raise RuntimeError("wedged")

    supervisor.start("QR watcher", broken)
    await eventually(lambda: supervisor.unhealthy() != [])
    assert supervisor.unhealthy()[0].startswith("QR watcher failed ")
    assert "RuntimeError: wedged" in supervisor.unhealthy()[0]
    await supervisor.stop_all()
    assert supervisor.unhealthy() == []


class LowestDraw(random.Random):
    """Every jitter draw 0: each backoff delay is half its window, exactly."""

    def random(self) -> float:
        return 0.0


async def test_a_run_that_lasted_a_healthy_while_starts_the_backoff_over() -> None:
    # On the fake clock: a minute of running takes no time, and the delays are exact.
    clock = FakeClock()
    supervisor = Supervisor(Backoff(base=1.0, cap=60.0), LowestDraw(), clock, unhealthy_after=100)
    runs = [0.0, 0.0, 0.0, HEALTHY_RUN_S, HEALTHY_RUN_S - 0.5, 0.0]

    async def flaky() -> None:
        if lasts := runs.pop(0):
            await clock.sleep(lasts)
        raise OSError(24, "Too many open files")

    supervisor.start("channel", flaky)
    while runs:
        await clock.skip_to_next_wake()
    await eventually(lambda: len(clock.slept) == 8)
    await supervisor.stop_all()
    assert clock.slept == [
        0.5,
        1.0,
        2.0,  # three quick failures: the window doubles
        HEALTHY_RUN_S,  # the task ran a healthy while, then failed...
        0.5,  # ...so the backoff starts over
        HEALTHY_RUN_S - 0.5,  # not quite long enough...
        1.0,  # ...so it goes on growing
        2.0,
    ]


async def test_the_watchdog_pings_each_interval_only_while_healthy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")  # pings every 10 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    pings: list[float] = []
    clock = FakeClock()

    def notify(message: str) -> bool:
        pings.append(clock.now)
        return True

    monkeypatch.setattr(sd_notify, "notify", notify)
    reasons: list[str] = []
    pinging = asyncio.create_task(watchdog(lambda: list(reasons), clock))
    # A skip moves time to the watchdog's next wake-up; it checks `reasons` when it runs,
    # after the statement that follows the skip.
    await clock.skip_to_next_wake()  # +10: healthy
    await clock.skip_to_next_wake()
    reasons.append("channel failed 8 times in a row")  # +20: unhealthy
    await clock.skip_to_next_wake()  # +30: unhealthy
    await clock.skip_to_next_wake()
    reasons.clear()  # +40: healthy again
    await eventually(lambda: clock.sleeping == 1 and clock.next_wake() == START + 50)
    pinging.cancel()
    assert pings == [START, START + 10, START + 40]
    assert set(clock.slept) == {10.0}
