"""The password checks' budget: unknown logins run no scrypt, yet wait as long as a real
check; one address cannot queue more than its share (issue 25)."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest

from cloud_mock.password_check import ChecksBusy, PasswordChecks
from tests.eventually import eventually_async

DUMMY = "dummy-hash"


class SlowVerify:
    """A stand-in for scrypt that takes `seconds` of a thread and counts its runs (the
    real scrypt is exercised by the login tests; here only the scheduling matters)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.runs = 0
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def __call__(self, password: str, stored: str) -> bool:
        with self._lock:
            self.runs += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        threading.Event().wait(self.seconds)
        with self._lock:
            self.running -= 1
        return password == stored


async def test_an_unknown_login_runs_no_scrypt_after_the_first_measure() -> None:
    verify = SlowVerify(0.05)
    checks = PasswordChecks(verify, DUMMY, rng=random.Random(1))
    assert not await checks.check("10.0.0.1", "pw", None)  # measures one, on the dummy
    assert verify.runs == 1
    for _ in range(20):
        assert not await checks.check("10.0.0.1", "pw", None)
    assert verify.runs == 1
    assert await checks.check("10.0.0.1", "right", "right")
    assert not await checks.check("10.0.0.1", "wrong", "right")
    assert verify.runs == 3
    # The dummy hash never matches, even for its own text.
    assert not await checks.check("10.0.0.1", DUMMY, None)


async def test_an_unknown_login_waits_as_long_as_a_real_check_took(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verify = SlowVerify(0.05)
    checks = PasswordChecks(verify, DUMMY, rng=random.Random(1))
    await checks.check("10.0.0.1", "a", "b")
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr("cloud_mock.password_check.asyncio.sleep", recorded)
    await checks.check("10.0.0.1", "a", None)
    assert len(slept) == 1
    assert slept[0] >= 0.05  # the real check's time, queueing included


async def test_one_address_cannot_queue_more_than_its_share() -> None:
    verify = SlowVerify(0.2)
    checks = PasswordChecks(verify, DUMMY, workers=1, per_client=3)
    flood = [asyncio.create_task(checks.check("10.0.0.9", "x", "y")) for _ in range(3)]
    await eventually_async(lambda: len(checks) == 3, interval=0.001, what="three under way")
    with pytest.raises(ChecksBusy):
        await checks.check("10.0.0.9", "x", "y")
    # Another address still gets in line, and is answered.
    assert await checks.check("10.0.0.1", "right", "right")
    await asyncio.gather(*flood)
    assert verify.most_at_once == 1  # never more scrypt at once than the workers
    assert len(checks) == 0
