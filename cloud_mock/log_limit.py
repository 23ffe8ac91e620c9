"""Repeated log lines at most once a minute, with a count.

Under a flood the same error repeats thousands of times a second (issue 17 measured
676,350 tracebacks in 100 s); a log that big hides everything else and fills the disk.
The first occurrence is logged as it is; the same line again within the window is only
counted, and the next one after the window says how many were left out.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

# The agent's filter (same rule: logger, level, message template; once a window).
from agent.logging_setup import RepeatFilter

WINDOW_S = 60.0
ACCESS_LINES_PER_WINDOW = 300
MAX_KEYS = 1024  # distinct lines remembered; the oldest are forgotten first


class _Window:
    """Per key: when it was last let through, and how many were held back since
    (RateLimitedLogger's bookkeeping)."""

    def __init__(self, window_s: float, clock: Callable[[], float]) -> None:
        self.window_s = window_s
        self.clock = clock
        self._seen: OrderedDict[Any, tuple[float, int]] = OrderedDict()

    def admit(self, key: Any) -> int | None:
        """None: drop this one. Otherwise let it through; the number held back before it."""
        now = self.clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.window_s:
            self._seen[key] = (last[0], last[1] + 1)
            return None
        self._seen.pop(key, None)
        self._seen[key] = (now, 0)
        while len(self._seen) > MAX_KEYS:
            self._seen.popitem(last=False)
        return 0 if last is None else last[1]


class LineBudget(logging.Filter):
    """At most `lines` records per window through this filter (the access log: one line
    per request is useful until a flood makes it gigabytes); the first one after a full
    window says how many were left out."""

    def __init__(
        self,
        lines: int = ACCESS_LINES_PER_WINDOW,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._lines, self._window_s, self._clock = lines, window_s, clock
        self._started = clock()
        self._passed = self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = self._clock()
        if now - self._started >= self._window_s:
            dropped, self._dropped = self._dropped, 0
            self._started, self._passed = now, 0
            if dropped:
                record.msg = f"{record.msg} ({dropped} lines like it left out before this)"
        if self._passed >= self._lines:
            self._dropped += 1
            return False
        self._passed += 1
        return True


class RateLimitedLogger:
    """One call site's warnings at most once a window (same idea, for our own lines)."""

    def __init__(
        self,
        logger: logging.Logger,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._window = _Window(window_s, clock)

    def warning(self, msg: str, *args: Any) -> None:
        held_back = self._window.admit(msg)
        if held_back is None:
            return
        if held_back:
            msg = f"{msg} (and {held_back} more in the last minute)"
        self._logger.warning(msg, *args)


# Loggers through which a flood of connections speaks: asyncio's accept and TLS errors,
# aiohttp's bad-request and handler errors. (Access-log lines all differ: not these.)
FLOODED_LOGGERS = ("asyncio", "aiohttp.server", "aiohttp.web", "aiohttp.websocket")


ACCESS_LOGGER = "aiohttp.access"


def install(names: tuple[str, ...] = FLOODED_LOGGERS) -> None:
    """Put a RepeatFilter on each logger a flood speaks through, and a LineBudget on the
    access log (once: idempotent)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter(window_s=WINDOW_S))
    access = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, LineBudget) for f in access.filters):
        access.addFilter(LineBudget())
