"""The provisioning schedule (docs/design.md §2), pure: times in, times out.

First request at start; the next `fast_attempts` requests each start `fast_interval`
after the one before; after that one request every `slow_interval` (± jitter), forever.
Intervals run from the start of one request to the start of the next, and a request,
long-poll included, must end before the next is due. The caller owns the clock (it
passes `now`) and the randomness (it passes `jitter` drawn uniformly from [-1, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.config import ProvisioningConfig


class Phase(Enum):
    FAST = "fast"
    SLOW = "slow"


@dataclass(frozen=True)
class ScheduleSettings:
    fast_interval: float = 60.0
    fast_attempts: int = 5
    slow_interval: float = 3600.0
    slow_jitter: float = 0.10
    long_poll: float = 50.0

    @classmethod
    def from_config(cls, cfg: ProvisioningConfig) -> ScheduleSettings:
        return cls(
            fast_interval=cfg.fast_interval,
            fast_attempts=cfg.fast_attempts,
            slow_interval=cfg.slow_interval,
            slow_jitter=cfg.slow_jitter,
            long_poll=cfg.long_poll,
        )


@dataclass(frozen=True)
class PollPlan:
    """One request about to start."""

    attempt: int  # 1 for the first request since the schedule (re)started
    phase: Phase
    starts_at: float
    wait: int  # long-poll seconds to ask the cloud for
    deadline: float  # the request must have ended by then: the next one is due


def long_poll_wait(long_poll: float, interval: float) -> int:
    """Seconds a poll may wait so that it still ends before the next request is due.

    The margin (10 % of the interval, at least 1 s) leaves time for the answer to travel.
    """
    margin = max(1.0, 0.1 * interval)
    return max(0, int(min(long_poll, interval - margin)))


class PollSchedule:
    def __init__(self, settings: ScheduleSettings, now: float) -> None:
        self.settings = settings
        self.attempts = 0
        self.next_due = now
        self._last_start = now
        self._last_jitter = 0.0
        self._not_before = now  # Retry-After: no request before this

    @property
    def phase(self) -> Phase:
        """The phase of the next request."""
        return Phase.FAST if self.attempts <= self.settings.fast_attempts else Phase.SLOW

    def begin(self, now: float, jitter: float) -> PollPlan:
        """A request starts at `now` (not before `next_due`); plan it and the next one."""
        if now < self.next_due:
            raise ValueError(f"request started at {now} before it was due at {self.next_due}")
        phase = self.phase
        self.attempts += 1
        self._last_start = now
        self._last_jitter = max(-1.0, min(1.0, jitter))
        interval = self._interval_after(self.attempts)
        self.next_due = now + interval
        return PollPlan(
            attempt=self.attempts,
            phase=phase,
            starts_at=now,
            wait=long_poll_wait(self.settings.long_poll, interval),
            deadline=self.next_due,
        )

    def reconfigure(self, settings: ScheduleSettings) -> None:
        """New intervals (config reload): the next request is due by the new rule."""
        self.settings = settings
        if self.attempts:
            due = self._last_start + self._interval_after(self.attempts)
            self.next_due = max(due, self._not_before)

    def _interval_after(self, attempt: int) -> float:
        s = self.settings
        if attempt <= s.fast_attempts:
            return s.fast_interval
        return s.slow_interval * (1.0 + s.slow_jitter * self._last_jitter)

    def finish(self, now: float, retry_after: float | None = None) -> None:
        """The request ended without a token; honour the cloud's Retry-After.

        Retry-After is capped at one slow interval, so that a wrong header can never
        silence a device for longer than the hourly phase would.
        """
        if retry_after is not None and retry_after > 0:
            delay = min(retry_after, self.settings.slow_interval)
            self._not_before = max(self._not_before, now + delay)
            self.next_due = max(self.next_due, self._not_before)

    def delay(self, now: float) -> float:
        return max(0.0, self.next_due - now)
