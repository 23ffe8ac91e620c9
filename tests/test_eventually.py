"""The waiting helper: returns the first passing value, fails with the last one seen."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from tests.eventually import eventually, eventually_async


def test_returns_the_first_value_that_passes() -> None:
    counter = itertools.count()
    assert eventually(lambda: next(counter), until=lambda n: n >= 3, interval=0.001) == 3


def test_a_truthy_value_passes_without_until() -> None:
    values = iter([None, 0, "", "ready"])
    assert eventually(lambda: next(values), interval=0.001) == "ready"


def test_assertion_errors_mean_not_yet() -> None:
    calls = itertools.count(1)

    def check() -> int:
        n = next(calls)
        assert n >= 2
        return n

    assert eventually(check, interval=0.001) == 2


def test_timeout_names_what_and_the_last_value() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"two polls: not within 0.2 s \(last value: \[1\]\)"):
        eventually(lambda: [1], until=lambda log: len(log) >= 2, timeout=0.2, what="two polls")
    assert 0.2 <= time.monotonic() - started < 2.0


def test_timeout_reports_the_last_error_and_chains_it() -> None:
    def check() -> int:
        raise ConnectionRefusedError("no daemon yet")

    with pytest.raises(AssertionError, match="last error: ConnectionRefusedError") as info:
        eventually(check, timeout=0.1, retry_on=(OSError,), what="daemon")
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


def test_other_errors_are_not_swallowed() -> None:
    def check() -> int:
        raise KeyError("state")

    with pytest.raises(KeyError):
        eventually(check, timeout=5)


def test_async_twin_takes_coroutine_and_plain_checks() -> None:
    async def main() -> None:
        counter = itertools.count()

        async def check() -> int:
            return next(counter)

        assert await eventually_async(check, until=lambda n: n == 2, interval=0.001) == 2
        assert await eventually_async(lambda: "plain") == "plain"
        with pytest.raises(AssertionError, match="never: not within"):
            await eventually_async(lambda: False, timeout=0.05, what="never")

    asyncio.run(main())
