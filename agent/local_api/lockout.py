"""Throttling wrong passwords per client address, with a global slow-down, never a global lock.

A device-wide lock let anyone on the LAN lock the installer out: eight wrong answers from
one host and the right password from every other host was refused for up to an hour. Now:

- **Per address**: after `after` wrong answers in a row from one address, that address
  waits `base_s` before its next password is checked, twice as long after each further
  wrong answer, at most `max_s`. A right answer from it starts it over. Other addresses
  are not affected: the right password from an address that has not failed is accepted
  at once, whatever the others do.
- **Global slow-down**: an attacker can change addresses, so when `pressure_failures`
  wrong answers (from all addresses together) fall within `pressure_window_s`, every
  address is throttled from its *first* wrong answer instead of its `after`-th. That
  bounds guessing to one try per address per delay, and still refuses no right password
  from a clean address.
- **Bounded, and stricter when full**: at most `max_addresses` addresses are remembered,
  and one with no wrong answer for `forget_s` (and no wait left) is forgotten. A full
  table never forgets an address to make room: that handed an attacker rotating over
  more addresses than the table holds a fresh address on every try (704 guesses a
  minute from 300 addresses). Instead, while the table is full, every address that is not
  in it shares ONE wait, the `overflow` (as strict as an address under the global
  slow-down: it waits after its first wrong answer, doubling): however many addresses
  rotate beyond the table, together they get the guesses of one address.

What survives a restart (`local-api-lockout.json` in the state directory): the address
table and the times of the recent wrong answers, both bounded, so a crash or a reboot
during an attack does not hand out fresh tries. It is written at most once a second
(`save_every_s`, flash wear and an attacker-driven write rate both stay small) and on
stop; a kill loses at most that second. A damaged file is not a clean slate: the device
starts in the global slow-down.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.atomic_file import write_atomic
from agent.errors import StateError

log = logging.getLogger(__name__)

FILE_NAME = "local-api-lockout.json"
FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)  # version 2 had no overflow
MAX_DELAY_S = 3600.0
MAX_ADDRESSES = 256
MAX_ADDRESS_LEN = 64


@dataclass(frozen=True)
class LockoutPolicy:
    after: int = 5  # wrong answers in a row from one address before it waits
    base_s: float = 30.0  # the first wait; doubled for every further wrong answer
    max_s: float = MAX_DELAY_S
    pressure_failures: int = 20  # wrong answers from all addresses together …
    pressure_window_s: float = 600.0  # … within this long: throttle from the first one
    max_addresses: int = MAX_ADDRESSES
    forget_s: float = 86_400.0  # an address quiet this long starts clean
    save_every_s: float = 1.0

    def delay(self, failures: int, after: int) -> float:
        """How long `failures` wrong answers in a row make an address wait (0: no wait)."""
        if failures < after:
            return 0.0
        exponent = min(failures - after, 62)  # 2**62 s is forever already
        return min(self.max_s, self.base_s * 2.0**exponent)


@dataclass(frozen=True)
class AddressState:
    failures: int = 0
    locked_until: float = 0.0  # wall-clock seconds
    last_failure: float = 0.0

    def retry_after(self, now: float, policy: LockoutPolicy) -> float:
        """Seconds until this address may try again; never longer than the policy allows,
        even if the clock stepped back."""
        return max(0.0, min(self.locked_until - now, policy.max_s))

    def failed(self, now: float, policy: LockoutPolicy, after: int) -> AddressState:
        failures = self.failures + 1
        delay = policy.delay(failures, after)
        return AddressState(failures, now + delay if delay else 0.0, now)


class Lockout:
    """The table, the recent wrong answers and the file, with an injectable clock."""

    def __init__(
        self, path: Path, policy: LockoutPolicy, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.policy = policy
        self.addresses: OrderedDict[str, AddressState] = OrderedDict()
        # Shared by every address not in the table while the table is full.
        self.overflow = AddressState()
        self.recent: deque[float] = deque(maxlen=policy.pressure_failures)
        self._dirty = False
        self._saved_at = -math.inf
        load(self, clock())

    # -- questions ----------------------------------------------------------------------

    def under_pressure(self, now: float) -> bool:
        recent = self.recent
        full = len(recent) == recent.maxlen
        return full and 0 <= now - recent[0] <= self.policy.pressure_window_s

    def after(self, now: float) -> int:
        """Wrong answers an address may give before it waits, now."""
        return 1 if self.under_pressure(now) else self.policy.after

    def full(self, now: float) -> bool:
        """No room for another address (after forgetting the quiet ones)."""
        if len(self.addresses) < self.policy.max_addresses:
            return False
        # Least recently failed first: only the front can have been quiet long enough.
        for address, state in list(self.addresses.items()):
            if now - state.last_failure <= self.policy.forget_s:
                break
            self._known(address, now)  # forgets it unless it still has a wait to serve
        return len(self.addresses) >= self.policy.max_addresses

    def _known(self, address: str, now: float) -> AddressState | None:
        state = self.addresses.get(address)
        if state is not None and self._quiet(state, now):
            del self.addresses[address]  # forgotten: it starts clean
            return None
        return state

    def _quiet(self, state: AddressState, now: float) -> bool:
        return now - state.last_failure > self.policy.forget_s and not state.retry_after(
            now, self.policy
        )

    def overflows(self, address: str, now: float) -> bool:
        """`address` is not in the table and there is no room for it: it shares the
        overflow's wait."""
        return self._known(address, now) is None and self.full(now)

    def state(self, address: str, now: float) -> AddressState:
        known = self._known(address, now)
        if known is not None:
            return known
        if self.full(now):
            if self._quiet(self.overflow, now):
                self.overflow = AddressState()
            return self.overflow
        return AddressState()

    def retry_after(self, address: str, now: float) -> float:
        return self.state(address, now).retry_after(now, self.policy)

    def tries_left(self, address: str, now: float) -> int:
        after = 1 if self.overflows(address, now) else self.after(now)
        return max(0, after - self.state(address, now).failures)

    # -- changes ------------------------------------------------------------------------

    def failure(self, address: str, now: float) -> AddressState:
        self.recent.append(now)
        if self.overflows(address, now):
            # The strictest schedule: a wait from the first wrong answer, doubling.
            self.overflow = self.state(address, now).failed(now, self.policy, 1)
            state = self.overflow
        else:
            state = self.state(address, now).failed(now, self.policy, self.after(now))
            self.addresses[address] = state
            self.addresses.move_to_end(address)
        self._changed(now)
        return state

    def success(self, address: str, now: float) -> None:
        # A right answer through the overflow clears nothing: the overflow stands for
        # every address beyond the table, not for this one.
        if self.addresses.pop(address, None) is not None:
            self._changed(now)

    def flush(self) -> None:
        """Write what is not on disk yet (on stop)."""
        if self._dirty:
            self._save()

    def _changed(self, now: float) -> None:
        self._dirty = True
        if not 0 <= now - self._saved_at < self.policy.save_every_s:
            self._saved_at = now
            self._save()

    def _save(self) -> None:
        data = {
            "version": FORMAT_VERSION,
            "addresses": {address: _entry(state) for address, state in self.addresses.items()},
            "recent": list(self.recent),
            "overflow": _entry(self.overflow),
        }
        self._dirty = False
        try:
            write_atomic(self.path, json.dumps(data).encode())
        except (StateError, OSError) as exc:
            # The throttle still holds in memory for as long as the daemon runs.
            log.error("%s", exc)


# -- the file -------------------------------------------------------------------------


def _entry(state: AddressState) -> list[float]:
    return [state.failures, state.locked_until, state.last_failure]


def load(lockout: Lockout, now: float) -> None:
    """Fill `lockout` from its file; a missing file is a clean slate, a damaged one starts
    the global slow-down (it is not trusted to be clean)."""
    try:
        data = json.loads(lockout.path.read_text(encoding="utf-8"))
        addresses, recent, overflow = _parse(data, lockout.policy)
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        log.warning(
            "%s is unreadable (%s): throttling every address from its first wrong password",
            lockout.path,
            exc,
        )
        lockout.recent.extend([now] * lockout.policy.pressure_failures)
        return
    lockout.addresses.update(addresses)
    lockout.recent.extend(recent)
    lockout.overflow = overflow


def _parse(
    data: Any, policy: LockoutPolicy
) -> tuple[dict[str, AddressState], list[float], AddressState]:
    if not isinstance(data, dict) or data.get("version") not in READABLE_VERSIONS:
        raise ValueError("not a version 2 or 3 lockout file")
    table, recent = data["addresses"], data["recent"]
    if not isinstance(table, dict) or not isinstance(recent, list):
        raise ValueError("wrong types")
    addresses: dict[str, AddressState] = {}
    for address, entry in list(table.items())[-policy.max_addresses :]:
        if len(address) > MAX_ADDRESS_LEN:
            raise ValueError(f"bad entry for {address[:MAX_ADDRESS_LEN]!r}")
        addresses[address] = _state(entry, address)
    overflow = _state(data["overflow"], "the overflow") if data["version"] >= 3 else AddressState()
    return addresses, [_time(t) for t in recent[-policy.pressure_failures :]], overflow


def _state(entry: Any, what: str) -> AddressState:
    if not (isinstance(entry, list) and len(entry) == 3):
        raise ValueError(f"bad entry for {what[:MAX_ADDRESS_LEN]!r}")
    failures, locked_until, last_failure = entry
    if not isinstance(failures, int) or isinstance(failures, bool) or failures < 0:
        raise ValueError("failures must be a count")
    return AddressState(failures, _time(locked_until), _time(last_failure))


def _time(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("a time must be a number")
    seconds = float(value)
    if not math.isfinite(seconds):
        raise ValueError("a time must be finite")
    return seconds
