"""Repeated events logged once per interval with a count, never once per event.

An attacker on the LAN decides how often the local API refuses something; a log line (let
alone a traceback) per refusal would let them fill the disk and drown everything else.
The first event of a kind is logged at once, later ones are counted and summed up in one
line when the interval has passed and another event of that kind arrives, or on `flush`.

Unlike the handler-wide `logging_setup.RepeatFilter` (which only drops repeats), this
keeps a running total per kind: `camagent status` shows how many connections were
refused, dropped or timed out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

INTERVAL_S = 60.0
MAX_KINDS = 64  # kinds are fixed strings in the code; the bound guards against a mistake


@dataclass
class _Kind:
    message: str
    last_logged: float
    count: int = 0  # events since the last line


class RateLimitedLog:
    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        level: int = logging.WARNING,
    ) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.clock = clock
        self.level = level
        self._kinds: dict[str, _Kind] = {}
        self.total: dict[str, int] = {}  # every event ever, per kind (status and tests)

    def note(self, kind: str, message: str) -> None:
        """One event of `kind`; `message` says what happened, without a count."""
        now = self.clock()
        if kind not in self.total and len(self.total) >= MAX_KINDS:
            kind = "other"
        self.total[kind] = self.total.get(kind, 0) + 1
        entry = self._kinds.get(kind)
        if entry is None:
            self._kinds[kind] = _Kind(message, now)
            self.logger.log(self.level, "%s", message)
            return
        entry.count += 1
        entry.message = message
        if now - entry.last_logged >= self.interval_s:
            self._emit(entry, now)

    def flush(self) -> None:
        """Log what is still counted (on stop, so that nothing goes unsaid)."""
        now = self.clock()
        for entry in self._kinds.values():
            if entry.count:
                self._emit(entry, now)

    def _emit(self, entry: _Kind, now: float) -> None:
        seconds = max(1, round(now - entry.last_logged))
        self.logger.log(
            self.level, "%s (%d times in the last %d s)", entry.message, entry.count, seconds
        )
        entry.count = 0
        entry.last_logged = now
