"""Wait on a condition instead of sleeping: the one polling helper of the test suite.

A test that sleeps a fixed time and then asserts is slow when the machine is idle and flaky
when it is loaded. `eventually` asks again and again (a daemon's `status`, the mock's API,
a log file) until the answer is the one wanted, returns that answer, and fails with the
last answer seen, or the last exception, once `timeout` has passed.

    log = eventually(lambda: polls(cloud, device_id), until=lambda log: len(log) >= 6,
                     timeout=15, what="six polls")

Without `until`, a truthy value is the answer. AssertionError raised by `check` means "not
yet" (so a check may assert); other exceptions go through unless listed in `retry_on`.

Sleeping stays right where time itself is the subject ("no poll for three fast
intervals"): such a sleep says why in a comment.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

_UNSET = object()


def _failure(
    what: str, timeout: float, last: object, error: BaseException | None
) -> AssertionError:
    subject = what or "condition"
    if error is not None:
        detail = f"last error: {type(error).__name__}: {error}"
    elif last is _UNSET:
        detail = "never checked"
    else:
        detail = f"last value: {last!r}"
    return AssertionError(f"{subject}: not within {timeout:g} s ({detail})")


def eventually(
    check: Callable[[], T],
    *,
    until: Callable[[T], object] | None = None,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "",
    retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `check` until its value passes (`until(value)`, or the value is truthy); return it."""
    retry: tuple[type[BaseException], ...] = (AssertionError, *retry_on)
    deadline = time.monotonic() + timeout
    last: object = _UNSET
    error: BaseException | None = None
    while True:
        try:
            value = check()
        except retry as exc:
            error = exc
        else:
            error, last = None, value
            if until(value) if until is not None else value:
                return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _failure(what, timeout, last, error) from error
        time.sleep(min(interval, remaining))


@overload
async def eventually_async(
    check: Callable[[], Awaitable[T]],
    *,
    until: Callable[[T], object] | None = ...,
    timeout: float = ...,
    interval: float = ...,
    what: str = ...,
    retry_on: tuple[type[BaseException], ...] = ...,
) -> T: ...


@overload
async def eventually_async(
    check: Callable[[], T],
    *,
    until: Callable[[T], object] | None = ...,
    timeout: float = ...,
    interval: float = ...,
    what: str = ...,
    retry_on: tuple[type[BaseException], ...] = ...,
) -> T: ...


async def eventually_async(
    check: Callable[[], Any],
    *,
    until: Callable[[Any], object] | None = None,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "",
    retry_on: tuple[type[BaseException], ...] = (),
) -> Any:
    """`eventually` for a running event loop: `check` may be a plain or a coroutine function."""
    retry: tuple[type[BaseException], ...] = (AssertionError, *retry_on)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: object = _UNSET
    error: BaseException | None = None
    while True:
        try:
            result = check()
            value = await result if inspect.isawaitable(result) else result
        except retry as exc:
            error = exc
        else:
            error, last = None, value
            if until(value) if until is not None else value:
                return value
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise _failure(what, timeout, last, error) from error
        await asyncio.sleep(min(interval, remaining))
