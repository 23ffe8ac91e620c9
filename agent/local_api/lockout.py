"""Lockout after repeated wrong passwords: growing delays that survive a restart.

One counter for the whole device, not per client address: an attacker on the LAN can
change addresses at will. After `after` wrong answers in a row the device refuses every
password check for `base_s`; each further wrong answer locks it again for twice as long,
up to `MAX_DELAY_S`. A right answer starts over. The counter lives in a small JSON file
in the state directory, written crash-safely, so pulling the power does not reset it.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from agent.atomic_file import write_atomic
from agent.errors import StateError

log = logging.getLogger(__name__)

FILE_NAME = "local-api-lockout.json"
MAX_DELAY_S = 3600.0


@dataclass(frozen=True)
class LockoutPolicy:
    after: int = 5  # wrong answers in a row before the first lock
    base_s: float = 30.0  # the first lock; doubled for every further wrong answer
    max_s: float = MAX_DELAY_S

    def delay(self, failures: int) -> float:
        """How long `failures` wrong answers in a row lock the device (0: not locked)."""
        if failures < self.after:
            return 0.0
        exponent = min(failures - self.after, 62)  # 2**62 s is forever already
        return min(self.max_s, self.base_s * 2.0**exponent)


@dataclass(frozen=True)
class LockoutState:
    failures: int = 0
    locked_until: float = 0.0  # wall-clock seconds

    def retry_after(self, now: float, policy: LockoutPolicy) -> float:
        """Seconds until a password may be checked again; 0 when it may be now.

        A lock is never longer than the policy allows, even if the clock stepped back.
        """
        return max(0.0, min(self.locked_until - now, policy.max_s))

    def failed(self, now: float, policy: LockoutPolicy) -> LockoutState:
        failures = self.failures + 1
        delay = policy.delay(failures)
        return LockoutState(failures, now + delay if delay else 0.0)

    def tries_left(self, policy: LockoutPolicy) -> int:
        return max(0, policy.after - self.failures)


def load(path: Path, after: int = LockoutPolicy.after) -> LockoutState:
    """The saved counter; a missing file is a clean slate, a broken one is not trusted
    to be clean: it counts as one lock's worth of failures."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        failures, locked_until = data["failures"], data["locked_until"]
        if not (isinstance(failures, int) and isinstance(locked_until, int | float)):
            raise ValueError("wrong types")
        if failures < 0 or not math.isfinite(locked_until):
            raise ValueError("out of range")
        return LockoutState(failures, float(locked_until))
    except FileNotFoundError:
        return LockoutState()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s is unreadable (%s): counting it as a lockout", path, exc)
        return LockoutState(failures=after)


def save(path: Path, state: LockoutState) -> None:
    try:
        write_atomic(path, json.dumps(asdict(state)).encode())
    except (StateError, OSError) as exc:
        # The lockout still holds in memory for as long as the daemon runs.
        log.error("%s", exc)


class Lockout:
    """The counter, its policy and its file, with an injectable clock."""

    def __init__(self, path: Path, policy: LockoutPolicy) -> None:
        self.path = path
        self.policy = policy
        self.state = load(path, policy.after)

    def retry_after(self, now: float) -> float:
        return self.state.retry_after(now, self.policy)

    def failure(self, now: float) -> LockoutState:
        self.state = self.state.failed(now, self.policy)
        save(self.path, self.state)
        return self.state

    def success(self) -> None:
        if self.state != LockoutState():
            self.state = LockoutState()
            save(self.path, self.state)
