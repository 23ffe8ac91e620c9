"""Repeated log lines once a window, with a count; the access log's line budget."""

from __future__ import annotations

import logging

import pytest

from agent.logging_setup import RepeatFilter
from cloud_mock.log_limit import LineBudget, RateLimitedLogger


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _record(
    msg: str, name: str = "asyncio", exc: type[BaseException] | None = None
) -> logging.LogRecord:
    exc_info = (exc, exc(), None) if exc is not None else None
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, (), exc_info)


def test_a_repeated_line_passes_once_a_window_then_says_how_many_were_held_back() -> None:
    clock = FakeClock()
    repeat = RepeatFilter(window_s=60, clock=clock)
    assert repeat.filter(_record("accept failed", exc=OSError))
    assert [repeat.filter(_record("accept failed", exc=OSError)) for _ in range(1000)] == [
        False
    ] * 1000
    # Another line is another kind.
    assert repeat.filter(_record("handshake failed"))
    clock.now = 60
    record = _record("accept failed", exc=OSError)
    assert repeat.filter(record)
    assert "1000 more like it" in record.getMessage()


def test_the_access_log_budget_caps_lines_per_window() -> None:
    clock = FakeClock()
    budget = LineBudget(lines=3, window_s=60, clock=clock)
    passed = [budget.filter(_record(f"GET /{n}", "aiohttp.access")) for n in range(10)]
    assert passed == [True] * 3 + [False] * 7
    clock.now = 61
    record = _record("GET /next", "aiohttp.access")
    assert budget.filter(record)
    assert "7 lines like it left out" in record.getMessage()


def test_rate_limited_logger(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    limited = RateLimitedLogger(logging.getLogger("cloud_mock.test"), window_s=60, clock=clock)
    with caplog.at_level(logging.WARNING, "cloud_mock.test"):
        for _ in range(50):
            limited.warning("cap reached for %s", "x")
        clock.now = 61
        limited.warning("cap reached for %s", "y")
    assert [r.getMessage() for r in caplog.records] == [
        "cap reached for x",
        "cap reached for y (and 49 more in the last minute)",
    ]
