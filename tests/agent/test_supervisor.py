"""Long-lived tasks under the Supervisor: restarted after a failure, never dead silently."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agent.backoff import Backoff
from agent.supervisor import Supervisor
from tests.agent.clock import eventually


class Sleeps:
    """The supervisor's backoff sleeps, recorded and made instant."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


async def test_a_task_that_raises_is_restarted_with_capped_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sleeps = Sleeps()
    supervisor = Supervisor(Backoff(base=1.0, cap=4.0), sleep=sleeps, unhealthy_after=100)
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
    supervisor = Supervisor(sleep=Sleeps(), unhealthy_after=100)
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
    supervisor = Supervisor(sleep=Sleeps(), unhealthy_after=100)
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
    supervisor = Supervisor(sleep=Sleeps(), unhealthy_after=3)

    async def broken() -> None:
        raise RuntimeError("wedged")

    supervisor.start("QR watcher", broken)
    await eventually(lambda: supervisor.unhealthy() != [])
    assert supervisor.unhealthy()[0].startswith("QR watcher failed ")
    assert "RuntimeError: wedged" in supervisor.unhealthy()[0]
    await supervisor.stop_all()
    assert supervisor.unhealthy() == []
